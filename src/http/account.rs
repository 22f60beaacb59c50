//! `/account`: the signed-in user's own page. Profile, password, two-factor enrolment and
//! recovery codes, trusted browsers, applications with access, and sessions. Every change
//! is a CSRF-checked POST answered with a redirect back to the page (or a page shown once).

use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::response::{self, Fail, Resp};
use super::signin::{self, PasswordError, Target, safe_next};
use super::{App, Req, SignedIn, check_password};
use crate::keys::Secret;
use crate::keys::totp;
use crate::model::{Address, MailKind};
use crate::oidc::discovery::paths;
use crate::oidc::params::Params;
use crate::oidc::scope;

/// A UTC date and time for the pages, e.g. `2026-11-22 14:05`.
pub(super) fn when(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .map(|d| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}",
                d.year(),
                u8::from(d.month()),
                d.day(),
                d.hour(),
                d.minute()
            )
        })
        .unwrap_or_default()
}

/// The signed-in browser, or the response that sends it to the sign-in page first.
#[allow(clippy::result_large_err)] // the error is the response itself, sent at once
pub(super) fn require_session(app: &App, req: &Req, now: i64) -> Result<SignedIn, Resp> {
    match app.signed_in(req, now) {
        Ok(Some(s)) => Ok(s),
        Ok(None) => {
            let here = if req.method == Method::GET && !req.query.is_empty() {
                format!("{}?{}", req.path, req.query)
            } else if req.method == Method::GET {
                req.path.clone()
            } else {
                "/account".to_string()
            };
            let next = if signin::safe_next(&here) {
                here
            } else {
                "/account".into()
            };
            Err(response::redirect(&format!(
                "/login?next={}",
                crate::oidc::params::encode(&next)
            )))
        }
        Err(e) => Err(app.fail_page(e.into())),
    }
}

/// Renders a page of the signed-in area: adds the navigation, the CSRF token, the script
/// and the wide layout to `ctx`.
pub(super) fn render(
    app: &App,
    req: &Req,
    s: &SignedIn,
    (section, tab): (&str, &str),
    template: &str,
    mut ctx: Value,
    status: StatusCode,
) -> Resp {
    let (csrf, cookie) = app.csrf_token(req);
    if let Value::Object(o) = &mut ctx {
        o.insert("csrf".into(), json!(csrf));
        o.insert("script".into(), json!(true));
        o.insert("wide".into(), json!(true));
        o.insert(
            "nav".into(),
            json!({
                "user": s.user.username,
                "admin": s.user.groups.iter().any(|g| g == crate::admin::ADMIN_GROUP),
                "section": section,
                "tab": tab,
            }),
        );
    }
    super::login::with_cookie(
        response::html(status, app.pages.render(template, &ctx)),
        cookie,
    )
}

/// Fixed confirmations shown after a change (`?done=`), never text from the request.
fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "profile" => "Your profile was saved.",
        "password" => "Your password was changed. Every other sign-in has ended.",
        "2fa-off" => "Two-factor sign-in is off.",
        "device" => "The browser is no longer trusted.",
        "app" => "The application's access was revoked.",
        "session" => "That session was signed out.",
        "passkey" => "Your passkey was added.",
        "verify-sent" => "A confirmation link is on its way to your address. It works for one day.",
        "passkey-removed" => "The passkey was removed.",
        _ => return None,
    })
}

/// An audit line for something the signed-in user did to their own account.
fn audit_own(
    app: &App,
    req: &Req,
    s: &SignedIn,
    kind: &str,
    client: Option<&str>,
    detail: &str,
    now: i64,
) {
    app.audit(
        kind,
        Some(&s.user.username),
        client,
        Some(req.peer),
        detail,
        now,
    );
}

fn back(done: &str) -> Resp {
    response::redirect(&format!("/account?done={done}"))
}

/// The form of a POST, once its content type and CSRF token are checked (an empty form
/// for other methods); `Err` is the page to send instead.
#[allow(clippy::result_large_err)] // the error is the response itself, sent at once
pub(super) fn checked_form(app: &App, req: &Req) -> Result<Params, Resp> {
    let form = req.form();
    if req.method == Method::POST && (!req.is_form() || !app.csrf_ok(req, &form)) {
        return Err(app.error_page(
            StatusCode::BAD_REQUEST,
            "Form expired",
            "The form expired. Reload the page and try again.",
        ));
    }
    Ok(form)
}

