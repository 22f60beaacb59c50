//! Issue 4 in a real browser: headless Debian Chromium driven over WebDriver
//! (`support/webdriver.rs`) through the first five minutes of an office's Latchkey and a
//! staff member's day, with a screenshot of every page visited under
//! `target/screenshots/<test>/` (artifacts, not committed). `scripts/test` installs
//! `chromium` and `chromium-driver` when they are missing.

use std::time::Duration;

use crate::support::webdriver::Driver;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(15);

pub(crate) fn artifacts(test: &str) -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("screenshots").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A free port on 127.0.0.1.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// An application's callback on 127.0.0.1: answers every request with a small page.
pub(crate) async fn relying_party() -> u16 {
    let port = free_port();
    serve_on(
        port,
        "<!doctype html><title>Wiki</title><h1>Wiki: sign-in received</h1>",
    )
    .await;
    port
}

fn setup_link(server: &Server) -> String {
    server
        .log()
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(&format!("{}/setup?token=", server.issuer)))
        .expect("setup link printed")
        .to_string()
}

/// Signs in on the login page the browser is at.
pub(crate) async fn sign_in(d: &Driver, name: &str, username: &str, password: &str) {
    d.wait_for("#username", WAIT).await;
    d.screenshot(name).await;
    d.fill("#username", username).await;
    d.fill("#password", password).await;
    d.click("form[action='/login'] button[type=submit]").await;
}

pub(crate) async fn sign_out(d: &Driver, server: &Server) {
    d.goto(&format!("{}/account", server.issuer)).await;
    d.screenshot("account-before-sign-out").await;
    d.click("header form button.link").await;
    d.wait_url(|u| !u.contains("/account"), WAIT).await;
    d.screenshot("signed-out").await;
}

