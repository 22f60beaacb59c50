//! Logout: the end_session endpoint (RP-Initiated Logout 1.0), the `/logout` page with its
//! confirmation form, back-channel logout tokens sent in the background, and the signed-out
//! page with front-channel iframes. Decisions are in `oidc::logout`.

use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::json;

use super::response::{self, Fail, Resp};
use super::{App, Req};
use crate::model::Client;
use crate::oidc::logout::{self as rules, Decision, Hint};

/// Back-channel delivery: each attempt has this deadline; attempts start after these
/// delays. The user's logout never waits for them.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY_DELAYS: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_secs(2),
    Duration::from_secs(10),
];

/// GET or POST `/api/v1/oauth/logout`.
pub(super) fn end_session(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    let params = if req.method == Method::POST {
        if !req.is_form() {
            return app.error_page(
                StatusCode::BAD_REQUEST,
                "Invalid request",
                "The sign-out request must be form-encoded.",
            );
        }
        req.form()
    } else {
        req.query_params()
    };
    let request = match rules::parse(&params) {
        Ok(r) => r,
        Err(e) => return app.error_page(StatusCode::BAD_REQUEST, "Invalid request", &e),
    };
    let hint = request
        .id_token_hint
        .as_deref()
        .map(|h| verified_hint(app, h));
    let client = match hint
        .as_ref()
        .and_then(|h| h.as_ref())
        .map(|h| app.client(&h.client_id))
    {
        None => None,
        Some(Ok(c)) => c,
        Some(Err(e)) => return app.fail_page(e.into()),
    };
    let signed_in = match app.signed_in(req, now) {
        Ok(s) => s,
        Err(e) => return app.fail_page(e.into()),
    };
    let session_user = signed_in.as_ref().map(|s| s.user.id.as_str());
    match rules::decide(
        &request,
        hint.as_ref().map(Option::as_ref),
        client.as_ref(),
        session_user,
    ) {
        Decision::Error(msg) => app.error_page(StatusCode::BAD_REQUEST, "Sign-out refused", &msg),
        Decision::Confirm => confirm_page(app, req, now),
        Decision::LogOut { redirect } => {
            // A cross-site POST does not carry the SameSite=Lax session cookie: the session
            // the hint names by `sid` (bound to that one session, so no older than it) is
            // ended all the same. A GET is a top-level navigation that carries the cookie,
            // so a GET without one has no session in this browser to end.
            let hinted = hint.as_ref().and_then(|h| h.as_ref());
            let ended = match (&signed_in, hinted) {
                (None, Some(h)) if req.method == Method::POST => {
                    end_hinted_session(app, req, h, now)
                }
                _ => log_out(app, req, now),
            };
            match ended {
                Ok((frames, cookie)) => finish(app, frames, redirect, cookie),
                Err(f) => app.fail_page(f),
            }
        }
    }
}

/// `sub` and client of an ID token this issuer signed; `None` if it does not verify
/// (forged, `alg: none`, another issuer, or an access token).
fn verified_hint(app: &App, token: &str) -> Option<Hint> {
    Hint::from_claims(&app.verified_id_token(token)?)
}

/// GET `/logout`: the confirmation form (or a note that nobody is signed in).
pub(super) fn logout_page(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    confirm_page(app, req, now)
}

fn confirm_page(app: &App, req: &Req, now: i64) -> Resp {
    let username = match app.signed_in(req, now) {
        Ok(s) => s.map(|s| s.user.username),
        Err(e) => return app.fail_page(e.into()),
    };
    let (csrf, cookie) = app.csrf_token(req);
    let body = app.pages.render(
        "logout.html",
        &json!({"title": "Sign out", "csrf": csrf, "username": username}),
    );
    let resp = response::html(StatusCode::OK, body);
    match cookie {
        Some(c) => response::with_header(resp, "set-cookie", &c),
        None => resp,
    }
}

/// POST `/logout`: the confirmed sign-out.
pub(super) fn logout_submit(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    if !req.is_form() || !app.csrf_ok(req, &req.form()) {
        return app.error_page(
            StatusCode::BAD_REQUEST,
            "Form expired",
            "The form expired. Reload the page and try again.",
        );
    }
    match log_out(app, req, now) {
        Ok((frames, cookie)) => finish(app, frames, None, cookie),
        Err(f) => app.fail_page(f),
    }
}

/// Ends the browser's session: deletes it, revokes the tokens issued from it (offline
/// ones excepted), tells its clients by back channel, and returns the front-channel
/// iframe URLs with the cookie that clears the session.
fn log_out(app: &Arc<App>, req: &Req, now: i64) -> Result<(Vec<String>, String), Fail> {
    let clear = app.set_cookie("session", "", Some(0), "Lax");
    let Some(s) = app.signed_in(req, now)? else {
        return Ok((vec![], clear));
    };
    app.audit(
        "logout",
        Some(&s.user.username),
        None,
        Some(req.peer),
        "",
        now,
    );
    let frames = end_stored_session(app, &s.hash, &s.session, now)?;
    Ok((frames, clear))
}

