//! The rules of each grant: what a request must carry, and a pure decision over the facts
//! the handler gathered.

use crate::model::{AuthCode, Client, DeviceGrant, DeviceStatus, Grant, RefreshToken, User};

use super::super::device::{Poll, poll};
use super::super::params::Params;
use super::super::{ErrorCode, OidcError, pkce, scope};
use super::{Authn, Draws, Lifetimes, Plan, Refresh, Refusal, Replay, Subject};

/// A decision: tokens to issue, or why not.
pub type Decision<'a> = Result<Plan<'a>, Refusal>;

/// One parameter, refused when sent twice.
fn single<'f>(form: &'f Params, name: &str) -> Result<Option<&'f str>, OidcError> {
    form.get(name)
        .map_err(|d| OidcError::invalid_request(d.to_string()))
}

fn required<'f>(form: &'f Params, name: &str) -> Result<&'f str, OidcError> {
    single(form, name)?.ok_or_else(|| OidcError::invalid_request(format!("{name} is missing")))
}

/// The optional `scope` parameter, parsed.
pub fn scope_param(form: &Params) -> Result<Option<Vec<String>>, OidcError> {
    match single(form, "scope")? {
        None => Ok(None),
        Some(s) => scope::parse(s)
            .map(Some)
            .map_err(|e| OidcError::new(ErrorCode::InvalidScope, e)),
    }
}

/// The grant type asked for, if the client may use it.
pub fn grant_type<'f>(form: &'f Params, client: &Client) -> Result<&'f str, OidcError> {
    let g = required(form, "grant_type")?;
    let known = matches!(
        g,
        "authorization_code" | "refresh_token" | "client_credentials" | "password"
    ) || g == super::super::registration::DEVICE_CODE;
    if !known {
        return Err(OidcError::new(
            ErrorCode::UnsupportedGrantType,
            "unsupported grant_type",
        ));
    }
    if !client.allows_grant(g) {
        return Err(OidcError::new(
            ErrorCode::UnauthorizedClient,
            format!("the client may not use {g}"),
        ));
    }
    Ok(g)
}

/// The user still exists, is enabled, and is in one of the client's allowed groups: a
/// change of membership takes effect at the next token request, not at the next login.
pub fn usable(client: &Client, user: &User) -> bool {
    !user.disabled && client.admits(&user.groups)
}

/// Whether a grant gets a refresh token: the client must be registered for the grant
/// type. `offline_access` decides whether it outlives the SSO session.
fn refresh_for(client: &Client) -> Refresh {
    if client.allows_grant("refresh_token") {
        Refresh::New
    } else {
        Refresh::None
    }
}

// ---------------------------------------------------------------------------------------
// authorization_code (RFC 6749 §4.1.3, RFC 7636 §4.6)

/// What an authorization_code request carries.
#[derive(Debug, PartialEq)]
pub struct CodeRequest<'f> {
    pub code: &'f str,
    pub redirect_uri: Option<&'f str>,
    pub verifier: Option<&'f str>,
}

pub fn code_request(form: &Params) -> Result<CodeRequest<'_>, OidcError> {
    Ok(CodeRequest {
        code: required(form, "code")?,
        redirect_uri: single(form, "redirect_uri")?,
        verifier: single(form, "code_verifier")?,
    })
}

/// What the handler found for a code: the stored code (by its hash), its user, and
/// whether its SSO session is still alive.
pub struct CodeFacts<'a> {
    pub client: &'a Client,
    pub request: &'a CodeRequest<'a>,
    pub code: Option<&'a AuthCode>,
    pub user: Option<&'a User>,
    pub session_alive: bool,
}

