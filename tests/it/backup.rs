//! Backup while serving and restore into a fresh data directory.

use crate::support::*;
use std::process::Command;

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
    assert!(!latchkey::datadir::db_path(&fresh.data_dir()).exists());

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

/// A damaged database file (truncated, or overwritten in the middle) stops `serve` and the
/// CLI with a clear message that points at `restore`: no panic trace, no half-started server.
#[tokio::test]
async fn damaged_database_is_a_clear_error_and_restore_recovers() {
    let mut server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let backup = server.dir.0.join("good.redb");
    assert_eq!(
        server.cli(&["backup", backup.to_str().unwrap()], None).code,
        0
    );
    server.stop();
    let db = latchkey::datadir::db_path(&server.data_dir());
    let good = std::fs::read(&db).unwrap();

    let half = good[..good.len() / 2].to_vec();
    let mut scribbled = good.clone();
    for b in &mut scribbled[..4096.min(good.len())] {
        *b = 0xA5;
    }
    for (what, bytes) in [
        ("truncated to half", half),
        ("truncated to 100 bytes", good[..100].to_vec()),
        ("header overwritten", scribbled),
    ] {
        std::fs::write(&db, &bytes).unwrap();
        let out = Command::new("timeout")
            .arg("30")
            .arg(env!("CARGO_BIN_EXE_latchkey"))
            .args(["serve", "--config"])
            .arg(&server.config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && out.status.code() != Some(124),
            "{what}: serve must refuse to start, got {:?}: {stderr}",
            out.status
        );
        assert!(stderr.contains("latchkey restore"), "{what}: {stderr}");
        assert!(
            !stderr.contains("stack backtrace") && !stderr.contains("RUST_BACKTRACE"),
            "{what}: {stderr}"
        );
        let list = server.cli(&["user", "list"], None);
        assert_ne!(list.code, 0, "{what}: the CLI must refuse too");
        assert!(
            list.stderr.contains("latchkey restore"),
            "{what}: {}",
            list.stderr
        );
    }

    let restored = server.cli(&["restore", backup.to_str().unwrap()], None);
    assert_eq!(restored.code, 0, "{}", restored.stderr);
    server.spawn().await;
    let users = server.cli(&["user", "list", "--json"], None).json();
    assert_eq!(users[0]["username"], "alice");
    server.stop();
}
