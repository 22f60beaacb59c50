//! Hostile input: a table of malformed and malicious requests across every endpoint and
//! form. For each: the specified status (or at least no 5xx), nothing reflected unescaped,
//! no redirect to a place that was not registered, and no change of state.

use crate::support::*;

const XSS: &str = "<script>alert(1)</script>";

struct Case {
    name: String,
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
    /// The status the case must get; `None`: any status below 500.
    expect: Option<u16>,
}

fn case(
    name: impl Into<String>,
    method: &'static str,
    path: impl Into<String>,
    expect: Option<u16>,
) -> Case {
    Case {
        name: name.into(),
        method,
        path: path.into(),
        headers: vec![],
        body: String::new(),
        expect,
    }
}

fn form(name: impl Into<String>, path: &str, body: impl Into<String>, expect: Option<u16>) -> Case {
    Case {
        name: name.into(),
        method: "POST",
        path: path.into(),
        headers: vec![(
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        )],
        body: body.into(),
        expect,
    }
}

fn with_header(mut c: Case, k: &str, v: &str) -> Case {
    c.headers.push((k.into(), v.into()));
    c
}

fn cases(id: &str, secret: &str, id_token: &str, access_token: &str) -> Vec<Case> {
    let cb = enc(CALLBACK);
    let good =
        format!("client_id={id}&redirect_uri={cb}&response_type=code&scope=openid&state=s&nonce=n");
    let mut v = Vec::new();

    // Injection strings in every authorization parameter: an error page or an error
    // redirect to the registered URI, never markup.
    for p in [
        "state",
        "nonce",
        "scope",
        "prompt",
        "max_age",
        "response_type",
        "response_mode",
        "code_challenge",
        "code_challenge_method",
        "login_hint",
        "claims",
        "id_token_hint",
        "display",
        "ui_locales",
        "acr_values",
        "request",
        "request_uri",
    ] {
        let q = format!(
            "{}&{p}={}",
            good.replace(&format!("&{p}="), "&ignored="),
            enc(XSS)
        );
        v.push(case(
            format!("authorize {p} injection"),
            "GET",
            format!("/api/v1/oauth/authorize?{q}"),
            None,
        ));
    }
    v.push(case("authorize client_id injection", "GET", format!("/api/v1/oauth/authorize?client_id={}&redirect_uri={cb}&response_type=code&scope=openid", enc(XSS)), Some(400)));
    // redirect_uri tricks: all refused on a page, without redirecting.
    for bad in [
        "https://rp.example/cb/extra",
        "https://rp.example/cb?x=1",
        "https://rp.example/cb#frag",
        "https://user@rp.example/cb",
        "https://RP.EXAMPLE/cb",
        "https://rp.example/CB",
        "https://rp.example/c%62",
        "https://rp.example/cb%2F..%2Fevil",
        "https://rp.example./cb",
        "https://rp.example:443/cb",
        "http://rp.example/cb",
        "https://rp.example.evil.example/cb",
        "https://evil.example/https://rp.example/cb",
        "//evil.example/cb",
        "https:\\\\evil.example\\cb",
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "https://rp.example/cb\r\nLocation: https://evil.example",
    ] {
        let q = format!(
            "client_id={id}&redirect_uri={}&response_type=code&scope=openid",
            enc(bad)
        );
        v.push(case(
            format!("redirect_uri {bad:?}"),
            "GET",
            format!("/api/v1/oauth/authorize?{q}"),
            Some(400),
        ));
    }
    // Duplicated parameters.
    for p in ["client_id", "redirect_uri"] {
        v.push(case(
            format!("duplicate {p}"),
            "GET",
            format!("/api/v1/oauth/authorize?{good}&{p}=x"),
            Some(400),
        ));
    }
    for p in ["response_type", "scope", "state", "code_challenge"] {
        v.push(case(
            format!("duplicate {p}"),
            "GET",
            format!("/api/v1/oauth/authorize?{good}&{p}=x"),
            Some(303),
        ));
    }
    // Oversized and undecodable input.
    v.push(case(
        "oversized query",
        "GET",
        format!("/api/v1/oauth/authorize?{good}&x={}", "a".repeat(60_000)),
        None,
    ));
    v.push(case(
        "invalid UTF-8 query",
        "GET",
        "/api/v1/oauth/authorize?client_id=%ff%fe&redirect_uri=%c3%28",
        Some(400),
    ));
    v.push(case(
        "authorize POST as JSON",
        "POST",
        "/api/v1/oauth/authorize",
        Some(400),
    ));
    v.push(with_header(
        case(
            "authorize POST multipart",
            "POST",
            "/api/v1/oauth/authorize",
            Some(400),
        ),
        "content-type",
        "multipart/form-data; boundary=x",
    ));

    // Token endpoint.
    let auth = basic(id, secret);
    let t = "/api/v1/oauth/token";
    v.push(Case {
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("authorization".into(), auth.clone()),
        ],
        body: "{\"grant_type\":\"client_credentials\"}".into(),
        ..case("token JSON body", "POST", t, Some(400))
    });
    v.push(Case {
        headers: vec![
            ("content-type".into(), "text/plain".into()),
            ("authorization".into(), auth.clone()),
        ],
        body: "grant_type=x".into(),
        ..case("token text/plain", "POST", t, Some(400))
    });
    v.push(Case {
        headers: vec![("authorization".into(), auth.clone())],
        body: "grant_type=x".into(),
        ..case("token without content type", "POST", t, Some(400))
    });
    let authed = |name: &str, body: String, expect| {
        with_header(
            form(name.to_string(), t, body, expect),
            "authorization",
            &auth,
        )
    };
    v.push(authed(
        "token huge body",
        format!("grant_type=authorization_code&code={}", "a".repeat(40_000)),
        Some(413),
    ));
    v.push(authed(
        "token invalid UTF-8",
        "grant_type=%ff&code=%fe".into(),
        Some(400),
    ));
    v.push(authed(
        "token duplicate grant_type",
        "grant_type=authorization_code&grant_type=refresh_token".into(),
        Some(400),
    ));
    v.push(authed(
        "token code injection",
        format!(
            "grant_type=authorization_code&code={}&redirect_uri={cb}",
            enc(XSS)
        ),
        Some(400),
    ));
    v.push(authed(
        "token refresh injection",
        format!("grant_type=refresh_token&refresh_token={}", enc(XSS)),
        Some(400),
    ));
    v.push(authed(
        "token verifier without challenge",
        format!(
            "grant_type=authorization_code&code=nonexistent&redirect_uri={cb}&code_verifier={}",
            "a".repeat(43)
        ),
        Some(400),
    ));
    v.push(authed(
        "token malformed verifier",
        format!("grant_type=authorization_code&code=x&redirect_uri={cb}&code_verifier=%00%01"),
        Some(400),
    ));
    v.push(authed(
        "token scope injection",
        format!("grant_type=client_credentials&scope={}", enc(XSS)),
        Some(400),
    ));
    v.push(authed(
        "token device_code injection",
        format!(
            "grant_type=urn:ietf:params:oauth:grant-type:device_code&device_code={}",
            enc(XSS)
        ),
        Some(400),
    ));
    for (name, header) in [
        ("basic not base64", "Basic %%%%".to_string()),
        (
            "basic no colon",
            format!(
                "Basic {}",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "justid")
            ),
        ),
        ("basic empty", "Basic ".to_string()),
        (
            "basic unicode",
            format!(
                "Basic {}",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "é:é")
            ),
        ),
        ("bearer at token endpoint", format!("Bearer {access_token}")),
        ("basic wrong secret", basic(id, "wrong")),
        ("basic injected id", basic(XSS, "x")),
    ] {
        v.push(with_header(
            form(
                format!("token {name}"),
                t,
                "grant_type=client_credentials",
                Some(401),
            ),
            "authorization",
            &header,
        ));
    }
    let b64 =
        |s: &str| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, s);
    let none_assertion = format!(
        "{}.{}.",
        b64(r#"{"alg":"none"}"#),
        b64(&format!(
            r#"{{"iss":"{id}","sub":"{id}","aud":"x","exp":9999999999,"jti":"j"}}"#
        ))
    );
    let hs_assertion = format!(
        "{}.{}.{}",
        b64(r#"{"alg":"HS256"}"#),
        b64(&format!(r#"{{"iss":"{id}","sub":"{id}"}}"#)),
        b64("sig")
    );
    for (name, a) in [
        ("alg none assertion", none_assertion.as_str()),
        ("HS256 assertion for a secret client", hs_assertion.as_str()),
        ("garbage assertion", "a.b.c"),
        ("injected assertion", XSS),
    ] {
        let body = format!(
            "grant_type=client_credentials&client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer&client_assertion={}",
            enc(a)
        );
        v.push(form(format!("token {name}"), t, body, Some(401)));
    }
    v.push(form(
        "token wrong assertion type",
        t,
        format!(
            "grant_type=client_credentials&client_assertion_type={}&client_assertion=x",
            enc(XSS)
        ),
        Some(401),
    ));

    // UserInfo.
    let u = "/api/v1/oauth/userinfo";
    let none_at = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"at+jwt"}"#),
        id_token.split('.').nth(1).unwrap_or("")
    );
    for (name, h) in [
        ("alg none token", format!("Bearer {none_at}")),
        ("ID token as access token", format!("Bearer {id_token}")),
        ("injected token", format!("Bearer {XSS}")),
        ("tampered token", format!("Bearer {}x", access_token)),
    ] {
        v.push(with_header(
            case(format!("userinfo {name}"), "GET", u, Some(401)),
            "authorization",
            &h,
        ));
    }
    // SPEC §8: a header field over 8 KiB is 431 before anything looks at it.
    {
        let h = format!("Bearer {}", "a".repeat(20_000));
        v.push(with_header(
            case("userinfo huge token", "GET", u, Some(431)),
            "authorization",
            &h,
        ));
    }
    v.push(with_header(
        form(
            "userinfo token twice",
            u,
            format!("access_token={access_token}"),
            Some(400),
        ),
        "authorization",
        &format!("Bearer {access_token}"),
    ));

    // Introspection and revocation without authentication or with the wrong body.
    for p in [
        "/api/v1/oauth/introspect",
        "/api/v1/oauth/revoke",
        "/api/v1/oauth/par",
        "/api/v1/oauth/device_authorization",
    ] {
        v.push(form(
            format!("{p} unauthenticated"),
            p,
            format!("token={access_token}"),
            Some(401),
        ));
        v.push(Case {
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("authorization".into(), auth.clone()),
            ],
            body: "{}".into(),
            ..case(format!("{p} JSON"), "POST", p, Some(400))
        });
    }

    // Forms without or with a forged CSRF token change nothing.
    for (p, body) in [
        (
            "/login",
            format!("username=alice&password={}", enc(PASSWORD)),
        ),
        (
            "/login",
            format!("username=alice&password={}&csrf=forged", enc(PASSWORD)),
        ),
        (
            "/consent",
            "interaction=x&decision=allow&csrf=forged".to_string(),
        ),
        ("/logout", "csrf=forged".to_string()),
        (
            "/device",
            "user_code=BCDF-GHJK&decision=allow&csrf=forged".to_string(),
        ),
        (
            "/setup",
            format!(
                "token=x&username=mallory&email=m@x.example&password={0}&password2={0}&csrf=forged",
                enc(PASSWORD)
            ),
        ),
    ] {
        v.push(form(
            format!("{p} forged CSRF {}", body.len()),
            p,
            body,
            None,
        ));
    }
    v.push(form(
        "login injection reflected",
        "/login",
        format!("username={}&password=x&csrf=x", enc(XSS)),
        Some(400),
    ));
    v.push(with_header(
        form(
            "login cross-origin",
            "/login",
            format!("username=alice&password={}&csrf=x", enc(PASSWORD)),
            Some(403),
        ),
        "origin",
        "https://evil.example",
    ));
    v.push(form(
        "login JSON",
        "/login",
        "{\"username\":\"alice\"}",
        Some(400),
    ));

    // Logout, device, setup and other pages with hostile parameters.
    v.push(case(
        "logout alg none hint",
        "GET",
        format!(
            "/api/v1/oauth/logout?id_token_hint={}&post_logout_redirect_uri={}",
            enc(&none_at),
            enc("https://evil.example")
        ),
        Some(400),
    ));
    v.push(case(
        "logout injected hint",
        "GET",
        format!("/api/v1/oauth/logout?id_token_hint={}", enc(XSS)),
        Some(400),
    ));
    v.push(case(
        "logout injected state",
        "GET",
        format!("/api/v1/oauth/logout?state={}", enc(XSS)),
        Some(200),
    ));
    v.push(case(
        "device injected code",
        "GET",
        format!("/device?user_code={}", enc(XSS)),
        Some(303),
    ));
    v.push(case(
        "setup injected token",
        "GET",
        format!("/setup?token={}", enc(XSS)),
        Some(404),
    ));
    v.push(case(
        "login injected interaction",
        "GET",
        format!(
            "/login?interaction={}&next={}",
            enc(XSS),
            enc("https://evil.example")
        ),
        Some(200),
    ));
    v.push(case(
        "consent unknown interaction",
        "GET",
        format!("/consent?interaction={}", enc(XSS)),
        Some(400),
    ));
    v.push(case(
        "resume unknown interaction",
        "GET",
        format!("/api/v1/oauth/authorize/resume?interaction={}", enc(XSS)),
        Some(400),
    ));
    // Paths and methods.
    for (m, p, e) in [
        ("GET", "/../../etc/passwd", 404),
        ("GET", "/%2e%2e/%2e%2e/etc/passwd", 404),
        ("GET", "/assets/../Cargo.toml", 404),
        ("PUT", "/api/v1/oauth/token", 405),
        ("DELETE", "/api/v1/oauth/userinfo", 405),
        ("PATCH", "/login", 405),
        ("TRACE", "/", 405),
        ("GET", "/api/v1/oauth/token", 405),
        ("GET", "/metrics/../healthz", 404),
    ] {
        v.push(case(format!("{m} {p}"), m, p, Some(e)));
    }
    v
}

