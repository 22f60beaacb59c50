//! Logout: RP-initiated (OIDC RP-Initiated Logout 1.0), back-channel logout tokens and
//! front-channel iframes, and what survives a logout.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const BYE: &str = "https://rp.example/bye";

struct Signed {
    server: Server,
    browser: Browser,
    client_id: String,
    secret: String,
    tokens: Value,
    jwks: Value,
}

async fn signed_in(extra: &[&str], scope: &str) -> Signed {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let mut args = vec!["--skip-consent", "--post-logout-redirect-uri", BYE];
    args.extend_from_slice(extra);
    let (client_id, secret) = server.add_client(&args);
    let mut browser = server.browser();
    let first = browser.get(&authorize_url(&client_id, scope)).await;
    let cb = browser.drive_to_callback(first, "alice").await;
    let code = params_of(&cb)["code"].clone();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
    ];
    let auth = basic(&client_id, &secret);
    let tokens = browser
        .post_form_with("/api/v1/oauth/token", &form, &[("authorization", &auth)])
        .await
        .json();
    let jwks = browser.get("/api/v1/oauth/discovery/keys").await.json();
    Signed {
        server,
        browser,
        client_id,
        secret,
        tokens,
        jwks,
    }
}

async fn is_signed_in(s: &mut Signed) -> bool {
    let r = s
        .browser
        .get(&authorize_url(&s.client_id, "&prompt=none"))
        .await;
    let p = params_of(&r.location());
    match p.get("error").map(String::as_str) {
        None => true,
        Some("login_required") => false,
        Some(other) => panic!("unexpected {other}"),
    }
}

async fn refresh(s: &mut Signed, rt: &str) -> Resp {
    let form = [("grant_type", "refresh_token"), ("refresh_token", rt)];
    let auth = basic(&s.client_id, &s.secret);
    s.browser
        .post_form_with("/api/v1/oauth/token", &form, &[("authorization", &auth)])
        .await
}

