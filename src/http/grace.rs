//! Forgiving refresh (issue 17): for a client with `refresh_grace_secs`, the answer to a
//! refresh is kept in memory for that long (at most 60 seconds), so the same refresh token
//! presented again by the same client — a relying party refreshing from two processes at
//! once — gets that answer again instead of counting as a replay that ends the grant.
//! The trade-off (RFC 9700 §4.14.2): within the period a stolen token that races the
//! client gets the same successor instead of being detected. Kept in memory only, never
//! written: after a restart a reuse is a replay again.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::oidc::grant::TokenResponse;

/// Answers kept at once; when full, a new one is not kept (reuse is then a replay, as
/// without a grace period).
const MAX_KEPT: usize = 10_000;

struct Kept {
    client_id: String,
    grant_id: String,
    response: TokenResponse,
    issued_at: i64,
    until: i64,
}

#[derive(Default)]
pub struct RefreshGrace(Mutex<HashMap<String, Kept>>);

impl RefreshGrace {
    /// Keeps the answer to a refresh with the token whose hash is `used_hash`.
    pub fn keep(
        &self,
        used_hash: &str,
        client_id: &str,
        grant_id: &str,
        response: &TokenResponse,
        grace: i64,
        now: i64,
    ) {
        if grace <= 0 {
            return;
        }
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.retain(|_, k| k.until >= now);
        // Full of live answers: the one that ends first makes room (its client's reuse
        // then counts as a replay, as without a grace period).
        if kept.len() >= MAX_KEPT
            && let Some(first) = kept
                .iter()
                .min_by_key(|(_, k)| k.until)
                .map(|(h, _)| h.clone())
        {
            kept.remove(&first);
        }
        kept.insert(
            used_hash.to_string(),
            Kept {
                client_id: client_id.to_string(),
                grant_id: grant_id.to_string(),
                response: response.clone(),
                issued_at: now,
                until: now + grace,
            },
        );
    }

    /// The answer kept for `used_hash` when `client_id` presents it again within the
    /// period (with `expires_in` counted from now), and its grant; `None` otherwise.
    pub fn again(
        &self,
        used_hash: &str,
        client_id: &str,
        now: i64,
    ) -> Option<(String, TokenResponse)> {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Answers past their period go, so no token stays in memory longer than needed.
        kept.retain(|_, k| k.until >= now);
        let k = kept.get(used_hash)?;
        if k.client_id != client_id || now > k.until {
            return None;
        }
        let mut response = k.response.clone();
        response.expires_in -= now - k.issued_at;
        Some((k.grant_id.clone(), response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response() -> TokenResponse {
        TokenResponse {
            access_token: "at".into(),
            token_type: "Bearer",
            expires_in: 900,
            refresh_token: Some("rt-2".into()),
            id_token: None,
            scope: "openid".into(),
        }
    }

    #[test]
    fn the_same_answer_within_the_period_for_the_same_client_only() {
        let g = RefreshGrace::default();
        g.keep("h1", "rp", "g1", &response(), 10, 1000);
        let (grant, again) = g.again("h1", "rp", 1004).unwrap();
        assert_eq!(grant, "g1");
        assert_eq!(again.refresh_token.as_deref(), Some("rt-2"));
        assert_eq!(again.expires_in, 896, "counted from now");
        assert!(g.again("h1", "other", 1004).is_none(), "another client");
        assert!(g.again("h1", "rp", 1011).is_none(), "after the period");
        assert!(g.again("h2", "rp", 1004).is_none(), "another token");
        g.keep("h3", "rp", "g1", &response(), 0, 1000);
        assert!(
            g.again("h3", "rp", 1000).is_none(),
            "no period, nothing kept"
        );
    }
}
