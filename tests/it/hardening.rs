//! Issue 12: Latchkey stays up under abuse and never refuses the rightful owner. Throttling
//! with known-browser cookies, wrong client secrets beside right ones, a flood of
//! authorization requests from many loopback addresses (memory, sign-ins in progress,
//! audit rows), HTTP/1.1 framing over raw sockets, and the protocol details found by
//! review. `--nocapture` prints the figures.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn audit(server: &Server) -> Vec<Value> {
    server
        .cli(&["audit", "--json"], None)
        .json()
        .as_array()
        .unwrap()
        .clone()
}

fn count_kind(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["kind"] == kind).count()
}

/// The number of seconds a throttled page says to wait.
fn wait_secs(body: &str) -> u64 {
    let i = body.find("Wait ").expect("a wait message") + 5;
    body[i..].split(' ').next().unwrap().parse().unwrap()
}

/// A browser that completes a sign-in as `user`, then signs out: it keeps only its
/// known-browser cookie.
async fn known_browser(server: &Server, user: &str) -> Browser {
    let mut b = server.browser();
    let r = b.login("/login", user, PASSWORD).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(
        b.cookies.keys().any(|k| k.contains("known")),
        "a completed sign-in leaves a known-browser cookie: {:?}",
        b.set_cookies
    );
    b.cookies
        .retain(|k, _| k.contains("known") || k.contains("csrf"));
    b
}

#[tokio::test]
async fn wrong_passwords_from_the_office_address_never_lock_out_the_rightful_browser() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let mut alice = known_browser(&server, "alice").await;

    // 120 wrong passwords for alice from the same address (the office's one NAT).
    let before = rss_kib(server.pid());
    let mut attacker = server.browser();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut longest = 0;
    for _ in 0..120 {
        let r = attacker
            .login("/login", "alice", "not alices password")
            .await;
        *statuses.entry(r.status).or_default() += 1;
        if r.status == 429 {
            longest = longest.max(wait_secs(&r.body));
        }
    }
    let grown = rss_kib(server.pid()).saturating_sub(before) / 1024;
    println!(
        "120 wrong passwords from alice's address: {statuses:?}, longest wait {longest} s, RSS +{grown} MiB"
    );
    assert!(grown < 64, "RSS grew by {grown} MiB");
    assert!(
        statuses.get(&401).copied().unwrap_or(0) <= 4,
        "{statuses:?}"
    );
    assert!(
        statuses.get(&429).copied().unwrap_or(0) >= 116,
        "{statuses:?}"
    );
    assert!(longest <= 900, "never past 15 minutes");

    // Alice's own browser gets in at once; a new browser must wait like the attacker.
    let r = alice.login("/login", "alice", PASSWORD).await;
    assert_eq!(
        r.status, 303,
        "the known browser is not delayed: {}",
        r.body
    );
    let mut fresh = server.browser();
    let r = fresh.login("/login", "alice", PASSWORD).await;
    assert_eq!(r.status, 429, "{}", r.body);

    // The refused attempts become one aggregated audit event per key and window, with
    // their count, written when the window has passed, or (here) when the server stops.
    let before_stop = count_kind(&audit(&server), "login.throttled");
    assert_eq!(before_stop, 0, "nothing is written per refused request");
    let mut server = server;
    server.stop();
    let events = audit(&server);
    let throttled: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "login.throttled")
        .collect();
    let failures = count_kind(&events, "login.failure");
    println!(
        "audit rows: {failures} login.failure, {} login.throttled",
        throttled.len()
    );
    assert_eq!(throttled.len(), 1, "{throttled:?}");
    assert!(failures <= 4, "{failures} failure rows");
    let refused = statuses.get(&429).copied().unwrap_or(0) + 1;
    let detail = throttled[0]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!("{refused} attempt(s) refused")),
        "{detail} (refused {refused})"
    );
    assert_eq!(throttled[0]["user"], "alice");
}

#[tokio::test]
async fn a_forged_or_foreign_known_browser_cookie_counts_for_nothing() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    server.add_user("bob", &[]);
    let bobs = known_browser(&server, "bob").await;
    // Bob's cookie does not make a browser known for alice, and a tampered one is void.
    for tamper in [false, true] {
        let mut b = server.browser();
        for (k, v) in &bobs.cookies {
            let v = if tamper && k.contains("known") {
                v.replace('.', ".x")
            } else {
                v.clone()
            };
            b.cookies.insert(k.clone(), v);
        }
        for _ in 0..4 {
            b.login("/login", "alice", "wrong password here").await;
        }
        let r = b.login("/login", "alice", PASSWORD).await;
        assert_eq!(r.status, 429, "tamper={tamper}: {}", r.body);
    }
    // Meanwhile bob's own browser is unaffected.
    let mut bob = bobs;
    assert_eq!(bob.login("/login", "bob", PASSWORD).await.status, 303);
}