pub(super) async fn route(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    let s = match require_session(app, req, now) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let form = match checked_form(app, req) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let get = req.method == Method::GET;
    let post = req.method == Method::POST;
    match req.path.as_str() {
        "/account" if get => page(app, req, &s, None, StatusCode::OK, now),
        "/account/profile" if post => profile(app, req, &s, &form, now).await,
        "/account/password" if post => password(app, req, &s, &form, now).await,
        "/account/2fa" if get => enrol_page(app, req, &s, None, now),
        "/account/2fa" if post => enrol_submit(app, req, &s, &form, now).await,
        "/account/2fa/remove" if post => remove_2fa(app, req, &s, &form, now).await,
        "/account/recovery" if post => new_recovery_codes(app, req, &s, &form, now).await,
        "/account/devices/revoke" if post => revoke_device(app, req, &s, &form, now),
        "/account/apps/revoke" if post => revoke_app(app, req, &s, &form, now),
        "/account/sessions/end" if post => end_session(app, req, &s, &form, now),
        "/account/passkey" if get => offer_page(app, req, &s, None, StatusCode::OK, now),
        "/account/verify" if post => send_verification(app, req, &s, now),
        "/account/passkeys/start" if post => start_passkey(app, req, &s, &form, now).await,
        "/account/passkeys" if post => add_passkey(app, req, &s, &form, now),
        "/account/passkeys/remove" if post => remove_passkey(app, req, &s, &form, now).await,
        "/account"
        | "/account/profile"
        | "/account/password"
        | "/account/2fa"
        | "/account/2fa/remove"
        | "/account/recovery"
        | "/account/devices/revoke"
        | "/account/apps/revoke"
        | "/account/sessions/end"
        | "/account/passkey"
        | "/account/verify"
        | "/account/passkeys/start"
        | "/account/passkeys"
        | "/account/passkeys/remove" => {
            response::plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => response::plain(StatusCode::NOT_FOUND, "not found"),
    }
}

fn page(
    app: &App,
    req: &Req,
    s: &SignedIn,
    error: Option<&str>,
    status: StatusCode,
    now: i64,
) -> Resp {
    let u = &s.user;
    let apps = match app.store.consents(&u.id) {
        Ok(c) => c,
        Err(e) => return app.fail_page(e.into()),
    };
    let apps: Vec<Value> = apps
        .iter()
        .map(|c| {
            let name = app
                .client(&c.client_id)
                .ok()
                .flatten()
                .map_or_else(|| c.client_id.clone(), |cl| cl.name);
            let mut scopes: Vec<String> = c.scopes.iter().map(|s| scope::describe(s).into_owned()).collect();
            if !c.claims.is_empty() {
                scopes.push(format!("also {}", c.claims.join(", ")));
            }
            json!({"client_id": c.client_id, "name": name, "scopes": scopes.join("; "), "since": when(c.granted_at)})
        })
        .collect();
    let sessions = match app.store.sessions() {
        Ok(all) => all,
        Err(e) => return app.fail_page(e.into()),
    };
    let mut sessions: Vec<_> = sessions
        .into_iter()
        .filter(|(_, x)| x.user_id == u.id && x.expires_at > now)
        .collect();
    sessions.sort_by_key(|(_, x)| std::cmp::Reverse(x.auth_time));
    let sessions: Vec<Value> = sessions
        .iter()
        .map(|(h, x)| {
            json!({"sid": x.sid, "label": x.label, "ip": x.ip, "since": when(x.auth_time), "current": *h == s.hash})
        })
        .collect();
    let devices: Vec<Value> = u
        .mfa
        .devices
        .iter()
        .filter(|d| d.expires_at > now)
        .map(|d| json!({"id": d.id, "label": d.label, "expires": when(d.expires_at)}))
        .collect();
    let q = req.query_params();
    render(
        app,
        req,
        s,
        ("account", ""),
        "account.html",
        json!({
            "title": "My account",
            "user": {
                "username": u.username, "email": u.email, "given_name": u.given_name,
                "family_name": u.family_name, "phone": u.phone,
            },
            "address": u.address.clone().unwrap_or_default(),
            "enrolled": u.mfa.enrolled(),
            "recovery_left": u.mfa.recovery_hashes.len(),
            "devices": devices,
            "passkeys": super::passkeys::listed(u),
            "passkeys_available": app.passkeys.available(),
            "email_verified": u.email_verified,
            "mail": app.mailer.is_some(),
            "directory": u.source.is_some(),
            "directory_password": directory_password(app),
            "fresh": fresh(app, s, now),
            "apps": apps,
            "sessions": sessions,
            "notice": notice(q.get_lenient("done")),
            "error": error,
        }),
        status,
    )
}

fn field(form: &Params, name: &str) -> Option<String> {
    form.get_lenient(name).map(str::to_string)
}

async fn profile(app: &Arc<App>, req: &Req, s: &SignedIn, form: &Params, now: i64) -> Resp {
    if s.user.source.is_some() {
        return directory_profile(app, req, s, form, now);
    }
    let new = crate::admin::NewUser {
        username: s.user.username.clone(),
        email: field(form, "email").unwrap_or_default(),
        given_name: field(form, "given_name"),
        family_name: field(form, "family_name"),
        phone: field(form, "phone"),
        address: Address {
            street_address: field(form, "street_address"),
            locality: field(form, "locality"),
            region: field(form, "region"),
            postal_code: field(form, "postal_code"),
            country: field(form, "country"),
        },
        ..crate::admin::NewUser::default()
    };
    let p = match crate::admin::validate_profile(new) {
        Ok(p) => p,
        Err(e) => return page(app, req, s, Some(&e.message), StatusCode::BAD_REQUEST, now),
    };
    // The address is where password resets go: changing it needs a recent sign-in or the
    // password (a stolen session cookie alone must not redirect them), and its link counts
    // against the account's mail allowance.
    let moving = p.email != s.user.email;
    if moving && !fresh(app, s, now) {
        if let Err(r) = confirm_password(app, req, s, form, now).await {
            return r;
        }
    }
    if moving && app.mailer.is_some() {
        let account = crate::signin::throttle::Who::Account(&s.user.id);
        if let Err(refused) = app.mail_throttle.check(account, req.now_ms) {
            let msg = format!(
                "Your address changed a moment ago. Wait {} before changing it again.",
                refused.wait_text()
            );
            return page(app, req, s, Some(&msg), StatusCode::TOO_MANY_REQUESTS, now);
        }
        app.mail_throttle.failure(account, req.now_ms);
    }
    let changed = signin::modify_user(app, &s.user.id, |u| {
        p.apply_contact(u, now);
        true
    });
    let user = match changed {
        Ok(Some(u)) => u,
        Ok(None) => return back("profile"),
        Err(f) => return app.fail_page(f),
    };
    audit_own(app, req, s, "account.profile_changed", None, "", now);
    // A new address is unverified; with mail, its confirmation link goes out at once.
    if user.email != s.user.email && app.mailer.is_some() && !user.email.is_empty() {
        if let Err(f) = super::mail::queue(app, MailKind::Verification, &user, now) {
            return app.fail_page(f);
        }
        return back("verify-sent");
    }
    back("profile")
}

/// `POST /account/profile` for a directory person: names, email and phone come from the
/// directory (shown read-only, a change refused); the address is theirs to keep here.
fn directory_profile(app: &Arc<App>, req: &Req, s: &SignedIn, form: &Params, now: i64) -> Resp {
    let u = &s.user;
    let ruled = [
        ("email", Some(u.email.as_str())),
        ("given_name", u.given_name.as_deref()),
        ("family_name", u.family_name.as_deref()),
        ("phone", u.phone.as_deref()),
    ];
    let changed = ruled.iter().any(|(name, have)| {
        form.get_lenient(name)
            .is_some_and(|v| v.trim() != have.unwrap_or("").trim())
    });
    if changed {
        let m = "Your name, email address and phone number come from your organisation's directory: change them there.";
        return page(app, req, s, Some(m), StatusCode::CONFLICT, now);
    }
    let address = Address {
        street_address: field(form, "street_address"),
        locality: field(form, "locality"),
        region: field(form, "region"),
        postal_code: field(form, "postal_code"),
        country: field(form, "country"),
    };
    let address = match crate::admin::validate_address(address) {
        Ok(a) => a,
        Err(e) => return page(app, req, s, Some(&e.message), StatusCode::BAD_REQUEST, now),
    };
    let changed = signin::modify_user(app, &u.id, |u| {
        if u.address == address {
            return false;
        }
        u.address = address.clone();
        u.updated_at = now;
        true
    });
    match changed {
        Ok(Some(_)) => audit_own(app, req, s, "account.profile_changed", None, "", now),
        Ok(None) => {}
        Err(f) => return app.fail_page(f),
    }
    back("profile")
}

/// `POST /account/verify`: mails a link that proves the address.
fn send_verification(app: &Arc<App>, req: &Req, s: &SignedIn, now: i64) -> Resp {
    if app.mailer.is_none() || s.user.email.is_empty() || s.user.email_verified {
        return back("profile");
    }
    // Each request counts for the account, so the page cannot flood an inbox.
    let account = crate::signin::throttle::Who::Account(&s.user.id);
    if let Err(refused) = app.mail_throttle.check(account, req.now_ms) {
        let msg = format!(
            "A link was sent a moment ago. Wait {} before asking again.",
            refused.wait_text()
        );
        return page(app, req, s, Some(&msg), StatusCode::TOO_MANY_REQUESTS, now);
    }
    app.mail_throttle.failure(account, req.now_ms);
    if let Err(f) = super::mail::queue(app, MailKind::Verification, &s.user, now) {
        return app.fail_page(f);
    }
    audit_own(
        app,
        req,
        s,
        "email.verification_sent",
        None,
        &s.user.email,
        now,
    );
    back("verify-sent")
}

/// Checks the user's current password (on the hashing pool), throttled like the sign-in
/// page; `Err` is the status and the sentence to show.
async fn check_current(
    app: &Arc<App>,
    req: &Req,
    s: &SignedIn,
    form: &Params,
    now: i64,
) -> Result<(), Result<(StatusCode, String), Fail>> {
    let current = Secret::new(form.get_lenient("current").unwrap_or("").to_string());
    let known = super::known::id_for(app, req, &s.user.id, now);
    let who = super::known::who(known.as_deref(), &s.user.username, req.peer);
    if let Err(refused) = app.throttle.check(who, req.now_ms) {
        app.audit_refused("login.throttled", Some(&s.user.username), req, refused);
        return Err(Ok((StatusCode::TOO_MANY_REQUESTS, refused.message())));
    }
    // A directory account's password is the directory's.
    let checked = if s.user.source.is_some() {
        match super::directory::confirm(app, &s.user, current.expose()).await {
            Ok(ok) => Ok(ok),
            Err(message) => return Err(Ok((StatusCode::SERVICE_UNAVAILABLE, message.to_string()))),
        }
    } else {
        check_password(app, Some(&s.user), current).await
    };
    match checked {
        Ok(true) => Ok(()),
        Ok(false) => {
            app.throttle.failure(who, req.now_ms);
            audit_own(app, req, s, "account.password_check_failed", None, "", now);
            Err(Ok((
                StatusCode::UNAUTHORIZED,
                "Your current password is not correct.".to_string(),
            )))
        }
        Err(Fail::Busy) => Err(Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is busy. Try again in a moment.".to_string(),
        ))),
        Err(f) => Err(Err(f)),
    }
}

