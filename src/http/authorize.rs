//! The authorization endpoint (GET and POST) and its resumption after the login and
//! consent pages. Parsing and decisions are `oidc::authorize`; this file looks things up,
//! stores codes and turns decisions into redirects and pages.

use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::json;

use super::interaction::Interaction;
use super::issue;
use super::response::{self, EndpointError, Fail, Resp, Shape};
use super::{App, Req, SignedIn};
use crate::model::{AuthCode, Client};
use crate::oidc::authorize::{
    self as authz, AuthRequest, Context, Decision, Delivery, PageError, RedirectError, SessionView,
};
use crate::oidc::grant::{self, Draws};
use crate::oidc::{ErrorCode, OidcError};
use crate::store::Issued;

pub(super) async fn authorize(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    match request(app, req, now) {
        Ok(r) => r,
        Err(e) => app.error_answer(e, Shape::Page),
    }
}

/// Until the client and its redirect_uri are verified, errors are pages of Latchkey's
/// own; after that they go back to the client (RFC 6749 §4.1.2.1).
fn request(app: &Arc<App>, req: &Req, now: i64) -> Result<Resp, EndpointError> {
    let invalid = |e: PageError| EndpointError::page("Invalid request", e.0);
    let params = if req.method == Method::POST {
        if !req.is_form() {
            return Err(EndpointError::page(
                "Invalid request",
                "The authorization request must be form-encoded.",
            ));
        }
        req.form()
    } else {
        req.query_params()
    };
    let (params, via_par) = match super::par::resolve(app, &params, now) {
        Ok(Some(pushed)) => (pushed, true),
        Ok(None) => (params, false),
        Err(e) => return Err(invalid(PageError(e))),
    };
    let (client_id, redirect_uri) = authz::identify(&params).map_err(invalid)?;
    let client = app.client(&client_id)?.ok_or_else(|| {
        EndpointError::page(
            "Unknown application",
            "No application is registered with this client_id.",
        )
    })?;
    let redirect_uri =
        authz::check_redirect_uri(&client, redirect_uri.as_deref()).map_err(invalid)?;
    let request = authz::parse(&params, &client, &redirect_uri)?;
    if let Some(error) = super::par::required_but_missing(&client, via_par) {
        return Err(RedirectError {
            error,
            redirect_uri: request.redirect_uri,
            response_mode: request.response_mode,
            state: request.state,
        }
        .into());
    }
    Ok(proceed(app, req, &client, request, None, now))
}

/// Back from the login or consent page.
pub(super) async fn resume(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    match resumed(app, req, now) {
        Ok(r) => r,
        Err(e) => app.error_answer(e, Shape::Page),
    }
}

fn resumed(app: &Arc<App>, req: &Req, now: i64) -> Result<Resp, EndpointError> {
    let params = req.query_params();
    let interaction = params
        .get_lenient("interaction")
        .and_then(|id| Some((id.to_string(), app.interactions.get(id, now)?)));
    let Some((id, interaction)) = interaction else {
        return Err(expired());
    };
    let client = app.client(&interaction.request.client_id)?.ok_or_else(|| {
        EndpointError::page("Unknown application", "The application was removed.")
    })?;
    let request = interaction.request.clone();
    Ok(proceed(
        app,
        req,
        &client,
        request,
        Some((id, interaction)),
        now,
    ))
}

pub(super) fn expired() -> EndpointError {
    EndpointError::page(
        "Sign-in expired",
        "This sign-in request has expired or was already completed. Return to the application and start again.",
    )
}

/// A verified request: every error from here on, Latchkey's own failures included, goes
/// back to the client's redirect_uri.
fn proceed(
    app: &Arc<App>,
    req: &Req,
    client: &Client,
    request: AuthRequest,
    interaction: Option<(String, Interaction)>,
    now: i64,
) -> Resp {
    let back = |error: OidcError| RedirectError {
        error,
        redirect_uri: request.redirect_uri.clone(),
        response_mode: request.response_mode,
        state: request.state.clone(),
    };
    match try_proceed(app, req, client, request.clone(), interaction, now) {
        Ok(r) => r,
        Err(EndpointError::Fail(f)) => redirect_error(app, back(f.to_oidc())),
        Err(EndpointError::Protocol(e)) => redirect_error(app, back(e)),
        Err(e) => app.error_answer(e, Shape::Page),
    }
}

