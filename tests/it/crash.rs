//! Crash safety: mixed traffic, SIGKILL at random moments, restart, and every write that
//! was acknowledged before the kill must be there (users, clients, consents, refresh
//! tokens, key rotations). `LATCHKEY_CRASH_ROUNDS` sets the number of kills (default 20).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;

#[derive(Default)]
struct Acked {
    users: Vec<String>,
    clients: Vec<(String, String)>,
    /// (client_id, client_secret, refresh_token, user) of acknowledged code exchanges;
    /// the consent given for that client was acknowledged before it.
    grants: Vec<(String, String, String, String)>,
    kids: Vec<String>,
}

fn random_below(n: u64) -> u64 {
    u64::from_le_bytes(latchkey::clock::random_bytes::<8>()) % n
}

/// Traffic until the server dies; records every write it acknowledged.
async fn traffic(
    server_config: std::path::PathBuf,
    mut b: Browser,
    round: usize,
    acked: Arc<Mutex<Acked>>,
) {
    for step in 0.. {
        if !one_step(&server_config, &mut b, round, step, &acked).await {
            return;
        }
    }
}

/// One user, one client, maybe a key rotation, and a full sign-in with consent and code
/// exchange. `false` once something failed (the server was killed).
async fn one_step(
    server_config: &std::path::Path,
    b: &mut Browser,
    round: usize,
    step: usize,
    acked: &Mutex<Acked>,
) -> bool {
    let server_config = server_config.to_path_buf();
    let cli = move |args: Vec<String>, stdin: Option<String>| {
        let config = server_config.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"));
            c.args(&args).arg("--config").arg(&config);
            c.stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null());
            let mut child = c.spawn().ok()?;
            if let Some(s) = stdin {
                use std::io::Write;
                let _ = child.stdin.take()?.write_all(s.as_bytes());
            }
            drop(child.stdin.take());
            let out = child.wait_with_output().ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).to_string())
        })
    };
    let user = format!("user{round}x{step}");
    if cli(
        vec![
            "user".into(),
            "add".into(),
            user.clone(),
            "--email".into(),
            format!("{user}@example.com"),
            "--password-stdin".into(),
        ],
        Some(format!("{PASSWORD}\n")),
    )
    .await
    .ok()
    .flatten()
    .is_some()
    {
        acked.lock().unwrap().users.push(user.clone());
    } else {
        return false;
    }
    let name = format!("app{round}x{step}");
    let Some(out) = cli(
        vec![
            "client".into(),
            "add".into(),
            "--name".into(),
            name,
            "--redirect-uri".into(),
            CALLBACK.into(),
            "--json".into(),
        ],
        None,
    )
    .await
    .ok()
    .flatten() else {
        return false;
    };
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let (id, secret) = (
        v["client_id"].as_str().unwrap().to_string(),
        v["client_secret"].as_str().unwrap().to_string(),
    );
    acked
        .lock()
        .unwrap()
        .clients
        .push((id.clone(), secret.clone()));
    if step % 3 == 2
        && let Some(out) = cli(
            vec![
                "keys".into(),
                "rotate".into(),
                "--alg".into(),
                "ES256".into(),
                "--json".into(),
            ],
            None,
        )
        .await
        .ok()
        .flatten()
    {
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        acked
            .lock()
            .unwrap()
            .kids
            .push(v["rotated"][0]["kid"].as_str().unwrap().to_string());
    }
    // Sign in (as this step's user: a fresh cookie jar), consent, exchange the code: the
    // refresh token is the acknowledged write.
    b.cookies.clear();
    let Ok(first) = b
        .try_get(&authorize_url(&id, "&scope=openid%20offline_access"))
        .await
    else {
        return false;
    };
    let Some(code) = complete(b, first, &user).await else {
        return false;
    };
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
    ];
    let headers = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("authorization", &basic(&id, &secret)),
    ];
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&");
    match b
        .try_send("POST", "/api/v1/oauth/token", &headers, &body)
        .await
    {
        Ok(r) if r.status == 200 => {
            let rt = r.json()["refresh_token"].as_str().unwrap().to_string();
            acked.lock().unwrap().grants.push((id, secret, rt, user));
            true
        }
        _ => false,
    }
}

