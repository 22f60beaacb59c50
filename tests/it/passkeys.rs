//! Issue 14 in headless Chromium with a virtual authenticator (Chrome DevTools Protocol
//! `WebAuthn` domain): a passkey is registered on the account page and then signs in on
//! its own, without a username, to an application that requires two factors.
//!
//! The issuer is `https://localhost:PORT`: browsers accept passkeys only for a host name.

use std::time::Duration;

use serde_json::{Value, json};

use crate::browser::{artifacts, relying_party, sign_in, sign_out};
use crate::people::{admin, post_on};
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

/// An application on 127.0.0.1 that requires two factors: its callback, id and secret.
async fn two_factor_application(server: &Server) -> (String, String, String) {
    application(server, "two_factor").await
}

/// An application on 127.0.0.1 with the sign-in `policy`: its callback, id and secret.
async fn application(server: &Server, policy: &str) -> (String, String, String) {
    let rp = relying_party().await;
    let callback = format!("http://127.0.0.1:{rp}/cb");
    let (client_id, secret) = server.add_client(&[
        "--redirect-uri",
        &callback,
        "--skip-consent",
        "--policy",
        policy,
    ]);
    (callback, client_id, secret)
}

/// Sends the browser to the application's sign-in (code flow with PKCE); returns the
/// PKCE verifier.
async fn open_application(d: &Driver, issuer: &str, callback: &str, client_id: &str) -> String {
    let (verifier, challenge) = pkce();
    d.goto(&format!(
        "{issuer}/api/v1/oauth/authorize?client_id={client_id}&redirect_uri={}&response_type=code&scope=openid&state=s&nonce=n&code_challenge={challenge}&code_challenge_method=S256",
        enc(callback)
    ))
    .await;
    verifier
}

