//! The pages people see: sign-in, consent, first-run setup and the landing page. Each form
//! carries a CSRF token; every failure shows the same generic message.

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::json;

use super::response::{self, Fail, Resp, Shape};
use super::signin::{self, Target, safe_next};
use super::{App, Req, authorize, check_password};
use crate::keys::Secret;
use crate::model::{Consent, User};
use crate::oidc::authorize::ACR_ONE_FACTOR;
use crate::oidc::discovery::paths;
use crate::oidc::scope;

const GENERIC_FAILURE: &str = "Incorrect username or password.";

pub(super) fn with_cookie(resp: Resp, cookie: Option<String>) -> Resp {
    match cookie {
        Some(c) => response::with_header(resp, "set-cookie", &c),
        None => resp,
    }
}

struct LoginView<'a> {
    interaction: Option<&'a str>,
    /// A local page to return to after signing in (only the device page).
    next: Option<&'a str>,
    username: &'a str,
    error: Option<&'a str>,
    status: StatusCode,
    /// Only "Sign in with a passkey": the application requires one (SPEC §10).
    passkey_required: bool,
}

fn render_login(app: &App, req: &Req, v: LoginView<'_>, now: i64) -> Resp {
    let (csrf, cookie) = app.csrf_token(req);
    let client_name = v
        .interaction
        .and_then(|id| app.interactions.get(id, now))
        .and_then(|i| app.client(&i.request.client_id).ok().flatten())
        .map(|c| c.name);
    let body = app.pages.render(
        "login.html",
        &json!({
            "title": "Sign in",
            "csrf": csrf,
                        "interaction": v.interaction,
            "next": v.next,
            "client_name": client_name,
            "username": v.username,
            "error": v.error,
            "passkeys": app.passkeys.available(),
            "passkey_first": app.config.passkey_first,
            "mail": app.mailer.is_some(),
            "passkey_required": v.passkey_required && app.passkeys.available(),
            "script": app.passkeys.available(),
        }),
    );
    with_cookie(response::html(v.status, body), cookie)
}

pub(super) fn login_page(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    let q = req.query_params();
    let interaction = q
        .get_lenient("interaction")
        .and_then(|id| app.interactions.get(id, now).map(|i| (id, i)));
    let hint = interaction
        .as_ref()
        .and_then(|(_, i)| i.request.login_hint.clone())
        .unwrap_or_default();
    let view = LoginView {
        next: q.get_lenient("next").filter(|n| safe_next(n)),
        interaction: interaction.as_ref().map(|(id, _)| *id),
        username: &hint,
        error: None,
        status: StatusCode::OK,
        passkey_required: q.get_lenient("passkey") == Some("required"),
    };
    render_login(app, req, view, now)
}

