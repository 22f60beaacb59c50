//! Issue 4 over HTTP: second factors (TOTP, recovery codes, trusted browsers, step-up),
//! temporary passwords and reset links, the account page and the admin pages, with the
//! state each change must leave behind.

use crate::support::*;

/// The text between `start` and the next `end` in `body`, HTML entities decoded.
fn between(body: &str, start: &str, end: &str) -> Option<String> {
    let i = body.find(start)? + start.len();
    let j = body[i..].find(end)? + i;
    Some(html_unescape(&body[i..j]))
}

fn now() -> i64 {
    latchkey::clock::now()
}

/// The secret shown on the enrolment page.
fn shown_secret(page: &Resp) -> String {
    between(&page.body, "<code id=\"totp-secret\">", "</code>")
        .expect("the key is shown for manual entry")
        .to_string()
}

/// Recovery codes shown once after enrolment or renewal.
fn shown_codes(page: &Resp) -> Vec<String> {
    let list = between(&page.body, "id=\"recovery-codes\">", "</ul>").expect("codes shown");
    list.split("<code>")
        .skip(1)
        .filter_map(|c| c.split_once("</code>").map(|(c, _)| c.to_string()))
        .collect()
}

/// The kinds of the audit events (of one user's, when given), newest first, from
/// `latchkey audit --json`.
fn audit_kinds(server: &Server, user: Option<&str>) -> Vec<String> {
    let audit = server.cli(&["audit", "--json"], None).json();
    audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| user.is_none_or(|u| e["user"] == u))
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

/// Signs `user` in with the password (no interaction) and returns the response.
async fn password_step(b: &mut Browser, user: &str, password: &str) -> Resp {
    b.login("/login", user, password).await
}

/// Posts a code on the second-factor page.
pub(crate) async fn code_step(b: &mut Browser, code: &str, trust: bool) -> Resp {
    let page = b.get("/login/2fa").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.input("csrf").unwrap();
    let mut form = vec![("csrf", csrf.as_str()), ("code", code)];
    if trust {
        form.push(("trust", "yes"));
    }
    b.post_form("/login/2fa", &form).await
}

/// Enrols TOTP from a signed-in browser; returns the secret and the recovery codes.
async fn enrol(b: &mut Browser) -> (String, Vec<String>) {
    enrol_with(b, PASSWORD).await
}

