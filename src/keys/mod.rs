//! Keys and secrets: signing keys and JWTs ([`signing`]), password hashing ([`password`]),
//! the [`Secret`] wrapper, hashing of random tokens for storage and constant-time
//! comparison. The only module that names a crypto crate; it knows nothing of HTTP or redb.

pub mod assertion;
pub mod password;
pub mod signing;
pub mod totp;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

pub use signing::{JwtError, KeySet};

/// A value that must not reach logs: zeroized on drop, `Debug` prints `Secret(..)`, no
/// `Display` or `Serialize`; [`Secret::expose`] is the only way in.
pub struct Secret<T: Zeroize>(T);

impl<T: Zeroize> Secret<T> {
    pub fn new(v: T) -> Self {
        Secret(v)
    }

    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Constant-time equality for secrets, PKCE values, CSRF tokens and hashes. Lengths are
/// not secret here (every compared value has a public, fixed format).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// SHA-256 of `bytes` (aws-lc-rs).
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The storage key of a random token (code, refresh token, session id): hex SHA-256.
/// The tokens carry 256 bits of entropy, so a fast hash is enough (RFC 9700 §4.14).
pub fn token_hash(token: &str) -> String {
    hex(&sha256(token.as_bytes()))
}

/// The AES-256-GCM key that [`seal_for_token`] derives from a random token (HKDF-SHA256):
/// only someone who presents the token again can open what was sealed for it, and the
/// store keeps only the token's hash.
fn token_key(token: &str) -> Option<aws_lc_rs::aead::LessSafeKey> {
    use aws_lc_rs::{aead, hkdf};
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"latchkey sealed for a token");
    let prk = salt.extract(token.as_bytes());
    let okm = prk.expand(&[b"aes-256-gcm"], &aead::AES_256_GCM).ok()?;
    let mut key = [0u8; 32];
    okm.fill(&mut key).ok()?;
    let k = aead::UnboundKey::new(&aead::AES_256_GCM, &key).ok();
    zeroize::Zeroize::zeroize(&mut key);
    Some(aead::LessSafeKey::new(k?))
}

/// Encrypts `plain` under a key derived from `token` (a fresh random nonce first).
pub fn seal_for_token(token: &str, plain: &[u8]) -> Option<Vec<u8>> {
    use aws_lc_rs::aead;
    let key = token_key(token)?;
    let nonce_bytes = crate::clock::random_bytes::<12>();
    let mut out = plain.to_vec();
    key.seal_in_place_append_tag(
        aead::Nonce::assume_unique_for_key(nonce_bytes),
        aead::Aad::empty(),
        &mut out,
    )
    .ok()?;
    let mut sealed = nonce_bytes.to_vec();
    sealed.extend_from_slice(&out);
    Some(sealed)
}

/// Decrypts what [`seal_for_token`] made for `token`; `None` for any other token or a
/// changed byte.
pub fn open_for_token(token: &str, sealed: &[u8]) -> Option<Vec<u8>> {
    use aws_lc_rs::aead;
    if sealed.len() < 12 {
        return None;
    }
    let key = token_key(token)?;
    let (nonce, body) = sealed.split_at(12);
    let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut body = body.to_vec();
    let plain = key
        .open_in_place(nonce, aead::Aad::empty(), &mut body)
        .ok()?;
    Some(plain.to_vec())
}

/// A short, non-reversible tag of a secret for log lines (first 8 hex digits of SHA-256).
pub fn log_tag(secret: &str) -> String {
    token_hash(secret)[..8].to_string()
}

/// OIDC Core §3.1.3.6 / §3.3.2.11: base64url of the left half of SHA-256 (the hash of
/// RS256 and ES256), for `at_hash` and `c_hash`.
pub fn half_hash(value: &str) -> String {
    let d = sha256(value.as_bytes());
    URL_SAFE_NO_PAD.encode(&d[..16])
}

/// How a generated client secret is stored: `sha256:<hex>`.
pub fn client_secret_hash(secret: &str) -> String {
    format!("sha256:{}", token_hash(secret))
}

