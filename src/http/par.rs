//! Pushed authorization requests (RFC 9126): a client posts its authorization request,
//! authenticated, and gets a short-lived, single-use `request_uri` to send the browser
//! with instead. Pending requests live in memory, bounded in number and lifetime; on a
//! store several nodes share, in the store too, so the browser may reach any node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hyper::StatusCode;
use serde_json::json;

use super::response::{self, EndpointError, Resp, Shape};
use super::{App, Req};
use crate::oidc::authorize as authz;
use crate::oidc::params::Params;
use crate::oidc::{ErrorCode, OidcError};
use crate::signin::throttle::Source;

/// RFC 9126 §2.2: the request_uri is this URN followed by a random reference.
pub(super) const URN_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";
/// Seconds a pushed request stays usable.
pub(super) const TTL: i64 = 60;
const MAX: usize = 10_000;
/// Bytes of pushed parameters held at once (SPEC §8); records and bytes per source
/// address.
const MAX_BYTES: usize = 16 << 20;
const PER_SOURCE: usize = 500;
const PER_SOURCE_BYTES: usize = 1 << 20;
/// Pending requests of one client from one address, so that nobody can fill a (public)
/// client's share for everybody else.
const PER_CLIENT: usize = 100;

struct Entry {
    owner: String,
    params: Params,
    expires: i64,
    source: Source,
    bytes: usize,
}

#[derive(Default)]
pub struct Pushed {
    map: Mutex<HashMap<String, Entry>>,
    shared: Option<Arc<dyn crate::store::Store>>,
}

/// A pushed request as a shared store keeps it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Kept {
    owner: String,
    params: Vec<(String, String)>,
    expires: i64,
}

impl Pushed {
    /// Pending requests shared through `store` when other nodes use it too.
    pub fn in_store(store: &Arc<dyn crate::store::Store>) -> Pushed {
        Pushed {
            map: Mutex::default(),
            shared: store.shared().then(|| store.clone()),
        }
    }

