//! The token endpoint (RFC 6749 §3.2): client authentication, then each grant as gather →
//! decide → act. The rules are in `oidc::grant` and `oidc::client_auth`; this file looks
//! the facts up, signs what the plan lists and stores it in one transaction.

use std::sync::Arc;

use hyper::header;
use serde_json::Value;

use super::issue;
use super::response::{self, EndpointError, Fail, Resp, Shape};
use super::{App, Req};
use crate::model::Client;

use crate::oidc::client_auth as rules;
use crate::oidc::grant::{self, Draws, Plan, Refusal, Replay, TokenResponse};
use crate::oidc::params::Params;
use crate::oidc::registration::DEVICE_CODE;
use crate::oidc::{ErrorCode, OidcError};
use crate::store::Consumed;

pub(super) async fn token(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    match handle(app, req, now).await {
        Ok(body) => {
            let v = serde_json::to_value(&body).unwrap_or(Value::Null);
            let r = response::json(hyper::StatusCode::OK, &v);
            response::with_header(r, "pragma", "no-cache")
        }
        Err(e) => {
            if let EndpointError::Protocol(p) = &e {
                tracing::info!(error = p.code.as_str(), description = %p.description, "token request refused");
            }
            app.error_answer(e, Shape::Json)
        }
    }
}

async fn handle(app: &Arc<App>, req: &Req, now: i64) -> Result<TokenResponse, EndpointError> {
    let (form, client) = authenticated_form(app, req).await?;
    match grant::grant_type(&form, &client)? {
        "authorization_code" => authorization_code(app, req, &client, &form, now),
        "refresh_token" => refresh(app, req, &client, &form, now).await,
        "client_credentials" => client_credentials(app, req, &client, &form, now),
        "password" => password(app, req, &client, &form, now).await,
        DEVICE_CODE => device_code(app, req, &client, &form, now),
        _ => Err(OidcError::new(ErrorCode::UnsupportedGrantType, "unsupported grant_type").into()),
    }
}

/// RFC 6749 §2.3. Unknown clients and wrong secrets give the same invalid_client.
/// RFC 7523 §3 / OIDC Core §9: the signature (with the client's keys or shared secret),
/// the claims, and single use of the jti. The audience may be the issuer, the token
/// endpoint, or the endpoint being called.
async fn verify_assertion(
    app: &Arc<App>,
    req: &Req,
    client: &Client,
    assertion: &str,
) -> Result<(), EndpointError> {
    use crate::keys::assertion::{ClientKeys, verify};
    use crate::model::AuthMethod;
    let invalid = |d: &str| OidcError::new(ErrorCode::InvalidClient, d);
    let now = req.now_ms.div_euclid(1000);
    let claims = match client.token_endpoint_auth_method {
        AuthMethod::ClientSecretJwt => match &client.jwt_secret {
            Some(secret) => verify(assertion, ClientKeys::Secret(secret)),
            None => {
                return Err(invalid("the client has no secret for client_secret_jwt").into());
            }
        },
        _ => {
            let keys = match app.client_jwks(client, false, now).await {
                Ok(k) => k,
                Err(e) => {
                    tracing::warn!(client = %client.client_id, error = %e, "could not load the client's keys");
                    return Err(invalid("the client's keys are not available").into());
                }
            };
            match verify(assertion, ClientKeys::Jwks(&keys)) {
                // The client may have rotated its keys: fetch its jwks_uri once more.
                Err(_) if client.jwks_uri.is_some() => {
                    match app.client_jwks(client, true, now).await {
                        Ok(fresh) => verify(assertion, ClientKeys::Jwks(&fresh)),
                        Err(e) => Err(e),
                    }
                }
                other => other,
            }
        }
    };
    let claims = match claims {
        Ok(c) => c,
        Err(e) => return Err(invalid(&e).into()),
    };
    let issuer = &app.config.issuer;
    let audiences = vec![
        issuer.clone(),
        format!("{issuer}{}", crate::oidc::discovery::paths::TOKEN),
        format!("{issuer}{}", req.path),
    ];
    let (jti, exp) =
        match crate::oidc::client_auth::check_claims(&claims, &client.client_id, &audiences, now) {
            Ok(x) => x,
            Err(e) => return Err(e.into()),
        };
    if !app
        .store
        .record_assertion(&format!("{}\u{0}{jti}", client.client_id), exp)?
    {
        return Err(invalid("the assertion was already used").into());
    }
    Ok(())
}