pub(super) async fn login_submit(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    if !req.is_form() {
        return app.error_page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "The sign-in form must be form-encoded.",
        );
    }
    let form = req.form();
    let interaction = form
        .get_lenient("interaction")
        .filter(|id| app.interactions.get(id, now).is_some());
    let username: String = form
        .get_lenient("username")
        .unwrap_or("")
        .trim()
        .chars()
        .take(128)
        .collect();
    let next = form.get_lenient("next").filter(|n| safe_next(n));
    let view = |error, status| LoginView {
        next,
        interaction,
        username: &username,
        error: Some(error),
        status,
        passkey_required: false,
    };
    if !app.csrf_ok(req, &form) {
        return render_login(
            app,
            req,
            view(
                "The form expired. Please sign in again.",
                StatusCode::BAD_REQUEST,
            ),
            now,
        );
    }
    let user = match app.store.user_by_name(&username) {
        Ok(u) => u,
        Err(e) => return app.fail_page(e.into()),
    };
    // SPEC §8: a browser where this user signed in before is throttled on its own.
    let known = user
        .as_ref()
        .and_then(|u| super::known::id_for(app, req, &u.id, now));
    let who = super::known::who(known.as_deref(), &username, req.peer);
    if let Err(refused) = app.throttle.check(who, req.now_ms) {
        app.audit_refused("login.throttled", Some(&username), req, refused);
        let msg = refused.message();
        return render_login(app, req, view(&msg, StatusCode::TOO_MANY_REQUESTS), now);
    }
    // Passwords longer than the policy allows cannot match; they are not hashed at length.
    let raw = form.get_lenient("password").unwrap_or("");
    let password = Secret::new(if raw.len() > 4 * crate::keys::password::MAX_LEN {
        String::new()
    } else {
        raw.to_string()
    });

    // SPEC §11: a name without a local account, or a directory account, is the
    // directory's; its password is checked there. The directory being down never stops
    // local accounts.
    // Only names a directory person can have here are asked about (the directory may
    // match other spellings of a name, each of which would have its own throttle).
    let from_directory = app.directory.is_some()
        && crate::model::valid_username(&username)
        && user
            .as_ref()
            .is_none_or(|u| u.source.as_deref() == Some(super::directory::SOURCE));
    let (ok, user) = if from_directory {
        match super::directory::sign_in(app, &username, password.expose(), now).await {
            Ok(Some(found)) => (true, Some(found)),
            Ok(None) => {
                // The work of a local account's wrong password too, so the answer's
                // time does not tell a local name from a directory one or from nobody.
                let _ = check_password(app, None, Secret::new(password.expose().clone())).await;
                (false, user)
            }
            Err(message) => {
                // Counted like a failure: an unreachable directory is no free oracle.
                app.throttle.failure(who, req.now_ms);
                let v = view(message, StatusCode::SERVICE_UNAVAILABLE);
                return render_login(app, req, v, now);
            }
        }
    } else {
        match check_password(app, user.as_ref(), Secret::new(password.expose().clone())).await {
            Ok(ok) => (ok, user),
            Err(Fail::Busy) => {
                return render_login(
                    app,
                    req,
                    view(
                        "The server is busy. Try again in a moment.",
                        StatusCode::SERVICE_UNAVAILABLE,
                    ),
                    now,
                );
            }
            Err(f) => return app.fail_page(f),
        }
    };
    let Some(user) = user.clone().filter(|_| ok) else {
        app.throttle.failure(who, req.now_ms);
        let reason = match &user {
            None => "unknown user",
            Some(u) if u.disabled => "account disabled",
            Some(_) => "wrong password",
        };
        app.audit(
            "login.failure",
            Some(&username),
            None,
            Some(req.peer),
            reason,
            now,
        );
        return render_login(
            app,
            req,
            view(GENERIC_FAILURE, StatusCode::UNAUTHORIZED),
            now,
        );
    };
    // A passkeys-only account whose password leads nowhere (no security key, no recovery
    // code) still counts it as a guess: the page after it tells that the password was
    // right, and that must not come cheaply.
    let leads_nowhere = user.passkeys_only
        && user.mfa.security_keys().next().is_none()
        && user.mfa.recovery_hashes.is_empty();
    if leads_nowhere {
        app.throttle.failure(who, req.now_ms);
    } else {
        app.throttle.success(who);
    }
    // A directory password is never hashed or kept here.
    if user.source.is_none() {
        rehash_if_needed(app, &user, password).await;
    }

    let target = Target {
        interaction: interaction.map(str::to_string),
        next: next.map(str::to_string),
    };
    signin::after_password(app, req, &user, target, false, now)
}