/// Redeems the code the browser brought back at `back` and returns the ID token's `amr`.
async fn amr_of(server: &Server, back: &str, verifier: &str, client: (&str, &str)) -> Vec<String> {
    let mut http = server.browser();
    let tokens = http
        .redeem(back, Some(verifier), &basic(client.0, client.1))
        .await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let jwks = http.get("/api/v1/oauth/discovery/keys").await.json();
    let (_, claims) = verify_jwt(tokens.json()["id_token"].as_str().unwrap(), &jwks);
    claims["amr"]
        .as_array()
        .expect("amr")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn a_passkey_alone_signs_in_to_a_two_factor_application() {
    let server = Server::named("localhost", "").start().await;
    server.add_user("carol", &[]);
    let (callback, client_id, secret) = two_factor_application(&server).await;
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
    let verifier = open_application(&d, &issuer, &callback, &client_id).await;
    // The sign-in page offers the passkey in the username field's autofill (conditional
    // mediation), which the virtual authenticator answers at once: no username, no click.
    let back = d.wait_url(|u| u.starts_with(&callback), WAIT).await;
    let amr = amr_of(&server, &back, &verifier, (&client_id, &secret)).await;
    let has = |m: &str| amr.iter().any(|a| a == m);
    assert!(has("mfa") && has("user"), "{amr:?}");
    assert!(has("hwk") || has("swk"), "{amr:?}");
    assert!(!has("pwd"), "no password was used: {amr:?}");

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

    // An administrator sees Carol's passkey and removes it: it signs nobody in any more.
    let mut root = admin(&server).await;
    let carol = server
        .cli(&["user", "show", "carol", "--json"], None)
        .json();
    let page = format!("/admin/users/{}", carol["id"].as_str().unwrap());
    assert!(root.get(&page).await.body.contains("Work laptop"));
    let id = carol["passkeys"][0]["id"].as_str().unwrap();
    let removed = post_on(
        &mut root,
        &page,
        &format!("{page}/remove-passkey"),
        &[("id", id)],
    )
    .await;
    assert_eq!(removed.status, 303, "{}", removed.body);
    let carol = server
        .cli(&["user", "show", "carol", "--json"], None)
        .json();
    assert_eq!(carol["passkeys"].as_array().map(Vec::len), Some(0));
    sign_out(&d, &server).await;
    let landed = passkey_sign_in(&d, &server, &authenticator).await;
    assert!(landed.contains("/login/passkey"), "{landed}");
}

/// Sets the backup-eligible and backup-state flags the authenticator reports for a
/// credential.
async fn backup_flags(d: &Driver, authenticator: &str, credential: &Value, on: bool) {
    d.cdp(
        "WebAuthn.setCredentialProperties",
        json!({ "authenticatorId": authenticator, "credentialId": credential,
                "backupEligibility": on, "backupState": on }),
    )
    .await;
}

/// Whether the virtual authenticator answers without a person touching it.
async fn presence(d: &Driver, authenticator: &str, enabled: bool) {
    d.cdp(
        "WebAuthn.setAutomaticPresenceSimulation",
        json!({ "authenticatorId": authenticator, "enabled": enabled }),
    )
    .await;
}

/// Registers a passkey for `user` (signed in with the password first) and signs out.
async fn register(d: &Driver, server: &Server, user: &str) {
    d.goto(&format!("{}/login?next=/account", server.issuer))
        .await;
    sign_in(d, "login", user, PASSWORD).await;
    d.wait_for("#add-passkey button[type=submit]", WAIT).await;
    d.click("#add-passkey button[type=submit]").await;
    d.wait_url(|u| u.contains("done=passkey"), WAIT).await;
    sign_out(d, server).await;
}

/// Opens the sign-in page with the authenticator waiting for a touch, keeps what the page
/// posts in `sessionStorage` (`ceremony`, `credential`), then presses "Sign in with a
/// passkey" with the authenticator answering. Returns the URL the browser ends on.
async fn passkey_sign_in(d: &Driver, server: &Server, authenticator: &str) -> String {
    presence(d, authenticator, false).await;
    d.goto(&format!("{}/login?next=/account", server.issuer))
        .await;
    d.wait_for("#passkey-signin button[type=submit]", WAIT)
        .await;
    d.execute(
        "const f = document.getElementById('passkey-signin');\
         const submit = f.submit.bind(f);\
         f.submit = function () {\
           sessionStorage.setItem('ceremony', f.elements.ceremony.value);\
           sessionStorage.setItem('credential', f.elements.credential.value);\
           submit();\
         };",
        &[],
    )
    .await;
    presence(d, authenticator, true).await;
    d.click("#passkey-signin button[type=submit]").await;
    d.wait_url(|u| !u.contains("/login?"), WAIT).await
}

/// Posts a passkey answer to `/login/passkey` from the sign-in page, with the page's own
/// CSRF token; returns the page the server answers with.
async fn post_answer(d: &Driver, ceremony: &str, credential: &str) -> String {
    d.execute(
        "const [ceremony, credential] = arguments;\
         const body = new URLSearchParams();\
         body.set('csrf', document.querySelector('#passkey-signin input[name=csrf]').value);\
         body.set('ceremony', ceremony);\
         body.set('credential', credential);\
         return fetch('/login/passkey', {method: 'POST', body}).then(r => r.text());",
        &[json!(ceremony), json!(credential)],
    )
    .await
    .as_str()
    .unwrap_or_default()
    .to_string()
}

/// The cases peers got wrong (issue 14, item 6) that a browser can produce: an answer
/// replayed, one for a stale challenge, a signature counter that went back, the
/// backup-eligible flag changing after registration, and a disabled or deleted user. Each is
/// refused with the sign-in page (never a 500), and the suspicious ones are in the audit
/// log.
#[tokio::test]
async fn passkey_answers_that_must_not_sign_in() {
    let server = Server::named("localhost", "").start().await;
    server.add_user("dave", &[]);
    let d = Driver::start(artifacts("passkey_refusals")).await;
    let authenticator = platform_authenticator(&d).await;
    register(&d, &server, "dave").await;

    // A first sign-in works; its answer is kept.
    let landed = passkey_sign_in(&d, &server, &authenticator).await;
    assert!(landed.ends_with("/account"), "{landed}");
    let stash = |key: &'static str| {
        let d = &d;
        async move {
            d.execute(&format!("return sessionStorage.getItem('{key}');"), &[])
                .await
                .as_str()
                .unwrap_or_default()
                .to_string()
        }
    };
    let (ceremony, credential) = (stash("ceremony").await, stash("credential").await);
    assert!(!ceremony.is_empty() && credential.contains("authenticatorData"));
    sign_out(&d, &server).await;

    // Replayed with its own ceremony: the ceremony was used up.
    presence(&d, &authenticator, false).await;
    d.goto(&format!("{}/login", server.issuer)).await;
    d.wait_for("#passkey-signin", WAIT).await;
    let page = post_answer(&d, &ceremony, &credential).await;
    assert!(page.contains("expired"), "{page}");
    // Replayed into a new ceremony: its challenge is not the one signed.
    let (fresh, _) = start_ceremony(&d).await;
    let page = post_answer(&d, &fresh, &credential).await;
    assert!(page.contains("could not sign you in"), "{page}");

    // The authenticator's counter goes back (a cloned key): refused and flagged.
    let held = credentials(&d, &authenticator).await;
    let mut cloned = held[0].clone();
    cloned["signCount"] = json!(0);
    d.cdp(
        "WebAuthn.removeCredential",
        json!({ "authenticatorId": authenticator, "credentialId": held[0]["credentialId"] }),
    )
    .await;
    d.cdp(
        "WebAuthn.addCredential",
        json!({ "authenticatorId": authenticator, "credential": cloned }),
    )
    .await;
    let landed = passkey_sign_in(&d, &server, &authenticator).await;
    assert!(landed.contains("/login/passkey"), "{landed}");
    let page = d.text("main").await;
    assert!(page.contains("could not sign you in"), "{page}");
    d.screenshot("counter-went-back").await;
    let audit = server.cli(&["audit", "--json"], None).stdout;
    assert!(audit.contains("passkey.counter_regressed"), "{audit}");

    // The backup-eligible flag set after registration: WebAuthn says it never changes.
    backup_flags(&d, &authenticator, &held[0]["credentialId"], true).await;
    let landed = passkey_sign_in(&d, &server, &authenticator).await;
    assert!(landed.contains("/login/passkey"), "{landed}");
    let audit = server.cli(&["audit", "--json"], None).stdout;
    assert!(audit.contains("passkey.flags_inconsistent"), "{audit}");

    // With the flags as registered and the counter past the stored one, it works again.
    backup_flags(&d, &authenticator, &held[0]["credentialId"], false).await;
    let landed = passkey_sign_in(&d, &server, &authenticator).await;
    assert!(landed.ends_with("/account"), "{landed}");
    sign_out(&d, &server).await;

    // A disabled user's passkey signs nobody in, nor a deleted user's.
    assert_eq!(server.cli(&["user", "disable", "dave"], None).code, 0);
    let landed = passkey_sign_in(&d, &server, &authenticator).await;
    assert!(landed.contains("/login/passkey"), "{landed}");
    let page = d.text("main").await;
    assert!(page.contains("could not sign you in"), "{page}");
    assert_eq!(server.cli(&["user", "enable", "dave"], None).code, 0);
    assert_eq!(server.cli(&["user", "delete", "dave"], None).code, 0);
    let landed = passkey_sign_in(&d, &server, &authenticator).await;
    assert!(landed.contains("/login/passkey"), "{landed}");
    let page = d.text("main").await;
    assert!(page.contains("could not sign you in"), "{page}");
}