/// The front half of every endpoint that takes a form from an authenticated client
/// (token, introspection, revocation, PAR, device authorization): the body must be a
/// form, and the client must authenticate.
pub(super) async fn authenticated_form(
    app: &Arc<App>,
    req: &Req,
) -> Result<(Params, Client), EndpointError> {
    if !req.is_form() {
        return Err(OidcError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        )
        .into());
    }
    let form = req.form();
    // SPEC §8: a parameter that is not UTF-8 makes the whole request invalid.
    if let Some(e) = form.not_utf8() {
        return Err(OidcError::invalid_request(e.to_string()).into());
    }
    let client = authenticate(app, req, &form).await?;
    Ok((form, client))
}

pub(super) async fn authenticate(
    app: &Arc<App>,
    req: &Req,
    form: &Params,
) -> Result<Client, EndpointError> {
    let presented = match rules::presented_client(req.header(header::AUTHORIZATION), form) {
        Ok(p) => p,
        Err(e) => return Err(e.into()),
    };
    let bad = || OidcError::new(ErrorCode::InvalidClient, "client authentication failed");
    // SPEC §8: an id no client can have is refused before anything is looked up or
    // recorded; failures are recorded only for clients that exist.
    if !crate::oidc::registration::valid_client_id(&presented.client_id) {
        return Err(bad().into());
    }
    let Some(client) = app.client(&presented.client_id)? else {
        return Err(bad().into());
    };
    if let Err(e) = rules::method_allowed(&client, &presented) {
        return Err(e.into());
    }
    if client.is_public() {
        return Ok(client);
    }
    // A failed check counts below; a failure of Latchkey's own passes straight up.
    let verdict = match &presented.assertion {
        Some(assertion) => match verify_assertion(app, req, &client, assertion).await {
            Ok(()) => Ok(()),
            Err(EndpointError::Protocol(e)) => Err(e),
            Err(f) => return Err(f),
        },
        None => match check_secret(app, &client, presented.secret.clone(), req.now_ms).await? {
            true => Ok(()),
            false => Err(bad()),
        },
    };
    match verdict {
        Ok(()) => Ok(client),
        Err(e) => {
            // RFC 6749 §2.3.1: wrong guesses are slowed per client, the answer held back
            // once the free failures are spent. Only wrong answers wait here; a right
            // credential waits only in `check_secret`, for an argon2id secret not yet
            // verified since the start (declared clients), and is never refused.
            let now_ms = req.now_ms;
            let wait = app.client_throttle.wait_ms(&client.client_id, now_ms);
            app.client_throttle.failure(&client.client_id, now_ms);
            // An argon2id secret already waited out this delay before its hash.
            let waited = presented.assertion.is_none()
                && client
                    .secret_hash
                    .as_deref()
                    .is_some_and(|h| !crate::keys::is_sha256_secret_hash(h));
            if wait > 0 && !waited {
                app.metrics.event("client.throttled", "");
                tokio::time::sleep(std::time::Duration::from_millis(wait as u64)).await;
            }
            Err(e.into())
        }
    }
}

