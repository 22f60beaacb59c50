//! Issue 17 for applications: the groups a client sees (`--groups-filter`), and the
//! forgiving refresh of clients that refresh from two processes at once
//! (`--refresh-grace-secs`).

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// The `groups` claim of a fresh ID token and of UserInfo for `user` at `client`.
async fn groups_seen(server: &Server, client: &(String, String), user: &str) -> (Value, Value) {
    let (id, _, info) = claims_of(server, client, user, "openid groups").await;
    (id["groups"].clone(), info["groups"].clone())
}

#[tokio::test]
async fn each_client_sees_only_the_groups_chosen_for_it() {
    let server = Server::new("").start().await;
    server.add_user(
        "gus",
        &[
            "--group",
            "grafana-admin",
            "--group",
            "staff",
            "--group",
            "vpn",
        ],
    );
    let scopes = ["--scope", "openid", "--scope", "groups", "--skip-consent"];
    let every = server.add_client(&scopes);
    let mut filtered_args = scopes.to_vec();
    filtered_args.extend(["--groups-filter", "grafana-*", "--groups-filter", "vpn"]);
    let filtered = server.add_client(&filtered_args);
    let all = json!(["grafana-admin", "staff", "vpn"]);
    assert_eq!(
        groups_seen(&server, &every, "gus").await,
        (all.clone(), all)
    );
    let some = json!(["grafana-admin", "vpn"]);
    assert_eq!(
        groups_seen(&server, &filtered, "gus").await,
        (some.clone(), some)
    );
    // Changed later: the next tokens and UserInfo follow.
    let out = server.cli(
        &["client", "update", &filtered.0, "--groups-filter", "staff"],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let staff = json!(["staff"]);
    assert_eq!(
        groups_seen(&server, &filtered, "gus").await,
        (staff.clone(), staff)
    );
    // A bad pattern is refused and names the field.
    let bad = server.cli(
        &["client", "update", &filtered.0, "--groups-filter", "a*b"],
        None,
    );
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("groups_filter"), "{}", bad.stderr);
}

/// A client with offline access and no consent page, with `extra` options.
fn offline_client(server: &Server, extra: &[&str]) -> (String, String) {
    let mut args = vec![
        "--scope",
        "openid",
        "--scope",
        "offline_access",
        "--skip-consent",
    ];
    args.extend_from_slice(extra);
    server.add_client(&args)
}

/// The refresh token of a fresh code flow for `user` at `client`.
async fn refresh_token_of(server: &Server, client: &(String, String), user: &str) -> String {
    let t = server
        .browser()
        .sign_in_for_tokens(&client.0, &basic(&client.0, &client.1), user)
        .await
        .json();
    t["refresh_token"].as_str().unwrap().to_string()
}

async fn refresh(server: &Server, client: &(String, String), token: &str) -> Resp {
    server
        .browser()
        .refresh(token, &basic(&client.0, &client.1))
        .await
}

