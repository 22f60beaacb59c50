//! Response builders with the security headers of the security baseline §4.6, and the one
//! mapping from internal failures to what a client sees (detail goes to the log only).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use crate::oidc::authorize::RedirectError;
use crate::oidc::{ErrorCode, OidcError};
use crate::store::StoreError;

pub type Resp = Response<Full<Bytes>>;

/// CSP of HTML pages: no inline script or style anywhere; scripts may call this origin
/// only (the passkey ceremonies). `form-action` is left out on
/// purpose: browsers apply it to the redirect chain after a form POST, which ends at the
/// relying party's origin.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                        connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

fn base(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Nothing that is not a page may load anything or be framed; pages widen this.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    r
}

/// A JSON response (`Cache-Control: no-store`, framing forbidden).
pub fn json(status: StatusCode, v: &Value) -> Resp {
    base(status, "application/json", v.to_string())
}

/// JSON serialised once and shared (discovery, JWKS), with its cache lifetime.
pub fn json_bytes_cacheable(body: Bytes, cache_control: &'static str) -> Resp {
    let mut r = base(StatusCode::OK, "application/json", body);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    r
}

/// An HTML page with the full set of page headers.
pub fn html(status: StatusCode, body: String) -> Resp {
    html_with_csp(status, body, PAGE_CSP.to_string())
}

pub fn html_with_csp(status: StatusCode, body: String, csp: String) -> Resp {
    let mut r = base(status, "text/html; charset=utf-8", body);
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    r
}

/// 303 See Other: after a POST the browser follows with GET, and credentials in the body
/// are never forwarded as with 307 (security baseline T27).
pub fn redirect(location: &str) -> Resp {
    let mut r = base(
        StatusCode::SEE_OTHER,
        "text/plain; charset=utf-8",
        Bytes::new(),
    );
    match HeaderValue::from_str(location) {
        Ok(v) => {
            r.headers_mut().insert(header::LOCATION, v);
            r
        }
        Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "invalid redirect target"),
    }
}

pub fn plain(status: StatusCode, text: &'static str) -> Resp {
    base(status, "text/plain; charset=utf-8", text)
}

/// A plain-text refusal after which the connection is closed (the request's framing or
/// body could not be trusted, or was not read).
pub fn closing(status: StatusCode, text: &'static str) -> Resp {
    let mut r = plain(status, text);
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Bytes of a given type (the configured logo).
pub fn bytes(content_type: &'static str, body: Vec<u8>) -> Resp {
    base(StatusCode::OK, content_type, body)
}

/// Static asset from the binary, cacheable.
pub fn asset(content_type: &'static str, body: &'static [u8]) -> Resp {
    let mut r = base(StatusCode::OK, content_type, Bytes::from_static(body));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

/// Replaces a header (for one set by `base`, such as Cache-Control).
pub fn set_header(mut r: Resp, name: &'static str, value: &str) -> Resp {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
    r
}

/// Adds a header line (Set-Cookie, WWW-Authenticate may repeat).
pub fn with_header(mut r: Resp, name: &'static str, value: &str) -> Resp {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().append(name, v);
    }
    r
}

/// RFC 6749 §5.2 error: 400, or 401 with `WWW-Authenticate` for invalid_client.
pub fn token_error(e: &OidcError) -> Resp {
    let body = json!({"error": e.code.as_str(), "error_description": e.description});
    // RFC 6749 §5.1: no-store (set by `json`) and Pragma: no-cache, for errors as well.
    let resp = match e.code {
        ErrorCode::InvalidClient => {
            let r = json(StatusCode::UNAUTHORIZED, &body);
            with_header(
                r,
                "www-authenticate",
                "Basic realm=\"latchkey\", charset=\"UTF-8\"",
            )
        }
        ErrorCode::ServerError => json(StatusCode::INTERNAL_SERVER_ERROR, &body),
        ErrorCode::TemporarilyUnavailable => json(StatusCode::SERVICE_UNAVAILABLE, &body),
        _ => json(StatusCode::BAD_REQUEST, &body),
    };
    with_header(resp, "pragma", "no-cache")
}

/// RFC 6750 §3: a Bearer challenge. `None` when no token was sent at all.
pub fn bearer_error(e: Option<&OidcError>) -> Resp {
    match e {
        // RFC 6750 §3.1: no credentials (or another scheme), so no error code either.
        None => with_header(
            json(StatusCode::UNAUTHORIZED, &json!({})),
            "www-authenticate",
            "Bearer realm=\"latchkey\"",
        ),
        Some(e) => {
            let status = match e.code {
                ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
                ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
                ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::UNAUTHORIZED,
            };
            let challenge = format!(
                "Bearer realm=\"latchkey\", error=\"{}\", error_description=\"{}\"",
                e.code.as_str(),
                e.description
            );
            let body = json!({"error": e.code.as_str(), "error_description": e.description});
            with_header(json(status, &body), "www-authenticate", &challenge)
        }
    }
}

/// Why an endpoint did not succeed. Handlers return `Result<T, EndpointError>` and use
/// `?`; `App::error_answer` (in `errors.rs`) is the one mapping to what the client sees,
/// in the shape of its endpoint ([`Shape`]).
#[derive(Debug)]
pub enum EndpointError {
    /// A protocol error for the client.
    Protocol(OidcError),
    /// RFC 6750 §3.1: no credentials at all (a challenge without an error code).
    NoCredentials,
    /// An error for a client's verified redirect_uri (the authorization endpoint).
    Redirect(RedirectError),
    /// The request cannot be answered to any client (unknown client, unregistered
    /// redirect_uri, expired sign-in): a page of Latchkey's own.
    Page {
        status: StatusCode,
        title: &'static str,
        message: String,
    },
    /// A failure of Latchkey's own (logged under the request id, answered generically).
    Fail(Fail),
}

/// How an endpoint answers its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// RFC 6749 §5.2 JSON (token, introspection, revocation, PAR, device authorization).
    Json,
    /// RFC 6750 §3 `WWW-Authenticate: Bearer` (UserInfo).
    Bearer,
    /// An HTML page (the authorization endpoint before its redirect_uri is verified, and
    /// every page).
    Page,
}

