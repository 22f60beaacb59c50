//! The device authorization grant (RFC 8628): user codes people can type, and what a
//! device's poll at the token endpoint gets back.

use crate::model::{DeviceGrant, DeviceStatus};

use super::{ErrorCode, OidcError};

/// RFC 8628 §6.1: consonants only (no vowels, so no words; no look-alike letters).
const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
pub const USER_CODE_LEN: usize = 8;
/// Seconds a device code lives, and the polling interval to start with.
pub const LIFETIME: i64 = 600;
pub const INTERVAL: i64 = 5;

/// A user code from random bytes (20^8 ≈ 2^34.6 values; with the short lifetime and
/// per-address throttling of the entry page that is RFC 8628 §5.1's "high enough").
pub fn user_code(random: &[u8; USER_CODE_LEN]) -> String {
    random
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// How a user code is shown: `BCDF-GHJK`.
pub fn display(code: &str) -> String {
    if code.len() == USER_CODE_LEN {
        format!("{}-{}", &code[..4], &code[4..])
    } else {
        code.to_string()
    }
}

/// What a person typed, normalised: case and separators do not matter. `None` if it
/// cannot be a user code.
pub fn normalise(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
}

/// The answer to one poll.
#[derive(Debug, Clone, PartialEq)]
pub enum Poll {
    /// Issue tokens (approved, not yet used).
    Ready,
    /// An error for the device; `remember_poll` says whether to store `last_poll` (and a
    /// grown interval).
    Wait {
        error: OidcError,
        slow_down: bool,
    },
    Refuse(OidcError),
}

/// RFC 8628 §3.5 for a stored grant, polled by `client_id` at `now`.
pub fn poll(g: &DeviceGrant, client_id: &str, now: i64) -> Poll {
    if g.client_id != client_id {
        return Poll::Refuse(OidcError::invalid_grant(
            "the device_code was issued to another client",
        ));
    }
    if g.used {
        return Poll::Refuse(OidcError::invalid_grant("the device_code was already used"));
    }
    if now >= g.expires_at {
        return Poll::Refuse(OidcError::new(
            ErrorCode::ExpiredToken,
            "the device_code has expired",
        ));
    }
    match &g.status {
        DeviceStatus::Denied => Poll::Refuse(OidcError::new(
            ErrorCode::AccessDenied,
            "the user denied the request",
        )),
        DeviceStatus::Approved { .. } => Poll::Ready,
        DeviceStatus::Pending => {
            let too_fast = g.last_poll.is_some_and(|last| now - last < g.interval);
            let error = if too_fast {
                OidcError::new(ErrorCode::SlowDown, "polling too fast")
            } else {
                OidcError::new(
                    ErrorCode::AuthorizationPending,
                    "the user has not answered yet",
                )
            };
            Poll::Wait {
                error,
                slow_down: too_fast,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(status: DeviceStatus) -> DeviceGrant {
        DeviceGrant {
            client_id: "tv".into(),
            scopes: vec!["openid".into()],
            user_code: "BCDFGHJK".into(),
            expires_at: 1000,
            interval: 5,
            last_poll: None,
            status,
            used: false,
        }
    }

    #[test]
    fn user_codes_are_typeable() {
        let c = user_code(&[0, 1, 2, 3, 19, 20, 255, 7]);
        assert_eq!(c.len(), 8);
        assert!(c.bytes().all(|b| ALPHABET.contains(&b)));
        assert_eq!(display("BCDFGHJK"), "BCDF-GHJK");
        assert_eq!(normalise(" bcdf-ghjk "), Some("BCDFGHJK".into()));
        assert_eq!(normalise("BCDF-GHJ"), None);
        assert_eq!(normalise("AEIO-UBCD"), None, "vowels never appear");
    }

    #[test]
    fn polling_rules() {
        let code = |p: Poll| match p {
            Poll::Wait { error, .. } | Poll::Refuse(error) => error.code,
            Poll::Ready => panic!("ready"),
        };
        let mut g = grant(DeviceStatus::Pending);
        assert_eq!(code(poll(&g, "tv", 10)), ErrorCode::AuthorizationPending);
        g.last_poll = Some(10);
        assert!(matches!(
            poll(&g, "tv", 12),
            Poll::Wait {
                slow_down: true,
                ..
            }
        ));
        assert_eq!(code(poll(&g, "tv", 12)), ErrorCode::SlowDown);
        assert_eq!(code(poll(&g, "tv", 15)), ErrorCode::AuthorizationPending);
        assert_eq!(code(poll(&g, "tv", 1000)), ErrorCode::ExpiredToken);
        assert_eq!(code(poll(&g, "other", 15)), ErrorCode::InvalidGrant);
        assert_eq!(
            code(poll(&grant(DeviceStatus::Denied), "tv", 15)),
            ErrorCode::AccessDenied
        );
        let approved = DeviceStatus::Approved {
            user_id: "u".into(),
            auth_time: 1,
            amr: vec![],
            acr: "1".into(),
            sid: "s".into(),
        };
        assert_eq!(poll(&grant(approved.clone()), "tv", 15), Poll::Ready);
        let mut used = grant(approved);
        used.used = true;
        assert_eq!(code(poll(&used, "tv", 15)), ErrorCode::InvalidGrant);
    }
}
