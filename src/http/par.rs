//! Pushed authorization requests (RFC 9126): a client posts its authorization request,
//! authenticated, and gets a short-lived, single-use `request_uri` to send the browser
//! with instead. Pending requests live in memory, bounded in number and lifetime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hyper::StatusCode;
use serde_json::json;

use super::response::{self, Resp};
use super::{App, Req};
use crate::oidc::authorize as authz;
use crate::oidc::params::Params;
use crate::oidc::{ErrorCode, OidcError};

/// RFC 9126 §2.2: the request_uri is this URN followed by a random reference.
pub(super) const URN_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";
/// Seconds a pushed request stays usable.
pub(super) const TTL: i64 = 60;
const MAX: usize = 10_000;
/// Pending requests one client may have at once, so one (public) client cannot fill the
/// store for everybody.
const PER_CLIENT: usize = 100;

#[derive(Default)]
pub struct Pushed {
    map: Mutex<HashMap<String, (String, Params, i64)>>,
}

impl Pushed {
    /// Stores a request; `None` when the store or this client's share of it is full.
    fn put(&self, client_id: &str, params: Params, now: i64) -> Option<String> {
        let uri = format!("{URN_PREFIX}{}", crate::clock::random_token());
        let mut m = self.map.lock().ok()?;
        m.retain(|_, (_, _, exp)| *exp > now);
        let mine = m
            .values()
            .filter(|(owner, _, _)| owner == client_id)
            .count();
        if m.len() >= MAX || mine >= PER_CLIENT {
            return None;
        }
        m.insert(uri.clone(), (client_id.to_string(), params, now + TTL));
        Some(uri)
    }

    /// The pushed parameters, once, for the client that pushed them, before they expire.
    pub fn take(&self, uri: &str, client_id: &str, now: i64) -> Option<Params> {
        let mut m = self.map.lock().ok()?;
        // Another client naming this request_uri does not consume it.
        if m.get(uri).is_none_or(|(owner, _, _)| owner != client_id) {
            return None;
        }
        let (_, params, exp) = m.remove(uri)?;
        (exp > now).then_some(params)
    }
}

fn json_error(e: &OidcError) -> Resp {
    response::token_error(e)
}

/// POST /api/v1/oauth/par.
pub(super) async fn push(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    let (form, client) = match super::token::authenticated_form(app, req).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return json_error(&e),
        Err(f) => return json_error(&f.to_oidc()),
    };
    if form.contains("request_uri") {
        return json_error(&OidcError::invalid_request("request_uri cannot be pushed"));
    }
    // The authorization request is the body without the client's credentials.
    let mut params = Params(
        form.0
            .into_iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "client_secret" | "client_assertion" | "client_assertion_type"
                )
            })
            .collect(),
    );
    match params.get("client_id") {
        Ok(Some(id)) if id != client.client_id => {
            return json_error(&OidcError::invalid_request(
                "client_id differs from the authenticated client",
            ));
        }
        Ok(Some(_)) => {}
        Ok(None) => params
            .0
            .push(("client_id".into(), client.client_id.clone())),
        Err(_) => {
            return json_error(&OidcError::invalid_request(
                "client_id was sent more than once",
            ));
        }
    }
    let redirect_uri = match authz::identify(&params)
        .and_then(|(_, r)| authz::check_redirect_uri(&client, r.as_deref()))
    {
        Ok(r) => r,
        Err(e) => return json_error(&OidcError::invalid_request(e.0)),
    };
    if let Err(e) = authz::parse(&params, &client, &redirect_uri) {
        return json_error(&e.error);
    }
    match app.pushed.put(&client.client_id, params, now) {
        Some(request_uri) => response::json(
            StatusCode::CREATED,
            &json!({"request_uri": request_uri, "expires_in": TTL}),
        ),
        None => json_error(&OidcError::new(
            ErrorCode::TemporarilyUnavailable,
            "too many pending requests, retry later",
        )),
    }
}

/// RFC 9126 §4: replaces an authorization request that names a pushed request_uri with
/// the pushed parameters. `Ok(None)` when the request is not a PAR reference.
pub(super) fn resolve(app: &App, params: &Params, now: i64) -> Result<Option<Params>, String> {
    let Some(uri) = params
        .get_lenient("request_uri")
        .filter(|u| u.starts_with(URN_PREFIX))
    else {
        return Ok(None);
    };
    let client_id = params
        .get_lenient("client_id")
        .ok_or("The request has no client_id.")?;
    app.pushed
        .take(uri, client_id, now)
        .map(Some)
        .ok_or_else(|| {
            "The pushed authorization request has expired or was already used.".to_string()
        })
}

/// Whether a client that must push its requests sent this one otherwise.
pub(super) fn required_but_missing(
    client: &crate::model::Client,
    via_par: bool,
) -> Option<OidcError> {
    (client.require_par && !via_par).then(|| {
        OidcError::new(
            ErrorCode::InvalidRequest,
            "this client must use pushed authorization requests",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_requests_are_single_use_per_client_and_bounded() {
        let p = Pushed::default();
        let uri = p.put("a", Params::parse(b"x=1"), 0).unwrap();
        assert!(
            p.take(&uri, "b", 1).is_none(),
            "another client gets nothing"
        );
        assert_eq!(
            p.take(&uri, "a", 1).unwrap(),
            Params::parse(b"x=1"),
            "and did not consume it"
        );
        assert!(p.take(&uri, "a", 1).is_none(), "single use");
        let late = p.put("a", Params::default(), 0).unwrap();
        assert!(p.take(&late, "a", TTL).is_none(), "expired");
        for _ in 0..PER_CLIENT {
            assert!(p.put("greedy", Params::default(), 100).is_some());
        }
        assert!(
            p.put("greedy", Params::default(), 100).is_none(),
            "quota per client"
        );
        assert!(
            p.put("other", Params::default(), 100).is_some(),
            "others are unaffected"
        );
        assert!(
            p.put("greedy", Params::default(), 100 + TTL).is_some(),
            "expired ones make room"
        );
    }
}