impl EndpointError {
    /// A page for a request that cannot go back to any client.
    pub fn page(title: &'static str, message: impl Into<String>) -> EndpointError {
        EndpointError::Page {
            status: StatusCode::BAD_REQUEST,
            title,
            message: message.into(),
        }
    }
}

impl From<OidcError> for EndpointError {
    fn from(e: OidcError) -> Self {
        EndpointError::Protocol(e)
    }
}

impl From<RedirectError> for EndpointError {
    fn from(e: RedirectError) -> Self {
        EndpointError::Redirect(e)
    }
}

impl From<Fail> for EndpointError {
    fn from(f: Fail) -> Self {
        EndpointError::Fail(f)
    }
}

impl From<StoreError> for EndpointError {
    fn from(e: StoreError) -> Self {
        EndpointError::Fail(Fail::Store(e))
    }
}

/// A failure that is not the client's fault.
#[derive(Debug)]
pub enum Fail {
    Store(StoreError),
    /// The hashing pool is full.
    Busy,
    Internal(String),
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

impl From<crate::keys::JwtError> for Fail {
    fn from(e: crate::keys::JwtError) -> Self {
        Fail::Internal(e.to_string())
    }
}

impl Fail {
    /// Whether retrying later may succeed (HTTP 503 rather than 500).
    pub fn is_temporary(&self) -> bool {
        matches!(self, Fail::Busy | Fail::Store(StoreError::Unavailable(_)))
    }

    /// Logs the detail under a request id and returns the client-safe protocol error.
    pub fn to_oidc(&self) -> OidcError {
        match self {
            Fail::Busy => OidcError::new(
                ErrorCode::TemporarilyUnavailable,
                "the server is busy, try again shortly",
            ),
            Fail::Store(StoreError::Unavailable(detail)) => {
                // The store has logged the failure itself; this line ties it to a request.
                tracing::warn!(error = %detail, "request refused: storage unavailable");
                OidcError::new(
                    ErrorCode::TemporarilyUnavailable,
                    "storage is temporarily unavailable, try again shortly",
                )
            }
            other => {
                // The request's own id: the one in its access-log line and x-request-id.
                let id = super::request_id().unwrap_or_default();
                tracing::error!(request_id = %id, error = ?other, "request failed");
                OidcError::new(
                    ErrorCode::ServerError,
                    format!("internal error (request id {id})"),
                )
            }
        }
    }
}