/// `POST /login/passkey`: the browser's answer to a passkey sign-in. A passkey that
/// verified the user is two factors on its own (SPEC §10); the sign-in then goes on as
/// after a second factor.
pub(super) async fn passkey_submit(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    let form = req.form();
    let interaction = form
        .get_lenient("interaction")
        .filter(|id| app.interactions.get(id, now).is_some());
    let next = form.get_lenient("next").filter(|n| safe_next(n));
    let view = |error, status| LoginView {
        next,
        interaction,
        username: "",
        error: Some(error),
        status,
        passkey_required: form.get_lenient("passkey") == Some("required"),
    };
    if !req.is_form() || !app.csrf_ok(req, &form) {
        let v = view(
            "The form expired. Please sign in again.",
            StatusCode::BAD_REQUEST,
        );
        return render_login(app, req, v, now);
    }
    // Answers that name no account are counted per address, like reset links.
    let who = crate::signin::throttle::Who::Address(req.peer);
    if let Err(refused) = app.throttle.check(who, req.now_ms) {
        app.audit_refused("login.throttled", None, req, refused);
        let msg = refused.message();
        return render_login(app, req, view(&msg, StatusCode::TOO_MANY_REQUESTS), now);
    }
    let verified = match super::passkeys::signin_finish(app, &form, now) {
        Ok(v) => v,
        Err(super::passkeys::Refused(message)) => {
            app.throttle.failure(who, req.now_ms);
            app.audit("login.failure", None, None, Some(req.peer), "passkey", now);
            return render_login(app, req, view(message, StatusCode::UNAUTHORIZED), now);
        }
    };
    // A directory person removed or disabled there is not let in by a passkey the
    // directory never sees, even before the next sync.
    if verified.user.source.is_some()
        && !super::directory::still_listed(app, &verified.user, now).await
    {
        app.throttle.failure(who, req.now_ms);
        app.audit(
            "login.failure",
            Some(&verified.user.username),
            None,
            Some(req.peer),
            "passkey: not in the directory",
            now,
        );
        let v = view(
            "Your organisation's directory does not confirm this account. Sign in with your password.",
            StatusCode::UNAUTHORIZED,
        );
        return render_login(app, req, v, now);
    }
    let target = Target {
        interaction: interaction.map(str::to_string),
        next: next.map(str::to_string),
    };
    signin::finish(
        app,
        req,
        &verified.user,
        verified.used.factors(),
        target,
        None,
        now,
    )
}

/// SPEC §8: a hash made with older parameters is replaced after a successful sign-in.
async fn rehash_if_needed(app: &Arc<App>, user: &User, password: Secret<String>) {
    let params = app.config.password.clone();
    if !crate::keys::password::needs_rehash(&user.password_hash, &params) {
        return;
    }
    let Ok(Ok(new_hash)) = app
        .pool
        .run(move || crate::keys::password::hash(password.expose(), &params))
        .await
    else {
        return;
    };
    // Only if nobody changed the user since the sign-in read it (an administrator's new
    // password must win); the next sign-in tries again otherwise.
    if let Ok(Some(fresh)) = app.store.user(&user.id)
        && fresh.password_hash == user.password_hash
    {
        let new = User {
            password_hash: new_hash,
            ..fresh.clone()
        };
        if let Err(e) = app.store.update_user_if(&fresh, &new) {
            tracing::warn!(error = %e, "could not store the rehashed password");
        }
    }
}

/// What the consent page and its form need: the pending interaction, the signed-in
/// user and the client. Anything missing becomes the response to send instead.
struct ConsentContext<'a> {
    id: &'a str,
    interaction: super::interaction::Interaction,
    signed_in: super::SignedIn,
    client: crate::model::Client,
}

#[allow(clippy::result_large_err)] // the error is the response itself, sent at once
fn consent_context<'a>(
    app: &App,
    req: &Req,
    id: Option<&'a str>,
    now: i64,
) -> Result<ConsentContext<'a>, Resp> {
    let Some((id, interaction)) = id.and_then(|id| app.interactions.get(id, now).map(|i| (id, i)))
    else {
        return Err(app.error_answer(authorize::expired(), Shape::Page));
    };
    let signed_in = match app.signed_in(req, now) {
        Ok(Some(s)) => s,
        Ok(None) => return Err(response::redirect(&format!("/login?interaction={id}"))),
        Err(e) => return Err(app.fail_page(e.into())),
    };
    match app.client(&interaction.request.client_id) {
        Ok(Some(client)) => Ok(ConsentContext {
            id,
            interaction,
            signed_in,
            client,
        }),
        Ok(None) => Err(app.error_answer(authorize::expired(), Shape::Page)),
        Err(e) => Err(app.fail_page(e.into())),
    }
}

pub(super) fn consent_page(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    let q = req.query_params();
    let ctx = match consent_context(app, req, q.get_lenient("interaction"), now) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let granted = crate::oidc::authorize::consent_scopes(&ctx.interaction.request, &ctx.client);
    let described: Vec<String> = granted
        .iter()
        .map(|s| scope::describe(s).into_owned())
        .collect();
    let claims = crate::oidc::authorize::consent_claims(&granted, &ctx.client);
    let (csrf, cookie) = app.csrf_token(req);
    let body = app.pages.render(
        "consent.html",
        &json!({
            "title": "Allow access",
            "csrf": csrf,
            "interaction": ctx.id,
            "client_name": ctx.client.name,
            "username": ctx.signed_in.user.username,
            "scopes": described,
            "claims": claims,
        }),
    );
    with_cookie(response::html(StatusCode::OK, body), cookie)
}

