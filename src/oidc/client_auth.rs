//! RFC 7523 client assertions (private_key_jwt and client_secret_jwt, OIDC Core §9): the
//! claims a verified assertion must carry. Signature checking is in `keys::assertion`.

use serde_json::{Map, Value};

use super::{ErrorCode, OidcError};

/// RFC 7523 §2.2 client_assertion_type.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Assertions valid for longer than this are refused (they are meant to be short-lived).
pub const MAX_LIFETIME: i64 = 3600;
/// Clock skew tolerated on exp / nbf / iat.
pub const LEEWAY: i64 = 60;

fn invalid(d: &str) -> OidcError {
    OidcError::new(ErrorCode::InvalidClient, d)
}

/// `iss` of an assertion, read without verifying it (to find the client whose key must
/// then verify it).
pub fn unverified_issuer(assertion: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = assertion.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("iss")?.as_str().map(str::to_string)
}

/// RFC 7523 §3: iss = sub = client_id; aud names the server (issuer or the endpoint
/// called); exp in the future but not far; nbf/iat not in the future; a jti to make it
/// single use. Returns (jti, exp) for the replay check.
pub fn check_claims(
    c: &Map<String, Value>,
    client_id: &str,
    audiences: &[String],
    now: i64,
) -> Result<(String, i64), OidcError> {
    let s = |k: &str| c.get(k).and_then(Value::as_str);
    if s("iss") != Some(client_id) || s("sub") != Some(client_id) {
        return Err(invalid("the assertion's iss and sub must be the client_id"));
    }
    let aud_ok = match c.get("aud") {
        Some(Value::String(a)) => audiences.contains(a),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| audiences.iter().any(|x| x == a)),
        _ => false,
    };
    if !aud_ok {
        return Err(invalid("the assertion's aud is not this server"));
    }
    let exp = c
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| invalid("the assertion has no exp"))?;
    if exp + LEEWAY <= now {
        return Err(invalid("the assertion has expired"));
    }
    if exp > now + MAX_LIFETIME {
        return Err(invalid("the assertion is valid for too long"));
    }
    for k in ["nbf", "iat"] {
        if c.get(k)
            .and_then(Value::as_i64)
            .is_some_and(|t| t > now + LEEWAY)
        {
            return Err(invalid("the assertion is not valid yet"));
        }
    }
    let jti = s("jti")
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or_else(|| invalid("the assertion has no jti"))?;
    Ok((jti.to_string(), exp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn claim_rules() {
        let aud = vec![
            "https://op".to_string(),
            "https://op/api/v1/oauth/token".to_string(),
        ];
        let good = json!({"iss": "c", "sub": "c", "aud": "https://op/api/v1/oauth/token", "exp": 160, "jti": "j1", "iat": 100});
        assert_eq!(
            check_claims(&claims(good.clone()), "c", &aud, 100).unwrap(),
            ("j1".into(), 160)
        );
        let mut list = good.clone();
        list["aud"] = json!(["https://elsewhere", "https://op"]);
        assert!(check_claims(&claims(list), "c", &aud, 100).is_ok());
        let cases = [
            ("iss", json!("other")),
            ("sub", json!("other")),
            ("aud", json!("https://evil")),
            ("exp", json!(30)),
            ("exp", json!(100 + 7200)),
            ("nbf", json!(500)),
            ("jti", json!("")),
        ];
        for (k, v) in cases {
            let mut bad = good.clone();
            bad[k] = v;
            assert_eq!(
                check_claims(&claims(bad), "c", &aud, 100).unwrap_err().code,
                ErrorCode::InvalidClient,
                "{k}"
            );
        }
        let mut no_jti = good;
        no_jti.as_object_mut().unwrap().remove("jti");
        assert!(check_claims(&claims(no_jti), "c", &aud, 100).is_err());
    }

    #[test]
    fn issuer_is_read_before_verification() {
        use base64::Engine as _;
        let p = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"iss":"abc"}"#);
        assert_eq!(
            unverified_issuer(&format!("x.{p}.y")).as_deref(),
            Some("abc")
        );
        assert_eq!(unverified_issuer("garbage"), None);
    }
}