#[tokio::test]
async fn wrong_client_secrets_never_refuse_the_right_one() {
    let server = Server::new("").start().await;
    let (id, secret) = server.add_client(&["--grant-type", "client_credentials"]);
    let form = [("grant_type", "client_credentials")];
    // 120 wrong secrets, sent as a relying-party test suite would (in parallel batches).
    let before = rss_kib(server.pid());
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for _ in 0..4 {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..30 {
            let mut b = server.browser();
            let auth = basic(&id, "wrong-secret");
            batch.spawn(async move {
                b.post_form_with("/api/v1/oauth/token", &form, &[("authorization", &auth)])
                    .await
            });
        }
        while let Some(r) = batch.join_next().await {
            let r = r.unwrap();
            assert_eq!(r.json()["error"], "invalid_client");
            *statuses.entry(r.status).or_default() += 1;
        }
    }
    assert_eq!(statuses.get(&401), Some(&120), "{statuses:?}");
    let grown = rss_kib(server.pid()).saturating_sub(before) / 1024;
    println!("120 wrong client secrets: RSS +{grown} MiB");
    assert!(grown < 64, "RSS grew by {grown} MiB");
    // The right secret is answered at once, not after the wrong ones' delay (4 s).
    let mut b = server.browser();
    let started = Instant::now();
    let r = b
        .post_form_with(
            "/api/v1/oauth/token",
            &form,
            &[("authorization", &basic(&id, &secret))],
        )
        .await;
    let took = started.elapsed();
    println!(
        "right secret after 120 wrong ones: {} in {took:?}",
        r.status
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(took < Duration::from_secs(3), "{took:?}");
    // Still slowed: a wrong one right after another wrong one is held back.
    let wrong = basic(&id, "wrong-again");
    for expect_slow in [false, true] {
        let started = Instant::now();
        let r = b
            .post_form_with("/api/v1/oauth/token", &form, &[("authorization", &wrong)])
            .await;
        assert_eq!(r.status, 401);
        if expect_slow {
            assert!(
                started.elapsed() >= Duration::from_secs(1),
                "wrong guesses are slowed"
            );
        }
    }
    // An over-long client_id is refused without being recorded or looked up.
    let long = "c".repeat(5000);
    let r = b
        .post_form_with(
            "/api/v1/oauth/token",
            &form,
            &[("authorization", &basic(&long, "x"))],
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "invalid_client");
}

/// A maximal authorization request: every stored parameter near its limit.
fn heavy_request(client_id: &str, n: usize) -> String {
    let claims = format!(
        r#"{{"id_token":{{"sub":{{"value":"{}"}},"acr":{{"essential":true,"values":["1","2"]}}}},"userinfo":{{"email":null}},"pad":"{}"}}"#,
        "s".repeat(200),
        "p".repeat(3500)
    );
    authorize_url(
        client_id,
        &format!(
            "&state={n}{}&login_hint={}&acr_values={}&claims={}&ui_locales=en&code_challenge={}&code_challenge_method=S256",
            "x".repeat(2000),
            "h".repeat(256),
            vec!["a".repeat(30); 16].join("+"),
            enc(&claims),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ),
    )
    .replace("&state=st-._~8", "")
}

#[tokio::test]
async fn a_flood_of_authorization_requests_from_many_addresses_stays_bounded() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    server.add_user("bob", &[]);
    let (id, _) = server.add_client(&[]);
    let pid = server.pid();

    // Bob is on the sign-in page when the flood starts; alice signed in here before.
    let mut bob = server.browser();
    let start = bob.get(&authorize_url(&id, "")).await;
    let bob_login = start.location();
    assert!(bob_login.starts_with("/login?interaction="), "{bob_login}");
    let mut alice = known_browser(&server, "alice").await;

    let before = rss_kib(pid);
    let started = Instant::now();
    // 8,000 maximal requests (about 4.4 KB kept each, 35 MB in all) from 2,000
    // addresses in 127.0.0.0/8, 24 at a time.
    let total = 8_000usize;
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    let mut running = tokio::task::JoinSet::new();
    for n in 0..total {
        let ip = std::net::IpAddr::from([127, 1, (n / 4 / 250) as u8, (n / 4 % 250 + 1) as u8]);
        let mut b = server.browser_from(ip);
        let url = heavy_request(&id, n);
        running.spawn(async move {
            let r = b.get(&url).await;
            match r.header("location") {
                Some(l) if l.starts_with("/login") => "login page".to_string(),
                Some(l) => params_of(l)
                    .get("error")
                    .cloned()
                    .unwrap_or_else(|| l.chars().take(40).collect()),
                None => format!("status {}", r.status),
            }
        });
        if running.len() >= 24 {
            let k = running.join_next().await.unwrap().unwrap();
            *statuses.entry(k).or_default() += 1;
        }
    }
    while let Some(k) = running.join_next().await {
        *statuses.entry(k.unwrap()).or_default() += 1;
    }
    let after = rss_kib(pid);
    let grown = after.saturating_sub(before) / 1024;
    println!(
        "flood of {total} maximal authorization requests from 2,000 addresses in {:?}: {statuses:?}; RSS {} -> {} MiB (+{grown} MiB)",
        started.elapsed(),
        before / 1024,
        after / 1024
    );
    assert!(grown < 64, "RSS grew by {grown} MiB");
    assert!(
        statuses
            .get("temporarily_unavailable")
            .copied()
            .unwrap_or(0)
            > 0,
        "the budget was reached: {statuses:?}"
    );
    assert!(
        statuses
            .keys()
            .all(|k| k == "login page" || k == "temporarily_unavailable"),
        "{statuses:?}"
    );

    // Bob's sign-in in progress was not pushed out: it completes with a code.
    let r = bob.login(&bob_login, "bob", PASSWORD).await;
    let cb = bob.drive_to_callback(r, "bob").await;
    assert!(params_of(&cb).contains_key("code"), "{cb}");
    // Alice's known browser starts a new sign-in at once, from the reserve.
    let r = alice.get(&authorize_url(&id, "")).await;
    assert!(
        r.location().starts_with("/login?interaction="),
        "{}",
        r.location()
    );
    let cb = alice.drive_to_callback(r, "alice").await;
    assert!(params_of(&cb).contains_key("code"), "{cb}");
    // The flood wrote no audit rows.
    let events = audit(&server);
    println!("audit rows after the flood: {}", events.len());
    assert!(events.len() < 20, "{} audit rows", events.len());
}

