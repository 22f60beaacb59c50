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
    for m in ["client_secret_basic", "client_secret_post", "none"] {
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

    // A missing key file is a clear error naming it.
    let bad = format!(
        "[tls]\nmode = \"files\"\ncert = \"{}\"\nkey = \"/nonexistent/key.pem\"",
        cert.display()
    );
    let s = Server::new(&bad);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["serve", "--config"])
        .arg(&s.config)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/key.pem"));
}