/// The same for a user whose password is `password`.
pub(crate) async fn enrol_with(b: &mut Browser, password: &str) -> (String, Vec<String>) {
    let page = b.get("/account/2fa").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<svg"), "QR code inline");
    let secret = shown_secret(&page);
    let code = latchkey::keys::totp::code_at(&secret, now()).unwrap();
    let csrf = page.input("csrf").unwrap();
    let done = b
        .post_form(
            "/account/2fa",
            &[("csrf", &csrf), ("code", &code), ("current", password)],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let codes = shown_codes(&done);
    assert_eq!(codes.len(), 10);
    (secret, codes)
}

/// Posts a form found on `page_url` whose action is `action`, with extra fields.
pub(crate) async fn post_on(
    b: &mut Browser,
    page_url: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> Resp {
    let page = b.get(page_url).await;
    assert_eq!(page.status, 200, "{page_url}: {}", page.body);
    let csrf = page.input("csrf").unwrap();
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    b.post_form(action, &form).await
}

#[tokio::test]
async fn totp_codes_and_recovery_codes_work_once() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let mut a = server.browser();
    let r = password_step(&mut a, "alice", PASSWORD).await;
    assert_eq!(r.location(), "/account");
    let (secret, codes) = enrol(&mut a).await;
    let shown = server
        .cli(&["user", "show", "alice", "--json"], None)
        .json();
    assert_eq!(shown["two_factor"], true);

    // The password alone no longer signs in: the second-factor page comes next.
    let mut b = server.browser();
    let r = password_step(&mut b, "alice", PASSWORD).await;
    assert_eq!(r.location(), "/login/2fa");
    assert!(b.get("/account").await.location().starts_with("/login"));
    // The code used for enrolment was spent; the next one works, once.
    let used = latchkey::keys::totp::code_at(&secret, now()).unwrap();
    let r = code_step(&mut b, &used, false).await;
    assert_eq!(r.status, 401, "a code is accepted once");
    assert!(r.body.contains("not valid"));
    let next = latchkey::keys::totp::code_at(&secret, now() + 30).unwrap();
    let r = code_step(&mut b, &next, false).await;
    assert_eq!(r.location(), "/account", "{}", r.body);
    assert_eq!(b.get("/account").await.status, 200);
    let mut c = server.browser();
    password_step(&mut c, "alice", PASSWORD).await;
    assert_eq!(code_step(&mut c, &next, false).await.status, 401);

    // A recovery code works once, in any spelling.
    let mut d = server.browser();
    password_step(&mut d, "alice", PASSWORD).await;
    let r = code_step(&mut d, &codes[3].to_uppercase(), false).await;
    assert_eq!(r.location(), "/account", "{}", r.body);
    let mut e = server.browser();
    password_step(&mut e, "alice", PASSWORD).await;
    assert_eq!(code_step(&mut e, &codes[3], false).await.status, 401);
    let account = d.get("/account").await;
    assert!(account.body.contains("<span id=\"recovery-left\">9</span>"));

    // The audit log has the second factor's successes and failures.
    let kinds = audit_kinds(&server, None);
    for k in [
        "mfa.enrolled",
        "mfa.success",
        "mfa.failure",
        "login.success",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
    }
}

#[tokio::test]
async fn two_factor_clients_step_up_and_get_acr_2() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let (id, secret) = server.add_client(&["--policy", "two_factor"]);
    let auth = basic(&id, &secret);

    // Without a second factor: a page that leads to enrolment, then to the application.
    let mut a = server.browser();
    let (verifier, challenge) = pkce();
    let url = authorize_url(
        &id,
        &format!("&code_challenge={challenge}&code_challenge_method=S256"),
    );
    let r = a.get(&url).await;
    let r = a.login(&r.location(), "alice", PASSWORD).await;
    let r = a.get(&r.location()).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("Two-factor sign-in needed"));
    let link = between(&r.body, "href=\"&#x2f;account&#x2f;2fa?interaction=", "\"")
        .unwrap()
        .to_string();
    let page = a.get(&format!("/account/2fa?interaction={link}")).await;
    let secret_b32 = shown_secret(&page);
    let code = latchkey::keys::totp::code_at(&secret_b32, now()).unwrap();
    let csrf = page.input("csrf").unwrap();
    let interaction = page.input("interaction").unwrap();
    let done = a
        .post_form(
            "/account/2fa",
            &[
                ("csrf", &csrf),
                ("code", &code),
                ("interaction", &interaction),
                ("current", PASSWORD),
            ],
        )
        .await;
    assert_eq!(done.status, 200);
    let resume = between(&done.body, "<a class=\"button\" href=\"", "\"")
        .unwrap()
        .replace("&amp;", "&");
    assert!(resume.contains("/authorize/resume"), "{resume}");
    let r = a.get(&resume).await;
    let callback = a.drive_to_callback(r, "alice").await;
    let tokens = a.redeem(&callback, Some(&verifier), &auth).await.json();
    let jwks = a.get("/api/v1/oauth/discovery/keys").await.json();
    let (_, claims) = verify_jwt(tokens["id_token"].as_str().unwrap(), &jwks);
    assert_eq!(claims["acr"], "2");
    let amr: Vec<&str> = claims["amr"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(amr.contains(&"otp") && amr.contains(&"mfa"), "{amr:?}");

    // A one-factor session of an enrolled user is stepped up at the second-factor page.
    let mut b = server.browser();
    let mut c = server.browser();
    server.add_user("bob", &[]);
    password_step(&mut b, "bob", PASSWORD).await;
    password_step(&mut c, "bob", PASSWORD).await;
    let (bob_secret, _) = enrol(&mut c).await;
    let (verifier, challenge) = pkce();
    let url = authorize_url(
        &id,
        &format!("&code_challenge={challenge}&code_challenge_method=S256"),
    );
    let r = b.get(&url).await;
    assert_eq!(r.location(), "/login/2fa", "{}", r.body);
    let next = latchkey::keys::totp::code_at(&bob_secret, now() + 30).unwrap();
    let r = code_step(&mut b, &next, false).await;
    assert!(r.location().contains("/authorize/resume"));
    let r = b.get(&r.location()).await;
    let callback = b.drive_to_callback(r, "bob").await;
    let tokens = b.redeem(&callback, Some(&verifier), &auth).await.json();
    let (_, claims) = verify_jwt(tokens["id_token"].as_str().unwrap(), &jwks);
    assert_eq!(claims["acr"], "2");

    // prompt=none cannot step up.
    let mut d = server.browser();
    password_step(&mut d, "alice", PASSWORD).await;
    let r = d.get(&authorize_url(&id, "&prompt=none")).await;
    // alice is enrolled now, so the password led to the second-factor page, not a session.
    assert!(
        r.location().contains("error=login_required"),
        "{}",
        r.location()
    );
}

async fn logout(b: &mut Browser) {
    let r = post_on(b, "/logout", "/logout", &[]).await;
    assert!(r.status < 400, "{}", r.body);
}

#[tokio::test]
async fn trusted_browsers_skip_the_second_factor_until_revoked() {
    let server = Server::new("[login]\ntrusted_device_days = 30\n")
        .start()
        .await;
    server.add_user("alice", &[]);
    let mut a = server.browser();
    password_step(&mut a, "alice", PASSWORD).await;
    let (secret, _) = enrol(&mut a).await;
    logout(&mut a).await;
    let r = password_step(&mut a, "alice", PASSWORD).await;
    assert_eq!(r.location(), "/login/2fa");
    let page = a.get("/login/2fa").await;
    assert!(page.body.contains("Trust this browser for 30 days"));
    let code = latchkey::keys::totp::code_at(&secret, now() + 30).unwrap();
    let r = code_step(&mut a, &code, true).await;
    assert_eq!(r.location(), "/account");
    let device = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.contains("latchkey_device="))
        .expect("device cookie");
    assert!(device.contains("HttpOnly") && device.contains("Max-Age=2592000"));

    // Signed out and in again: the password is enough on this browser.
    logout(&mut a).await;
    let r = password_step(&mut a, "alice", PASSWORD).await;
    assert_eq!(r.location(), "/account");
    // Not on another browser, and not with a forged cookie.
    let mut other = server.browser();
    let forged = a
        .cookies
        .iter()
        .find(|(k, _)| k.ends_with("device"))
        .unwrap();
    other
        .cookies
        .insert(forged.0.clone(), forged.1.replace('.', "x."));
    let r = password_step(&mut other, "alice", PASSWORD).await;
    assert_eq!(r.location(), "/login/2fa");

    // An application asking for a fresh sign-in gets the second factor anyway.
    let (id, _) = server.add_client(&[]);
    let r = a.get(&authorize_url(&id, "&prompt=login")).await;
    let r = a.login(&r.location(), "alice", PASSWORD).await;
    assert_eq!(
        r.location(),
        "/login/2fa",
        "prompt=login ignores the trusted browser"
    );

    // Revoked on the account page: the second factor is asked again.
    let account = a.get("/account").await;
    let device_id = between(&account.body, "name=\"id\" value=\"", "\"")
        .unwrap()
        .to_string();
    let r = post_on(
        &mut a,
        "/account",
        "/account/devices/revoke",
        &[("id", &device_id)],
    )
    .await;
    assert_eq!(r.location(), "/account?done=device");
    logout(&mut a).await;
    let r = password_step(&mut a, "alice", PASSWORD).await;
    assert_eq!(r.location(), "/login/2fa");
}

