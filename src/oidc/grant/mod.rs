//! The grants of the token endpoint (RFC 6749 §4.1.3, §4.3, §4.4, §6; RFC 8628 §3.4;
//! RFC 9700 §4.14) in the shape of `authorize`: the handler gathers facts (the records
//! found under the hashes of what the client sent), a pure `decide_*` in [`decide`] takes
//! them with `now` and answers with a [`Plan`] or a [`Refusal`], and the handler acts:
//! signs the claims the plan lists, stores the plan's records in one transaction, or
//! revokes a replayed grant. Ids and random tokens are drawn once by the handler
//! ([`Draws`]); nothing here reads the clock or draws randomness.

mod decide;
#[cfg(test)]
mod tests;

pub use decide::*;

use serde_json::{Map, Value};

use crate::model::{ClaimsRequest, Client, Grant, RefreshToken, User};

use super::claims::{self, AuthFacts};
use super::{OidcError, scope};

/// Lifetimes in seconds (SPEC §6 defaults), as the configuration sets them.
#[derive(Debug, Clone, PartialEq)]
pub struct Lifetimes {
    pub code: i64,
    pub access_token: i64,
    pub id_token: i64,
    pub refresh_idle: i64,
    pub refresh_absolute: i64,
    pub session_idle: i64,
    pub session_absolute: i64,
}

/// Ids and secrets a token response may use, drawn once per request by the handler.
/// A plan takes what it needs: `grant_id` for a new grant that has none yet, `sid` for a
/// sign-in without a browser session, `refresh_token` for a new or rotated refresh token.
#[derive(Debug, Clone)]
pub struct Draws {
    pub grant_id: String,
    pub jti: String,
    pub sid: String,
    pub refresh_token: String,
}

impl Draws {
    /// Fresh random values (the only place the grants draw any).
    pub fn draw() -> Draws {
        use crate::clock::{random_id, random_token};
        Draws {
            grant_id: random_id(),
            jti: random_id(),
            sid: random_id(),
            refresh_token: random_token(),
        }
    }
}

/// One authentication of a person, as the tokens describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct Authn {
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub acr: String,
    pub sid: String,
    pub nonce: Option<String>,
    /// The SSO session it came from ("" for grants without one).
    pub session_hash: String,
}

/// Whom the tokens are about.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject<'a> {
    /// A person, signed in as `authn` describes.
    User { user: &'a User, authn: Authn },
    /// The client itself (client_credentials).
    Client,
}

/// What happens to refresh tokens.
#[derive(Debug, Clone, PartialEq)]
pub enum Refresh {
    /// None is issued (the client is not registered for refresh_token, or the grant has
    /// none).
    None,
    /// A new family begins with this grant.
    New,
    /// The presented token is consumed and this successor takes its place.
    Rotate(Box<RefreshToken>),
}

/// Everything one successful token response consists of, decided before anything is
/// signed or stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan<'a> {
    pub client: &'a Client,
    pub subject: Subject<'a>,
    pub scopes: Vec<String>,
    /// The grant the tokens belong to ("" for client_credentials, which has none).
    pub grant_id: String,
    /// `Some(offline)` when the response starts a grant (stored with it); `None` when it
    /// continues one (refresh) or has none (client_credentials).
    pub new_grant: Option<bool>,
    pub refresh: Refresh,
    /// Claims asked for individually, limited to what the client may receive now.
    pub claims: Option<ClaimsRequest>,
}

/// Tokens the authorization endpoint hands out itself (the implicit and hybrid response
/// types, OIDC Core §3.2, §3.3): a grant tied to the browser's session, no refresh token.
pub fn front_channel<'a>(
    client: &'a Client,
    user: &'a User,
    authn: Authn,
    scopes: Vec<String>,
    d: &Draws,
    claims: Option<ClaimsRequest>,
) -> Plan<'a> {
    Plan {
        client,
        subject: Subject::User { user, authn },
        scopes,
        grant_id: d.grant_id.clone(),
        new_grant: Some(false),
        refresh: Refresh::None,
        claims,
    }
}

/// Why a request gets no tokens, and what the handler does about it.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Refused; nothing changes.
    Invalid(OidcError),
    /// A code or refresh token presented a second time: one copy was stolen, so the whole
    /// grant is revoked before refusing (OIDC Core §3.1.3.2, RFC 9700 §4.14.2).
    Replay(Replay),
    /// A device polled before the person answered: its poll is recorded (RFC 8628 §3.5,
    /// `slow_down` grows the interval) and the error returned.
    Wait { error: OidcError, slow_down: bool },
    /// The password grant's sign-in failed: an audit event, and a failure counted by the
    /// throttle when `counts` (a wrong username or password).
    SignInFailed {
        error: OidcError,
        detail: &'static str,
        counts: bool,
    },
}

