//! Sign-in rules over time, called in-process (`App::respond`) at a clock the test sets:
//! throttle delays, the attempts of a pending sign-in and the re-authentication window
//! are checked by moving the clock, never by sleeping.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::HeaderMap;
use hyper::{Method, StatusCode};
use latchkey::http::{App, Req};

use crate::support::{TempDir, html_unescape};

const PASSWORD: &str = "correct horse battery staple";

/// The service in-process, on a clock the test moves (also used by `inprocess`).
pub(crate) struct Service {
    _dir: TempDir,
    pub(crate) app: Arc<App>,
    now_ms: AtomicI64,
}

impl Service {
    pub(crate) fn new(extra: &str) -> Service {
        let dir = TempDir::new();
        let text = format!(
            "issuer = \"https://id.example.test\"\ndata_dir = \"{}\"\n[password]\nmemory_kib = 19456\niterations = 2\n{extra}",
            dir.0.join("data").display()
        );
        let env = latchkey::config::Env {
            hostname: "id.example.test".into(),
            ..Default::default()
        };
        let config = latchkey::config::parse(Some(&text), &env).unwrap();
        let now = latchkey::clock::now();
        let p = latchkey::server::prepare(&config, now).unwrap();
        let app = App::new(config, p.store, p.keys, &p.csrf_secret, p.dummy_hash).unwrap();
        Service {
            _dir: dir,
            app: Arc::new(app),
            now_ms: AtomicI64::new(now * 1000),
        }
    }

    fn now(&self) -> i64 {
        self.now_ms() / 1000
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }

    fn advance_ms(&self, ms: i64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// `App::respond` at the service's clock, from a fixed documentation address.
    pub(crate) async fn call(
        &self,
        method: Method,
        target: &str,
        headers: HeaderMap,
        body: &str,
    ) -> Answer {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let resp = self
            .app
            .respond(Req {
                method,
                path: path.to_string(),
                query: query.to_string(),
                headers,
                body: Bytes::from(body.to_string()),
                peer: "192.0.2.10".parse().unwrap(),
                now_ms: self.now_ms(),
            })
            .await;
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// A user with the test password (and a TOTP secret when `totp`, returned).
    fn add_user(&self, name: &str, groups: &[&str], totp: bool) -> Option<String> {
        let new = latchkey::admin::NewUser {
            username: name.into(),
            email: format!("{name}@example.test"),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        };
        let store = self.app.store.as_ref();
        let mut user = latchkey::admin::create_user(
            store,
            &self.app.config.password,
            new,
            PASSWORD,
            self.now(),
        )
        .unwrap();
        if !totp {
            return None;
        }
        let secret = latchkey::keys::totp::new_secret();
        user.mfa.totp_secret = Some(secret.clone());
        store.update_user(&user).unwrap();
        Some(secret)
    }

    fn browser(&self) -> Browser<'_> {
        Browser {
            s: self,
            cookies: HashMap::new(),
        }
    }
}

/// A response, read whole.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Answer {
    fn location(&self) -> String {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no Location ({}): {}", self.status, self.body))
            .to_string()
    }

    fn input(&self, name: &str) -> Option<String> {
        let needle = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&needle)? + needle.len();
        let end = self.body[start..].find('"')? + start;
        Some(html_unescape(&self.body[start..end]))
    }
}

/// A browser with a cookie jar, on the service's clock.
struct Browser<'a> {
    s: &'a Service,
    cookies: HashMap<String, String>,
}

impl Browser<'_> {
    async fn call(&mut self, method: Method, target: &str, body: &str) -> Answer {
        let mut h = HeaderMap::new();
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            h.insert("cookie", jar.join("; ").parse().unwrap());
        }
        if method == Method::POST {
            h.insert(
                "content-type",
                "application/x-www-form-urlencoded".parse().unwrap(),
            );
        }
        let a = self.s.call(method, target, h, body).await;
        for c in a.headers.get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let (pair, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") || value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
        a
    }

    async fn get(&mut self, target: &str) -> Answer {
        self.call(Method::GET, target, "").await
    }

    async fn post(&mut self, target: &str, form: &[(&str, &str)]) -> Answer {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        self.call(Method::POST, target, &body).await
    }

    /// Posts the form of `page` (with its CSRF token) to `action`.
    async fn post_on(&mut self, page: &str, action: &str, fields: &[(&str, &str)]) -> Answer {
        let p = self.get(page).await;
        assert_eq!(p.status, 200, "{page}: {}", p.body);
        let csrf = p.input("csrf").unwrap();
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(fields);
        self.post(action, &form).await
    }

    async fn sign_in(&mut self, username: &str) -> Answer {
        self.post_on(
            "/login",
            "/login",
            &[("username", username), ("password", PASSWORD)],
        )
        .await
    }

    async fn code(&mut self, code: &str) -> Answer {
        self.post_on("/login/2fa", "/login/2fa", &[("code", code)])
            .await
    }
}

