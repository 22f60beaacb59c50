//! The UserInfo endpoint (OIDC Core §5.3) with bearer tokens per RFC 6750: in the
//! Authorization header (GET or POST) or as `access_token` in a form body (POST), never
//! both. Tokens are our RFC 9068 JWTs, checked against the issued-token record so that
//! revocation and disabling take effect at once.

use hyper::{Method, StatusCode, header};
use serde_json::Value;

use super::response::{self, EndpointError, Resp, Shape};
use super::{App, Req};
use crate::model::{AccessTokenRecord, User};
use crate::oidc::{ErrorCode, OidcError, claims, scope};

pub(super) fn invalid_token(d: &str) -> OidcError {
    OidcError::new(ErrorCode::InvalidToken, d)
}

pub(super) fn userinfo(app: &App, req: &Req, now: i64) -> Resp {
    match presented_token(req).and_then(|t| Ok(claims_for(app, &t, now)?)) {
        Ok(v) => response::json(StatusCode::OK, &v),
        Err(e) => app.error_answer(e, Shape::Bearer),
    }
}

/// The bearer token, from the Authorization header or (POST) a form body, never both.
/// Another scheme (Basic, say) carries no bearer token: it counts as no credentials.
fn presented_token(req: &Req) -> Result<String, EndpointError> {
    let from_header = req
        .header(header::AUTHORIZATION)
        .and_then(|h| match h.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty() => {
                Some(t.trim().to_string())
            }
            _ => None,
        });
    let from_body = if req.method == Method::POST && req.is_form() {
        req.form()
            .get("access_token")
            .map_err(|e| OidcError::invalid_request(e.to_string()))?
            .map(str::to_string)
    } else {
        None
    };
    match (from_header, from_body) {
        (Some(_), Some(_)) => {
            Err(OidcError::invalid_request("the token was sent in more than one way").into())
        }
        (Some(t), None) | (None, Some(t)) => Ok(t),
        (None, None) => Err(EndpointError::NoCredentials),
    }
}

fn claims_for(app: &App, token: &str, now: i64) -> Result<Value, OidcError> {
    let live = live_access_token(app, token, now)?;
    let user = live.user.ok_or_else(|| {
        OidcError::new(
            ErrorCode::InsufficientScope,
            "the access token was issued to a client, not a user",
        )
    })?;
    if !scope::contains(&live.record.scopes, "openid") {
        return Err(OidcError::new(
            ErrorCode::InsufficientScope,
            "the access token lacks the openid scope",
        ));
    }
    Ok(Value::Object(claims::userinfo(
        &user,
        &live.record.scopes,
        &live.record.userinfo_claims,
    )))
}

/// An access token that is valid right now, with what it was issued for.
pub(super) struct LiveAccessToken {
    pub claims: serde_json::Map<String, Value>,
    pub jti: String,
    pub record: AccessTokenRecord,
    /// `None` for tokens issued to a client itself (client_credentials).
    pub user: Option<User>,
}

/// Checks one of our RFC 9068 access tokens: signature by a current or retired key,
/// `typ`, issuer, expiry, and the issued-token record (so revocation, logout, a deleted
/// client or a disabled user take effect at once).
pub(super) fn live_access_token(
    app: &App,
    token: &str,
    now: i64,
) -> Result<LiveAccessToken, OidcError> {
    let (header, claims) = app
        .keys()
        .verify(token)
        .map_err(|_| invalid_token("the access token is not valid"))?;
    if header.get("typ").and_then(Value::as_str) != Some("at+jwt") {
        return Err(invalid_token("not an access token"));
    }
    if claims.get("iss").and_then(Value::as_str) != Some(app.config.issuer.as_str()) {
        return Err(invalid_token("the access token is from another issuer"));
    }
    if claims
        .get("exp")
        .and_then(Value::as_i64)
        .is_none_or(|exp| exp <= now)
    {
        return Err(invalid_token("the access token has expired"));
    }
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid_token("the access token has no jti"))?
        .to_string();
    let store_err = |e: crate::store::StoreError| super::response::Fail::Store(e).to_oidc();
    let ctx = app
        .store
        .access_token_context(&jti)
        .map_err(store_err)?
        .ok_or_else(|| invalid_token("the access token is not known"))?;
    let record = ctx.record;
    let client_gone =
        !ctx.client_stored && !app.config.declared_clients.contains_key(&record.client_id);
    let grant_revoked = ctx.grant.is_none_or(|g| g.revoked);
    if client_gone || record.revoked || grant_revoked {
        return Err(invalid_token("the access token was revoked"));
    }
    let user = if record.user_id.is_empty() {
        None
    } else {
        let user = ctx
            .user
            .filter(|u| !u.disabled)
            .ok_or_else(|| invalid_token("the user no longer exists or is disabled"))?;
        Some(user)
    };
    Ok(LiveAccessToken {
        claims,
        jti,
        record,
        user,
    })
}