impl From<OidcError> for Refusal {
    fn from(e: OidcError) -> Self {
        Refusal::Invalid(e)
    }
}

/// The grant a replay revokes, and the audit kind that records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    pub grant_id: String,
    pub client_id: String,
    pub user_id: String,
    pub kind: &'static str,
    pub error: OidcError,
}

impl Replay {
    pub fn of_code(c: &crate::model::AuthCode) -> Replay {
        Replay {
            grant_id: c.grant_id.clone(),
            client_id: c.client_id.clone(),
            user_id: c.user_id.clone(),
            kind: "token.code_replayed",
            error: OidcError::invalid_grant("the code was already used"),
        }
    }

    pub fn of_refresh(rt: &RefreshToken) -> Replay {
        Replay {
            grant_id: rt.grant_id.clone(),
            client_id: rt.client_id.clone(),
            user_id: rt.user_id.clone(),
            kind: "token.refresh_replayed",
            error: OidcError::invalid_grant("the refresh token was already used"),
        }
    }
}

/// The records a plan stores, in one transaction with whatever it consumes. Access
/// tokens have none of their own: they name their grant in their `jti` ([`token_jti`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Records {
    /// The new grant (absent when a refresh continues one, and for client_credentials).
    pub grant: Option<Grant>,
    /// The refresh token to hand out, its hash and its record.
    pub refresh: Option<(String, String, RefreshToken)>,
    /// When the access token expires: its grant is kept at least until then.
    pub tokens_until: i64,
    /// The claims the access token releases at UserInfo (kept with the grant).
    pub userinfo_claims: Vec<String>,
}

/// The `jti` of an access token: `<grant id>.<random id>` for a person's tokens, so the
/// token names the grant it is checked against; the random id alone for a client's own
/// (client_credentials) tokens, which have no grant. Ids are base64url and never
/// contain a dot.
pub fn token_jti(grant_id: &str, random: &str) -> String {
    if grant_id.is_empty() {
        random.to_string()
    } else {
        format!("{grant_id}.{random}")
    }
}

/// The grant an access token's `jti` names (`None` for a client's own token).
pub fn jti_grant(jti: &str) -> Option<&str> {
    jti.split_once('.')
        .map(|(g, _)| g)
        .filter(|g| !g.is_empty())
}

