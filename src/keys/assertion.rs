//! Signature checks of client assertions (RFC 7523): RS256 and ES256 with the client's
//! registered public keys and HS256 under a client secret, all with aws-lc-rs. `alg: none`
//! and any other algorithm are refused.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// What an assertion may be verified with.
pub enum ClientKeys<'a> {
    /// A JWK Set document (private_key_jwt).
    Jwks(&'a Value),
    /// The shared secret (client_secret_jwt).
    Secret(&'a str),
}

/// Smallest RSA modulus accepted for client keys.
const MIN_RSA_BITS: usize = 2048;

/// Verifies the signature and returns the claims.
pub fn verify(token: &str, keys: ClientKeys<'_>) -> Result<Map<String, Value>, String> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed JWT".into());
    };
    let object = |x: &str| -> Result<Map<String, Value>, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(x)
            .map_err(|_| "malformed JWT".to_string())?;
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err("malformed JWT".into()),
        }
    };
    let header = object(h)?;
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| "malformed signature".to_string())?;
    let input = &token.as_bytes()[..h.len() + 1 + p.len()];
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let kid = header.get("kid").and_then(Value::as_str);
    let ok = match (alg, keys) {
        ("HS256", ClientKeys::Secret(secret)) => {
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
            aws_lc_rs::hmac::verify(&key, input, &sig).is_ok()
        }
        ("RS256", ClientKeys::Jwks(jwks)) => {
            candidates(jwks, "RSA", "RS256", kid).any(|k| rsa_verify(k, input, &sig))
        }
        ("ES256", ClientKeys::Jwks(jwks)) => {
            candidates(jwks, "EC", "ES256", kid).any(|k| p256_verify(k, input, &sig))
        }
        _ => {
            return Err(format!(
                "assertion algorithm {alg:?} is not accepted for this client"
            ));
        }
    };
    if !ok {
        return Err("the assertion's signature does not verify".into());
    }
    object(p)
}

/// Keys of the set that may have signed: right type, usable for signatures, the right
/// algorithm if the key names one, and the header's kid if it gives one.
fn candidates<'a>(
    jwks: &'a Value,
    kty: &'a str,
    alg: &'a str,
    kid: Option<&'a str>,
) -> impl Iterator<Item = &'a Value> {
    jwks.get("keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |k| {
            let field = |f: &str| k.get(f).and_then(Value::as_str);
            field("kty") == Some(kty)
                && field("use").is_none_or(|u| u == "sig")
                && field("alg").is_none_or(|a| a == alg)
                && kid.is_none_or(|kid| field("kid") == Some(kid))
        })
}

fn member(k: &Value, name: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(k.get(name)?.as_str()?).ok()
}

fn rsa_verify(k: &Value, input: &[u8], sig: &[u8]) -> bool {
    use aws_lc_rs::signature;
    let (Some(n), Some(e)) = (member(k, "n"), member(k, "e")) else {
        return false;
    };
    // RSA_PKCS1_2048_8192_SHA256 refuses a modulus under 2048 bits too; this says why.
    let bits = n.iter().skip_while(|&&b| b == 0).count() * 8;
    if bits < MIN_RSA_BITS {
        return false;
    }
    signature::RsaPublicKeyComponents { n: &n, e: &e }
        .verify(&signature::RSA_PKCS1_2048_8192_SHA256, input, sig)
        .is_ok()
}

fn p256_verify(k: &Value, input: &[u8], sig: &[u8]) -> bool {
    use aws_lc_rs::signature::{self, UnparsedPublicKey};
    if k.get("crv").and_then(Value::as_str) != Some("P-256") {
        return false;
    }
    let (Some(x), Some(y)) = (member(k, "x"), member(k, "y")) else {
        return false;
    };
    if x.len() != 32 || y.len() != 32 {
        return false;
    }
    // Uncompressed SEC1 point: 0x04 || x || y. JWS ES256 signatures are r || s (64 bytes).
    let point = [&[4u8][..], &x, &y].concat();
    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point)
        .verify(input, sig)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeySet;
    use crate::keys::signing::generate;
    use crate::model::Alg;

    fn claims() -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("iss".into(), "c".into());
        m
    }

    #[test]
    fn rs256_and_es256_with_the_clients_jwks() {
        let client_keys = KeySet::from_records(&[
            generate(Alg::RS256, 0).unwrap(),
            generate(Alg::ES256, 0).unwrap(),
        ])
        .unwrap();
        let jwks = client_keys.jwks();
        let strangers = KeySet::from_records(&[generate(Alg::ES256, 0).unwrap()]).unwrap();
        for alg in [Alg::RS256, Alg::ES256] {
            let t = client_keys.sign(alg, "JWT", &claims()).unwrap();
            assert_eq!(
                verify(&t, ClientKeys::Jwks(&jwks)).unwrap()["iss"],
                "c",
                "{alg:?}"
            );
            assert!(
                verify(&t, ClientKeys::Secret("s")).is_err(),
                "an asymmetric assertion needs keys"
            );
        }
        let forged = strangers.sign(Alg::ES256, "JWT", &claims()).unwrap();
        assert!(verify(&forged, ClientKeys::Jwks(&jwks)).is_err());
    }

    #[test]
    fn hs256_with_the_secret_and_nothing_for_none() {
        let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#);
        let p = URL_SAFE_NO_PAD.encode(r#"{"iss":"c"}"#);
        let input = format!("{h}.{p}");
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"shared secret");
        let sig = URL_SAFE_NO_PAD.encode(aws_lc_rs::hmac::sign(&key, input.as_bytes()));
        let token = format!("{input}.{sig}");
        assert!(verify(&token, ClientKeys::Secret("shared secret")).is_ok());
        assert!(verify(&token, ClientKeys::Secret("other secret")).is_err());
        let jwks = serde_json::json!({"keys": []});
        assert!(
            verify(&token, ClientKeys::Jwks(&jwks)).is_err(),
            "HS256 never with public keys"
        );
        let none = format!("{}.{p}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
        assert!(verify(&none, ClientKeys::Secret("shared secret")).is_err());
    }
}
