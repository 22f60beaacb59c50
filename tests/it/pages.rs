//! The login, consent and setup pages: headers, cookies, CSRF, generic failures,
//! throttling, and the one-time setup link.

use crate::support::*;

#[tokio::test]
async fn pages_carry_security_headers_and_safe_cookies() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let (id, _) = server.add_client(&[]);
    let mut b = server.browser();
    let first = b.get(&authorize_url(&id, "")).await;
    let page = b.get(&first.location()).await;
    let csp = page.header("content-security-policy").unwrap();
    for directive in [
        "default-src 'none'",
        "frame-ancestors 'none'",
        "script-src 'self'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert!(page.header("strict-transport-security").is_some());
    assert!(!page.body.contains("<script>") && !page.body.contains("style="));
    let csrf_cookie = b
        .set_cookies
        .iter()
        .find(|c| c.starts_with("__Host-latchkey_csrf="))
        .expect("CSRF cookie");
    for attr in ["Secure", "HttpOnly", "Path=/", "SameSite=Strict"] {
        assert!(csrf_cookie.contains(attr), "{attr} in {csrf_cookie}");
    }
    assert!(!csrf_cookie.contains("Domain"));

    let done = b.login(&first.location(), "alice", PASSWORD).await;
    assert_eq!(done.status, 303);
    let session = b
        .set_cookies
        .iter()
        .find(|c| c.starts_with("__Host-latchkey_session="))
        .expect("session cookie");
    for attr in ["Secure", "HttpOnly", "Path=/", "SameSite=Lax"] {
        assert!(session.contains(attr), "{attr} in {session}");
    }
}

#[tokio::test]
async fn login_failures_are_generic_and_throttled() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let mut b = server.browser();
    let wrong = b.login("/login", "alice", "wrong password here").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("Incorrect username or password."));
    let unknown = b.login("/login", "mallory", "wrong password here").await;
    assert_eq!(unknown.status, 401);
    assert!(unknown.body.contains("Incorrect username or password."));

    // After three free failures the same username must wait, even with the right
    // password (this browser never signed in, so it is not a known browser).
    for _ in 0..3 {
        assert_eq!(
            b.login("/login", "mallory", "wrong password here")
                .await
                .status,
            401
        );
    }
    let fast = b.login("/login", "mallory", PASSWORD).await;
    assert_eq!(fast.status, 429);
    assert!(fast.body.contains("Wait 1 second and"), "{}", fast.body);
    // The failures are in the audit log with their reason.
    let audit = server.cli(&["audit", "--json"], None).json();
    let reasons: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "login.failure")
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert!(
        reasons.contains(&"wrong password") && reasons.contains(&"unknown user"),
        "{reasons:?}"
    );
    // alice failed once (free): her right password works at once.
    let ok = b.login("/login", "alice", PASSWORD).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    let home = b.get("/").await;
    assert!(home.body.contains("signed in as alice"));
}

#[tokio::test]
async fn forms_without_a_valid_csrf_token_change_nothing() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let mut b = server.browser();
    let _ = b.get("/login").await;
    let r = b
        .post_form(
            "/login",
            &[
                ("username", "alice"),
                ("password", PASSWORD),
                ("csrf", "forged"),
            ],
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(!b.cookies.contains_key("__Host-latchkey_session"));
    let mut fresh = server.browser();
    let r = fresh
        .post_form("/login", &[("username", "alice"), ("password", PASSWORD)])
        .await;
    assert_eq!(r.status, 400);
    let r = fresh
        .post_form("/consent", &[("decision", "allow"), ("interaction", "x")])
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn values_are_escaped_on_pages() {
    let server = Server::new("").start().await;
    let mut b = server.browser();
    let page = b
        .get("/login?interaction=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        .await;
    assert!(!page.body.contains("<script>alert(1)"));
    let r = b.get("/nope%3Cscript%3E").await;
    assert_eq!(r.status, 404);
    assert!(!r.body.contains("<script>"));
}

#[tokio::test]
async fn setup_link_creates_the_first_administrator_once() {
    // Reached by IP address (no passkeys there): on to the admin pages.
    setup_once(Server::new("").start().await, "/admin").await;
}

/// Under a host name, the new administrator is offered a passkey first (issue 14, item
/// 5), then goes on to the admin pages.
#[tokio::test]
async fn setup_offers_a_passkey_under_a_host_name() {
    let server = Server::named("localhost", "").start().await;
    setup_once(server, "/account/passkey?next=%2Fadmin").await;
}

async fn setup_once(server: Server, lands: &str) {
    let log = server.log();
    let link = log
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(&format!("{}/setup?token=", server.issuer)))
        .expect("setup link printed");
    let path = link.strip_prefix(&server.issuer).unwrap().to_string();
    let mut b = server.browser();
    let page = b.get(&path).await;
    assert_eq!(page.status, 200);
    let csrf = page.input("csrf").unwrap();
    let token = page.input("token").unwrap();
    let form = |pw2: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("token", token.clone()),
            ("username", "root-admin".to_string()),
            ("email", "admin@example.com".to_string()),
            ("password", PASSWORD.to_string()),
            ("password2", pw2.to_string()),
        ]
    };
    let mismatch: Vec<(&str, String)> = form("something else entirely");
    let pairs: Vec<(&str, &str)> = mismatch.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = b.post_form("/setup", &pairs).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("differ"));

    let good = form(PASSWORD);
    let pairs: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = b.post_form("/setup", &pairs).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location(), lands);
    if lands.starts_with("/account/passkey") {
        let offer = b.get(lands).await;
        assert_eq!(offer.status, 200, "{}", offer.body);
        assert!(offer.body.contains("id=\"add-passkey\""), "{}", offer.body);
        assert!(offer.body.contains("href=\"/admin\""), "{}", offer.body);
        // A fresh sign-in: adding the passkey asks for no password.
        assert!(!offer.body.contains("name=\"current\""), "{}", offer.body);
    }
    assert!(b.get("/").await.body.contains("signed in as root-admin"));
    let user = server
        .cli(&["user", "show", "root-admin", "--json"], None)
        .json();
    assert_eq!(user["groups"][0], "admin");

    // The link works once.
    assert_eq!(server.browser().get(&path).await.status, 404);
    let r = b.post_form("/setup", &pairs).await;
    assert_eq!(r.status, 404);
}