pub(super) fn consent_submit(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    if !req.is_form() {
        return app.error_page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "The consent form must be form-encoded.",
        );
    }
    let form = req.form();
    if !app.csrf_ok(req, &form) {
        return app.error_page(
            StatusCode::BAD_REQUEST,
            "Form expired",
            "The form expired. Go back to the application and start again.",
        );
    }
    let ConsentContext {
        id,
        interaction,
        signed_in,
        client,
    } = match consent_context(app, req, form.get_lenient("interaction"), now) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let request = &interaction.request;
    let user = &signed_in.user;
    match form.get_lenient("decision") {
        Some("allow") => {
            let mut scopes = crate::oidc::authorize::consent_scopes(request, &client);
            let mut claims = crate::oidc::authorize::consent_claims(&scopes, &client);
            // Remember the union with what was consented before, so asking for less
            // later does not forget an earlier, wider consent.
            if let Ok(Some(previous)) = app.store.consent(&user.id, &client.client_id) {
                scopes = scope::grant(&[scopes, previous.scopes].concat(), &client.scopes);
                claims.extend(previous.claims);
                claims.sort();
                claims.dedup();
            }
            let consent = Consent {
                user_id: user.id.clone(),
                client_id: client.client_id.clone(),
                scopes,
                claims,
                granted_at: now,
            };
            if let Err(e) = app.store.put_consent(&consent) {
                return app.fail_page(e.into());
            }
            app.interactions.mark_consented(id, &user.id);
            let granted = scope::join(&consent.scopes);
            app.audit(
                "consent.given",
                Some(&user.username),
                Some(&client.client_id),
                Some(req.peer),
                &granted,
                now,
            );
            response::redirect(&format!("{}?interaction={id}", paths::AUTHORIZE_RESUME))
        }
        Some("deny") => {
            app.interactions.finish(id);
            app.audit(
                "consent.denied",
                Some(&user.username),
                Some(&client.client_id),
                Some(req.peer),
                "",
                now,
            );
            authorize::denied(app, request)
        }
        _ => app.error_page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "Choose Allow or Deny.",
        ),
    }
}

pub(super) fn home(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    let body = match app.signed_in(req, now) {
        Ok(Some(s)) => app.pages.message(
            "Signed in",
            &format!("You are signed in as {}.", s.user.username),
            Some(("/account", "My account")),
        ),
        Ok(None) => app.pages.message(
            "Welcome",
            "This is the sign-in service of your organisation.",
            Some(("/login", "Sign in")),
        ),
        Err(e) => return app.fail_page(e.into()),
    };
    response::html(StatusCode::OK, body)
}

/// The setup token is valid while no administrator exists and it has not expired.
fn setup_token_valid(app: &App, token: &str, now: i64) -> Result<bool, Fail> {
    let Some(stored) = app.store.meta(crate::admin::SETUP_TOKEN_KEY)? else {
        return Ok(false);
    };
    Ok(setup_link_matches(&stored, token, now) && !crate::admin::admin_exists(app.store.as_ref())?)
}

/// Whether `token` is the one stored as `<sha256 hex>:<expiry>` and has not expired.
fn setup_link_matches(stored: &str, token: &str, now: i64) -> bool {
    let Some((hash, expires)) = stored.split_once(':') else {
        return false;
    };
    let unexpired = expires.parse::<i64>().is_ok_and(|e| now < e);
    let matches = crate::keys::ct_eq(crate::keys::token_hash(token).as_bytes(), hash.as_bytes());
    unexpired && matches
}

