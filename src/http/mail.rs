//! Mail from the pages (SPEC §12): "Forgot your password?" (`/reset` without a token),
//! accepting an invitation (`/invite`), proving an address (`/verify`), and queueing a
//! mail for the worker. Links carry `<user id>.<secret>`; the user holds the secret's
//! SHA-256 (see `crate::mail`).

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::json;

use super::response::{self, Fail, Resp};
use super::signin::{self, Link, PasswordError, Target, linked};
use super::{App, Req};
use crate::keys::Secret;
use crate::mail::outbox;
use crate::model::{MailKind, User};
use crate::signin::throttle::Who;

/// The longest username or address the request form takes.
const MAX_NAME: usize = 256;

/// Queues `kind` for `user` and wakes the worker.
pub(super) fn queue(app: &App, kind: MailKind, user: &User, now: i64) -> Result<(), Fail> {
    app.store.queue_mail(&outbox::new_mail(kind, user, now))?;
    app.mail_wake.wake();
    Ok(())
}

fn no_mail(app: &App) -> Resp {
    app.error_page(
        StatusCode::NOT_FOUND,
        "Ask your administrator",
        "This server sends no mail. Your administrator can make you a password reset link.",
    )
}

fn render_request(app: &App, req: &Req, error: Option<&str>, status: StatusCode) -> Resp {
    app.form_page(
        req,
        "reset_request.html",
        json!({"title": "Forgot your password?", "error": error}),
        status,
    )
}

/// `GET /reset`: the form that asks for a reset mail.
pub(super) fn request_page(app: &Arc<App>, req: &Req, _now: i64) -> Resp {
    if app.mailer.is_none() {
        return no_mail(app);
    }
    render_request(app, req, None, StatusCode::OK)
}

/// The account a username or an address names (addresses: only when one account has
/// it, compared without case).
fn named(app: &App, name: &str) -> Result<Option<User>, Fail> {
    if let Some(u) = app.store.user_by_name(name)? {
        return Ok(Some(u));
    }
    if !name.contains('@') {
        return Ok(None);
    }
    // Only a verified address names an account: anyone may type someone else's address
    // into their own profile.
    let mut found = app
        .store
        .users()?
        .into_iter()
        .filter(|u| u.email_verified && u.email.eq_ignore_ascii_case(name));
    Ok(match (found.next(), found.next()) {
        (Some(u), None) => Some(u),
        _ => None,
    })
}

/// `POST /reset` (field `username`): the same answer whether an account matches or not;
/// when one does (enabled, with an address, not asked too often), its reset mail is
/// queued. Requests count per address (which may be told to wait) and per account
/// (silently: a refusal must not tell that the account exists).
pub(super) fn request_submit(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    if app.mailer.is_none() {
        return no_mail(app);
    }
    let form = req.form();
    if !req.is_form() || !app.csrf_ok(req, &form) {
        let msg = "The form expired. Please try again.";
        return render_request(app, req, Some(msg), StatusCode::BAD_REQUEST);
    }
    let by_address = Who::Address(req.peer);
    if let Err(refused) = app.mail_throttle.check(by_address, req.now_ms) {
        app.audit_refused("reset.throttled", None, req, refused);
        let msg = format!(
            "Too many requests from here. Wait {} and try again.",
            refused.wait_text()
        );
        return render_request(app, req, Some(&msg), StatusCode::TOO_MANY_REQUESTS);
    }
    app.mail_throttle.failure(by_address, req.now_ms);
    let name: String = form
        .get_lenient("username")
        .unwrap_or("")
        .trim()
        .chars()
        .take(MAX_NAME)
        .collect();
    let user = match named(app, &name) {
        // Not for accounts without a password yet (invited) or with passkeys only: their
        // way in is the invitation or their administrator.
        // Directory accounts change their password in the directory.
        Ok(u) => u.filter(|u| {
            !u.disabled
                && !u.email.is_empty()
                && !u.password_hash.is_empty()
                && !u.passkeys_only
                && u.source.is_none()
        }),
        Err(f) => return app.fail_page(f),
    };
    if let Some(u) = user {
        let account = Who::Account(&u.id);
        if app.mail_throttle.check(account, req.now_ms).is_ok() {
            app.mail_throttle.failure(account, req.now_ms);
            if let Err(f) = queue(app, MailKind::Reset, &u, now) {
                return app.fail_page(f);
            }
            app.audit(
                "reset.requested",
                Some(&u.username),
                None,
                Some(req.peer),
                "",
                now,
            );
        } else {
            app.audit(
                "reset.throttled",
                Some(&u.username),
                None,
                Some(req.peer),
                "",
                now,
            );
        }
    }
    response::html(
        StatusCode::OK,
        app.pages.message(
            "Check your mail",
            "If an account matches, a link to choose a new password is on its way to its address. It works once, for one hour.",
            Some(("/login", "Back to sign-in")),
        ),
    )
}