/// SPEC §8 / security baseline: every class of response (pages, redirects, protocol JSON
/// on success and on error, metadata, health, metrics, 404/405) carries the baseline
/// headers; credentials and page responses are never cached; every cookie set along a
/// whole sign-in is `__Host-`, Secure, HttpOnly, SameSite and host-only.
#[tokio::test]
async fn every_endpoint_class_carries_the_security_headers() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let (id, secret) = server.add_client(&[]);
    let mut b = server.browser();
    let auth = basic(&id, &secret);
    let mut checked = 0;
    let mut check = |what: &str, r: &Resp, class: Class| {
        checked += 1;
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{what}");
        let hsts = r.header("strict-transport-security").unwrap_or_default();
        assert!(
            hsts.starts_with("max-age=31536000"),
            "{what}: HSTS {hsts:?}"
        );
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
            "{what}: CSP {csp:?}"
        );
        assert!(!csp.contains("unsafe-"), "{what}: CSP {csp:?}");
        assert!(
            r.header("server").is_none_or(|s| !s.contains('/')),
            "{what}: no version banner"
        );
        let cache = r.header("cache-control").unwrap_or_default();
        match class {
            Class::Metadata => assert!(cache.starts_with("public, max-age="), "{what}: {cache}"),
            Class::Page => {
                assert_eq!(cache, "no-store", "{what}");
                assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}");
                assert!(csp.contains("base-uri 'none'"), "{what}: CSP {csp:?}");
                assert!(
                    r.header("content-type")
                        .unwrap_or_default()
                        .starts_with("text/html"),
                    "{what}"
                );
            }
            Class::Credentials => {
                assert_eq!(cache, "no-store", "{what}");
                assert_eq!(r.header("pragma"), Some("no-cache"), "{what}");
            }
            Class::Other => assert_eq!(cache, "no-store", "{what}"),
        }
    };

    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
        "/api/v1/oauth/discovery/keys",
    ] {
        check(path, &b.get(path).await, Class::Metadata);
    }
    let (verifier, challenge) = pkce();
    let start = b
        .get(&authorize_url(
            &id,
            &format!("&code_challenge={challenge}&code_challenge_method=S256"),
        ))
        .await;
    check("authorize redirect", &start, Class::Other);
    let login = b.get(&start.location()).await;
    check("login page", &login, Class::Page);
    let callback = b.drive_to_callback(start, "alice").await;
    let tokens = b.redeem(&callback, Some(&verifier), &auth).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    check("token success", &tokens, Class::Credentials);
    let access = tokens.json()["access_token"].as_str().unwrap().to_string();
    let refresh = tokens.json()["refresh_token"].as_str().map(str::to_string);
    let bearer = format!("Bearer {access}");
    let info = b
        .get_with("/api/v1/oauth/userinfo", &[("authorization", &bearer)])
        .await;
    assert_eq!(info.status, 200);
    check("userinfo success", &info, Class::Other);
    check(
        "userinfo without token",
        &b.get("/api/v1/oauth/userinfo").await,
        Class::Other,
    );
    let intro = b
        .post_form_with(
            "/api/v1/oauth/introspect",
            &[("token", &access)],
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(intro.status, 200);
    check("introspection success", &intro, Class::Other);
    if let Some(rt) = refresh {
        let revoked = b
            .post_form_with(
                "/api/v1/oauth/revoke",
                &[("token", &rt)],
                &[("authorization", &auth)],
            )
            .await;
        assert_eq!(revoked.status, 200);
        check("revocation success", &revoked, Class::Other);
    }
    for path in [
        "/api/v1/oauth/token",
        "/api/v1/oauth/revoke",
        "/api/v1/oauth/introspect",
        "/api/v1/oauth/device_authorization",
    ] {
        let r = b.post_form(path, &[("grant_type", "nonsense")]).await;
        assert!((400..500).contains(&r.status), "{path}: {}", r.status);
        check(&format!("{path} error"), &r, Class::Credentials);
    }
    let par = b
        .post_form("/api/v1/oauth/par", &[("client_id", "nobody")])
        .await;
    check("par error", &par, Class::Other);
    for path in [
        "/api/v1/oauth/authorize?client_id=nobody&response_type=code",
        "/consent",
        "/logout",
        "/api/v1/oauth/logout",
        "/setup",
    ] {
        check(path, &b.get(path).await, Class::Page);
    }
    for path in ["/healthz", "/metrics", "/device", "/no-such-page"] {
        check(path, &b.get(path).await, Class::Other);
    }
    let wrong_method = b
        .try_send("DELETE", "/api/v1/oauth/token", &[], "")
        .await
        .unwrap();
    assert_eq!(wrong_method.status, 405);
    check("405", &wrong_method, Class::Other);
    assert!(checked >= 25, "{checked} responses checked");

    assert!(!b.set_cookies.is_empty());
    for cookie in &b.set_cookies {
        assert!(cookie.starts_with("__Host-"), "{cookie}");
        for attr in ["Secure", "HttpOnly", "Path=/", "SameSite="] {
            assert!(cookie.contains(attr), "{attr} in {cookie}");
        }
        assert!(!cookie.to_ascii_lowercase().contains("domain="), "{cookie}");
    }
}

