//! Access tokens keep no record of their own (SPEC §6, `store` module note): each way a
//! token ends — revoked alone, its user disabled, its session logged out — takes effect
//! at UserInfo and introspection at once, and still holds after a restart, while the
//! tokens that did not end keep working.

use crate::support::*;

const BYE: &str = "https://rp.example/bye";

struct Rp {
    id: String,
    auth: String,
}

async fn userinfo_status(b: &mut Browser, at: &str) -> u16 {
    b.get_with(
        "/api/v1/oauth/userinfo",
        &[("authorization", &format!("Bearer {at}"))],
    )
    .await
    .status
}

async fn active(b: &mut Browser, rp: &Rp, token: &str) -> bool {
    let v = b
        .post_form_with(
            "/api/v1/oauth/introspect",
            &[("token", token)],
            &[("authorization", &rp.auth)],
        )
        .await
        .json();
    v["active"] == true
}

async fn post(b: &mut Browser, rp: &Rp, path: &str, form: &[(&str, &str)]) -> Resp {
    b.post_form_with(path, form, &[("authorization", &rp.auth)])
        .await
}

fn field(v: &serde_json::Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k}: {v}"))
        .to_string()
}

#[tokio::test]
async fn every_end_of_an_access_token_holds_at_once_and_after_a_restart() {
    let mut server = Server::new("").start().await;
    for u in ["alice", "bob", "carol"] {
        server.add_user(u, &[]);
    }
    let (id, secret) = server.add_client(&[
        "--skip-consent",
        "--post-logout-redirect-uri",
        BYE,
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "refresh_token",
        "--grant-type",
        "client_credentials",
        "--scope",
        "openid",
        "--scope",
        "profile",
        "--scope",
        "email",
        "--scope",
        "groups",
    ]);
    let rp = Rp {
        auth: basic(&id, &secret),
        id,
    };
    let sign_in = async |user: &str| {
        let mut b = server.browser();
        let t = b.sign_in_for_tokens(&rp.id, &rp.auth, user).await.json();
        (b, t)
    };
    let (mut a, alice) = sign_in("alice").await;
    let (_, bob) = sign_in("bob").await;
    let (mut c, carol) = sign_in("carol").await;

    // alice: one access token revoked alone; the next one of the same grant lives on.
    let revoked = field(&alice, "access_token");
    let r = post(
        &mut a,
        &rp,
        "/api/v1/oauth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &field(&alice, "refresh_token")),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let kept = field(&r.json(), "access_token");
    let r = post(
        &mut a,
        &rp,
        "/api/v1/oauth/revoke",
        &[("token", &revoked), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // bob: disabled.
    let disabled = field(&bob, "access_token");
    assert_eq!(userinfo_status(&mut a, &disabled).await, 200);
    assert_eq!(server.cli(&["user", "disable", "bob"], None).code, 0);

    // carol: her session logged out (her grant is not offline).
    let logged_out = field(&carol, "access_token");
    assert_eq!(userinfo_status(&mut c, &logged_out).await, 200);
    let url = format!(
        "/api/v1/oauth/logout?id_token_hint={}&post_logout_redirect_uri={}",
        field(&carol, "id_token"),
        enc(BYE)
    );
    assert_eq!(c.get(&url).await.status, 303);

    // The client's own tokens: one revoked, one kept.
    let cc = async |b: &mut Browser| {
        let r = post(
            b,
            &rp,
            "/api/v1/oauth/token",
            &[("grant_type", "client_credentials")],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        field(&r.json(), "access_token")
    };
    let (cc_revoked, cc_kept) = (cc(&mut a).await, cc(&mut a).await);
    assert!(active(&mut a, &rp, &cc_revoked).await);
    let r = post(
        &mut a,
        &rp,
        "/api/v1/oauth/revoke",
        &[("token", &cc_revoked)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);

    for round in ["at once", "after a restart"] {
        let mut b = server.browser();
        for (what, token) in [
            ("revoked alone", &revoked),
            ("user disabled", &disabled),
            ("session logged out", &logged_out),
        ] {
            assert_eq!(userinfo_status(&mut b, token).await, 401, "{what}, {round}");
            assert!(!active(&mut b, &rp, token).await, "{what}, {round}");
        }
        assert!(
            !active(&mut b, &rp, &cc_revoked).await,
            "client token, {round}"
        );
        assert_eq!(userinfo_status(&mut b, &kept).await, 200, "kept, {round}");
        assert!(active(&mut b, &rp, &kept).await, "kept, {round}");
        assert!(
            active(&mut b, &rp, &cc_kept).await,
            "client token kept, {round}"
        );
        if round == "at once" {
            server.stop();
            server.spawn().await;
        }
    }
}

#[tokio::test]
async fn client_credentials_tokens_write_nothing_but_a_row_per_client_and_minute() {
    let mut server = Server::new("").start().await;
    let (id, secret) = server.add_client(&["--grant-type", "client_credentials"]);
    let rp = Rp {
        auth: basic(&id, &secret),
        id,
    };
    let mut b = server.browser();
    for _ in 0..50 {
        let r = post(
            &mut b,
            &rp,
            "/api/v1/oauth/token",
            &[("grant_type", "client_credentials")],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // Shutdown writes the pending count as one audit row.
    server.stop();
    let out = server.cli(&["audit", "--json"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows: Vec<serde_json::Value> = out
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "token.issued" && e["client"] == rp.id.as_str())
        .cloned()
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("client_credentials: 50 token(s)"),
        "{rows:?}"
    );
    server.spawn().await;
}