fn render_setup(
    app: &App,
    req: &Req,
    token: &str,
    username: &str,
    email: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Resp {
    let (csrf, cookie) = app.csrf_token(req);
    let body = app.pages.render(
        "setup.html",
        &json!({"title": "Set up", "csrf": csrf, "token": token, "username": username, "email": email, "error": error}),
    );
    with_cookie(response::html(status, body), cookie)
}

fn setup_gone(app: &App) -> Resp {
    app.error_page(
        StatusCode::NOT_FOUND,
        "Setup link not valid",
        "This setup link has expired or was already used. Restart the server to print a new one, or run `latchkey user add NAME --admin`.",
    )
}

pub(super) fn setup_page(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    let q = req.query_params();
    let token = q.get_lenient("token").unwrap_or("");
    match setup_token_valid(app, token, now) {
        Ok(true) => render_setup(app, req, token, "", "", None, StatusCode::OK),
        Ok(false) => setup_gone(app),
        Err(f) => app.fail_page(f),
    }
}

pub(super) async fn setup_submit(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    if !req.is_form() {
        return app.error_page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "The form must be form-encoded.",
        );
    }
    let form = req.form();
    let token = form.get_lenient("token").unwrap_or("");
    match setup_token_valid(app, token, now) {
        Ok(true) => {}
        Ok(false) => return setup_gone(app),
        Err(f) => return app.fail_page(f),
    }
    let username = form
        .get_lenient("username")
        .unwrap_or("")
        .trim()
        .to_string();
    let email = form.get_lenient("email").unwrap_or("").trim().to_string();
    let show =
        |msg: &str, status| render_setup(app, req, token, &username, &email, Some(msg), status);
    let again = |msg: &str| show(msg, StatusCode::BAD_REQUEST);
    if !app.csrf_ok(req, &form) {
        return again("The form expired. Please try again.");
    }
    let password = Secret::new(form.get_lenient("password").unwrap_or("").to_string());
    if form.get_lenient("password2").unwrap_or("") != password.expose() {
        return again("The two passwords differ.");
    }
    let params = app.config.password.clone();
    let new = crate::admin::NewUser {
        username: username.clone(),
        email: email.clone(),
        groups: vec![crate::admin::ADMIN_GROUP.to_string()],
        ..crate::admin::NewUser::default()
    };
    let store = app.store.clone();
    let created = app
        .pool
        .run(move || {
            crate::admin::create_user(store.as_ref(), &params, new, password.expose(), now)
        })
        .await;
    let user = match created {
        Ok(Ok(u)) => u,
        // Input errors are the administrator's to fix and are shown; anything else (a
        // storage failure) is logged, and the page says only that it failed.
        Ok(Err(e)) if e.exit_code == 2 => return again(&e.message),
        Ok(Err(e)) => {
            // The request's own id: the one in its access-log line and x-request-id.
            let id = super::request_id().unwrap_or_default();
            tracing::error!(request_id = %id, error = %e.message, "setup: creating the administrator failed");
            let msg = format!(
                "The account could not be created (request id {id}). Try again in a moment."
            );
            return show(&msg, StatusCode::SERVICE_UNAVAILABLE);
        }
        Err(_) => {
            return show(
                "The server is busy. Try again in a moment.",
                StatusCode::SERVICE_UNAVAILABLE,
            );
        }
    };
    if let Err(e) = app.store.delete_meta(crate::admin::SETUP_TOKEN_KEY) {
        return app.fail_page(e.into());
    }
    app.audit(
        "setup.admin_created",
        Some(&user.username),
        None,
        Some(req.peer),
        "",
        now,
    );
    let then = signin::passkey_offer(
        app,
        Target {
            interaction: None,
            next: Some("/admin".into()),
        },
    );
    match signin::start_session(app, req, &user, &["pwd"], ACR_ONE_FACTOR, now) {
        Ok(cookie) => response::with_header(response::redirect(&then.url()), "set-cookie", &cookie),
        Err(f) => app.fail_page(f),
    }
}

#[cfg(test)]
mod tests {
    use super::setup_link_matches;

    #[test]
    fn the_setup_link_expires_and_matches_only_its_token() {
        let stored = format!("{}:1000", crate::keys::token_hash("tok"));
        assert!(setup_link_matches(&stored, "tok", 999));
        assert!(
            !setup_link_matches(&stored, "tok", 1000),
            "expired at its time"
        );
        assert!(!setup_link_matches(&stored, "other", 999));
        assert!(!setup_link_matches("garbage", "tok", 0));
        assert!(!setup_link_matches(
            &format!("{}:soon", crate::keys::token_hash("tok")),
            "tok",
            0
        ));
    }
}
