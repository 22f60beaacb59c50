//! Client registration rules shared by `client add`, `client update` and `[[clients]]`:
//! raw fields in, a validated [`Client`] out, or one error naming the field.

use crate::model::{Alg, AuthMethod, Client, Policy};

use super::scope;

/// Client fields as an administrator states them; `None`/empty means "the default".
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClientSpec {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub public: bool,
    pub token_endpoint_auth_method: Option<String>,
    pub policy: Option<String>,
    pub skip_consent: bool,
    pub id_token_alg: Option<String>,
    pub require_pkce: bool,
    pub backchannel_logout_uri: Option<String>,
    pub frontchannel_logout_uri: Option<String>,
    #[serde(default)]
    pub frontchannel_logout_session_required: bool,
    pub allowed_groups: Vec<String>,
    pub jwks: Option<String>,
    pub jwks_uri: Option<String>,
    pub require_par: bool,
    #[serde(default)]
    pub refresh_requires_session: bool,
    #[serde(default)]
    pub refresh_grace_secs: i64,
    #[serde(default)]
    pub groups_filter: Vec<String>,
    /// Custom claims (SPEC §14).
    #[serde(default)]
    pub claims: Vec<crate::model::ClaimRule>,
}

/// The longest refresh grace period a client may have (issue 17).
pub const MAX_REFRESH_GRACE: i64 = 60;

/// A `groups_filter` entry: a group name, or a prefix of one followed by `*`.
pub fn valid_groups_pattern(p: &str) -> bool {
    match p.strip_suffix('*') {
        Some(prefix) => {
            !prefix.is_empty()
                && prefix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        }
        None => valid_group_name(p),
    }
}

/// Grant types this version implements for registered clients.
pub const GRANT_TYPES: &[&str] = &[
    "authorization_code",
    "implicit",
    "refresh_token",
    "client_credentials",
    "password",
    DEVICE_CODE,
];
/// RFC 8628 §3.4 grant type.
pub const DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Registered for a client when `client add` names no grant type.
pub const DEFAULT_GRANT_TYPES: &[&str] = &["authorization_code", "refresh_token"];
/// Response types this version implements.
pub const RESPONSE_TYPES: &[&str] = &[
    "code",
    "id_token",
    "id_token token",
    "code id_token",
    "code token",
    "code id_token token",
];

/// A response_type with its values in canonical order (`token id_token` → `id_token token`),
/// or `None` if it is not one Latchkey implements.
pub fn canonical_response_type(rt: &str) -> Option<&'static str> {
    let mut parts: Vec<&str> = rt.split(' ').filter(|s| !s.is_empty()).collect();
    parts.sort_unstable();
    let n = parts.len();
    parts.dedup();
    // A value named twice (`code code`) is no registered response type.
    if parts.len() != n {
        return None;
    }
    let joined = parts.join(" ");
    RESPONSE_TYPES.iter().copied().find(|known| {
        let mut k: Vec<&str> = known.split(' ').collect();
        k.sort_unstable();
        k.join(" ") == joined
    })
}

const MAX_URI_LEN: usize = 2000;