/// A security key without user verification (a CTAP2 USB key without a PIN, holding no
/// discoverable credential) is registered on the account page and is then the second
/// factor after the password, for an application that requires two factors.
#[tokio::test]
async fn a_security_key_is_the_second_factor_after_the_password() {
    let server = Server::named("localhost", "").start().await;
    server.add_user("erin", &[]);
    let (callback, client_id, secret) = two_factor_application(&server).await;
    let issuer = server.issuer.clone();
    let d = Driver::start(artifacts("security_key")).await;
    d.cdp("WebAuthn.enable", json!({ "enableUI": false })).await;
    let key = d
        .cdp(
            "WebAuthn.addVirtualAuthenticator",
            json!({ "options": {
                "protocol": "ctap2",
                "transport": "usb",
                "hasResidentKey": false,
                "hasUserVerification": false,
                "automaticPresenceSimulation": true,
            }}),
        )
        .await["authenticatorId"]
        .as_str()
        .expect("an authenticator id")
        .to_string();

    d.goto(&format!("{issuer}/login?next=/account")).await;
    sign_in(&d, "login", "erin", PASSWORD).await;
    d.wait_for("#add-security-key button[type=submit]", WAIT)
        .await;
    d.fill("#key-name", "Blue key").await;
    d.click("#add-security-key button[type=submit]").await;
    d.wait_url(|u| u.contains("done=passkey"), WAIT).await;
    let listed = d.text("#passkeys").await;
    assert!(
        listed.contains("Blue key") && listed.contains("security key"),
        "{listed}"
    );
    let held = credentials(&d, &key).await;
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["isResidentCredential"], false);
    sign_out(&d, &server).await;

    // The password, then the key: two factors.
    let verifier = open_application(&d, &issuer, &callback, &client_id).await;
    sign_in(&d, "login", "erin", PASSWORD).await;
    d.wait_for("#security-key button[type=submit]", WAIT).await;
    d.screenshot("second-factor-security-key").await;
    assert!(
        d.try_find("#code").await.is_none(),
        "no authenticator app: no code field"
    );
    d.click("#security-key button[type=submit]").await;
    let back = d.wait_url(|u| u.starts_with(&callback), WAIT).await;
    let amr = amr_of(&server, &back, &verifier, (&client_id, &secret)).await;
    for m in ["pwd", "hwk", "user", "mfa"] {
        assert!(amr.iter().any(|a| a == m), "{m} in {amr:?}");
    }
    let audit = server.cli(&["audit", "--json"], None).stdout;
    assert!(audit.contains("security key"), "{audit}");

    // The key is lost: an administrator removes it from the command line.
    let out = server.cli(&["user", "remove-passkeys", "erin", "--json"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["passkeys"].as_array().map(Vec::len), Some(0));
    let again = server.cli(&["user", "remove-passkeys", "erin"], None);
    assert_ne!(again.code, 0, "nothing left to remove");
    assert!(again.stderr.contains("no such passkey"), "{}", again.stderr);
}

