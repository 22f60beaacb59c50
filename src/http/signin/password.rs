//! Choosing a password during a sign-in: the forced new password after a temporary one,
//! and the administrator's one-time reset link; and the rule both share for setting it.

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::json;

use super::{App, Req, Stage, after_password, modify_user, pending, restart, step_form};
use crate::http::response::{Fail, Resp};
use crate::keys::Secret;
use crate::model::User;
use crate::signin;
use crate::signin::throttle::Who;

fn render_new_password(app: &App, req: &Req, error: Option<&str>, status: StatusCode) -> Resp {
    app.form_page(
        req,
        "new_password.html",
        json!({
            "title": "Choose a new password",
            "error": error,
            "action": "/login/password",
            "lead": "Your administrator set a temporary password. Choose your own to continue.",
        }),
        status,
    )
}

pub(in crate::http) fn new_password_page(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    match pending(app, req, Stage::NewPassword, now) {
        Some(_) => render_new_password(app, req, None, StatusCode::OK),
        None => restart(app, "This sign-in has expired. Please sign in again."),
    }
}

pub(in crate::http) async fn new_password_submit(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    let again = |e: Option<&str>, status| render_new_password(app, req, e, status);
    let (form, id, p) = match step_form(app, req, Stage::NewPassword, now, again) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let new = Secret::new(form.get_lenient("password").unwrap_or("").to_string());
    let again = form.get_lenient("password2").unwrap_or("");
    match set_password(app, &p.user_id, new, again, None, None, now).await {
        Ok(user) => {
            app.pendings.finish(&id);
            app.audit(
                "account.password_changed",
                Some(&user.username),
                None,
                Some(req.peer),
                "temporary password replaced",
                now,
            );
            // The temporary password came from an administrator, like a reset link.
            after_password(app, req, &user, p.target, true, now)
        }
        Err(PasswordError::Input(msg)) => {
            render_new_password(app, req, Some(&msg), StatusCode::BAD_REQUEST)
        }
        Err(PasswordError::Fail(f)) => app.fail_page(f),
    }
}

pub(in crate::http) enum PasswordError {
    /// For the person to fix; shown on the page.
    Input(String),
    Fail(Fail),
}

impl From<Fail> for PasswordError {
    fn from(f: Fail) -> Self {
        PasswordError::Fail(f)
    }
}