pub fn is_sha256_secret_hash(h: &str) -> bool {
    h.strip_prefix("sha256:")
        .is_some_and(|x| x.len() == 64 && x.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `secret` matches a stored client secret hash. `sha256:` hashes compare in
/// constant time; argon2id PHC strings (declared clients) go through argon2.
pub fn verify_client_secret(secret: &str, stored: &str) -> bool {
    if let Some(hex_digest) = stored.strip_prefix("sha256:") {
        let computed = token_hash(secret);
        ct_eq(
            computed.as_bytes(),
            hex_digest.to_ascii_lowercase().as_bytes(),
        )
    } else {
        password::verify(secret, stored)
    }
}

/// Client secrets already verified against a slow (argon2id) hash, remembered as their
/// SHA-256 so a declared client pays the slow hash once, not on every token request.
/// An entry holds only while the stored hash is unchanged.
#[derive(Default)]
pub struct SecretCache(std::sync::Mutex<std::collections::HashMap<String, (String, String)>>);

impl SecretCache {
    pub fn matches(&self, client_id: &str, stored: &str, secret: &str) -> bool {
        let Ok(map) = self.0.lock() else { return false };
        map.get(client_id).is_some_and(|(h, digest)| {
            h == stored && ct_eq(digest.as_bytes(), token_hash(secret).as_bytes())
        })
    }

    pub fn remember(&self, client_id: &str, stored: &str, secret: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(
                client_id.to_string(),
                (stored.to_string(), token_hash(secret)),
            );
        }
    }
}

/// An HMAC-SHA256 key for tags the server checks later (CSRF tokens).
pub struct MacKey(aws_lc_rs::hmac::Key);

impl MacKey {
    pub fn new(secret: &[u8]) -> MacKey {
        MacKey(aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            secret,
        ))
    }

    /// A key for one purpose, derived from the server secret under `label`, so a tag
    /// made for one kind of cookie or token never verifies as another.
    pub fn derive(secret: &[u8], label: &str) -> MacKey {
        let parent = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
        MacKey::new(aws_lc_rs::hmac::sign(&parent, label.as_bytes()).as_ref())
    }

    /// base64url tag of `data`.
    pub fn tag(&self, data: &str) -> String {
        URL_SAFE_NO_PAD.encode(aws_lc_rs::hmac::sign(&self.0, data.as_bytes()).as_ref())
    }

    /// Constant-time check of a tag.
    pub fn verify(&self, data: &str, tag: &str) -> bool {
        ct_eq(self.tag(data).as_bytes(), tag.as_bytes())
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_sealed_for_a_token_opens_only_with_it() {
        let sealed = seal_for_token("token-a", b"the answer").unwrap();
        assert_eq!(open_for_token("token-a", &sealed).unwrap(), b"the answer");
        assert!(
            open_for_token("token-b", &sealed).is_none(),
            "another token"
        );
        let mut changed = sealed.clone();
        *changed.last_mut().unwrap() ^= 1;
        assert!(
            open_for_token("token-a", &changed).is_none(),
            "a changed byte"
        );
        assert!(open_for_token("token-a", &sealed[..5]).is_none());
        assert_ne!(
            seal_for_token("token-a", b"the answer").unwrap(),
            sealed,
            "a fresh nonce each time"
        );
    }

    #[test]
    fn secret_debug_hides_the_value() {
        let s = Secret::new(String::from("hunter2"));
        assert_eq!(format!("{s:?}"), "Secret(..)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn mac_tags_verify_only_for_their_data() {
        let k = MacKey::new(b"0123456789abcdef0123456789abcdef");
        let t = k.tag("cookie-value");
        assert!(k.verify("cookie-value", &t));
        assert!(!k.verify("other", &t));
        assert!(!MacKey::new(b"another key").verify("cookie-value", &t));
        let secret = b"0123456789abcdef0123456789abcdef";
        let (a, b) = (
            MacKey::derive(secret, "csrf"),
            MacKey::derive(secret, "trusted-browser"),
        );
        assert!(!b.verify("cookie-value", &a.tag("cookie-value")));
        assert!(MacKey::derive(secret, "csrf").verify("x", &a.tag("x")));
    }

    #[test]
    fn secret_cache_needs_the_same_secret_and_stored_hash() {
        let c = SecretCache::default();
        assert!(!c.matches("app", "$argon2id$x", "s"));
        c.remember("app", "$argon2id$x", "s");
        assert!(c.matches("app", "$argon2id$x", "s"));
        assert!(!c.matches("app", "$argon2id$x", "t"));
        assert!(
            !c.matches("app", "$argon2id$y", "s"),
            "a changed hash invalidates the entry"
        );
        assert!(!c.matches("other", "$argon2id$x", "s"));
    }

    #[test]
    fn ct_eq_basics() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
    }

    #[test]
    fn client_secret_round_trip() {
        let h = client_secret_hash("s3cret");
        assert!(is_sha256_secret_hash(&h));
        assert!(verify_client_secret("s3cret", &h));
        assert!(!verify_client_secret("s3cre", &h));
        assert!(verify_client_secret(
            "s3cret",
            &h.to_uppercase().replace("SHA256:", "sha256:")
        ));
    }

    #[test]
    fn half_hash_matches_oidc_example_shape() {
        // OIDC Core §A.3 example: at_hash of "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y".
        assert_eq!(
            half_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }
}
