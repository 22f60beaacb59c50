//! Discovery and RFC 8414 metadata, the JWKS, the health check and CORS preflight.

use hyper::StatusCode;
use serde_json::json;

use super::App;
use super::response::{self, Resp};

pub(super) fn discovery(app: &App, now: i64) -> Resp {
    response::json_bytes_cacheable(app.discovery_document(now), "public, max-age=300")
}

/// Cached for a minute only, so that relying parties see a rotated key promptly (most
/// also refetch when they meet an unknown `kid`).
pub(super) fn jwks(app: &App) -> Resp {
    response::json_bytes_cacheable(app.jwks_document(), "public, max-age=60")
}

/// 200 when the store answers, 503 when it does not.
pub(super) fn health(app: &App) -> Resp {
    match app.store.meta("schema_version") {
        Ok(Some(_)) => {
            let mut body = json!({"status": "ok"});
            // The directory being down stops directory sign-ins only: reported, and the
            // service stays healthy.
            if app.directory.is_some() {
                let last = crate::ldap::sync::last(app.store.as_ref());
                body["directory"] = json!({
                    "reachable": app.directory_health.up(),
                    "last_sync": last.as_ref().map(|r| r.at),
                    "last_sync_ok": last.as_ref().map(|r| r.error.is_none()),
                    "last_successful_sync": last.and_then(|r| r.last_ok_at),
                });
            }
            response::json(StatusCode::OK, &body)
        }
        other => {
            // Why, in a word an operator can act on; the details (host names, paths) go
            // to the log, not to whoever asks.
            let reason = match &other {
                Err(crate::store::StoreError::Unavailable(_)) => "the database does not answer",
                Err(_) => "the database reports an error",
                Ok(_) => "the database has no schema",
            };
            if let Err(e) = &other {
                // Every probe while the store is down: not a warning each time (the
                // failing requests themselves are logged).
                tracing::debug!(error = %e, "health check: the store is unavailable");
            }
            let backend = match app.config.store {
                crate::config::store::Backend::Redb => "redb",
                crate::config::store::Backend::Postgres { .. } => "postgres",
            };
            response::json(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({
                    "status": "unavailable",
                    "store": "unreachable",
                    "backend": backend,
                    "reason": reason,
                }),
            )
        }
    }
}

/// Prometheus metrics: loopback only, or with the configured bearer token.
pub(super) fn metrics(app: &App, req: &super::Req, now: i64) -> Resp {
    let allowed = match &app.config.metrics_token {
        Some(token) => req
            .header(hyper::header::AUTHORIZATION)
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|t| crate::keys::ct_eq(t.trim().as_bytes(), token.as_bytes())),
        None => req.peer.is_loopback(),
    };
    if !allowed {
        return response::plain(
            StatusCode::FORBIDDEN,
            "metrics are not available to this client",
        );
    }
    let keys = app.keys();
    let key_ages = keys
        .keys()
        .filter(|k| k.state == crate::model::KeyState::Active)
        .map(|k| (k.alg.as_str(), now - k.created_at))
        .collect();
    let expiry = app.cert_expiry.load(std::sync::atomic::Ordering::Relaxed);
    let outbox = app.store.outbox().unwrap_or_default();
    let gauges = super::metrics::Gauges {
        mail_waiting: outbox.iter().filter(|m| !m.gave_up).count() as u64,
        mail_given_up: outbox.iter().filter(|m| m.gave_up).count() as u64,
        active_sessions: app.store.count_sessions(now).unwrap_or(0),
        database_bytes: std::fs::metadata(crate::datadir::db_path(&app.config.data_dir))
            .map(|m| m.len())
            .unwrap_or(0),
        key_ages,
        cert_expiry: (expiry > 0).then_some(expiry),
        directory: app.directory.as_ref().map(|_| {
            (
                app.directory_health.up(),
                crate::ldap::sync::last(app.store.as_ref()),
            )
        }),
    };
    let mut r = response::plain(StatusCode::OK, "");
    *r.body_mut() = http_body_util::Full::new(bytes::Bytes::from(app.metrics.render(&gauges)));
    response::set_header(
        r,
        "content-type",
        "text/plain; version=0.0.4; charset=utf-8",
    )
}

/// CORS preflight for the endpoints browsers may call with a bearer token or client
/// credentials (never cookies, so `*` without credentials is safe).
/// A CORS preflight answer naming the methods the route takes.
pub(super) fn preflight(methods: &'static str) -> Resp {
    let r = response::plain(StatusCode::NO_CONTENT, "");
    let r = response::with_header(r, "access-control-allow-methods", methods);
    let r = response::with_header(
        r,
        "access-control-allow-headers",
        "Authorization, Content-Type",
    );
    response::with_header(r, "access-control-max-age", "600")
}
