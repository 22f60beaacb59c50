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
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let unknown = b.login("/login", "mallory", "wrong password here").await;
    assert_eq!(unknown.status, 401);
    assert!(unknown.body.contains("Incorrect username or password."));

    // Right after a failure the same username must wait, even with the right password.
    let fast = b.login("/login", "mallory", PASSWORD).await;
    assert_eq!(fast.status, 429);
    assert!(fast.body.contains("Wait"));
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
    // The right password works once the delay has passed.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
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
    let server = Server::new("").start().await;
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
