//! The authorization endpoint (RFC 6749 §4.1, OIDC Core §3.1.2) in three pure steps:
//! [`identify`] finds client_id and redirect_uri (errors here show a page and never
//! redirect), [`parse`] validates the rest of the request (errors go back to the verified
//! redirect_uri), and [`decide`] says whether to sign in, ask consent, or issue a code.

use crate::model::{Client, Consent, Policy};

use super::claims::ClaimsRequest;
use super::params::Params;
use super::{ErrorCode, OidcError, pkce, registration, scope};

/// Longest `state` / `nonce` accepted; longer values are refused rather than echoed.
pub const MAX_ECHO_LEN: usize = 2048;
/// Limits on what a pending request keeps (SPEC §8: nothing an unauthenticated request
/// stores grows without bound). Longer values are `invalid_request`, never truncated.
pub const MAX_HINT_LEN: usize = 256;
pub const MAX_ID_TOKEN_HINT_LEN: usize = 8192;
pub const MAX_ACR_VALUES: usize = 16;
pub const MAX_ACR_VALUES_LEN: usize = 512;
pub const MAX_LOCALES_LEN: usize = 256;
pub const MAX_LOCALES: usize = 16;

/// How the response travels back (OAuth 2.0 Multiple Response Types §2.1, Form Post
/// Response Mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ResponseMode {
    Query,
    Fragment,
    FormPost,
}

impl ResponseMode {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "query" => Some(ResponseMode::Query),
            "fragment" => Some(ResponseMode::Fragment),
            "form_post" => Some(ResponseMode::FormPost),
            _ => None,
        }
    }
}

/// OIDC Core §3.1.2.1 `prompt`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
    pub select_account: bool,
}

/// A validated authorization request.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    /// Canonical response_type (`code`, `id_token token`, `code id_token`, ...).
    pub response_type: String,
    pub response_mode: ResponseMode,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    pub id_token_hint: Option<String>,
    pub acr_values: Vec<String>,
    /// The `claims` parameter, limited to claims the client may receive.
    #[serde(default)]
    pub claims: Option<ClaimsRequest>,
}

/// An error shown on the OP's own page: the client or redirect_uri cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageError(pub String);

/// An error returned to the client's verified redirect_uri.
#[derive(Debug, Clone, PartialEq)]
pub struct RedirectError {
    pub error: OidcError,
    pub redirect_uri: String,
    pub response_mode: ResponseMode,
    pub state: Option<String>,
}

/// Step 1: the client_id and the redirect_uri as sent.
pub fn identify(p: &Params) -> Result<(String, Option<String>), PageError> {
    let client_id = p
        .get("client_id")
        .map_err(|d| PageError(d.to_string()))?
        .ok_or_else(|| PageError("The request has no client_id.".into()))?;
    let redirect_uri = p
        .get("redirect_uri")
        .map_err(|d| PageError(d.to_string()))?;
    Ok((client_id.to_string(), redirect_uri.map(str::to_string)))
}

/// Step 1b: the redirect_uri must equal one registered for the client, character for
/// character (RFC 9700 §4.1.3). OIDC Core §3.1.2.1 makes the parameter required. The one
/// exception is RFC 8252 §7.3: a public (native) client registered with a loopback IP
/// literal may use any port, since the operating system picks it at run time.
pub fn check_redirect_uri(
    client: &Client,
    redirect_uri: Option<&str>,
) -> Result<String, PageError> {
    let uri = redirect_uri.ok_or_else(|| PageError("The request has no redirect_uri.".into()))?;
    let loopback_match = || {
        client.is_public()
            && without_loopback_port(uri).is_some_and(|u| {
                client
                    .redirect_uris
                    .iter()
                    .any(|r| without_loopback_port(r).as_deref() == Some(u.as_str()))
            })
    };
    if client.redirect_uris.iter().any(|r| r == uri) || loopback_match() {
        Ok(uri.to_string())
    } else {
        Err(PageError(
            "The redirect_uri is not registered for this application.".into(),
        ))
    }
}

/// `http://127.0.0.1:PORT/rest` or `http://[::1]:PORT/rest` with the port removed,
/// compared as text (no normalisation, so `/a/../cb` never equals `/cb`).
fn without_loopback_port(uri: &str) -> Option<String> {
    let (host, rest) = ["http://127.0.0.1", "http://[::1]"]
        .iter()
        .find_map(|h| uri.strip_prefix(h).map(|rest| (*h, rest)))?;
    let rest = match rest.strip_prefix(':') {
        Some(r) => {
            let digits = r.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 || digits > 5 {
                return None;
            }
            &r[digits..]
        }
        None => rest,
    };
    (rest.is_empty() || rest.starts_with(['/', '?'])).then(|| format!("{host}{rest}"))
}

