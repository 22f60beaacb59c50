//! The grants besides the code flow: client_credentials and the opt-in password grant.

use crate::support::*;

async fn token(b: &mut Browser, id: &str, secret: &str, form: &[(&str, &str)]) -> Resp {
    b.post_form_with(
        "/api/v1/oauth/token",
        form,
        &[("authorization", &basic(id, secret))],
    )
    .await
}

#[tokio::test]
async fn client_credentials_for_confidential_clients_that_may() {
    let server = Server::new("").start().await;
    let out = server.cli(
        &[
            "client",
            "add",
            "--name",
            "Backup job",
            "--grant-type",
            "client_credentials",
            "--scope",
            "openid",
            "--scope",
            "groups",
            "--json",
        ],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    let (id, secret) = (
        v["client_id"].as_str().unwrap().to_string(),
        v["client_secret"].as_str().unwrap().to_string(),
    );
    let mut b = server.browser();
    let r = token(
        &mut b,
        &id,
        &secret,
        &[("grant_type", "client_credentials"), ("scope", "groups")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let t = r.json();
    assert!(t.get("id_token").is_none() && t.get("refresh_token").is_none());
    assert_eq!(t["scope"], "groups");
    let jwks = b.get("/api/v1/oauth/discovery/keys").await.json();
    let (h, c) = verify_jwt(t["access_token"].as_str().unwrap(), &jwks);
    assert_eq!(h["typ"], "at+jwt");
    assert_eq!(c["sub"], id);
    assert_eq!(c["client_id"], id);
    let v = token(
        &mut b,
        &id,
        &secret,
        &[("grant_type", "client_credentials")],
    )
    .await
    .json();
    assert_eq!(v["scope"], "");
    // It is a live token, but not a user's: introspection says so, UserInfo refuses.
    let at = t["access_token"].as_str().unwrap();
    let i = b
        .post_form_with(
            "/api/v1/oauth/introspect",
            &[("token", at)],
            &[("authorization", &basic(&id, &secret))],
        )
        .await
        .json();
    assert_eq!(i["active"], true);
    assert_eq!(i["sub"], id);
    assert!(i.get("username").is_none());
    let u = b
        .get_with(
            "/api/v1/oauth/userinfo",
            &[("authorization", &format!("Bearer {at}"))],
        )
        .await;
    assert_eq!(u.status, 403);
    // openid is about a user; unregistered scopes are refused.
    for s in ["openid", "email"] {
        let r = token(
            &mut b,
            &id,
            &secret,
            &[("grant_type", "client_credentials"), ("scope", s)],
        )
        .await;
        assert_eq!(r.json()["error"], "invalid_scope", "{s}");
    }
    // Clients without the grant, and public clients, cannot use it.
    let (plain, plain_secret) = server.add_client(&[]);
    let r = token(
        &mut b,
        &plain,
        &plain_secret,
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "unauthorized_client");
    let public = server.cli(
        &[
            "client",
            "add",
            "--name",
            "P",
            "--public",
            "--grant-type",
            "client_credentials",
        ],
        None,
    );
    assert_eq!(public.code, 2);
    assert!(public.stderr.contains("grant_type"));
}

#[tokio::test]
async fn password_grant_only_when_opted_in() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let (id, secret) =
        server.add_client(&["--grant-type", "password", "--grant-type", "refresh_token"]);
    let mut b = server.browser();
    let r = token(
        &mut b,
        &id,
        &secret,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
            ("scope", "openid email"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let t = r.json();
    let jwks = b.get("/api/v1/oauth/discovery/keys").await.json();
    let (_, c) = verify_jwt(t["id_token"].as_str().unwrap(), &jwks);
    assert_eq!(c["email"], "alice@example.com");
    assert_eq!(c["amr"][0], "pwd");
    let refreshed = token(
        &mut b,
        &id,
        &secret,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);

    // Wrong passwords: generic invalid_grant; after the three free failures the next
    // attempt waits (SPEC §8), right password or not, and no hash is computed.
    let bad = [
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", "not the password at all"),
    ];
    for _ in 0..4 {
        let r = token(&mut b, &id, &secret, &bad).await;
        assert_eq!(r.json()["error"], "invalid_grant");
        assert!(
            r.json()["error_description"]
                .as_str()
                .unwrap()
                .contains("invalid username")
        );
    }
    let good = [
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", PASSWORD),
    ];
    let r = token(&mut b, &id, &secret, &good).await;
    assert_eq!(r.json()["error"], "invalid_grant");
    assert!(
        r.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("too many")
    );
    let r = token(
        &mut b,
        &id,
        &secret,
        &[("grant_type", "password"), ("username", "alice")],
    )
    .await;
    assert_eq!(r.json()["error"], "invalid_request");

    // Off by default.
    let (plain, plain_secret) = server.add_client(&[]);
    let r = token(&mut b, &plain, &plain_secret, &good).await;
    assert_eq!(r.json()["error"], "unauthorized_client");
}

#[tokio::test]
async fn device_authorization_grant() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let device = "urn:ietf:params:oauth:grant-type:device_code";
    let out = server.cli(
        &[
            "client",
            "add",
            "--name",
            "Lobby TV",
            "--public",
            "--grant-type",
            device,
            "--grant-type",
            "refresh_token",
            "--json",
        ],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = out.json()["client_id"].as_str().unwrap().to_string();
    let mut tv = server.browser();
    let start = |tv: &mut Browser| {
        let id = id.clone();
        let mut b = std::mem::replace(tv, server.browser());
        async move {
            let r = b
                .post_form(
                    "/api/v1/oauth/device_authorization",
                    &[
                        ("client_id", &id),
                        ("scope", "openid profile offline_access"),
                    ],
                )
                .await;
            (b, r)
        }
    };
    let (b, r) = start(&mut tv).await;
    tv = b;
    assert_eq!(r.status, 200, "{}", r.body);
    let d = r.json();
    let user_code = d["user_code"].as_str().unwrap().to_string();
    assert_eq!(user_code.len(), 9, "XXXX-XXXX");
    assert_eq!(d["verification_uri"], format!("{}/device", server.issuer));
    assert_eq!(d["interval"], 5);
    let device_code = d["device_code"].as_str().unwrap().to_string();
    let poll = |tv: &mut Browser, code: String| {
        let id = id.clone();
        let mut b = std::mem::replace(tv, server.browser());
        async move {
            let r = b
                .post_form(
                    "/api/v1/oauth/token",
                    &[
                        ("grant_type", device),
                        ("device_code", &code),
                        ("client_id", &id),
                    ],
                )
                .await;
            (b, r)
        }
    };
    let (b, r) = poll(&mut tv, device_code.clone()).await;
    tv = b;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "authorization_pending");
    let (b, r) = poll(&mut tv, device_code.clone()).await;
    tv = b;
    assert_eq!(r.json()["error"], "slow_down");

    // The person signs in on a phone and approves.
    let mut phone = server.browser();
    let r = phone
        .get(&format!("/device?user_code={}", enc(&user_code)))
        .await;
    let login = r.location();
    assert!(login.starts_with("/login?next="), "{login}");
    let r = phone.login(&login, "alice", PASSWORD).await;
    assert!(r.location().starts_with("/device?user_code="));
    let page = phone.get(&r.location()).await;
    assert!(
        page.body.contains("Lobby TV") && page.body.contains(&user_code),
        "{}",
        page.body
    );
    let csrf = page.input("csrf").unwrap();
    let wrong = phone
        .post_form("/device", &[("csrf", &csrf), ("user_code", "BCDF-GHJK")])
        .await;
    assert_eq!(wrong.status, 400);
    let done = phone
        .post_form(
            "/device",
            &[
                ("csrf", &csrf),
                ("user_code", &user_code),
                ("decision", "allow"),
            ],
        )
        .await;
    assert_eq!(done.status, 200);
    assert!(done.body.contains("Device connected"));

    let (b, r) = poll(&mut tv, device_code.clone()).await;
    tv = b;
    assert_eq!(r.status, 200, "{}", r.body);
    let t = r.json();
    let jwks = tv.get("/api/v1/oauth/discovery/keys").await.json();
    let (_, c) = verify_jwt(t["id_token"].as_str().unwrap(), &jwks);
    assert_eq!(c["preferred_username"], "alice");
    assert!(t["refresh_token"].is_string());
    let (b, r) = poll(&mut tv, device_code).await;
    tv = b;
    assert_eq!(
        r.json()["error"],
        "invalid_grant",
        "a device code is used once"
    );

    // A denied request reports access_denied.
    let (b, r) = start(&mut tv).await;
    tv = b;
    let d = r.json();
    let csrf = phone.get("/device").await.input("csrf").unwrap();
    let code = d["user_code"].as_str().unwrap();
    phone
        .post_form(
            "/device",
            &[("csrf", &csrf), ("user_code", code), ("decision", "deny")],
        )
        .await;
    let (_, r) = poll(&mut tv, d["device_code"].as_str().unwrap().to_string()).await;
    assert_eq!(r.json()["error"], "access_denied");

    // Clients without the grant may not start it.
    let (plain, secret) = server.add_client(&[]);
    let r = server
        .browser()
        .post_form_with(
            "/api/v1/oauth/device_authorization",
            &[],
            &[("authorization", &basic(&plain, &secret))],
        )
        .await;
    assert_eq!(r.json()["error"], "unauthorized_client");
}
