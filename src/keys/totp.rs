//! Second factors: TOTP (RFC 6238, through `totp-rs`: SHA-1, six digits, 30-second steps,
//! the parameters every authenticator app understands) and single-use recovery codes.

use totp_rs::{Algorithm, TOTP};

/// RFC 6238 §5.2: one step of clock drift either way.
const SKEW_STEPS: i64 = 1;
const STEP_SECS: i64 = 30;
const DIGITS: usize = 6;
/// RFC 4226 §4 asks for at least 128 bits; 160 is the SHA-1 block-friendly size apps expect.
const SECRET_BYTES: usize = 20;
pub const RECOVERY_CODES: usize = 10;

/// A new random TOTP secret, base32 without padding (as authenticator apps take it).
pub fn new_secret() -> String {
    let bytes: [u8; SECRET_BYTES] = crate::clock::random_bytes();
    totp(bytes.to_vec()).map_or_else(String::new, |t| t.get_secret_base32())
}

fn totp(secret: Vec<u8>) -> Option<TOTP> {
    TOTP::new(Algorithm::SHA1, DIGITS, 0, STEP_SECS as u64, secret).ok()
}

fn decode(secret_b32: &str) -> Option<TOTP> {
    let bytes = totp_rs::Secret::Encoded(secret_b32.to_string())
        .to_bytes()
        .ok()?;
    totp(bytes)
}

/// The `otpauth://` URI an authenticator app scans (Google Authenticator key URI format).
pub fn otpauth_uri(secret_b32: &str, issuer: &str, account: &str) -> String {
    let enc = |s: &str| -> String {
        url::form_urlencoded::byte_serialize(s.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    };
    // A colon separates issuer and account in the label; neither may contain one.
    let issuer = issuer.replace(':', " ");
    let account = account.replace(':', " ");
    format!(
        "otpauth://totp/{}:{}?secret={secret_b32}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        enc(&issuer),
        enc(&account),
        enc(&issuer),
    )
}

/// The time step a code belongs to when it is valid at `now` (±1 step) and later than
/// `last_step`, the step of the last accepted code: a code is accepted once, and never
/// one older than a code already used.
pub fn verify(secret_b32: &str, code: &str, now: i64, last_step: i64) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = decode(secret_b32)?;
    let current = now.div_euclid(STEP_SECS);
    let mut found = None;
    // Every candidate is compared (no early exit), in constant time.
    for step in current - SKEW_STEPS..=current + SKEW_STEPS {
        let expected = t.generate(u64::try_from(step * STEP_SECS).ok()?);
        if super::ct_eq(expected.as_bytes(), code.as_bytes()) && step > last_step {
            found = Some(step);
        }
    }
    found
}

/// The code for `now` (tests and the enrolment page's self-check use it).
pub fn code_at(secret_b32: &str, now: i64) -> Option<String> {
    decode(secret_b32).map(|t| t.generate(u64::try_from(now).unwrap_or(0)))
}

/// Ten new recovery codes, `xxxxx-xxxxx` from an alphabet without look-alike characters
/// (50 bits each), and their SHA-256 hashes to store.
pub fn recovery_codes() -> (Vec<String>, Vec<String>) {
    let codes: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| crate::clock::random_readable(2))
        .collect();
    let hashes = codes.iter().map(|c| recovery_hash(c)).collect();
    (codes, hashes)
}

/// Recovery codes are compared case-insensitively, without spaces or dashes.
pub fn recovery_hash(code: &str) -> String {
    let norm: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    super::token_hash(&norm)
}

/// Whether `input` looks like a recovery code rather than a TOTP code.
pub fn looks_like_recovery(input: &str) -> bool {
    input.chars().filter(|c| c.is_ascii_alphanumeric()).count() == 10
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 secret "12345678901234567890", truncated to six digits.
    #[test]
    fn rfc6238_vectors() {
        let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
        for (time, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(code_at(secret, time).as_deref(), Some(code), "T={time}");
        }
    }

    #[test]
    fn one_step_of_drift_each_way_and_each_code_once() {
        let s = new_secret();
        assert_eq!(s.len(), 32, "160 bits in base32");
        let now = 1_700_000_015;
        let step = now / 30;
        let code = code_at(&s, now).unwrap();
        assert_eq!(verify(&s, &code, now, 0), Some(step));
        assert_eq!(
            verify(&s, &code, now, step),
            None,
            "a code is accepted once"
        );
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert_eq!(verify(&s, &spaced, now, 0), Some(step));
        let previous = code_at(&s, now - 30).unwrap();
        let next = code_at(&s, now + 30).unwrap();
        assert_eq!(verify(&s, &previous, now, 0), Some(step - 1));
        assert_eq!(verify(&s, &next, now, 0), Some(step + 1));
        assert_eq!(
            verify(&s, &previous, now, step),
            None,
            "never a code older than one used"
        );
        let far = code_at(&s, now + 90).unwrap();
        if far != code && far != next && far != previous {
            assert_eq!(verify(&s, &far, now, 0), None);
        }
        for bad in ["", "12345", "1234567", "abcdef", "12345x"] {
            assert_eq!(verify(&s, bad, now, 0), None, "{bad}");
        }
    }

    #[test]
    fn otpauth_uri_names_issuer_and_account() {
        let uri = otpauth_uri("ABC", "Acme Office", "bob");
        assert_eq!(
            uri,
            "otpauth://totp/Acme%20Office:bob?secret=ABC&issuer=Acme%20Office&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn recovery_codes_are_distinct_and_hashed() {
        let (codes, hashes) = recovery_codes();
        assert_eq!(codes.len(), 10);
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), 10);
        for (c, h) in codes.iter().zip(&hashes) {
            assert!(looks_like_recovery(c));
            assert_eq!(&recovery_hash(&c.to_uppercase().replace('-', " ")), h);
        }
        assert!(!looks_like_recovery("123456"));
    }
}