pub fn decide_code<'a>(f: &CodeFacts<'a>, now: i64) -> Decision<'a> {
    let client = f.client;
    let Some(code) = f.code else {
        return Err(OidcError::invalid_grant("the code is invalid or expired").into());
    };
    if code.used && code.client_id == client.client_id {
        return Err(Refusal::Replay(Replay::of_code(code)));
    }
    check_code(code, &client.client_id, f.request, now)?;
    let Some(user) = f.user.filter(|u| usable(client, u)) else {
        return Err(OidcError::invalid_grant("the user may no longer use this client").into());
    };
    // The client as it is now decides: scopes or claims it lost since the code was
    // issued are not released.
    let scopes = scope::grant(&code.scopes, &client.scopes);
    let offline = scope::contains(&scopes, "offline_access");
    // A code outlives its session only when offline access was granted.
    if !offline && !f.session_alive {
        return Err(OidcError::invalid_grant("the sign-in session of this code has ended").into());
    }
    meets_policy(client, &code.amr, &code.acr)?;
    Ok(Plan {
        client,
        subject: Subject::User {
            user,
            authn: Authn {
                auth_time: code.auth_time,
                amr: code.amr.clone(),
                acr: code.acr.clone(),
                sid: code.sid.clone(),
                nonce: code.nonce.clone(),
                session_hash: code.session_hash.clone(),
            },
        },
        scopes,
        grant_id: code.grant_id.clone(),
        new_grant: Some(offline),
        refresh: refresh_for(client),
        claims: code.claims.as_ref().map(|c| c.allowed(&client.scopes)),
    })
}

/// RFC 6749 §4.1.3 and RFC 7636 §4.6 checks of a stored, unused code.
fn check_code(
    code: &AuthCode,
    client_id: &str,
    r: &CodeRequest<'_>,
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
    if r.redirect_uri != Some(code.redirect_uri.as_str()) {
        return Err(OidcError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    match (&code.code_challenge, r.verifier) {
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

// ---------------------------------------------------------------------------------------
// refresh_token (RFC 6749 §6, RFC 9700 §4.14)

/// What a refresh_token request carries.
#[derive(Debug, PartialEq)]
pub struct RefreshRequest<'f> {
    pub token: &'f str,
    pub scope: Option<&'f str>,
}

pub fn refresh_request(form: &Params) -> Result<RefreshRequest<'_>, OidcError> {
    Ok(RefreshRequest {
        token: required(form, "refresh_token")?,
        scope: single(form, "scope")?,
    })
}

/// What the handler found for a refresh token: the stored token (by its hash), its
/// grant, the grant's session (alive or not) and the user.
pub struct RefreshFacts<'a> {
    pub client: &'a Client,
    pub request: &'a RefreshRequest<'a>,
    pub token: Option<&'a RefreshToken>,
    pub grant: Option<&'a Grant>,
    /// The session the grant follows now (a sign-in again moves it to a new cookie).
    pub session_alive: bool,
    pub user: Option<&'a User>,
}

fn invalid_refresh() -> Refusal {
    OidcError::invalid_grant("the refresh token is invalid, expired or revoked").into()
}

pub fn decide_refresh<'a>(f: &RefreshFacts<'a>, l: &Lifetimes, now: i64) -> Decision<'a> {
    let client = f.client;
    let Some(old) = f.token else {
        return Err(invalid_refresh());
    };
    if old.client_id != client.client_id {
        return Err(
            OidcError::invalid_grant("the refresh token was issued to another client").into(),
        );
    }
    if old.used {
        return Err(Refusal::Replay(Replay::of_refresh(old)));
    }
    if f.grant.is_none_or(|g| g.revoked) {
        return Err(invalid_refresh());
    }
    check_refresh(old, client, f.session_alive, now)?;
    let scopes = match f.request.scope {
        None => old.scopes.clone(),
        Some(s) => {
            let wanted = scope::parse(s).map_err(|e| OidcError::new(ErrorCode::InvalidScope, e))?;
            if !scope::is_subset(&wanted, &old.scopes) {
                return Err(OidcError::new(
                    ErrorCode::InvalidScope,
                    "scope exceeds the original grant",
                )
                .into());
            }
            // Keep canonical order and drop nothing the client asked for.
            old.scopes
                .iter()
                .filter(|s| wanted.contains(s))
                .cloned()
                .collect()
        }
    };
    let Some(user) = f.user.filter(|u| usable(client, u)) else {
        return Err(invalid_refresh());
    };
    // The successor keeps the original scope, so asking for less now does not narrow
    // what later refreshes may ask for (RFC 6749 §6); its idle expiry starts again but
    // never passes the family's absolute one.
    let successor = RefreshToken {
        issued_at: now,
        expires_at: (now + l.refresh_idle).min(old.absolute_expires_at),
        used: false,
        ..old.clone()
    };
    Ok(Plan {
        client,
        subject: Subject::User {
            user,
            authn: Authn {
                auth_time: old.auth_time,
                amr: old.amr.clone(),
                acr: old.acr.clone(),
                sid: old.sid.clone(),
                nonce: old.nonce.clone(),
                session_hash: old.session_hash.clone(),
            },
        },
        // A client narrowed since the grant no longer receives the scopes it lost.
        scopes: scope::grant(&scopes, &client.scopes),
        grant_id: old.grant_id.clone(),
        new_grant: None,
        refresh: Refresh::Rotate(Box::new(successor)),
        claims: old.claims.as_ref().map(|c| c.allowed(&client.scopes)),
    })
}