/// Checks the user's current password; `Err` is the page to show.
async fn confirm_password(
    app: &Arc<App>,
    req: &Req,
    s: &SignedIn,
    form: &Params,
    now: i64,
) -> Result<(), Resp> {
    match check_current(app, req, s, form, now).await {
        Ok(()) => Ok(()),
        Err(Ok((status, message))) => Err(page(app, req, s, Some(&message), status, now)),
        Err(Err(f)) => Err(app.fail_page(f)),
    }
}

/// `POST /account/passkeys/start`. A new passkey signs in on its own, so a stolen session
/// cookie alone must not add one: it needs a recent sign-in or the password.
async fn start_passkey(app: &Arc<App>, req: &Req, s: &SignedIn, form: &Params, now: i64) -> Resp {
    if !fresh(app, s, now) {
        match check_current(app, req, s, form, now).await {
            Ok(()) => {}
            Err(Ok((status, message))) => {
                return super::passkeys::json_error(status, &message);
            }
            Err(Err(f)) => return app.fail_page(f),
        }
    }
    super::passkeys::register_start(app, req, s, form, now)
}

async fn password(app: &Arc<App>, req: &Req, s: &SignedIn, form: &Params, now: i64) -> Resp {
    if s.user.source.is_some() {
        if directory_password(app) {
            return password_in_directory(app, req, s, form, now).await;
        }
        let m = "Your password is kept by your organisation's directory: change it there.";
        return page(app, req, s, Some(m), StatusCode::CONFLICT, now);
    }
    if let Err(r) = confirm_password(app, req, s, form, now).await {
        return r;
    }
    let new = Secret::new(form.get_lenient("password").unwrap_or("").to_string());
    let again = form.get_lenient("password2").unwrap_or("");
    match signin::set_password(app, &s.user.id, new, again, Some(&s.hash), None, now).await {
        Ok(_) => {
            audit_own(app, req, s, "account.password_changed", None, "", now);
            back("password")
        }
        Err(PasswordError::Input(m)) => page(app, req, s, Some(&m), StatusCode::BAD_REQUEST, now),
        Err(PasswordError::Fail(f)) => app.fail_page(f),
    }
}

