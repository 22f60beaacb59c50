//! Signing keys and compact JWS (RFC 7515) for ID tokens and access tokens.
//!
//! SPEC §1: every key operation goes through aws-lc-rs, which is constant-time: key
//! generation, the public JWKs, RS256 and ES256 signing and verification. Verification of our own
//! tokens picks the key by `kid` and takes the algorithm from the key, never the header.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, ParsedPublicKey, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};

use crate::model::{Alg, KeyRecord, KeyState};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    Malformed,
    UnknownKey,
    BadSignature,
    Key(String),
}

impl std::fmt::Display for JwtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtError::Malformed => f.write_str("malformed JWT"),
            JwtError::UnknownKey => f.write_str("unknown signing key"),
            JwtError::BadSignature => f.write_str("signature does not verify"),
            JwtError::Key(e) => write!(f, "signing key: {e}"),
        }
    }
}

impl std::error::Error for JwtError {}

/// A verified JWS: its header and its claims.
pub type Verified = (Map<String, Value>, Map<String, Value>);

enum Private {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// One loaded key.
pub struct SigningKey {
    pub kid: String,
    pub alg: Alg,
    pub state: KeyState,
    pub created_at: i64,
    private: Private,
    /// Parsed once: verifying with a key parsed per call cost more than the check.
    public: ParsedPublicKey,
    jwk: Value,
}

/// The signing keys in memory: one active key per algorithm plus retired ones that still
/// verify and stay in the JWKS.
pub struct KeySet {
    keys: Vec<SigningKey>,
    rng: SystemRandom,
}

/// Generates a new key record: RSA-2048 or P-256, as PKCS#8.
pub fn generate(alg: Alg, now: i64) -> Result<KeyRecord, JwtError> {
    use aws_lc_rs::encoding::AsDer as _;
    let failed = |what: &str| JwtError::Key(format!("{what} key generation failed"));
    let der: Vec<u8> = match alg {
        Alg::RS256 => {
            let key = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| failed("RSA"))?;
            key.as_der().map_err(|_| failed("RSA"))?.as_ref().to_vec()
        }
        Alg::ES256 => {
            let key = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                .map_err(|_| failed("P-256"))?;
            key.to_pkcs8v1()
                .map_err(|_| failed("P-256"))?
                .as_ref()
                .to_vec()
        }
    };
    let pkcs8_b64 = STANDARD.encode(&der);
    let loaded = load(&KeyRecord {
        kid: String::new(),
        alg,
        pkcs8_b64: pkcs8_b64.clone(),
        created_at: now,
        state: KeyState::Active,
        retired_at: None,
    })?;
    Ok(KeyRecord {
        kid: thumbprint(&loaded.jwk),
        alg,
        pkcs8_b64,
        created_at: now,
        state: KeyState::Active,
        retired_at: None,
    })
}

/// A rotation: a new active key for `alg` and the previous active ones retired at `now`.
/// Returns every record to store.
pub fn rotate(records: &[KeyRecord], alg: Alg, now: i64) -> Result<Vec<KeyRecord>, JwtError> {
    let mut out: Vec<KeyRecord> = records
        .iter()
        .filter(|k| k.alg == alg && k.state == KeyState::Active)
        .map(|k| KeyRecord {
            state: KeyState::Retired,
            retired_at: Some(now),
            ..k.clone()
        })
        .collect();
    out.push(generate(alg, now)?);
    Ok(out)
}

/// Whether a retired key can leave the JWKS: every token it signed has expired.
/// `longest_token` is the longest lifetime of anything signed (ID, access, logout tokens).
pub fn retired_long_enough(k: &KeyRecord, now: i64, longest_token: i64) -> bool {
    k.state == KeyState::Retired && k.retired_at.is_some_and(|t| now > t + longest_token + 60)
}

/// Whether an active key is due for automatic rotation.
pub fn due_for_rotation(k: &KeyRecord, now: i64, period: Option<i64>) -> bool {
    k.state == KeyState::Active && period.is_some_and(|p| now - k.created_at >= p)
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url): a stable, unique `kid`.
fn thumbprint(jwk: &Value) -> String {
    let canonical = match jwk["kty"].as_str() {
        Some("RSA") => format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            jwk["e"].as_str().unwrap_or(""),
            jwk["n"].as_str().unwrap_or("")
        ),
        _ => format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap_or(""),
            jwk["y"].as_str().unwrap_or("")
        ),
    };
    URL_SAFE_NO_PAD.encode(super::sha256(canonical.as_bytes()))
}

/// A big-endian integer without leading zero bytes (JWK `n` and `e`, RFC 7518 §6.3.1).
fn unsigned(b: &[u8]) -> &[u8] {
    let first = b
        .iter()
        .position(|&x| x != 0)
        .unwrap_or(b.len().saturating_sub(1));
    &b[first..]
}

