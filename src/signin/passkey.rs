//! Passkey rules (SPEC §10) that need no browser: what a passkey sign-in proves (`amr`,
//! `acr` per RFC 8176), the names and number of passkeys, and how a refused ceremony is
//! recorded.

use serde_json::Value;

use super::Factors;
use crate::oidc::authorize::{ACR_ONE_FACTOR, ACR_TWO_FACTOR};

/// Passkeys and security keys one user may hold.
pub const MAX_PER_USER: usize = 20;

/// Characters kept of the name a user gives a passkey.
pub const NAME_MAX: usize = 64;

/// What a verified assertion showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Use {
    /// The authenticator verified the user (PIN or biometric): a second factor on the
    /// key itself.
    pub user_verified: bool,
    /// The credential may be copied to other devices (a synced passkey).
    pub backup_eligible: bool,
}

impl Use {
    /// RFC 8176: `hwk` for a key bound to its device, `swk` for one that can be synced;
    /// `user` for the presence test every assertion carries; `mfa` when the key also
    /// verified the user, which makes it two factors (possession and PIN or biometric):
    /// such a sign-in satisfies `two_factor` clients on its own.
    pub fn factors(self) -> Factors {
        match (self.user_verified, self.backup_eligible) {
            (true, false) => Factors {
                amr: &["hwk", "user", "mfa"],
                acr: ACR_TWO_FACTOR,
            },
            (true, true) => Factors {
                amr: &["swk", "user", "mfa"],
                acr: ACR_TWO_FACTOR,
            },
            (false, false) => Factors {
                amr: &["hwk", "user"],
                acr: ACR_ONE_FACTOR,
            },
            (false, true) => Factors {
                amr: &["swk", "user"],
                acr: ACR_ONE_FACTOR,
            },
        }
    }
}

/// The name a passkey is stored under: what the user typed, trimmed, without control
/// characters and at most [`NAME_MAX`] characters; a dated default when empty.
pub fn name(typed: &str, now: i64) -> String {
    let clean: String = typed
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(NAME_MAX)
        .collect();
    if clean.trim().is_empty() {
        let day = time::OffsetDateTime::from_unix_timestamp(now)
            .map(|d| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()))
            .unwrap_or_default();
        format!("Passkey added {day}")
    } else {
        clean.trim().to_string()
    }
}

/// A stored credential id (base64url) as bytes.
pub fn credential_id(id: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(id)
        .ok()
}

/// How a credential id (or a user handle) is stored and compared: base64url.
pub fn encode_id(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The WebAuthn user handle of a user: the 16 bytes of a Latchkey user id (ids are 16
/// random bytes, base64url), so a handle leads back to its user without a search
/// ([`encode_id`] of the handle is the id). `None` for an id made otherwise, which
/// cannot hold passkeys.
pub fn user_handle(user_id: &str) -> Option<webauthn_rs::prelude::Uuid> {
    Some(webauthn_rs::prelude::Uuid::from_bytes(
        credential_id(user_id)?.try_into().ok()?,
    ))
}

/// A short tag of a credential id for the audit log and the server log.
pub fn short(id: &str) -> String {
    id.chars().take(8).collect()
}

/// Asks the authenticator for a discoverable credential (a passkey that signs in without
/// a username): webauthn-rs asks for none by default. `options` is the JSON sent to the
/// browser; its `publicKey.authenticatorSelection` is set in place.
pub fn ask_for_discoverable(options: &mut Value) {
    if let Some(public_key) = options.get_mut("publicKey").and_then(Value::as_object_mut) {
        let selection = public_key
            .entry("authenticatorSelection")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(s) = selection.as_object_mut() {
            s.insert("residentKey".into(), "required".into());
            s.insert("requireResidentKey".into(), true.into());
            s.insert("userVerification".into(), "required".into());
        }
    }
}

/// Whether a credential updated after a sign-in may replace the stored one (both as
/// webauthn-rs serialises them). Two sign-ins at once are each verified against the same
/// stored copy; the one with the lower signature counter must not overwrite the higher,
/// or a key that went back would pass the next check.
pub fn may_replace(stored: &Value, updated: &Value) -> bool {
    let counter = |v: &Value| v["cred"]["counter"].as_u64().unwrap_or(0);
    counter(updated) >= counter(stored)
}

/// Why an assertion was refused, as far as the audit log needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The signature counter did not go up: the key may have been cloned (WebAuthn §6.1.1).
    CounterWentBack,
    /// The backup-eligible flag changed since registration, which WebAuthn forbids.
    BackupFlagsChanged,
    /// Anything else: a wrong origin or RP ID, a stale challenge, a bad signature.
    Other,
}

impl Refusal {
    pub fn audit_kind(self) -> &'static str {
        match self {
            Refusal::CounterWentBack => "passkey.counter_regressed",
            Refusal::BackupFlagsChanged => "passkey.flags_inconsistent",
            Refusal::Other => "passkey.failure",
        }
    }
}

