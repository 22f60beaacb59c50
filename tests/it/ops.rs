//! Operations: metrics, request logs, health.

use crate::support::*;

#[tokio::test]
async fn metrics_count_traffic_and_are_restricted() {
    let server = Server::new("trusted_proxies = [\"127.0.0.1\"]")
        .start()
        .await;
    server.add_user("alice", &[]);
    let (id, secret) = server.add_client(&["--skip-consent"]);
    let mut b = server.browser();
    let first = b.get(&authorize_url(&id, "")).await;
    let cb = b.drive_to_callback(first, "alice").await;
    let code = params_of(&cb)["code"].clone();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
    ];
    b.post_form_with(
        "/api/v1/oauth/token",
        &form,
        &[("authorization", &basic(&id, &secret))],
    )
    .await;
    let _ = b.login("/login", "alice", "wrong password entirely").await;

    let m = b.get("/metrics").await;
    assert_eq!(m.status, 200);
    assert!(
        m.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    for line in [
        "latchkey_http_requests_total{endpoint=\"token\",status=\"200\"} 1",
        "latchkey_signins_total{result=\"success\"} 1",
        "latchkey_signins_total{result=\"failure\"} 1",
        "latchkey_tokens_issued_total{grant=\"authorization_code\"} 1",
        "latchkey_active_sessions 1",
    ] {
        assert!(m.body.contains(line), "missing {line} in\n{}", m.body);
    }
    for prefix in [
        "latchkey_http_request_duration_seconds_bucket{endpoint=\"authorize\",le=\"+Inf\"}",
        "latchkey_database_size_bytes ",
        "latchkey_signing_key_age_seconds{alg=\"RS256\"} ",
        "latchkey_tls_certificate_expiry_timestamp_seconds ",
    ] {
        assert!(m.body.contains(prefix), "missing {prefix}");
    }
    // A client that is not on this machine (here: forwarded by a trusted proxy) gets nothing.
    let remote = b
        .get_with("/metrics", &[("x-forwarded-for", "203.0.113.5")])
        .await;
    assert_eq!(remote.status, 403);

    // Request log lines: method, path and status, never the query (codes, state).
    let log = server.log_with("path=/api/v1/oauth/token status=200");
    assert!(log.contains("path=/api/v1/oauth/token status=200"), "{log}");
    assert!(!log.contains(&code), "a code reached the log");
    assert!(!log.contains("st-._~8"), "query values reached the log");
    assert!(b.get("/healthz").await.header("x-request-id").is_some());
}

#[tokio::test]
async fn metrics_with_a_token() {
    let server = Server::new("[metrics]\ntoken = \"0123456789abcdef-metrics\"")
        .start()
        .await;
    let mut b = server.browser();
    assert_eq!(
        b.get("/metrics").await.status,
        403,
        "even loopback needs the token once one is set"
    );
    let ok = b
        .get_with(
            "/metrics",
            &[("authorization", "Bearer 0123456789abcdef-metrics")],
        )
        .await;
    assert_eq!(ok.status, 200);
}