/// Sets a user's own new password: checks the policy and the repetition, hashes on the
/// pool, clears a temporary password or reset link, and ends every other sign-in of the
/// account: sessions (except `keep_session`), refresh and access tokens, trusted browsers.
/// The single-use link a new password spends: its token's SHA-256 as stored.
#[derive(Debug, Clone, Copy)]
pub(in crate::http) enum Link<'a> {
    Reset(&'a str),
    /// An accepted invitation also proves the address it was mailed to.
    Invitation(&'a str),
}

pub(in crate::http) async fn set_password(
    app: &Arc<App>,
    user_id: &str,
    new: Secret<String>,
    again: &str,
    keep_session: Option<&str>,
    link: Option<Link<'_>>,
    now: i64,
) -> Result<User, PasswordError> {
    let Some(user) = app.store.user(user_id).map_err(Fail::from)? else {
        return Err(PasswordError::Input("The account no longer exists.".into()));
    };
    if user.source.is_some() {
        return Err(PasswordError::Input(
            "Your password is kept by your organisation's directory: change it there.".into(),
        ));
    }
    if again != new.expose() {
        return Err(PasswordError::Input("The two passwords differ.".into()));
    }
    crate::keys::password::check_policy(new.expose(), &user.username)
        .map_err(PasswordError::Input)?;
    let params = app.config.password.clone();
    let hash = match app
        .pool
        .run(move || crate::keys::password::hash(new.expose(), &params))
        .await
    {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return Err(Fail::Internal(e).into()),
        Err(_) => return Err(Fail::Busy.into()),
    };
    let updated = modify_user(app, user_id, |u| {
        // A link is spent here, once: not if it was used or replaced meanwhile.
        match link {
            Some(Link::Reset(h)) if u.reset_link.as_ref().map(|(x, _)| x.as_str()) != Some(h) => {
                return false;
            }
            Some(Link::Invitation(h)) => {
                let Some((x, _, address)) = u.invitation.take() else {
                    return false;
                };
                if x != h {
                    return false;
                }
                if address == u.email {
                    u.email_verified = true;
                }
            }
            _ => {}
        }
        u.password_hash = hash.clone();
        u.must_change_password = false;
        u.reset_link = None;
        u.reset_mailed = false;
        // A password chosen any way ends a pending invitation: its link cannot set
        // another later.
        u.invitation = None;
        u.mfa.devices.clear();
        u.mfa.pending_secret = None;
        u.updated_at = now;
        true
    })?
    .ok_or_else(|| PasswordError::Input("This link or account is no longer valid.".into()))?;
    // Other sign-ins end and every token is revoked.
    match keep_session {
        Some(h) => app.store.delete_user_sessions_except(user_id, h),
        None => app.store.delete_user_sessions(user_id),
    }
    .map_err(Fail::from)?;
    app.store.revoke_user_grants(user_id).map_err(Fail::from)?;
    Ok(updated)
}

fn render_reset(
    app: &App,
    req: &Req,
    (token, mailed): (&str, bool),
    error: Option<&str>,
    status: StatusCode,
) -> Resp {
    let lead = if mailed {
        "Choose your new password. The link works once."
    } else {
        "Your administrator made this link for you. It works once."
    };
    app.form_page(
        req,
        "new_password.html",
        json!({
            "title": "Choose a new password",
            "error": error,
            "action": "/reset",
            "token": token,
            "lead": lead,
        }),
        status,
    )
}

const RESET_GONE: &str = "This password reset link has expired or was already used. Ask your administrator for a new one, or use \"Forgot your password?\" on the sign-in page.";

/// The user a link token (`<user id>.<secret>`) names, with the secret's hash, when
/// `valid` says the link holds. Wrong links count per address (like reset links); once an
/// address has spent its free failures it is told to wait.
#[allow(clippy::result_large_err)] // the error is the response itself, sent at once
pub(in crate::http) fn linked(
    app: &App,
    req: &Req,
    token: &str,
    valid: fn(&User, &str, i64) -> bool,
    gone: &str,
    now: i64,
) -> Result<(User, String), Resp> {
    let found = token.split_once('.').and_then(|(id, secret)| {
        let hash = crate::keys::token_hash(secret);
        match app.store.user(id) {
            Ok(Some(u)) if valid(&u, &hash, now) => Some(Ok((u, hash))),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        }
    });
    match found {
        Some(Ok(x)) => Ok(x),
        Some(Err(e)) => Err(app.fail_page(e.into())),
        None => {
            let who = Who::Address(req.peer);
            if let Err(refused) = app.code_throttle.check(who, req.now_ms) {
                app.audit_refused("reset.throttled", None, req, refused);
                return Err(app.error_page(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many attempts",
                    &format!(
                        "Too many links that were not valid. Wait {} and try again.",
                        refused.wait_text()
                    ),
                ));
            }
            app.code_throttle.failure(who, req.now_ms);
            Err(app.error_page(StatusCode::NOT_FOUND, "Link not valid", gone))
        }
    }
}

/// The user of a presented reset link, or the page to show. A right link always works
/// (checking one is a cheap hash); wrong ones are counted per source address, and once an
/// address has spent its free failures its wrong links are answered "wait" (SPEC §8).
#[allow(clippy::result_large_err)] // the error is the response itself, sent at once
fn reset_attempt(app: &App, req: &Req, token: &str, now: i64) -> Result<User, Resp> {
    linked(app, req, token, signin::reset_link_ok, RESET_GONE, now).map(|(u, _)| u)
}

pub(in crate::http) fn reset_page(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    let q = req.query_params();
    let token = q.get_lenient("token").unwrap_or("");
    match reset_attempt(app, req, token, now) {
        Ok(u) => render_reset(app, req, (token, u.reset_mailed), None, StatusCode::OK),
        Err(page) => page,
    }
}

pub(in crate::http) async fn reset_submit(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    let form = req.form();
    let token = form.get_lenient("token").unwrap_or("").to_string();
    let user = match reset_attempt(app, req, &token, now) {
        Ok(u) => u,
        Err(page) => return page,
    };
    let mailed = user.reset_mailed;
    if !req.is_form() || !app.csrf_ok(req, &form) {
        return render_reset(
            app,
            req,
            (&token, mailed),
            Some("The form expired. Please try again."),
            StatusCode::BAD_REQUEST,
        );
    }
    let new = Secret::new(form.get_lenient("password").unwrap_or("").to_string());
    let again = form.get_lenient("password2").unwrap_or("");
    // A link an administrator made stands for their word; one mailed on request proves
    // only the mailbox, so the person's second factor (or passkey rule) applies in full.
    let from_administrator = !mailed;
    let link = user.reset_link.as_ref().map(|(h, _)| h.clone());
    let link = link.as_deref().map(Link::Reset);
    match set_password(app, &user.id, new, again, None, link, now).await {
        Ok(user) => {
            app.audit(
                "account.password_changed",
                Some(&user.username),
                None,
                Some(req.peer),
                "reset link",
                now,
            );
            // The password was just given: the sign-in goes on from there (a second
            // factor when the user has one), then offers to add a passkey.
            let target = super::passkey_offer(app, super::Target::default());
            after_password(app, req, &user, target, from_administrator, now)
        }
        Err(PasswordError::Input(m)) => render_reset(
            app,
            req,
            (&token, mailed),
            Some(&m),
            StatusCode::BAD_REQUEST,
        ),
        Err(PasswordError::Fail(f)) => app.fail_page(f),
    }
}