/// The first run to a revoked application, as the issue tells it: setup, an administrator
/// registers an application and a user in the admin pages, the user signs in to it through
/// consent, enrols TOTP, signs in with the second factor, and revokes the application on
/// the account page, after which its refresh token no longer works.
#[tokio::test]
async fn from_first_run_to_a_revoked_application() {
    let server = Server::new("instance_name = \"Acme Office\"\n")
        .start()
        .await;
    let rp = relying_party().await;
    let callback = format!("http://127.0.0.1:{rp}/oauth/callback");
    let d = Driver::start(artifacts("first_run_to_revoked_application")).await;
    let issuer = server.issuer.clone();

    // First run: the setup link creates the administrator and signs them in.
    d.goto(&setup_link(&server)).await;
    d.wait_for("#password2", WAIT).await;
    assert!(d.source().await.contains("Acme Office"));
    d.screenshot("setup").await;
    d.fill("#username", "office-admin").await;
    d.fill("#email", "admin@acme.example").await;
    d.fill("#password", PASSWORD).await;
    d.fill("#password2", PASSWORD).await;
    d.click("form[action='/setup'] button[type=submit]").await;
    d.wait_url(|u| u.ends_with("/admin/clients"), WAIT).await;
    d.screenshot("admin-applications-empty").await;
    d.goto(&setup_link(&server)).await;
    assert!(
        d.source().await.contains("Setup link not valid"),
        "the link works once"
    );
    d.screenshot("setup-link-used").await;

    // The administrator registers an application with two redirect URLs (the second row
    // added with the page's button) and offline access.
    d.goto(&format!("{issuer}/admin/clients")).await;
    d.screenshot("admin-applications").await;
    d.click("#add-client").await;
    d.wait_for("#name", WAIT).await;
    d.screenshot("add-application").await;
    d.fill("#name", "Wiki").await;
    let rows = d.find_all("input[name=redirect_uri]").await;
    rows[0].send_keys(&callback).await;
    let before = rows.len();
    d.click("fieldset[data-rows=redirect_uri] [data-add-row]")
        .await;
    let rows = d.find_all("input[name=redirect_uri]").await;
    assert_eq!(rows.len(), before + 1, "the Add button adds a row");
    rows[rows.len() - 1]
        .send_keys(&format!("http://127.0.0.1:{rp}/other"))
        .await;
    d.click("input[name=scope][value=offline_access]").await;
    d.screenshot("add-application-filled").await;
    d.click("#save-client").await;
    d.wait_for("#once-2", WAIT).await;
    d.screenshot("application-created").await;
    let client_id = d.text("#once-1").await;
    let secret = d.text("#once-2").await;
    assert!(!client_id.is_empty() && secret.len() > 20);
    let copy = d.find("button[data-copy=once-2]").await;
    assert_eq!(
        copy.attr("hidden").await,
        None,
        "copy buttons appear with JavaScript"
    );
    let shown = server
        .cli(&["client", "show", &client_id, "--json"], None)
        .json();
    assert_eq!(shown["redirect_uris"].as_array().unwrap().len(), 2);

    // ... and a user.
    d.goto(&format!("{issuer}/admin/users")).await;
    d.screenshot("users").await;
    d.click("#add-user").await;
    d.wait_for("#username", WAIT).await;
    d.fill("#username", "bob").await;
    d.fill("#email", "bob@acme.example").await;
    d.fill("#given_name", "Bob").await;
    d.fill("#password", "a sunny first passphrase").await;
    d.screenshot("add-user").await;
    d.click("#save-user").await;
    d.wait_url(
        |u| u.contains("/admin/users/") && !u.ends_with("/new"),
        WAIT,
    )
    .await;
    d.screenshot("user-created").await;
    for page in ["groups", "sessions", "audit", "keys"] {
        d.goto(&format!("{issuer}/admin/{page}")).await;
        d.screenshot(&format!("admin-{page}")).await;
    }
    sign_out(&d, &server).await;

    // Bob signs in to the application through the consent page.
    let (verifier, challenge) = pkce();
    let authorize = format!(
        "{issuer}/api/v1/oauth/authorize?client_id={client_id}&redirect_uri={}&response_type=code&scope={}&state=s1&nonce=n1&code_challenge={challenge}&code_challenge_method=S256",
        enc(&callback),
        enc("openid profile email offline_access"),
    );
    d.goto(&authorize).await;
    sign_in(&d, "login", "bob", "a sunny first passphrase").await;
    d.wait_for("button[value=allow]", WAIT).await;
    let consent = d.source().await;
    assert!(consent.contains("Wiki"));
    d.screenshot("consent").await;
    d.click("button[value=allow]").await;
    let back = d.wait_url(|u| u.starts_with(&callback), WAIT).await;
    d.screenshot("application-callback").await;
    let code = params_of(&back)["code"].clone();
    let mut http = server.browser();
    let auth = basic(&client_id, &secret);
    let tokens = http
        .post_form_with(
            "/api/v1/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &callback),
                ("code_verifier", &verifier),
            ],
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let refresh = tokens.json()["refresh_token"]
        .as_str()
        .expect("offline access gives a refresh token")
        .to_string();

    // Bob enrols an authenticator app on the account page.
    d.goto(&format!("{issuer}/account")).await;
    d.screenshot("account").await;
    // Readable on a phone: no sideways scrolling at 390 CSS pixels.
    d.resize(390, 844).await;
    let overflow = d
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            &[],
        )
        .await;
    assert_eq!(
        overflow.as_i64(),
        Some(0),
        "the account page fits a phone's width"
    );
    d.viewport_screenshot("account-phone").await;
    d.resize(1280, 1000).await;
    d.click("#setup-2fa").await;
    d.wait_for("svg.qr", WAIT).await;
    d.screenshot("enrol-totp").await;
    let totp_secret = d.text("#totp-secret").await;
    let now = latchkey::clock::now();
    d.fill(
        "#code",
        &latchkey::keys::totp::code_at(&totp_secret, now).unwrap(),
    )
    .await;
    d.fill("#current", "a sunny first passphrase").await;
    d.click("form[action='/account/2fa'] button[type=submit]")
        .await;
    d.wait_for("#recovery-codes", WAIT).await;
    d.screenshot("recovery-codes").await;
    assert_eq!(d.find_all("#recovery-codes li").await.len(), 10);
    d.click("#continue").await;
    d.wait_url(|u| u.ends_with("/account"), WAIT).await;
    d.screenshot("account-two-factor-on").await;
    sign_out(&d, &server).await;

    // Signing in again asks for the second factor; consent is remembered.
    d.goto(&authorize.replace("state=s1", "state=s2")).await;
    sign_in(&d, "login-again", "bob", "a sunny first passphrase").await;
    d.wait_for("#code", WAIT).await;
    d.screenshot("second-factor").await;
    let next = latchkey::keys::totp::code_at(&totp_secret, now + 30).unwrap();
    d.fill("#code", &next).await;
    d.click("form[action='/login/2fa'] button[type=submit]")
        .await;
    let back = d.wait_url(|u| u.starts_with(&callback), WAIT).await;
    assert_eq!(params_of(&back)["state"], "s2");
    d.screenshot("application-callback-2fa").await;

    // Bob revokes the application; its refresh token stops working.
    let before = http.refresh(&refresh, &auth).await;
    assert_eq!(before.status, 200, "works before: {}", before.body);
    let refresh = before.json()["refresh_token"].as_str().unwrap().to_string();
    d.goto(&format!("{issuer}/account")).await;
    d.screenshot("account-with-application").await;
    d.click("button[aria-label='Revoke access of Wiki']").await;
    d.wait_url(|u| u.ends_with("/account?done=app"), WAIT).await;
    d.screenshot("application-revoked").await;
    assert!(!d.source().await.contains("Revoke access of Wiki"));
    let refused = http.refresh(&refresh, &auth).await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["error"], "invalid_grant");

    // Light and dark follow the system setting.
    let background = || async {
        d.execute(
            "return getComputedStyle(document.body).backgroundColor;",
            &[],
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    };
    let light = background().await;
    d.cdp(
        "Emulation.setEmulatedMedia",
        serde_json::json!({"features": [{"name": "prefers-color-scheme", "value": "dark"}]}),
    )
    .await;
    let dark = background().await;
    assert_ne!(light, dark, "the page has a dark variant");
    assert_eq!(dark, "rgb(17, 20, 24)");
    d.screenshot("account-dark").await;
    sign_out(&d, &server).await;
    d.goto(&format!("{issuer}/login")).await;
    d.screenshot("login-dark").await;
}

