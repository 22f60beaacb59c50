//! The steps of a sign-in after a correct password, as pages: a new password when the
//! current one is temporary ([`password`]), then the second factor ([`code`]: a TOTP or
//! recovery code, or a trusted browser), then the SSO session. Between steps the sign-in
//! waits in memory under a random id held in a short-lived cookie; nothing counts as
//! signed in until the last step. The rules are in `crate::signin`; these handlers
//! gather what the rules need, and act on the answer.

mod code;
mod password;

pub use crate::signin::{PENDING_TTL, Pending, Stage, Target, safe_next};
pub(super) use code::{code_page, code_submit};
pub(super) use password::{
    Link, PasswordError, linked, new_password_page, new_password_submit, reset_page, reset_submit,
    set_password,
};

use std::sync::Arc;

use hyper::StatusCode;

use super::response::{self, Fail, Resp};
use super::{App, Req, SignedIn};
use crate::keys::totp;
use crate::model::{Session, TrustedDevice, User};
use crate::oidc::authorize::ACR_TWO_FACTOR;
use crate::signin;

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
pub(super) fn pending(app: &App, req: &Req, stage: Stage, now: i64) -> Option<(String, Pending)> {
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
    accepts: signin::Accepts,
    now: i64,
) -> Resp {
    let id = app.pendings.start(
        Pending {
            user_id: user.id.clone(),
            stage,
            target,
            attempts: 0,
            raises,
            accepts,
        },
        now,
    );
    response::with_header(
        response::redirect(stage.page()),
        "set-cookie",
        &pending_cookie(app, &id),
    )
}

/// The page that sends the browser back to the password.
pub(super) fn restart(app: &App, message: &str) -> Resp {
    response::html(
        StatusCode::BAD_REQUEST,
        app.pages
            .message("Sign in again", message, Some(("/login", "Sign in"))),
    )
}

