//! The device authorization grant (RFC 8628): the device authorization endpoint, and the
//! `/device` page where a signed-in person enters the user code and allows or denies the
//! device. Polling rules are in `oidc::device`; the token exchange is in `token.rs`.

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::json;

use super::response::{self, Resp};
use super::{App, Req, SignedIn};
use crate::model::{DeviceGrant, DeviceStatus};
use crate::oidc::device as rules;
use crate::oidc::registration::DEVICE_CODE;
use crate::oidc::{ErrorCode, OidcError, scope};
use crate::store::StoreError;

fn json_error(e: &OidcError) -> Resp {
    response::with_header(response::token_error(e), "pragma", "no-cache")
}

/// POST /api/v1/oauth/device_authorization (RFC 8628 §3.1-3.2).
pub(super) async fn authorization(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    let (form, client) = match super::token::authenticated_form(app, req).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return json_error(&e),
        Err(f) => return json_error(&f.to_oidc()),
    };
    if !client.allows_grant(DEVICE_CODE) {
        return json_error(&OidcError::new(
            ErrorCode::UnauthorizedClient,
            "the client may not use the device grant",
        ));
    }
    let scopes = match form.get("scope") {
        Err(_) => return json_error(&OidcError::invalid_request("scope was sent more than once")),
        Ok(None) => client.scopes.clone(),
        Ok(Some(s)) => match scope::parse(s) {
            Ok(requested) => scope::grant(&requested, &client.scopes),
            Err(e) => return json_error(&OidcError::new(ErrorCode::InvalidScope, e)),
        },
    };
    if scopes.is_empty() {
        return json_error(&OidcError::new(
            ErrorCode::InvalidScope,
            "none of the requested scopes is available",
        ));
    }
    let device_code = crate::clock::random_token();
    let hash = crate::keys::token_hash(&device_code);
    for _ in 0..5 {
        let grant = DeviceGrant {
            client_id: client.client_id.clone(),
            scopes: scopes.clone(),
            user_code: rules::user_code(&crate::clock::random_bytes::<{ rules::USER_CODE_LEN }>()),
            expires_at: now + rules::LIFETIME,
            interval: rules::INTERVAL,
            last_poll: None,
            status: DeviceStatus::Pending,
            used: false,
        };
        match app.store.put_device(&hash, &grant) {
            // A user code already in use: draw another.
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return json_error(&super::response::Fail::Store(e).to_oidc()),
            Ok(()) => {
                let shown = rules::display(&grant.user_code);
                let issuer = &app.config.issuer;
                let body = json!({
                    "device_code": device_code,
                    "user_code": shown,
                    "verification_uri": format!("{issuer}/device"),
                    "verification_uri_complete": format!("{issuer}/device?user_code={shown}"),
                    "expires_in": rules::LIFETIME,
                    "interval": rules::INTERVAL,
                });
                return response::with_header(
                    response::json(StatusCode::OK, &body),
                    "pragma",
                    "no-cache",
                );
            }
        }
    }
    json_error(&OidcError::new(
        ErrorCode::TemporarilyUnavailable,
        "try again",
    ))
}

struct View<'a> {
    user_code: &'a str,
    error: Option<&'a str>,
    /// Set when the code was found: show the allow/deny question.
    found: Option<(&'a DeviceGrant, String)>,
    status: StatusCode,
}

fn render(app: &App, req: &Req, who: &SignedIn, v: View<'_>) -> Resp {
    let (csrf, cookie) = app.csrf_token(req);
    let (client_name, scopes) = match &v.found {
        Some((g, name)) => {
            let described: Vec<&str> = g.scopes.iter().filter_map(|s| scope::describe(s)).collect();
            (Some(name.clone()), described)
        }
        None => (None, vec![]),
    };
    let body = app.pages.render(
        "device.html",
        &json!({
            "title": "Connect a device",
            "csrf": csrf,
            "user_code": v.user_code,
            "error": v.error,
            "client_name": client_name,
            "scopes": scopes,
            "username": who.user.username,
        }),
    );
    let r = response::html(v.status, body);
    match cookie {
        Some(c) => response::with_header(r, "set-cookie", &c),
        None => r,
    }
}

fn sign_in_first(code: Option<&str>) -> Resp {
    let next = match code {
        Some(c) => format!(
            "/device?user_code={}",
            form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>()
        ),
        None => "/device".to_string(),
    };
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("next", &next)
        .finish();
    response::redirect(&format!("/login?{q}"))
}

/// A pending, unexpired device authorization for what the person typed.
fn lookup(app: &App, typed: &str, now: i64) -> Result<Option<(String, DeviceGrant)>, StoreError> {
    let Some(code) = rules::normalise(typed) else {
        return Ok(None);
    };
    Ok(app
        .store
        .device_by_user_code(&code)?
        .filter(|(_, g)| g.status == DeviceStatus::Pending && !g.used && now < g.expires_at))
}

/// GET /device.
pub(super) fn page(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    let q = req.query_params();
    let typed = q.get_lenient("user_code");
    let who = match app.signed_in(req, now) {
        Ok(Some(s)) => s,
        Ok(None) => return sign_in_first(typed),
        Err(e) => return app.fail_page(e.into()),
    };
    match typed {
        None => render(
            app,
            req,
            &who,
            View {
                user_code: "",
                error: None,
                found: None,
                status: StatusCode::OK,
            },
        ),
        Some(t) => show_code(app, req, &who, t, now),
    }
}

