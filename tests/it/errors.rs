//! Error paths: what must show a page and never redirect, what goes back to the client,
//! and the token and UserInfo endpoints' RFC 6749 / RFC 6750 errors.

use crate::support::*;

async fn ready() -> (Server, String, String) {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let (id, secret) = server.add_client(&["--skip-consent"]);
    (server, id, secret)
}

#[tokio::test]
async fn untrusted_client_or_redirect_uri_shows_a_page_and_never_redirects() {
    let (server, id, _) = ready().await;
    let mut b = server.browser();
    let cb = enc(CALLBACK);
    let cases = [
        format!(
            "/api/v1/oauth/authorize?client_id=nope&redirect_uri={cb}&response_type=code&scope=openid"
        ),
        format!("/api/v1/oauth/authorize?redirect_uri={cb}&response_type=code&scope=openid"),
        format!("/api/v1/oauth/authorize?client_id={id}&response_type=code&scope=openid"),
        format!(
            "/api/v1/oauth/authorize?client_id={id}&redirect_uri={}&response_type=code&scope=openid",
            enc("https://rp.example/cb/xyz")
        ),
        format!(
            "/api/v1/oauth/authorize?client_id={id}&redirect_uri={}&response_type=code&scope=openid",
            enc("https://rp.example/cb?x=1")
        ),
        format!(
            "/api/v1/oauth/authorize?client_id={id}&redirect_uri={}&response_type=code&scope=openid",
            enc("https://evil.example/cb")
        ),
        format!(
            "/api/v1/oauth/authorize?client_id={id}&redirect_uri={}&response_type=code&scope=openid",
            enc("HTTPS://rp.example/cb")
        ),
        format!(
            "/api/v1/oauth/authorize?client_id={id}&redirect_uri={cb}&redirect_uri={cb}&response_type=code&scope=openid"
        ),
        format!(
            "/api/v1/oauth/authorize?client_id={id}&redirect_uri={}&response_type=code&scope=openid&request=x",
            enc("https://evil.example/")
        ),
    ];
    for url in cases {
        let r = b.get(&url).await;
        assert_eq!(r.status, 400, "{url}");
        assert!(r.header("location").is_none(), "{url} must not redirect");
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
    }
}

#[tokio::test]
async fn other_authorization_errors_redirect_with_state_and_iss() {
    let (server, id, _) = ready().await;
    let mut b = server.browser();
    let cb = enc(CALLBACK);
    let base =
        format!("/api/v1/oauth/authorize?client_id={id}&redirect_uri={cb}&state=x%22%3C%3E%26%23");
    let cases = [
        ("&scope=openid", "invalid_request"),
        (
            "&response_type=token&scope=openid",
            "unsupported_response_type",
        ),
        ("&response_type=code", "invalid_scope"),
        ("&response_type=code&scope=email", "invalid_scope"),
        (
            "&response_type=code&scope=openid&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=plain",
            "invalid_request",
        ),
        (
            "&response_type=code&scope=openid&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "invalid_request",
        ),
        (
            "&response_type=code&scope=openid&request=eyJhbGciOiJub25lIn0.e30.",
            "request_not_supported",
        ),
        (
            "&response_type=code&scope=openid&request_uri=https%3A%2F%2Fx",
            "request_uri_not_supported",
        ),
        (
            "&response_type=code&scope=openid&prompt=none%20login",
            "invalid_request",
        ),
        (
            "&response_type=code&scope=openid&max_age=soon",
            "invalid_request",
        ),
        (
            "&response_type=code&scope=openid&prompt=none",
            "login_required",
        ),
        (
            "&response_type=code&scope=openid&id_token_hint=not.a.jwt",
            "invalid_request",
        ),
    ];
    for (extra, code) in cases {
        let r = b.get(&format!("{base}{extra}")).await;
        assert_eq!(r.status, 303, "{extra}: {}", r.body);
        let loc = r.location();
        assert!(loc.starts_with(&format!("{CALLBACK}?")), "{extra}: {loc}");
        let p = params_of(&loc);
        assert_eq!(p["error"], code, "{extra}");
        assert_eq!(p["state"], "x\"<>&#", "{extra}: state echoed byte for byte");
        assert_eq!(p["iss"], server.issuer);
        assert!(
            p["error_description"]
                .chars()
                .all(|c| (' '..='~').contains(&c) && c != '"' && c != '\\')
        );
    }
}