/// Checks a client secret: SHA-256 secrets at once; argon2id secrets of declared clients
/// from the cache of verified ones, else on the bounded pool, once the client's delay for
/// wrong guesses has passed (so guessing cannot keep the pool busy).
async fn check_secret(
    app: &Arc<App>,
    client: &Client,
    presented: Option<String>,
    now_ms: i64,
) -> Result<bool, Fail> {
    let (Some(secret), Some(stored)) = (presented, client.secret_hash.clone()) else {
        return Ok(false);
    };
    let secret = crate::keys::Secret::new(secret);
    if crate::keys::is_sha256_secret_hash(&stored) {
        return Ok(crate::keys::verify_client_secret(secret.expose(), &stored));
    }
    if app
        .secret_cache
        .matches(&client.client_id, &stored, secret.expose())
    {
        return Ok(true);
    }
    let wait = app.client_throttle.wait_ms(&client.client_id, now_ms);
    if wait > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(wait as u64)).await;
    }
    // argon2id hashes of declared clients run on the bounded pool, once: a verified
    // secret is remembered (as SHA-256) so later requests do not pay the slow hash.
    let (s, h) = (
        crate::keys::Secret::new(secret.expose().clone()),
        stored.clone(),
    );
    let ok = app
        .pool
        .run(move || crate::keys::verify_client_secret(s.expose(), &h))
        .await
        .map_err(|_| Fail::Busy)?;
    if ok {
        app.secret_cache
            .remember(&client.client_id, &stored, secret.expose());
    }
    Ok(ok)
}

/// Acts on a refusal: a replay revokes its grant first; everything else is answered as
/// it stands (the password and device grants act on theirs before calling this).
fn refused(app: &App, req: &Req, r: Refusal, now: i64) -> EndpointError {
    match r {
        Refusal::Invalid(e)
        | Refusal::Wait { error: e, .. }
        | Refusal::SignInFailed { error: e, .. } => e.into(),
        Refusal::Replay(replay) => match revoke_replayed(app, req, &replay, now) {
            Ok(()) => replay.error.into(),
            Err(f) => f.into(),
        },
    }
}

/// OIDC Core §3.1.3.2, RFC 9700 §4.14.2: a second use of a code or refresh token revokes
/// the whole grant; recorded under the username, like every other audit event, and
/// logged under a tag of the grant only.
fn revoke_replayed(app: &App, req: &Req, r: &Replay, now: i64) -> Result<(), Fail> {
    app.store
        .revoke_grant(&r.grant_id, &r.client_id, &r.user_id, now)?;
    tracing::warn!(client = %r.client_id, grant = %crate::keys::log_tag(&r.grant_id), kind = r.kind, "replay detected; grant revoked");
    app.audit(
        r.kind,
        Some(&app.username(&r.user_id)),
        Some(&r.client_id),
        Some(req.peer),
        "grant revoked",
        now,
    );
    Ok(())
}

/// The username the tokens of a plan are for (none for a client's own).
fn username<'p>(plan: &'p Plan<'_>) -> Option<&'p str> {
    match &plan.subject {
        grant::Subject::User { user, .. } => Some(user.username.as_str()),
        grant::Subject::Client => None,
    }
}

fn issued_audit(app: &App, req: &Req, plan: &Plan<'_>, grant_type: &str, now: i64) {
    app.audit(
        "token.issued",
        username(plan),
        Some(&plan.client.client_id),
        Some(req.peer),
        grant_type,
        now,
    );
}

/// The audit of machine-paced grants (client_credentials, refresh): counted, and written
/// as one row per client, user, address and minute (`http::tally`).
fn tallied_audit(app: &App, req: &Req, plan: &Plan<'_>, grant_type: &'static str) {
    app.issued.note(
        grant_type,
        &plan.client.client_id,
        username(plan),
        req.peer,
        req.now_ms,
    );
    app.metrics.event("token.issued", grant_type);
}

fn authorization_code(
    app: &App,
    req: &Req,
    client: &Client,
    form: &Params,
    now: i64,
) -> Result<TokenResponse, EndpointError> {
    let request = grant::code_request(form)?;
    let hash = crate::keys::token_hash(request.code);
    let (code, user, session_alive) = match app.store.code_context(&hash)? {
        Some(c) => (
            Some(c.code),
            c.user,
            c.session.is_some_and(|s| s.alive(now)),
        ),
        None => (None, None, false),
    };
    let facts = grant::CodeFacts {
        client,
        request: &request,
        code: code.as_ref(),
        user: user.as_ref(),
        session_alive,
    };
    let plan = grant::decide_code(&facts, now).map_err(|r| refused(app, req, r, now))?;
    let signed = issue::sign(app, &plan, &Draws::draw(), now)?;
    // Consuming the code and storing its tokens is one transaction: of concurrent
    // redemptions exactly one wins, and the replays then revoke what it received.
    match app.store.redeem_code(&hash, &signed.issued()?)? {
        Consumed::Fresh(_) => {}
        Consumed::Replayed(r) => {
            return Err(refused(app, req, Refusal::Replay(Replay::of_code(&r)), now));
        }
        Consumed::Missing => {
            return Err(OidcError::invalid_grant("the code is invalid or expired").into());
        }
    }
    issued_audit(app, req, &plan, "authorization_code", now);
    Ok(signed.response())
}

