//! Whole OpenID Connect flows: code with PKCE, ID token checked against the JWKS,
//! userinfo three ways, refresh rotation and reuse, code replay, silent re-authentication.

use serde_json::Value;

use crate::support::*;

struct Flow {
    server: Server,
    browser: Browser,
    client_id: String,
    secret: String,
}

async fn setup(client_extra: &[&str]) -> Flow {
    let server = Server::new("").start().await;
    server.add_user(
        "alice",
        &[
            "--given-name",
            "Alice",
            "--family-name",
            "Liddell",
            "--group",
            "staff",
        ],
    );
    let (client_id, secret) = server.add_client(client_extra);
    let browser = server.browser();
    Flow {
        server,
        browser,
        client_id,
        secret,
    }
}

/// Runs the browser part and returns the callback URL.
async fn authorize(f: &mut Flow, extra: &str) -> String {
    let first = f.browser.get(&authorize_url(&f.client_id, extra)).await;
    f.browser.drive_to_callback(first, "alice").await
}

async fn exchange(f: &mut Flow, code: &str, verifier: Option<&str>) -> Resp {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", CALLBACK),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    let auth = basic(&f.client_id, &f.secret);
    f.browser
        .post_form_with("/api/v1/oauth/token", &form, &[("authorization", &auth)])
        .await
}

/// UserInfo with the given Authorization header value.
async fn userinfo(f: &mut Flow, authorization: &str) -> Resp {
    f.browser
        .get_with(
            "/api/v1/oauth/userinfo",
            &[("authorization", authorization)],
        )
        .await
}

/// A refresh_token grant by the flow's client.
async fn refresh(f: &mut Flow, refresh_token: &str) -> Resp {
    let auth = basic(&f.client_id, &f.secret);
    f.browser.refresh(refresh_token, &auth).await
}

async fn jwks(f: &mut Flow) -> Value {
    f.browser.get("/api/v1/oauth/discovery/keys").await.json()
}

