//! The token endpoint's rules (RFC 6749 §2.3, §4.1.3, §6; RFC 7636 §4.6; RFC 9700 §4.14):
//! who the client says it is, and whether a stored code or refresh token may be exchanged.
//! Secrets are verified by the caller through `keys`; storage happens in the caller too.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use crate::model::{AuthCode, AuthMethod, Client, RefreshToken};

use super::params::Params;
use super::{ErrorCode, OidcError, pkce, scope};

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

fn invalid_client(d: &str) -> OidcError {
    OidcError::new(ErrorCode::InvalidClient, d)
}

/// RFC 6749 §2.3.1: HTTP Basic (with form-urlencoded id and secret inside the base64),
/// or client_id/client_secret in the body, or client_id alone for public clients. Using
/// more than one method is an error.
pub fn presented_client(
    authorization: Option<&str>,
    form: &Params,
) -> Result<Presented, OidcError> {
    let dup = |d: super::params::Duplicate| OidcError::invalid_request(d.to_string());
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
        if assertion_type != Some(super::client_auth::JWT_BEARER) {
            return Err(invalid_client("unsupported client_assertion_type"));
        }
        let assertion = assertion.ok_or_else(|| invalid_client("client_assertion is missing"))?;
        let id = super::client_auth::unverified_issuer(assertion)
            .ok_or_else(|| invalid_client("malformed client_assertion"))?;
        // RFC 7523 §3 with RFC 6749 §5.2: an assertion issued by anyone but the client
        // is a failed client authentication like any other.
        if form_id.is_some_and(|f| f != id) {
            return Err(invalid_client("the assertion's issuer is not the client"));
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
            return Err(invalid_client("unsupported Authorization scheme"));
        }
        if form_secret.is_some() {
            return Err(OidcError::invalid_request(
                "more than one client authentication method",
            ));
        }
        let raw = STANDARD
            .decode(rest.trim())
            .map_err(|_| invalid_client("malformed Basic credentials"))?;
        let text =
            String::from_utf8(raw).map_err(|_| invalid_client("malformed Basic credentials"))?;
        let (id, secret) = text
            .split_once(':')
            .ok_or_else(|| invalid_client("malformed Basic credentials"))?;
        let id = form_decode(id);
        let secret = form_decode(secret);
        if id.is_empty() {
            return Err(invalid_client("malformed Basic credentials"));
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
    let id = form_id.ok_or_else(|| invalid_client("client authentication is required"))?;
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
        (true, ..) => Err(invalid_client("public clients authenticate with none")),
        (false, true, true, _) => Ok(()),
        (false, true, false, _) => Err(invalid_client(
            "this client authenticates with a signed assertion",
        )),
        (false, false, true, _) => Err(invalid_client("this client authenticates with its secret")),
        (false, false, false, None) => Err(invalid_client("client authentication is required")),
        (false, false, false, _) => Ok(()),
    }
}