/// Sends raw bytes to a plain-HTTP server and returns what it answers (until it closes or
/// a second passes without data).
async fn raw(port: u16, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

#[tokio::test]
async fn http11_framing_is_exact() {
    let server = Server::new("[tls]\nmode = \"off\"").start().await;
    let p = server.port;
    let host = format!("127.0.0.1:{p}");
    let big = "a".repeat(64 * 1024 - 200);
    let cookie = "c".repeat(10_000);
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "plain request",
            format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n"),
            200,
        ),
        (
            "HTTP/1.0 without Host",
            "GET /healthz HTTP/1.0\r\n\r\n".into(),
            200,
        ),
        ("no Host", "GET /healthz HTTP/1.1\r\n\r\n".into(), 400),
        (
            "two Host",
            format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nHost: {host}\r\n\r\n"),
            400,
        ),
        (
            "hostile Host",
            "GET /healthz HTTP/1.1\r\nHost: evil\"><img src=x>\r\n\r\n".into(),
            400,
        ),
        (
            "64 KB header",
            format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Big: {big}\r\n\r\n"),
            431,
        ),
        (
            "huge cookie",
            format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nCookie: a={cookie}\r\n\r\n"),
            431,
        ),
        (
            "Content-Length with Transfer-Encoding",
            format!(
                "POST /api/v1/oauth/token HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\na=b&c\r\n0\r\n\r\n"
            ),
            400,
        ),
        (
            "malformed chunk size",
            format!(
                "POST /api/v1/oauth/token HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
            ),
            400,
        ),
        (
            "unknown transfer coding",
            format!(
                "POST /api/v1/oauth/token HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\na=b\r\n0\r\n\r\n"
            ),
            501,
        ),
        (
            "chunked twice",
            format!(
                "POST /api/v1/oauth/token HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            ),
            400,
        ),
        (
            "port out of range",
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:99999\r\n\r\n".into(),
            400,
        ),
        (
            "two Authorization headers",
            format!(
                "GET /api/v1/oauth/userinfo HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n"
            ),
            400,
        ),
    ];
    for (name, req, want) in cases {
        let answer = raw(p, req.as_bytes()).await;
        assert_eq!(status_of(&answer), want, "{name}: {answer:.300}");
        assert!(!answer.contains("<img"), "{name}: reflected");
    }
    // A declared 10 GB body is refused at once, without waiting for it.
    let started = Instant::now();
    let answer = raw(
        p,
        format!("POST /api/v1/oauth/token HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10000000000\r\n\r\nabc").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&answer), 413, "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered without the body"
    );
    // The server is still there.
    assert_eq!(
        status_of(
            &raw(
                p,
                format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                    .as_bytes()
            )
            .await
        ),
        200
    );
}

