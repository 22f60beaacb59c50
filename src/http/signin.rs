//! The steps of a sign-in after a correct password: a new password when the current one
//! is temporary, then the second factor (a TOTP or recovery code, or a trusted browser),
//! then the SSO session. Between steps the sign-in waits in memory under a random id held
//! in a short-lived cookie; nothing counts as signed in until the last step.

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::json;

use super::response::{self, Fail, Resp};
use super::{App, Req, SignedIn};
use crate::keys::Secret;
use crate::keys::totp;
use crate::model::{Session, TrustedDevice, User};
use crate::oidc::authorize::{ACR_ONE_FACTOR, ACR_TWO_FACTOR};
use crate::oidc::discovery::paths;

/// A sign-in must finish its remaining steps within ten minutes.
pub const PENDING_TTL: i64 = 10 * 60;
/// Wrong codes allowed for one pending sign-in before it starts again at the password.
const MAX_CODE_ATTEMPTS: u32 = 5;

/// Where a finished sign-in continues.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// A pending authorization request.
    pub interaction: Option<String>,
    /// A local page (see [`safe_next`]).
    pub next: Option<String>,
}

impl Target {
    fn url(&self) -> String {
        match (&self.interaction, &self.next) {
            (Some(id), _) => format!("{}?interaction={id}", paths::AUTHORIZE_RESUME),
            (None, Some(n)) => n.clone(),
            (None, None) => "/account".to_string(),
        }
    }
}

/// Where a sign-in may continue besides an authorization request: Latchkey's own pages
/// only, so the parameter can never become an open redirect.
pub(super) fn safe_next(next: &str) -> bool {
    let local = ["/device", "/account", "/admin"].iter().any(|p| {
        next == *p
            || next
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('?') || rest.starts_with('/'))
    });
    local
        && next.bytes().all(|b| b.is_ascii_graphic())
        && !next.contains('\\')
        && !next.contains("//")
        && !next.contains("..")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    NewPassword,
    SecondFactor,
}

/// A sign-in between its steps.
#[derive(Debug, Clone)]
pub struct Pending {
    pub user_id: String,
    pub stage: Stage,
    pub target: Target,
    pub attempts: u32,
    /// A step-up: the session (its hash) the second factor raises. The code then counts
    /// only while that session lives; without one, the password was just given.
    pub raises: Option<String>,
}

/// Lax, not Strict: a step-up starts on the authorization endpoint, reached from the
/// application's site, and the redirect to the code page must carry the cookie. The
/// cookie is a random id; the forms it leads to check their CSRF token.
fn pending_cookie(app: &App, id: &str) -> String {
    app.set_cookie("signin", id, Some(PENDING_TTL), "Lax")
}

fn clear_pending_cookie(app: &App) -> String {
    app.set_cookie("signin", "", Some(0), "Lax")
}

/// The pending sign-in of this browser at `stage`, with its id.
fn pending(app: &App, req: &Req, stage: Stage, now: i64) -> Option<(String, Pending)> {
    let id = req.cookie(&app.cookie_name("signin"))?;
    let p = app.pendings.get(&id, now)?;
    (p.stage == stage).then_some((id, p))
}

fn wait(
    app: &App,
    user: &User,
    stage: Stage,
    target: Target,
    raises: Option<String>,
    now: i64,
) -> Resp {
    let id = app.pendings.start(
        Pending {
            user_id: user.id.clone(),
            stage,
            target,
            attempts: 0,
            raises,
        },
        now,
    );
    let page = match stage {
        Stage::NewPassword => "/login/password",
        Stage::SecondFactor => "/login/2fa",
    };
    response::with_header(
        response::redirect(page),
        "set-cookie",
        &pending_cookie(app, &id),
    )
}

/// After a correct password: the next step, or the session.
pub(super) fn after_password(
    app: &Arc<App>,
    req: &Req,
    user: &User,
    target: Target,
    now: i64,
) -> Resp {
    if user.must_change_password {
        return wait(app, user, Stage::NewPassword, target, None, now);
    }
    after_new_password(app, req, user, target, now)
}