async fn refresh(
    app: &App,
    req: &Req,
    client: &Client,
    form: &Params,
    now: i64,
) -> Result<TokenResponse, EndpointError> {
    let request = grant::refresh_request(form)?;
    let hash = crate::keys::token_hash(request.token);
    let (token, grant, user, session_alive) = match app.store.refresh_context(&hash)? {
        Some(c) => (
            Some(c.token),
            c.grant,
            c.user,
            c.session.is_some_and(|s| s.alive(now)),
        ),
        None => (None, None, None, false),
    };
    let facts = grant::RefreshFacts {
        client,
        request: &request,
        token: token.as_ref(),
        grant: grant.as_ref(),
        session_alive,
        user: user.as_ref(),
    };
    // Within the client's grace period a used token gets the answer it got, when it
    // stands in every other way (grant, session, user, client policy, expiry).
    let unused = token.clone().map(|mut t| {
        t.used = false;
        t
    });
    let stands = || {
        let as_unused = grant::RefreshFacts {
            token: unused.as_ref(),
            ..facts
        };
        grant::decide_refresh(&as_unused, &app.config.lifetimes, now).is_ok()
    };
    let plan = match grant::decide_refresh(&facts, &app.config.lifetimes, now) {
        Ok(p) => p,
        Err(Refusal::Replay(r)) => {
            if let Some(answer) = again(app, req, client, request.token, &hash, stands(), now).await
            {
                return Ok(answer);
            }
            return Err(refused(app, req, Refusal::Replay(r), now));
        }
        Err(r) => return Err(refused(app, req, r, now)),
    };
    let signed = issue::sign(app, &plan, &Draws::draw(), now)?;
    let Some((_, new_hash, successor)) = &signed.records.refresh else {
        return Err(Fail::Internal("a refresh plan without a successor".into()).into());
    };
    match app.store.rotate_refresh_token(
        &hash,
        new_hash,
        successor,
        signed.records.tokens_until,
        &signed.records.userinfo_claims,
    )? {
        Consumed::Fresh(_) => {}
        Consumed::Replayed(r) => {
            // Another request rotated it a moment ago (a client refreshing from two
            // processes): its answer, once kept.
            if let Some(answer) = again(app, req, client, request.token, &hash, true, now).await {
                return Ok(answer);
            }
            return Err(refused(
                app,
                req,
                Refusal::Replay(Replay::of_refresh(&r)),
                now,
            ));
        }
        Consumed::Missing => {
            return Err(OidcError::invalid_grant(
                "the refresh token is invalid, expired or revoked",
            )
            .into());
        }
    }
    tallied_audit(app, req, &plan, "refresh_token");
    let grant_id = successor.grant_id.clone();
    let response = signed.response();
    app.refresh_grace.keep(
        request.token,
        &hash,
        &client.client_id,
        &grant_id,
        &response,
        client.refresh_grace_secs,
        now,
    );
    Ok(response)
}

