//! Backup while serving and restore into a fresh data directory.

use crate::support::*;

#[tokio::test]
async fn backup_under_writes_and_restore_elsewhere() {
    let mut server = Server::new("").start().await;
    server.add_user("alice", &["--group", "staff"]);
    let (id, _) = server.add_client(&[]);
    let jwks = server
        .browser()
        .get("/api/v1/oauth/discovery/keys")
        .await
        .json();

    // Writes keep coming while the copy is taken.
    let config = server.config.clone();
    let writer = std::thread::spawn(move || {
        for i in 0..15 {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
                .args([
                    "client",
                    "add",
                    "--name",
                    &format!("app {i}"),
                    "--redirect-uri",
                    "https://x.example/cb",
                    "--config",
                ])
                .arg(&config)
                .output()
                .unwrap();
            assert!(out.status.success());
        }
    });
    let file = server.dir.0.join("backup.redb");
    let out = server.cli(&["backup", file.to_str().unwrap(), "--json"], None);
    writer.join().unwrap();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.json()["bytes"].as_u64().unwrap() > 0);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let again = server.cli(&["backup", file.to_str().unwrap()], None);
    assert_eq!(again.code, 2, "an existing file is never overwritten");

    // Restoring is refused while a server runs, and a file that is no backup changes nothing.
    let refused = server.cli(&["restore", file.to_str().unwrap()], None);
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("stop it"), "{}", refused.stderr);
    server.stop();

    let mut fresh = Server::new("");
    let junk = fresh.dir.0.join("junk.redb");
    std::fs::write(&junk, b"not a database").unwrap();
    let bad = fresh.cli(&["restore", junk.to_str().unwrap()], None);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(!latchkey::server::db_path(&fresh.data_dir()).exists());

    let out = fresh.cli(&["restore", file.to_str().unwrap(), "--json"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["users"], 1);
    fresh.spawn().await;
    let users = fresh.cli(&["user", "list", "--json"], None).json();
    assert_eq!(users[0]["username"], "alice");
    let clients = fresh.cli(&["client", "list", "--json"], None).json();
    assert!(
        clients
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["client_id"] == id.as_str())
    );
    let restored_jwks = fresh
        .browser()
        .get("/api/v1/oauth/discovery/keys")
        .await
        .json();
    assert_eq!(restored_jwks, jwks, "the same signing keys");
    fresh.stop();

    // A backup with the server stopped works too, and restoring keeps the old file aside.
    let second = fresh.dir.0.join("second.redb");
    assert_eq!(
        fresh.cli(&["backup", second.to_str().unwrap()], None).code,
        0
    );
    let out = fresh.cli(&["restore", second.to_str().unwrap(), "--json"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let previous = out.json()["previous"].as_str().unwrap().to_string();
    assert!(std::path::Path::new(&previous).exists());
}