/// Builds a client from a spec, applying defaults and validating every field.
pub fn build_client(client_id: String, spec: ClientSpec, now: i64) -> Result<Client, String> {
    if !valid_client_id(&client_id) {
        return Err("client_id: 1-128 characters of letters, digits and -._~".into());
    }
    let name = spec.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err("name: must be 1-100 printable characters".into());
    }

    let grant_types = defaulted(spec.grant_types, DEFAULT_GRANT_TYPES);
    for g in &grant_types {
        if !GRANT_TYPES.contains(&g.as_str()) {
            return Err(format!(
                "grant_type: {g:?} is not supported (supported: {})",
                GRANT_TYPES.join(", ")
            ));
        }
    }
    let has = |g: &str| grant_types.iter().any(|x| x == g);
    if has("client_credentials") && spec.public {
        return Err("grant_type: client_credentials needs a confidential client".into());
    }
    if has("refresh_token")
        && !(has("authorization_code") || has("password") || has(DEVICE_CODE) || has("implicit"))
    {
        return Err("grant_type: refresh_token needs a grant that signs a user in".into());
    }
    if grant_types.iter().all(|g| g == "refresh_token") {
        return Err("grant_type: at least one grant besides refresh_token is required".into());
    }
    let response_types = if spec.response_types.is_empty() {
        default_response_types(has("authorization_code"), has("implicit"))
    } else {
        let mut out: Vec<String> = Vec::new();
        for r in &spec.response_types {
            let c = canonical_response_type(r).ok_or_else(|| {
                format!(
                    "response_type: {r:?} is not supported (supported: {})",
                    RESPONSE_TYPES.join(", ")
                )
            })?;
            if !out.iter().any(|x| x == c) {
                out.push(c.to_string());
            }
        }
        out
    };
    for r in &response_types {
        let code = r.split(' ').any(|p| p == "code");
        let front = r.split(' ').any(|p| p == "id_token" || p == "token");
        if code && !has("authorization_code") {
            return Err(format!(
                "response_type: {r:?} needs the authorization_code grant"
            ));
        }
        if front && !has("implicit") {
            return Err(format!("response_type: {r:?} needs the implicit grant"));
        }
    }

    let needs_redirect = has("authorization_code") || has("implicit");
    if needs_redirect && spec.redirect_uris.is_empty() {
        return Err("redirect_uri: at least one is required".into());
    }
    let mut redirect_uris = Vec::new();
    for u in spec.redirect_uris {
        check_redirect_uri(&u).map_err(|e| format!("redirect_uri: {u:?}: {e}"))?;
        if !redirect_uris.contains(&u) {
            redirect_uris.push(u);
        }
    }
    let mut post_logout_redirect_uris = Vec::new();
    for u in spec.post_logout_redirect_uris {
        check_redirect_uri(&u).map_err(|e| format!("post_logout_redirect_uri: {u:?}: {e}"))?;
        if !post_logout_redirect_uris.contains(&u) {
            post_logout_redirect_uris.push(u);
        }
    }

    let scopes = defaulted(spec.scopes, scope::DEFAULT_CLIENT_SCOPES);
    for s in &scopes {
        if !scope::SUPPORTED.contains(&s.as_str()) && !scope::valid_custom(s) {
            return Err(format!(
                "scope: {s:?} is neither one of {} nor a name of the client's own (letters, digits, _.:-)",
                scope::SUPPORTED.join(", ")
            ));
        }
    }
    crate::oidc::claims::check_rules(&spec.claims, &scopes)?;
    if !scopes.iter().any(|s| s == "openid") {
        return Err("scope: openid is required".into());
    }

    let method = match spec.token_endpoint_auth_method.as_deref() {
        None if spec.public => AuthMethod::None,
        None => AuthMethod::ClientSecretBasic,
        Some(m) => AuthMethod::parse(m).ok_or_else(|| {
                        format!(
                "token_endpoint_auth_method: {m:?} is not one of client_secret_basic, client_secret_post, \
                 client_secret_jwt, private_key_jwt, none"
            )
        })?,
    };
    if spec.public != (method == AuthMethod::None) {
        return Err(
            "token_endpoint_auth_method: public clients use none, confidential clients a secret"
                .into(),
        );
    }

    let policy = match spec.policy.as_deref() {
        None => Policy::OneFactor,
        Some(p) => Policy::parse(p)
            .ok_or_else(|| format!("policy: {p:?} is not one_factor, two_factor or passkey"))?,
    };
    let id_token_alg = match spec.id_token_alg.as_deref() {
        None => Alg::RS256,
        Some(a) => {
            Alg::parse(a).ok_or_else(|| format!("id_token_alg: {a:?} is not RS256 or ES256"))?
        }
    };

    for (field, uri) in [
        ("backchannel_logout_uri", &spec.backchannel_logout_uri),
        ("frontchannel_logout_uri", &spec.frontchannel_logout_uri),
    ] {
        if let Some(u) = uri {
            check_logout_uri(u).map_err(|e| format!("{field}: {u:?}: {e}"))?;
        }
    }
    if spec.frontchannel_logout_session_required && spec.frontchannel_logout_uri.is_none() {
        return Err("frontchannel_logout_session_required: needs a frontchannel_logout_uri".into());
    }

    if let Some(j) = &spec.jwks {
        check_jwks(j).map_err(|e| format!("jwks: {e}"))?;
    }
    if let Some(u) = &spec.jwks_uri {
        check_logout_uri(u).map_err(|e| format!("jwks_uri: {u:?}: {e}"))?;
        // Keys must come over TLS; plain http only from this machine (tests, a local agent).
        let loopback = ["http://127.0.0.1", "http://[::1]", "http://localhost"]
            .iter()
            .any(|p| {
                u.strip_prefix(p)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
            });
        if !u.starts_with("https://") && !loopback {
            return Err(format!("jwks_uri: {u:?}: must be an https URL"));
        }
    }
    if spec.jwks.is_some() && spec.jwks_uri.is_some() {
        return Err("jwks: give the keys or a jwks_uri, not both".into());
    }
    if method == AuthMethod::PrivateKeyJwt && spec.jwks.is_none() && spec.jwks_uri.is_none() {
        return Err("jwks: private_key_jwt needs the client's keys (jwks or jwks_uri)".into());
    }
    for g in &spec.allowed_groups {
        if !valid_group_name(g) {
            return Err(format!("allowed_group: {g:?} is not a valid group name"));
        }
    }

    if !(0..=MAX_REFRESH_GRACE).contains(&spec.refresh_grace_secs) {
        return Err(format!(
            "refresh_grace_secs: between 0 and {MAX_REFRESH_GRACE}"
        ));
    }
    if let Some(bad) = spec.groups_filter.iter().find(|p| !valid_groups_pattern(p)) {
        return Err(format!(
            "groups_filter: {bad:?} is not a group name or a prefix ending in *"
        ));
    }
    Ok(Client {
        client_id,
        name,
        secret_hash: None,
        redirect_uris,
        post_logout_redirect_uris,
        scopes,
        grant_types,
        response_types,
        token_endpoint_auth_method: method,
        policy,
        skip_consent: spec.skip_consent,
        id_token_alg,
        // OAuth 2.1 / RFC 9700 §2.1.1: public clients always use PKCE.
        require_pkce: spec.require_pkce || spec.public,
        backchannel_logout_uri: spec.backchannel_logout_uri,
        frontchannel_logout_uri: spec.frontchannel_logout_uri,
        frontchannel_logout_session_required: spec.frontchannel_logout_session_required,
        allowed_groups: spec.allowed_groups,
        jwks: spec.jwks,
        jwks_uri: spec.jwks_uri,
        jwt_secret: None,
        require_par: spec.require_par,
        refresh_requires_session: spec.refresh_requires_session,
        refresh_grace_secs: spec.refresh_grace_secs,
        groups_filter: spec.groups_filter,
        claims: spec.claims,
        declared: false,
        created_at: now,
    })
}

