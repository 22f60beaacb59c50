//! Several Latchkey nodes on one PostgreSQL database (SPEC §13), against a real server
//! started by the test (`support/postgres.rs`): what one node writes, the other sees.

use crate::support::*;

/// `[store]` for the database at `url`.
fn on(url: &str) -> String {
    format!("[store]\nbackend = \"postgres\"\nurl = \"{url}\"\npool_size = 4\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_database_sign_in_on_one_and_redeem_on_the_other() {
    let url = postgres::server().database();
    let a = Server::new(&on(&url)).start().await;
    let b = Server::new(&on(&url)).start().await;
    // Written through node A's admin socket, read by node B.
    a.add_user("alice", &[]);
    let (client_id, secret) = a.add_client(&[]);
    let auth = basic(&client_id, &secret);
    assert_eq!(b.cli(&["user", "show", "alice", "--json"], None).code, 0);

    let mut on_a = a.browser();
    let (verifier, challenge) = pkce();
    let start = on_a
        .get(&authorize_url(
            &client_id,
            &format!("&code_challenge={challenge}&code_challenge_method=S256"),
        ))
        .await;
    let callback = on_a.drive_to_callback(start, "alice").await;

    // The code issued by A is redeemed at B, once.
    let mut on_b = b.browser();
    let tokens = on_b.redeem(&callback, Some(&verifier), &auth).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let tokens = tokens.json();
    let again = on_a.redeem(&callback, Some(&verifier), &auth).await;
    assert_eq!(again.status, 400, "{}", again.body);
    assert_eq!(again.json()["error"], "invalid_grant");

    // Both nodes sign with the same keys: B's ID token verifies against A's JWKS.
    let jwks = on_a.get("/api/v1/oauth/discovery/keys").await.json();
    let (_, claims) = verify_jwt(tokens["id_token"].as_str().unwrap(), &jwks);
    assert_eq!(claims["aud"], client_id.as_str());

    // The replay at A revoked what B issued for that code.
    let rt = tokens["refresh_token"].as_str().unwrap();
    let revoked = on_a.refresh(rt, &auth).await;
    assert_eq!(revoked.json()["error"], "invalid_grant", "{}", revoked.body);

    // A fresh refresh token from B rotates at A, once; the replay at B revokes the family.
    let tokens = on_b
        .sign_in_for_tokens(&client_id, &auth, "alice")
        .await
        .json();
    let rt = tokens["refresh_token"].as_str().unwrap();
    let rotated = on_a.refresh(rt, &auth).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let replay = on_b.refresh(rt, &auth).await;
    assert_eq!(replay.json()["error"], "invalid_grant");
    let successor = rotated.json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let after = on_a.refresh(&successor, &auth).await;
    assert_eq!(
        after.json()["error"],
        "invalid_grant",
        "the replay at one node revoked the family at the other"
    );

    // A session made at A is known at B (the same cookie signs in there).
    let name = "__Host-latchkey_session";
    let cookie = on_a.cookies.get(name).cloned().expect("a session at A");
    let mut fresh_b = b.browser();
    fresh_b.cookies.insert(name.into(), cookie);
    let page = fresh_b.get("/account").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_database_is_unreachable_answers_503_and_recovers() {
    let url = postgres::server().database();
    let server = Server::new(&on(&url)).start().await;
    server.add_user("bob", &[]);
    let (client_id, secret) = server.add_client(&[]);
    let auth = basic(&client_id, &secret);
    let mut b = server.browser();
    let tokens = b.sign_in_for_tokens(&client_id, &auth, "bob").await.json();
    let rt = tokens["refresh_token"].as_str().unwrap().to_string();
    let db = url.rsplit('/').next().unwrap().to_string();
    // Refuse new connections to this database and end the open ones.
    postgres::server().psql(
        "postgres",
        &format!(
            "ALTER DATABASE {db} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
        ),
    );
    let refused = b.refresh(&rt, &auth).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.json()["error"], "temporarily_unavailable");
    let discovery = b.get("/.well-known/openid-configuration").await;
    assert_eq!(
        discovery.status, 200,
        "what needs no database keeps answering"
    );
    postgres::server().psql(
        "postgres",
        &format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"),
    );
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let again = b.refresh(&rt, &auth).await;
    assert_eq!(
        again.status, 200,
        "the node reconnected by itself: {}",
        again.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_to_postgres_and_back_keeps_everything() {
    let mut old = Server::new("").start().await;
    old.add_user("carol", &[]);
    let (client_id, secret) = old.add_client(&[]);
    let auth = basic(&client_id, &secret);
    let tokens = old
        .browser()
        .sign_in_for_tokens(&client_id, &auth, "carol")
        .await
        .json();
    let rt = tokens["refresh_token"].as_str().unwrap().to_string();
    old.stop();

    let url = postgres::server().database();
    let out = old.cli(&["migrate", "--to", &url, "--json"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let copied = out.json();
    assert_eq!(copied["copied"]["users"], 1, "{copied}");
    assert_eq!(copied["copied"]["clients"], 1, "{copied}");
    assert_eq!(copied["copied"]["refresh_tokens"], 1, "{copied}");
    assert!(copied["audit_events"].as_u64().unwrap() > 0, "{copied}");
    let again = old.cli(&["migrate", "--to", &url], None);
    assert_eq!(again.code, 1, "{}", again.stdout);
    assert!(again.stderr.contains("not empty"), "{}", again.stderr);

    // A node on the copy: the refresh token issued on the file works there.
    let mut node = Server::new(&on(&url)).start().await;
    let rotated = node.browser().refresh(&rt, &auth).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let rt2 = rotated.json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    node.stop();

    // And back into a new file.
    let back = Server::new("");
    let out = back.cli(&["migrate", "--from", &url, "--json"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let back = back.start().await;
    let mut b = back.browser();
    let fresh = b.refresh(&rt2, &auth).await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    let used = b.refresh(&rt, &auth).await;
    assert_eq!(
        used.json()["error"],
        "invalid_grant",
        "the rotation made on PostgreSQL came back too"
    );
}