/// RFC 6749 §4.1.3 and RFC 7636 §4.6 checks of a stored, unused code.
pub fn check_code(
    code: &AuthCode,
    client_id: &str,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
    now: i64,
) -> Result<(), OidcError> {
    if code.client_id != client_id {
        return Err(OidcError::invalid_grant(
            "the code was issued to another client",
        ));
    }
    if now >= code.expires_at {
        return Err(OidcError::invalid_grant("the code has expired"));
    }
    if redirect_uri != Some(code.redirect_uri.as_str()) {
        return Err(OidcError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    match (&code.code_challenge, verifier) {
        (Some(challenge), Some(v)) if pkce::verify(v, challenge) => Ok(()),
        (Some(_), Some(_)) => Err(OidcError::invalid_grant("code_verifier does not match")),
        (Some(_), None) => Err(OidcError::invalid_grant("code_verifier is required")),
        // A verifier for a code issued without a challenge is a downgrade attempt.
        (None, Some(_)) => Err(OidcError::invalid_grant(
            "code_verifier sent but the code has no challenge",
        )),
        (None, None) => Ok(()),
    }
}

/// RFC 6749 §6 checks of a stored, unused refresh token. Returns the scopes of the new
/// tokens (the requested subset, or all of the original ones).
pub fn check_refresh(
    rt: &RefreshToken,
    client: &Client,
    requested_scope: Option<&str>,
    session_alive: bool,
    now: i64,
) -> Result<Vec<String>, OidcError> {
    let client_id = client.client_id.as_str();
    if rt.client_id != client_id {
        return Err(OidcError::invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    if now >= rt.expires_at || now >= rt.absolute_expires_at {
        return Err(OidcError::invalid_grant("the refresh token has expired"));
    }
    // Without offline_access a refresh token ends with the SSO session; a client may ask
    // for that even with offline_access (SPEC §7).
    if (!rt.offline || client.refresh_requires_session) && !session_alive {
        return Err(OidcError::invalid_grant(
            "the sign-in session of this refresh token has ended",
        ));
    }
    // A client switched to two-factor sign-in does not keep one-factor grants alive.
    if client.policy == crate::model::Policy::TwoFactor
        && rt.acr != super::authorize::ACR_TWO_FACTOR
    {
        return Err(OidcError::invalid_grant(
            "the application now requires two-factor sign-in",
        ));
    }
    match requested_scope {
        None => Ok(rt.scopes.clone()),
        Some(s) => {
            let wanted = scope::parse(s).map_err(|e| OidcError::new(ErrorCode::InvalidScope, e))?;
            if !scope::is_subset(&wanted, &rt.scopes) {
                return Err(OidcError::new(
                    ErrorCode::InvalidScope,
                    "scope exceeds the original grant",
                ));
            }
            // Keep canonical order and drop nothing the client asked for.
            Ok(rt
                .scopes
                .iter()
                .filter(|s| wanted.contains(s))
                .cloned()
                .collect())
        }
    }
}

/// Whether a grant gets a refresh token: the client must be registered for the grant
/// type. `offline_access` decides whether it outlives the SSO session.
pub fn issues_refresh_token(client: &Client) -> bool {
    client.allows_grant("refresh_token")
}

/// RFC 6749 §5.1 successful response.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    pub scope: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn code() -> AuthCode {
        AuthCode {
            client_id: "rp".into(),
            redirect_uri: "https://rp/cb".into(),
            user_id: "u".into(),
            scopes: vec!["openid".into()],
            nonce: None,
            code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
            grant_id: "g".into(),
            auth_time: NOW,
            amr: vec!["pwd".into()],
            acr: "1".into(),
            sid: "sid".into(),
            session_hash: "h".into(),
            expires_at: NOW + 60,
            used: false,
            claims: None,
        }
    }

    const V: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    #[test]
    fn code_checks() {
        let c = code();
        assert!(check_code(&c, "rp", Some("https://rp/cb"), Some(V), NOW).is_ok());
        let bad = [
            check_code(&c, "other", Some("https://rp/cb"), Some(V), NOW),
            check_code(&c, "rp", Some("https://rp/cb"), Some(V), NOW + 60),
            check_code(&c, "rp", Some("https://rp/cb/"), Some(V), NOW),
            check_code(&c, "rp", None, Some(V), NOW),
            check_code(&c, "rp", Some("https://rp/cb"), None, NOW),
            check_code(&c, "rp", Some("https://rp/cb"), Some(&"x".repeat(43)), NOW),
        ];
        for r in bad {
            assert_eq!(r.unwrap_err().code, ErrorCode::InvalidGrant);
        }
        let no_pkce = AuthCode {
            code_challenge: None,
            ..code()
        };
        assert!(check_code(&no_pkce, "rp", Some("https://rp/cb"), None, NOW).is_ok());
        assert_eq!(
            check_code(&no_pkce, "rp", Some("https://rp/cb"), Some(V), NOW)
                .unwrap_err()
                .code,
            ErrorCode::InvalidGrant
        );
    }

    fn rt(offline: bool) -> RefreshToken {
        RefreshToken {
            grant_id: "g".into(),
            client_id: "rp".into(),
            user_id: "u".into(),
            scopes: vec!["openid".into(), "email".into(), "offline_access".into()],
            auth_time: NOW,
            amr: vec![],
            acr: "1".into(),
            sid: "s".into(),
            session_hash: "h".into(),
            offline,
            nonce: None,
            issued_at: NOW,
            expires_at: NOW + 100,
            absolute_expires_at: NOW + 1000,
            used: false,
            claims: None,
        }
    }

    fn cl(id: &str) -> Client {
        use crate::oidc::registration::{ClientSpec, build_client};
        let spec = ClientSpec {
            name: "RP".into(),
            redirect_uris: vec!["https://rp/cb".into()],
            ..ClientSpec::default()
        };
        build_client(id.into(), spec, 0).unwrap()
    }

    #[test]
    fn a_two_factor_client_refreshes_only_two_factor_grants() {
        let mut c = cl("rp");
        c.policy = crate::model::Policy::TwoFactor;
        assert_eq!(
            check_refresh(&rt(true), &c, None, true, NOW)
                .unwrap_err()
                .code,
            ErrorCode::InvalidGrant
        );
        let mut two = rt(true);
        two.acr = "2".into();
        assert!(check_refresh(&two, &c, None, true, NOW).is_ok());
    }

    #[test]
    fn a_client_may_bind_even_offline_refresh_to_the_session() {
        let mut c = cl("rp");
        assert!(check_refresh(&rt(true), &c, None, false, NOW).is_ok());
        c.refresh_requires_session = true;
        assert_eq!(
            check_refresh(&rt(true), &c, None, false, NOW)
                .unwrap_err()
                .code,
            ErrorCode::InvalidGrant
        );
        assert!(check_refresh(&rt(true), &c, None, true, NOW).is_ok());
    }

    #[test]
    fn refresh_checks() {
        assert_eq!(
            check_refresh(&rt(true), &cl("rp"), None, false, NOW)
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            check_refresh(&rt(true), &cl("rp"), Some("email openid"), true, NOW).unwrap(),
            vec!["openid", "email"]
        );
        assert_eq!(
            check_refresh(&rt(true), &cl("rp"), Some("phone"), true, NOW)
                .unwrap_err()
                .code,
            ErrorCode::InvalidScope
        );
        assert_eq!(
            check_refresh(&rt(true), &cl("x"), None, true, NOW)
                .unwrap_err()
                .code,
            ErrorCode::InvalidGrant
        );
        assert_eq!(
            check_refresh(&rt(true), &cl("rp"), None, true, NOW + 100)
                .unwrap_err()
                .code,
            ErrorCode::InvalidGrant
        );
        assert_eq!(
            check_refresh(&rt(false), &cl("rp"), None, false, NOW)
                .unwrap_err()
                .code,
            ErrorCode::InvalidGrant
        );
        assert!(check_refresh(&rt(false), &cl("rp"), None, true, NOW).is_ok());
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
