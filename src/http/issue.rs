//! Minting tokens for a signed-in user (every grant that has one) and for a client on its
//! own behalf (client_credentials): signing, the issued-token records, and the refresh
//! token that goes with them. Storing them is the caller's transaction.

use serde_json::Map;

use super::App;
use super::response::Fail;
use crate::model::{AccessTokenRecord, Client, Grant, RefreshToken, User};
use crate::oidc::claims::{self, AuthFacts, ClaimsRequest};
use crate::oidc::scope;
use crate::oidc::token::TokenResponse;
use crate::store::Issued;

/// One authentication of a user, as tokens describe it.
pub(super) struct Authn<'a> {
    pub(super) user: &'a User,
    pub(super) scopes: &'a [String],
    pub(super) auth_time: i64,
    pub(super) amr: &'a [String],
    pub(super) acr: &'a str,
    pub(super) sid: &'a str,
    pub(super) nonce: Option<&'a str>,
    /// The SSO session it came from ("" for grants without one).
    pub(super) session_hash: &'a str,
    /// Claims asked for individually (the `claims` parameter).
    pub(super) claims: Option<&'a ClaimsRequest>,
}

/// A signed access token (and ID token) with the record that makes it revocable.
pub(super) struct Minted {
    pub(super) access_token: String,
    pub(super) id_token: Option<String>,
    pub(super) jti: String,
    pub(super) record: AccessTokenRecord,
    pub(super) expires_in: i64,
    pub(super) scope: String,
}

/// Everything one token response carries, ready to store in one transaction.
pub(super) struct Bundle {
    pub(super) grant: Grant,
    pub(super) minted: Minted,
    pub(super) refresh: Option<(String, String, RefreshToken)>,
}

impl Bundle {
    pub(super) fn issued(&self) -> Issued<'_> {
        Issued {
            grant: &self.grant,
            access_jti: &self.minted.jti,
            access: &self.minted.record,
            refresh: self
                .refresh
                .as_ref()
                .map(|(_, hash, rt)| (hash.as_str(), rt)),
        }
    }

    pub(super) fn response(self) -> TokenResponse {
        self.minted
            .response(self.refresh.map(|(token, _, _)| token))
    }
}

impl Minted {
    pub(super) fn response(self, refresh_token: Option<String>) -> TokenResponse {
        TokenResponse {
            access_token: self.access_token,
            token_type: "Bearer",
            expires_in: self.expires_in,
            refresh_token,
            id_token: self.id_token,
            scope: self.scope,
        }
    }
}

fn facts<'a>(app: &'a App, client: &'a Client, a: &'a Authn<'a>, now: i64) -> AuthFacts<'a> {
    AuthFacts {
        issuer: &app.config.issuer,
        client_id: &client.client_id,
        user: a.user,
        scopes: a.scopes,
        auth_time: a.auth_time,
        amr: a.amr,
        acr: a.acr,
        sid: a.sid,
        now,
        id_token_claims: a.claims.map(|c| c.id_token.as_slice()).unwrap_or(&[]),
    }
}

/// Signs the access token and, for openid requests, the ID token with `at_hash`.
pub(super) fn mint(
    app: &App,
    client: &Client,
    a: &Authn<'_>,
    grant_id: &str,
    now: i64,
) -> Result<Minted, Fail> {
    let l = &app.config.lifetimes;
    let f = facts(app, client, a, now);
    let keys = app.keys();
    let jti = crate::clock::random_id();
    let access_token = keys.sign(
        client.id_token_alg,
        "at+jwt",
        &claims::access_token(&f, l.access_token, &jti),
    )?;
    let id_token = if scope::contains(a.scopes, "openid") {
        let at_hash = crate::keys::half_hash(&access_token);
        Some(id_token(app, client, a, now, Some(&at_hash), None)?)
    } else {
        None
    };
    Ok(Minted {
        access_token,
        id_token,
        record: AccessTokenRecord {
            grant_id: grant_id.to_string(),
            client_id: client.client_id.clone(),
            user_id: a.user.id.clone(),
            scopes: a.scopes.to_vec(),
            expires_at: now + l.access_token,
            revoked: false,
            userinfo_claims: a.claims.map(|c| c.userinfo.clone()).unwrap_or_default(),
        },
        jti,
        expires_in: l.access_token,
        scope: scope::join(a.scopes),
    })
}

