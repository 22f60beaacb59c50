//! Logout: OpenID Connect RP-Initiated Logout 1.0 decisions, the Back-Channel Logout 1.0
//! logout token, and Front-Channel Logout 1.0 URLs. Pure: the caller verifies the
//! id_token_hint signature and performs the logout.

use serde_json::{Map, Value, json};

use super::params::Params;
use crate::model::Client;

/// The event a logout token carries (Back-Channel Logout §2.4).
pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// An end-session request as sent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogoutRequest {
    pub id_token_hint: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
    pub client_id: Option<String>,
}

/// RP-Initiated Logout §2 parameters; duplicates are refused.
pub fn parse(p: &Params) -> Result<LogoutRequest, String> {
    let get = |n: &str| {
        p.get(n)
            .map(|v| v.map(str::to_string))
            .map_err(|d| d.to_string())
    };
    if let Some(e) = p.not_utf8() {
        return Err(e.to_string());
    }
    Ok(LogoutRequest {
        id_token_hint: get("id_token_hint")?,
        post_logout_redirect_uri: get("post_logout_redirect_uri")?,
        state: get("state")?,
        client_id: get("client_id")?,
    })
}

/// What a verified id_token_hint says (signature and issuer already checked).
#[derive(Debug, Clone, PartialEq)]
pub struct Hint {
    pub sub: String,
    /// The client the ID token was issued to (`azp`, or the single `aud`).
    pub client_id: String,
    /// The session the ID token was issued in.
    pub sid: Option<String>,
}