fn try_proceed(
    app: &Arc<App>,
    req: &Req,
    client: &Client,
    request: AuthRequest,
    interaction: Option<(String, Interaction)>,
    now: i64,
) -> Result<Resp, EndpointError> {
    let (signed_in, consent) = match app.signed_in_with_consent(req, now, &client.client_id)? {
        Some((s, consent)) => (Some(s), consent),
        None => (None, None),
    };
    let hint_subject = match &request.id_token_hint {
        None => None,
        Some(hint) => match hint_subject(app, hint) {
            Some(sub) => Some(sub),
            None => {
                return Err(OidcError::invalid_request(
                    "id_token_hint is not a valid ID token from this issuer",
                )
                .into());
            }
        },
    };
    let ctx = Context {
        now,
        session: signed_in.as_ref().map(|s| SessionView {
            user_id: s.user.id.clone(),
            auth_time: s.session.auth_time,
            user_groups: s.user.groups.clone(),
            acr: s.session.acr.clone(),
            second_factor: s.user.mfa.has_second_factor(),
            webauthn: crate::model::used_webauthn(&s.session.amr),
        }),
        consent: consent.as_ref(),
        interaction_started: interaction.as_ref().map(|(_, i)| i.started),
        consent_given: match (&interaction, &signed_in) {
            (Some((_, i)), Some(s)) => i.consented_by.as_deref() == Some(s.user.id.as_str()),
            _ => false,
        },
        hint_subject,
    };
    // SPEC §8: pending requests are bounded; browsers that signed in here before may
    // use the reserve, so a flood does not keep them out.
    let reserved = signed_in.is_some() || super::known::any_valid(app, req, now);
    let interaction_id = |app: &App| match &interaction {
        Some((id, _)) => Ok(id.clone()),
        None => app.interactions.start(
            request.clone(),
            crate::signin::throttle::Source::from(req.peer),
            reserved,
            now,
        ),
    };
    let busy = || {
        // Debug only: a flood would otherwise write a log line per request.
        tracing::debug!(
            "pending sign-ins are at their limit; an authorization request was refused"
        );
        Err(OidcError::new(
            crate::oidc::ErrorCode::TemporarilyUnavailable,
            "too many sign-ins in progress, try again later",
        )
        .into())
    };
    let finish = |app: &App| {
        if let Some((id, _)) = &interaction {
            app.interactions.finish(id);
        }
    };
    Ok(match authz::decide(&request, client, &ctx) {
        Decision::Login => match interaction_id(app) {
            Ok(id) => response::redirect(&format!("/login?interaction={id}")),
            Err(_) => return busy(),
        },
        Decision::StepUp { passkey } => match (&signed_in, interaction_id(app)) {
            (_, Err(_)) => return busy(),
            (Some(s), Ok(id)) => {
                let target = super::signin::Target {
                    interaction: Some(id),
                    next: None,
                };
                super::signin::step_up(app, s, target, &client.name, passkey, now)
            }
            (None, Ok(id)) => response::redirect(&format!("/login?interaction={id}")),
        },
        Decision::Consent { .. } => match interaction_id(app) {
            Ok(id) => response::redirect(&format!("/consent?interaction={id}")),
            Err(_) => return busy(),
        },
        Decision::Forbidden => {
            finish(app);
            let user = signed_in.as_ref().map(|s| s.user.username.as_str());
            app.audit(
                "authorize.denied",
                user,
                Some(&client.client_id),
                Some(req.peer),
                "not in an allowed group",
                now,
            );
            // The person sees why; the application learns access_denied through the link
            // back to it (RFC 6749 §4.1.2.1).
            let back = authz::deliver(
                &request.redirect_uri,
                request.response_mode,
                authz::error_params(
                    &OidcError::new(
                        ErrorCode::AccessDenied,
                        "the user may not use this application",
                    ),
                    request.state.as_deref(),
                    &app.config.issuer,
                ),
            );
            let message = format!(
                "Your account is not allowed to use {}. Ask your administrator for access.",
                client.name
            );
            let body = match back {
                Delivery::Redirect(link) => app.pages.message(
                    "Access denied",
                    &message,
                    Some((&link, &format!("Return to {}", client.name))),
                ),
                Delivery::FormPost { .. } => {
                    app.pages
                        .error("Access denied", &message, super::request_id().as_deref())
                }
            };
            response::html(StatusCode::FORBIDDEN, body)
        }
        Decision::Error(e) => {
            finish(app);
            return Err(e.into());
        }
        Decision::Issue { scopes } => {
            let Some(s) = signed_in else {
                return Err(Fail::Internal("issue decided without a session".into()).into());
            };
            let issued = issue_response(app, &s, client, &request, scopes, now)?;
            finish(app);
            let params =
                authz::response_params(&issued, request.state.as_deref(), &app.config.issuer);
            deliver(
                app,
                authz::deliver(&request.redirect_uri, request.response_mode, params),
            )
        }
    })
}