fn load(rec: &KeyRecord) -> Result<SigningKey, JwtError> {
    let der = STANDARD
        .decode(&rec.pkcs8_b64)
        .map_err(|_| JwtError::Key("stored key is not base64".into()))?;
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let (private, public, mut jwk) = match rec.alg {
        Alg::RS256 => {
            let pair = RsaKeyPair::from_pkcs8(&der).map_err(|e| JwtError::Key(e.to_string()))?;
            let parts = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
            let jwk =
                json!({"kty": "RSA", "n": b64(unsigned(&parts.n)), "e": b64(unsigned(&parts.e))});
            let public = ParsedPublicKey::new(
                &signature::RSA_PKCS1_2048_8192_SHA256,
                pair.public_key().as_ref(),
            )
            .map_err(|e| JwtError::Key(e.to_string()))?;
            (Private::Rsa(pair), public, jwk)
        }
        Alg::ES256 => {
            let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                .map_err(|e| JwtError::Key(e.to_string()))?;
            let point = pair.public_key().as_ref().to_vec();
            // Uncompressed SEC1 point: 0x04 || x (32) || y (32).
            if point.len() != 65 || point[0] != 4 {
                return Err(JwtError::Key("unexpected P-256 public key encoding".into()));
            }
            let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])});
            let public = ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point)
                .map_err(|e| JwtError::Key(e.to_string()))?;
            (Private::Ec(pair), public, jwk)
        }
    };
    let kid = if rec.kid.is_empty() {
        thumbprint(&jwk)
    } else {
        rec.kid.clone()
    };
    if let Value::Object(o) = &mut jwk {
        o.insert("kid".into(), json!(kid));
        o.insert("use".into(), json!("sig"));
        o.insert("alg".into(), json!(rec.alg.as_str()));
    }
    Ok(SigningKey {
        kid,
        alg: rec.alg,
        state: rec.state,
        created_at: rec.created_at,
        private,
        public,
        jwk,
    })
}

impl KeySet {
    /// Loads stored keys. Fails if a record cannot be parsed.
    pub fn from_records(records: &[KeyRecord]) -> Result<KeySet, JwtError> {
        let mut keys = records.iter().map(load).collect::<Result<Vec<_>, _>>()?;
        // A stable JWKS order: RS256 first (some RPs try the first key), newest first.
        keys.sort_by_key(|k| {
            (
                k.alg != Alg::RS256,
                std::cmp::Reverse(k.created_at),
                k.kid.clone(),
            )
        });
        Ok(KeySet {
            keys,
            rng: SystemRandom::new(),
        })
    }

    /// The active key for an algorithm (the newest, if several are marked active).
    fn active(&self, alg: Alg) -> Option<&SigningKey> {
        self.keys
            .iter()
            .filter(|k| k.alg == alg && k.state == KeyState::Active)
            .max_by_key(|k| k.created_at)
    }

    pub fn has_active(&self, alg: Alg) -> bool {
        self.active(alg).is_some()
    }

    pub fn keys(&self) -> impl Iterator<Item = &SigningKey> {
        self.keys.iter()
    }

