//! Discovery and RFC 8414 metadata, the JWKS, the health check and CORS preflight.

use hyper::StatusCode;
use serde_json::json;

use super::App;
use super::response::{self, Resp};

pub(super) fn discovery(app: &App) -> Resp {
    response::json_cacheable(&crate::oidc::discovery::metadata(&app.config.issuer))
}

/// Cached for a minute only, so that relying parties see a rotated key promptly (most
/// also refetch when they meet an unknown `kid`).
pub(super) fn jwks(app: &App) -> Resp {
    let r = response::json(hyper::StatusCode::OK, &app.keys().jwks());
    response::set_header(r, "cache-control", "public, max-age=60")
}

/// 200 when the store answers, 503 when it does not.
pub(super) fn health(app: &App) -> Resp {
    match app.store.meta("schema_version") {
        Ok(Some(_)) => response::json(StatusCode::OK, &json!({"status": "ok"})),
        _ => response::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "unavailable", "store": "unreachable"}),
        ),
    }
}

/// CORS preflight for the endpoints browsers may call with a bearer token or client
/// credentials (never cookies, so `*` without credentials is safe).
pub(super) fn preflight() -> Resp {
    let r = response::plain(StatusCode::NO_CONTENT, "");
    let r = response::with_header(r, "access-control-allow-methods", "GET, POST, OPTIONS");
    let r = response::with_header(
        r,
        "access-control-allow-headers",
        "Authorization, Content-Type",
    );
    response::with_header(r, "access-control-max-age", "600")
}