async fn complete(b: &mut Browser, mut r: Resp, user: &str) -> Option<String> {
    for _ in 0..10 {
        if !matches!(r.status, 302 | 303) {
            return None;
        }
        let loc = r.location();
        if loc.starts_with(CALLBACK) {
            return params_of(&loc).get("code").cloned();
        }
        r = if loc.starts_with("/login") {
            let page = b.try_get(&loc).await.ok()?;
            let csrf = page.input("csrf")?;
            let interaction = page.input("interaction").unwrap_or_default();
            let body = format!(
                "username={user}&password={}&csrf={}&interaction={}",
                enc(PASSWORD),
                enc(&csrf),
                enc(&interaction)
            );
            b.try_send(
                "POST",
                "/login",
                &[("content-type", "application/x-www-form-urlencoded")],
                &body,
            )
            .await
            .ok()?
        } else if loc.starts_with("/consent") {
            let page = b.try_get(&loc).await.ok()?;
            let body = format!(
                "csrf={}&interaction={}&decision=allow",
                enc(&page.input("csrf")?),
                enc(&page.input("interaction")?)
            );
            b.try_send(
                "POST",
                "/consent",
                &[("content-type", "application/x-www-form-urlencoded")],
                &body,
            )
            .await
            .ok()?
        } else {
            b.try_get(&loc).await.ok()?
        };
    }
    None
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill() {
    crash_rounds("", 20).await;
}

/// The same against a node on PostgreSQL (SPEC §13): the node is killed, the database
/// keeps running, and the restarted node finds every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_on_postgres() {
    let url = postgres::server().database();
    crash_rounds(
        &format!("[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n"),
        8,
    )
    .await;
}

/// `LATCHKEY_CRASH_ROUNDS` kills (default `default_rounds`) of a server configured with
/// `extra`, then every acknowledged write checked.
async fn crash_rounds(extra: &str, default_rounds: usize) {
    let rounds: usize = std::env::var("LATCHKEY_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default_rounds);
    let mut server = Server::new(extra).start().await;
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut kills = 0;
    for round in 0..rounds {
        let work = tokio::spawn(traffic(
            server.config.clone(),
            server.browser(),
            round,
            acked.clone(),
        ));
        // Kill somewhere in the middle of the round's traffic.
        tokio::time::sleep(Duration::from_millis(200 + random_below(800))).await;
        server.kill9();
        kills += 1;
        let _ = tokio::time::timeout(Duration::from_secs(20), work).await;
        server.spawn().await;
        assert!(!server.log().contains("repair"), "no repair needed");
    }
    // Every round's traffic has ended; take the record out of the mutex.
    let a = std::mem::take(&mut *acked.lock().unwrap());
    let users = server.cli(&["user", "list", "--json"], None).json();
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    for u in &a.users {
        assert!(names.contains(&u.as_str()), "acknowledged user {u} lost");
    }
    let clients = server.cli(&["client", "list", "--json"], None).json();
    let ids: Vec<&str> = clients
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_id"].as_str().unwrap())
        .collect();
    for (id, _) in &a.clients {
        assert!(ids.contains(&id.as_str()), "acknowledged client {id} lost");
    }
    let jwks = server
        .browser()
        .get("/api/v1/oauth/discovery/keys")
        .await
        .json();
    let keys = server.cli(&["keys", "list", "--json"], None).json();
    let kids: Vec<&str> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    for k in &a.kids {
        assert!(
            kids.contains(&k.as_str()),
            "acknowledged key rotation {k} lost"
        );
    }
    assert!(jwks["keys"].as_array().unwrap().len() >= 2);
    let mut b = server.browser();
    for (id, secret, rt, _) in &a.grants {
        let r = b
            .post_form_with(
                "/api/v1/oauth/introspect",
                &[("token", rt), ("token_type_hint", "refresh_token")],
                &[("authorization", &basic(id, secret))],
            )
            .await;
        assert_eq!(
            r.json()["active"],
            true,
            "acknowledged refresh token of {id} lost"
        );
    }
    // Consents given before an acknowledged exchange are remembered: no consent page.
    let mut consents = 0;
    for (id, _, _, user) in a.grants.iter().step_by(7) {
        consents += 1;
        let mut b = server.browser();
        let first = b
            .get(&authorize_url(id, "&scope=openid%20offline_access"))
            .await;
        let r = b.login(&first.location(), user, PASSWORD).await;
        let r = b.get(&r.location()).await;
        assert!(
            r.location().starts_with(CALLBACK),
            "consent of {user} for {id} lost: {}",
            r.location()
        );
    }
    println!(
        "crash safety: {kills} SIGKILLs survived; checked {} users, {} clients, {} refresh tokens, {consents} consents, {} key rotations",
        a.users.len(),
        a.clients.len(),
        a.grants.len(),
        a.kids.len()
    );
    assert!(
        a.clients.len() >= rounds / 2,
        "too little traffic got through to mean anything"
    );
}
