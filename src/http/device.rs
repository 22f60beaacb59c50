//! The device authorization grant (RFC 8628): the device authorization endpoint, and the
//! `/device` page where a signed-in person enters the user code and allows or denies the
//! device. Polling rules are in `oidc::device`; the token exchange is in `token.rs`.

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::json;

use super::response::{self, EndpointError, Resp, Shape};
use super::{App, Req, SignedIn};
use crate::model::{DeviceGrant, DeviceStatus};
use crate::oidc::device as rules;
use crate::oidc::registration::DEVICE_CODE;
use crate::oidc::{ErrorCode, OidcError, scope};
use crate::signin::throttle::Source;
use crate::store::StoreError;

/// Device codes not yet expired, counted so that unauthenticated (public-client) requests
/// cannot fill the store (SPEC §8): 10,000 in all, 100 per source address. There is no
/// share per client, which others could fill for it. Codes all live [`rules::LIFETIME`],
/// so the oldest expire first.
#[derive(Default)]
pub struct Outstanding(std::sync::Mutex<std::collections::VecDeque<(i64, Source)>>);

const MAX_CODES: usize = 10_000;
const CODES_PER_SOURCE: usize = 100;

impl Outstanding {
    /// Counts a new code for `source`, or `false` when a share is full.
    pub fn admit(&self, source: Source, now: i64) -> bool {
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        while q.front().is_some_and(|(exp, _)| *exp <= now) {
            q.pop_front();
        }
        let from_source = q.iter().filter(|(_, s)| *s == source).count();
        if q.len() >= MAX_CODES || from_source >= CODES_PER_SOURCE {
            return false;
        }
        q.push_back((now + rules::LIFETIME, source));
        true
    }
}

/// POST /api/v1/oauth/device_authorization (RFC 8628 §3.1-3.2).
pub(super) async fn authorization(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    match authorize_device(app, req, now).await {
        Ok(body) => {
            response::with_header(response::json(StatusCode::OK, &body), "pragma", "no-cache")
        }
        Err(e) => app.error_answer(e, Shape::Json),
    }
}

async fn authorize_device(
    app: &Arc<App>,
    req: &Req,
    now: i64,
) -> Result<serde_json::Value, EndpointError> {
    let (form, client) = super::token::authenticated_form(app, req).await?;
    if !client.allows_grant(DEVICE_CODE) {
        return Err(OidcError::new(
            ErrorCode::UnauthorizedClient,
            "the client may not use the device grant",
        )
        .into());
    }
    let scopes = match form
        .get("scope")
        .map_err(|e| OidcError::invalid_request(e.to_string()))?
    {
        None => client.scopes.clone(),
        Some(s) => {
            let requested =
                scope::parse(s).map_err(|e| OidcError::new(ErrorCode::InvalidScope, e))?;
            scope::grant(&requested, &client.scopes)
        }
    };
    if scopes.is_empty() {
        return Err(OidcError::new(
            ErrorCode::InvalidScope,
            "none of the requested scopes is available",
        )
        .into());
    }
    if !app.device_codes.admit(Source::from(req.peer), now) {
        return Err(OidcError::new(
            ErrorCode::TemporarilyUnavailable,
            "too many device codes are waiting, retry later",
        )
        .into());
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
            Err(e) => return Err(e.into()),
            Ok(()) => {
                let shown = rules::display(&grant.user_code);
                let issuer = &app.config.issuer;
                return Ok(json!({
                    "device_code": device_code,
                    "user_code": shown,
                    "verification_uri": format!("{issuer}/device"),
                    "verification_uri_complete": format!("{issuer}/device?user_code={shown}"),
                    "expires_in": rules::LIFETIME,
                    "interval": rules::INTERVAL,
                }));
            }
        }
    }
    Err(OidcError::new(ErrorCode::TemporarilyUnavailable, "try again").into())
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
            let described: Vec<String> = g
                .scopes
                .iter()
                .map(|s| scope::describe(s).into_owned())
                .collect();
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