/// Everything works with JavaScript off: the forms are plain HTML (the copy buttons and
/// the "Add a URL" button are enhancements that stay hidden).
#[tokio::test]
async fn the_pages_work_without_javascript() {
    let server = Server::new("").start().await;
    server.add_user("root", &["--group", "admin"]);
    let d = Driver::start(artifacts("without_javascript")).await;
    d.cdp(
        "Emulation.setScriptExecutionDisabled",
        serde_json::json!({"value": true}),
    )
    .await;
    let issuer = server.issuer.clone();
    d.goto(&format!("{issuer}/admin/clients/new")).await;
    sign_in(&d, "login-no-js", "root", PASSWORD).await;
    d.wait_url(|u| u.ends_with("/admin/clients/new"), WAIT)
        .await;
    d.wait_for("#name", WAIT).await;
    for button in d.find_all("[data-add-row], [data-remove-row]").await {
        assert!(
            !button.is_displayed().await,
            "row buttons need JavaScript: hidden"
        );
    }
    d.fill("#name", "Intranet").await;
    let rows = d.find_all("input[name=redirect_uri]").await;
    assert!(rows.len() >= 2, "a blank row to type a second URL into");
    rows[0]
        .send_keys("https://intranet.example/oidc/callback")
        .await;
    rows[1].send_keys("https://intranet.example/other").await;
    d.click("input[name=type][value=public]").await;
    d.viewport_screenshot("add-application-no-js").await;
    d.click("#save-client").await;
    d.wait_for("#once-1", WAIT).await;
    d.viewport_screenshot("application-created-no-js").await;
    let id = d.text("#once-1").await;
    assert!(
        d.try_find("#once-2").await.is_none(),
        "a public client has no secret"
    );
    let copy = d.find("button[data-copy=once-1]").await;
    assert!(
        !copy.is_displayed().await,
        "copy buttons need JavaScript: hidden"
    );
    let shown = server.cli(&["client", "show", &id, "--json"], None).json();
    assert_eq!(shown["public"], true);
    assert_eq!(shown["redirect_uris"].as_array().unwrap().len(), 2);
}