/// Step 2: everything else. The redirect_uri has been verified, so errors redirect.
pub fn parse(
    p: &Params,
    client: &Client,
    redirect_uri: &str,
) -> Result<AuthRequest, RedirectError> {
    // Errors are delivered in the response mode, whose default depends on the response
    // type, so both are settled first.
    let state_raw = p.get_lenient("state").map(str::to_string);
    let state = state_raw.filter(|s| s.len() <= MAX_ECHO_LEN);
    let fail = |e: OidcError, mode: ResponseMode| RedirectError {
        error: e,
        redirect_uri: redirect_uri.to_string(),
        response_mode: mode,
        state: state.clone(),
    };
    let get = |name: &str| -> Result<Option<&str>, OidcError> {
        p.get(name)
            .map_err(|d| OidcError::invalid_request(d.to_string()))
    };
    let response_type_raw = get("response_type").map_err(|e| fail(e, ResponseMode::Query))?;
    let response_type = response_type_raw.and_then(registration::canonical_response_type);
    // OAuth 2.0 Multiple Response Types §2.1, §3: tokens travel in the fragment by default
    // and never in the query.
    let carries_tokens = response_type.is_some_and(|r| r != "code");
    let default_mode = if carries_tokens {
        ResponseMode::Fragment
    } else {
        ResponseMode::Query
    };
    let mut response_mode = default_mode;
    if let Some(m) = get("response_mode").map_err(|e| fail(e, default_mode))? {
        response_mode = ResponseMode::parse(m).ok_or_else(|| {
            fail(
                OidcError::invalid_request("unsupported response_mode"),
                default_mode,
            )
        })?;
    }
    if carries_tokens && response_mode == ResponseMode::Query {
        return Err(fail(
            OidcError::invalid_request("response_mode=query cannot carry tokens"),
            ResponseMode::Fragment,
        ));
    }
    let fail = |e: OidcError| fail(e, response_mode);
    let get = |name: &str| get(name).map_err(fail);

    if let Err(e) = p.get("state") {
        return Err(fail(OidcError::invalid_request(e.to_string())));
    }
    // SPEC §8: a request with a parameter that is not UTF-8 is refused whole.
    if let Some(e) = p.not_utf8() {
        return Err(fail(OidcError::invalid_request(e.to_string())));
    }
    if p.get_lenient("state")
        .is_some_and(|s| s.len() > MAX_ECHO_LEN)
    {
        return Err(fail(OidcError::invalid_request("state is too long")));
    }
    // OIDC Core §6: request objects are not supported, and say so (discovery advertises
    // request_parameter_supported=false, request_uri_parameter_supported=false).
    if get("request")?.is_some() {
        return Err(fail(OidcError::new(
            ErrorCode::RequestNotSupported,
            "request objects are not supported",
        )));
    }
    if get("request_uri")?.is_some() {
        return Err(fail(OidcError::new(
            ErrorCode::RequestUriNotSupported,
            "request_uri is not supported",
        )));
    }

    let response_type = match (response_type_raw, response_type) {
        (None, _) => return Err(fail(OidcError::invalid_request("response_type is missing"))),
        (Some(_), None) => {
            return Err(fail(OidcError::new(
                ErrorCode::UnsupportedResponseType,
                "unsupported response_type",
            )));
        }
        (Some(_), Some(rt)) => rt,
    };
    if !client.response_types.iter().any(|r| r == response_type) {
        return Err(fail(OidcError::new(
            ErrorCode::UnauthorizedClient,
            format!("the client may not use response_type={response_type}"),
        )));
    }
    let has = |part: &str| response_type.split(' ').any(|x| x == part);

    let scope_text = get("scope")?
        .ok_or_else(|| fail(OidcError::new(ErrorCode::InvalidScope, "scope is missing")))?;
    let scopes =
        scope::parse(scope_text).map_err(|e| fail(OidcError::new(ErrorCode::InvalidScope, e)))?;
    if !scope::contains(&scopes, "openid") {
        return Err(fail(OidcError::new(
            ErrorCode::InvalidScope,
            "scope must include openid",
        )));
    }

    let nonce = get("nonce")?.map(str::to_string);
    if nonce.as_ref().is_some_and(|n| n.len() > MAX_ECHO_LEN) {
        return Err(fail(OidcError::invalid_request("nonce is too long")));
    }
    // OIDC Core §3.2.2.1, §3.3.2.11: an ID token from the authorization endpoint needs a nonce.
    if has("id_token") && nonce.is_none() {
        return Err(fail(OidcError::invalid_request(
            "nonce is required when an ID token is returned here",
        )));
    }

    // PKCE protects a code; responses without one have nothing to bind it to.
    let code_challenge = if has("code") {
        pkce::check_challenge(
            get("code_challenge")?,
            get("code_challenge_method")?,
            client.require_pkce || client.is_public(),
        )
        .map_err(fail)?
    } else {
        None
    };

    let mut prompt = Prompt::default();
    if let Some(text) = get("prompt")? {
        for v in text.split(' ').filter(|s| !s.is_empty()) {
            match v {
                "none" => prompt.none = true,
                "login" => prompt.login = true,
                "consent" => prompt.consent = true,
                "select_account" => prompt.select_account = true,
                _ => {
                    // Fixed text: the value itself may hold characters error_description
                    // must not carry (RFC 6749 §4.1.2.1).
                    return Err(fail(OidcError::invalid_request("unknown prompt value")));
                }
            }
        }
        // OIDC Core §3.1.2.1: none must not be combined with any other value.
        if prompt.none && (prompt.login || prompt.consent || prompt.select_account) {
            return Err(fail(OidcError::invalid_request(
                "prompt=none cannot be combined with other values",
            )));
        }
    }

    let max_age = match get("max_age")? {
        None => None,
        Some(v) => Some(v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            fail(OidcError::invalid_request(
                "max_age must be a non-negative integer",
            ))
        })?),
    };

    let acr_values: Vec<String> = get("acr_values")?
        .map(|s| {
            s.split(' ')
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if acr_values.len() > MAX_ACR_VALUES
        || acr_values.iter().map(String::len).sum::<usize>() > MAX_ACR_VALUES_LEN
    {
        return Err(fail(OidcError::invalid_request("acr_values is too long")));
    }
    // OIDC Core §3.1.2.1: ui_locales and claims_locales are BCP 47 tags separated by
    // spaces; they are not kept, but must be of a sane size.
    for name in ["ui_locales", "claims_locales"] {
        if let Some(v) = get(name)?
            && (v.len() > MAX_LOCALES_LEN
                || v.split(' ').filter(|t| !t.is_empty()).count() > MAX_LOCALES)
        {
            return Err(fail(OidcError::invalid_request(format!(
                "{name} is too long"
            ))));
        }
    }
    let login_hint = get("login_hint")?;
    if login_hint.is_some_and(|h| h.len() > MAX_HINT_LEN) {
        return Err(fail(OidcError::invalid_request("login_hint is too long")));
    }
    let id_token_hint = get("id_token_hint")?;
    if id_token_hint.is_some_and(|h| h.len() > MAX_ID_TOKEN_HINT_LEN) {
        return Err(fail(OidcError::invalid_request(
            "id_token_hint is too long",
        )));
    }

    // display, claims and unknown parameters are accepted and need nothing from the OP
    // beyond not failing (OIDC Core §3.1.2.1, §5.5).
    let claims = match get("claims")? {
        None => None,
        Some(text) => Some(
            ClaimsRequest::parse(text)
                .map_err(|e| fail(OidcError::invalid_request(e)))?
                .allowed(&client.scopes),
        ),
    };

    Ok(AuthRequest {
        claims,
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_string(),
        response_type: response_type.to_string(),
        response_mode,
        scopes,
        state: state.clone(),
        nonce,
        code_challenge,
        prompt,
        max_age,
        login_hint: login_hint.map(str::to_string),
        id_token_hint: id_token_hint.map(str::to_string),
        acr_values,
    })
}

/// `acr` of a sign-in with a password only, and with a password and a second factor.
pub const ACR_ONE_FACTOR: &str = "1";
pub const ACR_TWO_FACTOR: &str = "2";

/// What the OP knows about the browser's SSO session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionView {
    pub user_id: String,
    pub auth_time: i64,
    pub user_groups: Vec<String>,
    /// The authentication context class the session reached.
    pub acr: String,
    /// Whether the user has a second factor set up (a voluntary `acr_values=2` asks for
    /// it only then).
    pub second_factor: bool,
    /// The session began with a passkey or a security key.
    pub webauthn: bool,
}