#[tokio::test]
async fn a_refresh_token_used_twice_within_the_grace_period_gets_the_same_answer() {
    let server = Server::new("").start().await;
    server.add_user("rita", &[]);
    let grace = offline_client(&server, &["--refresh-grace-secs", "2"]);
    let rt = refresh_token_of(&server, &grace, "rita").await;

    // Two processes refresh with the same token at once: both get the same successor.
    let (a, b2) = tokio::join!(refresh(&server, &grace, &rt), refresh(&server, &grace, &rt));
    assert_eq!(
        (a.status, b2.status),
        (200, 200),
        "{} / {}",
        a.body,
        b2.body
    );
    let successor = a.json()["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(b2.json()["refresh_token"], a.json()["refresh_token"]);
    assert_ne!(successor, rt);
    // Within the period, but the user was disabled meanwhile: refused.
    assert_eq!(server.cli(&["user", "disable", "rita"], None).code, 0);
    assert_eq!(refresh(&server, &grace, &rt).await.status, 400);
    assert_eq!(server.cli(&["user", "enable", "rita"], None).code, 0);
    // Another client presenting it is refused (and that is a replay of the grant).
    let other = server.add_client(&["--scope", "openid", "--scope", "offline_access"]);
    assert_eq!(refresh(&server, &other, &rt).await.status, 400);

    // Outside the period, reuse detection as always: the grant ends.
    let grace2 = offline_client(&server, &["--refresh-grace-secs", "1"]);
    let rt = refresh_token_of(&server, &grace2, "rita").await;
    let next = refresh(&server, &grace2, &rt).await;
    assert_eq!(next.status, 200, "{}", next.body);
    let successor = next.json()["refresh_token"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let late = refresh(&server, &grace2, &rt).await;
    assert_eq!(late.status, 400, "{}", late.body);
    assert_eq!(late.json()["error"], "invalid_grant");
    assert_eq!(
        refresh(&server, &grace2, &successor).await.status,
        400,
        "the replay ended the grant"
    );
    // Without a grace period (the default), the second use at once is a replay.
    let strict = offline_client(&server, &[]);
    let rt = refresh_token_of(&server, &strict, "rita").await;
    assert_eq!(refresh(&server, &strict, &rt).await.status, 200);
    assert_eq!(refresh(&server, &strict, &rt).await.status, 400);
    let too_long = server.cli(
        &[
            "client",
            "add",
            "--name",
            "x",
            "--redirect-uri",
            CALLBACK,
            "--refresh-grace-secs",
            "61",
        ],
        None,
    );
    assert_eq!(too_long.code, 2, "{}", too_long.stderr);
    assert!(
        too_long.stderr.contains("refresh_grace_secs"),
        "{}",
        too_long.stderr
    );
}

/// The claims of a code flow for `user` at `client` with `scope`: the ID token's, the
/// access token's and UserInfo's.
async fn claims_of(
    server: &Server,
    client: &(String, String),
    user: &str,
    scope: &str,
) -> (Value, Value, Value) {
    let mut b = server.browser();
    let (verifier, challenge) = pkce();
    let start = b
        .get(&authorize_url(
            &client.0,
            &format!(
                "&scope={}&code_challenge={challenge}&code_challenge_method=S256",
                enc(scope)
            ),
        ))
        .await;
    let callback = b.drive_to_callback(start, user).await;
    let tokens = b
        .redeem(&callback, Some(&verifier), &basic(&client.0, &client.1))
        .await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let t = tokens.json();
    let jwks = b.get("/api/v1/oauth/discovery/keys").await.json();
    let (_, id) = verify_jwt(t["id_token"].as_str().unwrap(), &jwks);
    let access_token = t["access_token"].as_str().unwrap();
    let (_, access) = verify_jwt(access_token, &jwks);
    let info = b
        .get_with(
            "/api/v1/oauth/userinfo",
            &[("authorization", &format!("Bearer {access_token}"))],
        )
        .await
        .json();
    (id, access, info)
}

/// SPEC §14 as MinIO uses it: a `policy` claim under the client's own `minio` scope, mapped
/// from groups (merged when several apply), a group attribute and a user attribute, each
/// where its rule says and nowhere else; discovery lists them; reserved names refused.
#[tokio::test]
async fn custom_claims_reach_only_the_client_and_tokens_their_rules_name() {
    let server = Server::new("").start().await;
    server.add_user("mia", &["--group", "storage-admins", "--group", "staff"]);
    let ok = |args: &[&str]| {
        let out = server.cli(args, None);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    };
    ok(&["user", "set-attribute", "mia", "department", "Finance"]);
    ok(&["group", "set-attribute", "staff", "tier", "2"]);
    let minio = server.add_client(&[
        "--scope",
        "openid",
        "--scope",
        "minio",
        "--skip-consent",
        "--claim",
        r#"{"name": "policy", "scope": "minio", "groups": {"storage-admins": "consoleAdmin", "staff": ["readwrite", "consoleAdmin"]}}"#,
        "--claim",
        r#"{"name": "department", "scope": "minio", "user_attribute": "department", "in": ["userinfo"]}"#,
        "--claim",
        r#"{"name": "tier", "scope": "minio", "group_attribute": "tier", "in": ["access_token"]}"#,
    ]);
    let (id, access, info) = claims_of(&server, &minio, "mia", "openid minio").await;
    let policy = json!(["consoleAdmin", "readwrite"]);
    assert_eq!(id["policy"], policy, "{id}");
    assert_eq!(access["policy"], policy, "{access}");
    assert_eq!(info["policy"], policy, "{info}");
    assert_eq!(info["department"], "Finance");
    assert!(id.get("department").is_none() && access.get("department").is_none());
    assert_eq!(access["tier"], json!(2), "one group, one value: as it is");
    assert!(id.get("tier").is_none() && info.get("tier").is_none());
    assert!(access["scope"].as_str().unwrap().contains("minio"));

    // Without the scope, none of them; another client never sees them.
    let (id, access, info) = claims_of(&server, &minio, "mia", "openid").await;
    for c in [&id, &access, &info] {
        assert!(c.get("policy").is_none(), "{c}");
    }
    let other = server.add_client(&["--scope", "openid", "--skip-consent"]);
    let (id, _, info) = claims_of(&server, &other, "mia", "openid minio").await;
    assert!(id.get("policy").is_none() && info.get("policy").is_none());

    // Discovery lists the client's own scope and claims.
    let meta = server
        .browser()
        .get("/.well-known/openid-configuration")
        .await
        .json();
    let has = |field: &str, v: &str| meta[field].as_array().unwrap().iter().any(|x| x == v);
    assert!(has("scopes_supported", "minio"), "{meta}");
    assert!(has("claims_supported", "policy"), "{meta}");

    // Reserved names, and a scope the client does not have, are refused by name.
    for (claim, says) in [
        (
            r#"{"name": "email", "scope": "minio", "user_attribute": "x"}"#,
            "reserved",
        ),
        (
            r#"{"name": "role", "scope": "vault", "user_attribute": "x"}"#,
            "scope",
        ),
    ] {
        let out = server.cli(&["client", "update", &minio.0, "--claim", claim], None);
        assert_eq!(out.code, 2, "{claim}");
        assert!(out.stderr.contains(says), "{claim}: {}", out.stderr);
    }
    let bad = server.cli(&["user", "set-attribute", "mia", "x", r#"{"a": 1}"#], None);
    assert_eq!(bad.code, 0, "an object is kept as text: {}", bad.stderr);
}

/// Issue 17, item 3: every preset registers its application from `--preset` and `--url`
/// alone, and its snippet's URLs of this server all answer (none is a 404 or a 5xx).
#[tokio::test]
async fn every_preset_registers_and_its_snippet_urls_answer() {
    let server = Server::new("").start().await;
    let mut b = server.browser();
    for name in [
        "grafana",
        "portainer",
        "proxmox",
        "django",
        "synapse",
        "minio",
        "vault",
        "nextcloud",
        "oauth2-proxy",
        "immich",
        "jellyfin",
    ] {
        let out = server.cli(
            &[
                "client",
                "add",
                "--preset",
                name,
                "--url",
                "https://app.example.test/",
                "--json",
            ],
            None,
        );
        assert_eq!(out.code, 0, "{name}: {}", out.stderr);
        let v = out.json();
        let snippet = v["snippet"].as_str().expect("a snippet");
        assert!(snippet.contains(v["client_id"].as_str().unwrap()), "{name}");
        assert!(
            v["redirect_uris"][0]
                .as_str()
                .unwrap()
                .starts_with("https://app.example.test")
        );
        let urls: Vec<&str> = snippet
            .split(|c: char| c.is_whitespace() || "\"'=,".contains(c))
            .filter(|w| w.starts_with(&server.issuer))
            .collect();
        assert!(
            !urls.is_empty(),
            "{name}: no URL of this server in {snippet}"
        );
        for u in urls {
            let path = u.strip_prefix(&server.issuer).unwrap();
            let path = if path.is_empty() { "/" } else { path };
            let r = b.get(path).await;
            assert!(
                r.status != 404 && r.status < 500,
                "{name}: {u} answered {}",
                r.status
            );
        }
    }
    let bad = server.cli(
        &[
            "client",
            "add",
            "--preset",
            "nothing",
            "--url",
            "https://x.test",
        ],
        None,
    );
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("grafana"),
        "lists the presets: {}",
        bad.stderr
    );
}

/// The admin pages for issue 17: "Add new application" from a preset shows the snippet
/// once; the application page shows this server's addresses and edits the groups filter,
/// the grace period and custom claims; users' and groups' attributes are edited on their
/// pages; the result reaches the tokens.
#[tokio::test]
async fn admin_pages_set_presets_claims_and_attributes() {
    let server = Server::new("").start().await;
    server.add_user("nina", &["--group", "staff"]);
    let mut root = crate::people::admin(&server).await;
    let form = root
        .get("/admin/clients/new?preset=minio&url=https%3A%2F%2Fminio.example.test%3A9001")
        .await;
    assert_eq!(form.status, 200, "{}", form.body);
    let body = html_unescape(&form.body);
    assert!(
        body.contains("https://minio.example.test:9001/oauth_callback"),
        "{body}"
    );
    assert!(body.contains("\"policy\""), "the preset's claim: {body}");
    let csrf = form.input("csrf").unwrap();
    let created = root
        .post_form(
            "/admin/clients/new",
            &[
                ("csrf", &csrf),
                ("preset", "minio"),
                ("app_url", "https://minio.example.test:9001"),
                ("name", "MinIO"),
                (
                    "redirect_uri",
                    "https://minio.example.test:9001/oauth_callback",
                ),
                ("redirect_uri", CALLBACK),
                ("scope", "openid"),
                ("custom_scopes", "minio"),
                ("type", "confidential"),
                ("grant_type", "authorization_code"),
                ("policy", "one_factor"),
                ("skip_consent", "yes"),
                ("groups_filter", "staff"),
                ("refresh_grace_secs", "5"),
                (
                    "claims",
                    r#"[{"name": "policy", "scope": "minio", "groups": {"staff": "readwrite"}},
                        {"name": "tier", "scope": "minio", "group_attribute": "tier"},
                        {"name": "desk", "scope": "minio", "user_attribute": "desk"}]"#,
                ),
            ],
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    assert!(created.body.contains("id=\"snippet\""), "{}", created.body);
    assert!(created.body.contains("MINIO_IDENTITY_OPENID_CLAIM_NAME"));
    let id = created
        .body
        .split("<code id=\"once-1\">")
        .nth(1)
        .and_then(|r| r.split("</code>").next())
        .unwrap()
        .to_string();
    let secret = created
        .body
        .split("<code id=\"once-2\">")
        .nth(1)
        .and_then(|r| r.split("</code>").next())
        .unwrap()
        .to_string();
    let page = root.get(&format!("/admin/clients/{id}")).await;
    assert!(page.body.contains("id=\"endpoints\""), "{}", page.body);
    let endpoints = html_unescape(&page.body);
    let discovery = format!("{}/.well-known/openid-configuration", server.issuer);
    assert!(endpoints.contains(&discovery), "{endpoints}");
    let shown = server.cli(&["client", "show", &id, "--json"], None).json();
    assert_eq!(shown["refresh_grace_secs"], 5, "{shown}");
    assert!(
        shown["redirect_uris"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u == CALLBACK),
        "{shown}"
    );
    assert_eq!(shown["groups_filter"], json!(["staff"]));
    assert_eq!(shown["claims"].as_array().unwrap().len(), 3);

    // Attributes on the group and the user pages.
    let r = crate::people::post_on(
        &mut root,
        "/admin/groups",
        "/admin/groups/staff/attributes",
        &[("attributes", r#"{"tier": "gold"}"#)],
    )
    .await;
    assert_eq!(r.location(), "/admin/groups");
    let nina = server.cli(&["user", "show", "nina", "--json"], None).json();
    let user_page = format!("/admin/users/{}", nina["id"].as_str().unwrap());
    let r = crate::people::post_on(
        &mut root,
        &user_page,
        &user_page,
        &[
            ("username", "nina"),
            ("email", "nina@example.com"),
            ("group", "staff"),
            ("attributes", r#"{"desk": 12}"#),
        ],
    )
    .await;
    assert_eq!(r.location(), user_page, "{}", r.body);
    let bad = crate::people::post_on(
        &mut root,
        &user_page,
        &user_page,
        &[
            ("username", "nina"),
            ("email", "nina@example.com"),
            ("attributes", "[1]"),
        ],
    )
    .await;
    assert_eq!(bad.status, 400, "a list is not an object");

    let (id_token, _, info) = claims_of(&server, &(id, secret), "nina", "openid minio").await;
    assert_eq!(id_token["policy"], json!("readwrite"));
    assert_eq!(id_token["tier"], json!("gold"));
    assert_eq!(info["desk"], json!(12));
}

/// A custom claim is part of what a person agrees to: the consent page names it beside
/// the scopes, a remembered consent lets the same request through silently, and a claim
/// rule added later under the same scope is asked about before it is released.
#[tokio::test]
async fn a_new_custom_claim_is_asked_about_before_it_is_released() {
    let server = Server::new("").start().await;
    server.add_user("mia", &[]);
    let set = server.cli(
        &["user", "set-attribute", "mia", "department", "Finance"],
        None,
    );
    assert_eq!(set.code, 0, "{}", set.stderr);
    let department =
        r#"{"name": "department", "scope": "profile", "user_attribute": "department"}"#;
    let (id, _) = server.add_client(&[
        "--scope", "openid", "--scope", "profile", "--claim", department,
    ]);
    let mut b = server.browser();
    let start = b.get(&authorize_url(&id, "")).await;
    let signed = b.login(&start.location(), "mia", PASSWORD).await;
    let consent = until_consent_or_callback(&mut b, signed).await;
    assert!(consent.starts_with("/consent"), "{consent}");
    let page = b.get(&consent).await;
    assert!(page.body.contains("id=\"consent-claims\""), "{}", page.body);
    assert!(page.body.contains("department"), "{}", page.body);
    let allowed = b.consent(&consent, "allow").await;
    let back = until_consent_or_callback(&mut b, allowed).await;
    assert!(back.starts_with(CALLBACK), "{back}");
    // Remembered: straight back to the application.
    let again = b.get(&authorize_url(&id, "")).await;
    let back = until_consent_or_callback(&mut b, again).await;
    assert!(back.starts_with(CALLBACK), "{back}");

    // A new rule under the same scope: asked again, naming both.
    let title = r#"{"name": "title", "scope": "profile", "user_attribute": "title"}"#;
    let updated = server.cli(
        &[
            "client", "update", &id, "--claim", department, "--claim", title,
        ],
        None,
    );
    assert_eq!(updated.code, 0, "{}", updated.stderr);
    let asked = b.get(&authorize_url(&id, "")).await;
    let asked = until_consent_or_callback(&mut b, asked).await;
    assert!(asked.starts_with("/consent"), "{asked}");
    let page = b.get(&asked).await;
    assert!(page.body.contains("department, title"), "{}", page.body);
    let none = b.get(&authorize_url(&id, "&prompt=none")).await;
    let none = until_consent_or_callback(&mut b, none).await;
    assert!(none.contains("error=consent_required"), "{none}");
}

/// Follows the provider's own redirects from `resp` until the consent page or the
/// application's callback; returns that location.
async fn until_consent_or_callback(b: &mut Browser, mut resp: Resp) -> String {
    for _ in 0..5 {
        let loc = resp.location();
        if loc.starts_with("/consent") || loc.starts_with(CALLBACK) {
            return loc;
        }
        resp = b.get(&loc).await;
    }
    panic!("too many redirects: {}", resp.body);
}