    /// RFC 7517 JWK Set with every public key (no private members).
    pub fn jwks(&self) -> Value {
        json!({ "keys": self.keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
    }

    /// Signs `claims` as a compact JWS with the active key of `alg`; `typ` is `JWT` for ID
    /// tokens and `at+jwt` for access tokens (RFC 9068 §2.1).
    pub fn sign(
        &self,
        alg: Alg,
        typ: &str,
        claims: &Map<String, Value>,
    ) -> Result<String, JwtError> {
        let key = self.active(alg).ok_or(JwtError::UnknownKey)?;
        let header = json!({"alg": alg.as_str(), "kid": key.kid, "typ": typ});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string())
        );
        let sig = match &key.private {
            Private::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &self.rng,
                    signing_input.as_bytes(),
                    &mut sig,
                )
                .map_err(|_| JwtError::Key("RSA signing failed".into()))?;
                sig
            }
            Private::Ec(pair) => pair
                .sign(&self.rng, signing_input.as_bytes())
                .map_err(|_| JwtError::Key("ECDSA signing failed".into()))?
                .as_ref()
                .to_vec(),
        };
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    /// Verifies a compact JWS signed by one of our keys. Returns the header and claims.
    /// `alg: none`, unknown kids and algorithms that differ from the key's are refused.
    pub fn verify(&self, token: &str) -> Result<Verified, JwtError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let decode_obj = |x: &str| -> Result<Map<String, Value>, JwtError> {
            let bytes = URL_SAFE_NO_PAD.decode(x).map_err(|_| JwtError::Malformed)?;
            match serde_json::from_slice(&bytes) {
                Ok(Value::Object(m)) => Ok(m),
                _ => Err(JwtError::Malformed),
            }
        };
        let header = decode_obj(h)?;
        let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?;
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .ok_or(JwtError::UnknownKey)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(JwtError::UnknownKey)?;
        if header.get("alg").and_then(Value::as_str) != Some(key.alg.as_str()) {
            return Err(JwtError::BadSignature);
        }
        let input = &token.as_bytes()[..h.len() + 1 + p.len()];
        let ok = key.public.verify_sig(input, &sig).is_ok();
        if !ok {
            return Err(JwtError::BadSignature);
        }
        Ok((header, decode_obj(p)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> KeySet {
        let recs = vec![
            generate(Alg::RS256, 1).unwrap(),
            generate(Alg::ES256, 1).unwrap(),
        ];
        KeySet::from_records(&recs).unwrap()
    }

    #[test]
    fn sign_and_verify_both_algorithms() {
        let ks = set();
        let mut claims = Map::new();
        claims.insert("sub".into(), json!("u"));
        for alg in [Alg::RS256, Alg::ES256] {
            let t = ks.sign(alg, "JWT", &claims).unwrap();
            let (h, c) = ks.verify(&t).unwrap();
            assert_eq!(h["alg"], alg.as_str());
            assert_eq!(c["sub"], "u");
            // Tampered payload fails.
            let mut parts: Vec<&str> = t.split('.').collect();
            let forged = URL_SAFE_NO_PAD.encode(r#"{"sub":"admin"}"#);
            parts[1] = &forged;
            assert_eq!(ks.verify(&parts.join(".")), Err(JwtError::BadSignature));
        }
    }

    #[test]
    fn alg_none_and_alg_swaps_are_refused() {
        let ks = set();
        let kid = ks.active(Alg::RS256).unwrap().kid.clone();
        let h = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","kid":"{kid}"}}"#));
        let p = URL_SAFE_NO_PAD.encode(r#"{"sub":"u"}"#);
        assert!(ks.verify(&format!("{h}.{p}.")).is_err());
        let h = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#));
        assert!(ks.verify(&format!("{h}.{p}.AAAA")).is_err());
        assert_eq!(ks.verify("a.b"), Err(JwtError::Malformed));
        assert_eq!(ks.verify("a.b.c.d"), Err(JwtError::Malformed));
    }

    #[test]
    fn jwks_has_unique_kids_and_no_private_parts() {
        let ks = set();
        let jwks = ks.jwks();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        assert_ne!(keys[0]["kid"], keys[1]["kid"]);
        for k in keys {
            for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
                assert!(k.get(private).is_none());
            }
            assert_eq!(k["use"], "sig");
        }
    }

    #[test]
    fn rotation_retires_the_old_key_and_signs_with_the_new_one() {
        let first = generate(Alg::ES256, 10).unwrap();
        let rotated = rotate(std::slice::from_ref(&first), Alg::ES256, 20).unwrap();
        assert_eq!(rotated.len(), 2);
        assert_eq!(rotated[0].kid, first.kid);
        assert_eq!(rotated[0].state, KeyState::Retired);
        assert_eq!(rotated[0].retired_at, Some(20));
        let ks = KeySet::from_records(&rotated).unwrap();
        let old = KeySet::from_records(std::slice::from_ref(&first)).unwrap();
        let claims = Map::new();
        let by_old = old.sign(Alg::ES256, "JWT", &claims).unwrap();
        let by_new = ks.sign(Alg::ES256, "JWT", &claims).unwrap();
        assert!(ks.verify(&by_old).is_ok(), "retired keys still verify");
        let (h, _) = ks.verify(&by_new).unwrap();
        assert_eq!(h["kid"], rotated[1].kid);
        assert_eq!(ks.jwks()["keys"].as_array().unwrap().len(), 2);
        assert!(!retired_long_enough(&rotated[0], 20 + 900, 900));
        assert!(retired_long_enough(&rotated[0], 20 + 900 + 61, 900));
        assert!(!retired_long_enough(&rotated[1], 1_000_000, 900));
        assert!(due_for_rotation(&rotated[1], 20 + 86_400, Some(86_400)));
        assert!(!due_for_rotation(&rotated[1], 20 + 86_399, Some(86_400)));
        assert!(!due_for_rotation(&rotated[1], 1_000_000, None));
    }

    #[test]
    fn reloaded_keys_keep_their_kid() {
        let rec = generate(Alg::ES256, 5).unwrap();
        let ks = KeySet::from_records(std::slice::from_ref(&rec)).unwrap();
        assert_eq!(ks.keys().next().unwrap().kid, rec.kid);
    }
}