#[tokio::test]
async fn rp_initiated_logout_redirects_with_the_exact_state() {
    let mut s = signed_in(&[], "").await;
    let id_token = s.tokens["id_token"].as_str().unwrap().to_string();
    let state = "a b\"<>&#%[]~";
    let url = format!(
        "/api/v1/oauth/logout?id_token_hint={id_token}&post_logout_redirect_uri={}&state={}",
        enc(BYE),
        enc(state)
    );
    let r = s.browser.get(&url).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let loc = r.location();
    assert!(loc.starts_with(&format!("{BYE}?")));
    let p = params_of(&loc);
    assert_eq!(p.len(), 1, "only state is added: {loc}");
    assert_eq!(p["state"], state);
    assert!(
        !is_signed_in(&mut s).await,
        "prompt=none after logout gives login_required"
    );

    // Tokens of the session are gone: refresh and userinfo fail.
    let rt = s.tokens["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(refresh(&mut s, &rt).await.json()["error"], "invalid_grant");
    let bearer = format!("Bearer {}", s.tokens["access_token"].as_str().unwrap());
    assert_eq!(
        s.browser
            .get_with("/api/v1/oauth/userinfo", &[("authorization", &bearer)])
            .await
            .status,
        401
    );

    // Without state: no state is added. POST works too.
    let mut s = signed_in(&[], "").await;
    let id_token = s.tokens["id_token"].as_str().unwrap().to_string();
    let r = s
        .browser
        .post_form(
            "/api/v1/oauth/logout",
            &[
                ("id_token_hint", &id_token),
                ("post_logout_redirect_uri", BYE),
            ],
        )
        .await;
    assert_eq!(r.location(), BYE);
    assert!(!is_signed_in(&mut s).await);
}

#[tokio::test]
async fn bad_logout_requests_never_redirect() {
    let mut s = signed_in(&[], "").await;
    let id_token = s.tokens["id_token"].as_str().unwrap().to_string();
    // An ID token with alg none, and one signed by a key that is not ours.
    let parts: Vec<&str> = id_token.split('.').collect();
    let none = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), parts[1]);
    let foreign_keys = latchkey::keys::KeySet::from_records(&[latchkey::keys::signing::generate(
        latchkey::model::Alg::ES256,
        0,
    )
    .unwrap()])
    .unwrap();
    let claims: serde_json::Map<String, Value> = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[1])
            .unwrap(),
    )
    .unwrap();
    let foreign = foreign_keys
        .sign(latchkey::model::Alg::ES256, "JWT", &claims)
        .unwrap();
    let cases = [
        format!(
            "id_token_hint={id_token}&post_logout_redirect_uri={}",
            enc("https://rp.example/other")
        ),
        format!(
            "id_token_hint={id_token}&post_logout_redirect_uri={}",
            enc("https://rp.example/bye?foo=bar")
        ),
        format!("id_token_hint={none}&post_logout_redirect_uri={}", enc(BYE)),
        format!(
            "id_token_hint={foreign}&post_logout_redirect_uri={}",
            enc(BYE)
        ),
        format!(
            "id_token_hint={id_token}&client_id=someone-else&post_logout_redirect_uri={}",
            enc(BYE)
        ),
    ];
    for q in cases {
        let r = s.browser.get(&format!("/api/v1/oauth/logout?{q}")).await;
        assert_eq!(r.status, 400, "{q}");
        assert!(r.header("location").is_none(), "{q} must not redirect");
    }
    assert!(
        is_signed_in(&mut s).await,
        "a refused request logs nobody out"
    );

    // Without a valid hint the user confirms on a page, and no redirect follows.
    for q in [
        String::new(),
        format!("post_logout_redirect_uri={}&state=x", enc(BYE)),
        "state=x".into(),
    ] {
        let r = s.browser.get(&format!("/api/v1/oauth/logout?{q}")).await;
        assert_eq!(r.status, 200, "{q}");
        assert!(r.header("location").is_none());
        assert!(r.body.contains("Sign out?"));
    }
    let page = s.browser.get("/logout").await;
    let csrf = page.input("csrf").unwrap();
    let forged = s.browser.post_form("/logout", &[("csrf", "nope")]).await;
    assert_eq!(forged.status, 400);
    assert!(
        is_signed_in(&mut s).await,
        "no logout without the CSRF token"
    );
    let done = s.browser.post_form("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(done.status, 200);
    assert!(done.body.contains("You are signed out"));
    assert!(done.set_cookie_cleared("latchkey_session"));
    assert!(!is_signed_in(&mut s).await);
}

fn b64(s: &str) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, s)
}