/// Response types a client gets when it names none: what its grants allow.
fn default_response_types(code: bool, implicit: bool) -> Vec<String> {
    RESPONSE_TYPES
        .iter()
        .filter(|r| {
            let has_code = r.split(' ').any(|p| p == "code");
            let front = r.split(' ').any(|p| p != "code");
            (!has_code || code) && (!front || implicit)
        })
        .map(|r| r.to_string())
        .collect()
}

fn defaulted(v: Vec<String>, default: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let src = if v.is_empty() {
        default.iter().map(|s| s.to_string()).collect()
    } else {
        v
    };
    for s in src {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

pub fn valid_client_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Group names: 1-64 letters, digits and `-_.`.
pub fn valid_group_name(g: &str) -> bool {
    (1..=64).contains(&g.len())
        && g.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A redirect URI as it may be registered (RFC 6749 §3.1.2, RFC 8252 §7, RFC 9700 §4.1):
/// absolute, no fragment, no user info, and not a scheme that runs code in the browser.
/// Plain http is allowed, because small offices run internal tools without TLS; matching
/// is always exact.
pub fn check_redirect_uri(uri: &str) -> Result<(), &'static str> {
    if uri.len() > MAX_URI_LEN {
        return Err("longer than 2000 characters");
    }
    if !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII without white space (percent-encode the rest)");
    }
    let url = url::Url::parse(uri).map_err(|_| "not an absolute URL")?;
    if url.fragment().is_some() || uri.contains('#') {
        return Err("must not contain a fragment");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain user info");
    }
    match url.scheme() {
        "javascript" | "data" | "file" | "vbscript" | "about" | "blob" | "filesystem" => {
            Err("scheme is not allowed")
        }
        "http" | "https" if url.host_str().is_none_or(str::is_empty) => Err("has no host"),
        _ => Ok(()),
    }
}

/// A client's JWK Set (RFC 7517 §5): an object with a non-empty `keys` array of RSA or
/// P-256 public keys.
pub fn check_jwks(text: &str) -> Result<(), String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|_| "not valid JSON".to_string())?;
    let keys = v
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("no keys array")?;
    if keys.is_empty() {
        return Err("the keys array is empty".into());
    }
    for k in keys {
        match k.get("kty").and_then(|t| t.as_str()) {
            Some("RSA") if k.get("n").is_some() && k.get("e").is_some() => {}
            Some("EC")
                if k.get("crv").and_then(|c| c.as_str()) == Some("P-256")
                    && k.get("x").is_some()
                    && k.get("y").is_some() => {}
            _ => return Err("only RSA and P-256 public keys are supported".into()),
        }
        if ["d", "p", "q", "k"]
            .iter()
            .any(|private| k.get(*private).is_some())
        {
            return Err("contains private key material".into());
        }
    }
    Ok(())
}

