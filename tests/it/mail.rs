//! Issue 16 against a real SMTP server (aiosmtpd, started by each test on a loopback port):
//! "Forgot your password?" with the same answer for known and unknown accounts, links that
//! work once, an invitation through a mail server that was down at first (queued, reported,
//! retried) to a sign-in at an application, the address check that makes `email_verified`
//! true, and STARTTLS against a test CA. The expired link is in `clocked`.

use std::time::Duration;

use serde_json::Value;

use crate::support::smtp::{Smtp, link_in, mail_config, test_ca};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(30);

/// `email_verified` in a fresh ID token and in UserInfo for `username`, signed in in `b`.
async fn email_verified(b: &mut Browser, client: (&str, &str), username: &str) -> (Value, Value) {
    let tokens = b
        .sign_in_for_tokens(client.0, &basic(client.0, client.1), username)
        .await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let jwks = b.get("/api/v1/oauth/discovery/keys").await.json();
    let t = tokens.json();
    let (_, claims) = verify_jwt(t["id_token"].as_str().unwrap(), &jwks);
    let access = t["access_token"].as_str().unwrap().to_string();
    let info = b
        .get_with(
            "/api/v1/oauth/userinfo",
            &[("authorization", &format!("Bearer {access}"))],
        )
        .await
        .json();
    (
        claims["email_verified"].clone(),
        info["email_verified"].clone(),
    )
}

#[tokio::test]
async fn a_forgotten_password_is_reset_by_mail_once() {
    let dir = TempDir::new();
    let smtp = Smtp::start(&dir.0, free_port(), None);
    let server = Server::new(&mail_config(smtp.port, "")).start().await;
    server.add_user("alice", &[]);
    let mut b = server.browser();
    let login = b.get("/login").await;
    assert!(
        login.body.contains("href=\"/reset\""),
        "a link on the sign-in page"
    );

    // Known and unknown accounts get the same answer; only the known one gets a mail.
    let ask = |who: &'static str| {
        let server = &server;
        async move {
            let mut b = server.browser();
            let page = b.get("/reset").await;
            assert_eq!(page.status, 200, "{}", page.body);
            let csrf = page.input("csrf").unwrap();
            b.post_form("/reset", &[("csrf", &csrf), ("username", who)])
                .await
        }
    };
    let known = ask("alice").await;
    let unknown = ask("nobody-here").await;
    assert_eq!((known.status, unknown.status), (200, 200));
    assert_eq!(known.body, unknown.body, "the same answer");
    let mails = smtp.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(smtp.mails().len(), 1, "one mail: {mails:?}");
    let mail = &mails[0];
    assert_eq!(mail["rcpt_tos"][0], "alice@example.com");
    assert_eq!(mail["mail_from"], "id@example.test");
    assert!(mail["subject"].as_str().unwrap().contains("password"));
    assert!(
        !mail["html"].as_str().unwrap().is_empty(),
        "an HTML part too"
    );
    let link = link_in(mail, &format!("{}/reset?token=", server.issuer));
    let path = link.strip_prefix(&server.issuer).unwrap().to_string();

    // The link: a new password, then signed in; a second time it is refused.
    let mut r = server.browser();
    let page = r.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let done = r
        .post_form(
            "/reset",
            &[
                ("csrf", &page.input("csrf").unwrap()),
                ("token", &page.input("token").unwrap()),
                ("password", "a fresh passphrase, mailed"),
                ("password2", "a fresh passphrase, mailed"),
            ],
        )
        .await;
    assert_eq!(done.location(), "/account", "{}", done.body);
    assert_eq!(server.browser().get(&path).await.status, 404, "used once");
    let mut again = server.browser();
    let signed = again
        .login("/login", "alice", "a fresh passphrase, mailed")
        .await;
    assert_eq!(signed.location(), "/account");
    // By address as well as by username, once the address is verified (anyone may type
    // someone else's address into their own profile).
    ask("ALICE@example.com").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(smtp.mails().len(), 1, "an unverified address names nobody");
    let vouched = server.cli(&["user", "update", "alice", "--email-verified"], None);
    assert_eq!(vouched.code, 0, "{}", vouched.stderr);
    ask("ALICE@example.com").await;
    smtp.wait_for(2, WAIT).await;
    let audit = server.cli(&["audit", "--json"], None).stdout;
    assert!(
        audit.contains("mail.sent") && audit.contains("reset.requested"),
        "{audit}"
    );
    assert!(
        !audit.contains(&path[path.len() - 20..]),
        "no link in the audit log"
    );
    assert!(
        !server.log().contains(&path[path.len() - 20..]),
        "no link in the log"
    );
}

