//! Client authentication at the token endpoint and its neighbours (RFC 6749 §2.3): what
//! the client presented (Basic, form, or an RFC 7523 assertion), whether that method suits
//! the registered client, and the claims a verified assertion must carry
//! (private_key_jwt and client_secret_jwt, OIDC Core §9). Secrets and signatures are
//! checked by the caller through `keys`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use crate::model::{AuthMethod, Client};

use super::params::{Duplicate, Params};
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

/// Credentials as the client presented them.
#[derive(PartialEq)]
pub struct Presented {
    pub client_id: String,
    pub secret: Option<String>,
    /// An RFC 7523 client assertion (its method is decided by the registered client).
    pub assertion: Option<String>,
    pub method: AuthMethod,
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presented")
            .field("client_id", &self.client_id)
            .field("secret", &self.secret.as_ref().map(|_| ".."))
            .field("method", &self.method)
            .finish()
    }
}

impl Drop for Presented {
    fn drop(&mut self) {
        if let Some(s) = self.secret.as_mut() {
            zeroize::Zeroize::zeroize(s);
        }
    }
}

/// RFC 6749 §2.3.1: HTTP Basic (with form-urlencoded id and secret inside the base64),
/// or client_id/client_secret in the body, or client_id alone for public clients. Using
/// more than one method is an error.
pub fn presented_client(
    authorization: Option<&str>,
    form: &Params,
) -> Result<Presented, OidcError> {
    let dup = |d: Duplicate| OidcError::invalid_request(d.to_string());
    let form_id = form.get("client_id").map_err(dup)?;
    let form_secret = form.get("client_secret").map_err(dup)?;
    let assertion_type = form.get("client_assertion_type").map_err(dup)?;
    let assertion = form.get("client_assertion").map_err(dup)?;
    if assertion.is_some() || assertion_type.is_some() {
        if authorization.is_some() || form_secret.is_some() {
            return Err(OidcError::invalid_request(
                "more than one client authentication method",
            ));
        }
        if assertion_type != Some(JWT_BEARER) {
            return Err(invalid("unsupported client_assertion_type"));
        }
        let assertion = assertion.ok_or_else(|| invalid("client_assertion is missing"))?;
        let id =
            unverified_issuer(assertion).ok_or_else(|| invalid("malformed client_assertion"))?;
        // RFC 7523 §3 with RFC 6749 §5.2: an assertion issued by anyone but the client
        // is a failed client authentication like any other.
        if form_id.is_some_and(|f| f != id) {
            return Err(invalid("the assertion's issuer is not the client"));
        }
        return Ok(Presented {
            client_id: id,
            secret: None,
            assertion: Some(assertion.to_string()),
            method: AuthMethod::PrivateKeyJwt,
        });
    }
    if let Some(header) = authorization {
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(invalid("unsupported Authorization scheme"));
        }
        if form_secret.is_some() {
            return Err(OidcError::invalid_request(
                "more than one client authentication method",
            ));
        }
        let raw = STANDARD
            .decode(rest.trim())
            .map_err(|_| invalid("malformed Basic credentials"))?;
        let text = String::from_utf8(raw).map_err(|_| invalid("malformed Basic credentials"))?;
        let (id, secret) = text
            .split_once(':')
            .ok_or_else(|| invalid("malformed Basic credentials"))?;
        let id = form_decode(id);
        let secret = form_decode(secret);
        if id.is_empty() {
            return Err(invalid("malformed Basic credentials"));
        }
        if form_id.is_some_and(|f| f != id) {
            return Err(OidcError::invalid_request(
                "client_id in the body differs from the Authorization header",
            ));
        }
        return Ok(Presented {
            client_id: id,
            secret: Some(secret),
            assertion: None,
            method: AuthMethod::ClientSecretBasic,
        });
    }
    let id = form_id.ok_or_else(|| invalid("client authentication is required"))?;
    match form_secret {
        Some(s) => Ok(Presented {
            client_id: id.into(),
            secret: Some(s.into()),
            assertion: None,
            method: AuthMethod::ClientSecretPost,
        }),
        None => Ok(Presented {
            client_id: id.into(),
            secret: None,
            assertion: None,
            method: AuthMethod::None,
        }),
    }
}

/// application/x-www-form-urlencoded decoding of one component (RFC 6749 Appendix B).
fn form_decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Whether the presented method suits the client: public clients send no secret; clients
/// registered for an assertion method must send an assertion; other confidential clients
/// send their secret, by Basic or in the body (both are accepted, as most RP libraries
/// pick one on their own).
pub fn method_allowed(client: &Client, presented: &Presented) -> Result<(), OidcError> {
    use AuthMethod::*;
    let jwt = matches!(
        client.token_endpoint_auth_method,
        PrivateKeyJwt | ClientSecretJwt
    );
    match (
        client.is_public(),
        jwt,
        presented.assertion.is_some(),
        presented.method,
    ) {
        (true, _, false, None) => Ok(()),
        (true, ..) => Err(invalid("public clients authenticate with none")),
        (false, true, true, _) => Ok(()),
        (false, true, false, _) => {
            Err(invalid("this client authenticates with a signed assertion"))
        }
        (false, false, true, _) => Err(invalid("this client authenticates with its secret")),
        (false, false, false, None) => Err(invalid("client authentication is required")),
        (false, false, false, _) => Ok(()),
    }
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

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    #[test]
    fn client_authentication_parsing() {
        let empty = Params::default();
        let p = presented_client(Some(&basic("my%3Aclient", "s%2Bx+y")), &empty).unwrap();
        assert_eq!(p.client_id, "my:client");
        assert_eq!(p.secret.as_deref(), Some("s+x y"));
        assert_eq!(p.method, AuthMethod::ClientSecretBasic);

        let post = Params::parse(b"client_id=a&client_secret=b");
        let p = presented_client(None, &post).unwrap();
        assert_eq!(p.method, AuthMethod::ClientSecretPost);
        assert_eq!(
            presented_client(Some(&basic("a", "b")), &post)
                .unwrap_err()
                .code,
            ErrorCode::InvalidRequest
        );

        let none = Params::parse(b"client_id=a");
        assert_eq!(
            presented_client(None, &none).unwrap().method,
            AuthMethod::None
        );
        assert_eq!(
            presented_client(None, &empty).unwrap_err().code,
            ErrorCode::InvalidClient
        );
        assert_eq!(
            presented_client(Some("Basic %%%"), &empty)
                .unwrap_err()
                .code,
            ErrorCode::InvalidClient
        );
        assert_eq!(
            presented_client(Some("Bearer x"), &empty).unwrap_err().code,
            ErrorCode::InvalidClient
        );
        let mismatch = Params::parse(b"client_id=other");
        assert_eq!(
            presented_client(Some(&basic("a", "b")), &mismatch)
                .unwrap_err()
                .code,
            ErrorCode::InvalidRequest
        );
    }
}
