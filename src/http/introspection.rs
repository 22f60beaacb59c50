//! Token revocation (RFC 7009) and introspection (RFC 7662), both for authenticated
//! clients. A client may revoke or see only its own tokens: revoking another client's
//! token is refused, introspecting one answers `active: false`.

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::{Value, json};

use super::response::{self, EndpointError, Fail, Resp, Shape};
use super::userinfo::live_access_token;
use super::{App, Req};
use crate::model::{Client, RefreshToken};
use crate::oidc::{ErrorCode, OidcError, scope};

/// A token as presented: one of our access tokens, one of our refresh tokens, or neither.
enum Found {
    /// One of our access tokens (signature checked; it may be expired or revoked).
    Access {
        jti: String,
        client_id: String,
        sub: String,
        exp: i64,
    },
    Refresh {
        record: Box<RefreshToken>,
    },
    Unknown,
}

/// Identifies a token. The hint (RFC 7009 §2.1) only changes the order of the lookups.
fn find(app: &App, token: &str, hint: Option<&str>) -> Result<Found, Fail> {
    let refresh_first = hint == Some("refresh_token");
    let first = if refresh_first {
        find_refresh(app, token)?
    } else {
        find_access(app, token)?
    };
    match first {
        Found::Unknown if refresh_first => find_access(app, token),
        Found::Unknown => find_refresh(app, token),
        found => Ok(found),
    }
}

fn find_access(app: &App, token: &str) -> Result<Found, Fail> {
    let Ok((header, claims)) = app.keys().verify(token) else {
        return Ok(Found::Unknown);
    };
    if header.get("typ").and_then(Value::as_str) != Some("at+jwt") {
        return Ok(Found::Unknown);
    }
    if claims.get("iss").and_then(Value::as_str) != Some(app.config.issuer.as_str()) {
        return Ok(Found::Unknown);
    }
    let text = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_string);
    let (Some(jti), Some(client_id), Some(sub), Some(exp)) = (
        text("jti"),
        text("client_id"),
        text("sub"),
        claims.get("exp").and_then(Value::as_i64),
    ) else {
        return Ok(Found::Unknown);
    };
    Ok(Found::Access {
        jti,
        client_id,
        sub,
        exp,
    })
}

fn find_refresh(app: &App, token: &str) -> Result<Found, Fail> {
    Ok(
        match app.store.refresh_token(&crate::keys::token_hash(token))? {
            Some(record) => Found::Refresh {
                record: Box::new(record),
            },
            None => Found::Unknown,
        },
    )
}

/// Shared front half: form body, client authentication, the `token` parameter.
async fn prelude(
    app: &Arc<App>,
    req: &Req,
) -> Result<(Client, String, Option<String>), EndpointError> {
    let (form, client) = super::token::authenticated_form(app, req).await?;
    let token = form
        .get("token")
        .map_err(|d| OidcError::invalid_request(d.to_string()))?
        .ok_or_else(|| OidcError::invalid_request("token is missing"))?
        .to_string();
    let hint = form.get_lenient("token_type_hint").map(str::to_string);
    Ok((client, token, hint))
}

/// POST /api/v1/oauth/revoke.
pub(super) async fn revoke(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    match revoke_inner(app, req, now).await {
        Ok(()) => response::json(StatusCode::OK, &json!({})),
        Err(e) => app.error_answer(e, Shape::Json),
    }
}