/// Whether a stored, unused refresh token of this client may still be exchanged (also
/// what introspection calls active): not expired, its session alive where it needs one,
/// and of the strength its client requires now.
pub fn check_refresh(
    rt: &RefreshToken,
    client: &Client,
    session_alive: bool,
    now: i64,
) -> Result<(), OidcError> {
    if rt.client_id != client.client_id {
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
    // A client switched to two-factor (or passkey) sign-in does not keep weaker grants
    // alive.
    meets_policy(client, &rt.amr, &rt.acr)
}

/// Whether a sign-in (`amr`, `acr`) is as strong as the client demands now: a code or
/// device approval made before the client was switched to a stricter policy, or a
/// refresh token from then, gets nothing.
fn meets_policy(client: &Client, amr: &[String], acr: &str) -> Result<(), OidcError> {
    if client.policy.needs_two_factors() && acr != super::super::authorize::ACR_TWO_FACTOR {
        return Err(OidcError::invalid_grant(
            "the application now requires two-factor sign-in",
        ));
    }
    if !client.policy.met_by_amr(amr) {
        return Err(OidcError::invalid_grant(
            "the application now requires a passkey",
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// client_credentials (RFC 6749 §4.4)

/// The client acts for itself. Scopes: any registered ones except those about a user
/// (openid, offline_access); asking for others is invalid_scope. No refresh token.
pub fn decide_client_credentials(client: &Client, requested: Option<Vec<String>>) -> Decision<'_> {
    let requested = requested.unwrap_or_default();
    let allowed: Vec<String> = client
        .scopes
        .iter()
        .filter(|s| *s != "openid" && *s != "offline_access")
        .cloned()
        .collect();
    if requested.iter().any(|s| !allowed.contains(s)) {
        return Err(OidcError::new(
            ErrorCode::InvalidScope,
            "a requested scope is not available to this client",
        )
        .into());
    }
    // No grant: the token is checked against the client and the revocation list only,
    // so issuing one stores nothing.
    Ok(Plan {
        client,
        subject: Subject::Client,
        scopes: scope::grant(&requested, &allowed),
        grant_id: String::new(),
        new_grant: None,
        refresh: Refresh::None,
        claims: None,
    })
}

// ---------------------------------------------------------------------------------------
// password (RFC 6749 §4.3, for clients that opted in)

/// Longest username and password the password grant looks at (longer passwords are
/// treated as wrong without being hashed).
pub const MAX_USERNAME_CHARS: usize = 128;
pub const MAX_PASSWORD_LEN: usize = 512;

/// What a password request carries, checked before any hashing: the scopes it gets.
#[derive(Debug, PartialEq)]
pub struct PasswordRequest<'f> {
    pub username: String,
    /// `None` when too long to be anyone's password.
    pub password: Option<&'f str>,
    pub scopes: Vec<String>,
}

pub fn password_request<'f>(
    form: &'f Params,
    client: &Client,
) -> Result<PasswordRequest<'f>, OidcError> {
    let (Some(username), Some(password)) =
        (form.get_lenient("username"), form.get_lenient("password"))
    else {
        return Err(OidcError::invalid_request(
            "username and password are required",
        ));
    };
    if client.policy.needs_two_factors() {
        // A password alone cannot satisfy a client that demands more.
        return Err(OidcError::new(
            ErrorCode::UnauthorizedClient,
            "this client requires two-factor sign-in",
        ));
    }
    let scopes = match scope_param(form)? {
        None => client.scopes.clone(),
        Some(r) => scope::grant(&r, &client.scopes),
    };
    if scopes.is_empty() {
        return Err(OidcError::new(
            ErrorCode::InvalidScope,
            "none of the requested scopes is available",
        ));
    }
    Ok(PasswordRequest {
        username: username.trim().chars().take(MAX_USERNAME_CHARS).collect(),
        password: (password.len() <= MAX_PASSWORD_LEN).then_some(password),
        scopes,
    })
}

/// After the password was checked: whether the person may have tokens. There is no SSO
/// session, so the grant is offline, with a fresh `sid`.
pub fn decide_password<'a>(
    client: &'a Client,
    request: &PasswordRequest<'_>,
    user: Option<&'a User>,
    password_ok: bool,
    d: &Draws,
    now: i64,
) -> Decision<'a> {
    let Some(user) = user.filter(|u| password_ok && usable(client, u)) else {
        return Err(Refusal::SignInFailed {
            error: OidcError::invalid_grant("invalid username or password"),
            detail: "password grant",
            counts: true,
        });
    };
    // The grant has no way to ask for a second factor, a passkey or a new password.
    if user.mfa.has_second_factor() || user.must_change_password || user.passkeys_only {
        return Err(Refusal::SignInFailed {
            error: OidcError::invalid_grant(
                "this account must sign in through the browser (second factor, passkey or new password)",
            ),
            detail: "password grant: the account needs a browser sign-in",
            counts: false,
        });
    }
    Ok(Plan {
        client,
        subject: Subject::User {
            user,
            authn: Authn {
                auth_time: now,
                amr: vec!["pwd".into()],
                acr: "1".into(),
                sid: d.sid.clone(),
                nonce: None,
                session_hash: String::new(),
            },
        },
        scopes: request.scopes.clone(),
        grant_id: d.grant_id.clone(),
        new_grant: Some(true),
        refresh: refresh_for(client),
        claims: None,
    })
}