/// An ID token, with `at_hash` / `c_hash` when an access token or code accompanies it
/// (OIDC Core §3.1.3.6, §3.3.2.11).
pub(super) fn id_token(
    app: &App,
    client: &Client,
    a: &Authn<'_>,
    now: i64,
    at_hash: Option<&str>,
    c_hash: Option<&str>,
) -> Result<String, Fail> {
    let f = facts(app, client, a, now);
    let mut c = claims::id_token(&f, app.config.lifetimes.id_token, a.nonce, at_hash);
    if let Some(h) = c_hash {
        c.insert("c_hash".into(), h.into());
    }
    Ok(app.keys().sign(client.id_token_alg, "JWT", &c)?)
}

/// Tokens for a user: access token, ID token (openid), and a refresh token when the client
/// may refresh. `offline` grants outlive the SSO session.
pub(super) fn bundle(
    app: &App,
    client: &Client,
    a: &Authn<'_>,
    grant_id: &str,
    offline: bool,
    now: i64,
) -> Result<Bundle, Fail> {
    let minted = mint(app, client, a, grant_id, now)?;
    let l = &app.config.lifetimes;
    let refresh = crate::oidc::token::issues_refresh_token(client).then(|| {
        let rt = RefreshToken {
            grant_id: grant_id.to_string(),
            client_id: client.client_id.clone(),
            user_id: a.user.id.clone(),
            scopes: a.scopes.to_vec(),
            auth_time: a.auth_time,
            amr: a.amr.to_vec(),
            acr: a.acr.to_string(),
            sid: a.sid.to_string(),
            session_hash: a.session_hash.to_string(),
            offline,
            nonce: a.nonce.map(str::to_string),
            issued_at: now,
            expires_at: now + l.refresh_idle.min(l.refresh_absolute),
            absolute_expires_at: now + l.refresh_absolute,
            used: false,
            claims: a.claims.cloned(),
        };
        let token = crate::clock::random_token();
        let hash = crate::keys::token_hash(&token);
        (token, hash, rt)
    });
    let grant = Grant {
        grant_id: grant_id.to_string(),
        client_id: client.client_id.clone(),
        user_id: a.user.id.clone(),
        created_at: now,
        revoked: false,
        session_hash: a.session_hash.to_string(),
        offline,
    };
    Ok(Bundle {
        grant,
        minted,
        refresh,
    })
}

/// client_credentials (RFC 6749 §4.4): an access token whose subject is the client
/// itself; no ID token, no refresh token.
pub(super) fn client_bundle(
    app: &App,
    client: &Client,
    scopes: &[String],
    now: i64,
) -> Result<Bundle, Fail> {
    let l = &app.config.lifetimes;
    let grant_id = crate::clock::random_id();
    let jti = crate::clock::random_id();
    let mut c = Map::new();
    c.insert("iss".into(), app.config.issuer.clone().into());
    c.insert("sub".into(), client.client_id.clone().into());
    c.insert("aud".into(), app.config.issuer.clone().into());
    c.insert("exp".into(), (now + l.access_token).into());
    c.insert("iat".into(), now.into());
    c.insert("jti".into(), jti.clone().into());
    c.insert("client_id".into(), client.client_id.clone().into());
    c.insert("scope".into(), scope::join(scopes).into());
    let access_token = app.keys().sign(client.id_token_alg, "at+jwt", &c)?;
    let minted = Minted {
        access_token,
        id_token: None,
        record: AccessTokenRecord {
            grant_id: grant_id.clone(),
            client_id: client.client_id.clone(),
            user_id: String::new(),
            scopes: scopes.to_vec(),
            expires_at: now + l.access_token,
            revoked: false,
            userinfo_claims: vec![],
        },
        jti,
        expires_in: l.access_token,
        scope: scope::join(scopes),
    };
    let grant = Grant {
        grant_id,
        client_id: client.client_id.clone(),
        user_id: String::new(),
        created_at: now,
        revoked: false,
        session_hash: String::new(),
        offline: true,
    };
    Ok(Bundle {
        grant,
        minted,
        refresh: None,
    })
}