/// Logout URIs (OIDC Back-Channel Logout §2.2, Front-Channel Logout §2): absolute http(s)
/// URLs without a fragment, the same textual rules as redirect URIs.
pub fn check_logout_uri(uri: &str) -> Result<(), &'static str> {
    check_redirect_uri(uri)?;
    if !uri.starts_with("https://") && !uri.starts_with("http://") {
        return Err("must be an http or https URL");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ClientSpec {
        ClientSpec {
            name: "Grafana".into(),
            redirect_uris: vec!["https://grafana.example/login/generic_oauth".into()],
            ..ClientSpec::default()
        }
    }

    #[test]
    fn defaults_are_applied() {
        let c = build_client("abc".into(), spec(), 7).unwrap();
        assert_eq!(c.grant_types, vec!["authorization_code", "refresh_token"]);
        assert_eq!(c.response_types, vec!["code"]);
        assert_eq!(c.token_endpoint_auth_method, AuthMethod::ClientSecretBasic);
        assert!(c.scopes.contains(&"openid".to_string()));
        assert!(!c.require_pkce);
        assert_eq!(c.created_at, 7);
    }

    #[test]
    fn public_clients_need_pkce_and_method_none() {
        let c = build_client(
            "abc".into(),
            ClientSpec {
                public: true,
                ..spec()
            },
            0,
        )
        .unwrap();
        assert!(c.is_public());
        assert!(c.require_pkce);
        let e = build_client(
            "abc".into(),
            ClientSpec {
                public: true,
                token_endpoint_auth_method: Some("client_secret_basic".into()),
                ..spec()
            },
            0,
        );
        assert!(e.unwrap_err().starts_with("token_endpoint_auth_method"));
    }

    #[test]
    fn errors_name_the_field() {
        let cases: Vec<(ClientSpec, &str)> = vec![
            (
                ClientSpec {
                    redirect_uris: vec![],
                    ..spec()
                },
                "redirect_uri",
            ),
            (
                ClientSpec {
                    redirect_uris: vec!["/relative".into()],
                    ..spec()
                },
                "redirect_uri",
            ),
            (
                ClientSpec {
                    redirect_uris: vec!["https://a/#frag".into()],
                    ..spec()
                },
                "redirect_uri",
            ),
            (
                ClientSpec {
                    redirect_uris: vec!["javascript:alert(1)".into()],
                    ..spec()
                },
                "redirect_uri",
            ),
            (
                ClientSpec {
                    redirect_uris: vec!["https://u:p@a/cb".into()],
                    ..spec()
                },
                "redirect_uri",
            ),
            (
                ClientSpec {
                    scopes: vec!["email".into()],
                    ..spec()
                },
                "scope",
            ),
            (
                ClientSpec {
                    scopes: vec!["openid".into(), "root/all".into()],
                    ..spec()
                },
                "scope",
            ),
            (
                ClientSpec {
                    grant_types: vec!["foo".into()],
                    ..spec()
                },
                "grant_type",
            ),
            (
                ClientSpec {
                    response_types: vec!["token".into()],
                    ..spec()
                },
                "response_type",
            ),
            (
                ClientSpec {
                    name: " ".into(),
                    ..spec()
                },
                "name",
            ),
            (
                ClientSpec {
                    id_token_alg: Some("HS256".into()),
                    ..spec()
                },
                "id_token_alg",
            ),
            (
                ClientSpec {
                    policy: Some("three".into()),
                    ..spec()
                },
                "policy",
            ),
            (
                ClientSpec {
                    jwks_uri: Some("ftp://x".into()),
                    ..spec()
                },
                "jwks_uri",
            ),
            (
                ClientSpec {
                    backchannel_logout_uri: Some("app:/x".into()),
                    ..spec()
                },
                "backchannel_logout_uri",
            ),
            (
                ClientSpec {
                    frontchannel_logout_uri: Some("https://a/#x".into()),
                    ..spec()
                },
                "frontchannel_logout_uri",
            ),
            (
                ClientSpec {
                    frontchannel_logout_session_required: true,
                    ..spec()
                },
                "frontchannel_logout_session_required",
            ),
        ];
        for (s, field) in cases {
            let e = build_client("abc".into(), s.clone(), 0).unwrap_err();
            assert!(e.starts_with(field), "{s:?} gave {e}");
        }
        assert!(
            build_client("bad id".into(), spec(), 0)
                .unwrap_err()
                .starts_with("client_id")
        );
    }

    #[test]
    fn jwks_uri_needs_tls_except_on_this_machine() {
        let with = |u: &str| ClientSpec {
            token_endpoint_auth_method: Some("private_key_jwt".into()),
            jwks_uri: Some(u.into()),
            ..spec()
        };
        assert!(build_client("x".into(), with("https://keys.example/jwks"), 0).is_ok());
        assert!(build_client("x".into(), with("http://127.0.0.1:9000/jwks"), 0).is_ok());
        assert!(
            build_client("x".into(), with("http://keys.example/jwks"), 0)
                .unwrap_err()
                .starts_with("jwks_uri")
        );
        assert!(build_client("x".into(), with("http://127.0.0.1.evil.example/jwks"), 0).is_err());
        let neither = ClientSpec {
            token_endpoint_auth_method: Some("private_key_jwt".into()),
            ..spec()
        };
        assert!(
            build_client("x".into(), neither, 0)
                .unwrap_err()
                .starts_with("jwks")
        );
    }

    #[test]
    fn grant_and_response_type_rules() {
        let g = |grants: &[&str], public: bool| ClientSpec {
            grant_types: grants.iter().map(|s| s.to_string()).collect(),
            public,
            ..spec()
        };
        let cc = build_client(
            "m2m".into(),
            ClientSpec {
                redirect_uris: vec![],
                ..g(&["client_credentials"], false)
            },
            0,
        )
        .unwrap();
        assert!(cc.response_types.is_empty() && cc.redirect_uris.is_empty());
        assert!(
            build_client("x".into(), g(&["client_credentials"], true), 0)
                .unwrap_err()
                .starts_with("grant_type")
        );
        assert!(
            build_client("x".into(), g(&["refresh_token"], false), 0)
                .unwrap_err()
                .starts_with("grant_type")
        );
        assert!(
            build_client(
                "x".into(),
                g(&["client_credentials", "refresh_token"], false),
                0
            )
            .is_err()
        );
        let implicit = build_client("x".into(), g(&["implicit"], true), 0).unwrap();
        assert_eq!(implicit.response_types, vec!["id_token", "id_token token"]);
        let hybrid =
            build_client("x".into(), g(&["authorization_code", "implicit"], false), 0).unwrap();
        assert_eq!(hybrid.response_types.len(), 6);
        let picked = ClientSpec {
            response_types: vec!["token id_token code".into()],
            ..g(&["authorization_code", "implicit"], false)
        };
        assert_eq!(
            build_client("x".into(), picked, 0).unwrap().response_types,
            vec!["code id_token token"]
        );
        let no_implicit = ClientSpec {
            response_types: vec!["id_token".into()],
            ..spec()
        };
        assert!(
            build_client("x".into(), no_implicit, 0)
                .unwrap_err()
                .starts_with("response_type")
        );
        assert_eq!(canonical_response_type("token"), None);
        assert_eq!(canonical_response_type("code code"), None);
        assert_eq!(canonical_response_type("code id_token code"), None);
        assert_eq!(
            canonical_response_type("id_token  code"),
            Some("code id_token")
        );
    }

    #[test]
    fn native_app_schemes_and_loopback_are_allowed() {
        assert!(check_redirect_uri("com.example.app:/oauth2redirect").is_ok());
        assert!(check_redirect_uri("http://127.0.0.1:8080/cb").is_ok());
        assert!(check_redirect_uri("https://app.example/cb?x=1").is_ok());
        assert!(check_redirect_uri("data:text/html,hi").is_err());
        assert!(check_redirect_uri("https://app.example/caf\u{e9}").is_err());
        assert!(check_redirect_uri("https://app.example/caf%C3%A9").is_ok());
    }
}
