//! The directory (SPEC §11, issue 15) against a real OpenLDAP server (slapd started by
//! each test): the service account finds a person (`latchkey ldap test`), a directory
//! person signs in to an application with their directory password and the directory's
//! groups, a wrong password and a filter injection find nobody, profile fields are the
//! directory's, local accounts keep working beside the directory, the directory going down
//! stops only directory sign-ins; sync (at start and on demand) creates, updates, disables
//! people locked or removed there (sessions and refresh tokens end) and enables them again;
//! ldaps:// and StartTLS with a test CA; password changes made in the directory.

use crate::support::slapd::{Slapd, group, ldap_config, ldap_config_at, person};
use crate::support::smtp::test_ca;
use crate::support::*;

const PEOPLE: &str = "ou=people,dc=example,dc=test";

fn names(server: &Server) -> Vec<String> {
    let users = server.cli(&["user", "list", "--json"], None).json();
    let mut v: Vec<String> = users
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["username"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn directory_people_sign_in_with_their_directory_password_and_groups() {
    let dir = TempDir::new();
    let mut slapd = Slapd::start(
        &dir.0,
        &format!(
            "{}{}{}{}{}",
            person("dora", PASSWORD),
            person("eve", "another passphrase 456"),
            group("staff", &["dora"]),
            group("ops", &["eve"]),
            group("admin", &["dora"])
        ),
    );
    let server = Server::new(&ldap_config(&slapd, &dir.0)).start().await;
    let checked = server.cli(&["check-config"], None);
    assert_eq!(checked.code, 0, "{}", checked.stderr);
    assert!(
        checked.stdout.contains("no periodic sync"),
        "{}",
        checked.stdout
    );

    // What the directory answers, as an administrator checks it.
    let found = server.cli(&["ldap", "test", "--user", "dora", "--json"], None);
    assert_eq!(found.code, 0, "{} {}", found.stdout, found.stderr);
    let report = found.json();
    assert_eq!(
        report["user"]["dn"],
        "uid=dora,ou=people,dc=example,dc=test"
    );
    assert_eq!(report["user"]["email"], "dora@example.test");
    assert_eq!(
        report["user"]["groups"],
        serde_json::json!(["staff"]),
        "admin is never mapped"
    );
    let nobody = server.cli(&["ldap", "test", "--user", "nobody"], None);
    assert_eq!(nobody.code, 1, "{}", nobody.stdout);

    // Dora signs in to an application with her directory password; the groups claim
    // comes from the directory.
    let (client_id, secret) = server.add_client(&["--skip-consent"]);
    let mut b = server.browser();
    let (verifier, challenge) = pkce();
    let start = b
        .get(&authorize_url(
            &client_id,
            &format!("&scope=openid%20groups%20email&code_challenge={challenge}&code_challenge_method=S256"),
        ))
        .await;
    let callback = b.drive_to_callback(start, "dora").await;
    let tokens = b
        .redeem(&callback, Some(&verifier), &basic(&client_id, &secret))
        .await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let jwks = b.get("/api/v1/oauth/discovery/keys").await.json();
    let (_, claims) = verify_jwt(tokens.json()["id_token"].as_str().unwrap(), &jwks);
    assert_eq!(claims["groups"], serde_json::json!(["staff"]));
    assert_eq!(claims["email"], "dora@example.test");
    let shown = server.cli(&["user", "show", "dora", "--json"], None).json();
    assert_eq!(shown["source"], "ldap");
    // The directory's id is her stable sub.
    assert_eq!(claims["sub"], shown["id"]);
    assert_eq!(shown["id"], report["user"]["id"]);

    // Her password is the directory's: the account page says where to change it.
    let account = b.get("/account").await;
    assert!(
        account.body.contains("id=\"password-directory\""),
        "{}",
        account.body
    );
    let csrf = account.input("csrf").unwrap();
    let change = b
        .post_form(
            "/account/password",
            &[
                ("csrf", &csrf),
                ("current", PASSWORD),
                ("password", "a brand new passphrase"),
                ("password2", "a brand new passphrase"),
            ],
        )
        .await;
    assert_eq!(change.status, 409, "{}", change.body);
    assert!(
        change.body.contains("id=\"account-error\""),
        "the page says why: {}",
        change.body
    );

    // Her name, address and phone are the directory's: shown read-only, a change refused;
    // her postal address is hers to keep here.
    let account = b.get("/account").await;
    assert!(account.body.contains("id=\"profile-directory\""));
    assert!(
        account
            .body
            .contains("id=\"email\" name=\"email\" readonly"),
        "{}",
        account.body
    );
    let csrf = account.input("csrf").unwrap();
    let moved = b
        .post_form(
            "/account/profile",
            &[
                ("csrf", &csrf),
                ("email", "dora@elsewhere.test"),
                ("given_name", "dora"),
            ],
        )
        .await;
    assert_eq!(moved.status, 409, "{}", moved.body);
    let kept = b
        .post_form(
            "/account/profile",
            &[
                ("csrf", &csrf),
                ("email", "dora@example.test"),
                ("given_name", "dora"),
                ("family_name", "Example"),
                ("locality", "Lyon"),
            ],
        )
        .await;
    assert_eq!(kept.status, 303, "{}", kept.body);
    let shown = server.cli(&["user", "show", "dora", "--json"], None).json();
    assert_eq!(shown["email"], "dora@example.test");
    assert_eq!(shown["address"]["locality"], "Lyon", "{shown}");
    // Nor does an administrator change what the directory rules.
    let edit = server.cli(
        &["user", "update", "dora", "--email", "dora@elsewhere.test"],
        None,
    );
    assert_eq!(edit.code, 2, "{}", edit.stdout);
    assert!(
        edit.stderr.contains("comes from the directory"),
        "{}",
        edit.stderr
    );
    let pw = server.cli(
        &["user", "passwd", "dora", "--password-stdin"],
        Some("a local password 123\n"),
    );
    assert_eq!(pw.code, 2, "{}", pw.stderr);

    // Her second factor, enrolled here, applies to her directory password too.
    let (secret, _) = crate::people::enrol_with(&mut b, PASSWORD).await;
    let mut two = server.browser();
    assert_eq!(
        two.login("/login", "dora", PASSWORD).await.location(),
        "/login/2fa"
    );
    let code = latchkey::keys::totp::code_at(&secret, latchkey::clock::now() + 30).unwrap();
    let signed = crate::people::code_step(&mut two, &code, false).await;
    assert_eq!(signed.location(), "/account", "{}", signed.body);

    // A directory group named admin grants nothing here.
    assert_eq!(b.get("/admin").await.status, 403);
    // Her directory password confirms sensitive changes on the account page.
    let account = b.get("/account").await;
    let csrf = account.input("csrf").unwrap();
    let wrong = b
        .post_form(
            "/account/2fa/remove",
            &[("csrf", &csrf), ("current", "not it at all")],
        )
        .await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    let right = b
        .post_form(
            "/account/2fa/remove",
            &[("csrf", &csrf), ("current", PASSWORD)],
        )
        .await;
    assert_eq!(right.status, 303, "{}", right.body);

    // A wrong password and a filter injection find nobody, and nothing is created.
    let mut x = server.browser();
    assert_eq!(
        x.login("/login", "dora", "wrong password!!").await.status,
        401
    );
    assert_eq!(x.login("/login", "*)(uid=*", PASSWORD).await.status, 401);
    assert_eq!(x.login("/login", "*", PASSWORD).await.status, 401);
    let users = server.cli(&["user", "list", "--json"], None).json();
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert_eq!(names, ["dora"], "{users}");
    // An empty password is never an (anonymous) bind.
    assert_eq!(x.login("/login", "eve", "").await.status, 401);

    // A local account works beside the directory, and on its own when the directory is
    // down; directory sign-ins then say so.
    server.add_user("alice", &[]);
    assert_eq!(
        server
            .browser()
            .login("/login", "alice", PASSWORD)
            .await
            .location(),
        "/account"
    );
    slapd.stop();
    let down = server.browser().login("/login", "dora", PASSWORD).await;
    assert_eq!(down.status, 503, "{}", down.body);
    assert!(
        down.body.contains("directory cannot be reached"),
        "{}",
        down.body
    );
    assert_eq!(
        server
            .browser()
            .login("/login", "alice", PASSWORD)
            .await
            .location(),
        "/account"
    );
    let failed = server.cli(&["ldap", "test"], None);
    assert_eq!(failed.code, 1);
    assert!(failed.stderr.contains("connection"), "{}", failed.stderr);
}

/// Sync at start and on demand: people created with the directory's groups, a local
/// account of the same name left alone (reported), a person locked there and one removed
/// there disabled here with their sign-ins and refresh tokens ended, an administrator's
/// disabling kept, a person unlocked there enabled again; the admin pages, `/healthz` and
/// the metrics show the directory; the directory going down mid-run changes nothing
/// already decided and keeps signed-in sessions.
#[tokio::test]
async fn sync_follows_the_directory_and_ends_access_of_people_gone_there() {
    let dir = TempDir::new();
    let mut slapd = Slapd::start(
        &dir.0,
        &format!(
            "{}{}{}{}{}{}",
            person("dora", PASSWORD),
            person("eve", PASSWORD),
            person("frank", PASSWORD),
            person("grace", PASSWORD),
            group("staff", &["dora", "eve"]),
            group("ops", &["frank"]),
        ),
    );
    // The periodic sync is on (its first run is at start); grace is a local account
    // already.
    let server = Server::new(&ldap_config_at(&slapd.url(), &dir.0, ""));
    server.add_user("grace", &[]);
    server.add_user("root", &["--group", "admin"]);
    let server = server.start().await;
    let mut synced = vec![];
    for _ in 0..100 {
        synced = names(&server);
        if synced.len() == 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(synced, ["dora", "eve", "frank", "grace", "root"]);
    let grace = server
        .cli(&["user", "show", "grace", "--json"], None)
        .json();
    assert_eq!(grace["source"], "local", "never merged: {grace}");
    let frank = server
        .cli(&["user", "show", "frank", "--json"], None)
        .json();
    assert_eq!(frank["source"], "ldap");
    assert_eq!(frank["groups"], serde_json::json!(["ops"]));
    let health = server.browser().get("/healthz").await.json();
    assert_eq!(health["directory"]["reachable"], true, "{health}");
    assert_eq!(health["directory"]["last_sync_ok"], true, "{health}");

    // On demand, through the running server: the local grace is reported, not merged.
    let report = server.cli(&["ldap", "sync", "--json"], None);
    assert_eq!(report.code, 0, "{} {}", report.stdout, report.stderr);
    let report = report.json();
    assert_eq!(report["people"], 4, "{report}");
    assert_eq!(report["created"], 0, "{report}");
    assert!(
        report["problems"]
            .to_string()
            .contains("grace: a local account has this name"),
        "{report}"
    );

    // Dora and eve are signed in with refresh tokens; an administrator disables frank.
    let (id, secret) = server.add_client(&[
        "--skip-consent",
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "refresh_token",
    ]);
    let auth = basic(&id, &secret);
    let mut d = server.browser();
    let dora = d.sign_in_for_tokens(&id, &auth, "dora").await.json();
    let mut e = server.browser();
    let eve = e.sign_in_for_tokens(&id, &auth, "eve").await.json();
    let (dora_rt, eve_rt) = (
        dora["refresh_token"].as_str().unwrap().to_string(),
        eve["refresh_token"].as_str().unwrap().to_string(),
    );
    assert_eq!(server.cli(&["user", "disable", "frank"], None).code, 0);

    // Dora is locked in the directory, eve removed from it.
    slapd.lock("dora", true);
    slapd.delete(&format!("uid=eve,{PEOPLE}"));
    let report = server.cli(&["ldap", "sync", "--json"], None).json();
    assert_eq!(report["disabled"], 2, "{report}");
    for name in ["dora", "eve", "frank"] {
        let u = server.cli(&["user", "show", name, "--json"], None).json();
        assert_eq!(u["disabled"], true, "{name}: {u}");
    }
    // Their sign-ins and tokens end; the password no longer signs them in.
    assert_eq!(d.get("/account").await.status, 303);
    for rt in [&dora_rt, &eve_rt] {
        let r = server.browser().refresh(rt, &auth).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.json()["error"], "invalid_grant");
    }
    for name in ["dora", "eve"] {
        let r = server.browser().login("/login", name, PASSWORD).await;
        assert_eq!(r.status, 401, "{name}: {}", r.body);
    }
    let audit = server
        .cli(&["audit", "--json", "--user", "eve"], None)
        .stdout;
    assert!(audit.contains("removed from the directory"), "{audit}");

    // Unlocked there, dora is enabled again; frank, disabled here, stays so.
    slapd.lock("dora", false);
    let report = server.cli(&["ldap", "sync", "--json"], None).json();
    assert_eq!(report["enabled"], 1, "{report}");
    assert_eq!(
        server
            .browser()
            .login("/login", "dora", PASSWORD)
            .await
            .location(),
        "/account"
    );
    let frank = server
        .cli(&["user", "show", "frank", "--json"], None)
        .json();
    assert_eq!(frank["disabled"], true, "{frank}");

    // The admin pages show each user's source and the last sync, and sync on demand.
    let mut admin = server.browser();
    assert_eq!(
        admin.login("/login", "root", PASSWORD).await.location(),
        "/account"
    );
    let page = admin.get("/admin/users").await;
    assert!(
        page.body.contains("id=\"directory-state\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("<td>directory</td>") && page.body.contains("<td>local</td>"));
    assert!(page.body.contains("grace: a local account has this name"));
    let csrf = page.input("csrf").unwrap();
    let now = admin
        .post_form("/admin/users/sync", &[("csrf", &csrf)])
        .await;
    assert_eq!(now.location(), "/admin/users?synced=ok", "{}", now.body);
    // A group directory people are in is the directory's to remove.
    let kept = admin
        .post_form("/admin/groups/staff/delete", &[("csrf", &csrf)])
        .await;
    assert_eq!(kept.status, 400, "{}", kept.body);
    assert!(
        kept.body.contains("comes from the directory"),
        "{}",
        kept.body
    );
    let metrics = server.browser().get("/metrics").await.body;
    assert!(metrics.contains("latchkey_directory_up 1\n"), "{metrics}");
    assert!(
        metrics.contains("latchkey_directory_people 3\n"),
        "{metrics}"
    );

    // The directory goes down: a sync changes nothing and says why, signed-in people stay
    // signed in, directory sign-ins are refused, and /healthz and the metrics say so.
    slapd.stop();
    let failed = server.cli(&["ldap", "sync"], None);
    assert_eq!(failed.code, 1, "{}", failed.stdout);
    assert!(failed.stderr.contains("connection"), "{}", failed.stderr);
    let dora = server.cli(&["user", "show", "dora", "--json"], None).json();
    assert_eq!(dora["disabled"], false);
    assert_eq!(admin.get("/admin/users").await.status, 200);
    let refused = server.browser().login("/login", "dora", PASSWORD).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    let health = server.browser().get("/healthz").await;
    assert_eq!(health.status, 200);
    let health = health.json();
    assert_eq!(health["directory"]["reachable"], false, "{health}");
    assert_eq!(health["directory"]["last_sync_ok"], false, "{health}");
    assert!(
        health["directory"]["last_successful_sync"].is_i64(),
        "{health}"
    );
    let metrics = server.browser().get("/metrics").await.body;
    assert!(metrics.contains("latchkey_directory_up 0\n"), "{metrics}");
}

/// The directory over TLS with a test CA: ldaps:// and StartTLS both work with `ca_file`;
/// without it the system's roots do not know the CA and the failure names TLS.
#[tokio::test]
async fn the_directory_over_ldaps_and_starttls_with_a_test_ca() {
    let dir = TempDir::new();
    let (ca, cert, key) = test_ca(&dir.0, "ldap");
    let slapd = Slapd::start_with(
        &dir.0,
        &format!("{}{}", person("dora", PASSWORD), group("staff", &["dora"])),
        Some((&cert, &key)),
    );
    let ca_line = format!("ca_file = \"{}\"\nsync_interval_secs = 0\n", ca.display());
    let ldaps = format!("ldaps://localhost:{}", slapd.tls_port.unwrap());
    let starttls = format!("ldap://localhost:{}", slapd.port);

    let server = Server::new(&ldap_config_at(&ldaps, &dir.0, &ca_line))
        .start()
        .await;
    let found = server.cli(&["ldap", "test", "--user", "dora", "--json"], None);
    assert_eq!(found.code, 0, "{} {}", found.stdout, found.stderr);
    assert_eq!(found.json()["user"]["groups"], serde_json::json!(["staff"]));
    let (id, secret) = server.add_client(&["--skip-consent"]);
    let tokens = server
        .browser()
        .sign_in_for_tokens(&id, &basic(&id, &secret), "dora")
        .await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);

    let over_starttls = Server::new(&ldap_config_at(
        &starttls,
        &dir.0,
        &format!("starttls = true\n{ca_line}"),
    ));
    let found = over_starttls.cli(&["ldap", "test", "--user", "dora", "--json"], None);
    assert_eq!(found.code, 0, "{} {}", found.stdout, found.stderr);
    assert_eq!(found.json()["user"]["email"], "dora@example.test");

    let unknown_ca = Server::new(&ldap_config_at(&ldaps, &dir.0, ""));
    let failed = unknown_ca.cli(&["ldap", "test"], None);
    assert_eq!(failed.code, 1, "{}", failed.stdout);
    assert!(failed.stderr.contains("TLS"), "{}", failed.stderr);
}

/// With `ldap_password_change = true` a directory person changes their password on the
/// account page, in the directory: the old one stops working everywhere, a wrong current
/// password changes nothing.
#[tokio::test]
async fn directory_people_change_their_password_in_the_directory() {
    let dir = TempDir::new();
    let slapd = Slapd::start(&dir.0, &person("dora", PASSWORD));
    let server = Server::new(&format!(
        "{}ldap_password_change = true\n",
        ldap_config(&slapd, &dir.0)
    ))
    .start()
    .await;
    let mut b = server.browser();
    assert_eq!(
        b.login("/login", "dora", PASSWORD).await.location(),
        "/account"
    );
    let account = b.get("/account").await;
    assert!(
        account.body.contains("id=\"password-in-directory\""),
        "{}",
        account.body
    );
    let csrf = account.input("csrf").unwrap();
    let new = "a directory passphrase 789";
    let wrong = b
        .post_form(
            "/account/password",
            &[
                ("csrf", &csrf),
                ("current", "not my password"),
                ("password", new),
                ("password2", new),
            ],
        )
        .await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    let changed = b
        .post_form(
            "/account/password",
            &[
                ("csrf", &csrf),
                ("current", PASSWORD),
                ("password", new),
                ("password2", new),
            ],
        )
        .await;
    assert_eq!(changed.status, 303, "{}", changed.body);
    assert_eq!(b.get("/account").await.status, 200, "this sign-in stays");
    assert_eq!(
        server
            .browser()
            .login("/login", "dora", PASSWORD)
            .await
            .status,
        401
    );
    assert_eq!(
        server
            .browser()
            .login("/login", "dora", new)
            .await
            .location(),
        "/account"
    );
    // The directory itself has the new password.
    let bind = std::process::Command::new("ldapwhoami")
        .args([
            "-x",
            "-H",
            &slapd.url(),
            "-D",
            &format!("uid=dora,{PEOPLE}"),
            "-w",
            new,
        ])
        .output()
        .unwrap();
    assert!(
        bind.status.success(),
        "{}",
        String::from_utf8_lossy(&bind.stderr)
    );
}

/// Active Directory itself: a Samba domain controller provisioned by the test, over
/// ldaps:// with a test CA, with the `active-directory` preset: objectGUID as the stable
/// `sub`, nested groups through LDAP_MATCHING_RULE_IN_CHAIN, the search references AD
/// adds to every search, a person disabled there (userAccountControl) losing access at
/// the next sync, and a password changed in AD (unicodePwd) from the account page.
#[tokio::test]
async fn active_directory_through_samba() {
    use crate::support::samba::{ADMIN_DN, ADMIN_PASSWORD, BASE, Samba};
    if let Err(why) = Samba::possible() {
        assert!(std::env::var_os("CI").is_none(), "CI runs this test: {why}");
        eprintln!("active_directory_through_samba skipped: {why}");
        return;
    }
    let dir = TempDir::new();
    let (ca, cert, key) = test_ca(&dir.0, "ad");
    let samba = Samba::start(
        &dir.0,
        &cert,
        &key,
        &[
            &["domain", "passwordsettings", "set", "--complexity=off"],
            &[
                "user",
                "add",
                "dora",
                PASSWORD,
                "--mail-address=dora@corp.example.test",
                "--given-name=Dora",
                "--surname=Example",
            ],
            &["user", "add", "eve", PASSWORD],
            &["group", "add", "Staff"],
            &["group", "add", "VPN-Users"],
            &["group", "addmembers", "Staff", "dora"],
            &["group", "addmembers", "VPN-Users", "Staff"],
        ],
    )
    .await;
    let secret = dir.0.join("ad-bind-password");
    std::fs::write(&secret, ADMIN_PASSWORD).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let server = Server::new(&format!(
        "[ldap]\npreset = \"active-directory\"\nurl = \"ldaps://localhost:636\"\nca_file = \"{}\"\n\
         bind_dn = \"{ADMIN_DN}\"\nbind_password_file = \"{}\"\nuser_base = \"{BASE}\"\n\
         sync_interval_secs = 0\nldap_password_change = true\n",
        ca.display(),
        secret.display()
    ))
    .start()
    .await;

    let found = server.cli(&["ldap", "test", "--user", "dora", "--json"], None);
    assert_eq!(found.code, 0, "{} {}", found.stdout, found.stderr);
    let report = found.json();
    assert_eq!(
        report["user"]["dn"],
        format!("CN=Dora Example,CN=Users,{BASE}")
    );
    assert_eq!(
        report["user"]["groups"],
        serde_json::json!(["Staff", "VPN-Users"]),
        "nested groups: {report}"
    );
    use base64::Engine as _;
    let guid = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(report["user"]["id"].as_str().unwrap())
        .unwrap();
    assert_eq!(guid.len(), 16, "objectGUID");

    let (id, secret) = server.add_client(&["--skip-consent"]);
    let mut b = server.browser();
    let (verifier, challenge) = pkce();
    let start = b
        .get(&authorize_url(
            &id,
            &format!(
                "&scope=openid%20groups&code_challenge={challenge}&code_challenge_method=S256"
            ),
        ))
        .await;
    let callback = b.drive_to_callback(start, "dora").await;
    let tokens = b
        .redeem(&callback, Some(&verifier), &basic(&id, &secret))
        .await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let jwks = b.get("/api/v1/oauth/discovery/keys").await.json();
    let (_, claims) = verify_jwt(tokens.json()["id_token"].as_str().unwrap(), &jwks);
    assert_eq!(claims["groups"], serde_json::json!(["Staff", "VPN-Users"]));
    assert_eq!(claims["sub"], report["user"]["id"]);

    // A sync takes every person (AD's disabled built-in accounts are not created), then a
    // person disabled in AD is disabled here.
    let synced = server.cli(&["ldap", "sync", "--json"], None);
    assert_eq!(synced.code, 0, "{} {}", synced.stdout, synced.stderr);
    let names = names(&server);
    assert!(names.contains(&"eve".to_string()), "{names:?}");
    assert!(!names.contains(&"krbtgt".to_string()), "{names:?}");
    samba.change(&["user", "disable", "eve"]);
    let synced = server.cli(&["ldap", "sync", "--json"], None).json();
    assert_eq!(synced["disabled"], 1, "{synced}");
    let eve = server.cli(&["user", "show", "eve", "--json"], None).json();
    assert_eq!(eve["disabled"], true, "{eve}");
    assert_eq!(
        server
            .browser()
            .login("/login", "eve", PASSWORD)
            .await
            .status,
        401
    );

    // Dora changes her AD password from the account page.
    let account = b.get("/account").await;
    let csrf = account.input("csrf").unwrap();
    let new = "N3w-Secret-Passphrase!";
    let changed = b
        .post_form(
            "/account/password",
            &[
                ("csrf", &csrf),
                ("current", PASSWORD),
                ("password", new),
                ("password2", new),
            ],
        )
        .await;
    assert_eq!(changed.status, 303, "{}", changed.body);
    assert_eq!(
        server
            .browser()
            .login("/login", "dora", PASSWORD)
            .await
            .status,
        401
    );
    assert_eq!(
        server
            .browser()
            .login("/login", "dora", new)
            .await
            .location(),
        "/account"
    );
}