#[tokio::test]
async fn code_flow_with_pkce_end_to_end() {
    let mut f = setup(&[]).await;
    let (verifier, challenge) = pkce();
    let cb = authorize(
        &mut f,
        &format!("&code_challenge={challenge}&code_challenge_method=S256"),
    )
    .await;
    let p = params_of(&cb);
    assert_eq!(p["state"], "st-._~8");
    assert_eq!(p["iss"], f.server.issuer);
    let code = p["code"].clone();
    assert!(code.len() >= 43, "code has 256 bits");

    let r = exchange(&mut f, &code, Some(&verifier)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("pragma"), Some("no-cache"));
    let t = r.json();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 900);
    assert_eq!(t["scope"], "openid profile email");
    let access = t["access_token"].as_str().unwrap();

    let keys = jwks(&mut f).await;
    let (h, c) = verify_jwt(t["id_token"].as_str().unwrap(), &keys);
    assert_eq!(h["alg"], "RS256");
    assert_eq!(h["typ"], "JWT");
    assert_eq!(c["iss"], f.server.issuer);
    assert_eq!(c["aud"], f.client_id);
    assert_eq!(c["azp"], f.client_id);
    assert_eq!(c["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(c["at_hash"], at_hash(access));
    assert_eq!(c["amr"][0], "pwd");
    assert_eq!(c["acr"], "1");
    assert_eq!(c["preferred_username"], "alice");
    for k in ["sub", "exp", "iat", "auth_time", "sid"] {
        assert!(!c[k].is_null(), "{k}");
    }
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);

    // RFC 9068 access token.
    let (ah, ac) = verify_jwt(access, &keys);
    assert_eq!(ah["typ"], "at+jwt");
    assert_eq!(ac["client_id"], f.client_id);
    assert_eq!(ac["sub"], c["sub"]);
    assert!(ac["jti"].is_string());

    // UserInfo: GET with header, POST with header, POST with form body.
    let bearer = format!("Bearer {access}");
    let u1 = userinfo(&mut f, &bearer).await;
    assert_eq!(u1.status, 200, "{}", u1.body);
    assert!(
        u1.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let u1 = u1.json();
    assert_eq!(u1["sub"], c["sub"]);
    assert_eq!(u1["email"], "alice@example.com");
    assert_eq!(u1["name"], "Alice Liddell");
    assert!(u1.get("groups").is_none(), "groups scope was not requested");
    let u2 = f
        .browser
        .post_form_with("/api/v1/oauth/userinfo", &[], &[("authorization", &bearer)])
        .await;
    assert_eq!(u2.json(), u1);
    let u3 = f
        .browser
        .post_form("/api/v1/oauth/userinfo", &[("access_token", access)])
        .await;
    assert_eq!(u3.json(), u1);
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let mut f = setup(&[]).await;
    let cb = authorize(&mut f, "&scope=openid%20offline_access%20email").await;
    let code = params_of(&cb)["code"].clone();
    let t = exchange(&mut f, &code, None).await.json();
    let rt1 = t["refresh_token"].as_str().unwrap().to_string();
    let (_, first) = verify_jwt(t["id_token"].as_str().unwrap(), &jwks(&mut f).await);
    let auth = basic(&f.client_id, &f.secret);

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = f.browser.refresh(&rt1, &auth).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let t2 = r.json();
    let rt2 = t2["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt1, rt2);
    let (_, second) = verify_jwt(t2["id_token"].as_str().unwrap(), &jwks(&mut f).await);
    for k in ["iss", "sub", "aud", "auth_time", "azp"] {
        assert_eq!(first[k], second[k], "{k} kept on refresh");
    }
    assert!(second["iat"].as_i64() > first["iat"].as_i64());

    // Narrower scope is allowed, wider is not.
    let narrow = f
        .browser
        .post_form_with(
            "/api/v1/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt2),
                ("scope", "openid profile"),
            ],
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(narrow.status, 400);
    assert_eq!(narrow.json()["error"], "invalid_scope");

    // Reuse of the first token: invalid_grant, and the whole family dies.
    let reuse = f.browser.refresh(&rt1, &auth).await;
    assert_eq!(reuse.status, 400);
    assert_eq!(reuse.json()["error"], "invalid_grant");
    let after = f.browser.refresh(&rt2, &auth).await;
    assert_eq!(
        after.json()["error"],
        "invalid_grant",
        "successor revoked with the family"
    );
    let bearer = format!("Bearer {}", t2["access_token"].as_str().unwrap());
    let u = userinfo(&mut f, &bearer).await;
    assert_eq!(u.status, 401);
    assert!(
        u.header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
}

#[tokio::test]
async fn refresh_token_is_bound_to_its_client() {
    let mut f = setup(&[]).await;
    let (other_id, other_secret) = f.server.add_client(&[]);
    let cb = authorize(&mut f, "").await;
    let t = exchange(&mut f, &params_of(&cb)["code"], None).await.json();
    let rt = t["refresh_token"].as_str().unwrap();
    let r = f
        .browser
        .refresh(rt, &basic(&other_id, &other_secret))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_grant");
    // The rightful client can still use it: a foreign attempt burns nothing.
    let ok = refresh(&mut f, rt).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
}

#[tokio::test]
async fn code_reuse_fails_and_revokes_issued_tokens() {
    let mut f = setup(&[]).await;
    let cb = authorize(&mut f, "").await;
    let code = params_of(&cb)["code"].clone();
    let t = exchange(&mut f, &code, None).await.json();
    let bearer = format!("Bearer {}", t["access_token"].as_str().unwrap());
    assert_eq!(userinfo(&mut f, &bearer).await.status, 200);

    let again = exchange(&mut f, &code, None).await;
    assert_eq!(again.status, 400);
    assert!(
        again
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(again.json()["error"], "invalid_grant");
    assert_eq!(userinfo(&mut f, &bearer).await.status, 401);
    let r = refresh(&mut f, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn concurrent_redemptions_of_one_code_let_exactly_one_through() {
    let mut f = setup(&[]).await;
    let cb = authorize(&mut f, "").await;
    let code = params_of(&cb)["code"].clone();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut b = f.server.browser();
        let (code, auth) = (code.clone(), basic(&f.client_id, &f.secret));
        tasks.push(tokio::spawn(async move {
            let form = [
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", CALLBACK),
            ];
            b.post_form_with("/api/v1/oauth/token", &form, &[("authorization", &auth)])
                .await
        }));
    }
    let mut ok = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        if r.status == 200 {
            ok.push(r.json());
        } else {
            assert_eq!(r.json()["error"], "invalid_grant");
        }
    }
    assert_eq!(ok.len(), 1, "exactly one redemption succeeds");
    // RFC 6749 §4.1.2: the replays revoked what the one success received.
    let bearer = format!("Bearer {}", ok[0]["access_token"].as_str().unwrap());
    assert_eq!(userinfo(&mut f, &bearer).await.status, 401);
}

#[tokio::test]
async fn deleting_a_client_ends_its_tokens() {
    let mut f = setup(&[]).await;
    let cb = authorize(&mut f, "").await;
    let t = exchange(&mut f, &params_of(&cb)["code"], None).await.json();
    let bearer = format!("Bearer {}", t["access_token"].as_str().unwrap());
    assert_eq!(userinfo(&mut f, &bearer).await.status, 200);
    let out = f.server.cli(&["client", "delete", &f.client_id], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(userinfo(&mut f, &bearer).await.status, 401);
}

#[tokio::test]
async fn client_secret_post_and_es256_clients() {
    let mut f = setup(&[
        "--id-token-alg",
        "ES256",
        "--token-endpoint-auth-method",
        "client_secret_post",
    ])
    .await;
    let cb = authorize(&mut f, "").await;
    let code = params_of(&cb)["code"].clone();
    let r = f
        .browser
        .post_form(
            "/api/v1/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CALLBACK),
                ("client_id", &f.client_id),
                ("client_secret", &f.secret),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (h, _) = verify_jwt(r.json()["id_token"].as_str().unwrap(), &jwks(&mut f).await);
    assert_eq!(h["alg"], "ES256");
}

#[tokio::test]
async fn public_client_uses_pkce_and_no_secret() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let out = server.cli(
        &[
            "client",
            "add",
            "--name",
            "SPA",
            "--public",
            "--redirect-uri",
            CALLBACK,
            "--json",
        ],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.json().get("client_secret").is_none());
    let client_id = out.json()["client_id"].as_str().unwrap().to_string();
    let mut b = server.browser();
    // Without PKCE: invalid_request back to the client.
    let r = b.get(&authorize_url(&client_id, "")).await;
    assert_eq!(params_of(&r.location())["error"], "invalid_request");
    let (verifier, challenge) = pkce();
    let first = b
        .get(&authorize_url(
            &client_id,
            &format!("&code_challenge={challenge}&code_challenge_method=S256"),
        ))
        .await;
    let cb = b.drive_to_callback(first, "alice").await;
    let code = params_of(&cb)["code"].clone();
    let r = b
        .post_form(
            "/api/v1/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CALLBACK),
                ("client_id", &client_id),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn silent_reauthentication_prompt_login_and_max_age() {
    let mut f = setup(&[]).await;
    let cb = authorize(&mut f, "").await;
    let t = exchange(&mut f, &params_of(&cb)["code"], None).await.json();
    let keys = jwks(&mut f).await;
    let (_, first) = verify_jwt(t["id_token"].as_str().unwrap(), &keys);

    // prompt=none with a session and remembered consent: no UI, same sub and auth_time.
    for extra in [
        "&prompt=none",
        "&max_age=10000",
        &format!(
            "&prompt=none&id_token_hint={}",
            t["id_token"].as_str().unwrap()
        ),
    ] {
        let r = f.browser.get(&authorize_url(&f.client_id, extra)).await;
        let loc = r.location();
        assert!(loc.starts_with(CALLBACK), "{extra}: {loc}");
        let t2 = exchange(&mut f, &params_of(&loc)["code"], None)
            .await
            .json();
        let (_, c) = verify_jwt(t2["id_token"].as_str().unwrap(), &keys);
        assert_eq!(c["sub"], first["sub"]);
        assert_eq!(c["auth_time"], first["auth_time"], "{extra}");
    }

    // prompt=login and max_age=1 show the login page again, and auth_time moves on.
    for extra in ["&prompt=login", "&max_age=1"] {
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        let r = f.browser.get(&authorize_url(&f.client_id, extra)).await;
        assert!(r.location().starts_with("/login?"), "{extra}");
        let cb = f.browser.drive_to_callback(r, "alice").await;
        let t2 = exchange(&mut f, &params_of(&cb)["code"], None).await.json();
        let (_, c) = verify_jwt(t2["id_token"].as_str().unwrap(), &keys);
        assert!(
            c["auth_time"].as_i64() > first["auth_time"].as_i64(),
            "{extra}"
        );
    }

    // prompt=consent shows the consent page even though consent is remembered.
    let r = f
        .browser
        .get(&authorize_url(&f.client_id, "&prompt=consent"))
        .await;
    assert!(r.location().starts_with("/consent?"));
}

#[tokio::test]
async fn prompt_none_without_session_or_consent() {
    let mut f = setup(&[]).await;
    let long_state = format!("{}-._~", "a".repeat(124));
    let r = f
        .browser
        .get(
            &authorize_url(&f.client_id, &format!("&prompt=none&state={long_state}"))
                .replace("&state=st-._~8", ""),
        )
        .await;
    let p = params_of(&r.location());
    assert_eq!(p["error"], "login_required");
    assert_eq!(p["state"], long_state);
    assert_eq!(p["iss"], f.server.issuer);
    assert!(!p.contains_key("code"));

    // Signed in, but no consent yet for this client.
    let first = f.browser.get(&authorize_url(&f.client_id, "")).await;
    let login = f.browser.login(&first.location(), "alice", PASSWORD).await;
    assert!(login.location().contains("/authorize/resume"));
    let r = f
        .browser
        .get(&authorize_url(&f.client_id, "&prompt=none"))
        .await;
    assert_eq!(params_of(&r.location())["error"], "consent_required");
}

#[tokio::test]
async fn consent_deny_returns_access_denied_and_allow_is_remembered() {
    let mut f = setup(&[]).await;
    let first = f.browser.get(&authorize_url(&f.client_id, "")).await;
    let login = f.browser.login(&first.location(), "alice", PASSWORD).await;
    let to_consent = f.browser.get(&login.location()).await;
    let consent_url = to_consent.location();
    assert!(consent_url.starts_with("/consent?"));
    let page = f.browser.get(&consent_url).await;
    assert!(page.body.contains("Test App"));
    assert!(page.body.contains("Your email address"));
    let denied = f.browser.consent(&consent_url, "deny").await;
    let p = params_of(&denied.location());
    assert_eq!(p["error"], "access_denied");
    assert_eq!(p["state"], "st-._~8");

    let cb = authorize(&mut f, "").await;
    assert!(params_of(&cb).contains_key("code"));
    // Remembered: the next request skips the consent page.
    let r = f.browser.get(&authorize_url(&f.client_id, "")).await;
    assert!(r.location().starts_with(CALLBACK));
    // Asking for a scope not consented before asks again.
    let r = f
        .browser
        .get(&authorize_url(&f.client_id, "&scope=openid%20groups"))
        .await;
    assert!(r.location().starts_with("/consent?"));
}

#[tokio::test]
async fn skip_consent_and_response_modes() {
    let mut f = setup(&["--skip-consent"]).await;
    let first = f.browser.get(&authorize_url(&f.client_id, "")).await;
    let r = f.browser.login(&first.location(), "alice", PASSWORD).await;
    let r = f.browser.get(&r.location()).await;
    assert!(
        r.location().starts_with(CALLBACK),
        "no consent page for first-party clients"
    );

    let r = f
        .browser
        .get(&authorize_url(&f.client_id, "&response_mode=fragment"))
        .await;
    let loc = r.location();
    assert!(loc.starts_with(&format!("{CALLBACK}#code=")), "{loc}");

    let r = f
        .browser
        .get(&authorize_url(&f.client_id, "&response_mode=form_post"))
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.body
            .contains(&format!("action=\"{}\"", CALLBACK.replace('/', "&#x2f;")))
            || r.body.contains(&format!("action=\"{CALLBACK}\"")),
        "{}",
        r.body
    );
    assert!(r.input("code").is_some());
    assert_eq!(r.input("state").as_deref(), Some("st-._~8"));
    assert!(!r.body.contains("<script>"), "no inline script");
    assert!(
        r.header("content-security-policy")
            .unwrap()
            .contains("form-action https://rp.example")
    );

    // The authorization endpoint also accepts POST.
    let q = authorize_url(&f.client_id, "");
    let body = q.split_once('?').unwrap().1;
    let r = f
        .browser
        .post_raw(
            "/api/v1/oauth/authorize",
            "application/x-www-form-urlencoded",
            body,
            &[],
        )
        .await;
    assert!(r.location().starts_with(CALLBACK));
    // And the Defguard alias paths work.
    let r = f
        .browser
        .get(&q.replace("/oauth/authorize", "/openid/authorize"))
        .await;
    assert!(r.location().starts_with(CALLBACK));
}

#[tokio::test]
async fn disabling_a_user_stops_their_tokens_at_once() {
    let mut f = setup(&[]).await;
    let cb = authorize(&mut f, "").await;
    let t = exchange(&mut f, &params_of(&cb)["code"], None).await.json();
    let bearer = format!("Bearer {}", t["access_token"].as_str().unwrap());
    let out = f.server.cli(&["user", "disable", "alice"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(userinfo(&mut f, &bearer).await.status, 401);
    let r = refresh(&mut f, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.json()["error"], "invalid_grant");
    // The session ended too: the next authorization request asks to sign in.
    let r = f
        .browser
        .get(&authorize_url(&f.client_id, "&prompt=none"))
        .await;
    assert_eq!(params_of(&r.location())["error"], "login_required");
}

#[tokio::test]
async fn consent_given_by_one_user_never_counts_for_another() {
    let mut f = setup(&[]).await;
    f.server.add_user("mallory", &[]);
    // Mallory starts a request, signs in and allows it...
    let first = f.browser.get(&authorize_url(&f.client_id, "")).await;
    let login = f
        .browser
        .login(&first.location(), "mallory", PASSWORD)
        .await;
    let to_consent = f.browser.get(&login.location()).await;
    let consent_url = to_consent.location();
    let page = f.browser.get(&consent_url).await;
    let interaction = page.input("interaction").unwrap();
    let csrf = page.input("csrf").unwrap();
    let allowed = f
        .browser
        .post_form(
            "/consent",
            &[
                ("csrf", &csrf),
                ("interaction", &interaction),
                ("decision", "allow"),
            ],
        )
        .await;
    let resume = allowed.location();
    assert!(resume.contains("/authorize/resume?interaction="));
    // ...then hands the resume link to Alice, who is signed in but never consented.
    let mut alice = f.server.browser();
    let first = alice
        .get(&authorize_url(&f.client_id, "&prompt=login"))
        .await;
    let _ = alice.login(&first.location(), "alice", PASSWORD).await;
    let r = alice.get(&resume).await;
    assert!(
        r.location().starts_with("/consent?"),
        "Alice is asked herself: {}",
        r.location()
    );
}

#[tokio::test]
async fn password_change_and_group_removal_end_existing_tokens() {
    let mut f = setup(&["--allowed-group", "staff"]).await;
    let cb = authorize(&mut f, "&scope=openid%20offline_access").await;
    let t = exchange(&mut f, &params_of(&cb)["code"], None).await.json();
    let refresh = |rt: String| {
        let auth = basic(&f.client_id, &f.secret);
        let mut b = f.server.browser();
        async move {
            let form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", rt.as_str()),
            ];
            b.post_form_with("/api/v1/oauth/token", &form, &[("authorization", &auth)])
                .await
        }
    };
    // Leaving the client's allowed group stops refreshes at once.
    assert_eq!(
        f.server
            .cli(&["user", "group-del", "alice", "staff"], None)
            .code,
        0
    );
    let r = refresh(t["refresh_token"].as_str().unwrap().to_string()).await;
    assert_eq!(r.json()["error"], "invalid_grant");
    assert_eq!(
        f.server
            .cli(&["user", "group-add", "alice", "staff"], None)
            .code,
        0
    );
    let r = refresh(t["refresh_token"].as_str().unwrap().to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let t2 = r.json();
    // A new password revokes even offline refresh tokens and live access tokens.
    let out = f.server.cli(
        &["user", "passwd", "alice", "--password-stdin"],
        Some("another long passphrase\n"),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r = refresh(t2["refresh_token"].as_str().unwrap().to_string()).await;
    assert_eq!(r.json()["error"], "invalid_grant");
    let bearer = format!("Bearer {}", t2["access_token"].as_str().unwrap());
    assert_eq!(userinfo(&mut f, &bearer).await.status, 401);
}

#[tokio::test]
async fn allowed_groups_show_an_access_denied_page() {
    let mut f = setup(&["--allowed-group", "finance", "--skip-consent"]).await;
    let first = f.browser.get(&authorize_url(&f.client_id, "")).await;
    let login = f.browser.login(&first.location(), "alice", PASSWORD).await;
    let r = f.browser.get(&login.location()).await;
    assert_eq!(r.status, 403);
    assert!(r.header("location").is_none());
    assert!(r.body.contains("not allowed"));
    // The page links back to the application with access_denied.
    let start = r.body.find("<a href=\"").unwrap() + 9;
    let link = r.body[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&")
        .replace("&#x2f;", "/");
    assert!(link.starts_with(CALLBACK), "{link}");
    let p = params_of(&link);
    assert_eq!(p["error"], "access_denied");
    assert_eq!(p["state"], "st-._~8");
}

async fn post_auth(
    f: &mut Flow,
    path: &str,
    form: &[(&str, &str)],
    id: &str,
    secret: &str,
) -> Resp {
    f.browser
        .post_form_with(path, form, &[("authorization", &basic(id, secret))])
        .await
}

#[tokio::test]
async fn introspection_and_revocation() {
    let mut f = setup(&[]).await;
    let (other_id, other_secret) = f.server.add_client(&[]);
    let cb = authorize(&mut f, "&scope=openid%20email%20offline_access").await;
    let t = exchange(&mut f, &params_of(&cb)["code"], None).await.json();
    let (at, rt) = (
        t["access_token"].as_str().unwrap().to_string(),
        t["refresh_token"].as_str().unwrap().to_string(),
    );
    let (id, secret) = (f.client_id.clone(), f.secret.clone());
    let intro = "/api/v1/oauth/introspect";

    let r = post_auth(&mut f, intro, &[("token", &at)], &id, &secret).await;
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let v = r.json();
    assert_eq!(v["active"], true);
    assert_eq!(v["client_id"], id);
    assert_eq!(v["username"], "alice");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["scope"], "openid email offline_access");
    assert!(v["exp"].as_i64().unwrap() > latchkey::clock::now());
    let v = post_auth(
        &mut f,
        intro,
        &[("token", &rt), ("token_type_hint", "refresh_token")],
        &id,
        &secret,
    )
    .await
    .json();
    assert_eq!(v["active"], true);
    // Another client learns nothing about these tokens; garbage is simply inactive.
    for token in [at.as_str(), rt.as_str()] {
        let v = post_auth(&mut f, intro, &[("token", token)], &other_id, &other_secret)
            .await
            .json();
        assert_eq!(v, serde_json::json!({"active": false}));
    }
    let v = post_auth(&mut f, intro, &[("token", "garbage")], &id, &secret)
        .await
        .json();
    assert_eq!(v, serde_json::json!({"active": false}));
    let missing = post_auth(&mut f, intro, &[], &id, &secret).await;
    assert_eq!(missing.json()["error"], "invalid_request");

    let revoke = "/api/v1/oauth/revoke";
    // Another client may not revoke them; an unknown token is fine (RFC 7009 §2.2).
    let r = post_auth(&mut f, revoke, &[("token", &at)], &other_id, &other_secret).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_grant");
    assert_eq!(
        post_auth(&mut f, revoke, &[("token", "unknown")], &id, &secret)
            .await
            .status,
        200
    );

    // Revoking the access token ends it alone.
    assert_eq!(
        post_auth(
            &mut f,
            revoke,
            &[("token", &at), ("token_type_hint", "access_token")],
            &id,
            &secret
        )
        .await
        .status,
        200
    );
    let bearer = format!("Bearer {at}");
    assert_eq!(userinfo(&mut f, &bearer).await.status, 401);
    assert_eq!(
        post_auth(&mut f, intro, &[("token", &at)], &id, &secret)
            .await
            .json()["active"],
        false
    );
    assert_eq!(
        post_auth(&mut f, intro, &[("token", &rt)], &id, &secret)
            .await
            .json()["active"],
        true
    );

    // Revoking the refresh token (with a wrong hint, which only reorders the lookup) ends the grant.
    let r = post_auth(
        &mut f,
        "/api/v1/oauth/token",
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
        &id,
        &secret,
    )
    .await;
    let t2 = r.json();
    let rt2 = t2["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(
        post_auth(
            &mut f,
            revoke,
            &[("token", &rt2), ("token_type_hint", "access_token")],
            &id,
            &secret
        )
        .await
        .status,
        200
    );
    assert_eq!(
        post_auth(&mut f, intro, &[("token", &rt2)], &id, &secret)
            .await
            .json()["active"],
        false
    );
    let at2 = t2["access_token"].as_str().unwrap();
    assert_eq!(
        post_auth(&mut f, intro, &[("token", at2)], &id, &secret)
            .await
            .json()["active"],
        false
    );
    let r = post_auth(
        &mut f,
        "/api/v1/oauth/token",
        &[("grant_type", "refresh_token"), ("refresh_token", &rt2)],
        &id,
        &secret,
    )
    .await;
    assert_eq!(r.json()["error"], "invalid_grant");
    // Both endpoints authenticate the client.
    for path in [intro, revoke] {
        let bad = post_auth(&mut f, path, &[("token", &at)], &id, "wrong-secret").await;
        assert_eq!(bad.status, 401);
    }
}

#[tokio::test]
async fn claims_parameter_releases_individual_claims() {
    let mut f = setup(&[]).await;
    let claims = r#"{"userinfo":{"name":{"essential":true}},"id_token":{"email":null,"auth_time":{"essential":true}}}"#;
    let first = f
        .browser
        .get(&authorize_url(
            &f.client_id,
            &format!("&scope=openid&claims={}", enc(claims)),
        ))
        .await;
    let login = f.browser.login(&first.location(), "alice", PASSWORD).await;
    let to_consent = f.browser.get(&login.location()).await;
    let page = f.browser.get(&to_consent.location()).await;
    assert!(
        page.body.contains("Your name and username") && page.body.contains("Your email address"),
        "consent covers the claims"
    );
    let interaction = page.input("interaction").unwrap();
    let csrf = page.input("csrf").unwrap();
    let r = f
        .browser
        .post_form(
            "/consent",
            &[
                ("csrf", &csrf),
                ("interaction", &interaction),
                ("decision", "allow"),
            ],
        )
        .await;
    let cb = f.browser.drive_to_callback(r, "alice").await;
    let t = exchange(&mut f, &params_of(&cb)["code"], None).await.json();
    let (_, id) = verify_jwt(t["id_token"].as_str().unwrap(), &jwks(&mut f).await);
    assert_eq!(id["email"], "alice@example.com");
    assert!(id.get("name").is_none(), "name was asked for UserInfo only");
    let bearer = format!("Bearer {}", t["access_token"].as_str().unwrap());
    let u = userinfo(&mut f, &bearer).await.json();
    assert_eq!(u["name"], "Alice Liddell");
    assert!(
        u.get("email").is_none(),
        "email was asked for the ID token only"
    );

    let r = f
        .browser
        .get(&authorize_url(&f.client_id, "&claims=%7Bnot-json"))
        .await;
    assert_eq!(params_of(&r.location())["error"], "invalid_request");
}

#[tokio::test]
async fn pushed_authorization_requests() {
    let mut f = setup(&["--require-par", "--skip-consent"]).await;
    let (id, secret) = (f.client_id.clone(), f.secret.clone());
    let (verifier, challenge) = pkce();
    let pushed = [
        ("response_type", "code"),
        ("redirect_uri", CALLBACK),
        ("scope", "openid email"),
        ("state", "par-state"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let r = post_auth(&mut f, "/api/v1/oauth/par", &pushed, &id, &secret).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    let uri = v["request_uri"].as_str().unwrap().to_string();
    assert!(uri.starts_with("urn:ietf:params:oauth:request_uri:"));
    assert_eq!(v["expires_in"], 60);

    let url = format!(
        "/api/v1/oauth/authorize?client_id={id}&request_uri={}",
        enc(&uri)
    );
    let first = f.browser.get(&url).await;
    let cb = f.browser.drive_to_callback(first, "alice").await;
    let p = params_of(&cb);
    assert_eq!(p["state"], "par-state");
    let t = exchange(&mut f, &p["code"], Some(&verifier)).await;
    assert_eq!(t.status, 200, "{}", t.body);
    // Single use.
    let again = f.browser.get(&url).await;
    assert_eq!(again.status, 400);
    assert!(again.header("location").is_none());
    // This client must push: a plain request is refused back to it.
    let plain = f.browser.get(&authorize_url(&id, "")).await;
    assert_eq!(params_of(&plain.location())["error"], "invalid_request");
    // Bad pushes are JSON errors; pushing needs client authentication.
    let bad = [
        ("response_type", "code"),
        ("redirect_uri", "https://evil.example/cb"),
        ("scope", "openid"),
    ];
    let r = post_auth(&mut f, "/api/v1/oauth/par", &bad, &id, &secret).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_request");
    let r = f.browser.post_form("/api/v1/oauth/par", &pushed).await;
    assert_eq!(r.status, 401);
    // Another client cannot redeem this client's request_uri.
    let r = post_auth(&mut f, "/api/v1/oauth/par", &pushed, &id, &secret).await;
    let uri = r.json()["request_uri"].as_str().unwrap().to_string();
    let (other, _) = f.server.add_client(&[]);
    let r = f
        .browser
        .get(&format!(
            "/api/v1/oauth/authorize?client_id={other}&request_uri={}",
            enc(&uri)
        ))
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_let_exactly_one_through() {
    let mut f = setup(&[]).await;
    let cb = authorize(&mut f, "&scope=openid%20offline_access").await;
    let t = exchange(&mut f, &params_of(&cb)["code"], None).await.json();
    let rt = t["refresh_token"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut b = f.server.browser();
        let (rt, auth) = (rt.clone(), basic(&f.client_id, &f.secret));
        tasks.push(tokio::spawn(async move {
            let form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", rt.as_str()),
            ];
            b.post_form_with("/api/v1/oauth/token", &form, &[("authorization", &auth)])
                .await
        }));
    }
    let mut ok = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        if r.status == 200 {
            ok.push(r.json());
        } else {
            assert_eq!(r.json()["error"], "invalid_grant");
        }
    }
    assert_eq!(ok.len(), 1, "exactly one refresh succeeds");
    // The losers were replays: the family, the winner's new token included, is revoked.
    let r = refresh(&mut f, ok[0]["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.json()["error"], "invalid_grant");
}