#[tokio::test]
async fn temporary_passwords_and_reset_links_make_the_user_choose() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let out = server.cli(
        &["user", "passwd", "alice", "--temporary", "--password-stdin"],
        Some("temporary password 123\n"),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut a = server.browser();
    let r = password_step(&mut a, "alice", "temporary password 123").await;
    assert_eq!(r.location(), "/login/password");
    assert!(
        a.get("/account").await.location().starts_with("/login"),
        "no session yet"
    );
    let page = a.get("/login/password").await;
    let csrf = page.input("csrf").unwrap();
    let r = a
        .post_form(
            "/login/password",
            &[
                ("csrf", &csrf),
                ("password", "short"),
                ("password2", "short"),
            ],
        )
        .await;
    assert_eq!(r.status, 400);
    let r = a
        .post_form(
            "/login/password",
            &[
                ("csrf", &csrf),
                ("password", "a brand new passphrase"),
                ("password2", "a brand new passphrase"),
            ],
        )
        .await;
    assert_eq!(r.location(), "/account");
    let shown = server
        .cli(&["user", "show", "alice", "--json"], None)
        .json();
    assert_eq!(shown["must_change_password"], false);
    let mut b = server.browser();
    assert_eq!(
        password_step(&mut b, "alice", "a brand new passphrase")
            .await
            .location(),
        "/account"
    );
}

/// A passkeys-only user (SPEC §10) who has no passkey with them: the password is followed
/// by a recovery code (the way back), never by the authenticator app's code alone.
#[tokio::test]
async fn a_passkeys_only_password_takes_a_recovery_code_not_an_app_code() {
    let server = Server::new("").start().await;
    server.add_user("pia", &[]);
    let mut b = server.browser();
    password_step(&mut b, "pia", PASSWORD).await;
    let (secret, codes) = enrol(&mut b).await;
    let set = server.cli(&["user", "require-passkeys", "pia"], None);
    assert_eq!(set.code, 0, "{}", set.stderr);
    // What the password opened before ends.
    assert!(b.get("/account").await.location().starts_with("/login"));

    let mut p = server.browser();
    let r = password_step(&mut p, "pia", PASSWORD).await;
    assert_eq!(r.location(), "/login/2fa", "{}", r.body);
    let page = p.get("/login/2fa").await;
    assert!(
        page.body.contains("one of your recovery codes"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("authenticator app"), "{}", page.body);
    let code = latchkey::keys::totp::code_at(&secret, now()).unwrap();
    let r = code_step(&mut p, &code, false).await;
    assert_eq!(r.status, 401, "an app code does not count: {}", r.body);
    assert!(r.body.contains("does not count"), "{}", r.body);
    let r = code_step(&mut p, &codes[0], false).await;
    assert_eq!(r.location(), "/account", "{}", r.body);
    assert_eq!(p.get("/account").await.status, 200);
    // A password and a recovery code do not buy new codes.
    let renewed = post_on(
        &mut p,
        "/account",
        "/account/recovery",
        &[("current", PASSWORD)],
    )
    .await;
    assert_eq!(renewed.status, 403, "{}", renewed.body);
    // An application that requires a passkey, under an IP address where passkeys cannot
    // work: a page that says so, not a loop of redirects.
    let (passkey_app, _) = server.add_client(&["--policy", "passkey", "--skip-consent"]);
    let r = p.get(&authorize_url(&passkey_app, "")).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("host name"), "{}", r.body);
    // A recovery code works once.
    let mut again = server.browser();
    password_step(&mut again, "pia", PASSWORD).await;
    let r = code_step(&mut again, &codes[0], false).await;
    assert_eq!(r.status, 401, "{}", r.body);
}