impl Plan<'_> {
    fn user_facts<'s>(&'s self, issuer: &'s str, now: i64) -> Option<AuthFacts<'s>> {
        let Subject::User { user, authn } = &self.subject else {
            return None;
        };
        Some(AuthFacts {
            issuer,
            client_id: &self.client.client_id,
            user,
            scopes: &self.scopes,
            auth_time: authn.auth_time,
            amr: &authn.amr,
            acr: &authn.acr,
            sid: &authn.sid,
            now,
            id_token_claims: self
                .claims
                .as_ref()
                .map(|c| c.id_token.as_slice())
                .unwrap_or(&[]),
            groups_filter: &self.client.groups_filter,
        })
    }

    /// The access token's `jti` ([`token_jti`]).
    pub fn jti(&self, d: &Draws) -> String {
        token_jti(&self.grant_id, &d.jti)
    }

    /// The claims of the access token (RFC 9068 §2.2).
    pub fn access_claims(
        &self,
        issuer: &str,
        l: &Lifetimes,
        d: &Draws,
        now: i64,
    ) -> Map<String, Value> {
        let jti = self.jti(d);
        match self.user_facts(issuer, now) {
            Some(f) => claims::access_token(&f, l.access_token, &jti),
            None => claims::client_access_token(
                issuer,
                &self.client.client_id,
                &self.scopes,
                now,
                l.access_token,
                &jti,
            ),
        }
    }

    /// The claims of the ID token, for a person and the `openid` scope (OIDC Core §2),
    /// with `at_hash` / `c_hash` for the access token or code it accompanies.
    pub fn id_claims(
        &self,
        issuer: &str,
        l: &Lifetimes,
        now: i64,
        at_hash: Option<&str>,
        c_hash: Option<&str>,
    ) -> Option<Map<String, Value>> {
        if !scope::contains(&self.scopes, "openid") {
            return None;
        }
        let f = self.user_facts(issuer, now)?;
        let nonce = match &self.subject {
            Subject::User { authn, .. } => authn.nonce.as_deref(),
            Subject::Client => None,
        };
        let mut c = claims::id_token(&f, l.id_token, nonce, at_hash);
        if let Some(h) = c_hash {
            c.insert("c_hash".into(), h.into());
        }
        Some(c)
    }

    /// The records to store: the grant (when new), the access token's record, and the
    /// refresh token with its hash.
    pub fn records(&self, l: &Lifetimes, d: &Draws, now: i64) -> Records {
        let user_id = match &self.subject {
            Subject::User { user, .. } => user.id.clone(),
            Subject::Client => String::new(),
        };
        let userinfo_claims = self
            .claims
            .as_ref()
            .map(|c| c.userinfo.clone())
            .unwrap_or_default();
        let tokens_until = now + l.access_token;
        let grant = self.new_grant.map(|offline| Grant {
            grant_id: self.grant_id.clone(),
            client_id: self.client.client_id.clone(),
            user_id: user_id.clone(),
            created_at: now,
            revoked: false,
            session_hash: match &self.subject {
                Subject::User { authn, .. } => authn.session_hash.clone(),
                Subject::Client => String::new(),
            },
            offline,
            userinfo_claims: userinfo_claims.clone(),
            tokens_until,
            // The store sets it from what refers to the grant.
            keep_until: 0,
        });
        let refresh = match (&self.refresh, &self.subject) {
            (Refresh::None, _) | (Refresh::New, Subject::Client) => None,
            (Refresh::Rotate(successor), _) => Some((**successor).clone()),
            (Refresh::New, Subject::User { authn, .. }) => Some(RefreshToken {
                grant_id: self.grant_id.clone(),
                client_id: self.client.client_id.clone(),
                user_id,
                scopes: self.scopes.clone(),
                auth_time: authn.auth_time,
                amr: authn.amr.clone(),
                acr: authn.acr.clone(),
                sid: authn.sid.clone(),
                session_hash: authn.session_hash.clone(),
                offline: self.new_grant.unwrap_or(false),
                nonce: authn.nonce.clone(),
                issued_at: now,
                expires_at: now + l.refresh_idle.min(l.refresh_absolute),
                absolute_expires_at: now + l.refresh_absolute,
                used: false,
                claims: self.claims.clone(),
            }),
        }
        .map(|rt| {
            let hash = crate::keys::token_hash(&d.refresh_token);
            (d.refresh_token.clone(), hash, rt)
        });
        Records {
            grant,
            refresh,
            tokens_until,
            userinfo_claims,
        }
    }
}

/// What decides whether a signed, unexpired access token is still good: what it says
/// (its client, subject and the grant its `jti` names) and what the store holds now.
#[derive(Debug, Clone, Copy)]
pub struct AccessFacts<'a> {
    pub client_id: &'a str,
    pub sub: &'a str,
    pub grant_id: Option<&'a str>,
    /// On the revocation list (RFC 7009).
    pub revoked: bool,
    /// The client is still registered (stored or declared).
    pub client_exists: bool,
    pub grant: Option<&'a Grant>,
    /// The grant's user.
    pub user: Option<&'a User>,
}

/// SPEC §6: revocation, the end of a grant (logout, replay, the user's or an
/// administrator's revocation, a password change), a deleted client and a disabled or
/// deleted user all take effect at once. `Err` says why the token is refused.
pub fn access_standing<'a>(f: &AccessFacts<'a>) -> Result<Option<&'a User>, &'static str> {
    if f.revoked || !f.client_exists {
        return Err("the access token was revoked");
    }
    let Some(grant_id) = f.grant_id else {
        // A client's own token: its subject is the client.
        return if f.sub == f.client_id {
            Ok(None)
        } else {
            Err("the access token is not known")
        };
    };
    let grant = f
        .grant
        .filter(|g| g.grant_id == grant_id && g.client_id == f.client_id && g.user_id == f.sub)
        .ok_or("the access token is not known")?;
    if grant.revoked {
        return Err("the access token was revoked");
    }
    let user = f
        .user
        .filter(|u| u.id == grant.user_id && !u.disabled)
        .ok_or("the user no longer exists or is disabled")?;
    Ok(Some(user))
}

/// RFC 6749 §5.1 successful response.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    pub scope: String,
}