/// Ends the session an ID token hint names by `sid`, when it is that user's and still
/// there; returns the front-channel URLs and the cookie that clears a session cookie.
fn end_hinted_session(
    app: &Arc<App>,
    req: &Req,
    hint: &Hint,
    now: i64,
) -> Result<(Vec<String>, String), Fail> {
    let clear = app.set_cookie("session", "", Some(0), "Lax");
    let Some(sid) = &hint.sid else {
        return Ok((vec![], clear));
    };
    let found = app
        .store
        .sessions()?
        .into_iter()
        .find(|(_, s)| &s.sid == sid && s.user_id == hint.sub);
    let Some((hash, session)) = found else {
        return Ok((vec![], clear));
    };
    app.audit(
        "logout",
        Some(&app.username(&session.user_id)),
        Some(&hint.client_id),
        Some(req.peer),
        "by id_token_hint",
        now,
    );
    Ok((end_stored_session(app, &hash, &session, now)?, clear))
}

/// Ends a stored session wherever it is used: deletes it, revokes the tokens issued from
/// it (offline ones excepted), tells its clients by back channel, and returns the
/// front-channel logout URLs (loaded only when the session's own browser signs out).
pub(super) fn end_stored_session(
    app: &Arc<App>,
    hash: &str,
    session: &crate::model::Session,
    now: i64,
) -> Result<Vec<String>, Fail> {
    app.store.delete_session(hash)?;
    app.store.revoke_session_grants(hash)?;
    let mut frames = Vec::new();
    for client_id in &session.clients {
        let Some(client) = app.client(client_id)? else {
            continue;
        };
        if let Some(url) = rules::frontchannel_url(&client, &app.config.issuer, &session.sid) {
            frames.push(url);
        }
        if client.backchannel_logout_uri.is_some() {
            send_backchannel(app, &client, &session.user_id, &session.sid, now);
        }
    }
    Ok(frames)
}

/// Signs a logout token and delivers it in the background with retries.
fn send_backchannel(app: &Arc<App>, client: &Client, sub: &str, sid: &str, now: i64) {
    let Some(uri) = client.backchannel_logout_uri.clone() else {
        return;
    };
    let claims = rules::logout_token(
        &app.config.issuer,
        &client.client_id,
        sub,
        sid,
        now,
        &crate::clock::random_id(),
    );
    let token = match app.keys().sign(client.id_token_alg, "logout+jwt", &claims) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(client = %client.client_id, error = %e, "could not sign a logout token");
            return;
        }
    };
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("logout_token", &token)
        .finish();
    let (app, client_id) = (app.clone(), client.client_id.clone());
    tokio::spawn(async move {
        for (attempt, delay) in RETRY_DELAYS.iter().enumerate() {
            tokio::time::sleep(*delay).await;
            match app
                .outbound
                .post_form(&uri, body.clone(), ATTEMPT_TIMEOUT)
                .await
            {
                Ok(status) if (200..300).contains(&status) => {
                    tracing::info!(client = %client_id, "back-channel logout delivered");
                    return;
                }
                Ok(status) => {
                    tracing::warn!(client = %client_id, status, attempt, "back-channel logout refused")
                }
                Err(e) => {
                    tracing::warn!(client = %client_id, error = %e, attempt, "back-channel logout failed")
                }
            }
        }
        app.audit(
            "logout.backchannel_failed",
            None,
            Some(&client_id),
            None,
            &uri,
            crate::clock::now(),
        );
    });
}

/// The signed-out page: iframes for front-channel logout, then the client's
/// post_logout_redirect_uri if it had one; a plain redirect when there is nothing to load.
fn finish(app: &App, frames: Vec<String>, redirect: Option<String>, cookie: String) -> Resp {
    if frames.is_empty()
        && let Some(target) = &redirect
    {
        return response::with_header(response::redirect(target), "set-cookie", &cookie);
    }
    let origins: Vec<String> = frames
        .iter()
        .filter_map(|f| url::Url::parse(f).ok())
        .map(|u| u.origin().ascii_serialization())
        .filter(|o| o != "null")
        .collect();
    let frame_src = if origins.is_empty() {
        String::new()
    } else {
        format!(" frame-src {};", origins.join(" "))
    };
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self';{frame_src} frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    );
    let body = app.pages.render(
        "logged_out.html",
        &json!({"title": "Signed out", "frames": frames, "next": redirect}),
    );
    response::with_header(
        response::html_with_csp(StatusCode::OK, body, csp),
        "set-cookie",
        &cookie,
    )
}