fn after_new_password(app: &Arc<App>, req: &Req, user: &User, target: Target, now: i64) -> Resp {
    if !user.mfa.enrolled() {
        return finish(app, req, user, &["pwd"], ACR_ONE_FACTOR, target, None, now);
    }
    // An application that asked for a fresh sign-in (prompt=login, max_age) gets the
    // second factor too, whatever the browser is trusted for.
    let forced = target
        .interaction
        .as_deref()
        .and_then(|id| app.interactions.get(id, now))
        .is_some_and(|i| i.request.prompt.login || i.request.max_age.is_some());
    if !forced && trusted_browser(app, req, user, now) {
        app.audit(
            "mfa.trusted_browser",
            Some(&user.username),
            None,
            Some(req.peer),
            "",
            now,
        );
        return finish(
            app,
            req,
            user,
            &["pwd", "mfa"],
            ACR_TWO_FACTOR,
            target,
            None,
            now,
        );
    }
    wait(app, user, Stage::SecondFactor, target, None, now)
}

/// A signed-in browser whose session has one factor, at a client that needs two: the
/// second-factor page, or for a user without one, the way to set it up (after which an
/// authorization request continues).
pub(super) fn step_up(
    app: &App,
    s: &SignedIn,
    target: Target,
    client_name: &str,
    now: i64,
) -> Resp {
    if s.user.mfa.enrolled() {
        let raises = Some(s.hash.clone());
        return wait(app, &s.user, Stage::SecondFactor, target, raises, now);
    }
    let enrol = match &target.interaction {
        Some(id) => format!("/account/2fa?interaction={id}"),
        None => "/account/2fa".to_string(),
    };
    let message = format!(
        "{client_name} asks for a second factor when you sign in. Set up an authenticator app on your account page, then continue to {client_name}."
    );
    response::html(
        StatusCode::FORBIDDEN,
        app.pages.message(
            "Two-factor sign-in needed",
            &message,
            Some((&enrol, "Set up two-factor sign-in")),
        ),
    )
}

/// Creates the SSO session and sends the browser on. Always a new session id (no
/// session fixation); the one the browser had ends.
#[allow(clippy::too_many_arguments)]
fn finish(
    app: &Arc<App>,
    req: &Req,
    user: &User,
    amr: &[&str],
    acr: &str,
    target: Target,
    device_cookie: Option<String>,
    now: i64,
) -> Resp {
    let cookie = match start_session(app, req, user, amr, acr, now) {
        Ok(c) => c,
        Err(f) => return app.fail_page(f),
    };
    app.audit(
        "login.success",
        Some(&user.username),
        None,
        Some(req.peer),
        &amr.join(" "),
        now,
    );
    let mut resp = response::with_header(response::redirect(&target.url()), "set-cookie", &cookie);
    // A completed sign-in makes this browser known to the throttle (SPEC §8).
    resp = response::with_header(
        resp,
        "set-cookie",
        &super::known::cookie(app, &user.id, now),
    );
    if req.cookie(&app.cookie_name("signin")).is_some() {
        resp = response::with_header(resp, "set-cookie", &clear_pending_cookie(app));
    }
    match device_cookie {
        Some(d) => response::with_header(resp, "set-cookie", &d),
        None => resp,
    }
}

/// Creates a new SSO session (always under a new cookie: no session fixation) and
/// returns the cookie. A session the browser had for the same person (a second factor
/// added, a sign-in again) continues under the new cookie with its `sid`, its
/// applications and their tokens; one of someone else is ended and its applications
/// told.
pub(super) fn start_session(
    app: &Arc<App>,
    req: &Req,
    user: &User,
    amr: &[&str],
    acr: &str,
    now: i64,
) -> Result<String, Fail> {
    let raw = crate::clock::random_token();
    let new_hash = crate::keys::token_hash(&raw);
    let cookie = app.set_cookie("session", &raw, None, "Lax");
    let l = &app.config.lifetimes;
    let session = Session {
        user_id: user.id.clone(),
        sid: crate::clock::random_id(),
        auth_time: now,
        amr: amr.iter().map(|s| s.to_string()).collect(),
        acr: acr.to_string(),
        created_at: now,
        last_seen: now,
        expires_at: now + l.session_idle.min(l.session_absolute),
        clients: vec![],
        reauth_at: now,
        label: device_label(req.header(hyper::header::USER_AGENT).unwrap_or("")),
        ip: req.peer.to_string(),
    };
    let previous = match req.cookie(&app.cookie_name("session")) {
        Some(old) => {
            let hash = crate::keys::token_hash(&old);
            app.store.session(&hash)?.map(|s| (hash, s))
        }
        None => None,
    };
    match previous {
        Some((old_hash, old)) if old.user_id == user.id && old.expires_at > now => {
            // The stored session as it is inside the move keeps its sid and applications.
            let fresh = session.clone();
            let moved = app.store.move_session(&old_hash, &new_hash, &|s| {
                *s = Session {
                    sid: s.sid.clone(),
                    clients: s.clients.clone(),
                    ..fresh.clone()
                };
            })?;
            if moved.is_some() {
                return Ok(cookie);
            }
            // Ended meanwhile: a session of its own, then.
        }
        Some((old_hash, old)) => {
            super::logout::end_stored_session(app, &old_hash, &old, now)?;
        }
        None => {}
    }
    app.store.put_session(&new_hash, &session)?;
    Ok(cookie)
}

