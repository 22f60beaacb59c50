//! The management CLI: the same commands work with the server stopped (direct database)
//! and running (admin socket); bad input exits 2 naming the field and writes nothing.

use crate::support::*;

#[tokio::test]
async fn commands_work_stopped_and_running() {
    let server = Server::new("");
    // Stopped: opens the database directly.
    let u = server.add_user("alice", &["--group", "staff"]);
    assert_eq!(u["groups"][0], "staff");
    let (id, secret) = server.add_client(&[]);
    assert_eq!(secret.len(), 43);
    let mut server = server.start().await;
    assert!(latchkey::admin::socket::path(&server.data_dir()).exists());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(latchkey::admin::socket::path(&server.data_dir()))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    // Running: through the admin socket (the database is locked by the server).
    let list = server.cli(&["user", "list", "--json"], None);
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert_eq!(list.json()[0]["username"], "alice");
    let shown = server.cli(&["client", "show", &id, "--json"], None).json();
    assert_eq!(shown["name"], "Test App");
    assert!(
        shown.get("client_secret").is_none(),
        "secrets are printed once"
    );
    server.add_user("bob", &[]);
    let rotated = server
        .cli(&["client", "rotate-secret", &id, "--json"], None)
        .json();
    assert_ne!(rotated["client_secret"], secret.as_str());
    let human = server.cli(&["client", "list"], None);
    assert!(
        human.stdout.contains(&format!("client_id={id}")),
        "{}",
        human.stdout
    );
    let keys = server.cli(&["keys", "list", "--json"], None).json();
    assert_eq!(keys.as_array().unwrap().len(), 2);
    server.stop();
    // Stopped again: everything written through the socket is there.
    let list = server.cli(&["user", "list", "--json"], None).json();
    assert_eq!(list.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn bad_input_exits_2_names_the_field_and_writes_nothing() {
    let server = Server::new("").start().await;
    let cases: Vec<(Vec<&str>, Option<&str>, &str)> = vec![
        (
            vec![
                "user",
                "add",
                "bad name",
                "--email",
                "a@b.c",
                "--password-stdin",
            ],
            Some(PASSWORD),
            "username",
        ),
        (
            vec![
                "user",
                "add",
                "carol",
                "--email",
                "nope",
                "--password-stdin",
            ],
            Some(PASSWORD),
            "email",
        ),
        (
            vec![
                "user",
                "add",
                "carol",
                "--email",
                "c@b.c",
                "--password-stdin",
            ],
            Some("short"),
            "password",
        ),
        (
            vec![
                "user",
                "add",
                "carol",
                "--email",
                "c@b.c",
                "--password-stdin",
            ],
            Some("qwerty123456"),
            "password",
        ),
        (
            vec!["user", "add", "carol", "--email", "c@b.c"],
            None,
            "password",
        ),
        (
            vec![
                "client",
                "add",
                "--name",
                "X",
                "--redirect-uri",
                "not a url",
            ],
            None,
            "redirect_uri",
        ),
        (vec!["client", "add", "--name", "X"], None, "redirect_uri"),
        (
            vec!["client", "add", "--redirect-uri", CALLBACK],
            None,
            "name",
        ),
        (
            vec![
                "client",
                "add",
                "--name",
                "X",
                "--redirect-uri",
                CALLBACK,
                "--scope",
                "admin",
            ],
            None,
            "scope",
        ),
        (
            vec![
                "client",
                "add",
                "--name",
                "X",
                "--redirect-uri",
                CALLBACK,
                "--id-token-alg",
                "none",
            ],
            None,
            "id_token_alg",
        ),
        (
            vec![
                "client",
                "add",
                "--name",
                "X",
                "--redirect-uri",
                "https://a/#f",
            ],
            None,
            "redirect_uri",
        ),
        (vec!["user", "show", "nobody"], None, "username"),
        (vec!["client", "delete", "nope"], None, "client_id"),
    ];
    for (args, stdin, field) in cases {
        let out = server.cli(&args, stdin.map(|s| format!("{s}\n")).as_deref());
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains(field),
            "{args:?} should name {field}: {}",
            out.stderr
        );
        assert_eq!(
            out.stderr.trim().lines().count(),
            1,
            "one line: {}",
            out.stderr
        );
    }
    assert_eq!(
        server
            .cli(&["user", "list", "--json"], None)
            .json()
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        server
            .cli(&["client", "list", "--json"], None)
            .json()
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let unknown_flag = server.cli(&["user", "frobnicate"], None);
    assert_eq!(unknown_flag.code, 2);
}

#[tokio::test]
async fn check_config_and_version() {
    let server = Server::new("");
    let ok = server.cli(&["check-config"], None);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert!(ok.stdout.contains(&server.issuer));
    std::fs::write(&server.config, "isuer = \"https://x\"\n").unwrap();
    let bad = server.cli(&["check-config"], None);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("isuer"), "{}", bad.stderr);
    let v = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .arg("version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("latchkey "));
}

#[tokio::test]
async fn concurrent_admin_edits_lose_nothing() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let (id, _) = server.add_client(&[]);
    let config = server.config.clone();
    let run = move |args: Vec<String>| {
        let config = config.clone();
        std::thread::spawn(move || {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
                .args(&args)
                .arg("--config")
                .arg(&config)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        })
    };
    let mut threads = Vec::new();
    for i in 0..10 {
        threads.push(run(vec![
            "user".into(),
            "group-add".into(),
            "alice".into(),
            format!("team{i}"),
        ]));
    }
    threads.push(run(vec![
        "client".into(),
        "update".into(),
        id.clone(),
        "--name".into(),
        "Renamed".into(),
    ]));
    threads.push(run(vec![
        "client".into(),
        "update".into(),
        id.clone(),
        "--skip-consent".into(),
    ]));
    threads.push(run(vec![
        "client".into(),
        "update".into(),
        id.clone(),
        "--scope".into(),
        "openid".into(),
        "--scope".into(),
        "email".into(),
    ]));
    threads.push(run(vec![
        "client".into(),
        "update".into(),
        id.clone(),
        "--allowed-group".into(),
        "team1".into(),
    ]));
    for t in threads {
        t.join().unwrap();
    }
    let alice = server
        .cli(&["user", "show", "alice", "--json"], None)
        .json();
    let groups = alice["groups"].as_array().unwrap();
    assert_eq!(
        groups.len(),
        10,
        "every concurrent group-add kept: {groups:?}"
    );
    let c = server.cli(&["client", "show", &id, "--json"], None).json();
    assert_eq!(c["name"], "Renamed");
    assert_eq!(c["skip_consent"], true);
    assert_eq!(c["scopes"], serde_json::json!(["openid", "email"]));
    assert_eq!(c["allowed_groups"], serde_json::json!(["team1"]));
}