/// The answer kept for a refresh token used again within the client's grace period
/// (`stands`: the token passes every check but single use). The request that rotated it
/// may be about to keep its answer, so this waits for it briefly (at most 100 ms, without
/// holding a thread, only for a client with a grace period).
async fn again(
    app: &App,
    req: &Req,
    client: &Client,
    used: &str,
    hash: &str,
    stands: bool,
    now: i64,
) -> Option<TokenResponse> {
    if client.refresh_grace_secs <= 0 || !stands {
        return None;
    }
    for i in 0..20 {
        if let Some((_, answer)) = app.refresh_grace.again(used, hash, &client.client_id, now) {
            app.audit(
                "token.refresh_again",
                None,
                Some(&client.client_id),
                Some(req.peer),
                "within the grace period",
                now,
            );
            return Some(answer);
        }
        if i < 19 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
    None
}

fn client_credentials(
    app: &App,
    req: &Req,
    client: &Client,
    form: &Params,
    now: i64,
) -> Result<TokenResponse, EndpointError> {
    let requested = grant::scope_param(form)?;
    let plan = grant::decide_client_credentials(client, requested)
        .map_err(|r| refused(app, req, r, now))?;
    // Nothing is stored: the token names no grant and is checked against its client and
    // the revocation list.
    let signed = issue::sign(app, &plan, &Draws::draw(), now)?;
    tallied_audit(app, req, &plan, "client_credentials");
    Ok(signed.response())
}

/// RFC 6749 §4.3, for clients that opted in: the same throttling, hashing pool and
/// generic failure as the sign-in page.
async fn password(
    app: &Arc<App>,
    req: &Req,
    client: &Client,
    form: &Params,
    now: i64,
) -> Result<TokenResponse, EndpointError> {
    let request = grant::password_request(form, client)?;
    // No browser, so no known-browser cookie: per username and address (SPEC §8).
    let who = crate::signin::throttle::Who::Anonymous {
        key: &request.username,
        addr: req.peer,
    };
    let now_ms = req.now_ms;
    if let Err(refused) = app.throttle.check(who, now_ms) {
        app.audit_refused("login.throttled", Some(&request.username), req, refused);
        return Err(OidcError::invalid_grant("too many failed attempts, retry later").into());
    }
    let user = app.store.user_by_name(&request.username)?;
    // Too long to be anyone's password: still hashed (as empty), so the answer takes
    // as long as any other.
    let secret = crate::keys::Secret::new(request.password.unwrap_or("").to_string());
    let ok = super::check_password(app, user.as_ref(), secret).await? && request.password.is_some();
    let d = Draws::draw();
    match grant::decide_password(client, &request, user.as_ref(), ok, &d, now) {
        Ok(plan) => {
            app.throttle.success(who);
            let signed = issue::sign(app, &plan, &d, now)?;
            app.store.issue_tokens(&signed.issued()?)?;
            app.audit(
                "login.success",
                Some(&request.username),
                Some(&client.client_id),
                Some(req.peer),
                "password grant",
                now,
            );
            Ok(signed.response())
        }
        Err(Refusal::SignInFailed {
            error,
            detail,
            counts,
        }) => {
            if counts {
                app.throttle.failure(who, now_ms);
            } else {
                app.throttle.success(who);
            }
            app.audit(
                "login.failure",
                Some(&request.username),
                Some(&client.client_id),
                Some(req.peer),
                detail,
                now,
            );
            Err(error.into())
        }
        Err(r) => Err(refused(app, req, r, now)),
    }
}

/// RFC 8628 §3.4-3.5: a device polling for the person's answer.
fn device_code(
    app: &App,
    req: &Req,
    client: &Client,
    form: &Params,
    now: i64,
) -> Result<TokenResponse, EndpointError> {
    let hash = crate::keys::token_hash(grant::device_request(form)?);
    let device = app.store.device(&hash)?;
    let user = match device.as_ref().and_then(grant::device_approver) {
        Some(id) => app.store.user(id)?,
        None => None,
    };
    let d = Draws::draw();
    let plan = match grant::decide_device(client, device.as_ref(), user.as_ref(), &d, now) {
        Ok(plan) => plan,
        Err(Refusal::Wait { error, slow_down }) => {
            app.store.record_device_poll(&hash, now, slow_down)?;
            return Err(error.into());
        }
        Err(r) => return Err(refused(app, req, r, now)),
    };
    let signed = issue::sign(app, &plan, &d, now)?;
    match app.store.redeem_device(&hash, &signed.issued()?)? {
        Consumed::Fresh(_) => {}
        _ => return Err(OidcError::invalid_grant("the device_code was already used").into()),
    }
    issued_audit(app, req, &plan, "device_code", now);
    Ok(signed.response())
}