/// The signed-in session after the user proved a second factor in it (enrolment): acr 2,
/// the second factor in amr, and a new cookie. `None` when the session ended meanwhile.
pub(super) fn elevate(app: &App, s: &SignedIn) -> Result<Option<String>, Fail> {
    let raw = crate::clock::random_token();
    let moved = app
        .store
        .move_session(&s.hash, &crate::keys::token_hash(&raw), &|session| {
            session.acr = ACR_TWO_FACTOR.to_string();
            for m in ["otp", "mfa"] {
                if !session.amr.iter().any(|a| a == m) {
                    session.amr.push(m.to_string());
                }
            }
        })?;
    Ok(moved.map(|_| app.set_cookie("session", &raw, None, "Lax")))
}

/// A short description of a browser from its User-Agent, e.g. "Firefox on Linux".
pub fn device_label(ua: &str) -> String {
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chromium/", "Chromium"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ]
    .iter()
    .find(|(k, _)| ua.contains(k))
    .map_or("A browser", |(_, v)| v);
    let os = [
        ("Android", "Android"),
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(k, _)| ua.contains(k))
    .map(|(_, v)| *v);
    match os {
        Some(os) => format!("{browser} on {os}"),
        None => browser.to_string(),
    }
}

// ---- trusted browsers ----

fn device_payload(user_id: &str, device_id: &str, expires: i64) -> String {
    format!("device|{user_id}|{device_id}|{expires}")
}

/// Whether this browser carries a valid, unrevoked trusted-browser cookie for `user`.
fn trusted_browser(app: &App, req: &Req, user: &User, now: i64) -> bool {
    if app.config.trusted_device_days == 0 {
        return false;
    }
    let Some(value) = req.cookie(&app.cookie_name("device")) else {
        return false;
    };
    let parts: Vec<&str> = value.split('.').collect();
    let [uid, did, exp, tag] = parts.as_slice() else {
        return false;
    };
    let Ok(expires) = exp.parse::<i64>() else {
        return false;
    };
    app.macs()
        .trusted
        .verify(&device_payload(uid, did, expires), tag)
        && *uid == user.id
        && expires > now
        && user
            .mfa
            .devices
            .iter()
            .any(|d| d.id == *did && d.expires_at > now)
}

/// Remembers this browser for the user; returns the cookie to set.
fn trust_browser(app: &App, req: &Req, user: &User, now: i64) -> Result<String, Fail> {
    let days = app.config.trusted_device_days;
    let device = TrustedDevice {
        id: crate::clock::random_id(),
        label: device_label(req.header(hyper::header::USER_AGENT).unwrap_or("")),
        created_at: now,
        expires_at: now + days * 86_400,
    };
    let expires = device.expires_at;
    let did = device.id.clone();
    modify_user(app, &user.id, |u| {
        u.mfa.devices.retain(|d| d.expires_at > now);
        u.mfa.devices.push(device.clone());
        true
    })?;
    let tag = app
        .macs()
        .trusted
        .tag(&device_payload(&user.id, &did, expires));
    Ok(app.set_cookie(
        "device",
        &format!("{}.{did}.{expires}.{tag}", user.id),
        Some(days * 86_400),
        "Lax",
    ))
}