    /// Stores a request; `None` when the store, or this client's or this address's share
    /// of it, is full. Nothing is evicted for a new request.
    fn put(&self, client_id: &str, params: Params, source: Source, now: i64) -> Option<String> {
        let uri = format!("{URN_PREFIX}{}", crate::clock::random_token());
        let bytes = 256
            + params
                .0
                .iter()
                .map(|(k, v)| k.len() + v.len() + 48)
                .sum::<usize>();
        let mut m = self.map.lock().ok()?;
        m.retain(|_, e| e.expires > now);
        let (mut mine, mut from_source, mut source_bytes, mut total) = (0, 0, 0, 0);
        for e in m.values() {
            total += e.bytes;
            if e.source == source {
                from_source += 1;
                source_bytes += e.bytes;
                mine += usize::from(e.owner == client_id);
            }
        }
        if m.len() >= MAX
            || mine >= PER_CLIENT
            || from_source >= PER_SOURCE
            || source_bytes + bytes > PER_SOURCE_BYTES
            || total + bytes > MAX_BYTES
        {
            return None;
        }
        if let Some(store) = &self.shared {
            let kept = Kept {
                owner: client_id.to_string(),
                params: params.0.clone(),
                expires: now + TTL,
            };
            let put = serde_json::to_vec(&kept)
                .map_err(|e| e.to_string())
                .and_then(|v| {
                    store
                        .put_ephemeral(
                            &format!("par/{}", crate::keys::token_hash(&uri)),
                            &v,
                            now + TTL,
                        )
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = put {
                tracing::warn!(error = %e, "a pushed request could not be shared; refused");
                return None;
            }
        }
        m.insert(
            uri.clone(),
            Entry {
                owner: client_id.to_string(),
                params,
                expires: now + TTL,
                source,
                bytes,
            },
        );
        Some(uri)
    }

    /// The pushed parameters, once, for the client that pushed them, before they expire.
    pub fn take(&self, uri: &str, client_id: &str, now: i64) -> Option<Params> {
        if let Some(store) = &self.shared {
            let key = format!("par/{}", crate::keys::token_hash(uri));
            let decode = |b: Vec<u8>| serde_json::from_slice::<Kept>(&b).ok();
            // Another client naming this request_uri does not consume it.
            let found = store.ephemeral(&key, now).ok().flatten().and_then(decode)?;
            if found.owner != client_id {
                return None;
            }
            let taken = store
                .take_ephemeral(&key, now)
                .ok()
                .flatten()
                .and_then(decode)?;
            if let Ok(mut m) = self.map.lock() {
                m.remove(uri);
            }
            let mut params = Params::default();
            for (k, v) in &taken.params {
                params.push(k, v);
            }
            return (taken.expires > now).then_some(params);
        }
        let mut m = self.map.lock().ok()?;
        // Another client naming this request_uri does not consume it.
        if m.get(uri).is_none_or(|e| e.owner != client_id) {
            return None;
        }
        let e = m.remove(uri)?;
        (e.expires > now).then_some(e.params)
    }
}

/// POST /api/v1/oauth/par.
pub(super) async fn push(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    match pushed(app, req, now).await {
        Ok(request_uri) => response::json(
            StatusCode::CREATED,
            &json!({"request_uri": request_uri, "expires_in": TTL}),
        ),
        Err(e) => app.error_answer(e, Shape::Json),
    }
}

async fn pushed(app: &Arc<App>, req: &Req, now: i64) -> Result<String, EndpointError> {
    let (form, client) = super::token::authenticated_form(app, req).await?;
    if form.contains("request_uri") {
        return Err(OidcError::invalid_request("request_uri cannot be pushed").into());
    }
    // The authorization request is the body without the client's credentials.
    let mut params = form.without(&["client_secret", "client_assertion", "client_assertion_type"]);
    match params.get("client_id") {
        Ok(Some(id)) if id != client.client_id => {
            return Err(OidcError::invalid_request(
                "client_id differs from the authenticated client",
            )
            .into());
        }
        Ok(Some(_)) => {}
        Ok(None) => params.push("client_id", &client.client_id),
        Err(e) => return Err(OidcError::invalid_request(e.to_string()).into()),
    }
    let redirect_uri = authz::identify(&params)
        .and_then(|(_, r)| authz::check_redirect_uri(&client, r.as_deref()))
        .map_err(|e| OidcError::invalid_request(e.0))?;
    authz::parse(&params, &client, &redirect_uri).map_err(|e| e.error)?;
    app.pushed
        .put(&client.client_id, params, Source::from(req.peer), now)
        .ok_or_else(|| {
            OidcError::new(
                ErrorCode::TemporarilyUnavailable,
                "too many pending requests, retry later",
            )
            .into()
        })
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

    const S: Source = Source::V4(1);

    #[test]
    fn pushed_requests_are_bounded_per_address_and_in_bytes() {
        let p = Pushed::default();
        for i in 0..PER_SOURCE {
            assert!(
                p.put(&format!("c{}", i % 10), Params::default(), S, 0)
                    .is_some()
            );
        }
        assert!(
            p.put("c-new", Params::default(), S, 0).is_none(),
            "per address"
        );
        assert!(
            p.put("c-new", Params::default(), Source::V4(2), 0)
                .is_some()
        );
        let big = Params::parse(format!("x={}", "a".repeat(30_000)).as_bytes());
        let r = Pushed::default();
        let per_address = (0..100)
            .take_while(|i| r.put(&format!("c{i}"), big.clone(), S, 0).is_some())
            .count();
        assert_eq!(per_address, PER_SOURCE_BYTES / 30_305, "bytes per address");
        let q = Pushed::default();
        let mut n = 0;
        while q
            .put(&format!("c{n}"), big.clone(), Source::V4(n as u32), 0)
            .is_some()
        {
            n += 1;
        }
        let each = 256 + 1 + 30_000 + 48;
        assert_eq!(n, MAX_BYTES / each, "bytes, not the count, ended it");
    }

    #[test]
    fn pushed_requests_are_single_use_per_client_and_bounded() {
        let p = Pushed::default();
        let uri = p.put("a", Params::parse(b"x=1"), S, 0).unwrap();
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
        let late = p.put("a", Params::default(), S, 0).unwrap();
        assert!(p.take(&late, "a", TTL).is_none(), "expired");
        for _ in 0..PER_CLIENT {
            assert!(p.put("greedy", Params::default(), S, 100).is_some());
        }
        assert!(
            p.put("greedy", Params::default(), S, 100).is_none(),
            "quota per client"
        );
        assert!(
            p.put("other", Params::default(), S, 100).is_some(),
            "others are unaffected"
        );
        assert!(
            p.put("greedy", Params::default(), Source::V4(7), 100)
                .is_some(),
            "the same client from another address is unaffected"
        );
        assert!(
            p.put("greedy", Params::default(), S, 100 + TTL).is_some(),
            "expired ones make room"
        );
    }
}
