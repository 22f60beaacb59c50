//! Signing what a grant plan lists (`oidc::grant`): the access token, the ID token with
//! `at_hash` / `c_hash`, and the records that go with them. Storing them is the caller's
//! transaction; the claims and records are decided in `oidc::grant`.

use super::App;
use super::response::Fail;
use crate::oidc::claims::{Custom, custom_claims};
use crate::oidc::grant::{Draws, Plan, Records, Subject, TokenResponse};
use crate::store::Issued;

/// A plan's tokens, signed, with the records that make them revocable.
pub(super) struct Signed {
    pub(super) access_token: String,
    pub(super) id_token: Option<String>,
    pub(super) records: Records,
    pub(super) expires_in: i64,
    pub(super) scope: String,
}

/// Signs the access token and, for a person with the `openid` scope, the ID token with
/// its `at_hash` (the token endpoint's response).
pub(super) fn sign(app: &App, plan: &Plan<'_>, d: &Draws, now: i64) -> Result<Signed, Fail> {
    let access_token = access_token(app, plan, d, now)?;
    let at_hash = crate::keys::half_hash(&access_token);
    let l = &app.config.lifetimes;
    Ok(Signed {
        id_token: id_token(app, plan, Some(&at_hash), None, now)?,
        access_token,
        records: plan.records(l, d, now),
        expires_in: l.access_token,
        scope: crate::oidc::scope::join(&plan.scopes),
    })
}

/// The signed access token of a plan (RFC 9068).
pub(super) fn access_token(
    app: &App,
    plan: &Plan<'_>,
    d: &Draws,
    now: i64,
) -> Result<String, Fail> {
    let mut claims = plan.access_claims(&app.config.issuer, &app.config.lifetimes, d, now);
    if let Some(c) = custom(app, plan)? {
        add_claims(&mut claims, c.access_token);
    }
    Ok(app
        .keys()
        .sign(plan.client.id_token_alg, "at+jwt", &claims)?)
}

/// The signed ID token of a plan, for a person with the `openid` scope, with `at_hash` /
/// `c_hash` for the access token or code it accompanies (OIDC Core §3.1.3.6, §3.3.2.11).
pub(super) fn id_token(
    app: &App,
    plan: &Plan<'_>,
    at_hash: Option<&str>,
    c_hash: Option<&str>,
    now: i64,
) -> Result<Option<String>, Fail> {
    let (issuer, l) = (&app.config.issuer, &app.config.lifetimes);
    match plan.id_claims(issuer, l, now, at_hash, c_hash) {
        Some(mut c) => {
            if let Some(x) = custom(app, plan)? {
                add_claims(&mut c, x.id_token);
            }
            Ok(Some(app.keys().sign(
                plan.client.id_token_alg,
                "JWT",
                &c,
            )?))
        }
        None => Ok(None),
    }
}

/// Adds custom claims without ever replacing one Latchkey set itself.
pub(super) fn add_claims(
    to: &mut serde_json::Map<String, serde_json::Value>,
    custom: serde_json::Map<String, serde_json::Value>,
) {
    for (k, v) in custom {
        to.entry(k).or_insert(v);
    }
}

/// The client's custom claims for the plan's person (SPEC §14), `None` for a client
/// without claim rules or a client's own token.
fn custom(app: &App, plan: &Plan<'_>) -> Result<Option<Custom>, Fail> {
    let (rules, Subject::User { user, .. }) = (&plan.client.claims, &plan.subject) else {
        return Ok(None);
    };
    if rules.is_empty() {
        return Ok(None);
    }
    let groups = app.group_records(user)?;
    Ok(Some(custom_claims(user, &groups, rules, &plan.scopes)))
}

impl Signed {
    /// The records of a plan that starts a grant, for the store's one transaction.
    pub(super) fn issued(&self) -> Result<Issued<'_>, Fail> {
        let grant = self.records.grant.as_ref().ok_or_else(|| {
            Fail::Internal("a plan that continues a grant was stored as a new one".into())
        })?;
        Ok(Issued {
            grant,
            refresh: self
                .records
                .refresh
                .as_ref()
                .map(|(_, hash, rt)| (hash.as_str(), rt)),
        })
    }

    pub(super) fn response(self) -> TokenResponse {
        TokenResponse {
            access_token: self.access_token,
            token_type: "Bearer",
            expires_in: self.expires_in,
            refresh_token: self.records.refresh.map(|(token, _, _)| token),
            id_token: self.id_token,
            scope: self.scope,
        }
    }
}