#[tokio::test]
async fn wrong_codes_are_delayed_then_send_the_sign_in_back_to_the_password() {
    let s = Service::new("");
    s.add_user("alice", &[], true);
    let mut b = s.browser();
    assert_eq!(b.sign_in("alice").await.location(), "/login/2fa");
    // Three failures are free, the fourth is answered too, then the account's delay
    // (one second) holds the next code back until the clock has moved on.
    for _ in 0..4 {
        let r = b.code("000000").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
        assert!(r.body.contains("not valid"), "{}", r.body);
    }
    let r = b.code("000000").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    s.advance_ms(999);
    assert_eq!(b.code("000000").await.status, StatusCode::TOO_MANY_REQUESTS);
    s.advance_ms(2);
    // The fifth wrong code ends the pending sign-in.
    let r = b.code("000000").await;
    assert!(r.body.contains("Too many wrong codes"), "{}", r.body);
    assert_eq!(b.get("/login/2fa").await.status, StatusCode::BAD_REQUEST);
    assert!(b.get("/account").await.location().starts_with("/login"));
}

#[tokio::test]
async fn a_right_code_after_the_delay_signs_in_and_clears_the_count() {
    let s = Service::new("");
    let secret = s.add_user("alice", &[], true).unwrap();
    let mut b = s.browser();
    b.sign_in("alice").await;
    for _ in 0..4 {
        b.code("000000").await;
    }
    let right = latchkey::keys::totp::code_at(&secret, s.now()).unwrap();
    assert_eq!(
        b.code(&right).await.status,
        StatusCode::TOO_MANY_REQUESTS,
        "even a right code waits out the delay"
    );
    s.advance_ms(1001);
    let right = latchkey::keys::totp::code_at(&secret, s.now()).unwrap();
    assert_eq!(b.code(&right).await.location(), "/account");
    // Counted from zero again: a new sign-in's wrong codes are answered at once.
    s.advance_ms(30_000);
    let mut c = s.browser();
    c.sign_in("alice").await;
    for _ in 0..3 {
        assert_eq!(c.code("000000").await.status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn a_pending_sign_in_expires_after_ten_minutes() {
    let s = Service::new("");
    s.add_user("alice", &[], true);
    let mut b = s.browser();
    b.sign_in("alice").await;
    s.advance_ms(latchkey::signin::PENDING_TTL * 1000 + 1000);
    let page = b.get("/login/2fa").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("expired"), "{}", page.body);
}

#[tokio::test]
async fn sensitive_admin_actions_ask_for_the_password_once_the_window_has_passed() {
    let s = Service::new("[session]\nreauth_secs = 60\n");
    s.add_user("root", &["admin"], false);
    let mut b = s.browser();
    assert_eq!(b.sign_in("root").await.location(), "/account");
    let fields = [
        ("name", "Quiet app"),
        ("redirect_uri", "https://quiet.example/cb"),
        ("scope", "openid"),
        ("type", "confidential"),
        ("skip_consent", "yes"),
    ];
    // Within the window: created at once.
    let r = b
        .post_on("/admin/clients/new", "/admin/clients/new", &fields)
        .await;
    assert!(!r.body.contains("Confirm it is you"), "{}", r.body);
    let count = |s: &Service| {
        s.app
            .store
            .clients()
            .unwrap()
            .iter()
            .filter(|c| c.name == "Quiet app")
            .count()
    };
    assert_eq!(count(&s), 1);
    // Past it (whole seconds): the password first, and nothing is created before it.
    s.advance_ms(61_000);
    let r = b
        .post_on("/admin/clients/new", "/admin/clients/new", &fields)
        .await;
    assert!(r.body.contains("Confirm it is you"), "{}", r.body);
    assert_eq!(count(&s), 1, "nothing created before the password");
    // An application that asks for consent is not a sensitive action.
    let r = b
        .post_on("/admin/clients/new", "/admin/clients/new", &fields[..4])
        .await;
    assert!(!r.body.contains("Confirm it is you"), "{}", r.body);
    // Editing an application is.
    let id = s.app.store.clients().unwrap()[0].client_id.clone();
    let edit = format!("/admin/clients/{id}");
    let r = b.post_on(&edit, &edit, &[("name", "Renamed")]).await;
    assert!(r.body.contains("Confirm it is you"), "{}", r.body);
    // So is disabling a user; a wrong password changes nothing.
    s.add_user("carol", &[], false);
    let carol = s.app.store.user_by_name("carol").unwrap().unwrap();
    let page = format!("/admin/users/{}", carol.id);
    let r = b.post_on(&page, &format!("{page}/disable"), &[]).await;
    assert!(r.body.contains("Confirm it is you"), "{}", r.body);
    let (csrf, back) = (r.input("csrf").unwrap(), r.input("back").unwrap());
    let wrong = b
        .post(
            "/admin/reauth",
            &[
                ("csrf", &csrf),
                ("back", &back),
                ("password", "nope nope nope"),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(!s.app.store.user_by_name("carol").unwrap().unwrap().disabled);
    // Confirmed: back to the page, and the window starts again.
    let ok = b
        .post(
            "/admin/reauth",
            &[("csrf", &csrf), ("back", &back), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(ok.location(), page);
    let r = b.post_on(&page, &format!("{page}/disable"), &[]).await;
    assert_eq!(r.location(), page, "{}", r.body);
    assert!(s.app.store.user_by_name("carol").unwrap().unwrap().disabled);
    s.advance_ms(61_000);
    let r = b.post_on(&edit, &edit, &[("name", "Renamed")]).await;
    assert!(r.body.contains("Confirm it is you"), "{}", r.body);
    let csrf = r.input("csrf").unwrap();
    let back = r.input("back").unwrap();
    let ok = b
        .post(
            "/admin/reauth",
            &[("csrf", &csrf), ("back", &back), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let r = b
        .post_on("/admin/clients/new", "/admin/clients/new", &fields)
        .await;
    assert!(!r.body.contains("Confirm it is you"), "{}", r.body);
    assert_eq!(count(&s), 3);
}

/// A new passkey signs in on its own, so a session cookie alone adds none once the
/// re-authentication window has passed: the password is asked for first.
#[tokio::test]
async fn adding_a_passkey_after_the_window_needs_the_password() {
    let s = Service::new("[session]\nreauth_secs = 60\n");
    s.add_user("carol", &[], false);
    let mut b = s.browser();
    assert_eq!(b.sign_in("carol").await.location(), "/account");
    let start = "/account/passkeys/start";
    let r = b.post_on("/account", start, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("\"ceremony\""), "{}", r.body);
    s.advance_ms(61_000);
    let page = b.get("/account").await;
    assert!(
        page.body.contains("id=\"passkey-password\""),
        "the form asks for it"
    );
    let r = b.post_on("/account", start, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert!(!r.body.contains("\"ceremony\""));
    let r = b
        .post_on("/account", start, &[("current", "not the password")])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    let r = b.post_on("/account", start, &[("current", PASSWORD)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("\"ceremony\""), "{}", r.body);
}

/// Issue 16: a reset link from a mail works for one hour, then is refused. The mail goes
/// through a real SMTP server; the hour passes on the service's clock.
#[tokio::test]
async fn a_mailed_reset_link_expires_after_an_hour() {
    let dir = TempDir::new();
    let smtp = crate::support::smtp::Smtp::start(&dir.0, crate::support::free_port(), None);
    let s = Service::new(&crate::support::smtp::mail_config(smtp.port, ""));
    s.add_user("alice", &[], false);
    let mut b = s.browser();
    let asked = b
        .post_on("/reset", "/reset", &[("username", "alice")])
        .await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.body);
    // The worker's part, at the service's clock: send what is queued.
    let store = s.app.store.as_ref();
    let queued = store.outbox().unwrap();
    assert_eq!(queued.len(), 1);
    let mailer = s.app.mailer.as_ref().expect("mail is configured");
    let outcome = latchkey::mail::outbox::deliver(
        store,
        &s.app.config.issuer,
        &s.app.config.instance_name,
        mailer,
        &queued[0],
        s.now(),
    );
    assert!(
        matches!(outcome, latchkey::mail::outbox::Outcome::Sent(_)),
        "{outcome:?}"
    );
    let mails = smtp.wait_for(1, std::time::Duration::from_secs(10)).await;
    let link = crate::support::smtp::link_in(&mails[0], "https://id.example.test/reset?token=");
    let path = link.strip_prefix("https://id.example.test").unwrap();
    s.advance_ms((3600 - 5) * 1000);
    assert_eq!(b.get(path).await.status, StatusCode::OK, "still valid");
    s.advance_ms(10 * 1000);
    let expired = b.get(path).await;
    assert_eq!(expired.status, StatusCode::NOT_FOUND, "{}", expired.body);
}
