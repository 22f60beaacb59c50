//! The second-factor page: a TOTP or recovery code for a pending sign-in (or a step-up
//! of a signed-in session), throttled per account or known browser.

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::json;

use super::{App, Req, Stage, finish, pending, restart, spend_code, step_form, trust_browser};
use crate::http::response::Resp;
use crate::signin::{self, CodeOutcome, Offer, Pending, Spent};

/// The page offers what the step takes and the user has: an authenticator app's code, a
/// recovery code, a security key.
fn render_code_page(
    app: &App,
    req: &Req,
    offer: Offer,
    error: Option<&str>,
    status: StatusCode,
) -> Resp {
    let keys = offer.keys && app.passkeys.available();
    app.form_page(
        req,
        "second_factor.html",
        json!({
            "title": "Two-factor sign-in",
            "error": error,
            "trust_days": app.config.trusted_device_days,
            "totp": offer.totp,
            "recovery": offer.recovery,
            "keys": keys,
            "script": keys,
        }),
        status,
    )
}

/// What the pending sign-in offers its user (an authenticator app's code when the user
/// cannot be read: the page then only asks, every check still reads the user).
fn offer_of(app: &App, p: &Pending) -> Offer {
    match app.store.user(&p.user_id) {
        Ok(Some(u)) => p.accepts.offer(&u),
        _ => Offer {
            totp: true,
            ..Offer::default()
        },
    }
}

pub(in crate::http) fn code_page(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    match pending(app, req, Stage::SecondFactor, now) {
        Some((_, p)) => render_code_page(app, req, offer_of(app, &p), None, StatusCode::OK),
        None => restart(app, "This sign-in has expired. Please sign in again."),
    }
}

pub(in crate::http) fn code_submit(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    let again = |e: Option<&str>, status| {
        let offer = pending(app, req, Stage::SecondFactor, now)
            .map_or_else(Offer::default, |(_, p)| offer_of(app, &p));
        render_code_page(app, req, offer, e, status)
    };
    let (form, id, p) = match step_form(app, req, Stage::SecondFactor, now, again) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let user = match app.store.user(&p.user_id) {
        Ok(u) => u,
        Err(e) => return app.fail_page(e.into()),
    };
    // A step-up counts only while the session it raises lives.
    let raised = match &p.raises {
        Some(h) => match app.store.session(h) {
            Ok(s) => s.filter(|s| s.expires_at > now).map(|s| s.user_id),
            Err(e) => return app.fail_page(e.into()),
        },
        None => None,
    };
    let Some(user) = user.filter(|u| signin::may_take_code(&p, Some(u), raised.as_deref())) else {
        app.pendings.finish(&id);
        return restart(app, "This sign-in has expired. Please sign in again.");
    };
    // An administrator may have required passkeys since this step began.
    let accepts = p.accepts.now_for(&user);
    // Wrong codes count per account in their own counter, which a correct password
    // does not clear: only a correct code does (else password + five guesses, again
    // and again, would never slow down).
    // A browser where this user completed a sign-in before counts on its own, so wrong
    // codes from someone who has the password elsewhere never delay it.
    let known = crate::http::known::id_for(app, req, &user.id, now);
    let who = crate::http::known::who(known.as_deref(), &user.id, req.peer);
    if let Err(refused) = app.mfa_throttle.check(who, req.now_ms) {
        app.audit_refused("mfa.throttled", Some(&user.username), req, refused);
        let msg = refused.message();
        return render_code_page(
            app,
            req,
            accepts.offer(&user),
            Some(&msg),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    // A security key's answer, or a code.
    let by_key = form
        .get_lenient("credential")
        .is_some_and(|c| !c.is_empty());
    let code: String = form
        .get_lenient("code")
        .unwrap_or("")
        .chars()
        .take(64)
        .collect();
    // A code of a kind this step does not take (an authenticator app's code for a
    // passkeys-only account) is refused as such, and spent never.
    let kind = if crate::keys::totp::looks_like_recovery(&code) {
        Spent::RecoveryCode
    } else {
        Spent::Totp
    };
    let not_taken = !by_key && !accepts.takes(kind);
    let spent = if by_key {
        crate::http::passkeys::second_factor_check(app, &form, &id, &user, now)
            .then_some(Spent::SecurityKey)
    } else {
        match spend_code(app, &user.id, &code, accepts, now) {
            Ok(s) => s,
            Err(f) => return app.fail_page(f),
        }
    };
    match signin::code_outcome(&p, spent) {
        CodeOutcome::Wrong {
            attempts,
            restart: start_over,
        } => {
            app.mfa_throttle.failure(who, req.now_ms);
            app.audit(
                "mfa.failure",
                Some(&user.username),
                None,
                Some(req.peer),
                if by_key {
                    "security key refused"
                } else if not_taken {
                    "code of a kind not taken here (passkeys only)"
                } else {
                    "wrong code"
                },
                now,
            );
            if start_over {
                app.pendings.finish(&id);
                return restart(app, "Too many wrong codes. Please sign in again.");
            }
            // Counted up where the record lives, so wrong codes sent to several nodes at
            // once all count.
            app.pendings.update(&id, |p| {
                p.attempts = p.attempts.saturating_add(1).max(attempts)
            });
            let message = if by_key {
                "That security key could not be checked. Try again."
            } else if not_taken {
                "Your account signs in with passkeys: an authenticator app's code does not count. Use a recovery code or your security key."
            } else {
                "That code is not valid. Codes can be used once."
            };
            render_code_page(
                app,
                req,
                accepts.offer(&user),
                Some(message),
                StatusCode::UNAUTHORIZED,
            )
        }
        CodeOutcome::Accepted(spent) => {
            app.pendings.finish(&id);
            app.mfa_throttle.success(who);
            app.audit(
                "mfa.success",
                Some(&user.username),
                None,
                Some(req.peer),
                spent.label(),
                now,
            );
            let trust =
                app.config.trusted_device_days > 0 && form.get_lenient("trust") == Some("yes");
            let device = if trust {
                match trust_browser(app, req, &user, now) {
                    Ok(c) => Some(c),
                    Err(f) => return app.fail_page(f),
                }
            } else {
                None
            };
            finish(app, req, &user, spent.factors(), p.target, device, now)
        }
    }
}