/// Whether directory people change their password here (`ldap_password_change`).
fn directory_password(app: &App) -> bool {
    app.directory.is_some() && app.config.ldap.as_ref().is_some_and(|l| l.password_change)
}

/// `POST /account/password` for a directory person with `ldap_password_change`: the
/// current password checked (throttled, by binding as them), the new one set in the
/// directory; then, as for a local password, other sign-ins end and tokens are revoked.
async fn password_in_directory(
    app: &Arc<App>,
    req: &Req,
    s: &SignedIn,
    form: &Params,
    now: i64,
) -> Resp {
    let new = Secret::new(form.get_lenient("password").unwrap_or("").to_string());
    if form.get_lenient("password2").unwrap_or("") != new.expose() {
        return page(
            app,
            req,
            s,
            Some("The two passwords differ."),
            StatusCode::BAD_REQUEST,
            now,
        );
    }
    if let Err(m) = crate::keys::password::check_policy(new.expose(), &s.user.username) {
        return page(app, req, s, Some(&m), StatusCode::BAD_REQUEST, now);
    }
    if let Err(r) = confirm_password(app, req, s, form, now).await {
        return r;
    }
    let current = Secret::new(form.get_lenient("current").unwrap_or("").to_string());
    match super::directory::change_password(app, &s.user, current.expose(), new.expose()).await {
        Ok(Ok(())) => {}
        Ok(Err(why)) => {
            let m = format!("The new password was not set: {why}.");
            return page(app, req, s, Some(&m), StatusCode::BAD_REQUEST, now);
        }
        Err(m) => return page(app, req, s, Some(m), StatusCode::SERVICE_UNAVAILABLE, now),
    }
    // Browsers trusted to skip the second factor were trusted under the old password.
    let ended = signin::modify_user(app, &s.user.id, |u| {
        u.mfa.devices.clear();
        true
    })
    .and_then(|_| Ok(app.store.delete_user_sessions_except(&s.user.id, &s.hash)?))
    .and_then(|_| Ok(app.store.revoke_user_grants(&s.user.id)?));
    if let Err(f) = ended {
        return app.fail_page(f);
    }
    audit_own(
        app,
        req,
        s,
        "account.password_changed",
        None,
        "in the directory",
        now,
    );
    back("password")
}