/// Looks a typed user code up behind the throttle (RFC 8628 §5.1: user codes are short,
/// so guessing must be slowed). Wrong codes count against the signed-in person and the
/// address, or only the browser when it is known, so others' guessing never delays a
/// rightful approval. `Err` is the page to show instead.
#[allow(clippy::result_large_err)] // the error is the response itself, sent at once
fn guarded_lookup(
    app: &App,
    req: &Req,
    who: &SignedIn,
    typed: &str,
    now: i64,
) -> Result<Option<(String, DeviceGrant)>, Resp> {
    // The guesser is the signed-in account itself: its counter follows it across
    // sign-ins (a new known-browser cookie each time must not buy new guesses); from a
    // browser it signed in on before, others' failures at its address do not count.
    let known = super::known::id_for(app, req, &who.user.id, now).is_some();
    let guesser = if known {
        crate::signin::throttle::Who::Account(&who.user.id)
    } else {
        crate::signin::throttle::Who::Anonymous {
            key: &who.user.id,
            addr: req.peer,
        }
    };
    if let Err(refused) = app.code_throttle.check(guesser, req.now_ms) {
        app.audit_refused("device.throttled", Some(&who.user.username), req, refused);
        let msg = format!(
            "Too many wrong codes. Wait {} and try again.",
            refused.wait_text()
        );
        let view = View {
            user_code: typed,
            error: Some(&msg),
            found: None,
            status: StatusCode::TOO_MANY_REQUESTS,
        };
        return Err(render(app, req, who, view));
    }
    match lookup(app, typed, now) {
        Err(e) => Err(app.fail_page(e.into())),
        Ok(None) => {
            app.code_throttle.failure(guesser, req.now_ms);
            Ok(None)
        }
        Ok(found) => Ok(found),
    }
}

fn show_code(app: &App, req: &Req, who: &SignedIn, typed: &str, now: i64) -> Resp {
    let not_found = || {
        let view = View {
            user_code: typed,
            error: Some("That code is not valid or has expired. Check the code on your device."),
            found: None,
            status: StatusCode::BAD_REQUEST,
        };
        render(app, req, who, view)
    };
    match guarded_lookup(app, req, who, typed, now) {
        Err(page) => page,
        Ok(None) => not_found(),
        Ok(Some((_, g))) => {
            let name = match app.client(&g.client_id) {
                Ok(Some(c)) => c.name,
                Ok(None) => return not_found(),
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
    let (hash, grant) = match guarded_lookup(app, req, &who, &typed, now) {
        Ok(Some(x)) => x,
        Ok(None) => {
            return app.error_page(
                StatusCode::BAD_REQUEST,
                "Code expired",
                "That code is not valid or has expired.",
            );
        }
        Err(page) => return page,
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
    // A two-factor (or passkey) client's device gets only such an approval.
    let passkey = !client.policy.met_by_amr(&who.session.amr);
    let weak = passkey
        || (client.policy.needs_two_factors()
            && who.session.acr != crate::oidc::authorize::ACR_TWO_FACTOR);
    if decision == "allow" && weak && client.admits(&who.user.groups) {
        let target = super::signin::Target {
            interaction: None,
            next: Some(format!(
                "/device?user_code={}",
                crate::oidc::params::encode(&typed)
            )),
        };
        return super::signin::step_up(app, &who, target, &client.name, passkey, now);
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
            super::request_id().as_deref(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outstanding_codes_are_bounded_per_source_and_in_all() {
        let o = Outstanding::default();
        for _ in 0..CODES_PER_SOURCE {
            assert!(o.admit(Source::V4(1), 0));
        }
        assert!(!o.admit(Source::V4(1), 0), "per source");
        assert!(o.admit(Source::V4(2), 0), "another address");
        assert!(
            o.admit(Source::V4(1), rules::LIFETIME),
            "expired codes make room"
        );
        let p = Outstanding::default();
        for i in 0..MAX_CODES {
            assert!(p.admit(Source::V4((i / CODES_PER_SOURCE) as u32), 0));
        }
        assert!(!p.admit(Source::V4(99_999), 0), "in all");
    }
}