impl Hint {
    /// Reads `sub` and the client from verified ID token claims.
    pub fn from_claims(claims: &Map<String, Value>) -> Option<Hint> {
        let sub = claims.get("sub")?.as_str()?.to_string();
        let client_id = match (claims.get("azp"), claims.get("aud")) {
            (Some(Value::String(azp)), _) => azp.clone(),
            (_, Some(Value::String(aud))) => aud.clone(),
            (_, Some(Value::Array(a))) if a.len() == 1 => a[0].as_str()?.to_string(),
            _ => return None,
        };
        let sid = claims
            .get("sid")
            .and_then(Value::as_str)
            .map(str::to_string);
        Some(Hint {
            sub,
            client_id,
            sid,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Ask the user to confirm (no valid hint, or a hint for another user).
    Confirm,
    /// Log out now, then redirect (validated URI with state) or show the signed-out page.
    LogOut { redirect: Option<String> },
    /// Refuse: show an error page, never redirect.
    Error(String),
}

/// RP-Initiated Logout §2-§3. A redirect to post_logout_redirect_uri happens only with a
/// valid id_token_hint and a URI registered for the hint's client, matched exactly.
/// `hint` is `None` when none was sent, `Some(None)` when it did not verify.
pub fn decide(
    req: &LogoutRequest,
    hint: Option<Option<&Hint>>,
    client: Option<&Client>,
    session_user: Option<&str>,
) -> Decision {
    let hint = match hint {
        None => None,
        Some(None) => {
            return Decision::Error(
                "The sign-out request carries an ID token that was not issued here.".into(),
            );
        }
        Some(Some(h)) => Some(h),
    };
    if let (Some(h), Some(cid)) = (hint, &req.client_id)
        && &h.client_id != cid
    {
        return Decision::Error("The client_id does not match the ID token.".into());
    }
    let Some(h) = hint else {
        return Decision::Confirm;
    };
    let redirect = match &req.post_logout_redirect_uri {
        None => None,
        Some(uri) => {
            let registered = client.is_some_and(|c| {
                c.client_id == h.client_id && c.post_logout_redirect_uris.iter().any(|r| r == uri)
            });
            if !registered {
                return Decision::Error(
                    "The post_logout_redirect_uri is not registered for this application.".into(),
                );
            }
            Some(with_state(uri, req.state.as_deref()))
        }
    };
    match session_user {
        Some(u) if u != h.sub => Decision::Confirm,
        _ => Decision::LogOut { redirect },
    }
}

/// The redirect target: the registered URI plus `state` when one was sent (and nothing
/// else), encoded so the client reads back exactly what it sent.
fn with_state(uri: &str, state: Option<&str>) -> String {
    match state {
        None => uri.to_string(),
        Some(s) => {
            let sep = if uri.contains('?') { '&' } else { '?' };
            let enc: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("state", s)
                .finish();
            format!("{uri}{sep}{enc}")
        }
    }
}

/// Back-Channel Logout §2.4 logout token claims: iss, aud, iat, exp, jti, events, sid
/// and sub; never a nonce.
pub fn logout_token(
    issuer: &str,
    client_id: &str,
    sub: &str,
    sid: &str,
    now: i64,
    jti: &str,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("iss".into(), json!(issuer));
    m.insert("aud".into(), json!(client_id));
    m.insert("iat".into(), json!(now));
    m.insert("exp".into(), json!(now + 120));
    m.insert("jti".into(), json!(jti));
    m.insert("events".into(), json!({ BACKCHANNEL_EVENT: {} }));
    m.insert("sub".into(), json!(sub));
    m.insert("sid".into(), json!(sid));
    m
}

/// Front-Channel Logout §2: the iframe URL, with `iss` and `sid` when the client asked.
pub fn frontchannel_url(client: &Client, issuer: &str, sid: &str) -> Option<String> {
    let uri = client.frontchannel_logout_uri.as_ref()?;
    if !client.frontchannel_logout_session_required {
        return Some(uri.clone());
    }
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("iss", issuer)
        .append_pair("sid", sid)
        .finish();
    let sep = if uri.contains('?') { '&' } else { '?' };
    Some(format!("{uri}{sep}{q}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::registration::{ClientSpec, build_client};

    fn client() -> Client {
        build_client(
            "rp".into(),
            ClientSpec {
                name: "RP".into(),
                redirect_uris: vec!["https://rp/cb".into()],
                post_logout_redirect_uris: vec!["https://rp/bye".into()],
                frontchannel_logout_uri: Some("https://rp/fc?x=1".into()),
                frontchannel_logout_session_required: true,
                ..ClientSpec::default()
            },
            0,
        )
        .unwrap()
    }

    fn hint() -> Hint {
        Hint {
            sub: "u1".into(),
            client_id: "rp".into(),
            sid: Some("sid-1".into()),
        }
    }

    fn req(uri: Option<&str>, state: Option<&str>) -> LogoutRequest {
        LogoutRequest {
            post_logout_redirect_uri: uri.map(str::to_string),
            state: state.map(str::to_string),
            ..LogoutRequest::default()
        }
    }

    #[test]
    fn valid_hint_and_registered_uri_redirect_with_state_only() {
        let c = client();
        let h = hint();
        let d = decide(
            &req(Some("https://rp/bye"), Some("a b\"<>&#%[]")),
            Some(Some(&h)),
            Some(&c),
            Some("u1"),
        );
        let Decision::LogOut { redirect: Some(r) } = d else {
            panic!("{d:?}")
        };
        let back: Vec<(String, String)> =
            form_urlencoded::parse(r.split_once('?').unwrap().1.as_bytes())
                .into_owned()
                .collect();
        assert_eq!(
            back,
            vec![("state".to_string(), "a b\"<>&#%[]".to_string())]
        );
        assert_eq!(
            decide(
                &req(Some("https://rp/bye"), None),
                Some(Some(&h)),
                Some(&c),
                None
            ),
            Decision::LogOut {
                redirect: Some("https://rp/bye".into())
            }
        );
        assert_eq!(
            decide(&req(None, Some("s")), Some(Some(&h)), Some(&c), None),
            Decision::LogOut { redirect: None }
        );
    }

    #[test]
    fn no_redirect_without_a_valid_hint_or_registered_uri() {
        let c = client();
        let h = hint();
        for uri in [
            "https://rp/bye?foo=bar",
            "https://rp/other",
            "https://evil/bye",
        ] {
            assert!(
                matches!(
                    decide(&req(Some(uri), None), Some(Some(&h)), Some(&c), None),
                    Decision::Error(_)
                ),
                "{uri}"
            );
        }
        assert!(matches!(
            decide(
                &req(Some("https://rp/bye"), None),
                Some(None),
                Some(&c),
                None
            ),
            Decision::Error(_)
        ));
        assert_eq!(
            decide(
                &req(Some("https://rp/bye"), Some("s")),
                None,
                Some(&c),
                None
            ),
            Decision::Confirm
        );
        assert_eq!(
            decide(&LogoutRequest::default(), None, None, Some("u1")),
            Decision::Confirm
        );
        // A hint for another user than the one signed in asks first.
        assert_eq!(
            decide(&req(None, None), Some(Some(&h)), Some(&c), Some("u2")),
            Decision::Confirm
        );
        let mismatch = LogoutRequest {
            client_id: Some("other".into()),
            ..req(None, None)
        };
        assert!(matches!(
            decide(&mismatch, Some(Some(&h)), Some(&c), None),
            Decision::Error(_)
        ));
    }

    #[test]
    fn logout_token_has_exactly_the_required_claims() {
        let t = logout_token("https://op", "rp", "u1", "s1", 100, "j");
        assert_eq!(t["events"], json!({ BACKCHANNEL_EVENT: {} }));
        assert_eq!(t["exp"], 220);
        assert!(t.get("nonce").is_none());
        let keys: Vec<&str> = t.keys().map(String::as_str).collect();
        for k in ["iss", "aud", "iat", "exp", "jti", "events", "sub", "sid"] {
            assert!(keys.contains(&k), "{k}");
        }
    }

    #[test]
    fn frontchannel_url_appends_iss_and_sid_on_request() {
        let mut c = client();
        assert_eq!(
            frontchannel_url(&c, "https://op", "s1").unwrap(),
            "https://rp/fc?x=1&iss=https%3A%2F%2Fop&sid=s1"
        );
        c.frontchannel_logout_session_required = false;
        assert_eq!(
            frontchannel_url(&c, "https://op", "s1").unwrap(),
            "https://rp/fc?x=1"
        );
    }

    #[test]
    fn hint_reads_azp_or_single_aud() {
        let mut m = Map::new();
        m.insert("sub".into(), json!("u"));
        m.insert("aud".into(), json!(["rp"]));
        assert_eq!(Hint::from_claims(&m).unwrap().client_id, "rp");
        m.insert("azp".into(), json!("rp2"));
        assert_eq!(Hint::from_claims(&m).unwrap().client_id, "rp2");
    }
}
