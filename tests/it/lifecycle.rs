//! Start-up: first start creates keys and a certificate, a second start reuses them;
//! discovery advertises what is implemented; TLS modes "off" and "files".

use serde_json::Value;

use crate::support::*;

#[tokio::test]
async fn first_start_creates_everything_and_restart_reuses_it() {
    let mut server = Server::new("").start().await;
    let data = server.data_dir();
    let mode = |p: &std::path::Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o777
    };
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("tls/key.pem")), 0o600);
    assert_eq!(mode(&data.join("tls/cert.pem")), 0o600);
    let cert = std::fs::read(data.join("tls/cert.pem")).unwrap();
    let mut b = server.browser();
    let jwks1 = b.get("/api/v1/oauth/discovery/keys").await.json();
    server.stop();
    server.spawn().await;
    let mut b = server.browser();
    let jwks2 = b.get("/api/v1/oauth/discovery/keys").await.json();
    assert_eq!(jwks1, jwks2, "same keys after restart");
    assert_eq!(
        cert,
        std::fs::read(data.join("tls/cert.pem")).unwrap(),
        "same certificate after restart"
    );
}

#[tokio::test]
async fn discovery_advertises_exactly_what_is_implemented() {
    let server = Server::new("").start().await;
    let mut b = server.browser();
    let d = b.get("/.well-known/openid-configuration").await;
    assert_eq!(d.status, 200);
    assert!(
        d.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let d = d.json();
    let i = &server.issuer;
    assert_eq!(d["issuer"], *i);
    assert_eq!(
        d["authorization_endpoint"],
        format!("{i}/api/v1/oauth/authorize")
    );
    assert_eq!(d["token_endpoint"], format!("{i}/api/v1/oauth/token"));
    assert_eq!(d["userinfo_endpoint"], format!("{i}/api/v1/oauth/userinfo"));
    assert_eq!(d["jwks_uri"], format!("{i}/api/v1/oauth/discovery/keys"));
    assert_eq!(
        d["response_types_supported"],
        serde_json::json!([
            "code",
            "id_token",
            "id_token token",
            "code id_token",
            "code token",
            "code id_token token"
        ])
    );
    assert_eq!(
        d["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(d["request_parameter_supported"], false);
    assert_eq!(d["request_uri_parameter_supported"], false);
    assert_eq!(d["authorization_response_iss_parameter_supported"], true);
    for (k, path) in [
        ("end_session_endpoint", "logout"),
        ("revocation_endpoint", "revoke"),
        ("introspection_endpoint", "introspect"),
        ("pushed_authorization_request_endpoint", "par"),
        ("device_authorization_endpoint", "device_authorization"),
    ] {
        assert_eq!(d[k], format!("{i}/api/v1/oauth/{path}"), "{k}");
        // Each advertised endpoint exists: a GET is answered 405, not 404.
        assert_eq!(
            b.get(&format!("/api/v1/oauth/{path}")).await.status,
            if path == "logout" { 200 } else { 405 },
            "{path}"
        );
    }
    let grants: Vec<&str> = d["grant_types_supported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    assert_eq!(
        grants,
        vec![
            "authorization_code",
            "implicit",
            "refresh_token",
            "client_credentials",
            "password",
            "urn:ietf:params:oauth:grant-type:device_code"
        ]
    );
    assert_eq!(d["claims_parameter_supported"], true);
    for m in [
        "client_secret_basic",
        "client_secret_post",
        "client_secret_jwt",
        "private_key_jwt",
        "none",
    ] {
        assert!(
            d["token_endpoint_auth_methods_supported"]
                .as_array()
                .unwrap()
                .contains(&Value::from(m))
        );
    }
    assert!(
        d.get("registration_endpoint").is_none(),
        "dynamic registration is not offered"
    );
    let rfc8414 = b
        .get("/.well-known/oauth-authorization-server")
        .await
        .json();
    assert_eq!(rfc8414, d);

    let jwks = b.get("/api/v1/oauth/discovery/keys").await.json();
    let keys = jwks["keys"].as_array().unwrap();
    let kids: std::collections::HashSet<&str> =
        keys.iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids.len(), keys.len());
    assert!(
        keys.iter()
            .any(|k| k["kty"] == "RSA" && k["alg"] == "RS256")
    );
    assert!(keys.iter().any(|k| k["kty"] == "EC" && k["crv"] == "P-256"));
    for k in keys {
        assert!(k.get("d").is_none());
    }
    let h = b.get("/healthz").await;
    assert_eq!(h.status, 200);
}

#[tokio::test]
async fn plain_http_behind_a_proxy() {
    let server = Server::new("[tls]\nmode = \"off\"").start().await;
    assert!(!server.data_dir().join("tls").exists());
    server.add_user("alice", &[]);
    let (id, _) = server.add_client(&["--skip-consent"]);
    let mut b = server.browser();
    let d = b.get("/.well-known/openid-configuration").await;
    assert!(d.header("strict-transport-security").is_none());
    let first = b.get(&authorize_url(&id, "")).await;
    let cb = b.drive_to_callback(first, "alice").await;
    assert!(params_of(&cb).contains_key("code"));
    assert!(
        b.set_cookies
            .iter()
            .any(|c| c.starts_with("latchkey_session=") && !c.contains("Secure"))
    );
}

#[tokio::test]
async fn own_certificate_files() {
    // Make a certificate with one instance, then serve it from another as "files".
    let mut donor = Server::new("").start().await;
    donor.stop();
    let cert = donor.data_dir().join("tls/cert.pem");
    let key = donor.data_dir().join("tls/key.pem");
    let extra = format!(
        "[tls]\nmode = \"files\"\ncert = \"{}\"\nkey = \"{}\"",
        cert.display(),
        key.display()
    );
    let mut server = Server::new(&extra);
    std::fs::create_dir_all(server.data_dir().join("tls")).unwrap();
    std::fs::copy(&cert, server.data_dir().join("tls/cert.pem")).unwrap();
    server.spawn().await;
    let mut b = server.browser();
    assert_eq!(b.get("/healthz").await.status, 200);
    server.stop();

    // A missing, unreadable (a directory: the tests run as root, where mode 000 does not
    // stop reading) or garbled key or certificate is a clear error naming the file.
    let junk = server.dir.0.join("junk.pem");
    std::fs::write(&junk, "-----BEGIN GARBAGE-----\nnot base64!\n").unwrap();
    let empty = server.dir.0.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let a_dir = server.dir.0.clone();
    let key_s = key.display().to_string();
    let cert_s = cert.display().to_string();
    let cases = [
        (
            cert_s.clone(),
            "/nonexistent/key.pem".to_string(),
            "/nonexistent/key.pem".to_string(),
        ),
        (
            "/nonexistent/cert.pem".to_string(),
            key_s.clone(),
            "/nonexistent/cert.pem".to_string(),
        ),
        (
            a_dir.display().to_string(),
            key_s.clone(),
            a_dir.display().to_string(),
        ),
        (
            cert_s.clone(),
            a_dir.display().to_string(),
            a_dir.display().to_string(),
        ),
        (
            empty.display().to_string(),
            key_s.clone(),
            empty.display().to_string(),
        ),
        (
            cert_s.clone(),
            junk.display().to_string(),
            junk.display().to_string(),
        ),
        (key_s.clone(), cert_s.clone(), key_s.clone()),
    ];
    for (c, k, named) in cases {
        let s = Server::new(&format!(
            "[tls]\nmode = \"files\"\ncert = \"{c}\"\nkey = \"{k}\""
        ));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(["serve", "--config"])
            .arg(&s.config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "cert {c} key {k}");
        assert!(stderr.contains(&named), "cert {c} key {k}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[tokio::test]
async fn declared_clients_support_every_field() {
    let client_keys = latchkey::keys::KeySet::from_records(&[latchkey::keys::signing::generate(
        latchkey::model::Alg::ES256,
        0,
    )
    .unwrap()])
    .unwrap();
    let jwks = client_keys.jwks().to_string().replace('"', "\\\"");
    let sha = latchkey::keys::client_secret_hash("declared-secret");
    let extra = format!(
        r#"[[clients]]
client_id = "spa"
name = "Declared SPA"
redirect_uris = ["{CALLBACK}"]
post_logout_redirect_uris = ["https://rp.example/bye"]
grant_types = ["authorization_code", "implicit", "refresh_token"]
response_types = ["code", "id_token token"]
scopes = ["openid", "email", "offline_access"]
id_token_alg = "ES256"
skip_consent = true
require_pkce = true
frontchannel_logout_uri = "https://rp.example/fc"
frontchannel_logout_session_required = true
refresh_requires_session = true
allowed_groups = ["staff"]

[[clients]]
client_id = "signed"
name = "Declared signed"
redirect_uris = ["{CALLBACK}"]
token_endpoint_auth_method = "private_key_jwt"
jwks = "{jwks}"
skip_consent = true
require_par = true
grant_types = ["authorization_code", "client_credentials"]

[[clients]]
client_id = "m2m"
secret_hash = "{sha}"
grant_types = ["client_credentials"]
scopes = ["openid", "groups"]
"#
    );
    let mut server = Server::new(&extra).start().await;
    server.add_user("alice", &["--group", "staff"]);
    let mut b = server.browser();
    let jwks_doc = b.get("/api/v1/oauth/discovery/keys").await.json();

    // The SPA: implicit with ES256, front-channel logout, refresh bound to the session.
    let (verifier, challenge) = pkce();
    let first = b.get(&authorize_url("spa", &format!("&scope=openid%20offline_access&code_challenge={challenge}&code_challenge_method=S256"))).await;
    let cb = b.drive_to_callback(first, "alice").await;
    let code = params_of(&cb)["code"].clone();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("client_id", "spa"),
        ("code_verifier", verifier.as_str()),
    ];
    // Declared without a secret_hash, "spa" is a public client.

    let t = b.post_form("/api/v1/oauth/token", &form).await.json();
    let (h, _) = verify_jwt(t["id_token"].as_str().unwrap(), &jwks_doc);
    assert_eq!(h["alg"], "ES256");
    let r = b.get(&format!("/api/v1/oauth/authorize?client_id=spa&redirect_uri={}&response_type=id_token%20token&scope=openid&nonce=n", enc(CALLBACK))).await;
    assert!(r.location().contains("#access_token="), "{}", r.location());
    let page = b.get("/logout").await;
    let csrf = page.input("csrf").unwrap();
    let out = b.post_form("/logout", &[("csrf", &csrf)]).await;
    assert!(out.body.contains("rp.example&#x2f;fc?iss="), "{}", out.body);
    let r = b
        .post_form(
            "/api/v1/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", t["refresh_token"].as_str().unwrap()),
                ("client_id", "spa"),
            ],
        )
        .await;
    assert_eq!(
        r.json()["error"],
        "invalid_grant",
        "refresh_requires_session even with offline_access"
    );

    // The signed client: client_credentials with a private_key_jwt assertion; plain
    // authorization requests are refused because it must use PAR.
    let now = latchkey::clock::now();
    let claims = serde_json::json!({"iss": "signed", "sub": "signed", "aud": server.issuer, "exp": now + 60, "jti": "j-1"});
    let assertion = client_keys
        .sign(
            latchkey::model::Alg::ES256,
            "JWT",
            claims.as_object().unwrap(),
        )
        .unwrap();
    let r = b
        .post_form(
            "/api/v1/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", &assertion),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = b.get(&authorize_url("signed", "")).await;
    assert_eq!(params_of(&r.location())["error"], "invalid_request");

    // The machine client with a hashed secret.
    let r = b
        .post_form_with(
            "/api/v1/oauth/token",
            &[("grant_type", "client_credentials"), ("scope", "groups")],
            &[("authorization", &basic("m2m", "declared-secret"))],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    server.stop();
}