#[tokio::test]
async fn a_hundred_hostile_requests() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let (id, secret) = server.add_client(&[
        "--skip-consent",
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "client_credentials",
        "--grant-type",
        "refresh_token",
    ]);
    let mut b = server.browser();
    let first = b.get(&authorize_url(&id, "")).await;
    let cb = b.drive_to_callback(first, "alice").await;
    let t = b.redeem(&cb, None, &basic(&id, &secret)).await.json();
    let (id_token, at) = (
        t["id_token"].as_str().unwrap().to_string(),
        t["access_token"].as_str().unwrap().to_string(),
    );

    let state = |server: &Server| {
        let users = server.cli(&["user", "list", "--json"], None).stdout;
        let clients = server.cli(&["client", "list", "--json"], None).stdout;
        (users, clients)
    };
    let before = state(&server);
    let all = cases(&id, &secret, &id_token, &at);
    assert!(all.len() >= 100, "only {} cases", all.len());
    let mut attacker = server.browser();
    let _ = attacker.get("/login").await; // a CSRF cookie of its own, for the forged forms
    for c in &all {
        let headers: Vec<(&str, &str)> = c
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let r = match attacker
            .try_send(c.method, &c.path, &headers, &c.body)
            .await
        {
            Ok(r) => r,
            // The server may refuse a request head that is far too large by closing.
            Err(_) if c.name == "oversized query" => continue,
            Err(e) => panic!("{}: {e}", c.name),
        };
        assert!(r.status < 500, "{}: {} {}", c.name, r.status, r.body);
        if let Some(e) = c.expect {
            assert_eq!(r.status, e, "{}: {}", c.name, r.body);
        }
        assert!(!r.body.contains(XSS), "{}: reflected unescaped", c.name);
        if let Some(loc) = r.header("location") {
            let ok = loc.starts_with('/') || loc.starts_with(CALLBACK);
            assert!(ok, "{}: redirected to {loc}", c.name);
            assert!(!loc.contains(XSS), "{}: unencoded in Location", c.name);
        }
    }
    assert_eq!(
        state(&server),
        before,
        "hostile requests changed users or clients"
    );
    // The legitimate session and token still work.
    let u = b
        .get_with(
            "/api/v1/oauth/userinfo",
            &[("authorization", &format!("Bearer {at}"))],
        )
        .await;
    assert_eq!(u.status, 200);
    println!("{} hostile requests, none answered 5xx", all.len());
}
