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

    // Wrong password: generic invalid_grant; right away again: throttled, no hash.
    let bad = [
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", "not the password at all"),
    ];
    let r = token(&mut b, &id, &secret, &bad).await;
    assert_eq!(r.json()["error"], "invalid_grant");
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