/// A passkeys-only account changes its codes (authenticator app, recovery codes) only
/// from a sign-in made with a passkey or security key: else a password and one recovery
/// code would buy an endless supply of them.
fn codes_locked(app: &App, s: &SignedIn) -> Option<Resp> {
    (s.user.passkeys_only && !crate::model::used_webauthn(&s.session.amr)).then(|| {
        app.error_page(
            StatusCode::FORBIDDEN,
            "Sign in with a passkey first",
            "Your account signs in with passkeys. Add a passkey on your account page or sign in with one, then change your codes.",
        )
    })
}

fn enrol_page(app: &Arc<App>, req: &Req, s: &SignedIn, error: Option<&str>, now: i64) -> Resp {
    if s.user.mfa.enrolled() {
        return response::redirect("/account");
    }
    if let Some(r) = codes_locked(app, s) {
        return r;
    }
    // The secret waits in the user record until a code confirms it, bound to this
    // session and for at most `ENROL_TTL`: a reload shows the same one, and a secret
    // shown to another session (someone with a stolen cookie) is never the one this
    // session confirms.
    let mine = |u: &crate::model::User| {
        u.mfa.pending_session == s.hash && now - u.mfa.pending_since <= ENROL_TTL
    };
    let fresh = totp::new_secret();
    let secret = match signin::modify_user(app, &s.user.id, |u| {
        if u.mfa.pending_secret.is_some() && mine(u) {
            return false;
        }
        u.mfa.pending_secret = Some(fresh.clone());
        u.mfa.pending_since = now;
        u.mfa.pending_session = s.hash.clone();
        true
    }) {
        Ok(Some(_)) => fresh,
        Ok(None) => match &s.user.mfa.pending_secret {
            Some(p) if mine(&s.user) => p.clone(),
            // Changed meanwhile (another tab): read it again.
            _ => match app.store.user(&s.user.id) {
                Ok(Some(u)) if mine(&u) => u.mfa.pending_secret.unwrap_or_default(),
                Ok(_) => return response::redirect("/account/2fa"),
                Err(e) => return app.fail_page(e.into()),
            },
        },
        Err(f) => return app.fail_page(f),
    };
    let uri = totp::otpauth_uri(&secret, &app.config.instance_name, &s.user.username);
    let qr = crate::pages::qr::svg(&uri, "QR code for your authenticator app").unwrap_or_default();
    let q = req.query_params();
    let interaction = q
        .get_lenient("interaction")
        .filter(|id| app.interactions.get(id, now).is_some());
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    render(
        app,
        req,
        s,
        ("account", ""),
        "account_2fa.html",
        json!({"title": "Set up two-factor sign-in", "secret": secret, "qr": qr, "error": error, "interaction": interaction}),
        status,
    )
}

