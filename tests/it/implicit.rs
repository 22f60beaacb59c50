//! Implicit and hybrid flows for clients that opted in: tokens in the fragment (or a
//! form post), nonce required, at_hash and c_hash per OIDC Core §3.2-3.3.

use std::collections::HashMap;

use crate::support::*;

async fn setup() -> (Server, Browser, String, String) {
    let server = Server::new("").start().await;
    server.add_user("alice", &[]);
    let (id, secret) = server.add_client(&[
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "implicit",
        "--skip-consent",
    ]);
    let b = server.browser();
    (server, b, id, secret)
}

fn fragment(loc: &str) -> HashMap<String, String> {
    let (_, f) = loc
        .split_once('#')
        .unwrap_or_else(|| panic!("no fragment in {loc}"));
    assert!(
        !loc.split('#').next().unwrap().contains('?'),
        "nothing in the query: {loc}"
    );
    form_urlencoded::parse(f.as_bytes()).into_owned().collect()
}

fn url(id: &str, rt: &str, extra: &str) -> String {
    format!(
        "/api/v1/oauth/authorize?client_id={id}&redirect_uri={}&response_type={}&scope=openid%20email&state=s-1&nonce=n-._~2{extra}",
        enc(CALLBACK),
        enc(rt)
    )
}

#[tokio::test]
async fn every_response_type_delivers_what_it_names() {
    let (server, mut b, id, secret) = setup().await;
    let jwks = b.get("/api/v1/oauth/discovery/keys").await.json();
    let first = b.get(&url(&id, "code", "")).await;
    b.drive_to_callback(first, "alice").await;
    for rt in [
        "id_token",
        "id_token token",
        "code id_token",
        "code token",
        "code id_token token",
    ] {
        let r = b.get(&url(&id, rt, "")).await;
        let p = fragment(&r.location());
        assert_eq!(p["state"], "s-1", "{rt}");
        assert_eq!(p["iss"], server.issuer, "{rt}");
        let has = |x: &str| rt.split(' ').any(|y| y == x);
        assert_eq!(p.contains_key("code"), has("code"), "{rt}");
        assert_eq!(p.contains_key("access_token"), has("token"), "{rt}");
        assert_eq!(p.contains_key("id_token"), has("id_token"), "{rt}");
        if has("token") {
            assert_eq!(p["token_type"], "Bearer");
            assert_eq!(p["expires_in"], "900");
            let bearer = format!("Bearer {}", p["access_token"]);
            let u = b
                .get_with("/api/v1/oauth/userinfo", &[("authorization", &bearer)])
                .await;
            assert_eq!(u.status, 200, "{rt}");
        }
        if has("id_token") {
            let (_, c) = verify_jwt(&p["id_token"], &jwks);
            assert_eq!(c["nonce"], "n-._~2");
            assert_eq!(c["aud"], id);
            if has("token") {
                assert_eq!(c["at_hash"], at_hash(&p["access_token"]), "{rt}");
            }
            if has("code") {
                assert_eq!(c["c_hash"], at_hash(&p["code"]), "{rt}: c_hash");
            }
        }
        if has("code") {
            let form = [
                ("grant_type", "authorization_code"),
                ("code", p["code"].as_str()),
                ("redirect_uri", CALLBACK),
            ];
            let t = b
                .post_form_with(
                    "/api/v1/oauth/token",
                    &form,
                    &[("authorization", &basic(&id, &secret))],
                )
                .await;
            assert_eq!(t.status, 200, "{rt}: {}", t.body);
            if has("id_token") {
                let (_, front) = verify_jwt(&p["id_token"], &jwks);
                let (_, back) = verify_jwt(t.json()["id_token"].as_str().unwrap(), &jwks);
                assert_eq!(
                    front["sub"], back["sub"],
                    "{rt}: same sub in both ID tokens"
                );
            }
        }
    }
}

#[tokio::test]
async fn implicit_rules() {
    let (server, mut b, id, _) = setup().await;
    let first = b.get(&url(&id, "code", "")).await;
    b.drive_to_callback(first, "alice").await;
    // No nonce: invalid_request, in the fragment.
    let no_nonce = url(&id, "id_token", "").replace("&nonce=n-._~2", "");
    let p = fragment(&b.get(&no_nonce).await.location());
    assert_eq!(p["error"], "invalid_request");
    // Tokens never travel in the query.
    let p = fragment(
        &b.get(&url(&id, "id_token token", "&response_mode=query"))
            .await
            .location(),
    );
    assert_eq!(p["error"], "invalid_request");
    // form_post works for implicit too.
    let r = b
        .get(&url(&id, "id_token token", "&response_mode=form_post"))
        .await;
    assert_eq!(r.status, 200);
    assert!(r.input("access_token").is_some() && r.input("id_token").is_some());
    // A client that did not opt in gets unauthorized_client.
    let (plain, _) = server.add_client(&["--skip-consent"]);
    let p = fragment(&b.get(&url(&plain, "id_token", "")).await.location());
    assert_eq!(p["error"], "unauthorized_client");
}