/// `[login] passkey_first` puts the passkey button above the password form; without a
/// host name in the issuer the sign-in page offers no passkey at all.
#[tokio::test]
async fn the_sign_in_page_offers_passkeys_first_or_not_at_all() {
    let server = Server::named("localhost", "[login]\npasskey_first = true\n")
        .start()
        .await;
    let r = server.browser().get("/login?next=/account").await;
    assert_eq!(r.input("next").as_deref(), Some("/account"));
    let page = r.body;
    let passkey = page.find("id=\"passkey-signin\"").expect("passkey form");
    let password = page.find("name=\"password\"").expect("password form");
    assert!(passkey < password, "passkey first");
    assert!(page.contains("autocomplete=\"username webauthn\""));

    let by_address = Server::new("").start().await;
    let page = by_address.browser().get("/login").await.body;
    assert!(
        !page.contains("passkey-signin"),
        "no passkeys for an IP issuer"
    );
    assert!(page.contains("autocomplete=\"username\""));
}

/// A ceremony started from the sign-in page open in `d`: its id and challenge.
async fn start_ceremony(d: &Driver) -> (String, String) {
    let started = d
        .execute(
            "const body = new URLSearchParams();\
             body.set('csrf', document.querySelector('#passkey-signin input[name=csrf]').value);\
             return fetch('/login/passkey/start', {method: 'POST', body}).then(r => r.json());",
            &[],
        )
        .await;
    let ceremony = started["ceremony"].as_str().expect("a ceremony id");
    let challenge = started["options"]["publicKey"]["challenge"]
        .as_str()
        .expect("a challenge");
    (ceremony.to_string(), challenge.to_string())
}

