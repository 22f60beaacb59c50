//! Issue 17, item 4: pages and mails in the person's language, chosen by an application's
//! `ui_locales`, then the switcher, then `Accept-Language`, then `[ui] default_language`.

use std::time::Duration;

use serde_json::json;

use crate::browser::artifacts;
use crate::support::smtp::{Smtp, mail_config};
use crate::support::webdriver::Driver;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(15);

/// Headless Chromium asking for German (`Accept-Language`) sees the sign-in page in
/// German; an application's `ui_locales=fr` turns it French for that sign-in; the
/// switcher on the page chooses another language.
#[tokio::test]
async fn the_sign_in_page_speaks_the_browsers_and_the_applications_language() {
    let server = Server::new("").start().await;
    let (client_id, _) = server.add_client(&[]);
    let d = Driver::start(artifacts("languages")).await;
    d.cdp("Network.enable", json!({})).await;
    d.cdp(
        "Network.setExtraHTTPHeaders",
        json!({"headers": {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}}),
    )
    .await;
    d.goto(&format!("{}/login", server.issuer)).await;
    d.wait_for("h1", WAIT).await;
    d.screenshot("login-de").await;
    assert_eq!(d.text("h1").await, "Anmelden");
    assert!(d.source().await.contains("<html lang=\"de\""));
    assert!(d.text("label[for=username]").await.contains("Benutzername"));

    // The application asks for French: the sign-in page follows, for this sign-in too.
    d.goto(&format!(
        "{}{}",
        server.issuer,
        authorize_url(&client_id, "&ui_locales=fr-CA%20de")
    ))
    .await;
    d.wait_url(|u| u.contains("/login?interaction="), WAIT)
        .await;
    d.wait_for("h1", WAIT).await;
    d.screenshot("login-fr").await;
    assert_eq!(d.text("h1").await, "Se connecter");
    assert!(
        d.text("label[for=username]")
            .await
            .contains("Nom d'utilisateur")
    );

    // The switcher: Italiano.
    d.click("nav.languages a[lang=it]").await;
    d.wait_for("h1", WAIT).await;
    assert_eq!(d.text("h1").await, "Accedi");
    d.screenshot("login-it").await;
}

/// Without any preference the configured default language is used; discovery lists the
/// languages; a mail asked for from a German page is German.
#[tokio::test]
async fn the_default_language_discovery_and_mails_follow() {
    let dir = TempDir::new();
    let smtp = Smtp::start(&dir.0, free_port(), None);
    let server = Server::new(&format!(
        "[ui]\ndefault_language = \"nl\"\n{}",
        mail_config(smtp.port, "")
    ))
    .start()
    .await;
    server.add_user("ada", &[]);
    let mut b = server.browser();
    let page = b.get("/login").await;
    assert!(page.body.contains("<h1>Aanmelden</h1>"), "{}", page.body);
    let meta = b.get("/.well-known/openid-configuration").await.json();
    assert_eq!(
        meta["ui_locales_supported"],
        json!(["en", "de", "fr", "es", "it", "nl", "pl", "pt"])
    );
    let form = b.get_with("/reset", &[("accept-language", "de")]).await;
    assert!(
        form.body.contains("Benutzername oder E-Mail-Adresse"),
        "{}",
        form.body
    );
    let r = b
        .post_form_with(
            "/reset",
            &[("csrf", &form.input("csrf").unwrap()), ("username", "ada")],
            &[("accept-language", "de")],
        )
        .await;
    assert_eq!(r.status, 200);
    let mails = smtp.wait_for(1, Duration::from_secs(30)).await;
    assert!(
        mails[0]["subject"].as_str().unwrap().contains("Passwort"),
        "{}",
        mails[0]
    );
    assert!(
        mails[0]["text"].as_str().unwrap().contains("Hallo ada"),
        "{}",
        mails[0]
    );
    // Every page, not only the sign-in page: the account page in the default language,
    // an error page and an administrator's page in the browser's.
    let mut ada = server.browser();
    let signed = ada.login("/login", "ada", PASSWORD).await;
    assert_eq!(signed.location(), "/account");
    let account = ada.get("/account").await;
    assert!(
        account.body.contains("<h1>Mijn account</h1>"),
        "{}",
        account.body
    );
    let bad_link = b
        .get_with("/reset?token=nobody.nothing", &[("accept-language", "de")])
        .await;
    assert!(bad_link.body.contains("Link ungültig"), "{}", bad_link.body);
    server.add_user("root", &["--group", "admin"]);
    let mut root = server.browser();
    root.login("/login", "root", PASSWORD).await;
    let users = root
        .get_with("/admin/users", &[("accept-language", "pl")])
        .await;
    assert!(users.body.contains("lang=\"pl\""), "{}", users.body);
    assert!(users.body.contains("Dodaj użytkownika"), "{}", users.body);
    // A bad default is refused by name.
    let bad = Server::new("[ui]\ndefault_language = \"xx\"\n");
    let out = bad.cli(&["check-config"], None);
    assert_eq!(out.code, 2, "{}", out.stdout);
    assert!(out.stderr.contains("ui.default_language"), "{}", out.stderr);
}