/// Applies `edit` to the stored user with compare-and-swap, retrying when the user
/// changed meanwhile. `edit` returns `false` to give up (nothing is written); the result
/// is then `None`.
pub(super) fn modify_user(
    app: &App,
    user_id: &str,
    edit: impl Fn(&mut User) -> bool,
) -> Result<Option<User>, Fail> {
    for _ in 0..16 {
        let Some(old) = app.store.user(user_id)? else {
            return Ok(None);
        };
        let mut new = old.clone();
        if !edit(&mut new) {
            return Ok(None);
        }
        if app.store.update_user_if(&old, &new)? {
            return Ok(Some(new));
        }
    }
    Err(Fail::Internal("the user keeps changing".into()))
}

/// Checks a TOTP or recovery code and spends it. `Some(amr)` when it was good.
pub(super) fn spend_code(
    app: &App,
    user_id: &str,
    code: &str,
    now: i64,
) -> Result<Option<&'static [&'static str]>, Fail> {
    if totp::looks_like_recovery(code) {
        let hash = totp::recovery_hash(code);
        let used = modify_user(app, user_id, |u| {
            let before = u.mfa.recovery_hashes.len();
            u.mfa
                .recovery_hashes
                .retain(|h| !crate::keys::ct_eq(h.as_bytes(), hash.as_bytes()));
            u.mfa.recovery_hashes.len() < before
        })?;
        return Ok(used.map(|_| &["pwd", "mfa"] as &[&str]));
    }
    let used = modify_user(app, user_id, |u| {
        let Some(secret) = &u.mfa.totp_secret else {
            return false;
        };
        match totp::verify(secret, code, now, u.mfa.last_step) {
            Some(step) => {
                u.mfa.last_step = step;
                true
            }
            None => false,
        }
    })?;
    Ok(used.map(|_| &["pwd", "otp", "mfa"] as &[&str]))
}

// ---- the second-factor page ----

fn render_code_page(app: &App, req: &Req, error: Option<&str>, status: StatusCode) -> Resp {
    app.form_page(
        req,
        "second_factor.html",
        json!({
            "title": "Two-factor sign-in",
            "error": error,
            "trust_days": app.config.trusted_device_days,
        }),
        status,
    )
}

fn restart(app: &App, message: &str) -> Resp {
    response::html(
        StatusCode::BAD_REQUEST,
        app.pages
            .message("Sign in again", message, Some(("/login", "Sign in"))),
    )
}

pub(super) fn code_page(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    match pending(app, req, Stage::SecondFactor, now) {
        Some(_) => render_code_page(app, req, None, StatusCode::OK),
        None => restart(app, "This sign-in has expired. Please sign in again."),
    }
}

/// The form posted at a step of the sign-in, checked, with the step's pending sign-in.
/// `Err` is the page to send instead: the step's own page again (`again`) for a stale
/// form, or back to the password for an expired sign-in.
#[allow(clippy::result_large_err)] // the error is the response itself, sent at once
fn step_form(
    app: &App,
    req: &Req,
    stage: Stage,
    now: i64,
    again: impl Fn(Option<&str>, StatusCode) -> Resp,
) -> Result<(crate::oidc::params::Params, String, Pending), Resp> {
    let form = req.form();
    if !req.is_form() || !app.csrf_ok(req, &form) {
        return Err(again(
            Some("The form expired. Please try again."),
            StatusCode::BAD_REQUEST,
        ));
    }
    match pending(app, req, stage, now) {
        Some((id, p)) => Ok((form, id, p)),
        None => Err(restart(
            app,
            "This sign-in has expired. Please sign in again.",
        )),
    }
}