/// An assertion as a browser would send it, signed with the private key of a virtual
/// authenticator's credential (`WebAuthn.getCredentials`), for `rp_id`, made in a page of
/// `origin`, with the signature counter `counter`.
fn signed_answer(cred: &Value, rp_id: &str, origin: &str, challenge: &str, counter: u32) -> String {
    use aws_lc_rs::digest::{SHA256, digest};
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let binary = |field: &str| {
        STANDARD
            .decode(cred[field].as_str().expect(field))
            .expect("base64")
    };
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &binary("privateKey"))
        .expect("the authenticator's P-256 key");
    let client_data = json!({
        "type": "webauthn.get", "challenge": challenge, "origin": origin, "crossOrigin": false,
    })
    .to_string();
    // WebAuthn §6.1: the RP ID's hash, flags (user present, user verified), counter.
    let mut authenticator_data = digest(&SHA256, rp_id.as_bytes()).as_ref().to_vec();
    authenticator_data.push(0x05);
    authenticator_data.extend(counter.to_be_bytes());
    let mut signed = authenticator_data.clone();
    signed.extend(digest(&SHA256, client_data.as_bytes()).as_ref());
    let signature = key.sign(&SystemRandom::new(), &signed).expect("signed");
    let id = URL_SAFE_NO_PAD.encode(binary("credentialId"));
    json!({
        "id": id, "rawId": id, "type": "public-key", "clientExtensionResults": {},
        "response": {
            "authenticatorData": URL_SAFE_NO_PAD.encode(&authenticator_data),
            "clientDataJSON": URL_SAFE_NO_PAD.encode(client_data.as_bytes()),
            "signature": URL_SAFE_NO_PAD.encode(signature.as_ref()),
            "userHandle": URL_SAFE_NO_PAD.encode(binary("userHandle")),
        },
    })
    .to_string()
}

/// The cases a browser never produces (issue 14, item 6): an answer signed by the right
/// key but for another RP ID, and one made in a page of another origin. The test signs
/// them itself with the virtual authenticator's key; the same answer made right signs in,
/// so each refusal is the RP ID's or the origin's.
#[tokio::test]
async fn answers_for_another_rp_id_or_origin_are_refused() {
    let server = Server::named("localhost", "").start().await;
    server.add_user("faye", &[]);
    let d = Driver::start(artifacts("passkey_forged")).await;
    let authenticator = platform_authenticator(&d).await;
    register(&d, &server, "faye").await;
    let held = credentials(&d, &authenticator).await;
    assert_eq!(held.len(), 1, "{held:?}");
    let counter = held[0]["signCount"].as_u64().expect("a counter") as u32;

    presence(&d, &authenticator, false).await;
    d.goto(&format!("{}/login", server.issuer)).await;
    d.wait_for("#passkey-signin", WAIT).await;
    let origin = server.issuer.clone();
    let cases = [
        ("example.com", origin.as_str(), false),
        ("localhost", "https://localhost.evil.example", false),
        ("localhost", "http://localhost", false),
        ("localhost", origin.as_str(), true),
    ];
    for (n, (rp_id, from, signs_in)) in cases.into_iter().enumerate() {
        let (ceremony, challenge) = start_ceremony(&d).await;
        let answer = signed_answer(&held[0], rp_id, from, &challenge, counter + 1 + n as u32);
        let page = post_answer(&d, &ceremony, &answer).await;
        if signs_in {
            assert!(page.contains("id=\"passkeys\""), "signed in: {page}");
        } else {
            assert!(
                page.contains("could not sign you in"),
                "{rp_id} {from}: {page}"
            );
        }
    }
}