#[derive(Clone, Copy)]
enum Class {
    /// Discovery and JWKS: relying parties may cache them briefly.
    Metadata,
    /// HTML pages: full page CSP, no framing, never cached.
    Page,
    /// Token responses and OAuth error bodies (RFC 6749 §5.1, §5.2): no-store and no-cache.
    Credentials,
    Other,
}

#[tokio::test]
async fn error_pages_name_the_request_id_that_was_logged() {
    let server = Server::new("").start().await;
    let mut b = server.browser();
    let r = b
        .get("/api/v1/oauth/authorize?client_id=nobody&response_type=code&scope=openid")
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let id = r.header("x-request-id").unwrap().to_string();
    assert!(
        r.body.contains(&format!("<code>{id}</code>")),
        "{id}: {}",
        r.body
    );
    // The same id is in the access log line of that request.
    let logged = (0..50).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        server.log().contains(&id)
    });
    assert!(logged, "{id} not in the log");
}

#[tokio::test]
async fn one_route_table_answers_404_405_with_allow_and_cors() {
    let server = Server::new("").start().await;
    let mut b = server.browser();
    for (method, path, status, allow) in [
        ("POST", "/healthz", 405, Some("GET, HEAD")),
        ("GET", "/api/v1/oauth/token", 405, Some("POST, OPTIONS")),
        ("GET", "/api/v1/openid/token", 405, Some("POST, OPTIONS")),
        ("DELETE", "/login", 405, Some("GET, HEAD, POST")),
        ("POST", "/", 405, Some("GET, HEAD")),
        ("HEAD", "/healthz", 200, None),
        ("HEAD", "/.well-known/openid-configuration", 200, None),
        ("GET", "/nope", 404, None),
        ("GET", "/administrator", 404, None),
        ("OPTIONS", "/api/v1/oauth/userinfo", 204, None),
    ] {
        let r = b.try_send(method, path, &[], "").await.unwrap();
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        assert_eq!(r.header("allow"), allow, "{method} {path}");
    }
    let r = b.get("/.well-known/openid-configuration").await;
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let r = b.get("/login").await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        None,
        "pages have no CORS"
    );
}

#[tokio::test]
async fn every_oauth_json_error_says_no_store_and_no_cache() {
    // RFC 6749 §5.1; the PAR endpoint's errors used to lack Pragma.
    let server = Server::new("").start().await;
    let mut b = server.browser();
    for path in [
        "/api/v1/oauth/token",
        "/api/v1/oauth/par",
        "/api/v1/oauth/device_authorization",
        "/api/v1/oauth/introspect",
        "/api/v1/oauth/revoke",
    ] {
        let r = b.post_form(path, &[("client_id", "nobody")]).await;
        assert_eq!(r.status, 401, "{path}: {}", r.body);
        assert_eq!(r.header("pragma"), Some("no-cache"), "{path}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
    }
}