#[tokio::test]
async fn unknown_parameters_and_optional_ones_are_accepted() {
    let (server, id, _) = ready().await;
    let mut b = server.browser();
    let url = authorize_url(
        &id,
        "&extra=foobar&display=popup&ui_locales=se&claims_locales=se&login_hint=alice&acr_values=1%202&claims=%7B%22userinfo%22%3A%7B%22name%22%3A%7B%22essential%22%3Atrue%7D%7D%7D",
    );
    let first = b.get(&url).await;
    let login_page = b.get(&first.location()).await;
    assert!(
        login_page.body.contains("value=\"alice\""),
        "login_hint prefills the username"
    );
    let cb = b.drive_to_callback(first, "alice").await;
    assert!(params_of(&cb).contains_key("code"));
}

#[tokio::test]
async fn token_endpoint_errors() {
    let (server, id, secret) = ready().await;
    let mut b = server.browser();
    let good = basic(&id, &secret);
    let t = "/api/v1/oauth/token";

    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![], "invalid_request"),
        (
            vec![
                ("grant_type", "password"),
                ("username", "a"),
                ("password", "b"),
            ],
            "unauthorized_client",
        ),
        (
            vec![("grant_type", "urn:example:unknown")],
            "unsupported_grant_type",
        ),
        (
            vec![("grant_type", "client_credentials")],
            "unauthorized_client",
        ),
        (
            vec![("grant_type", "authorization_code")],
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "authorization_code"),
                ("code", "nonexistent"),
                ("redirect_uri", CALLBACK),
            ],
            "invalid_grant",
        ),
        (vec![("grant_type", "refresh_token")], "invalid_request"),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", "nonexistent"),
            ],
            "invalid_grant",
        ),
        (
            vec![
                ("grant_type", "authorization_code"),
                ("grant_type", "refresh_token"),
            ],
            "invalid_request",
        ),
    ];
    for (form, code) in cases {
        let r = b
            .post_form_with(t, &form, &[("authorization", &good)])
            .await;
        assert_eq!(r.status, 400, "{form:?}: {}", r.body);
        assert_eq!(r.json()["error"], code, "{form:?}");
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }

    // Basic and client_secret in the body at once.
    let r = b
        .post_form_with(
            t,
            &[
                ("grant_type", "authorization_code"),
                ("client_secret", &secret),
            ],
            &[("authorization", &good)],
        )
        .await;
    assert_eq!(r.json()["error"], "invalid_request");
    // JSON instead of a form.
    let r = b
        .post_raw(
            t,
            "application/json",
            "{\"grant_type\":\"authorization_code\"}",
            &[("authorization", &good)],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_request");
    // Client authentication failures: 401 with WWW-Authenticate. Last, because failures
    // slow further attempts of the same client from the same address.
    for auth in [
        basic(&id, "wrong"),
        basic("nobody", &secret),
        "Basic !!!".to_string(),
    ] {
        let r = b
            .post_form_with(
                t,
                &[("grant_type", "authorization_code"), ("code", "x")],
                &[("authorization", &auth)],
            )
            .await;
        assert_eq!(r.status, 401, "{auth}");
        assert_eq!(r.json()["error"], "invalid_client");
        assert!(r.header("www-authenticate").unwrap().starts_with("Basic"));
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
    let r = b
        .post_form(t, &[("grant_type", "authorization_code"), ("code", "x")])
        .await;
    assert_eq!(r.status, 401);

    // GET is not allowed.
    assert_eq!(b.get(t).await.status, 405);
}

#[tokio::test]
async fn pkce_rules_at_the_token_endpoint() {
    let (server, id, secret) = ready().await;
    let mut b = server.browser();
    let auth = basic(&id, &secret);
    let (verifier, challenge) = pkce();
    let with = format!("&code_challenge={challenge}&code_challenge_method=S256");

    async fn code(b: &mut Browser, url: &str) -> String {
        let first = b.get(url).await;
        let cb = b.drive_to_callback(first, "alice").await;
        params_of(&cb)["code"].clone()
    }
    let exchange = |code: String, v: Option<String>| {
        let mut form = vec![
            ("grant_type".to_string(), "authorization_code".to_string()),
            ("code".into(), code),
            ("redirect_uri".into(), CALLBACK.into()),
        ];
        if let Some(v) = v {
            form.push(("code_verifier".into(), v));
        }
        form
    };
    let cases = [
        (with.clone(), None, "missing verifier"),
        (with.clone(), Some("a".repeat(43)), "wrong verifier"),
        (
            with.clone(),
            Some("short".to_string()),
            "malformed verifier",
        ),
        (
            String::new(),
            Some(verifier.clone()),
            "verifier without challenge",
        ),
    ];
    for (extra, v, what) in cases {
        let c = code(&mut b, &authorize_url(&id, &extra)).await;
        let form = exchange(c, v);
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = b
            .post_form_with("/api/v1/oauth/token", &pairs, &[("authorization", &auth)])
            .await;
        assert_eq!(r.status, 400, "{what}");
        assert_eq!(r.json()["error"], "invalid_grant", "{what}");
    }
    // A wrong redirect_uri at the token endpoint.
    let c = code(&mut b, &authorize_url(&id, "")).await;
    let r = b
        .post_form_with(
            "/api/v1/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &c),
                ("redirect_uri", "https://rp.example/other"),
            ],
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(r.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn userinfo_errors() {
    let (server, _, _) = ready().await;
    let mut b = server.browser();
    let u = "/api/v1/oauth/userinfo";
    let r = b.get(u).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"latchkey\"")
    );
    let basic = b.get_with(u, &[("authorization", "Basic abc")]).await;
    assert_eq!(basic.status, 401);
    assert_eq!(
        basic.header("www-authenticate"),
        Some("Bearer realm=\"latchkey\""),
        "no error code without a bearer token"
    );
    for auth in ["Bearer garbage", "Bearer a.b.c"] {
        let r = b.get_with(u, &[("authorization", auth)]).await;
        assert_eq!(r.status, 401, "{auth}");
        assert!(
            r.header("www-authenticate")
                .unwrap()
                .contains("error=\"invalid_token\""),
            "{auth}"
        );
    }
    // An ID-token-shaped JWT with alg none is refused.
    let none = "eyJhbGciOiJub25lIiwia2lkIjoieCJ9.eyJzdWIiOiJhbGljZSJ9.";
    assert_eq!(
        b.get_with(u, &[("authorization", &format!("Bearer {none}"))])
            .await
            .status,
        401
    );
    let r = b
        .post_form_with(
            u,
            &[("access_token", "x")],
            &[("authorization", "Bearer y")],
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("invalid_request")
    );
}

#[tokio::test]
async fn declared_clients_with_slow_hashes_and_secret_guessing() {
    let params = latchkey::config::PasswordParams {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
        pool_threads: 1,
        pool_queue: 1,
    };
    let phc = latchkey::keys::password::hash("declared-secret-value", &params).unwrap();
    let sha = latchkey::keys::client_secret_hash("sha-secret-value");
    let extra = format!(
        "[[clients]]\nclient_id = \"slow\"\nsecret_hash = \"{phc}\"\nredirect_uris = [\"{CALLBACK}\"]\nskip_consent = true\n\
         [[clients]]\nclient_id = \"fast\"\nsecret_hash = \"{sha}\"\nredirect_uris = [\"{CALLBACK}\"]\nskip_consent = true\n"
    );
    let server = Server::new(&extra).start().await;
    server.add_user("alice", &[]);
    let listed = server.cli(&["client", "list", "--json"], None).json();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["declared"] == true)
    );
    let mut b = server.browser();
    for (id, secret) in [
        ("slow", "declared-secret-value"),
        ("fast", "sha-secret-value"),
    ] {
        let first = b.get(&authorize_url(id, "")).await;
        let cb = b.drive_to_callback(first, "alice").await;
        let r = b.redeem(&cb, None, &basic(id, secret)).await;
        assert_eq!(r.status, 200, "{id}: {}", r.body);
    }
    // SPEC §8: wrong secrets never make the right one wait or fail: after a wrong one,
    // and after many, the right secret authenticates at once.
    let form = [("grant_type", "refresh_token"), ("refresh_token", "x")];
    for _ in 0..3 {
        let wrong = b
            .post_form_with(
                "/api/v1/oauth/token",
                &form,
                &[("authorization", &basic("slow", "guess"))],
            )
            .await;
        assert_eq!(wrong.status, 401);
        assert_eq!(wrong.json()["error"], "invalid_client");
    }
    let right = basic("slow", "declared-secret-value");
    let r = b
        .post_form_with("/api/v1/oauth/token", &form, &[("authorization", &right)])
        .await;
    assert_eq!(
        r.status, 400,
        "authenticated; the refresh token itself is unknown: {}",
        r.body
    );
    assert_eq!(r.json()["error"], "invalid_grant");
    // Declared clients are read-only for the CLI.
    let out = server.cli(&["client", "rotate-secret", "slow"], None);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("declared"));
}