/// Facts gathered by the caller for [`decide`].
#[derive(Debug, Clone, Default)]
pub struct Context<'a> {
    pub now: i64,
    pub session: Option<SessionView>,
    pub consent: Option<&'a Consent>,
    /// When this request came back from the login page: the time the interaction began.
    /// A session authenticated at or after it satisfies prompt=login and max_age.
    pub interaction_started: Option<i64>,
    /// The signed-in user approved the consent page during this interaction.
    pub consent_given: bool,
    /// `sub` of a verified id_token_hint, if one was sent.
    pub hint_subject: Option<String>,
}

/// The outcome of an authorization request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Show the login page.
    Login,
    /// Show the consent page for these scopes.
    Consent { scopes: Vec<String> },
    /// The signed-in user is not in any of the client's allowed groups.
    Forbidden,
    /// The session has one factor and the client (or an essential acr) needs two, or
    /// the client needs a passkey (`passkey`) and the session began without one.
    StepUp { passkey: bool },
    /// Issue a code for these scopes.
    Issue { scopes: Vec<String> },
    /// Return this error to the client.
    Error(OidcError),
}

/// Step 3: OIDC Core §3.1.2.3-§3.1.2.4 for a valid request.
pub fn decide(req: &AuthRequest, client: &Client, ctx: &Context<'_>) -> Decision {
    let fresh = |s: &SessionView| ctx.interaction_started.is_some_and(|t| s.auth_time >= t);
    // OIDC Core §3.1.2.1 (id_token_hint) and §5.5.1 (a requested `sub` value): only that
    // user may receive a response, whether signed in before or during this request.
    let wanted: Vec<&String> = ctx
        .hint_subject
        .iter()
        .chain(req.claims.as_ref().and_then(|c| c.sub.as_ref()))
        .collect();
    let someone_else = |s: &SessionView| wanted.iter().any(|sub| **sub != s.user_id);
    let needs_login = match &ctx.session {
        None => true,
        Some(s) if fresh(s) => {
            if someone_else(s) {
                return Decision::Error(OidcError::new(
                    ErrorCode::AccessDenied,
                    "signed in as a different user than the request names",
                ));
            }
            false
        }
        Some(s) => {
            req.prompt.login
                || req.prompt.select_account
                || req.max_age.is_some_and(|m| ctx.now - s.auth_time > m)
                || someone_else(s)
        }
    };
    if needs_login {
        if req.prompt.none {
            return Decision::Error(OidcError::new(
                ErrorCode::LoginRequired,
                "the user is not signed in",
            ));
        }
        return Decision::Login;
    }
    let Some(session) = &ctx.session else {
        return Decision::Login;
    };
    // OIDC Core §5.5.1.1: an essential acr that cannot be met fails the request; one
    // that a second factor would meet asks for it.
    let essential = req
        .claims
        .as_ref()
        .map(|c| c.essential_acr.as_slice())
        .unwrap_or_default();
    if !essential.is_empty()
        && !essential.contains(&session.acr)
        && !essential.iter().any(|a| a == ACR_TWO_FACTOR)
    {
        return Decision::Error(OidcError::new(
            ErrorCode::AccessDenied,
            "the requested authentication context class is not available",
        ));
    }
    if !client.admits(&session.user_groups) {
        // OIDC Core §3.1.2.1: prompt=none never shows a page, not even this one.
        if req.prompt.none {
            return Decision::Error(OidcError::new(
                ErrorCode::AccessDenied,
                "the user may not use this application",
            ));
        }
        return Decision::Forbidden;
    }
    // SPEC §10: a passkey client takes only sessions that began with a passkey or a
    // security key (either is two factors, so the rest below is then met).
    if client.policy == Policy::Passkey && !session.webauthn {
        if req.prompt.none {
            return Decision::Error(OidcError::new(
                ErrorCode::LoginRequired,
                "the application requires a passkey",
            ));
        }
        return Decision::StepUp { passkey: true };
    }
    let required = client.policy.needs_two_factors()
        || (!essential.is_empty() && !essential.contains(&session.acr));
    // acr_values is voluntary (OIDC Core §3.1.2.1): a request naming only "2" gets a
    // second factor from a user who has one, when a page may be shown; the session as it
    // is otherwise.
    let asked = session.second_factor
        && !req.acr_values.is_empty()
        && !req.acr_values.contains(&session.acr)
        && req.acr_values.iter().any(|a| a == ACR_TWO_FACTOR);
    if session.acr != ACR_TWO_FACTOR {
        if required && req.prompt.none {
            return Decision::Error(OidcError::new(
                ErrorCode::LoginRequired,
                "the application requires a second factor",
            ));
        }
        if required || (asked && !req.prompt.none) {
            return Decision::StepUp { passkey: false };
        }
    }

    let scopes = scope::grant(&req.scopes, &client.scopes);
    let asked = consent_scopes(req, client);
    let released = consent_claims(&asked, client);
    let remembered = ctx.consent.is_some_and(|c| {
        scope::is_subset(&asked, &c.scopes) && released.iter().all(|n| c.claims.contains(n))
    });
    let needs_consent =
        !ctx.consent_given && (req.prompt.consent || (!client.skip_consent && !remembered));
    if needs_consent {
        if req.prompt.none {
            return Decision::Error(OidcError::new(
                ErrorCode::ConsentRequired,
                "the user has not consented",
            ));
        }
        return Decision::Consent { scopes: asked };
    }
    Decision::Issue { scopes }
}