fn show_code(app: &App, req: &Req, who: &SignedIn, typed: &str, now: i64) -> Resp {
    let not_found = "That code is not valid or has expired. Check the code on your device.";
    let throttle_key = format!("device-code@{}", req.peer);
    if let Err(wait) = app
        .throttle
        .check(&throttle_key, req.peer, crate::clock::now_ms())
    {
        let msg = format!("Too many wrong codes. Wait {wait} seconds and try again.");
        let view = View {
            user_code: typed,
            error: Some(&msg),
            found: None,
            status: StatusCode::TOO_MANY_REQUESTS,
        };
        return render(app, req, who, view);
    }
    match lookup(app, typed, now) {
        Err(e) => app.fail_page(e.into()),
        Ok(None) => {
            app.throttle
                .failure(&throttle_key, req.peer, crate::clock::now_ms());
            render(
                app,
                req,
                who,
                View {
                    user_code: typed,
                    error: Some(not_found),
                    found: None,
                    status: StatusCode::BAD_REQUEST,
                },
            )
        }
        Ok(Some((_, g))) => {
            let name = match app.client(&g.client_id) {
                Ok(Some(c)) => c.name,
                Ok(None) => {
                    return render(
                        app,
                        req,
                        who,
                        View {
                            user_code: typed,
                            error: Some(not_found),
                            found: None,
                            status: StatusCode::BAD_REQUEST,
                        },
                    );
                }
                Err(e) => return app.fail_page(e.into()),
            };
            let shown = rules::display(&g.user_code);
            render(
                app,
                req,
                who,
                View {
                    user_code: &shown,
                    error: None,
                    found: Some((&g, name)),
                    status: StatusCode::OK,
                },
            )
        }
    }
}

/// POST /device: look a code up, or record the person's answer.
pub(super) fn submit(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    if !req.is_form() {
        return app.error_page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "The form must be form-encoded.",
        );
    }
    let form = req.form();
    let typed = form.get_lenient("user_code").unwrap_or("").to_string();
    let who = match app.signed_in(req, now) {
        Ok(Some(s)) => s,
        Ok(None) => return sign_in_first(Some(&typed)),
        Err(e) => return app.fail_page(e.into()),
    };
    if !app.csrf_ok(req, &form) {
        return app.error_page(
            StatusCode::BAD_REQUEST,
            "Form expired",
            "The form expired. Reload the page and try again.",
        );
    }
    let decision = match form.get_lenient("decision") {
        None => return show_code(app, req, &who, &typed, now),
        Some(d) => d,
    };
    let (hash, grant) = match lookup(app, &typed, now) {
        Ok(Some(x)) => x,
        Ok(None) => {
            return app.error_page(
                StatusCode::BAD_REQUEST,
                "Code expired",
                "That code is not valid or has expired.",
            );
        }
        Err(e) => return app.fail_page(e.into()),
    };
    let client = match app.client(&grant.client_id) {
        Ok(Some(c)) => c,
        Ok(None) => {
            return app.error_page(
                StatusCode::BAD_REQUEST,
                "Code expired",
                "The application was removed.",
            );
        }
        Err(e) => return app.fail_page(e.into()),
    };
    // A two-factor client's device gets only a two-factor approval.
    if decision == "allow"
        && client.policy == crate::model::Policy::TwoFactor
        && who.session.acr != crate::oidc::authorize::ACR_TWO_FACTOR
        && client.admits(&who.user.groups)
    {
        let target = super::signin::Target {
            interaction: None,
            next: Some(format!(
                "/device?user_code={}",
                crate::oidc::params::encode(&typed)
            )),
        };
        return super::signin::step_up(app, &who, target, &client.name);
    }
    let allowed = decision == "allow" && client.admits(&who.user.groups);
    let status = if allowed {
        DeviceStatus::Approved {
            user_id: who.user.id.clone(),
            auth_time: who.session.auth_time,
            amr: who.session.amr.clone(),
            acr: who.session.acr.clone(),
            sid: who.session.sid.clone(),
        }
    } else {
        DeviceStatus::Denied
    };
    match app.store.answer_device(&hash, &status, now) {
        Ok(true) => {}
        Ok(false) => {
            return app.error_page(
                StatusCode::BAD_REQUEST,
                "Code expired",
                "That code is not valid or has expired.",
            );
        }
        Err(e) => return app.fail_page(e.into()),
    }
    let kind = if allowed {
        "device.approved"
    } else {
        "device.denied"
    };
    app.audit(
        kind,
        Some(&who.user.username),
        Some(&client.client_id),
        Some(req.peer),
        "",
        now,
    );
    let body = match (decision, allowed) {
        (_, true) => app.pages.message(
            "Device connected",
            &format!(
                "{} can now use your account. Return to your device.",
                client.name
            ),
            None,
        ),
        ("allow", false) => app.pages.error(
            "Access denied",
            &format!("Your account is not allowed to use {}.", client.name),
        ),
        _ => app
            .pages
            .message("Request denied", "The device was not connected.", None),
    };
    let status = if decision == "allow" && !allowed {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::OK
    };
    response::html(status, body)
}