#[tokio::test]
async fn back_channel_and_front_channel_logout() {
    let (port, mut bodies) = body_receiver().await;
    let bc = format!("http://127.0.0.1:{port}/backchannel");
    let extra = [
        "--backchannel-logout-uri",
        &bc,
        "--frontchannel-logout-uri",
        "https://rp.example/fc",
        "--frontchannel-logout-session-required",
    ];
    let mut s = signed_in(&extra, "").await;
    let (_, id) = verify_jwt(s.tokens["id_token"].as_str().unwrap(), &s.jwks);
    let page = s.browser.get("/logout").await;
    let csrf = page.input("csrf").unwrap();
    let done = s.browser.post_form("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(done.status, 200);

    // Front channel: an iframe with iss and sid, allowed by the page's CSP.
    let expected = format!(
        "https://rp.example/fc?iss={}&sid={}",
        enc(&s.server.issuer),
        enc(id["sid"].as_str().unwrap())
    );
    assert!(
        done.body.contains(&format!(
            "src=\"{}\"",
            expected.replace('&', "&amp;").replace('/', "&#x2f;")
        )),
        "{}",
        done.body
    );
    assert!(
        done.header("content-security-policy")
            .unwrap()
            .contains("frame-src https://rp.example")
    );

    // Back channel: a logout token per the spec.
    let body = tokio::time::timeout(Duration::from_secs(10), bodies.recv())
        .await
        .expect("logout token delivered")
        .unwrap();
    let form: std::collections::HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(form.len(), 1, "only logout_token is posted");
    let (h, c) = verify_jwt(&form["logout_token"], &s.jwks);
    assert_eq!(h["typ"], "logout+jwt");
    assert_eq!(c["iss"], s.server.issuer);
    assert_eq!(c["aud"], s.client_id);
    assert_eq!(c["sub"], id["sub"]);
    assert_eq!(c["sid"], id["sid"]);
    assert!(c["jti"].is_string());
    assert!(c.get("nonce").is_none());
    assert_eq!(
        c["events"],
        serde_json::json!({"http://schemas.openid.net/event/backchannel-logout": {}})
    );
    let now = latchkey::clock::now();
    assert!((now - 60..=now + 5).contains(&c["iat"].as_i64().unwrap()));
}

#[tokio::test]
async fn offline_grants_outlive_the_session() {
    let mut s = signed_in(&[], "&scope=openid%20offline_access").await;
    let rt = s.tokens["refresh_token"].as_str().unwrap().to_string();
    let page = s.browser.get("/logout").await;
    let csrf = page.input("csrf").unwrap();
    s.browser.post_form("/logout", &[("csrf", &csrf)]).await;
    assert!(!is_signed_in(&mut s).await);
    let r = refresh(&mut s, &rt).await;
    assert_eq!(
        r.status, 200,
        "offline_access keeps the refresh token: {}",
        r.body
    );
}

#[tokio::test]
async fn discovery_advertises_logout() {
    let server = Server::new("").start().await;
    let d = server
        .browser()
        .get("/.well-known/openid-configuration")
        .await
        .json();
    assert_eq!(
        d["end_session_endpoint"],
        format!("{}/api/v1/oauth/logout", server.issuer)
    );
    for k in [
        "frontchannel_logout_supported",
        "frontchannel_logout_session_supported",
        "backchannel_logout_supported",
        "backchannel_logout_session_supported",
    ] {
        assert_eq!(d[k], true, "{k}");
    }
}

#[tokio::test]
async fn codes_and_front_channel_tokens_die_with_the_session() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let (id, secret) = server.add_client(&[
        "--skip-consent",
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "implicit",
    ]);
    let mut b = server.browser();
    let url = format!(
        "/api/v1/oauth/authorize?client_id={id}&redirect_uri={}&response_type=code%20token&scope=openid&state=s&nonce=n",
        enc(CALLBACK)
    );
    let first = b.get(&url).await;
    let cb = b.drive_to_callback(first, "alice").await;
    let (_, frag) = cb.split_once('#').unwrap();
    let p: std::collections::HashMap<String, String> = form_urlencoded::parse(frag.as_bytes())
        .into_owned()
        .collect();
    let page = b.get("/logout").await;
    let csrf = page.input("csrf").unwrap();
    b.post_form("/logout", &[("csrf", &csrf)]).await;
    // The front-channel access token was revoked with the session...
    let bearer = format!("Bearer {}", p["access_token"]);
    assert_eq!(
        b.get_with("/api/v1/oauth/userinfo", &[("authorization", &bearer)])
            .await
            .status,
        401
    );
    // ...and the code issued before the logout no longer yields tokens.
    let form = [
        ("grant_type", "authorization_code"),
        ("code", p["code"].as_str()),
        ("redirect_uri", CALLBACK),
    ];
    let r = b
        .post_form_with(
            "/api/v1/oauth/token",
            &form,
            &[("authorization", &basic(&id, &secret))],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_grant");
    assert_eq!(
        b.get_with("/api/v1/oauth/userinfo", &[("authorization", &bearer)])
            .await
            .status,
        401,
        "still revoked"
    );
}
