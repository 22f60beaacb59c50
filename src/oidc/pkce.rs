//! RFC 7636 (PKCE) with the S256 method only: `plain` gives no protection when the
//! authorization request leaks, so it is refused (RFC 9700 §2.1.1).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::OidcError;

/// RFC 7636 §4.1: code_verifier = 43*128unreserved.
pub fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len()) && v.bytes().all(is_unreserved)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Checks the authorization request's `code_challenge` / `code_challenge_method`.
/// Returns the challenge to bind to the code, or `None` when PKCE was not used.
pub fn check_challenge(
    challenge: Option<&str>,
    method: Option<&str>,
    required: bool,
) -> Result<Option<String>, OidcError> {
    match (challenge, method) {
        (None, None) if required => Err(OidcError::invalid_request(
            "code_challenge is required for this client (PKCE with S256)",
        )),
        (None, None) => Ok(None),
        (None, Some(_)) => Err(OidcError::invalid_request(
            "code_challenge_method without code_challenge",
        )),
        // RFC 7636 §4.3: a missing method means `plain`, which is refused.
        (Some(_), None) | (Some(_), Some("plain")) => Err(OidcError::invalid_request(
            "code_challenge_method must be S256; plain is not supported",
        )),
        (Some(c), Some("S256")) => {
            // An S256 challenge is the base64url of a SHA-256 digest: 43 characters.
            if c.len() == 43
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                Ok(Some(c.to_string()))
            } else {
                Err(OidcError::invalid_request(
                    "code_challenge is not a base64url SHA-256 value",
                ))
            }
        }
        (Some(_), Some(_)) => Err(OidcError::invalid_request(
            "unsupported code_challenge_method",
        )),
    }
}

/// RFC 7636 §4.6: BASE64URL(SHA256(code_verifier)) == code_challenge, compared in
/// constant time.
pub fn verify(verifier: &str, challenge: &str) -> bool {
    if !valid_verifier(verifier) {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(crate::keys::sha256(verifier.as_bytes()));
    crate::keys::ct_eq(computed.as_bytes(), challenge.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc_7636_appendix_b_vector() {
        assert!(verify(VERIFIER, CHALLENGE));
        assert!(!verify(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",
            CHALLENGE
        ));
    }

    #[test]
    fn verifier_charset_and_length() {
        assert!(valid_verifier(&"a".repeat(43)));
        assert!(valid_verifier(&format!("{}.~-_", "a".repeat(124))));
        assert!(!valid_verifier(&"a".repeat(42)));
        assert!(!valid_verifier(&"a".repeat(129)));
        assert!(!valid_verifier(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn challenge_rules() {
        assert_eq!(check_challenge(None, None, false), Ok(None));
        assert!(check_challenge(None, None, true).is_err());
        assert!(check_challenge(Some(CHALLENGE), None, false).is_err());
        assert!(check_challenge(Some(CHALLENGE), Some("plain"), false).is_err());
        assert!(check_challenge(Some("short"), Some("S256"), false).is_err());
        assert!(check_challenge(None, Some("S256"), false).is_err());
        assert_eq!(
            check_challenge(Some(CHALLENGE), Some("S256"), true),
            Ok(Some(CHALLENGE.to_string()))
        );
    }
}