const INVITATION_GONE: &str = "This invitation has expired, was used already or was withdrawn. Ask your administrator to send it again.";

fn render_invite(
    app: &App,
    req: &Req,
    user: &User,
    token: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Resp {
    let lead = format!(
        "Welcome to {}. Your username is {}. Choose your password; the link works once.",
        app.config.instance_name, user.username
    );
    app.form_page(
        req,
        "new_password.html",
        json!({"title": "Choose your password", "error": error, "action": "/invite",
               "token": token, "lead": lead}),
        status,
    )
}

/// `GET /invite?token=`: the invited person chooses a password.
pub(super) fn invite_page(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    let q = req.query_params();
    let token = q.get_lenient("token").unwrap_or("");
    match linked(
        app,
        req,
        token,
        crate::signin::invitation_ok,
        INVITATION_GONE,
        now,
    ) {
        Ok((u, _)) => render_invite(app, req, &u, token, None, StatusCode::OK),
        Err(page) => page,
    }
}

/// `POST /invite`: sets the password, spends the invitation (which proves the address it
/// went to), and signs the person in, offering a passkey next.
pub(super) async fn invite_submit(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    let form = req.form();
    let token = form.get_lenient("token").unwrap_or("").to_string();
    let (user, hash) = match linked(
        app,
        req,
        &token,
        crate::signin::invitation_ok,
        INVITATION_GONE,
        now,
    ) {
        Ok(x) => x,
        Err(page) => return page,
    };
    if !req.is_form() || !app.csrf_ok(req, &form) {
        let msg = "The form expired. Please try again.";
        return render_invite(app, req, &user, &token, Some(msg), StatusCode::BAD_REQUEST);
    }
    let new = Secret::new(form.get_lenient("password").unwrap_or("").to_string());
    let again = form.get_lenient("password2").unwrap_or("");
    let link = Some(Link::Invitation(&hash));
    match signin::set_password(app, &user.id, new, again, None, link, now).await {
        Ok(user) => {
            app.audit(
                "user.invitation_accepted",
                Some(&user.username),
                None,
                Some(req.peer),
                "",
                now,
            );
            let target = signin::passkey_offer(app, Target::default());
            signin::after_password(app, req, &user, target, true, now)
        }
        Err(PasswordError::Input(m)) => {
            render_invite(app, req, &user, &token, Some(&m), StatusCode::BAD_REQUEST)
        }
        Err(PasswordError::Fail(f)) => app.fail_page(f),
    }
}

const CHECK_GONE: &str = "This link has expired, was used already, or your address changed since. Ask for a new one on your account page.";

/// `GET /verify?token=`: a button that confirms (a GET changes nothing: mail scanners
/// open links).
pub(super) fn verify_page(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    let q = req.query_params();
    let token = q.get_lenient("token").unwrap_or("");
    match linked(
        app,
        req,
        token,
        crate::signin::email_check_ok,
        CHECK_GONE,
        now,
    ) {
        Ok((u, _)) => app.form_page(
            req,
            "verify.html",
            json!({"title": "Confirm your address", "token": token, "email": u.email}),
            StatusCode::OK,
        ),
        Err(page) => page,
    }
}

/// `POST /verify`: the address is verified (`email_verified` in tokens and UserInfo).
pub(super) fn verify_submit(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    let form = req.form();
    let token = form.get_lenient("token").unwrap_or("").to_string();
    let (user, hash) = match linked(
        app,
        req,
        &token,
        crate::signin::email_check_ok,
        CHECK_GONE,
        now,
    ) {
        Ok(x) => x,
        Err(page) => return page,
    };
    if !req.is_form() || !app.csrf_ok(req, &form) {
        return app.error_page(
            StatusCode::BAD_REQUEST,
            "Form expired",
            "The form expired. Open the link in your mail again.",
        );
    }
    let done = signin::modify_user(app, &user.id, |u| {
        if !crate::signin::email_check_ok(u, &hash, now) {
            return false;
        }
        u.email_verified = true;
        u.email_check = None;
        u.updated_at = now;
        true
    });
    match done {
        Ok(Some(u)) => {
            app.audit(
                "email.verified",
                Some(&u.username),
                None,
                Some(req.peer),
                &u.email,
                now,
            );
            response::html(
                StatusCode::OK,
                app.pages.message(
                    "Address confirmed",
                    "Thank you: your email address is confirmed.",
                    Some(("/account", "My account")),
                ),
            )
        }
        Ok(None) => app.error_page(StatusCode::NOT_FOUND, "Link not valid", CHECK_GONE),
        Err(f) => app.fail_page(f),
    }
}
