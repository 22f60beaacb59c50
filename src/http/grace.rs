//! Forgiving refresh (issue 17): for a client with `refresh_grace_secs`, the answer to a
//! refresh is kept in memory for that long (at most 60 seconds), so the same refresh token
//! presented again by the same client — a relying party refreshing from two processes at
//! once — gets that answer again instead of counting as a replay that ends the grant.
//! The trade-off (RFC 9700 §4.14.2): within the period a stolen token that races the
//! client gets the same successor instead of being detected. Kept in memory, never
//! written, on one node: after a restart a reuse is a replay again. On a store several
//! nodes share, the answer is kept there instead (the client's second request may reach
//! another node), sealed with a key derived from the used refresh token itself: the
//! store holds only that token's hash, so the record opens only for someone presenting
//! the token again, and it expires with the period.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::oidc::grant::TokenResponse;
use crate::store::Store;

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

/// A kept answer as the shared store holds it (inside the sealed bytes).
#[derive(serde::Serialize, serde::Deserialize)]
struct Sealed {
    client_id: String,
    grant_id: String,
    access_token: String,
    expires_in: i64,
    refresh_token: Option<String>,
    id_token: Option<String>,
    scope: String,
    issued_at: i64,
    until: i64,
}

#[derive(Default)]
pub struct RefreshGrace {
    kept: Mutex<HashMap<String, Kept>>,
    shared: Option<Arc<dyn Store>>,
}

impl RefreshGrace {
    /// Answers kept in `store` when other nodes share it, in memory otherwise.
    pub fn in_store(store: &Arc<dyn Store>) -> RefreshGrace {
        RefreshGrace {
            kept: Mutex::default(),
            shared: store.shared().then(|| store.clone()),
        }
    }

    /// Keeps the answer to a refresh with `used` (the token), whose hash is `used_hash`.
    #[allow(clippy::too_many_arguments)]
    pub fn keep(
        &self,
        used: &str,
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
        if let Some(store) = &self.shared {
            let record = Sealed {
                client_id: client_id.to_string(),
                grant_id: grant_id.to_string(),
                access_token: response.access_token.clone(),
                expires_in: response.expires_in,
                refresh_token: response.refresh_token.clone(),
                id_token: response.id_token.clone(),
                scope: response.scope.clone(),
                issued_at: now,
                until: now + grace,
            };
            let sealed = serde_json::to_vec(&record)
                .ok()
                .and_then(|plain| crate::keys::seal_for_token(used, &plain));
            let put = sealed
                .map(|s| store.put_ephemeral(&format!("grace/{used_hash}"), &s, now + grace + 1));
            if !matches!(put, Some(Ok(()))) {
                tracing::warn!("a refresh answer could not be kept for the grace period");
            }
            return;
        }
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
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
        used: &str,
        used_hash: &str,
        client_id: &str,
        now: i64,
    ) -> Option<(String, TokenResponse)> {
        if let Some(store) = &self.shared {
            let sealed = store.ephemeral(&format!("grace/{used_hash}"), now).ok()??;
            let plain = crate::keys::open_for_token(used, &sealed)?;
            let k: Sealed = serde_json::from_slice(&plain).ok()?;
            if k.client_id != client_id || now > k.until {
                return None;
            }
            let response = TokenResponse {
                access_token: k.access_token,
                token_type: "Bearer",
                expires_in: k.expires_in - (now - k.issued_at),
                refresh_token: k.refresh_token,
                id_token: k.id_token,
                scope: k.scope,
            };
            return Some((k.grant_id, response));
        }
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
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
        g.keep("t1", "h1", "rp", "g1", &response(), 10, 1000);
        let (grant, again) = g.again("t1", "h1", "rp", 1004).unwrap();
        assert_eq!(grant, "g1");
        assert_eq!(again.refresh_token.as_deref(), Some("rt-2"));
        assert_eq!(again.expires_in, 896, "counted from now");
        assert!(
            g.again("t1", "h1", "other", 1004).is_none(),
            "another client"
        );
        assert!(
            g.again("t1", "h1", "rp", 1011).is_none(),
            "after the period"
        );
        assert!(g.again("t2", "h2", "rp", 1004).is_none(), "another token");
        g.keep("t3", "h3", "rp", "g1", &response(), 0, 1000);
        assert!(
            g.again("t3", "h3", "rp", 1000).is_none(),
            "no period, nothing kept"
        );
    }
}