pub(super) fn code_submit(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    let again = |e: Option<&str>, status| render_code_page(app, req, e, status);
    let (form, id, p) = match step_form(app, req, Stage::SecondFactor, now, again) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let user = match app.store.user(&p.user_id) {
        Ok(Some(u)) if !u.disabled => u,
        Ok(_) => {
            app.pendings.finish(&id);
            return restart(app, "This sign-in has expired. Please sign in again.");
        }
        Err(e) => return app.fail_page(e.into()),
    };
    // A step-up counts only while the session it raises lives (not after a sign-out
    // or an administrator ended it): the code alone is no sign-in.
    if let Some(h) = &p.raises {
        match app.store.session(h) {
            Ok(Some(s)) if s.user_id == user.id && s.expires_at > now => {}
            Ok(_) => {
                app.pendings.finish(&id);
                return restart(app, "This sign-in has expired. Please sign in again.");
            }
            Err(e) => return app.fail_page(e.into()),
        }
    }
    // Wrong codes count per account in their own counter, which a correct password
    // does not clear: only a correct code does (else password + five guesses, again
    // and again, would never slow down).
    // A browser where this user completed a sign-in before counts on its own, so wrong
    // codes from someone who has the password elsewhere never delay it.
    let now_ms = req.now_ms;
    let known = super::known::id_for(app, req, &user.id, now);
    let who = super::known::who(known.as_deref(), &user.id, req.peer);
    if let Err(refused) = app.mfa_throttle.check(who, now_ms) {
        app.audit_refused("mfa.throttled", Some(&user.username), req, refused);
        let msg = refused.message();
        return render_code_page(app, req, Some(&msg), StatusCode::TOO_MANY_REQUESTS);
    }
    let code: String = form
        .get_lenient("code")
        .unwrap_or("")
        .chars()
        .take(64)
        .collect();
    let amr = match spend_code(app, &user.id, &code, now) {
        Ok(a) => a,
        Err(f) => return app.fail_page(f),
    };
    let Some(amr) = amr else {
        app.mfa_throttle.failure(who, now_ms);
        app.audit(
            "mfa.failure",
            Some(&user.username),
            None,
            Some(req.peer),
            "wrong code",
            now,
        );
        let attempts = p.attempts + 1;
        if attempts >= MAX_CODE_ATTEMPTS {
            app.pendings.finish(&id);
            return restart(app, "Too many wrong codes. Please sign in again.");
        }
        app.pendings.update(&id, |p| p.attempts = attempts);
        return render_code_page(
            app,
            req,
            Some("That code is not valid. Codes can be used once."),
            StatusCode::UNAUTHORIZED,
        );
    };
    app.pendings.finish(&id);
    app.mfa_throttle.success(who);
    let kind = if amr.contains(&"otp") {
        "totp"
    } else {
        "recovery code"
    };
    app.audit(
        "mfa.success",
        Some(&user.username),
        None,
        Some(req.peer),
        kind,
        now,
    );
    let device = if app.config.trusted_device_days > 0 && form.get_lenient("trust") == Some("yes") {
        match trust_browser(app, req, &user, now) {
            Ok(c) => Some(c),
            Err(f) => return app.fail_page(f),
        }
    } else {
        None
    };
    finish(app, req, &user, amr, ACR_TWO_FACTOR, p.target, device, now)
}

// ---- the forced new password ----

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

pub(super) fn new_password_page(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    match pending(app, req, Stage::NewPassword, now) {
        Some(_) => render_new_password(app, req, None, StatusCode::OK),
        None => restart(app, "This sign-in has expired. Please sign in again."),
    }
}

pub(super) async fn new_password_submit(app: &Arc<App>, req: &Req, now: i64) -> Resp {
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
            after_new_password(app, req, &user, p.target, now)
        }
        Err(PasswordError::Input(msg)) => {
            render_new_password(app, req, Some(&msg), StatusCode::BAD_REQUEST)
        }
        Err(PasswordError::Fail(f)) => app.fail_page(f),
    }
}