#[tokio::test]
async fn an_invitation_waits_for_the_mail_server_then_signs_in_to_an_application() {
    let dir = TempDir::new();
    let port = free_port();
    let mut server = Server::new(&mail_config(port, "")).start().await;
    let (client_id, secret) = server.add_client(&["--skip-consent"]);

    // No mail server yet: the command says so and fails; the mail waits in the outbox.
    let out = server.cli(
        &[
            "user",
            "invite",
            "bob",
            "--email",
            "bob@example.test",
            "--group",
            "staff",
            "--json",
        ],
        None,
    );
    assert_eq!(out.code, 1, "{} {}", out.stdout, out.stderr);
    assert!(out.stderr.contains("connection"), "{}", out.stderr);
    assert!(out.stderr.contains("retried"), "{}", out.stderr);
    let queue = server.cli(&["mail", "queue", "--json"], None);
    let queued = queue.json();
    assert_eq!(queued[0]["kind"], "invitation", "{queued}");
    assert!(queued[0]["attempts"].as_u64().unwrap() >= 1, "{queued}");
    assert!(
        queued[0]["last_error"]
            .as_str()
            .unwrap()
            .starts_with("connection")
    );
    let audit = server.cli(&["audit", "--json"], None).stdout;
    assert!(audit.contains("mail.failed"), "{audit}");
    let metrics = server.browser().get("/metrics").await.body;
    assert!(
        metrics.contains("latchkey_mail_queued{state=\"waiting\"} 1"),
        "{metrics}"
    );
    // The invited account has no password to guess.
    let mut guess = server.browser();
    assert_eq!(guess.login("/login", "bob", "").await.status, 401);

    // Latchkey restarts meanwhile: the mail waits in the database, not in memory.
    server.stop();
    server.spawn().await;
    // The mail server comes up: the worker's retry delivers.
    let smtp = Smtp::start(&dir.0, port, None);
    let mails = smtp.wait_for(1, WAIT).await;
    let mail = &mails[0];
    assert_eq!(mail["rcpt_tos"][0], "bob@example.test");
    assert!(
        mail["text"].as_str().unwrap().contains("bob"),
        "the username"
    );
    let link = link_in(mail, &format!("{}/invite?token=", server.issuer));
    let path = link.strip_prefix(&server.issuer).unwrap().to_string();
    let queue = server.cli(&["mail", "queue", "--json"], None);
    assert_eq!(queue.code, 0, "{}", queue.stdout);
    assert_eq!(queue.json(), serde_json::json!([]), "sent, so gone");
    let metrics = server.browser().get("/metrics").await.body;
    assert!(
        metrics.contains("latchkey_mail_attempts_total{result=\"sent\"} 1"),
        "{metrics}"
    );

    // Bob chooses a password and is signed in; the application signs him in at once.
    let mut b = server.browser();
    let page = b.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("bob"));
    let done = b
        .post_form(
            "/invite",
            &[
                ("csrf", &page.input("csrf").unwrap()),
                ("token", &page.input("token").unwrap()),
                ("password", PASSWORD),
                ("password2", PASSWORD),
            ],
        )
        .await;
    assert_eq!(done.location(), "/account", "{}", done.body);
    let (id_token, userinfo) = email_verified(&mut b, (&client_id, &secret), "bob").await;
    assert_eq!(
        (id_token, userinfo),
        (Value::Bool(true), Value::Bool(true)),
        "the invitation proved the address"
    );
    assert_eq!(server.browser().get(&path).await.status, 404, "used once");
    let shown = server.cli(&["user", "show", "bob", "--json"], None).json();
    assert_eq!(shown["groups"][0], "staff");
    assert!(shown["invited_until"].is_null(), "{shown}");
}