/// Posts a sensitive admin action, confirming the password first when the page asks.
async fn sensitive(b: &mut Browser, page_url: &str, action: &str, fields: &[(&str, &str)]) -> Resp {
    let r = post_on(b, page_url, action, fields).await;
    if !r.body.contains("Confirm it is you") {
        return r;
    }
    let csrf = r.input("csrf").unwrap();
    let back = r.input("back").unwrap();
    let ok = b
        .post_form(
            "/admin/reauth",
            &[("csrf", &csrf), ("back", &back), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    post_on(b, page_url, action, fields).await
}

/// An administrator signed in on a browser.
pub(crate) async fn admin(server: &Server) -> Browser {
    server.add_user("root", &["--group", "admin"]);
    let mut b = server.browser();
    let r = password_step(&mut b, "root", PASSWORD).await;
    assert_eq!(r.location(), "/account");
    b
}

#[tokio::test]
async fn account_page_changes_profile_password_and_application_access() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let (id, secret) = server.add_client(&[
        "--scope",
        "openid",
        "--scope",
        "profile",
        "--scope",
        "email",
        "--scope",
        "offline_access",
    ]);
    let auth = basic(&id, &secret);
    let mut a = server.browser();
    let tokens = a.sign_in_for_tokens(&id, &auth, "alice").await.json();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();

    // Profile.
    let r = post_on(
        &mut a,
        "/account",
        "/account/profile",
        &[
            ("email", "alice@new.example"),
            ("given_name", "Alice"),
            ("family_name", "Liddell"),
            ("phone", "+44 20 7946 0000"),
            ("locality", "Oxford"),
            ("country", "UK"),
        ],
    )
    .await;
    assert_eq!(r.location(), "/account?done=profile");
    let shown = server
        .cli(&["user", "show", "alice", "--json"], None)
        .json();
    assert_eq!(shown["email"], "alice@new.example");
    assert_eq!(shown["address"]["locality"], "Oxford");
    let bad = post_on(
        &mut a,
        "/account",
        "/account/profile",
        &[("email", "not-an-address")],
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("email"));

    // The application is listed; revoking it ends its refresh token.
    let page = a.get("/account").await;
    assert!(page.body.contains("Test App"), "{}", page.body);
    let r = post_on(
        &mut a,
        "/account",
        "/account/apps/revoke",
        &[("client_id", &id)],
    )
    .await;
    assert_eq!(r.location(), "/account?done=app");
    let refused = a.refresh(&refresh, &auth).await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["error"], "invalid_grant");
    assert!(!a.get("/account").await.body.contains("Test App"));

    // Password change: other sessions end, tokens are revoked, this browser stays.
    let tokens = a.sign_in_for_tokens(&id, &auth, "alice").await.json();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let mut other = server.browser();
    password_step(&mut other, "alice", PASSWORD).await;
    assert_eq!(other.get("/account").await.status, 200);
    let wrong = post_on(
        &mut a,
        "/account",
        "/account/password",
        &[
            ("current", "not the password"),
            ("password", "another fine passphrase"),
            ("password2", "another fine passphrase"),
        ],
    )
    .await;
    assert_eq!(wrong.status, 401);
    let r = post_on(
        &mut a,
        "/account",
        "/account/password",
        &[
            ("current", PASSWORD),
            ("password", "another fine passphrase"),
            ("password2", "another fine passphrase"),
        ],
    )
    .await;
    assert_eq!(r.location(), "/account?done=password", "{}", r.body);
    assert_eq!(
        a.get("/account").await.status,
        200,
        "this browser stays signed in"
    );
    assert!(other.get("/account").await.location().starts_with("/login"));
    assert_eq!(a.refresh(&refresh, &auth).await.status, 400);

    // Sessions: one signed out from the list.
    let mut third = server.browser();
    password_step(&mut third, "alice", "another fine passphrase").await;
    let page = a.get("/account").await;
    let sid = between(&page.body, "name=\"sid\" value=\"", "\"")
        .unwrap()
        .to_string();
    let r = post_on(
        &mut a,
        "/account",
        "/account/sessions/end",
        &[("sid", &sid)],
    )
    .await;
    assert_eq!(r.location(), "/account?done=session");
    assert!(third.get("/account").await.location().starts_with("/login"));
    assert_eq!(a.get("/account").await.status, 200);

    // Without a CSRF token nothing changes.
    let r = a
        .post_form("/account/profile", &[("email", "x@evil.example")])
        .await;
    assert_eq!(r.status, 400);
    let shown = server
        .cli(&["user", "show", "alice", "--json"], None)
        .json();
    assert_eq!(shown["email"], "alice@new.example");
    // Signed out: the account page asks for a sign-in and comes back.
    let mut anon = server.browser();
    let r = anon.get("/account").await;
    assert_eq!(r.location(), "/login?next=%2Faccount");
}