/// A step-up started from an application on another site (http://localhost, while the
/// provider is https://127.0.0.1): the code page must find the pending sign-in, which a
/// SameSite=Strict cookie would not bring along on that cross-site redirect.
#[tokio::test]
async fn step_up_from_an_application_on_another_site() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let port = free_port();
    let callback = format!("http://localhost:{port}/cb");
    let (wiki, _) = server.add_client(&["--redirect-uri", &callback, "--skip-consent"]);
    let (payroll, _) = server.add_client(&[
        "--redirect-uri",
        &callback,
        "--skip-consent",
        "--policy",
        "two_factor",
    ]);
    let link = |client: &str| {
        format!(
            "{}/api/v1/oauth/authorize?client_id={client}&redirect_uri={}&response_type=code&scope=openid&state=s&nonce=n",
            server.issuer,
            enc(&callback)
        )
    };
    let page: &'static str = Box::leak(
        format!(
            "<!doctype html><title>Intranet</title><a id=\"wiki\" href=\"{}\">Wiki</a> <a id=\"payroll\" href=\"{}\">Payroll</a>",
            link(&wiki),
            link(&payroll)
        )
        .into_boxed_str(),
    );
    serve_on(port, page).await;
    let d = Driver::start(artifacts("step_up_from_another_site")).await;
    let home = format!("http://localhost:{port}/");

    d.goto(&home).await;
    d.screenshot("application-home").await;
    d.click("#wiki").await;
    sign_in(&d, "login", "alice", PASSWORD).await;
    d.wait_url(|u| u.starts_with(&callback), WAIT).await;
    d.screenshot("wiki-callback").await;

    // Alice sets up an authenticator elsewhere; this browser still has one factor.
    let mut other = server.browser();
    other.login("/login", "alice", PASSWORD).await;
    let enrol_page = other.get("/account/2fa").await;
    let secret = html_unescape(
        enrol_page
            .body
            .split("<code id=\"totp-secret\">")
            .nth(1)
            .and_then(|r| r.split("</code>").next())
            .unwrap(),
    );
    let now = latchkey::clock::now();
    let csrf = enrol_page.input("csrf").unwrap();
    let code = latchkey::keys::totp::code_at(&secret, now).unwrap();
    let done = other
        .post_form(
            "/account/2fa",
            &[("csrf", &csrf), ("code", &code), ("current", PASSWORD)],
        )
        .await;
    assert_eq!(done.status, 200);

    d.goto(&home).await;
    d.screenshot("application-home-again").await;
    d.click("#payroll").await;
    d.wait_for("#code", WAIT).await;
    d.screenshot("second-factor-for-payroll").await;
    d.fill(
        "#code",
        &latchkey::keys::totp::code_at(&secret, now + 30).unwrap(),
    )
    .await;
    d.click("form[action='/login/2fa'] button[type=submit]")
        .await;
    let back = d.wait_url(|u| u.starts_with(&callback), WAIT).await;
    assert!(params_of(&back).contains_key("code"), "{back}");
    d.screenshot("payroll-callback").await;
}