#[tokio::test]
async fn repeated_values_and_bad_utf8_are_invalid_requests() {
    let server = Server::new("").start().await;
    let (id, secret) = server.add_client(&[]);
    let mut b = server.browser();
    let r = b
        .get(&authorize_url(&id, "").replace("response_type=code", "response_type=code%20code"))
        .await;
    let p = params_of(&r.location());
    assert_eq!(p["error"], "unsupported_response_type", "{}", r.location());
    let r = b
        .get(&format!(
            "{}&state=%ff%fe",
            authorize_url(&id, "").replace("&state=st-._~8", "")
        ))
        .await;
    let p = params_of(&r.location());
    assert_eq!(p["error"], "invalid_request", "{}", r.location());
    assert!(!p.contains_key("state"), "an invalid state is not echoed");
    let r = b
        .post_raw(
            "/api/v1/oauth/token",
            "application/x-www-form-urlencoded",
            "grant_type=authorization_code&code=%ff",
            &[("authorization", &basic(&id, &secret))],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_request");
}

#[tokio::test]
async fn a_sign_in_as_another_user_than_the_hint_names_gets_no_code() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    server.add_user("bob", &[]);
    let (id, secret) = server.add_client(&[]);
    let mut a = server.browser();
    let tokens = a
        .sign_in_for_tokens(&id, &basic(&id, &secret), "alice")
        .await
        .json();
    let alice_token = tokens["id_token"].as_str().unwrap().to_string();
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let jwks = a.get("/api/v1/oauth/discovery/keys").await.json();
    let (_, claims) = verify_jwt(&alice_token, &jwks);
    let alice_sub = claims["sub"].as_str().unwrap().to_string();

    // Bob signs in on a request naming alice, by hint or by a requested sub.
    let by_claims = format!(
        "&claims={}",
        enc(&format!(
            r#"{{"id_token":{{"sub":{{"value":"{alice_sub}"}}}}}}"#
        ))
    );
    for extra in [format!("&id_token_hint={alice_token}"), by_claims] {
        let mut b = server.browser();
        let start = b.get(&authorize_url(&id, &extra)).await;
        let r = b.login(&start.location(), "bob", PASSWORD).await;
        let mut loc = r.location();
        for _ in 0..3 {
            if loc.starts_with(CALLBACK) {
                break;
            }
            loc = if loc.starts_with("/consent") {
                b.consent(&loc, "allow").await.location()
            } else {
                b.get(&loc).await.location()
            };
        }
        let p = params_of(&loc);
        assert_eq!(
            p.get("error").map(String::as_str),
            Some("access_denied"),
            "{loc}"
        );
        assert!(!p.contains_key("code"), "{loc}");
    }
    // An access token is no id_token_hint.
    let mut c = server.browser();
    let r = c
        .get(&authorize_url(&id, &format!("&id_token_hint={access}")))
        .await;
    assert_eq!(
        params_of(&r.location())["error"],
        "invalid_request",
        "{}",
        r.location()
    );
}

#[tokio::test]
async fn a_client_assertion_from_another_issuer_is_invalid_client() {
    let server = Server::new("").start().await;
    let (id, _) = server.add_client(&[]);
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };
    let assertion = format!(
        "{}.{}.{}",
        b64(r#"{"alg":"RS256"}"#),
        b64(r#"{"iss":"someone-else","sub":"someone-else","aud":"x","exp":9999999999,"jti":"j"}"#),
        b64("sig")
    );
    let mut b = server.browser();
    let r = b
        .post_form(
            "/api/v1/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", &assertion),
            ],
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_client");
    assert!(r.header("www-authenticate").is_some());
}

