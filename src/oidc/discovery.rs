//! OIDC Discovery 1.0 §3 and RFC 8414 §2 metadata. Every value advertises only what this
//! build implements; the same document is served at both well-known paths.

use serde_json::{Value, json};

use super::{claims, registration, scope};

/// Endpoint paths (SPEC §5, following Defguard's API so its tutorials apply).
pub mod paths {
    pub const AUTHORIZE: &str = "/api/v1/oauth/authorize";
    pub const AUTHORIZE_ALIAS: &str = "/api/v1/openid/authorize";
    /// Where a sign-in or consent returns to continue its authorization request.
    pub const AUTHORIZE_RESUME: &str = "/api/v1/oauth/authorize/resume";
    pub const TOKEN: &str = "/api/v1/oauth/token";
    pub const TOKEN_ALIAS: &str = "/api/v1/openid/token";
    pub const USERINFO: &str = "/api/v1/oauth/userinfo";
    pub const JWKS: &str = "/api/v1/oauth/discovery/keys";
    pub const END_SESSION: &str = "/api/v1/oauth/logout";
    pub const REVOKE: &str = "/api/v1/oauth/revoke";
    pub const INTROSPECT: &str = "/api/v1/oauth/introspect";
    pub const PAR: &str = "/api/v1/oauth/par";
    pub const DEVICE_AUTHORIZATION: &str = "/api/v1/oauth/device_authorization";
    pub const OIDC_DISCOVERY: &str = "/.well-known/openid-configuration";
    pub const OAUTH_METADATA: &str = "/.well-known/oauth-authorization-server";
}

/// Client authentication methods, confidential ones first (introspection takes only those).
const AUTH_METHODS: [&str; 5] = [
    "client_secret_basic",
    "client_secret_post",
    "client_secret_jwt",
    "private_key_jwt",
    "none",
];

/// The metadata document for `issuer` (no trailing slash).
pub fn metadata(issuer: &str) -> Value {
    metadata_with(issuer, &[], &[], &["en"])
}

/// [`metadata`] with the clients' own scopes and custom claims (SPEC §14) and the page
/// languages (SPEC §12) listed too.
pub fn metadata_with(
    issuer: &str,
    scopes: &[String],
    claims: &[String],
    ui_locales: &[&str],
) -> Value {
    let scopes: Vec<&str> = scope::SUPPORTED
        .iter()
        .copied()
        .chain(scopes.iter().map(String::as_str))
        .collect();
    let claims: Vec<&str> = claims::SUPPORTED
        .iter()
        .copied()
        .chain(claims.iter().map(String::as_str))
        .collect();
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}{}", paths::AUTHORIZE),
        "token_endpoint": format!("{issuer}{}", paths::TOKEN),
        "userinfo_endpoint": format!("{issuer}{}", paths::USERINFO),
                "jwks_uri": format!("{issuer}{}", paths::JWKS),
                "end_session_endpoint": format!("{issuer}{}", paths::END_SESSION),
        "revocation_endpoint": format!("{issuer}{}", paths::REVOKE),
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256", "HS256"],
                "introspection_endpoint": format!("{issuer}{}", paths::INTROSPECT),
        "pushed_authorization_request_endpoint": format!("{issuer}{}", paths::PAR),
                "require_pushed_authorization_requests": false,
        "device_authorization_endpoint": format!("{issuer}{}", paths::DEVICE_AUTHORIZATION),
        "introspection_endpoint_auth_methods_supported": &AUTH_METHODS[..4],
        "introspection_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256", "HS256"],
        "frontchannel_logout_supported": true,
        "frontchannel_logout_session_supported": true,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "scopes_supported": scopes,
        "response_types_supported": registration::RESPONSE_TYPES,
        "response_modes_supported": ["query", "fragment", "form_post"],
        "grant_types_supported": registration::GRANT_TYPES,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256", "HS256"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": claims,
        "claim_types_supported": ["normal"],
        "claims_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "require_request_uri_registration": false,
        "authorization_response_iss_parameter_supported": true,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "display_values_supported": ["page", "popup"],
        "acr_values_supported": [crate::oidc::authorize::ACR_ONE_FACTOR, crate::oidc::authorize::ACR_TWO_FACTOR],
        "ui_locales_supported": ui_locales,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_hang_off_the_issuer() {
        let m = metadata("https://op.example:8443");
        assert_eq!(m["issuer"], "https://op.example:8443");
        for (k, v) in m.as_object().unwrap() {
            if k.ends_with("_endpoint") || k == "jwks_uri" {
                assert!(
                    v.as_str().unwrap().starts_with("https://op.example:8443/"),
                    "{k}"
                );
            }
        }
        assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
        assert!(
            m["scopes_supported"]
                .as_array()
                .unwrap()
                .contains(&json!("openid"))
        );
        assert!(
            m["grant_types_supported"]
                .as_array()
                .unwrap()
                .contains(&json!("refresh_token"))
        );
    }
}