/// The form posted at a step of the sign-in, checked, with the step's pending sign-in.
/// `Err` is the page to send instead: the step's own page again (`again`) for a stale
/// form, or back to the password for an expired sign-in.
#[allow(clippy::result_large_err)] // the error is the response itself, sent at once
pub(super) fn step_form(
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

/// After a correct password (or a temporary one replaced, or a password chosen on an
/// administrator's reset link: `from_administrator` for those two): the next step, or
/// the session.
pub(super) fn after_password(
    app: &Arc<App>,
    req: &Req,
    user: &User,
    target: Target,
    from_administrator: bool,
    now: i64,
) -> Resp {
    // An application that asked for a fresh sign-in (prompt=login, max_age) gets the
    // second factor too, whatever the browser is trusted for.
    let fresh_requested = target
        .interaction
        .as_deref()
        .and_then(|id| app.interactions.get(id, now))
        .is_some_and(|i| i.request.prompt.login || i.request.max_age.is_some());
    let facts = signin::PasswordFacts {
        must_change_password: user.must_change_password,
        second_factor_enrolled: user.mfa.has_second_factor(),
        fresh_requested,
        trusted_browser: user.mfa.has_second_factor() && trusted_browser(app, req, user, now),
        passkeys_only: user.passkeys_only,
        recovery_codes: !user.mfa.recovery_hashes.is_empty(),
        security_keys: user.mfa.security_keys().next().is_some(),
        from_administrator,
    };
    match signin::after_password(&facts) {
        signin::Next::NewPassword => wait(
            app,
            user,
            Stage::NewPassword,
            target,
            None,
            signin::Accepts::Any,
            now,
        ),
        signin::Next::SecondFactor(accepts) => {
            wait(app, user, Stage::SecondFactor, target, None, accepts, now)
        }
        signin::Next::PasskeyNeeded => {
            app.audit(
                "login.failure",
                Some(&user.username),
                None,
                Some(req.peer),
                "passkey required",
                now,
            );
            response::html(
                StatusCode::FORBIDDEN,
                app.pages.message(
                    "Sign in with your passkey",
                    "Your administrator set this account to sign in with a passkey, not the password. Use your passkey; if you lost it, ask your administrator for a reset link.",
                    Some((&passkey_signin_url(&target), "Sign in with a passkey")),
                ),
            )
        }
        signin::Next::Session {
            factors,
            trusted_browser,
        } => {
            if trusted_browser {
                app.audit(
                    "mfa.trusted_browser",
                    Some(&user.username),
                    None,
                    Some(req.peer),
                    "",
                    now,
                );
            }
            finish(app, req, user, factors, target, None, now)
        }
    }
}

/// The sign-in page showing only "Sign in with a passkey", continuing to `target`.
fn passkey_signin_url(target: &Target) -> String {
    match (&target.interaction, &target.next) {
        (Some(id), _) => format!("/login?passkey=required&interaction={id}"),
        (None, Some(n)) => format!(
            "/login?passkey=required&next={}",
            crate::oidc::params::encode(n)
        ),
        (None, None) => "/login?passkey=required".to_string(),
    }
}

/// After a password was just chosen (first administrator, reset link): the page that
/// offers to add a passkey, then continues to `target`. Without passkeys here (an IP
/// issuer), `target` itself.
pub(super) fn passkey_offer(app: &App, target: Target) -> Target {
    if !app.passkeys.available() {
        return target;
    }
    let next = match (&target.interaction, &target.next) {
        (Some(id), _) => format!("/account/passkey?interaction={id}"),
        (None, Some(n)) => format!("/account/passkey?next={}", crate::oidc::params::encode(n)),
        (None, None) => "/account/passkey".to_string(),
    };
    Target {
        interaction: None,
        next: Some(next),
    }
}

/// A signed-in browser whose session is weaker than a client demands (one factor where
/// two are needed, no passkey where one is): the second-factor page, the passkey
/// sign-in, or for a user without what it takes, the way to set it up (after which an
/// authorization request continues).
pub(super) fn step_up(
    app: &App,
    s: &SignedIn,
    target: Target,
    client_name: &str,
    passkey: bool,
    now: i64,
) -> Resp {
    let needs = signin::step_up(&s.user, passkey);
    let passkey_step = matches!(
        needs,
        signin::StepUp::Passkey | signin::StepUp::EnrolPasskey
    );
    if passkey_step && !app.passkeys.available() {
        // Passkeys cannot work under an IP address: say so rather than send the browser
        // round in circles.
        let message = format!(
            "{client_name} needs you to sign in with a passkey, and passkeys need this server to be reached under a host name, not an IP address. Tell your administrator."
        );
        return response::html(
            StatusCode::FORBIDDEN,
            app.pages
                .message("Passkey needed", &message, Some(("/account", "My account"))),
        );
    }
    let enrol = match needs {
        signin::StepUp::SecondFactor(accepts) => {
            let raises = Some(s.hash.clone());
            return wait(
                app,
                &s.user,
                Stage::SecondFactor,
                target,
                raises,
                accepts,
                now,
            );
        }
        signin::StepUp::Passkey => return response::redirect(&passkey_signin_url(&target)),
        signin::StepUp::EnrolPasskey => {
            return response::redirect(&passkey_offer(app, target).url());
        }
        signin::StepUp::Enrol => match &target.interaction {
            Some(id) => format!("/account/2fa?interaction={id}"),
            None => "/account/2fa".to_string(),
        },
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
pub(super) fn finish(
    app: &Arc<App>,
    req: &Req,
    user: &User,
    factors: signin::Factors,
    target: Target,
    device_cookie: Option<String>,
    now: i64,
) -> Resp {
    let (amr, acr) = (factors.amr, factors.acr);
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

/// Whether this browser carries a valid, unrevoked trusted-browser cookie for `user`.
fn trusted_browser(app: &App, req: &Req, user: &User, now: i64) -> bool {
    if app.config.trusted_device_days == 0 {
        return false;
    }
    let Some(value) = req.cookie(&app.cookie_name("device")) else {
        return false;
    };
    let Some((cookie, tag)) = signin::DeviceCookie::parse(&value) else {
        return false;
    };
    app.macs().trusted.verify(&cookie.payload(), tag)
        && signin::trusted_device_ok(user, &cookie, now)
}

/// Remembers this browser for the user; returns the cookie to set.
pub(super) fn trust_browser(app: &App, req: &Req, user: &User, now: i64) -> Result<String, Fail> {
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
        .tag(&signin::device_payload(&user.id, &did, expires));
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

/// Checks a TOTP or recovery code and spends it, if the step `accepts` its kind. `Some`
/// when it was good.
pub(super) fn spend_code(
    app: &App,
    user_id: &str,
    code: &str,
    accepts: signin::Accepts,
    now: i64,
) -> Result<Option<signin::Spent>, Fail> {
    let recovery = totp::looks_like_recovery(code);
    let kind = if recovery {
        signin::Spent::RecoveryCode
    } else {
        signin::Spent::Totp
    };
    if !accepts.takes(kind) {
        return Ok(None);
    }
    if recovery {
        let hash = totp::recovery_hash(code);
        let used = modify_user(app, user_id, |u| {
            let before = u.mfa.recovery_hashes.len();
            u.mfa
                .recovery_hashes
                .retain(|h| !crate::keys::ct_eq(h.as_bytes(), hash.as_bytes()));
            u.mfa.recovery_hashes.len() < before
        })?;
        return Ok(used.map(|_| signin::Spent::RecoveryCode));
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
    Ok(used.map(|_| signin::Spent::Totp))
}

#[cfg(test)]
mod tests {
    use super::*;

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