/// How long an enrolment page's secret waits for its confirming code.
const ENROL_TTL: i64 = 15 * 60;

async fn enrol_submit(app: &Arc<App>, req: &Req, s: &SignedIn, form: &Params, now: i64) -> Resp {
    if let Some(r) = codes_locked(app, s) {
        return r;
    }
    // The password too: a stolen session cookie alone must not add an authenticator.
    if let Err(r) = confirm_password(app, req, s, form, now).await {
        return r;
    }
    let code = form.get_lenient("code").unwrap_or("");
    let (codes, hashes) = totp::recovery_codes();
    let enrolled = signin::modify_user(app, &s.user.id, |u| {
        let Some(pending) = u.mfa.pending_secret.clone() else {
            return false;
        };
        if u.mfa.enrolled()
            || u.mfa.pending_session != s.hash
            || now - u.mfa.pending_since > ENROL_TTL
        {
            return false;
        }
        let Some(step) = totp::verify(&pending, code, now, 0) else {
            return false;
        };
        u.mfa.totp_secret = Some(pending);
        u.mfa.pending_secret = None;
        u.mfa.last_step = step;
        u.mfa.recovery_hashes = hashes.clone();
        u.updated_at = now;
        true
    });
    match enrolled {
        Ok(Some(_)) => {}
        Ok(None) => {
            // Shown again with the same secret; the query keeps the interaction.
            return enrol_page(
                app,
                req,
                s,
                Some(
                    "That code is not right, or the page was open too long. Scan this new code and try again.",
                ),
                now,
            );
        }
        Err(f) => return app.fail_page(f),
    }
    audit_own(app, req, s, "mfa.enrolled", None, "totp", now);
    // The code just proved the second factor: this session now has two (under a new
    // cookie).
    let cookie = match signin::elevate(app, s) {
        Ok(c) => c,
        Err(f) => return app.fail_page(f),
    };
    // The session ended meanwhile: enrolled all the same, so the codes are shown once,
    // and the way on is a new sign-in.
    let Some(cookie) = cookie else {
        return show_recovery_codes(app, req, s, &codes, ("/login".to_string(), "Sign in"));
    };
    let next = match form
        .get_lenient("interaction")
        .filter(|id| app.interactions.get(id, now).is_some())
    {
        Some(id) => (
            format!("{}?interaction={id}", paths::AUTHORIZE_RESUME),
            "Continue to the application",
        ),
        None => ("/account".to_string(), "Back to my account"),
    };
    response::with_header(
        show_recovery_codes(app, req, s, &codes, next),
        "set-cookie",
        &cookie,
    )
}