// ---------------------------------------------------------------------------------------
// device_code (RFC 8628 §3.4-3.5)

pub fn device_request(form: &Params) -> Result<&str, OidcError> {
    required(form, "device_code")
}

/// A device polling for the person's answer; `grant` is the stored request (by the
/// hash of the device_code) and `user` the one who approved it.
pub fn decide_device<'a>(
    client: &'a Client,
    grant: Option<&DeviceGrant>,
    user: Option<&'a User>,
    d: &Draws,
    now: i64,
) -> Decision<'a> {
    let Some(grant) = grant else {
        return Err(OidcError::invalid_grant("the device_code is invalid").into());
    };
    match poll(grant, &client.client_id, now) {
        Poll::Refuse(e) => Err(e.into()),
        Poll::Wait { error, slow_down } => Err(Refusal::Wait { error, slow_down }),
        Poll::Ready => {
            let DeviceStatus::Approved {
                auth_time,
                amr,
                acr,
                sid,
                ..
            } = &grant.status
            else {
                return Err(OidcError::invalid_grant("the device_code is not approved").into());
            };
            let Some(user) = user.filter(|u| usable(client, u)) else {
                return Err(
                    OidcError::invalid_grant("the user may no longer use this client").into(),
                );
            };
            meets_policy(client, amr, acr)?;
            // The device has no browser session of its own: its grant is offline.
            Ok(Plan {
                client,
                subject: Subject::User {
                    user,
                    authn: Authn {
                        auth_time: *auth_time,
                        amr: amr.clone(),
                        acr: acr.clone(),
                        sid: sid.clone(),
                        nonce: None,
                        session_hash: String::new(),
                    },
                },
                scopes: grant.scopes.clone(),
                grant_id: d.grant_id.clone(),
                new_grant: Some(true),
                refresh: refresh_for(client),
                claims: None,
            })
        }
    }
}

/// The id of the user who approved a device request (the fact the handler looks up).
pub fn device_approver(grant: &DeviceGrant) -> Option<&str> {
    match &grant.status {
        DeviceStatus::Approved { user_id, .. } => Some(user_id),
        _ => None,
    }
}