#[tokio::test]
async fn cross_site_page_posts_are_refused() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let mut b = server.browser();
    let page = b.get("/login").await;
    let csrf = page.input("csrf").unwrap();
    let form = [
        ("username", "alice"),
        ("password", PASSWORD),
        ("csrf", csrf.as_str()),
    ];
    for headers in [
        vec![("origin", "https://evil.example")],
        vec![("sec-fetch-site", "cross-site")],
        vec![
            ("sec-fetch-site", "same-site"),
            ("origin", server.issuer.as_str()),
        ],
    ] {
        let r = b.post_form_with("/login", &form, &headers).await;
        assert_eq!(r.status, 403, "{headers:?}: {}", r.body);
        assert!(!b.cookies.keys().any(|k| k.contains("session")));
    }
    // A browser without Sec-Fetch-Site sends Origin: null from a no-referrer page; the
    // CSRF token decides then.
    let r = b
        .post_form_with("/login", &form, &[("origin", "null")])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    b.cookies.retain(|k, _| k.contains("csrf"));
    let own = [
        ("sec-fetch-site", "same-origin"),
        ("origin", server.issuer.as_str()),
    ];
    let r = b.post_form_with("/login", &form, &own).await;
    assert_eq!(r.status, 303, "{}", r.body);
    // Protocol endpoints that relying parties post to from elsewhere are not pages.
    let r = b
        .post_form_with(
            "/api/v1/oauth/token",
            &[("grant_type", "client_credentials")],
            &[("origin", "https://rp.example")],
        )
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn the_cli_escapes_control_characters_it_prints() {
    let server = Server::new("").start().await;
    let mut b = server.browser();
    b.login("/login", "eve\u{1b}[2J\nkind=forged", "wrong password here")
        .await;
    let out = server.cli(&["audit"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stdout.contains('\u{1b}'), "{:?}", out.stdout);
    assert!(
        out.stdout.contains("eve\\u{1b}[2J\\u{a}kind=forged"),
        "{:?}",
        out.stdout
    );
    // JSON output carries the value as it is (JSON escapes it itself).
    let json = server.cli(&["audit", "--json"], None).json();
    assert!(
        json.as_array()
            .unwrap()
            .iter()
            .any(|e| e["user"] == "eve\u{1b}[2J\nkind=forged")
    );
}

#[tokio::test]
async fn wrong_device_codes_are_slowed_per_person_not_per_address() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    server.add_user("bob", &[]);
    let mut alice = server.browser();
    assert_eq!(alice.login("/login", "alice", PASSWORD).await.status, 303);
    let mut bob = server.browser();
    assert_eq!(bob.login("/login", "bob", PASSWORD).await.status, 303);
    let page = alice.get("/device").await;
    let csrf = page.input("csrf").unwrap();
    // Guessing through the decision branch is counted like the lookup.
    let mut statuses = vec![];
    for _ in 0..8 {
        let r = alice
            .post_form(
                "/device",
                &[
                    ("csrf", &csrf),
                    ("user_code", "BCDF-GHJK"),
                    ("decision", "allow"),
                ],
            )
            .await;
        statuses.push(r.status);
    }
    // Counted for alice's account: three free failures, then waits.
    assert_eq!(statuses[..4], [400; 4], "{statuses:?}");
    assert_eq!(statuses[4..], [429; 4], "{statuses:?}");
    // Signing in again (a new known-browser cookie) buys no new guesses.
    let mut again = server.browser();
    assert_eq!(again.login("/login", "alice", PASSWORD).await.status, 303);
    let page = again.get("/device").await;
    let csrf2 = page.input("csrf").unwrap();
    let r = again
        .post_form("/device", &[("csrf", &csrf2), ("user_code", "BCDF-GHJK")])
        .await;
    assert_eq!(r.status, 429, "{}", r.body);
    // Bob, signed in on his own known browser from the same address, is not delayed.
    let page = bob.get("/device").await;
    let csrf = page.input("csrf").unwrap();
    let r = bob
        .post_form("/device", &[("csrf", &csrf), ("user_code", "BCDF-GHJK")])
        .await;
    assert_eq!(r.status, 400, "not found, not throttled: {}", r.body);
}

#[tokio::test]
async fn one_address_cannot_take_every_connection() {
    let server = Server::new("[tls]\nmode = \"off\"").start().await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], server.port));
    let connect_from = |ip: [u8; 4]| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(std::net::SocketAddr::from((ip, 0))).unwrap();
        socket.connect(addr).await.unwrap()
    };
    // 300 half-open requests from one address: it gets its share (256), no more.
    let mut held = Vec::new();
    for _ in 0..300 {
        let mut s = connect_from([127, 0, 0, 77]).await;
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut refused = 0;
    for s in &mut held {
        let mut buf = [0u8; 16];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(20), s.read(&mut buf)).await
        {
            refused += 1;
        }
    }
    println!("300 half-open connections from one address: {refused} closed at once");
    assert!((40..=50).contains(&refused), "{refused} closed");
    // Another address is served at once.
    let started = Instant::now();
    let mut other = connect_from([127, 0, 0, 78]).await;
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), other.read_to_string(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