/// What the user consents to: the granted scopes and the scopes of claims requested
/// individually, limited to what the client is registered for.
pub fn consent_scopes(req: &AuthRequest, client: &Client) -> Vec<String> {
    let mut wanted = req.scopes.clone();
    if let Some(c) = &req.claims {
        wanted.extend(c.scopes());
    }
    scope::grant(&wanted, &client.scopes)
}

/// The custom claims (the client's claim rules, by name) that `scopes` release: what the
/// consent page names besides the scopes, and what a remembered consent must cover.
pub fn consent_claims(scopes: &[String], client: &Client) -> Vec<String> {
    let mut names: Vec<String> = client
        .claims
        .iter()
        .filter(|r| scope::contains(scopes, &r.scope))
        .map(|r| r.name.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Where and how to deliver an authorization response.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// 303 to this URL (query or fragment mode).
    Redirect(String),
    /// An auto-submitting form posting these fields to the redirect_uri.
    FormPost {
        action: String,
        fields: Vec<(String, String)>,
    },
}

/// Success parameters: code, state (untouched), iss (RFC 9207).
pub fn success_params(code: &str, state: Option<&str>, issuer: &str) -> Vec<(String, String)> {
    let issued = Issued {
        code: Some(code.to_string()),
        ..Issued::default()
    };
    response_params(&issued, state, issuer)
}

/// What an authorization response carries besides state and iss.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Issued {
    pub code: Option<String>,
    /// Access token and its lifetime in seconds.
    pub access_token: Option<(String, i64)>,
    pub id_token: Option<String>,
}

