//! The service called in-process, without a socket (`App::respond` with a `Req`): the
//! route table's 404/405/CORS answers, the security headers every response carries, and
//! the shapes of protocol errors.

use hyper::header::HeaderMap;
use hyper::{Method, StatusCode};

use crate::clocked::{Answer, Service};

fn service() -> Service {
    Service::new("")
}

async fn call(
    s: &Service,
    method: Method,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.append(
            hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    s.call(method, target, h, body).await
}

fn header<'a>(a: &'a Answer, name: &str) -> Option<&'a str> {
    a.headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn routes_answer_404_405_and_preflight_from_the_table() {
    let s = service();
    let a = call(&s, Method::GET, "/no/such/path", &[], "").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = call(&s, Method::DELETE, "/api/v1/oauth/userinfo", &[], "").await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&a, "allow"), Some("GET, HEAD, POST, OPTIONS"));
    let a = call(&s, Method::OPTIONS, "/api/v1/oauth/discovery/keys", &[], "").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(header(&a, "access-control-allow-origin"), Some("*"));
    let a = call(&s, Method::OPTIONS, "/login", &[], "").await;
    assert_eq!(
        a.status,
        StatusCode::METHOD_NOT_ALLOWED,
        "pages have no preflight"
    );
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let s = service();
    for (method, target) in [
        (Method::GET, "/.well-known/openid-configuration"),
        (Method::GET, "/login"),
        (Method::GET, "/nope"),
        (Method::POST, "/healthz"),
        (Method::POST, "/api/v1/oauth/token"),
    ] {
        let a = call(&s, method.clone(), target, &[], "").await;
        assert_eq!(
            header(&a, "x-content-type-options"),
            Some("nosniff"),
            "{target}"
        );
        assert!(
            header(&a, "content-security-policy")
                .is_some_and(|c| c.contains("frame-ancestors 'none'")),
            "{target}"
        );
        assert_eq!(
            header(&a, "strict-transport-security"),
            Some("max-age=31536000"),
            "{target}"
        );
    }
}

#[tokio::test]
async fn protocol_errors_have_their_shapes() {
    let s = service();
    // Token endpoint: RFC 6749 §5.2 JSON, 401 + WWW-Authenticate for invalid_client.
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let a = call(
        &s,
        Method::POST,
        "/api/v1/oauth/token",
        &form,
        "grant_type=client_credentials&client_id=nobody",
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(header(&a, "www-authenticate").is_some_and(|w| w.starts_with("Basic")));
    assert_eq!(header(&a, "cache-control"), Some("no-store"));
    assert_eq!(header(&a, "pragma"), Some("no-cache"));
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["error"], "invalid_client");
    // UserInfo: RFC 6750 §3 Bearer challenge, no error code without a token.
    let a = call(&s, Method::GET, "/api/v1/oauth/userinfo", &[], "").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&a, "www-authenticate"),
        Some("Bearer realm=\"latchkey\"")
    );
    let a = call(
        &s,
        Method::GET,
        "/api/v1/oauth/userinfo",
        &[("authorization", "Bearer nope")],
        "",
    )
    .await;
    assert!(header(&a, "www-authenticate").is_some_and(|w| w.contains("error=\"invalid_token\"")));
    let a = call(
        &s,
        Method::POST,
        "/api/v1/oauth/userinfo",
        &[
            ("authorization", "Bearer one"),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        "access_token=two",
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "a token sent two ways");
    assert!(header(&a, "www-authenticate").is_some_and(|w| w.contains("invalid_request")));
    // PAR and device authorization answer like the token endpoint, Pragma included.
    for path in ["/api/v1/oauth/par", "/api/v1/oauth/device_authorization"] {
        let a = call(&s, Method::POST, path, &form, "client_id=nobody").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(header(&a, "pragma"), Some("no-cache"), "{path}");
        let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(v["error"], "invalid_client", "{path}");
    }
    // Authorization endpoint with an unknown client: a page, never a redirect.
    let a = call(
        &s,
        Method::GET,
        "/api/v1/oauth/authorize?client_id=nobody&redirect_uri=https%3A%2F%2Fevil.example%2F",
        &[],
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(header(&a, "location").is_none());
    assert!(header(&a, "content-type").is_some_and(|c| c.starts_with("text/html")));
}