/// SPEC §10 policies: an application with `--policy passkey` takes only a sign-in with a
/// passkey (a password sign-in is sent to add one, then to use it), and a user an
/// administrator set to passkeys only cannot use the password alone; the administrator's
/// reset link is the way back in, and it offers to add a passkey at once.
#[tokio::test]
async fn passkey_policies_for_applications_and_users() {
    let server = Server::named("localhost", "").start().await;
    server.add_user("gail", &[]);
    let (callback, client_id, secret) = application(&server, "passkey").await;
    let issuer = server.issuer.clone();
    let d = Driver::start(artifacts("passkey_policies")).await;
    let authenticator = platform_authenticator(&d).await;
    // Only the button answers (the autofill offer waits for a touch that never comes).
    presence(&d, &authenticator, false).await;

    // A password sign-in to the passkey application: first add a passkey...
    let verifier = open_application(&d, &issuer, &callback, &client_id).await;
    sign_in(&d, "login", "gail", PASSWORD).await;
    d.wait_url(|u| u.contains("/account/passkey?interaction="), WAIT)
        .await;
    d.wait_for("#add-passkey button[type=submit]", WAIT).await;
    assert!(
        d.text("main")
            .await
            .contains("asks you to sign in with a passkey")
    );
    d.screenshot("passkey-application-offer").await;
    presence(&d, &authenticator, true).await;
    d.click("#add-passkey button[type=submit]").await;
    // ...then sign in with it: the password session is not enough.
    d.wait_url(|u| u.contains("/login?passkey=required"), WAIT)
        .await;
    d.wait_for("#passkey-required", WAIT).await;
    assert!(
        !d.source().await.contains("id=\"password\""),
        "no password field when a passkey is required"
    );
    d.screenshot("passkey-required").await;
    d.click("#passkey-signin button[type=submit]").await;
    let back = d.wait_url(|u| u.starts_with(&callback), WAIT).await;
    let amr = amr_of(&server, &back, &verifier, (&client_id, &secret)).await;
    assert!(amr.iter().any(|a| a == "hwk" || a == "swk"), "{amr:?}");
    assert!(!amr.iter().any(|a| a == "pwd"), "{amr:?}");
    sign_out(&d, &server).await;

    // Passkeys only: the right password alone is refused, and the page leads to the
    // passkey sign-in.
    let set = server.cli(&["user", "require-passkeys", "gail", "--json"], None);
    assert_eq!(set.code, 0, "{}", set.stderr);
    assert_eq!(set.json()["passkeys_only"], true);
    presence(&d, &authenticator, false).await;
    d.goto(&format!("{issuer}/login?next=/account")).await;
    sign_in(&d, "login-passkeys-only", "gail", PASSWORD).await;
    d.wait_for("main a[href^='/login?passkey=required']", WAIT)
        .await;
    assert!(d.text("main").await.contains("sign in with a passkey"));
    d.screenshot("password-refused-passkeys-only").await;
    let mut http = server.browser();
    let refused = http.login("/login", "gail", PASSWORD).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(http.get("/account").await.location().starts_with("/login"));
    d.click("main a[href^='/login?passkey=required']").await;
    d.wait_for("#passkey-signin button[type=submit]", WAIT)
        .await;
    presence(&d, &authenticator, true).await;
    d.click("#passkey-signin button[type=submit]").await;
    d.wait_url(|u| u.ends_with("/account"), WAIT).await;
    sign_out(&d, &server).await;

    // Every passkey lost: the administrator's reset link signs Gail in once she chose a
    // password, and offers to add a passkey.
    let removed = server.cli(&["user", "remove-passkeys", "gail"], None);
    assert_eq!(removed.code, 0, "{}", removed.stderr);
    let mut root = admin(&server).await;
    let gail = server.cli(&["user", "show", "gail", "--json"], None).json();
    let page = format!("/admin/users/{}", gail["id"].as_str().unwrap());
    assert!(root.get(&page).await.body.contains("passkeys only"));
    let made = post_on(&mut root, &page, &format!("{page}/reset-link"), &[]).await;
    assert_eq!(made.status, 200, "{}", made.body);
    let url = html_unescape(
        made.body
            .split("<code id=\"once-1\">")
            .nth(1)
            .and_then(|rest| rest.split("</code>").next())
            .expect("the link shown once"),
    );
    d.goto(&url).await;
    d.wait_for("#password2", WAIT).await;
    d.fill("#password", "a fresh passphrase, kept well").await;
    d.fill("#password2", "a fresh passphrase, kept well").await;
    d.click("form[action='/reset'] button[type=submit]").await;
    d.wait_url(|u| u.ends_with("/account/passkey"), WAIT).await;
    d.wait_for("#add-passkey button[type=submit]", WAIT).await;
    d.screenshot("reset-link-offers-a-passkey").await;
    d.fill("#passkey-name", "New phone").await;
    d.click("#add-passkey button[type=submit]").await;
    d.wait_url(|u| u.contains("done=passkey"), WAIT).await;
    assert!(d.text("#passkeys").await.contains("New phone"));
    let audit = server.cli(&["audit", "--json"], None).stdout;
    assert!(audit.contains("user.passkeys_required"), "{audit}");
    assert!(audit.contains("passkey required"), "{audit}");

    // Allowed the password again, it signs in on its own.
    let allowed = server.cli(&["user", "allow-password", "gail"], None);
    assert_eq!(allowed.code, 0, "{}", allowed.stderr);
    let mut http = server.browser();
    let r = http
        .login("/login", "gail", "a fresh passphrase, kept well")
        .await;
    assert_eq!(r.location(), "/account", "{}", r.body);
}

