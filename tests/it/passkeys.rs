//! Issue 14 in headless Chromium with a virtual authenticator (Chrome DevTools Protocol
//! `WebAuthn` domain): a passkey is registered on the account page and then signs in on
//! its own, without a username, to an application that requires two factors.
//!
//! The issuer is `https://localhost:PORT`: browsers accept passkeys only for a host name.

use std::time::Duration;

use serde_json::{Value, json};

use crate::browser::{artifacts, relying_party, sign_in, sign_out};
use crate::support::webdriver::Driver;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(15);

/// Adds a virtual authenticator to the browser and returns its id: a platform
/// authenticator with resident keys and user verification (a laptop's or phone's passkey
/// store) that answers without a person touching it.
async fn platform_authenticator(d: &Driver) -> String {
    d.cdp("WebAuthn.enable", json!({ "enableUI": false })).await;
    let added = d
        .cdp(
            "WebAuthn.addVirtualAuthenticator",
            json!({ "options": {
                "protocol": "ctap2",
                "ctap2Version": "ctap2_1",
                "transport": "internal",
                "hasResidentKey": true,
                "hasUserVerification": true,
                "isUserVerified": true,
                "automaticPresenceSimulation": true,
            }}),
        )
        .await;
    added["authenticatorId"]
        .as_str()
        .expect("an authenticator id")
        .to_string()
}

async fn credentials(d: &Driver, authenticator: &str) -> Vec<Value> {
    d.cdp(
        "WebAuthn.getCredentials",
        json!({ "authenticatorId": authenticator }),
    )
    .await["credentials"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_passkey_alone_signs_in_to_a_two_factor_application() {
    let server = Server::named("localhost", "").start().await;
    server.add_user("carol", &[]);
    let rp = relying_party().await;
    let callback = format!("http://127.0.0.1:{rp}/cb");
    let (client_id, secret) = server.add_client(&[
        "--redirect-uri",
        &callback,
        "--skip-consent",
        "--policy",
        "two_factor",
    ]);
    let issuer = server.issuer.clone();
    let d = Driver::start(artifacts("passkey_alone")).await;
    let authenticator = platform_authenticator(&d).await;

    // Carol signs in with her password and adds a passkey on her account page.
    d.goto(&format!("{issuer}/login?next=/account")).await;
    sign_in(&d, "login", "carol", PASSWORD).await;
    d.wait_url(|u| u.ends_with("/account"), WAIT).await;
    d.wait_for("#add-passkey button[type=submit]", WAIT).await;
    d.screenshot("account-without-passkey").await;
    d.fill("#passkey-name", "Work laptop").await;
    d.click("#add-passkey button[type=submit]").await;
    d.wait_url(|u| u.contains("done=passkey"), WAIT).await;
    d.screenshot("account-with-passkey").await;
    assert!(d.text("#passkeys").await.contains("Work laptop"));
    let held = credentials(&d, &authenticator).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(
        held[0]["isResidentCredential"], true,
        "a discoverable credential"
    );
    let audit = server.cli(&["audit", "--json"], None).stdout;
    assert!(audit.contains("passkey.added"), "{audit}");
    sign_out(&d, &server).await;

    // The application asks for two factors; the passkey alone is enough, no username.
    let (verifier, challenge) = pkce();
    d.goto(&format!(
        "{issuer}/api/v1/oauth/authorize?client_id={client_id}&redirect_uri={}&response_type=code&scope=openid&state=s&nonce=n&code_challenge={challenge}&code_challenge_method=S256",
        enc(&callback)
    ))
    .await;
    // The sign-in page offers the passkey in the username field's autofill (conditional
    // mediation), which the virtual authenticator answers at once: no username, no click.
    let back = d.wait_url(|u| u.starts_with(&callback), WAIT).await;
    let mut http = server.browser();
    let tokens = http
        .redeem(&back, Some(&verifier), &basic(&client_id, &secret))
        .await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let jwks = http.get("/api/v1/oauth/discovery/keys").await.json();
    let (_, claims) = verify_jwt(tokens.json()["id_token"].as_str().unwrap(), &jwks);
    let amr: Vec<&str> = claims["amr"]
        .as_array()
        .expect("amr")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(amr.contains(&"mfa") && amr.contains(&"user"), "{amr:?}");
    assert!(amr.contains(&"hwk") || amr.contains(&"swk"), "{amr:?}");
    assert!(!amr.contains(&"pwd"), "no password was used: {amr:?}");

    // Signing in to Latchkey itself (`next`), with the button on the page: the
    // authenticator waits for a touch until the button is pressed (the autofill request
    // may be the one answered then; both end on the account page).
    d.goto(&format!("{issuer}/account")).await;
    d.wait_for("#passkeys", WAIT).await;
    assert!(
        !d.text("#passkeys").await.contains("never"),
        "last use shown"
    );
    sign_out(&d, &server).await;
    presence(&d, &authenticator, false).await;
    d.goto(&format!("{issuer}/login?next=/account")).await;
    d.wait_for("#passkey-signin button[type=submit]", WAIT)
        .await;
    d.screenshot("login-with-passkey-button").await;
    presence(&d, &authenticator, true).await;
    d.click("#passkey-signin button[type=submit]").await;
    d.wait_url(|u| u.ends_with("/account"), WAIT).await;
    d.screenshot("account-after-passkey-button").await;
}

/// Whether the virtual authenticator answers without a person touching it.
async fn presence(d: &Driver, authenticator: &str, enabled: bool) {
    d.cdp(
        "WebAuthn.setAutomaticPresenceSimulation",
        json!({ "authenticatorId": authenticator, "enabled": enabled }),
    )
    .await;
}
