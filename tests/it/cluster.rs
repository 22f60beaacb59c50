//! Several Latchkey nodes on one PostgreSQL database (SPEC §13), against a real server
//! started by the test (`support/postgres.rs`): what one node writes, the other sees.

use crate::support::*;

/// Two nodes on a new database of the test server.
async fn two_nodes() -> (Server, Server) {
    let url = postgres::server().database();
    let a = Server::new(&on(&url)).start().await;
    let b = Server::new(&on(&url)).start().await;
    (a, b)
}

/// `/authorize` for `client_id` with a PKCE challenge, signed in as `user` and driven to
/// the callback: the verifier and the callback URL.
async fn code_with_pkce(b: &mut Browser, client_id: &str, user: &str) -> (String, String) {
    let (verifier, challenge) = pkce();
    let start = b
        .get(&authorize_url(
            client_id,
            &format!("&code_challenge={challenge}&code_challenge_method=S256"),
        ))
        .await;
    (verifier, b.drive_to_callback(start, user).await)
}

/// `[store]` for the database at `url`.
fn on(url: &str) -> String {
    format!("[store]\nbackend = \"postgres\"\nurl = \"{url}\"\npool_size = 4\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_database_sign_in_on_one_and_redeem_on_the_other() {
    let (a, b) = two_nodes().await;
    // Written through node A's admin socket, read by node B.
    a.add_user("alice", &[]);
    let (client_id, secret) = a.add_client(&[]);
    let auth = basic(&client_id, &secret);
    assert_eq!(b.cli(&["user", "show", "alice", "--json"], None).code, 0);

    let mut on_a = a.browser();
    let (verifier, callback) = code_with_pkce(&mut on_a, &client_id, "alice").await;

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
    let health = b.get("/healthz").await;
    assert_eq!(health.status, 503);
    let health = health.json();
    assert_eq!(health["backend"], "postgres");
    assert_eq!(health["reason"], "the database does not answer", "{health}");
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
    assert_eq!(b.get("/healthz").await.status, 200);
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

/// The jar of `from` becomes the jar of `to`: one browser whose requests reach another
/// node.
fn hop(from: &Browser, to: &mut Browser) {
    to.cookies = from.cookies.clone();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_whose_every_request_reaches_the_other_node() {
    let (a, b) = two_nodes().await;
    a.add_user("dana", &[]);
    let (client_id, secret) = a.add_client(&[]);
    let auth = basic(&client_id, &secret);
    let (mut on_a, mut on_b) = (a.browser(), b.browser());
    let (verifier, challenge) = pkce();

    // /authorize on A, the sign-in page on B, the password posted to A.
    let start = on_a
        .get(&authorize_url(
            &client_id,
            &format!("&code_challenge={challenge}&code_challenge_method=S256"),
        ))
        .await;
    let login = start.location();
    assert!(login.starts_with("/login"), "{login}");
    hop(&on_a, &mut on_b);
    let page = on_b.get(&login).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("Test App"),
        "B knows the request A started"
    );
    let csrf = page.input("csrf").unwrap();
    let interaction = page.input("interaction").unwrap();
    hop(&on_b, &mut on_a);
    let mut resp = on_a
        .post_form(
            "/login",
            &[
                ("username", "dana"),
                ("password", PASSWORD),
                ("csrf", &csrf),
                ("interaction", &interaction),
            ],
        )
        .await;
    // Every later step on the other node than the one before.
    let mut on_b_next = true;
    let callback = loop {
        assert!(
            matches!(resp.status, 302 | 303),
            "{}: {}",
            resp.status,
            resp.body
        );
        let loc = resp.location();
        if loc.starts_with(CALLBACK) {
            break loc;
        }
        let (from, to) = if on_b_next {
            (&on_a, &mut on_b)
        } else {
            (&on_b, &mut on_a)
        };
        hop(from, to);
        on_b_next = !on_b_next;
        resp = if loc.starts_with("/consent") {
            // The consent page on one node, the answer on the other.
            let page = to.get(&loc).await;
            assert_eq!(page.status, 200, "{}", page.body);
            let csrf = page.input("csrf").unwrap();
            let interaction = page.input("interaction").unwrap();
            let (back, other) = if on_b_next {
                (&mut on_b, &on_a)
            } else {
                (&mut on_a, &on_b)
            };
            hop(other, back);
            back.post_form(
                "/consent",
                &[
                    ("csrf", &csrf),
                    ("interaction", &interaction),
                    ("decision", "allow"),
                ],
            )
            .await
        } else {
            to.get(&loc).await
        };
    };
    let tokens = on_b.redeem(&callback, Some(&verifier), &auth).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_pushed_to_one_node_is_used_at_the_other_once() {
    let (a, b) = two_nodes().await;
    let (client_id, secret) = a.add_client(&[]);
    let auth = basic(&client_id, &secret);
    let mut on_a = a.browser();
    let pushed = on_a
        .post_form_with(
            "/api/v1/oauth/par",
            &[
                ("response_type", "code"),
                ("client_id", &client_id),
                ("redirect_uri", CALLBACK),
                ("scope", "openid"),
                ("state", "s1"),
            ],
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(pushed.status, 201, "{}", pushed.body);
    let uri = pushed.json()["request_uri"].as_str().unwrap().to_string();
    let mut on_b = b.browser();
    let use_it = format!(
        "/api/v1/oauth/authorize?client_id={client_id}&request_uri={}",
        enc(&uri)
    );
    let first = on_b.get(&use_it).await;
    assert!(matches!(first.status, 302 | 303), "{}", first.body);
    assert!(
        first.location().starts_with("/login"),
        "{}",
        first.location()
    );
    let again = on_a.get(&use_it).await;
    assert!(
        !matches!(again.status, 302 | 303),
        "single use across nodes"
    );
    assert!(
        again.body.contains("expired or was already used"),
        "{}",
        again.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotated_on_one_node_is_published_and_used_by_the_other() {
    let (a, b) = two_nodes().await;
    let out = a.cli(&["keys", "rotate", "--alg", "RS256", "--json"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let kid = out.json()["rotated"][0]["kid"]
        .as_str()
        .unwrap()
        .to_string();
    let mut on_b = b.browser();
    let mut seen = false;
    for _ in 0..40 {
        let jwks = on_b.get("/api/v1/oauth/discovery/keys").await.json();
        if jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == kid.as_str())
        {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(seen, "B publishes the key A made");
    // And signs with it.
    b.add_user("erin", &[]);
    let (client_id, secret) = b.add_client(&[]);
    let tokens = on_b
        .sign_in_for_tokens(&client_id, &basic(&client_id, &secret), "erin")
        .await
        .json();
    let header = tokens["id_token"]
        .as_str()
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .to_string();
    use base64::Engine as _;
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], kid.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_stopped_and_started_again() {
    let db = postgres::private();
    let url = db.database();
    let server = Server::new(&on(&url)).start().await;
    server.add_user("fay", &[]);
    let (client_id, secret) = server.add_client(&[]);
    let auth = basic(&client_id, &secret);
    let mut b = server.browser();
    let tokens = b.sign_in_for_tokens(&client_id, &auth, "fay").await.json();
    let rt = tokens["refresh_token"].as_str().unwrap().to_string();
    db.stop();
    let refused = b.refresh(&rt, &auth).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.json()["error"], "temporarily_unavailable");
    assert_eq!(b.get("/healthz").await.status, 503);
    let jwks = b.get("/api/v1/oauth/discovery/keys").await;
    assert_eq!(jwks.status, 200, "keys in memory are still published");
    db.start_again();
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let again = b.refresh(&rt, &auth).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(b.get("/healthz").await.status, 200);
}

/// Eight requests for one code, half to each node at once: one gets tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_redemptions_and_refreshes_on_two_nodes_have_one_winner() {
    let (a, b) = two_nodes().await;
    a.add_user("gil", &[]);
    let (client_id, secret) = a.add_client(&[]);
    let auth = basic(&client_id, &secret);
    let mut on_a = a.browser();
    let (verifier, callback) = code_with_pkce(&mut on_a, &client_id, "gil").await;
    let race = |requests: Vec<Browser>, form: Vec<(String, String)>| {
        let auth = auth.clone();
        async move {
            let mut tasks = Vec::new();
            for mut browser in requests {
                let form = form.clone();
                let auth = auth.clone();
                tasks.push(tokio::spawn(async move {
                    let pairs: Vec<(&str, &str)> =
                        form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    browser
                        .post_form_with("/api/v1/oauth/token", &pairs, &[("authorization", &auth)])
                        .await
                }));
            }
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        }
    };
    let browsers = |n: usize| -> Vec<Browser> {
        (0..n)
            .map(|i| if i % 2 == 0 { a.browser() } else { b.browser() })
            .collect()
    };
    let code = params_of(&callback)["code"].clone();
    let answers = race(
        browsers(8),
        vec![
            ("grant_type".into(), "authorization_code".into()),
            ("code".into(), code),
            ("redirect_uri".into(), CALLBACK.into()),
            ("code_verifier".into(), verifier.clone()),
        ],
    )
    .await;
    let won: Vec<_> = answers.iter().filter(|r| r.status == 200).collect();
    assert_eq!(
        won.len(),
        1,
        "{:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    // The replays revoked what the winner got (RFC 6749 §4.1.2): a new sign-in for the
    // refresh race.
    let (verifier, callback) = code_with_pkce(&mut on_a, &client_id, "gil").await;
    let tokens = on_a.redeem(&callback, Some(&verifier), &auth).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let rt = tokens.json()["refresh_token"].as_str().unwrap().to_string();
    let answers = race(
        browsers(8),
        vec![
            ("grant_type".into(), "refresh_token".into()),
            ("refresh_token".into(), rt),
        ],
    )
    .await;
    let won = answers.iter().filter(|r| r.status == 200).count();
    assert_eq!(
        won,
        1,
        "{:?}",
        answers.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
}
