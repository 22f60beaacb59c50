//! The UserInfo endpoint (OIDC Core §5.3) with bearer tokens per RFC 6750: in the
//! Authorization header (GET or POST) or as `access_token` in a form body (POST), never
//! both. Tokens are our RFC 9068 JWTs, checked against the issued-token record so that
//! revocation and disabling take effect at once.

use hyper::{Method, StatusCode, header};
use serde_json::Value;

use super::response::{self, EndpointError, Resp, Shape};
use super::{App, Req};
use crate::model::User;
use crate::oidc::{ErrorCode, OidcError, claims, grant, scope};

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
    if !scope::contains(&live.scopes, "openid") {
        return Err(OidcError::new(
            ErrorCode::InsufficientScope,
            "the access token lacks the openid scope",
        ));
    }
    // Claims asked for individually, as the grant keeps them: narrowed to the client's
    // scopes when the grant started and again at each refresh.
    // The client as it is now decides which groups it sees.
    let client = live.client;
    let filter = client
        .as_ref()
        .map_or(&[][..], |c| c.groups_filter.as_slice());
    let mut out = claims::userinfo(&user, &live.scopes, &live.userinfo_claims, filter);
    // The client's custom claims (SPEC §14), as its rules are now.
    if let Some(c) = client.as_ref().filter(|c| !c.claims.is_empty()) {
        let groups = app
            .group_records(&user)
            .map_err(|_| OidcError::new(ErrorCode::TemporarilyUnavailable, "try again"))?;
        let custom = claims::custom_claims(&user, &groups, &c.claims, &live.scopes).userinfo;
        super::issue::add_claims(&mut out, custom);
    }
    Ok(Value::Object(out))
}

/// An access token that is valid right now, with what it was issued for.
pub(super) struct LiveAccessToken {
    pub claims: serde_json::Map<String, Value>,
    pub jti: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    /// `None` for tokens issued to a client itself (client_credentials).
    pub user: Option<User>,
    /// Claims asked for individually for UserInfo (kept with the grant).
    pub userinfo_claims: Vec<String>,
    /// The client as it is now (declared or stored).
    pub client: Option<crate::model::Client>,
}

/// Checks one of our RFC 9068 access tokens: signature by a current or retired key,
/// `typ`, issuer, expiry, then its standing against its grant, user, client and the
/// revocation list (`oidc::grant::access_standing`), so revocation, logout, a deleted
/// client or a disabled user take effect at once.
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
    let text = |k: &str| {
        claims
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| invalid_token("the access token lacks a claim"))
    };
    let (jti, client_id, sub) = (text("jti")?, text("client_id")?, text("sub")?);
    let scopes: Vec<String> = claims
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let grant_id = grant::jti_grant(&jti);
    let store_err = |e: crate::store::StoreError| super::response::Fail::Store(e).to_oidc();
    let ctx = app
        .store
        .access_token_context(&jti, grant_id, &client_id, &sub)
        .map_err(store_err)?;
    let client = app
        .config
        .declared_clients
        .get(&client_id)
        .cloned()
        .or(ctx.client);
    let facts = grant::AccessFacts {
        client_id: &client_id,
        sub: &sub,
        grant_id,
        revoked: ctx.revoked,
        client_exists: client.is_some(),
        grant: ctx.grant.as_ref(),
        user: ctx.user.as_ref(),
    };
    let user = grant::access_standing(&facts)
        .map_err(invalid_token)?
        .cloned();
    let userinfo_claims = ctx.grant.map(|g| g.userinfo_claims).unwrap_or_default();
    Ok(LiveAccessToken {
        claims,
        jti,
        client_id,
        scopes,
        user,
        userinfo_claims,
        client,
    })
}