#[tokio::test]
async fn a_logout_posted_from_another_site_ends_the_session() {
    // Issue 12: the application's page (another origin) posts RP-Initiated Logout with an
    // id_token_hint; the SameSite=Lax session cookie does not come along, so the server
    // must end the session the hint names.
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let port = free_port();
    let callback = format!("http://localhost:{port}/cb");
    let bye = format!("http://localhost:{port}/bye");
    let (bc_port, mut bodies) = body_receiver().await;
    let bc = format!("http://127.0.0.1:{bc_port}/backchannel");
    let (client, secret) = server.add_client(&[
        "--redirect-uri",
        &callback,
        "--skip-consent",
        "--post-logout-redirect-uri",
        &bye,
        "--backchannel-logout-uri",
        &bc,
    ]);
    let link = |extra: &str| {
        format!(
            "{}/api/v1/oauth/authorize?client_id={client}&redirect_uri={}&response_type=code&scope=openid&state=s&nonce=n{extra}",
            server.issuer,
            enc(&callback)
        )
    };
    serve_on(port, "<!doctype html><title>Wiki</title><h1>Wiki</h1>").await;
    let d = Driver::start(artifacts("logout_from_another_site")).await;
    d.goto(&link("")).await;
    sign_in(&d, "login", "alice", PASSWORD).await;
    let back = d.wait_url(|u| u.starts_with(&callback), WAIT).await;
    let code = params_of(&back)["code"].clone();
    let mut api = server.browser();
    let tokens = api
        .post_form_with(
            "/api/v1/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &callback),
            ],
            &[("authorization", &basic(&client, &secret))],
        )
        .await
        .json();
    let id_token = tokens["id_token"].as_str().unwrap().to_string();
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {access}");
    let userinfo = || {
        let (mut b, bearer) = (server.browser(), bearer.clone());
        async move {
            b.get_with("/api/v1/oauth/userinfo", &[("authorization", &bearer)])
                .await
                .status
        }
    };
    assert_eq!(userinfo().await, 200);

    // The application's own page, on another origin, with a plain sign-out form.
    let app_port = free_port();
    let page: &'static str = Box::leak(
        format!(
            "<!doctype html><title>Wiki</title><form method=\"post\" action=\"{}/api/v1/oauth/logout\"><input type=\"hidden\" name=\"id_token_hint\" value=\"{id_token}\"><input type=\"hidden\" name=\"post_logout_redirect_uri\" value=\"{bye}\"><input type=\"hidden\" name=\"state\" value=\"s1\"><button id=\"out\" type=\"submit\">Sign out</button></form>",
            server.issuer
        )
        .into_boxed_str(),
    );
    serve_on(app_port, page).await;
    d.goto(&format!("http://localhost:{app_port}/")).await;
    d.screenshot("application-sign-out").await;
    d.click("#out").await;
    let landed = d.wait_url(|u| u.starts_with(&bye), WAIT).await;
    assert_eq!(params_of(&landed)["state"], "s1", "{landed}");

    // The session ended on the server: its tokens, the application told, a new sign-in.
    assert_eq!(
        userinfo().await,
        401,
        "the session's access token is revoked"
    );
    let body = tokio::time::timeout(Duration::from_secs(10), bodies.recv())
        .await
        .expect("back-channel logout delivered")
        .unwrap();
    let logout_token = form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    d.goto(&link("&prompt=none")).await;
    let silent = d.wait_url(|u| u.starts_with(&callback), WAIT).await;
    assert_eq!(
        params_of(&silent).get("error").map(String::as_str),
        Some("login_required"),
        "{silent}"
    );
    // A logout token is no id_token_hint.
    d.goto(&link(&format!("&id_token_hint={logout_token}")))
        .await;
    let refused = d.wait_url(|u| u.starts_with(&callback), WAIT).await;
    assert_eq!(params_of(&refused)["error"], "invalid_request", "{refused}");
}

/// Serves `page` on 127.0.0.1:`port`.
async fn serve_on(port: u16, page: &'static str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
}