/// `sub` of an ID token this issuer signed (expired ones are accepted: OIDC Core §3.1.2.1
/// uses the hint only to identify the user).
fn hint_subject(app: &App, hint: &str) -> Option<String> {
    app.verified_id_token(hint)?
        .get("sub")
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

/// Everything the response type asks for: a code, an access token, an ID token (with
/// `c_hash` and `at_hash` for what it accompanies), all under one grant.
fn issue_response(
    app: &App,
    s: &SignedIn,
    client: &Client,
    request: &AuthRequest,
    scopes: Vec<String>,
    now: i64,
) -> Result<authz::Issued, Fail> {
    let has = |part: &str| request.response_type.split(' ').any(|x| x == part);
    let d = Draws::draw();
    let code = if has("code") {
        Some(issue_code(
            app,
            s,
            client,
            request,
            scopes.clone(),
            &d.grant_id,
            now,
        )?)
    } else {
        app.touch_session(s, Some(&client.client_id), now)?;
        None
    };
    let authn = grant::Authn {
        auth_time: s.session.auth_time,
        amr: s.session.amr.clone(),
        acr: s.session.acr.clone(),
        sid: s.session.sid.clone(),
        nonce: request.nonce.clone(),
        session_hash: s.hash.clone(),
    };
    let plan = grant::front_channel(client, &s.user, authn, scopes, &d, request.claims.clone());
    let access = if has("token") {
        let token = issue::access_token(app, &plan, &d, now)?;
        let records = plan.records(&app.config.lifetimes, &d, now);
        if let Some(grant) = &records.grant {
            app.store.issue_tokens(&Issued {
                grant,
                refresh: None,
            })?;
        }
        Some((token, app.config.lifetimes.access_token))
    } else {
        None
    };
    let id_token = if has("id_token") {
        let at_hash = access.as_ref().map(|(t, _)| crate::keys::half_hash(t));
        let c_hash = code.as_ref().map(|c| crate::keys::half_hash(c));
        issue::id_token(app, &plan, at_hash.as_deref(), c_hash.as_deref(), now)?
    } else {
        None
    };
    Ok(authz::Issued {
        code,
        access_token: access,
        id_token,
    })
}

fn issue_code(
    app: &App,
    s: &SignedIn,
    client: &Client,
    request: &AuthRequest,
    scopes: Vec<String>,
    grant_id: &str,
    now: i64,
) -> Result<String, Fail> {
    let code = crate::clock::random_token();
    let record = AuthCode {
        client_id: client.client_id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        user_id: s.user.id.clone(),
        scopes,
        nonce: request.nonce.clone(),
        code_challenge: request.code_challenge.clone(),
        grant_id: grant_id.to_string(),
        auth_time: s.session.auth_time,
        amr: s.session.amr.clone(),
        acr: s.session.acr.clone(),
        sid: s.session.sid.clone(),
        session_hash: s.hash.clone(),
        expires_at: now + app.config.lifetimes.code,
        used: false,
        claims: request.claims.clone(),
    };
    app.store
        .put_code(&crate::keys::token_hash(&code), &record)?;
    app.touch_session(s, Some(&client.client_id), now)?;
    Ok(code)
}

/// An error for a verified redirect_uri, in the request's response mode.
pub(super) fn redirect_error(app: &App, e: RedirectError) -> Resp {
    tracing::info!(error = e.error.code.as_str(), description = %e.error.description, "authorization request refused");
    let params = authz::error_params(&e.error, e.state.as_deref(), &app.config.issuer);
    deliver(
        app,
        authz::deliver(&e.redirect_uri, e.response_mode, params),
    )
}

/// Turns a delivery into a 303 or an auto-submitting form (response_mode=form_post).
pub(super) fn deliver(app: &App, d: Delivery) -> Resp {
    match d {
        Delivery::Redirect(location) => response::redirect(&location),
        Delivery::FormPost { action, fields } => {
            let origin = url::Url::parse(&action)
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_default();
            let form_action = if origin.is_empty() || origin == "null" {
                String::new()
            } else {
                format!(" form-action {origin};")
            };
            let csp = format!(
                "default-src 'none'; script-src 'self'; style-src 'self';{form_action} frame-ancestors 'none'; base-uri 'none'"
            );
            let body = app.pages.render(
                "form_post.html",
                &json!({"title": "Continue", "action": action, "fields": fields}),
            );
            response::html_with_csp(StatusCode::OK, body, csp)
        }
    }
}

/// A user denied consent: access_denied to the client (RFC 6749 §4.1.2.1).
pub(super) fn denied(app: &App, request: &AuthRequest) -> Resp {
    redirect_error(
        app,
        RedirectError {
            error: OidcError::new(ErrorCode::AccessDenied, "the user denied the request"),
            redirect_uri: request.redirect_uri.clone(),
            response_mode: request.response_mode,
            state: request.state.clone(),
        },
    )
}
