//! Issue 15, first part, against a real OpenLDAP server (slapd started by the test): the
//! service account finds a person (`latchkey ldap test`), a directory person signs in to
//! an application with their directory password and the directory's groups, a wrong
//! password and a filter injection find nobody, local accounts keep working beside the
//! directory, and the directory going down stops only directory sign-ins.

use crate::support::slapd::{Slapd, group, ldap_config, person};
use crate::support::*;

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