pub(super) enum PasswordError {
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
pub(super) async fn set_password(
    app: &Arc<App>,
    user_id: &str,
    new: Secret<String>,
    again: &str,
    keep_session: Option<&str>,
    reset_link: Option<&str>,
    now: i64,
) -> Result<User, PasswordError> {
    let Some(user) = app.store.user(user_id).map_err(Fail::from)? else {
        return Err(PasswordError::Input("The account no longer exists.".into()));
    };
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
        // A reset link is spent here, once: not if it was used or replaced meanwhile.
        if let Some(link) = reset_link
            && u.reset_link.as_ref().map(|(h, _)| h.as_str()) != Some(link)
        {
            return false;
        }
        u.password_hash = hash.clone();
        u.must_change_password = false;
        u.reset_link = None;
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

// ---- the administrator's one-time reset link ----

/// The user a reset link (`<user id>.<secret>`) belongs to, while it is valid.
fn reset_user(app: &App, token: &str, now: i64) -> Result<Option<User>, Fail> {
    let Some((user_id, secret)) = token.split_once('.') else {
        return Ok(None);
    };
    let Some(user) = app.store.user(user_id)? else {
        return Ok(None);
    };
    let valid = user.reset_link.as_ref().is_some_and(|(hash, expires)| {
        *expires > now
            && crate::keys::ct_eq(crate::keys::token_hash(secret).as_bytes(), hash.as_bytes())
    });
    Ok((valid && !user.disabled).then_some(user))
}

fn render_reset(
    app: &App,
    req: &Req,
    token: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Resp {
    app.form_page(
        req,
        "new_password.html",
        json!({
            "title": "Choose a new password",
            "error": error,
            "action": "/reset",
            "token": token,
            "lead": "Your administrator made this link for you. It works once.",
        }),
        status,
    )
}

fn reset_gone(app: &App) -> Resp {
    app.error_page(
        StatusCode::NOT_FOUND,
        "Link not valid",
        "This password reset link has expired or was already used. Ask your administrator for a new one.",
    )
}

/// The user of a presented reset link, or the page to show. A right link always works
/// (checking one is a cheap hash); wrong ones are counted per source address, and once an
/// address has spent its free failures its wrong links are answered "wait" (SPEC §8).
#[allow(clippy::result_large_err)] // the error is the response itself, sent at once
fn reset_attempt(app: &App, req: &Req, token: &str, now: i64) -> Result<User, Resp> {
    match reset_user(app, token, now) {
        Ok(Some(u)) => Ok(u),
        Err(f) => Err(app.fail_page(f)),
        Ok(None) => {
            let who = super::throttle::Who::Address(req.peer);
            let now_ms = req.now_ms;
            if let Err(refused) = app.code_throttle.check(who, now_ms) {
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
            app.code_throttle.failure(who, now_ms);
            Err(reset_gone(app))
        }
    }
}

pub(super) fn reset_page(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    let q = req.query_params();
    let token = q.get_lenient("token").unwrap_or("");
    match reset_attempt(app, req, token, now) {
        Ok(_) => render_reset(app, req, token, None, StatusCode::OK),
        Err(page) => page,
    }
}

pub(super) async fn reset_submit(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    let form = req.form();
    let token = form.get_lenient("token").unwrap_or("").to_string();
    let user = match reset_attempt(app, req, &token, now) {
        Ok(u) => u,
        Err(page) => return page,
    };
    if !req.is_form() || !app.csrf_ok(req, &form) {
        return render_reset(
            app,
            req,
            &token,
            Some("The form expired. Please try again."),
            StatusCode::BAD_REQUEST,
        );
    }
    let new = Secret::new(form.get_lenient("password").unwrap_or("").to_string());
    let again = form.get_lenient("password2").unwrap_or("");
    let link = user.reset_link.as_ref().map(|(h, _)| h.clone());
    match set_password(app, &user.id, new, again, None, link.as_deref(), now).await {
        Ok(_) => {
            app.audit(
                "account.password_changed",
                Some(&user.username),
                None,
                Some(req.peer),
                "reset link",
                now,
            );
            response::html(
                StatusCode::OK,
                app.pages.message(
                    "Password set",
                    "Your new password is set. Sign in with it.",
                    Some(("/login", "Sign in")),
                ),
            )
        }
        Err(PasswordError::Input(m)) => {
            render_reset(app, req, &token, Some(&m), StatusCode::BAD_REQUEST)
        }
        Err(PasswordError::Fail(f)) => app.fail_page(f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_latchkey_pages_are_places_to_continue_to() {
        for ok in [
            "/device",
            "/device?user_code=BCDF-GHJK",
            "/account",
            "/account/2fa",
            "/admin/clients?x=1",
        ] {
            assert!(safe_next(ok), "{ok}");
        }
        for bad in [
            "/",
            "//evil.example",
            "https://evil.example/device",
            "/device/../admin",
            "/devices",
            "/adminx",
            "/account//evil.example",
            "/device?x=\\\\evil",
            "/device? x",
        ] {
            assert!(!safe_next(bad), "{bad}");
        }
    }

    #[test]
    fn browsers_are_described_briefly() {
        assert_eq!(
            device_label("Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"),
            "Firefox on Linux"
        );
        assert_eq!(
            device_label(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 Edg/120.0"
            ),
            "Edge on Windows"
        );
        assert_eq!(
            device_label(
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Mobile/15E148 Safari/604.1"
            ),
            "Safari on iPhone"
        );
        assert_eq!(device_label(""), "A browser");
    }
}