async fn revoke_inner(app: &Arc<App>, req: &Req, now: i64) -> Result<(), EndpointError> {
    let (client, token, hint) = prelude(app, req).await?;
    // RFC 7009 §2.1 / RFC 6749 §5.2: refused, as a grant issued to another client.
    let other = || OidcError::invalid_grant("the token was issued to another client");
    let found = find(app, &token, hint.as_deref())?;
    let owner = match &found {
        Found::Access { client_id, .. } => Some(client_id.as_str()),
        Found::Refresh { record } => Some(record.client_id.as_str()),
        Found::Unknown => None,
    };
    if owner.is_some_and(|o| o != client.client_id) {
        return Err(other().into());
    }
    match found {
        // RFC 7009 §2.2: an invalid or unknown token is not an error.
        Found::Unknown => {}
        // An expired token needs no entry: it is refused anyway.
        Found::Access { exp, .. } if exp <= now => {}
        Found::Access { jti, sub, exp, .. } => {
            app.store.revoke_access_token(&jti, exp)?;
            // A person's token names its grant; a client's own token names none.
            let user = crate::oidc::grant::jti_grant(&jti).map(|_| app.username(&sub));
            app.audit(
                "token.revoked",
                user.as_deref(),
                Some(&client.client_id),
                Some(req.peer),
                "access_token",
                now,
            );
        }
        // §2.1: revoking a refresh token also ends the access tokens of its grant.
        Found::Refresh { record } => {
            app.store
                .revoke_grant(&record.grant_id, &record.client_id, &record.user_id, now)?;
            app.audit(
                "token.revoked",
                Some(&app.username(&record.user_id)),
                Some(&client.client_id),
                Some(req.peer),
                "refresh_token",
                now,
            );
        }
    }
    Ok(())
}

/// POST /api/v1/oauth/introspect.
pub(super) async fn introspect(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    match introspect_inner(app, req, now).await {
        Ok(v) => response::json(StatusCode::OK, &v),
        Err(e) => app.error_answer(e, Shape::Json),
    }
}

async fn introspect_inner(app: &Arc<App>, req: &Req, now: i64) -> Result<Value, EndpointError> {
    let (client, token, hint) = prelude(app, req).await?;
    if client.is_public() {
        return Err(OidcError::new(
            ErrorCode::InvalidClient,
            "introspection needs client authentication",
        )
        .into());
    }
    let inactive = json!({"active": false});
    Ok(match find(app, &token, hint.as_deref())? {
        Found::Unknown => inactive,
        Found::Access { client_id, .. } if client_id != client.client_id => inactive,
        Found::Access { .. } => match live_access_token(app, &token, now) {
            // A storage outage is not an answer about the token: never call it inactive.
            Err(e)
                if matches!(
                    e.code,
                    ErrorCode::TemporarilyUnavailable | ErrorCode::ServerError
                ) =>
            {
                return Err(e.into());
            }
            Err(_) => inactive,
            Ok(live) => {
                let mut v = json!({
                    "active": true,
                    "token_type": "Bearer",
                    "scope": scope::join(&live.scopes),
                    "client_id": live.client_id,
                    "jti": live.jti,
                });
                for k in ["iss", "sub", "aud", "exp", "iat", "auth_time", "acr", "sid"] {
                    if let Some(x) = live.claims.get(k) {
                        v[k] = x.clone();
                    }
                }
                if let Some(u) = &live.user {
                    v["username"] = json!(u.username);
                }
                v
            }
        },
        Found::Refresh { record } if record.client_id != client.client_id => inactive,
        Found::Refresh { record } => match refresh_active(app, &client, &record, now)? {
            None => inactive,
            Some(username) => json!({
                "active": true,
                "scope": scope::join(&record.scopes),
                "client_id": record.client_id,
                "sub": record.user_id,
                "username": username,
                "iss": app.config.issuer,
                "iat": record.issued_at,
                "exp": record.expires_at.min(record.absolute_expires_at),
            }),
        },
    })
}

/// The username when the token endpoint would accept this refresh token now.
fn refresh_active(
    app: &App,
    client: &Client,
    rt: &RefreshToken,
    now: i64,
) -> Result<Option<String>, Fail> {
    if rt.used || app.store.grant(&rt.grant_id)?.is_none_or(|g| g.revoked) {
        return Ok(None);
    }
    let session_alive = app
        .store
        .session(&rt.session_hash)?
        .is_some_and(|s| s.alive(now));
    if crate::oidc::grant::check_refresh(rt, client, session_alive, now).is_err() {
        return Ok(None);
    }
    Ok(app
        .store
        .user(&rt.user_id)?
        .filter(|u| !u.disabled && client.admits(&u.groups))
        .map(|u| u.username))
}