/// Sorts a webauthn-rs error into a [`Refusal`].
pub fn assertion_refusal(e: &webauthn_rs::prelude::WebauthnError) -> Refusal {
    use webauthn_rs::prelude::WebauthnError as E;
    match e {
        E::CredentialPossibleCompromise => Refusal::CounterWentBack,
        E::CredentialBackupEligibilityInconsistent | E::CredentialMayNotBeHardwareBound => {
            Refusal::BackupFlagsChanged
        }
        _ => Refusal::Other,
    }
}

/// What the account page says when a new passkey is refused.
pub fn registration_refusal(e: &webauthn_rs::prelude::WebauthnError) -> &'static str {
    use webauthn_rs::prelude::WebauthnError as E;
    match e {
        E::UserNotVerified => "The passkey did not verify you (PIN or fingerprint). Try again.",
        E::InvalidRPOrigin | E::InvalidRPIDHash => {
            "The passkey was made for another site. Use this site's address."
        }
        _ => "The passkey could not be added. Try again.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_passkey_proves() {
        let f = |user_verified, backup_eligible| {
            Use {
                user_verified,
                backup_eligible,
            }
            .factors()
        };
        assert_eq!(f(true, false).amr, ["hwk", "user", "mfa"]);
        assert_eq!(f(true, false).acr, ACR_TWO_FACTOR);
        assert_eq!(f(true, true).amr, ["swk", "user", "mfa"]);
        assert_eq!(f(false, false).amr, ["hwk", "user"]);
        assert_eq!(f(false, true).acr, ACR_ONE_FACTOR);
    }

    #[test]
    fn turning_off_the_authenticator_app_keeps_passkeys() {
        let mut mfa = crate::model::Mfa {
            totp_secret: Some("JBSWY3DPEHPK3PXP".into()),
            recovery_hashes: vec!["h".into()],
            passkeys: vec![crate::model::PasskeyRecord {
                id: "cred".into(),
                name: "Laptop".into(),
                kind: crate::model::PasskeyKind::Passkey,
                created_at: 1,
                last_used: 0,
                credential: serde_json::json!({}),
            }],
            ..Default::default()
        };
        mfa.turn_off_codes();
        assert!(!mfa.enrolled() && mfa.recovery_hashes.is_empty());
        assert_eq!(mfa.passkeys.len(), 1);
    }

    #[test]
    fn a_user_handle_is_the_ids_bytes() {
        let id = "k2PpRSm0Nq1xEtyv3fX6Hg";
        let handle = user_handle(id).unwrap();
        assert_eq!(encode_id(handle.as_bytes()), id);
        assert_eq!(user_handle("1"), None, "not 16 bytes");
        assert_eq!(user_handle("not base64!"), None);
    }

    #[test]
    fn the_higher_counter_is_kept() {
        let at = |n: u64| serde_json::json!({"cred": {"counter": n, "backup_state": false}});
        assert!(may_replace(&at(2), &at(3)));
        assert!(may_replace(&at(0), &at(0)), "synced passkeys count nothing");
        assert!(!may_replace(&at(5), &at(4)));
    }

    #[test]
    fn passkey_names() {
        // 2026-12-04
        let now = 1_796_342_400;
        assert_eq!(name("  Laptop  ", now), "Laptop");
        assert_eq!(name("", now), "Passkey added 2026-12-04");
        assert_eq!(name("a\u{7}b", now), "ab");
        assert_eq!(name(&"x".repeat(200), now).chars().count(), NAME_MAX);
    }

    #[test]
    fn registration_asks_for_a_discoverable_credential() {
        let mut v = serde_json::json!({"publicKey": {"authenticatorSelection": {
            "residentKey": "discouraged", "requireResidentKey": false,
            "userVerification": "required"}}});
        ask_for_discoverable(&mut v);
        let s = &v["publicKey"]["authenticatorSelection"];
        assert_eq!(s["residentKey"], "required");
        assert_eq!(s["requireResidentKey"], true);
        let mut bare = serde_json::json!({"publicKey": {}});
        ask_for_discoverable(&mut bare);
        assert_eq!(
            bare["publicKey"]["authenticatorSelection"]["residentKey"],
            "required"
        );
    }

    #[test]
    fn refusals_the_audit_log_tells_apart() {
        use webauthn_rs::prelude::WebauthnError as E;
        assert_eq!(
            assertion_refusal(&E::CredentialPossibleCompromise),
            Refusal::CounterWentBack
        );
        assert_eq!(
            assertion_refusal(&E::CredentialBackupEligibilityInconsistent),
            Refusal::BackupFlagsChanged
        );
        assert_eq!(assertion_refusal(&E::InvalidRPOrigin), Refusal::Other);
        assert_eq!(assertion_refusal(&E::MismatchedChallenge), Refusal::Other);
    }
}
