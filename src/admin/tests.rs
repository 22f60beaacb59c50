use super::*;
use crate::config::{Env, parse};
use crate::store::redb::RedbStore;
use crate::testutil::TempDir;

fn setup() -> (TempDir, RedbStore, Config) {
    let dir = TempDir::new("admin");
    let store = RedbStore::open(&dir.path().join("db.redb")).unwrap();
    let config = parse(
        Some("[password]\nmemory_kib = 19456\niterations = 2\n"),
        &Env {
            hostname: "h".into(),
            ..Env::default()
        },
    )
    .unwrap();
    (dir, store, config)
}

fn add_alice() -> Command {
    Command::UserAdd {
        user: NewUser {
            username: "alice".into(),
            email: "alice@example.com".into(),
            ..NewUser::default()
        },
        password: "correct horse battery staple".into(),
        admin: true,
        temporary: false,
    }
}

#[test]
fn user_lifecycle() {
    let (_d, s, c) = setup();
    let out = execute(&s, &c, add_alice(), "test", 1).unwrap();
    assert_eq!(out["username"], "alice");
    assert_eq!(out["groups"][0], "admin");
    assert!(out.get("password_hash").is_none());
    assert!(admin_exists(&s).unwrap());
    let e = execute(&s, &c, add_alice(), "test", 1).unwrap_err();
    assert_eq!(e.exit_code, 2);
    assert!(e.message.starts_with("username"));
    execute(
        &s,
        &c,
        Command::UserDisable {
            username: "alice".into(),
        },
        "test",
        2,
    )
    .unwrap();
    assert!(s.user_by_name("alice").unwrap().unwrap().disabled);
    execute(
        &s,
        &c,
        Command::UserGroupAdd {
            username: "alice".into(),
            group: "staff".into(),
        },
        "test",
        3,
    )
    .unwrap();
    assert!(s.groups().unwrap().iter().any(|g| g.name == "staff"));
    execute(
        &s,
        &c,
        Command::UserDelete {
            username: "alice".into(),
        },
        "test",
        4,
    )
    .unwrap();
    assert!(s.user_by_name("alice").unwrap().is_none());
    let audit = s.audit(0, 10, None).unwrap();
    assert!(audit.iter().any(|e| e.kind == "admin.user.add"));
}

#[test]
fn a_new_password_from_the_cli_forgets_trusted_browsers() {
    let (_d, s, c) = setup();
    execute(&s, &c, add_alice(), "test", 1).unwrap();
    let mut u = s.user_by_name("alice").unwrap().unwrap();
    u.mfa.devices.push(crate::model::TrustedDevice {
        id: "d1".into(),
        label: "Firefox".into(),
        created_at: 1,
        expires_at: 1_000_000,
    });
    s.update_user(&u).unwrap();
    execute(
        &s,
        &c,
        Command::UserPasswd {
            username: "alice".into(),
            password: "another long passphrase".into(),
            temporary: false,
        },
        "test",
        2,
    )
    .unwrap();
    assert!(
        s.user_by_name("alice")
            .unwrap()
            .unwrap()
            .mfa
            .devices
            .is_empty()
    );
}

#[test]
fn bad_input_names_the_field_and_writes_nothing() {
    let (_d, s, c) = setup();
    let cases = [
        (
            NewUser {
                username: "bad name".into(),
                email: "a@b.c".into(),
                ..NewUser::default()
            },
            "correct horse battery",
            "username",
        ),
        (
            NewUser {
                username: "bob".into(),
                email: "nope".into(),
                ..NewUser::default()
            },
            "correct horse battery",
            "email",
        ),
        (
            NewUser {
                username: "bob".into(),
                email: "a@b.c".into(),
                ..NewUser::default()
            },
            "short",
            "password",
        ),
        (
            NewUser {
                username: "bob".into(),
                email: "a@b.c".into(),
                groups: vec!["bad group".into()],
                ..NewUser::default()
            },
            "correct horse battery",
            "group",
        ),
    ];
    for (user, pw, field) in cases {
        let e = execute(
            &s,
            &c,
            Command::UserAdd {
                user,
                password: pw.into(),
                admin: false,
                temporary: false,
            },
            "t",
            1,
        )
        .unwrap_err();
        assert_eq!(e.exit_code, 2);
        assert!(
            e.message.starts_with(field),
            "{} should name {field}",
            e.message
        );
    }
    assert!(s.users().unwrap().is_empty());
    assert!(s.audit(0, 10, None).unwrap().is_empty());
}

#[test]
fn client_add_returns_the_secret_once_and_stores_only_its_hash() {
    let (_d, s, c) = setup();
    let spec = ClientSpec {
        name: "Grafana".into(),
        redirect_uris: vec!["https://g.example/cb".into()],
        ..ClientSpec::default()
    };
    let out = execute(&s, &c, Command::ClientAdd { spec, preset: None }, "t", 1).unwrap();
    let id = out["client_id"].as_str().unwrap().to_string();
    let secret = out["client_secret"].as_str().unwrap().to_string();
    let stored = s.client(&id).unwrap().unwrap();
    assert!(crate::keys::verify_client_secret(
        &secret,
        stored.secret_hash.as_deref().unwrap()
    ));
    assert!(!serde_json::to_string(&stored).unwrap().contains(&secret));
    let shown = execute(
        &s,
        &c,
        Command::ClientShow {
            client_id: id.clone(),
        },
        "t",
        1,
    )
    .unwrap();
    assert!(shown.get("client_secret").is_none());
    let rotated = execute(
        &s,
        &c,
        Command::ClientRotateSecret {
            client_id: id.clone(),
        },
        "t",
        2,
    )
    .unwrap();
    assert_ne!(rotated["client_secret"], secret.as_str());
    let patch = ClientPatch {
        name: Some("Grafana 2".into()),
        ..ClientPatch::default()
    };
    let updated = execute(
        &s,
        &c,
        Command::ClientUpdate {
            client_id: id.clone(),
            patch,
        },
        "t",
        3,
    )
    .unwrap();
    assert_eq!(updated["name"], "Grafana 2");
    assert_eq!(updated["redirect_uris"][0], "https://g.example/cb");
    let bad = ClientPatch {
        redirect_uris: vec!["nope".into()],
        ..ClientPatch::default()
    };
    assert_eq!(
        execute(
            &s,
            &c,
            Command::ClientUpdate {
                client_id: id.clone(),
                patch: bad
            },
            "t",
            4
        )
        .unwrap_err()
        .exit_code,
        2
    );
    execute(
        &s,
        &c,
        Command::ClientDelete {
            client_id: id.clone(),
        },
        "t",
        5,
    )
    .unwrap();
    assert!(s.client(&id).unwrap().is_none());
}

#[test]
fn declared_clients_are_read_only() {
    let (_d, s, _) = setup();
    let toml = "[password]\nmemory_kib = 19456\niterations = 2\n[[clients]]\nclient_id = \"app\"\nredirect_uris = [\"https://a/cb\"]\n";
    let c = parse(
        Some(toml),
        &Env {
            hostname: "h".into(),
            ..Env::default()
        },
    )
    .unwrap();
    let e = execute(
        &s,
        &c,
        Command::ClientDelete {
            client_id: "app".into(),
        },
        "t",
        1,
    )
    .unwrap_err();
    assert!(e.message.contains("declared"));
    let list = execute(&s, &c, Command::ClientList, "t", 1).unwrap();
    assert_eq!(list[0]["declared"], true);
}