fn show_recovery_codes(
    app: &App,
    req: &Req,
    s: &SignedIn,
    codes: &[String],
    (next, next_text): (String, &str),
) -> Resp {
    render(
        app,
        req,
        s,
        ("account", ""),
        "once.html",
        json!({
            "title": "Your recovery codes",
            "lead": "Keep these codes somewhere safe, apart from your phone. Each one signs you in once when you cannot use your authenticator app.",
            "items": [],
            "codes": codes,
            "next": next,
            "next_text": next_text,
        }),
        StatusCode::OK,
    )
}

async fn new_recovery_codes(
    app: &Arc<App>,
    req: &Req,
    s: &SignedIn,
    form: &Params,
    now: i64,
) -> Resp {
    if let Some(r) = codes_locked(app, s) {
        return r;
    }
    if let Err(r) = confirm_password(app, req, s, form, now).await {
        return r;
    }
    let (codes, hashes) = totp::recovery_codes();
    match signin::modify_user(app, &s.user.id, |u| {
        if !u.mfa.enrolled() {
            return false;
        }
        u.mfa.recovery_hashes = hashes.clone();
        true
    }) {
        Ok(Some(_)) => {}
        Ok(None) => return response::redirect("/account"),
        Err(f) => return app.fail_page(f),
    }
    audit_own(app, req, s, "mfa.recovery_codes_renewed", None, "", now);
    show_recovery_codes(
        app,
        req,
        s,
        &codes,
        ("/account".to_string(), "Back to my account"),
    )
}

async fn remove_2fa(app: &Arc<App>, req: &Req, s: &SignedIn, form: &Params, now: i64) -> Resp {
    if let Err(r) = confirm_password(app, req, s, form, now).await {
        return r;
    }
    if let Err(f) = signin::modify_user(app, &s.user.id, |u| {
        u.mfa.turn_off_codes();
        u.updated_at = now;
        true
    }) {
        return app.fail_page(f);
    }
    audit_own(app, req, s, "mfa.removed", None, "", now);
    back("2fa-off")
}

/// Whether the session signed in (or confirmed the password) within the
/// re-authentication window.
fn fresh(app: &App, s: &SignedIn, now: i64) -> bool {
    s.fresh(app.config.reauth_window, now)
}

fn add_passkey(app: &Arc<App>, req: &Req, s: &SignedIn, form: &Params, now: i64) -> Resp {
    let then = continuation(app, form, now);
    match super::passkeys::register_finish(app, s, form, now) {
        Ok(name) => {
            audit_own(app, req, s, "passkey.added", None, &name, now);
            match then {
                Some(t) => response::redirect(&t.url()),
                None => back("passkey"),
            }
        }
        Err(message) => match then {
            Some(_) => offer_page(app, req, s, Some(&message), StatusCode::BAD_REQUEST, now),
            None => page(app, req, s, Some(&message), StatusCode::BAD_REQUEST, now),
        },
    }
}

/// Where the passkey offer continues: a pending authorization request or a local page
/// (`interaction` / `next` of a query or form); `None` for the account page itself.
fn continuation(app: &App, q: &Params, now: i64) -> Option<Target> {
    let interaction = q
        .get_lenient("interaction")
        .filter(|id| app.interactions.get(id, now).is_some());
    let next = q.get_lenient("next").filter(|n| safe_next(n));
    (interaction.is_some() || next.is_some()).then(|| Target {
        interaction: interaction.map(str::to_string),
        next: next.map(str::to_string),
    })
}

/// `GET /account/passkey`: the offer to add a passkey, after a password was just chosen
/// (first administrator, reset link) or for an application that requires one; then on
/// to where the person was going.
fn offer_page(
    app: &App,
    req: &Req,
    s: &SignedIn,
    error: Option<&str>,
    status: StatusCode,
    now: i64,
) -> Resp {
    let query = req.query_params();
    let form = req.form();
    let source = if req.method == Method::POST {
        &form
    } else {
        &query
    };
    let then = continuation(app, source, now);
    let client = then
        .as_ref()
        .and_then(|t| t.interaction.as_deref())
        .and_then(|id| app.interactions.get(id, now))
        .and_then(|i| app.client(&i.request.client_id).ok().flatten());
    let lead = match &client {
        Some(c) if c.policy == crate::model::Policy::Passkey => format!(
            "{} asks you to sign in with a passkey. Add one here; you then sign in with it.",
            c.name
        ),
        _ => "Your password is set. Add a passkey to sign in next time without typing it."
            .to_string(),
    };
    let (then_interaction, then_next) = match &then {
        Some(t) => (t.interaction.clone(), t.next.clone()),
        None => (None, None),
    };
    // An application that requires a passkey would only send the person back here.
    let requires = client
        .as_ref()
        .is_some_and(|c| c.policy == crate::model::Policy::Passkey);
    let continue_url = match &then {
        Some(t) if !requires => t.url(),
        _ => "/account".to_string(),
    };
    let continue_label = match (&then, requires) {
        (_, true) => "Back to my account",
        (Some(_), false) => "Not now, continue",
        (None, false) => "Not now",
    };
    render(
        app,
        req,
        s,
        ("account", ""),
        "passkey_offer.html",
        json!({
            "title": "Add a passkey",
            "lead": lead,
            "error": error,
            "fresh": fresh(app, s, now),
            "then_interaction": then_interaction,
            "then_next": then_next,
            "continue_url": continue_url,
            "continue_label": continue_label,
        }),
        status,
    )
}

