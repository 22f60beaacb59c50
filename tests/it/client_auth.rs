//! Client authentication with RFC 7523 assertions: private_key_jwt (keys registered by
//! value or by URI) and client_secret_jwt.

use std::sync::atomic::Ordering;

use serde_json::{Map, Value, json};

use crate::support::*;
use latchkey::keys::KeySet;
use latchkey::keys::signing::generate;
use latchkey::model::Alg;

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn claims(client_id: &str, aud: &str) -> Map<String, Value> {
    let now = latchkey::clock::now();
    let v = json!({"iss": client_id, "sub": client_id, "aud": aud, "iat": now, "exp": now + 60, "jti": latchkey::clock::random_id()});
    v.as_object().unwrap().clone()
}

async fn code_for(server: &Server, b: &mut Browser, id: &str) -> String {
    server.add_user("alice", &[]);
    let first = b.get(&authorize_url(id, "")).await;
    let cb = b.drive_to_callback(first, "alice").await;
    params_of(&cb)["code"].clone()
}

async fn exchange(b: &mut Browser, code: &str, assertion: &str) -> Resp {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", CALLBACK),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion),
    ];
    b.post_form("/api/v1/oauth/token", &form).await
}

#[tokio::test]
async fn private_key_jwt_with_registered_keys() {
    let server = Server::new("").start().await;
    let client_keys = KeySet::from_records(&[generate(Alg::ES256, 0).unwrap()]).unwrap();
    let jwks_file = server.dir.0.join("client-jwks.json");
    std::fs::write(&jwks_file, client_keys.jwks().to_string()).unwrap();
    let (id, _) = server.add_client(&[
        "--skip-consent",
        "--token-endpoint-auth-method",
        "private_key_jwt",
        "--jwks-file",
        jwks_file.to_str().unwrap(),
    ]);
    let mut b = server.browser();
    let code = code_for(&server, &mut b, &id).await;
    let token_url = format!("{}/api/v1/oauth/token", server.issuer);

    // Wrong audience, a stranger's key, and no assertion at all are refused.
    let wrong_aud = client_keys
        .sign(Alg::ES256, "JWT", &claims(&id, "https://elsewhere"))
        .unwrap();
    assert_eq!(exchange(&mut b, &code, &wrong_aud).await.status, 401);
    let stranger = KeySet::from_records(&[generate(Alg::ES256, 0).unwrap()]).unwrap();
    let forged = stranger
        .sign(Alg::ES256, "JWT", &claims(&id, &token_url))
        .unwrap();
    assert_eq!(
        exchange(&mut b, &code, &forged).await.json()["error"],
        "invalid_client"
    );

    let good = client_keys
        .sign(Alg::ES256, "JWT", &claims(&id, &token_url))
        .unwrap();
    let r = exchange(&mut b, &code, &good).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Single use: the same assertion again is a replay.
    let rt = r.json()["refresh_token"].as_str().unwrap().to_string();
    let refresh = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt.as_str()),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", good.as_str()),
    ];
    let again = b.post_form("/api/v1/oauth/token", &refresh).await;
    assert_eq!(again.status, 401);
    assert!(
        again.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("already used")
    );
}

#[tokio::test]
async fn private_key_jwt_with_a_jwks_uri_and_client_secret_jwt() {
    let client_keys = KeySet::from_records(&[generate(Alg::RS256, 0).unwrap()]).unwrap();
    let (port, hits) = json_server(client_keys.jwks().to_string()).await;
    let server = Server::new("").start().await;
    let jwks_uri = format!("http://127.0.0.1:{port}/jwks.json");
    let (id, _) = server.add_client(&[
        "--skip-consent",
        "--token-endpoint-auth-method",
        "private_key_jwt",
        "--jwks-uri",
        &jwks_uri,
    ]);
    let mut b = server.browser();
    let code = code_for(&server, &mut b, &id).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the URI is fetched only to check an assertion"
    );
    let assertion = client_keys
        .sign(Alg::RS256, "JWT", &claims(&id, &server.issuer))
        .unwrap();
    let r = exchange(&mut b, &code, &assertion).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // client_secret_jwt: HS256 under the secret printed at registration.
    let (id, secret) = server.add_client(&[
        "--skip-consent",
        "--token-endpoint-auth-method",
        "client_secret_jwt",
    ]);
    let first = b.get(&authorize_url(&id, "")).await;
    let cb = b.drive_to_callback(first, "alice").await;
    let code = params_of(&cb)["code"].clone();
    let hs256 = |c: &Map<String, Value>, key: &str| {
        use base64::Engine as _;
        let e = |x: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(x);
        let input = format!(
            "{}.{}",
            e(r#"{"alg":"HS256","typ":"JWT"}"#),
            e(&Value::Object(c.clone()).to_string())
        );
        let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.as_bytes());
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(aws_lc_rs::hmac::sign(&k, input.as_bytes()));
        format!("{input}.{sig}")
    };
    let token_url = format!("{}/api/v1/oauth/token", server.issuer);
    let bad = hs256(&claims(&id, &token_url), "not the secret");
    assert_eq!(exchange(&mut b, &code, &bad).await.status, 401);
    let good = hs256(&claims(&id, &token_url), &secret);
    let r = exchange(&mut b, &code, &good).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // This client may not fall back to sending its secret.
    let basic_try = b.refresh("x", &basic(&id, &secret)).await;
    assert_eq!(basic_try.status, 401);
}
