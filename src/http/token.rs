//! The token endpoint (RFC 6749 §3.2): client authentication, then the
//! authorization_code and refresh_token grants. Rules are in `oidc::token`; this file
//! looks records up, signs tokens and stores them.

use std::sync::Arc;

use hyper::header;
use serde_json::Value;

use super::issue::{self, Authn};
use super::response::{self, EndpointError, Fail, Resp};
use super::{App, Req};
use crate::model::{Client, RefreshToken, User};

use crate::oidc::params::Params;
use crate::oidc::registration::DEVICE_CODE;
use crate::oidc::token::{self as rules, TokenResponse};
use crate::oidc::{ErrorCode, OidcError, scope};
use crate::store::Consumed;

pub(super) async fn token(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    match handle(app, req, now).await {
        Ok(body) => {
            let v = serde_json::to_value(&body).unwrap_or(Value::Null);
            let r = response::json(hyper::StatusCode::OK, &v);
            response::with_header(r, "pragma", "no-cache")
        }
        Err(e) => {
            let e = e.into_oidc();
            tracing::info!(error = e.code.as_str(), description = %e.description, "token request refused");
            response::token_error(&e)
        }
    }
}

async fn handle(app: &Arc<App>, req: &Req, now: i64) -> Result<TokenResponse, EndpointError> {
    let (form, client) = authenticated_form(app, req).await?;
    let grant_type = match form.get("grant_type") {
        Err(_) => {
            return Err(OidcError::invalid_request("grant_type was sent more than once").into());
        }
        Ok(None) => return Err(OidcError::invalid_request("grant_type is missing").into()),
        Ok(Some(g)) => g,
    };
    match grant_type {
        "authorization_code" | "refresh_token" | "client_credentials" | "password"
        | DEVICE_CODE
            if !client.allows_grant(grant_type) =>
        {
            Err(OidcError::new(
                ErrorCode::UnauthorizedClient,
                format!("the client may not use {grant_type}"),
            )
            .into())
        }
        "authorization_code" => authorization_code(app, req, &client, &form, now),
        "refresh_token" => refresh(app, req, &client, &form, now),
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
    let claims = match client.token_endpoint_auth_method {
        AuthMethod::ClientSecretJwt => match &client.jwt_secret {
            Some(secret) => verify(assertion, ClientKeys::Secret(secret)),
            None => {
                return Err(invalid("the client has no secret for client_secret_jwt").into());
            }
        },
        _ => {
            let keys = match app.client_jwks(client, false).await {
                Ok(k) => k,
                Err(e) => {
                    tracing::warn!(client = %client.client_id, error = %e, "could not load the client's keys");
                    return Err(invalid("the client's keys are not available").into());
                }
            };
            match verify(assertion, ClientKeys::Jwks(&keys)) {
                // The client may have rotated its keys: fetch its jwks_uri once more.
                Err(_) if client.jwks_uri.is_some() => match app.client_jwks(client, true).await {
                    Ok(fresh) => verify(assertion, ClientKeys::Jwks(&fresh)),
                    Err(e) => Err(e),
                },
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
    let now = crate::clock::now();
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

/// The user still exists, is enabled, and is in one of the client's allowed groups: a
/// change of membership takes effect at the next token request, not at the next login.
fn usable(client: &Client, user: &User) -> bool {
    !user.disabled && client.admits(&user.groups)
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
        None => match check_secret(app, &client, presented.secret.clone()).await? {
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
            let now_ms = crate::clock::now_ms();
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
    let wait = app
        .client_throttle
        .wait_ms(&client.client_id, crate::clock::now_ms());
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

fn authorization_code(
    app: &App,
    req: &Req,
    client: &Client,
    form: &Params,
    now: i64,
) -> Result<TokenResponse, EndpointError> {
    let get = |name: &str| {
        form.get(name)
            .map_err(|d| OidcError::invalid_request(d.to_string()))
    };
    let (code, redirect_uri, verifier) =
        match (get("code"), get("redirect_uri"), get("code_verifier")) {
            (Ok(Some(c)), Ok(r), Ok(v)) => (c, r, v),
            (Ok(None), _, _) => return Err(OidcError::invalid_request("code is missing").into()),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Err(e.into()),
        };
    let hash = crate::keys::token_hash(code);
    let Some(record) = app.store.code(&hash)? else {
        return Err(OidcError::invalid_grant("the code is invalid or expired").into());
    };
    if record.used && record.client_id == client.client_id {
        return Err(replayed_code(app, req, &record, now)?.into());
    }
    if let Err(e) = rules::check_code(&record, &client.client_id, redirect_uri, verifier, now) {
        return Err(e.into());
    }
    let Some(user) = app
        .store
        .user(&record.user_id)?
        .filter(|u| usable(client, u))
    else {
        return Err(OidcError::invalid_grant("the user may no longer use this client").into());
    };
    // The client as it is now decides: scopes or claims it lost since the code was
    // issued are not released.
    let scopes = scope::grant(&record.scopes, &client.scopes);
    let claims = record.claims.as_ref().map(|c| c.allowed(&client.scopes));
    let authn = Authn {
        user: &user,
        scopes: &scopes,
        auth_time: record.auth_time,
        amr: &record.amr,
        acr: &record.acr,
        sid: &record.sid,
        nonce: record.nonce.as_deref(),
        session_hash: &record.session_hash,
        claims: claims.as_ref(),
    };
    let offline = scope::contains(&scopes, "offline_access");
    // A code outlives its session only when offline access was granted.
    if !offline
        && app
            .store
            .session(&record.session_hash)?
            .is_none_or(|s| s.expires_at <= now)
    {
        return Err(OidcError::invalid_grant("the sign-in session of this code has ended").into());
    }
    let bundle = issue::bundle(app, client, &authn, &record.grant_id, offline, now)?;
    // Consuming the code and storing its tokens is one transaction: of concurrent
    // redemptions exactly one wins, and the replays then revoke what it received.
    let issued = bundle.issued();
    match app.store.redeem_code(&hash, &issued)? {
        Consumed::Fresh(_) => {}
        Consumed::Replayed(r) => return Err(replayed_code(app, req, &r, now)?.into()),
        Consumed::Missing => {
            return Err(OidcError::invalid_grant("the code is invalid or expired").into());
        }
    }
    app.audit(
        "token.issued",
        Some(&user.username),
        Some(&client.client_id),
        Some(req.peer),
        "authorization_code",
        now,
    );
    Ok(bundle.response())
}

/// OIDC Core §3.1.3.2 / RFC 6749 §4.1.2: a second use of a code revokes every token
/// issued from it.
fn replayed_code(
    app: &App,
    req: &Req,
    c: &crate::model::AuthCode,
    now: i64,
) -> Result<OidcError, Fail> {
    revoke_replayed(
        app,
        req,
        (&c.grant_id, &c.client_id, &c.user_id),
        "token.code_replayed",
        now,
    )?;
    Ok(OidcError::invalid_grant("the code was already used"))
}

/// RFC 9700 §4.14.2: a refresh token used twice means one copy was stolen; the whole
/// family is revoked.
fn replayed_refresh(app: &App, req: &Req, rt: &RefreshToken, now: i64) -> Result<OidcError, Fail> {
    revoke_replayed(
        app,
        req,
        (&rt.grant_id, &rt.client_id, &rt.user_id),
        "token.refresh_replayed",
        now,
    )?;
    Ok(OidcError::invalid_grant(
        "the refresh token was already used",
    ))
}

/// Revokes a grant after a replay and records it (under the username, like every other
/// audit event); the log names the grant by a tag only.
fn revoke_replayed(
    app: &App,
    req: &Req,
    (grant, client, user): (&str, &str, &str),
    kind: &str,
    now: i64,
) -> Result<(), Fail> {
    app.store.revoke_grant(grant, client, user, now)?;
    tracing::warn!(client, grant = %crate::keys::log_tag(grant), kind, "replay detected; grant revoked");
    app.audit(
        kind,
        Some(&app.username(user)),
        Some(client),
        Some(req.peer),
        "grant revoked",
        now,
    );
    Ok(())
}

fn refresh(
    app: &App,
    req: &Req,
    client: &Client,
    form: &Params,
    now: i64,
) -> Result<TokenResponse, EndpointError> {
    let (token, requested_scope) = match (form.get("refresh_token"), form.get("scope")) {
        (Ok(Some(t)), Ok(s)) => (t, s),
        (Ok(None), _) => return Err(OidcError::invalid_request("refresh_token is missing").into()),
        (Err(d), _) | (_, Err(d)) => {
            return Err(OidcError::invalid_request(d.to_string()).into());
        }
    };
    let hash = crate::keys::token_hash(token);
    let invalid = || OidcError::invalid_grant("the refresh token is invalid, expired or revoked");
    let Some(old) = app.store.refresh_token(&hash)? else {
        return Err(invalid().into());
    };
    if old.client_id != client.client_id {
        return Err(
            OidcError::invalid_grant("the refresh token was issued to another client").into(),
        );
    }
    if old.used {
        return Err(replayed_refresh(app, req, &old, now)?.into());
    }
    let Some(grant) = app.store.grant(&old.grant_id)?.filter(|g| !g.revoked) else {
        return Err(invalid().into());
    };
    // The grant follows its session when a sign-in again moves it to a new cookie.
    let session_alive = app
        .store
        .session(&grant.session_hash)?
        .is_some_and(|s| s.expires_at > now);
    let scopes = rules::check_refresh(&old, client, requested_scope, session_alive, now)?;
    let Some(user) = app.store.user(&old.user_id)?.filter(|u| usable(client, u)) else {
        return Err(invalid().into());
    };
    // A client narrowed since the grant no longer receives the scopes it lost.
    let scopes = scope::grant(&scopes, &client.scopes);
    let claims = old.claims.as_ref().map(|c| c.allowed(&client.scopes));
    let authn = Authn {
        user: &user,
        scopes: &scopes,
        auth_time: old.auth_time,
        amr: &old.amr,
        acr: &old.acr,
        sid: &old.sid,
        nonce: old.nonce.as_deref(),
        session_hash: &old.session_hash,
        claims: claims.as_ref(),
    };
    let minted = issue::mint(app, client, &authn, &old.grant_id, now)?;
    let l = &app.config.lifetimes;
    let new_token = crate::clock::random_token();
    // The successor keeps the original scope, so asking for less now does not narrow
    // what later refreshes may ask for (RFC 6749 §6).
    let successor = RefreshToken {
        issued_at: now,
        expires_at: (now + l.refresh_idle).min(old.absolute_expires_at),
        used: false,
        ..old.clone()
    };
    let new_hash = crate::keys::token_hash(&new_token);
    match app.store.rotate_refresh_token(
        &hash,
        &new_hash,
        &successor,
        &minted.jti,
        &minted.record,
    )? {
        Consumed::Fresh(_) => {}
        Consumed::Replayed(r) => return Err(replayed_refresh(app, req, &r, now)?.into()),
        Consumed::Missing => return Err(invalid().into()),
    }
    app.audit(
        "token.issued",
        Some(&user.username),
        Some(&client.client_id),
        Some(req.peer),
        "refresh_token",
        now,
    );
    Ok(minted.response(Some(new_token)))
}

fn scope_param(form: &Params) -> Result<Option<Vec<String>>, OidcError> {
    match form.get("scope") {
        Err(_) => Err(OidcError::invalid_request("scope was sent more than once")),
        Ok(None) => Ok(None),
        Ok(Some(s)) => scope::parse(s)
            .map(Some)
            .map_err(|e| OidcError::new(ErrorCode::InvalidScope, e)),
    }
}

/// RFC 6749 §4.4: the client acts for itself. Scopes: any registered ones except those
/// about a user (openid, offline_access); asking for others is invalid_scope.
fn client_credentials(
    app: &App,
    req: &Req,
    client: &Client,
    form: &Params,
    now: i64,
) -> Result<TokenResponse, EndpointError> {
    let requested = match scope_param(form) {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => return Err(e.into()),
    };
    let allowed: Vec<String> = client
        .scopes
        .iter()
        .filter(|s| *s != "openid" && *s != "offline_access")
        .cloned()
        .collect();
    if requested.iter().any(|s| !allowed.contains(s)) {
        return Err(OidcError::new(
            ErrorCode::InvalidScope,
            "a requested scope is not available to this client",
        )
        .into());
    }
    let scopes = scope::grant(&requested, &allowed);
    let bundle = issue::client_bundle(app, client, &scopes, now)?;
    app.store.issue_tokens(&bundle.issued())?;
    app.audit(
        "token.issued",
        None,
        Some(&client.client_id),
        Some(req.peer),
        "client_credentials",
        now,
    );
    Ok(bundle.response())
}

/// RFC 6749 §4.3, for clients that opted in: the same throttling, hashing pool and
/// generic failure as the sign-in page. There is no SSO session, so the grant is offline.
async fn password(
    app: &Arc<App>,
    req: &Req,
    client: &Client,
    form: &Params,
    now: i64,
) -> Result<TokenResponse, EndpointError> {
    let (Some(username), Some(password)) =
        (form.get_lenient("username"), form.get_lenient("password"))
    else {
        return Err(OidcError::invalid_request("username and password are required").into());
    };
    if client.policy == crate::model::Policy::TwoFactor {
        // A password alone cannot satisfy a client that demands a second factor.
        return Err(OidcError::new(
            ErrorCode::UnauthorizedClient,
            "this client requires two-factor sign-in",
        )
        .into());
    }
    let username: String = username.trim().chars().take(128).collect();
    // No browser, so no known-browser cookie: per username and address (SPEC §8).
    let who = super::throttle::Who::Anonymous {
        key: &username,
        addr: req.peer,
    };
    if let Err(refused) = app.throttle.check(who, crate::clock::now_ms()) {
        app.audit_refused("login.throttled", Some(&username), req.peer, refused);
        return Err(OidcError::invalid_grant("too many failed attempts, retry later").into());
    }
    let requested = scope_param(form)?;
    let scopes = match requested {
        None => client.scopes.clone(),
        Some(r) => scope::grant(&r, &client.scopes),
    };
    if scopes.is_empty() {
        return Err(OidcError::new(
            ErrorCode::InvalidScope,
            "none of the requested scopes is available",
        )
        .into());
    }
    let user = app.store.user_by_name(&username)?;
    let secret = crate::keys::Secret::new(if password.len() > 512 {
        String::new()
    } else {
        password.to_string()
    });
    let ok = super::check_password(app, user.as_ref(), secret).await?;
    let Some(user) = user.filter(|u| ok && usable(client, u)) else {
        app.throttle.failure(who, crate::clock::now_ms());
        app.audit(
            "login.failure",
            Some(&username),
            Some(&client.client_id),
            Some(req.peer),
            "password grant",
            now,
        );
        return Err(OidcError::invalid_grant("invalid username or password").into());
    };
    app.throttle.success(who);
    // The grant has no way to ask for a second factor or a new password.
    if user.mfa.enrolled() || user.must_change_password {
        app.audit(
            "login.failure",
            Some(&user.username),
            Some(&client.client_id),
            Some(req.peer),
            "password grant: the account needs a browser sign-in",
            now,
        );
        return Err(OidcError::invalid_grant(
            "this account must sign in through the browser (second factor or new password)",
        )
        .into());
    }
    let (sid, amr) = (crate::clock::random_id(), vec!["pwd".to_string()]);
    let authn = Authn {
        user: &user,
        scopes: &scopes,
        auth_time: now,
        amr: &amr,
        acr: "1",
        sid: &sid,
        nonce: None,
        session_hash: "",
        claims: None,
    };
    let bundle = issue::bundle(app, client, &authn, &crate::clock::random_id(), true, now)?;
    app.store.issue_tokens(&bundle.issued())?;
    app.audit(
        "login.success",
        Some(&user.username),
        Some(&client.client_id),
        Some(req.peer),
        "password grant",
        now,
    );
    Ok(bundle.response())
}

/// RFC 8628 §3.4-3.5: a device polling for the person's answer.
fn device_code(
    app: &App,
    req: &Req,
    client: &Client,
    form: &Params,
    now: i64,
) -> Result<TokenResponse, EndpointError> {
    use crate::model::DeviceStatus;
    use crate::oidc::device::{Poll, poll};
    let code = match form.get("device_code") {
        Ok(Some(c)) => c,
        Ok(None) => return Err(OidcError::invalid_request("device_code is missing").into()),
        Err(_) => {
            return Err(OidcError::invalid_request("device_code was sent more than once").into());
        }
    };
    let hash = crate::keys::token_hash(code);
    let Some(grant) = app.store.device(&hash)? else {
        return Err(OidcError::invalid_grant("the device_code is invalid").into());
    };
    match poll(&grant, &client.client_id, now) {
        Poll::Refuse(e) => Err(e.into()),
        Poll::Wait { error, slow_down } => {
            app.store.record_device_poll(&hash, now, slow_down)?;
            Err(error.into())
        }
        Poll::Ready => {
            let DeviceStatus::Approved {
                user_id,
                auth_time,
                amr,
                acr,
                sid,
            } = &grant.status
            else {
                return Err(OidcError::invalid_grant("the device_code is not approved").into());
            };
            let Some(user) = app.store.user(user_id)?.filter(|u| usable(client, u)) else {
                return Err(
                    OidcError::invalid_grant("the user may no longer use this client").into(),
                );
            };
            let authn = Authn {
                user: &user,
                scopes: &grant.scopes,
                auth_time: *auth_time,
                amr,
                acr,
                sid,
                nonce: None,
                session_hash: "",
                claims: None,
            };
            // The device has no browser session of its own: its grant is offline.
            let bundle = issue::bundle(app, client, &authn, &crate::clock::random_id(), true, now)?;
            match app.store.redeem_device(&hash, &bundle.issued())? {
                crate::store::Consumed::Fresh(_) => {}
                _ => {
                    return Err(OidcError::invalid_grant("the device_code was already used").into());
                }
            }
            app.audit(
                "token.issued",
                Some(&user.username),
                Some(&client.client_id),
                Some(req.peer),
                "device_code",
                now,
            );
            Ok(bundle.response())
        }
    }
}
