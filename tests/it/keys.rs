//! Signing-key rotation: `keys rotate` with the server running publishes the new key at
//! once and signs with it; tokens signed before stay verifiable; `keys list` shows state.

use crate::support::*;

#[tokio::test]
async fn rotation_while_serving() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let (id, secret) = server.add_client(&["--skip-consent"]);
    let mut b = server.browser();
    let token = |b: &mut Browser| {
        let (id, secret) = (id.clone(), secret.clone());
        let mut b2 = std::mem::replace(b, server.browser());
        async move {
            let first = b2.get(&authorize_url(&id, "")).await;
            let cb = b2.drive_to_callback(first, "alice").await;
            let t = b2.redeem(&cb, None, &basic(&id, &secret)).await.json();
            (b2, t)
        }
    };
    let (b1, before) = token(&mut b).await;
    b = b1;
    let jwks_before = b.get("/api/v1/oauth/discovery/keys").await.json();
    let (h_before, _) = verify_jwt(before["id_token"].as_str().unwrap(), &jwks_before);

    let out = server.cli(&["keys", "rotate", "--alg", "RS256", "--json"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let new_kid = out.json()["rotated"][0]["kid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_kid, h_before["kid"].as_str().unwrap());

    // Published at once, old key kept; tokens signed before still verify and still work.
    let jwks = b.get("/api/v1/oauth/discovery/keys").await.json();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids.len(), 3);
    assert!(kids.contains(&new_kid.as_str()) && kids.contains(&h_before["kid"].as_str().unwrap()));
    verify_jwt(before["id_token"].as_str().unwrap(), &jwks);
    let bearer = format!("Bearer {}", before["access_token"].as_str().unwrap());
    assert_eq!(
        b.get_with("/api/v1/oauth/userinfo", &[("authorization", &bearer)])
            .await
            .status,
        200
    );

    // New tokens are signed with the new key.
    let (b1, after) = token(&mut b).await;
    b = b1;
    let (h_after, _) = verify_jwt(after["id_token"].as_str().unwrap(), &jwks);
    assert_eq!(h_after["kid"], new_kid.as_str());
    let (h_at, _) = verify_jwt(after["access_token"].as_str().unwrap(), &jwks);
    assert_eq!(h_at["kid"], new_kid.as_str());

    let list = server.cli(&["keys", "list", "--json"], None).json();
    let states: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["alg"].as_str().unwrap().to_string(),
                k["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        states
            .iter()
            .filter(|(a, s)| a == "RS256" && s == "retired")
            .count(),
        1
    );
    assert_eq!(states.iter().filter(|(_, s)| s == "active").count(), 2);
    let human = server.cli(&["keys", "list"], None);
    assert!(
        human.stdout.contains("state=retired") && human.stdout.contains("age_days=0"),
        "{}",
        human.stdout
    );
    let bad = server.cli(&["keys", "rotate", "--alg", "HS256"], None);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("alg"));
    drop(b);
}

#[tokio::test]
async fn rotation_while_stopped_is_used_at_the_next_start() {
    let mut server = Server::new("").start().await;
    let before = server
        .browser()
        .get("/api/v1/oauth/discovery/keys")
        .await
        .json();
    server.stop();
    let out = server.cli(&["keys", "rotate", "--json"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["rotated"].as_array().unwrap().len(), 2);
    server.spawn().await;
    let after = server
        .browser()
        .get("/api/v1/oauth/discovery/keys")
        .await
        .json();
    assert_eq!(after["keys"].as_array().unwrap().len(), 4);
    assert_eq!(before["keys"].as_array().unwrap().len(), 2);
}