#[tokio::test]
async fn admin_pages_manage_applications() {
    let server = Server::new(
        "[[clients]]\nclient_id = \"declared-app\"\nname = \"Declared\"\nredirect_uris = [\"https://d.example/cb\"]\nsecret_hash = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\n",
    )
    .start()
    .await;
    server.add_user("alice", &[]);
    let mut user = server.browser();
    password_step(&mut user, "alice", PASSWORD).await;
    assert_eq!(user.get("/admin/clients").await.status, 403);
    assert_eq!(
        post_on(
            &mut user,
            "/account",
            "/admin/clients/new",
            &[("name", "X")]
        )
        .await
        .status,
        403
    );

    let mut b = admin(&server).await;
    let r = b.get("/admin").await;
    assert_eq!(r.location(), "/admin/clients");
    let list = b.get("/admin/clients").await;
    assert!(list.body.contains("Declared") && list.body.contains("configuration file"));
    let declared = b.get("/admin/clients/declared-app").await;
    assert!(declared.body.contains("read-only") && declared.body.contains(" disabled"));

    // Add, with two redirect URLs and a bad one first.
    let bad = post_on(
        &mut b,
        "/admin/clients/new",
        "/admin/clients/new",
        &[
            ("name", "Grafana"),
            ("redirect_uri", "not a url"),
            ("scope", "openid"),
        ],
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("redirect") && bad.body.contains("value=\"Grafana\""));
    let r = post_on(
        &mut b,
        "/admin/clients/new",
        "/admin/clients/new",
        &[
            ("name", "Grafana"),
            (
                "redirect_uri",
                "https://grafana.example/login/generic_oauth",
            ),
            (
                "redirect_uri",
                "https://grafana2.example/login/generic_oauth",
            ),
            ("redirect_uri", ""),
            ("scope", "openid"),
            ("scope", "email"),
            ("scope", "groups"),
            ("type", "confidential"),
            ("grant_type", "authorization_code"),
            ("grant_type", "refresh_token"),
            ("policy", "two_factor"),
            ("skip_consent", "yes"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = between(&r.body, "<code id=\"once-1\">", "</code>")
        .unwrap()
        .to_string();
    let secret = between(&r.body, "<code id=\"once-2\">", "</code>")
        .unwrap()
        .to_string();
    assert!(r.body.contains("data-copy=\"once-2\""), "copy buttons");
    let shown = server.cli(&["client", "show", &id, "--json"], None).json();
    assert_eq!(shown["name"], "Grafana");
    assert_eq!(shown["redirect_uris"].as_array().unwrap().len(), 2);
    assert_eq!(shown["policy"], "two_factor");
    assert_eq!(shown["skip_consent"], true);
    // The secret works at the token endpoint (client_credentials is not allowed: the
    // error is about the grant, not the client).
    let r = b
        .post_form_with(
            "/api/v1/oauth/token",
            &[("grant_type", "client_credentials")],
            &[("authorization", &basic(&id, &secret))],
        )
        .await;
    assert_eq!(r.json()["error"], "unauthorized_client");

    // Edit keeps what the form does not show; rotate shows a new secret.
    let r = post_on(
        &mut b,
        &format!("/admin/clients/{id}"),
        &format!("/admin/clients/{id}"),
        &[
            ("name", "Grafana (office)"),
            (
                "redirect_uri",
                "https://grafana.example/login/generic_oauth",
            ),
            ("scope", "openid"),
            ("grant_type", "authorization_code"),
            ("grant_type", "refresh_token"),
            ("policy", "passkey"),
        ],
    )
    .await;
    assert_eq!(r.location(), format!("/admin/clients/{id}"));
    let shown = server.cli(&["client", "show", &id, "--json"], None).json();
    assert_eq!(shown["name"], "Grafana (office)");
    assert_eq!(shown["policy"], "passkey");
    let form = b.get(&format!("/admin/clients/{id}")).await;
    assert!(
        form.body.contains("value=\"passkey\" checked"),
        "the form shows the policy"
    );
    assert!(
        b.get("/admin/clients")
            .await
            .body
            .contains("<td>passkey</td>")
    );
    assert_eq!(shown["redirect_uris"].as_array().unwrap().len(), 1);
    assert_eq!(shown["skip_consent"], false);
    let r = post_on(
        &mut b,
        &format!("/admin/clients/{id}"),
        &format!("/admin/clients/{id}/rotate"),
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    let new_secret = between(&r.body, "<code id=\"once-2\">", "</code>")
        .unwrap()
        .to_string();
    assert_ne!(new_secret, secret);

    // Declared clients cannot be changed here.
    let r = post_on(
        &mut b,
        "/admin/clients/declared-app",
        "/admin/clients/declared-app",
        &[("name", "Mine")],
    )
    .await;
    assert_eq!(r.status, 400);

    // Delete, after confirmation.
    let confirm = b.get(&format!("/admin/clients/{id}/delete")).await;
    assert!(confirm.body.contains("Delete this application?"));
    let r = post_on(
        &mut b,
        &format!("/admin/clients/{id}/delete"),
        &format!("/admin/clients/{id}/delete"),
        &[],
    )
    .await;
    assert_eq!(r.location(), "/admin/clients");
    assert_eq!(server.cli(&["client", "show", &id], None).code, 2);

    // Every change is in the audit log with who made it.
    let by_root: Vec<String> = audit_kinds(&server, Some("root"))
        .into_iter()
        .filter(|k| k.starts_with("admin.client"))
        .collect();
    for k in [
        "admin.client.add",
        "admin.client.replace",
        "admin.client.rotate_secret",
        "admin.client.delete",
    ] {
        assert!(by_root.iter().any(|x| x == k), "{k} in {by_root:?}");
    }
}

#[tokio::test]
async fn admin_pages_manage_users_groups_sessions_and_keys() {
    let server = Server::new("").start().await;
    let mut b = admin(&server).await;

    // Add a user with a new group; search finds them.
    let r = post_on(
        &mut b,
        "/admin/users/new",
        "/admin/users/new",
        &[
            ("username", "carol"),
            ("email", "carol@example.com"),
            ("given_name", "Carol"),
            ("new_group", "staff"),
            ("password", PASSWORD),
        ],
    )
    .await;
    let user_page = r.location();
    assert!(user_page.starts_with("/admin/users/"), "{}", r.body);
    let found = b.get("/admin/users?q=CAROL").await;
    assert!(found.body.contains("carol@example.com"));
    assert!(!b.get("/admin/users?q=nobody").await.body.contains("carol@"));
    let shown = server
        .cli(&["user", "show", "carol", "--json"], None)
        .json();
    assert_eq!(shown["groups"][0], "staff");
    let groups = b.get("/admin/groups").await;
    assert!(groups.body.contains("staff"));

    // A new user with a temporary password must choose their own at the first sign-in.
    let r = post_on(
        &mut b,
        "/admin/users/new",
        "/admin/users/new",
        &[
            ("username", "dave"),
            ("email", "dave@example.com"),
            ("password", "temporary password 123"),
            ("temporary", "yes"),
        ],
    )
    .await;
    assert!(r.location().starts_with("/admin/users/"), "{}", r.body);
    let mut dave = server.browser();
    assert_eq!(
        password_step(&mut dave, "dave", "temporary password 123")
            .await
            .location(),
        "/login/password"
    );

    // Sensitive actions (within the password's window here; `clocked` moves past it).
    let r = sensitive(&mut b, &user_page, &format!("{user_page}/disable"), &[]).await;
    assert_eq!(r.location(), user_page);
    assert_eq!(
        server
            .cli(&["user", "show", "carol", "--json"], None)
            .json()["disabled"],
        true
    );
    sensitive(&mut b, &user_page, &format!("{user_page}/enable"), &[]).await;

    // A temporary password, shown once, must be replaced at the next sign-in.
    let r = sensitive(
        &mut b,
        &user_page,
        &format!("{user_page}/temporary-password"),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let temporary = between(&r.body, "<code id=\"once-1\">", "</code>")
        .unwrap()
        .to_string();
    let mut carol = server.browser();
    assert_eq!(
        password_step(&mut carol, "carol", &temporary)
            .await
            .location(),
        "/login/password"
    );

    // A reset link works once.
    let r = sensitive(&mut b, &user_page, &format!("{user_page}/reset-link"), &[]).await;
    let link = between(&r.body, "<code id=\"once-1\">", "</code>")
        .unwrap()
        .replace("&amp;", "&");
    let path = link.strip_prefix(&server.issuer).unwrap().to_string();
    let mut reset = server.browser();
    // Wrong links from this address are slowed (SPEC §8); the right one is never refused.
    let mut wrong = vec![];
    for _ in 0..40 {
        wrong.push(reset.get("/reset?token=nobody.wrong").await.status);
    }
    assert!(wrong[..4].iter().all(|s| *s == 404), "{wrong:?}");
    assert!(wrong.contains(&429), "{wrong:?}");
    let page = reset.get(&path).await;
    assert_eq!(page.status, 200);
    let csrf = page.input("csrf").unwrap();
    let token = page.input("token").unwrap();
    let r = reset
        .post_form(
            "/reset",
            &[
                ("csrf", &csrf),
                ("token", &token),
                ("password", "my very own passphrase"),
                ("password2", "my very own passphrase"),
            ],
        )
        .await;
    // The new password was just given: the person is signed in (no passkey offer for an
    // issuer reached by IP address).
    assert_eq!(r.location(), "/account", "{}", r.body);
    assert_eq!(reset.get("/account").await.status, 200);
    logout(&mut reset).await;
    // Asked from another address (this one is slowed after its wrong links above).
    let mut elsewhere = server.browser_from([127, 0, 0, 2].into());
    assert_eq!(elsewhere.get(&path).await.status, 404, "used once");
    let mut carol = server.browser();
    assert_eq!(
        password_step(&mut carol, "carol", "my very own passphrase")
            .await
            .location(),
        "/account"
    );

    // Second factor reset.
    let (_, _) = enrol_with(&mut carol, "my very own passphrase").await;
    assert!(b.get(&user_page).await.body.contains("Reset second factor"));
    sensitive(&mut b, &user_page, &format!("{user_page}/reset-2fa"), &[]).await;
    assert_eq!(
        server
            .cli(&["user", "show", "carol", "--json"], None)
            .json()["two_factor"],
        false
    );

    // Sessions: the administrator ends carol's.
    let sessions = b.get("/admin/sessions").await;
    assert!(sessions.body.contains("carol"));
    let carol_row = sessions
        .body
        .split("<tr>")
        .find(|r| r.contains("<td>carol</td>"))
        .unwrap();
    let sid = between(carol_row, "name=\"sid\" value=\"", "\"")
        .unwrap()
        .to_string();
    let r = post_on(
        &mut b,
        "/admin/sessions",
        "/admin/sessions/end",
        &[("sid", &sid)],
    )
    .await;
    assert_eq!(r.location(), "/admin/sessions");
    assert!(carol.get("/account").await.location().starts_with("/login"));

    // Groups: add and delete.
    let r = post_on(
        &mut b,
        "/admin/groups",
        "/admin/groups",
        &[("name", "finance"), ("description", "Money")],
    )
    .await;
    assert_eq!(r.location(), "/admin/groups");
    assert!(b.get("/admin/groups").await.body.contains("Money"));
    let r = sensitive(
        &mut b,
        "/admin/groups/staff/delete",
        "/admin/groups/staff/delete",
        &[],
    )
    .await;
    assert_eq!(r.location(), "/admin/groups");
    assert_eq!(
        server
            .cli(&["user", "show", "carol", "--json"], None)
            .json()["groups"],
        serde_json::json!([])
    );
    let bad = post_on(
        &mut b,
        "/admin/groups",
        "/admin/groups",
        &[("name", "no spaces allowed")],
    )
    .await;
    assert_eq!(bad.status, 400);

    // Keys: a rotation publishes new keys at once.
    let before = b.get("/api/v1/oauth/discovery/keys").await.json()["keys"]
        .as_array()
        .unwrap()
        .len();
    let r = sensitive(&mut b, "/admin/keys", "/admin/keys/rotate", &[]).await;
    assert_eq!(r.location(), "/admin/keys");
    let after = b.get("/api/v1/oauth/discovery/keys").await.json()["keys"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(after, before + 2);
    assert!(b.get("/admin/keys").await.body.contains("retired"));

    // Audit log with filters.
    let all = b.get("/admin/audit").await;
    assert!(all.body.contains("admin.user.disable"));
    let only = b.get("/admin/audit?kind=login.success&user=carol").await;
    assert!(only.body.contains("login.success"));
    assert!(!only.body.contains("admin.user.disable"));
    let none = b.get("/admin/audit?from=2001-01-01&to=2001-01-02").await;
    assert!(none.body.contains("No event matches."));

    // Delete, after confirmation.
    let r = sensitive(
        &mut b,
        &format!("{user_page}/delete"),
        &format!("{user_page}/delete"),
        &[],
    )
    .await;
    assert_eq!(r.location(), "/admin/users");
    assert_eq!(server.cli(&["user", "show", "carol"], None).code, 2);
}

#[tokio::test]
async fn the_password_grant_cannot_skip_a_second_factor_or_a_new_password() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    server.add_user("bob", &[]);
    let (id, secret) = server.add_client(&["--grant-type", "password"]);
    let mut a = server.browser();
    let grant = |user: &'static str, pw: &'static str| {
        vec![
            ("grant_type", "password"),
            ("username", user),
            ("password", pw),
            ("scope", "openid"),
        ]
    };
    let auth = basic(&id, &secret);
    let ok = a
        .post_form_with(
            "/api/v1/oauth/token",
            &grant("alice", PASSWORD),
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    password_step(&mut a, "alice", PASSWORD).await;
    enrol(&mut a).await;
    let refused = a
        .post_form_with(
            "/api/v1/oauth/token",
            &grant("alice", PASSWORD),
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["error"], "invalid_grant");
    let out = server.cli(
        &["user", "passwd", "bob", "--temporary", "--password-stdin"],
        Some("temporary password 123\n"),
    );
    assert_eq!(out.code, 0);
    let refused = a
        .post_form_with(
            "/api/v1/oauth/token",
            &grant("bob", "temporary password 123"),
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(refused.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn the_configured_logo_is_served_and_shown_on_the_sign_in_page() {
    let dir = TempDir::new();
    let logo = dir.0.join("logo.svg");
    let svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"/>";
    std::fs::write(&logo, svg).unwrap();
    let server = Server::new(&format!("logo = \"{}\"\n", logo.display()))
        .start()
        .await;
    let mut b = server.browser();
    let page = b.get("/login").await;
    assert!(
        page.body
            .contains("<img class=\"logo\" src=\"/assets/logo\"")
    );
    let served = b.get("/assets/logo").await;
    assert_eq!(served.status, 200);
    assert_eq!(served.header("content-type"), Some("image/svg+xml"));
    assert_eq!(served.body, svg);
    assert!(
        served
            .header("content-security-policy")
            .unwrap()
            .contains("default-src 'none'")
    );
    // Without a logo there is none to fetch.
    let plain = Server::new("").start().await;
    assert_eq!(plain.browser().get("/assets/logo").await.status, 404);
    let bad = Server::new("logo = \"/etc/passwd\"\n");
    let out = bad.cli(&["check-config"], None);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("logo"));
}

#[tokio::test]
async fn a_two_factor_device_client_is_approved_only_with_a_second_factor() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let out = server.cli(
        &[
            "client",
            "add",
            "--name",
            "Lobby TV",
            "--public",
            "--policy",
            "two_factor",
            "--grant-type",
            "urn:ietf:params:oauth:grant-type:device_code",
            "--json",
        ],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = out.json()["client_id"].as_str().unwrap().to_string();
    let mut tv = server.browser();
    let d = tv
        .post_form(
            "/api/v1/oauth/device_authorization",
            &[("client_id", &id), ("scope", "openid")],
        )
        .await
        .json();
    let user_code = d["user_code"].as_str().unwrap().to_string();
    let mut phone = server.browser();
    password_step(&mut phone, "alice", PASSWORD).await;
    let approve = |page: &Resp| {
        let csrf = page.input("csrf").unwrap();
        vec![
            ("csrf".to_string(), csrf),
            ("user_code".to_string(), user_code.clone()),
            ("decision".to_string(), "allow".to_string()),
        ]
    };
    let device_page = format!("/device?user_code={}", enc(&user_code));
    let page = phone.get(&device_page).await;
    let form = approve(&page);
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = phone.post_form("/device", &pairs).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("Two-factor sign-in needed"));

    // Enrolled (the enrolment code makes this session two-factor): approved.
    enrol(&mut phone).await;
    let page = phone.get(&device_page).await;
    let form = approve(&page);
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = phone.post_form("/device", &pairs).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn wrong_codes_keep_counting_across_correct_passwords() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let mut a = server.browser();
    password_step(&mut a, "alice", PASSWORD).await;
    enrol(&mut a).await;
    // Each round: a correct password, then a wrong code. The password clears the
    // username's counter, not the second factor's: after four wrong codes (three free)
    // the next one must wait, however many passwords came.
    let mut statuses = vec![];
    for _ in 0..5 {
        let mut b = server.browser();
        assert_eq!(
            password_step(&mut b, "alice", PASSWORD).await.location(),
            "/login/2fa"
        );
        statuses.push(code_step(&mut b, "000000", false).await.status);
    }
    assert_eq!(statuses, vec![401, 401, 401, 401, 429]);
}

#[tokio::test]
async fn enrolment_secrets_belong_to_their_session_and_renewal_needs_the_password() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let mut a = server.browser();
    password_step(&mut a, "alice", PASSWORD).await;
    let first = shown_secret(&a.get("/account/2fa").await);
    let page = a.get("/account/2fa").await;
    assert_eq!(first, shown_secret(&page), "a reload shows the same secret");
    // Another session (say, a stolen cookie) gets its own secret; it never becomes the
    // one this session confirms, and this session's stays valid.
    let mut other = server.browser();
    password_step(&mut other, "alice", PASSWORD).await;
    let planted = shown_secret(&other.get("/account/2fa").await);
    assert_ne!(planted, first);
    let csrf = page.input("csrf").unwrap();
    let foreign = latchkey::keys::totp::code_at(&planted, now()).unwrap();
    let r = a
        .post_form(
            "/account/2fa",
            &[("csrf", &csrf), ("code", &foreign), ("current", PASSWORD)],
        )
        .await;
    assert_eq!(r.status, 400);
    // Without the password nothing is enrolled, even with the right code.
    let right = latchkey::keys::totp::code_at(&first, now()).unwrap();
    let r = a
        .post_form("/account/2fa", &[("csrf", &csrf), ("code", &right)])
        .await;
    assert_eq!(r.status, 401);
    let (_, codes) = enrol(&mut a).await;
    let r = post_on(&mut a, "/account", "/account/recovery", &[]).await;
    assert_eq!(r.status, 401, "new recovery codes need the password");
    let r = post_on(
        &mut a,
        "/account",
        "/account/recovery",
        &[("current", PASSWORD)],
    )
    .await;
    assert_eq!(r.status, 200);
    let renewed = shown_codes(&r);
    assert!(renewed.iter().all(|c| !codes.contains(c)));
}

#[tokio::test]
async fn a_step_up_keeps_the_session_and_its_applications() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let (one, one_secret) = server.add_client(&[]);
    let (two, _) = server.add_client(&["--policy", "two_factor"]);
    let auth = basic(&one, &one_secret);
    let mut a = server.browser();
    // A one-factor sign-in at the first application: a session-bound refresh token.
    let tokens = a.sign_in_for_tokens(&one, &auth, "alice").await.json();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let sid = {
        let jwks = a.get("/api/v1/oauth/discovery/keys").await.json();
        verify_jwt(tokens["id_token"].as_str().unwrap(), &jwks).1["sid"].clone()
    };
    // Enrolled elsewhere; here a step-up for the two-factor application.
    let mut other = server.browser();
    password_step(&mut other, "alice", PASSWORD).await;
    let (secret, _) = enrol(&mut other).await;
    let old_cookie = a
        .cookies
        .iter()
        .find(|(k, _)| k.ends_with("session"))
        .unwrap()
        .1
        .clone();
    let r = a.get(&authorize_url(&two, "")).await;
    assert_eq!(r.location(), "/login/2fa");
    let code = latchkey::keys::totp::code_at(&secret, now() + 30).unwrap();
    let r = code_step(&mut a, &code, false).await;
    assert!(
        r.location().contains("/authorize/resume"),
        "{}",
        r.location()
    );
    let new_cookie = a
        .cookies
        .iter()
        .find(|(k, _)| k.ends_with("session"))
        .unwrap()
        .1
        .clone();
    assert_ne!(
        old_cookie, new_cookie,
        "a new cookie after the second factor"
    );
    // The first application's token lives on with the session, and its sid is the same.
    let r = a.refresh(&refresh, &auth).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let tokens = r.json();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let jwks = a.get("/api/v1/oauth/discovery/keys").await.json();
    assert_eq!(
        verify_jwt(tokens["id_token"].as_str().unwrap(), &jwks).1["sid"],
        sid
    );
    // Signing out ends it.
    logout(&mut a).await;
    assert_eq!(a.refresh(&refresh, &auth).await.status, 400);
}

#[tokio::test]
async fn a_code_in_flight_does_not_outlive_revoking_the_application() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let (id, secret) = server.add_client(&[]);
    let mut a = server.browser();
    let (verifier, challenge) = pkce();
    let start = a
        .get(&authorize_url(
            &id,
            &format!("&code_challenge={challenge}&code_challenge_method=S256"),
        ))
        .await;
    let callback = a.drive_to_callback(start, "alice").await;
    // The application has its code but has not exchanged it yet.
    let r = post_on(
        &mut a,
        "/account",
        "/account/apps/revoke",
        &[("client_id", &id)],
    )
    .await;
    assert_eq!(r.location(), "/account?done=app");
    let r = a
        .redeem(&callback, Some(&verifier), &basic(&id, &secret))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn a_step_up_does_not_outlive_the_session_it_raises() {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let (two, _) = server.add_client(&["--policy", "two_factor"]);
    let mut a = server.browser();
    password_step(&mut a, "alice", PASSWORD).await;
    let mut other = server.browser();
    password_step(&mut other, "alice", PASSWORD).await;
    let (secret, _) = enrol(&mut other).await;
    let r = a.get(&authorize_url(&two, "")).await;
    assert_eq!(r.location(), "/login/2fa");
    // Signed out before the code is typed: the code alone signs nobody in.
    let page = a.get("/login/2fa").await;
    let csrf = page.input("csrf").unwrap();
    logout(&mut a).await;
    let code = latchkey::keys::totp::code_at(&secret, now() + 30).unwrap();
    let r = a
        .post_form("/login/2fa", &[("csrf", &csrf), ("code", &code)])
        .await;
    assert!(r.body.contains("Sign in again"), "{}", r.body);
    assert!(a.get("/account").await.location().starts_with("/login"));
}

#[tokio::test]
async fn administrators_can_be_required_to_sign_in_with_a_second_factor() {
    // Issue 12: `[admin] require_second_factor`.
    let server = Server::new("[admin]\nrequire_second_factor = true")
        .start()
        .await;
    server.add_user("root", &["--group", "admin"]);
    let mut b = server.browser();
    assert_eq!(
        password_step(&mut b, "root", PASSWORD).await.location(),
        "/account"
    );
    // One factor: the pages are closed, and say how to set a second one up.
    let r = b.get("/admin/clients").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        html_unescape(&r.body).contains("/account/2fa"),
        "{}",
        r.body
    );
    let r = post_on(&mut b, "/account", "/admin/clients/new", &[("name", "X")]).await;
    assert_eq!(r.status, 403, "no action either");
    // Enrolling proves the second factor: this session may administer now.
    let mut other = server.browser();
    password_step(&mut other, "root", PASSWORD).await;
    let (secret, _) = enrol(&mut b).await;
    assert_eq!(b.get("/admin/clients").await.status, 200);
    // A one-factor session from before the enrolment is asked for the code, then let in.
    let r = other.get("/admin/clients").await;
    assert_eq!(r.location(), "/login/2fa", "{}", r.body);
    let code = latchkey::keys::totp::code_at(&secret, now() + 30).unwrap();
    let r = code_step(&mut other, &code, false).await;
    assert_eq!(r.location(), "/admin/clients", "{}", r.body);
    assert_eq!(other.get("/admin/clients").await.status, 200);
}