/// Removing a passkey needs a fresh sign-in, or the password.
async fn remove_passkey(app: &Arc<App>, req: &Req, s: &SignedIn, form: &Params, now: i64) -> Resp {
    if !fresh(app, s, now)
        && let Err(r) = confirm_password(app, req, s, form, now).await
    {
        return r;
    }
    let id = form.get_lenient("id").unwrap_or("");
    let removed = signin::modify_user(app, &s.user.id, |u| {
        let before = u.mfa.passkeys.len();
        u.mfa.passkeys.retain(|p| p.id != id);
        if !u.mfa.has_second_factor() {
            // Browsers trusted through a second factor that is gone trust nothing now.
            u.mfa.devices.clear();
        }
        u.updated_at = now;
        u.mfa.passkeys.len() != before
    });
    let name = s.user.mfa.passkeys.iter().find(|p| p.id == id);
    match (removed, name) {
        (Err(f), _) => app.fail_page(f),
        (Ok(Some(_)), Some(p)) => {
            let name = p.name.clone();
            audit_own(app, req, s, "passkey.removed", None, &name, now);
            back("passkey-removed")
        }
        (Ok(_), _) => page(
            app,
            req,
            s,
            Some("That passkey is not yours, or it was removed already."),
            StatusCode::NOT_FOUND,
            now,
        ),
    }
}

fn revoke_device(app: &Arc<App>, req: &Req, s: &SignedIn, form: &Params, now: i64) -> Resp {
    let id = form.get_lenient("id").unwrap_or("");
    if let Err(f) = signin::modify_user(app, &s.user.id, |u| {
        let before = u.mfa.devices.len();
        u.mfa.devices.retain(|d| d.id != id);
        u.mfa.devices.len() < before
    }) {
        return app.fail_page(f);
    }
    audit_own(app, req, s, "mfa.trusted_browser_revoked", None, "", now);
    back("device")
}

/// Removes the consent and revokes every token the application holds for this user.
fn revoke_app(app: &Arc<App>, req: &Req, s: &SignedIn, form: &Params, now: i64) -> Resp {
    let client_id = form.get_lenient("client_id").unwrap_or("");
    let result = app
        .store
        .delete_consent(&s.user.id, client_id)
        .and_then(|_| app.store.revoke_user_client_grants(&s.user.id, client_id));
    if let Err(e) = result {
        return app.fail_page(e.into());
    }
    audit_own(
        app,
        req,
        s,
        "consent.revoked",
        Some(client_id),
        "by the user",
        now,
    );
    back("app")
}

fn end_session(app: &Arc<App>, req: &Req, s: &SignedIn, form: &Params, now: i64) -> Resp {
    let sid = form.get_lenient("sid").unwrap_or("");
    let target = match app.store.sessions() {
        Ok(all) => all
            .into_iter()
            .find(|(h, x)| x.user_id == s.user.id && x.sid == sid && *h != s.hash),
        Err(e) => return app.fail_page(e.into()),
    };
    if let Some((hash, session)) = target {
        if let Err(f) = super::logout::end_stored_session(app, &hash, &session, now) {
            return app.fail_page(f);
        }
        audit_own(
            app,
            req,
            s,
            "logout",
            None,
            "another session, from the account page",
            now,
        );
    }
    back("session")
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(super::when(1_700_000_000), "2023-11-14 22:13");
        assert_eq!(super::notice(Some("<script>")), None);
        assert!(super::notice(Some("profile")).is_some());
    }
}
