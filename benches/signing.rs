//! Micro-benchmarks of the work on every token request: RS256 and ES256 signing of a real
//! ID token, JWT verification, JWKS rendering and authorization-request parsing. Run with
//! `cargo bench --bench signing`; it prints operations per second and time per operation.
//! No assertions on time: machines are shared, so compare the ratios of one run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use latchkey::model::{Alg, User};
use latchkey::oidc::claims::{self, AuthFacts};
use latchkey::oidc::params::Params;
use latchkey::oidc::registration::{ClientSpec, build_client};

fn measure(name: &str, mut f: impl FnMut()) {
    // Warm up, then run for about a second.
    for _ in 0..10 {
        f();
    }
    let budget = Duration::from_secs(1);
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < budget {
        f();
        n += 1;
    }
    let per = start.elapsed().as_secs_f64() / n as f64;
    println!(
        "{name:<36} {:>12.0} ops/s {:>10.2} µs/op",
        1.0 / per,
        per * 1e6
    );
}

fn main() {
    let records = vec![
        latchkey::keys::signing::generate(Alg::RS256, 0).expect("RSA key"),
        latchkey::keys::signing::generate(Alg::ES256, 0).expect("P-256 key"),
    ];
    let keys = latchkey::keys::KeySet::from_records(&records).expect("key set");
    let user = User {
        id: "k2PpRSm0Nq1xEtyv3fX6Hg".into(),
        username: "alice".into(),
        email: "alice@example.com".into(),
        email_verified: true,
        given_name: Some("Alice".into()),
        family_name: Some("Liddell".into()),
        phone: None,
        address: None,
        groups: vec!["staff".into()],
        password_hash: String::new(),
        disabled: false,
        created_at: 0,
        updated_at: 0,
    };
    let scopes: Vec<String> = ["openid", "profile", "email", "groups"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let amr = vec!["pwd".to_string()];
    let facts = AuthFacts {
        issuer: "https://id.example:8443",
        client_id: "grafana",
        user: &user,
        scopes: &scopes,
        auth_time: 1_700_000_000,
        amr: &amr,
        acr: "1",
        sid: "s1",
        now: 1_700_000_010,
        id_token_claims: &[],
    };
    let id_claims = claims::id_token(
        &facts,
        900,
        Some("n-0S6_WzA2Mj"),
        Some("77QmUPtjPfzWtF2AnpK9RQ"),
    );

    measure("sign ID token RS256", || {
        black_box(keys.sign(Alg::RS256, "JWT", &id_claims).expect("sign"));
    });
    measure("sign ID token ES256", || {
        black_box(keys.sign(Alg::ES256, "JWT", &id_claims).expect("sign"));
    });
    let rs = keys.sign(Alg::RS256, "JWT", &id_claims).expect("sign");
    let es = keys.sign(Alg::ES256, "JWT", &id_claims).expect("sign");
    measure("verify RS256", || {
        black_box(keys.verify(&rs).expect("verify"));
    });
    measure("verify ES256", || {
        black_box(keys.verify(&es).expect("verify"));
    });
    measure("render JWKS", || {
        black_box(keys.jwks().to_string());
    });
    let client = build_client(
        "grafana".into(),
        ClientSpec {
            name: "Grafana".into(),
            redirect_uris: vec!["https://grafana.example/login/generic_oauth".into()],
            ..ClientSpec::default()
        },
        0,
    )
    .expect("client");
    let query = "client_id=grafana&redirect_uri=https%3A%2F%2Fgrafana.example%2Flogin%2Fgeneric_oauth&response_type=code\
                 &scope=openid+profile+email&state=af0ifjsldkj&nonce=n-0S6_WzA2Mj\
                 &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256";
    measure("parse authorization request", || {
        let p = Params::parse(query.as_bytes());
        let (_, uri) = latchkey::oidc::authorize::identify(&p).expect("identify");
        let uri =
            latchkey::oidc::authorize::check_redirect_uri(&client, uri.as_deref()).expect("uri");
        black_box(latchkey::oidc::authorize::parse(&p, &client, &uri).expect("parse"));
    });
}