/// A minimal CBOR writer (RFC 8949) for the attestation objects the next test makes:
/// integers, byte and text strings, maps.
enum Cbor {
    Int(i64),
    Bytes(Vec<u8>),
    Text(&'static str),
    Map(Vec<(Cbor, Cbor)>),
}

impl Cbor {
    fn encode(&self, out: &mut Vec<u8>) {
        let head = |out: &mut Vec<u8>, major: u8, n: u64| match n {
            0..=23 => out.push(major << 5 | n as u8),
            24..=255 => out.extend([major << 5 | 24, n as u8]),
            _ => {
                out.push(major << 5 | 25);
                out.extend((n as u16).to_be_bytes());
            }
        };
        match self {
            Cbor::Int(v) if *v >= 0 => head(out, 0, *v as u64),
            Cbor::Int(v) => head(out, 1, (-1 - *v) as u64),
            Cbor::Bytes(b) => {
                head(out, 2, b.len() as u64);
                out.extend(b);
            }
            Cbor::Text(t) => {
                head(out, 3, t.len() as u64);
                out.extend(t.as_bytes());
            }
            Cbor::Map(pairs) => {
                head(out, 5, pairs.len() as u64);
                for (k, v) in pairs {
                    k.encode(out);
                    v.encode(out);
                }
            }
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = vec![];
        self.encode(&mut out);
        out
    }
}

/// A registration answer from an authenticator that sends `packed` self-attestation
/// (WebAuthn §8.2): the new ES256 key signs authenticator data and the client data hash.
/// With `forged`, another key signs it.
fn packed_registration(origin: &str, challenge: &str, forged: bool) -> String {
    use aws_lc_rs::digest::{SHA256, digest};
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let rng = SystemRandom::new();
    let new_key = || {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap()
    };
    let key = new_key();
    let point = key.public_key().as_ref().to_vec(); // 0x04 || x || y
    let cose = Cbor::Map(vec![
        (Cbor::Int(1), Cbor::Int(2)),  // kty: EC2
        (Cbor::Int(3), Cbor::Int(-7)), // alg: ES256
        (Cbor::Int(-1), Cbor::Int(1)), // crv: P-256
        (Cbor::Int(-2), Cbor::Bytes(point[1..33].to_vec())),
        (Cbor::Int(-3), Cbor::Bytes(point[33..].to_vec())),
    ]);
    let credential_id = latchkey::clock::random_token().into_bytes();
    let mut auth_data = digest(&SHA256, b"localhost").as_ref().to_vec();
    auth_data.push(0x45); // user present, user verified, attested credential data
    auth_data.extend(0u32.to_be_bytes());
    auth_data.extend([0u8; 16]); // AAGUID
    auth_data.extend((credential_id.len() as u16).to_be_bytes());
    auth_data.extend(&credential_id);
    auth_data.extend(cose.bytes());
    let client_data = json!({
        "type": "webauthn.create", "challenge": challenge, "origin": origin, "crossOrigin": false,
    })
    .to_string();
    let mut signed = auth_data.clone();
    signed.extend(digest(&SHA256, client_data.as_bytes()).as_ref());
    let signer = if forged { new_key() } else { key };
    let sig = signer.sign(&rng, &signed).unwrap();
    let attestation = Cbor::Map(vec![
        (Cbor::Text("fmt"), Cbor::Text("packed")),
        (
            Cbor::Text("attStmt"),
            Cbor::Map(vec![
                (Cbor::Text("alg"), Cbor::Int(-7)),
                (Cbor::Text("sig"), Cbor::Bytes(sig.as_ref().to_vec())),
            ]),
        ),
        (Cbor::Text("authData"), Cbor::Bytes(auth_data)),
    ]);
    let id = URL_SAFE_NO_PAD.encode(&credential_id);
    json!({
        "id": id, "rawId": id, "type": "public-key", "clientExtensionResults": {},
        "response": {
            "attestationObject": URL_SAFE_NO_PAD.encode(attestation.bytes()),
            "clientDataJSON": URL_SAFE_NO_PAD.encode(client_data.as_bytes()),
        },
    })
    .to_string()
}

/// SPEC §10: attestation `none` is what browsers send by default (the tests above);
/// `packed` is verified when an authenticator sends it: a correct self-attestation adds
/// the passkey, one signed by another key is refused and adds nothing.
#[tokio::test]
async fn packed_attestation_is_verified_when_given() {
    let server = Server::named("localhost", "").start().await;
    server.add_user("hana", &[]);
    let mut b = server.browser();
    let signed_in = b.login("/login", "hana", PASSWORD).await;
    assert_eq!(signed_in.location(), "/account", "{}", signed_in.body);
    let csrf = b.get("/account").await.input("csrf").expect("a CSRF token");
    for (forged, name) in [(true, "Forged key"), (false, "Packed key")] {
        let started = b
            .post_form("/account/passkeys/start", &[("csrf", &csrf)])
            .await;
        assert_eq!(started.status, 200, "{}", started.body);
        let started = started.json();
        let challenge = started["options"]["publicKey"]["challenge"]
            .as_str()
            .expect("a challenge");
        let answer = packed_registration(&server.issuer, challenge, forged);
        let ceremony = started["ceremony"].as_str().expect("a ceremony");
        let r = b
            .post_form(
                "/account/passkeys",
                &[
                    ("csrf", &csrf),
                    ("ceremony", ceremony),
                    ("credential", &answer),
                    ("name", name),
                ],
            )
            .await;
        if forged {
            assert_eq!(r.status, 400, "{}", r.body);
        } else {
            assert_eq!(r.location(), "/account?done=passkey", "{}", r.body);
        }
    }
    let hana = server.cli(&["user", "show", "hana", "--json"], None).json();
    let names: Vec<&str> = hana["passkeys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["Packed key"]);
}

/// A directory person's passkey (issues 14 and 15): it signs them in while the directory
/// lists them, and while the directory cannot be reached (as signed-in sessions go on);
/// once they are removed there it no longer does, even before a sync.
#[tokio::test]
async fn a_directory_persons_passkey_follows_the_directory() {
    use crate::support::slapd::{Slapd, ldap_config, person};
    let dir = TempDir::new();
    let mut slapd = Slapd::start(&dir.0, &person("dora", PASSWORD));
    let server = Server::named("localhost", &ldap_config(&slapd, &dir.0))
        .start()
        .await;
    let d = Driver::start(artifacts("passkey_directory")).await;
    let authenticator = platform_authenticator(&d).await;
    register(&d, &server, "dora").await;
    let landed = passkey_sign_in(&d, &server, &authenticator).await;
    assert!(landed.ends_with("/account"), "{landed}");
    sign_out(&d, &server).await;

    slapd.stop();
    let landed = passkey_sign_in(&d, &server, &authenticator).await;
    assert!(landed.ends_with("/account"), "directory down: {landed}");
    sign_out(&d, &server).await;

    slapd.run();
    slapd.delete("uid=dora,ou=people,dc=example,dc=test");
    let landed = passkey_sign_in(&d, &server, &authenticator).await;
    assert!(landed.contains("/login/passkey"), "{landed}");
    let page = d.text("main").await;
    assert!(page.contains("directory does not confirm"), "{page}");
    d.screenshot("passkey-directory-removed").await;
}