#[tokio::test]
async fn an_address_is_verified_by_its_link_and_unverified_when_it_changes() {
    let dir = TempDir::new();
    let smtp = Smtp::start(&dir.0, free_port(), None);
    let server = Server::new(&mail_config(smtp.port, "")).start().await;
    server.add_user("carol", &[]);
    let (client_id, secret) = server.add_client(&["--skip-consent"]);
    let mut b = server.browser();
    let before = email_verified(&mut b, (&client_id, &secret), "carol").await;
    assert_eq!(before, (Value::Bool(false), Value::Bool(false)));

    let account = b.get("/account").await;
    assert!(
        account.body.contains("id=\"send-verification\""),
        "{}",
        account.body
    );
    let sent = b
        .post_form(
            "/account/verify",
            &[("csrf", &account.input("csrf").unwrap())],
        )
        .await;
    assert_eq!(sent.location(), "/account?done=verify-sent");
    let mails = smtp.wait_for(1, WAIT).await;
    let link = link_in(&mails[0], &format!("{}/verify?token=", server.issuer));
    let path = link.strip_prefix(&server.issuer).unwrap().to_string();
    // Opening the link changes nothing (mail scanners open links); the button does.
    let page = b.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let still = server
        .cli(&["user", "show", "carol", "--json"], None)
        .json();
    assert_eq!(still["email_verified"], false);
    let done = b
        .post_form(
            "/verify",
            &[
                ("csrf", &page.input("csrf").unwrap()),
                ("token", &page.input("token").unwrap()),
            ],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let after = email_verified(&mut b, (&client_id, &secret), "carol").await;
    assert_eq!(after, (Value::Bool(true), Value::Bool(true)));
    assert_eq!(server.browser().get(&path).await.status, 404, "used once");

    // A new address is unverified again, and its link goes out at once.
    let account = b.get("/account").await;
    let changed = b
        .post_form(
            "/account/profile",
            &[
                ("csrf", &account.input("csrf").unwrap()),
                ("email", "carol.new@example.com"),
            ],
        )
        .await;
    assert_eq!(changed.location(), "/account?done=verify-sent");
    let after = email_verified(&mut b, (&client_id, &secret), "carol").await;
    assert_eq!(after, (Value::Bool(false), Value::Bool(false)));
    let mails = smtp.wait_for(2, WAIT).await;
    assert_eq!(mails[1]["rcpt_tos"][0], "carol.new@example.com");
    // An administrator may vouch for an address instead.
    let vouched = server.cli(
        &["user", "update", "carol", "--email-verified", "--json"],
        None,
    );
    assert_eq!(vouched.code, 0, "{}", vouched.stderr);
    assert_eq!(vouched.json()["email_verified"], true);
}

#[tokio::test]
async fn starttls_is_checked_against_the_configured_ca() {
    let dir = TempDir::new();
    let (ca, cert, key) = test_ca(&dir.0, "mail");
    let (other_ca, _, _) = test_ca(&dir.0, "other");
    let smtp = Smtp::start(&dir.0, free_port(), Some((&cert, &key)));
    let trusted = format!("ca_file = \"{}\"", ca.display());
    let server = Server::new(&mail_config(smtp.port, &trusted));
    let sent = server.cli(&["mail", "test", "--to", "ops@example.test"], None);
    assert_eq!(sent.code, 0, "{} {}", sent.stdout, sent.stderr);
    assert!(
        sent.stdout.contains("250"),
        "the server's answer: {}",
        sent.stdout
    );
    let mails = smtp.wait_for(1, WAIT).await;
    assert_eq!(mails[0]["tls"], true, "sent under STARTTLS");

    // A CA that did not sign the server's certificate: a TLS failure, said as such.
    let wrong = format!("ca_file = \"{}\"", other_ca.display());
    let server = Server::new(&mail_config(smtp.port, &wrong));
    let refused = server.cli(&["mail", "test", "--to", "ops@example.test"], None);
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    assert!(refused.stderr.contains("TLS"), "{}", refused.stderr);
    // Nothing listening: a connection failure.
    let nobody = Server::new(&mail_config(free_port(), ""));
    let down = nobody.cli(&["mail", "test", "--to", "ops@example.test"], None);
    assert_eq!(down.code, 1);
    assert!(down.stderr.contains("connection"), "{}", down.stderr);
    assert_eq!(smtp.mails().len(), 1);
}

/// The admin pages: "Invite by mail" with the mail server down says so and lists the
/// mail with its error under Mail; once the server is up, "Try all again now" sends it;
/// the invitation can be withdrawn, after which its link is refused.
#[tokio::test]
async fn admin_pages_invite_show_the_outbox_and_withdraw() {
    let dir = TempDir::new();
    let port = free_port();
    // Retries far apart: only the button sends it again within the test.
    let server = Server::new(&mail_config(port, "").replace("retry_secs = 1", "retry_secs = 3600"))
        .start()
        .await;
    let mut root = crate::people::admin(&server).await;
    let form = root.get("/admin/users/new").await;
    assert!(form.body.contains("id=\"invite\""), "{}", form.body);
    let r = crate::people::post_on(
        &mut root,
        "/admin/users/new",
        "/admin/users/new",
        &[
            ("username", "dana"),
            ("email", "dana@example.test"),
            ("invite", "yes"),
        ],
    )
    .await;
    let page = r.location();
    assert!(page.ends_with("?mail=failed"), "{page}");
    let shown = root.get(&page).await;
    assert!(
        shown.body.contains("could not be mailed yet"),
        "{}",
        shown.body
    );
    assert!(shown.body.contains("id=\"invitation\""), "{}", shown.body);
    let outbox = root.get("/admin/mail").await;
    assert!(outbox.body.contains("dana@example.test"), "{}", outbox.body);
    assert!(
        outbox.body.contains("connection"),
        "the reason: {}",
        outbox.body
    );

    let smtp = Smtp::start(&dir.0, port, None);
    let retried = crate::people::post_on(&mut root, "/admin/mail", "/admin/mail/retry", &[]).await;
    assert_eq!(retried.location(), "/admin/mail");
    let mails = smtp.wait_for(1, WAIT).await;
    let link = link_in(&mails[0], &format!("{}/invite?token=", server.issuer));
    let path = link.strip_prefix(&server.issuer).unwrap().to_string();
    assert_eq!(server.browser().get(&path).await.status, 200);

    let user_page = page.split('?').next().unwrap().to_string();
    let withdrawn = crate::people::post_on(
        &mut root,
        &user_page,
        &format!("{user_page}/invite-revoke"),
        &[],
    )
    .await;
    assert_eq!(withdrawn.location(), user_page);
    assert_eq!(server.browser().get(&path).await.status, 404, "withdrawn");
}

/// No self-service reset mail for an invited account (its invitation is the way in, and a
/// withdrawn one must stay withdrawn) or a passkeys-only one (its administrator is).
#[tokio::test]
async fn no_reset_mail_for_invited_or_passkeys_only_accounts() {
    let dir = TempDir::new();
    let smtp = Smtp::start(&dir.0, free_port(), None);
    let server = Server::new(&mail_config(smtp.port, "")).start().await;
    let invited = server.cli(
        &["user", "invite", "ivy", "--email", "ivy@example.test"],
        None,
    );
    assert_eq!(invited.code, 0, "{}", invited.stderr);
    smtp.wait_for(1, WAIT).await;
    let revoked = server.cli(&["user", "invite", "ivy", "--revoke"], None);
    assert_eq!(revoked.code, 0, "{}", revoked.stderr);
    server.add_user("pat", &[]);
    assert_eq!(
        server.cli(&["user", "require-passkeys", "pat"], None).code,
        0
    );
    for who in ["ivy", "pat"] {
        let mut b = server.browser();
        let page = b.get("/reset").await;
        let r = b
            .post_form(
                "/reset",
                &[("csrf", &page.input("csrf").unwrap()), ("username", who)],
            )
            .await;
        assert_eq!(r.status, 200, "the same answer: {}", r.body);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        smtp.mails().len(),
        1,
        "only the invitation: {:?}",
        smtp.mails()
    );
}