/// Success parameters for any response type (OIDC Core §3.1.2.5, §3.2.2.5, §3.3.2.5):
/// code, access_token with token_type and expires_in, id_token, state untouched, and iss
/// (RFC 9207).
pub fn response_params(i: &Issued, state: Option<&str>, issuer: &str) -> Vec<(String, String)> {
    let mut p = Vec::new();
    if let Some(c) = &i.code {
        p.push(("code".to_string(), c.clone()));
    }
    if let Some((t, expires_in)) = &i.access_token {
        p.push(("access_token".into(), t.clone()));
        p.push(("token_type".into(), "Bearer".into()));
        p.push(("expires_in".into(), expires_in.to_string()));
    }
    if let Some(t) = &i.id_token {
        p.push(("id_token".into(), t.clone()));
    }
    if let Some(s) = state {
        p.push(("state".into(), s.to_string()));
    }
    p.push(("iss".into(), issuer.to_string()));
    p
}

/// Error parameters per RFC 6749 §4.1.2.1 plus iss (RFC 9207).
pub fn error_params(e: &OidcError, state: Option<&str>, issuer: &str) -> Vec<(String, String)> {
    let mut p = vec![
        ("error".to_string(), e.code.as_str().to_string()),
        ("error_description".to_string(), e.description.clone()),
    ];
    if let Some(s) = state {
        p.push(("state".into(), s.to_string()));
    }
    p.push(("iss".into(), issuer.to_string()));
    p
}

/// Builds the response for a mode. Query parameters already in the registered URI are
/// kept (RFC 6749 §3.1.2).
pub fn deliver(redirect_uri: &str, mode: ResponseMode, params: Vec<(String, String)>) -> Delivery {
    let encoded = || {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &params {
            s.append_pair(k, v);
        }
        s.finish()
    };
    match mode {
        ResponseMode::Query => {
            let sep = if redirect_uri.contains('?') { '&' } else { '?' };
            Delivery::Redirect(format!("{redirect_uri}{sep}{}", encoded()))
        }
        ResponseMode::Fragment => Delivery::Redirect(format!("{redirect_uri}#{}", encoded())),
        ResponseMode::FormPost => Delivery::FormPost {
            action: redirect_uri.to_string(),
            fields: params,
        },
    }
}

#[cfg(test)]
mod tests;
