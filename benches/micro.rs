//! Micro-benchmarks (criterion) of the work behind every token request: RS256 and ES256
//! signing of a real ID token, verification, JWKS rendering, authorization-request
//! parsing, code issue and redemption and refresh rotation against a temporary store
//! (single requests and eight at once, which share fsyncs through group commit), and
//! password verification at SPEC parameters.
//!
//! `cargo bench --bench micro` (or `-- <filter>`, e.g. `-- store`). No assertions on
//! time: machines are shared, so compare figures of one run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use latchkey::model::{Alg, AuthCode, Grant, RefreshToken, User};
use latchkey::oidc::claims::{self, AuthFacts};
use latchkey::oidc::params::Params;
use latchkey::oidc::registration::{ClientSpec, build_client};
use latchkey::store::prelude::*;
use latchkey::store::{Consumed, Issued, redb::RedbStore};

fn user() -> User {
    User {
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
        mfa: Default::default(),
        must_change_password: false,
        reset_link: None,
        passkeys_only: false,
        invitation: None,
        email_check: None,
        reset_mailed: false,
        attributes: Default::default(),
        source: None,
        directory_disabled: false,
    }
}

fn tokens(c: &mut Criterion) {
    let records = vec![
        latchkey::keys::signing::generate(Alg::RS256, 0).expect("RSA key"),
        latchkey::keys::signing::generate(Alg::ES256, 0).expect("P-256 key"),
    ];
    let keys = latchkey::keys::KeySet::from_records(&records).expect("key set");
    let user = user();
    let scopes: Vec<String> = ["openid", "profile", "email", "groups"]
        .map(String::from)
        .to_vec();
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
        groups_filter: &[],
    };
    let id_claims = claims::id_token(
        &facts,
        900,
        Some("n-0S6_WzA2Mj"),
        Some("77QmUPtjPfzWtF2AnpK9RQ"),
    );
    c.bench_function("sign ID token RS256", |b| {
        b.iter(|| {
            keys.sign(Alg::RS256, "JWT", black_box(&id_claims))
                .expect("sign")
        })
    });
    c.bench_function("sign ID token ES256", |b| {
        b.iter(|| {
            keys.sign(Alg::ES256, "JWT", black_box(&id_claims))
                .expect("sign")
        })
    });
    let rs = keys.sign(Alg::RS256, "JWT", &id_claims).expect("sign");
    let es = keys.sign(Alg::ES256, "JWT", &id_claims).expect("sign");
    c.bench_function("verify RS256", |b| {
        b.iter(|| keys.verify(black_box(&rs)).expect("verify"))
    });
    c.bench_function("verify ES256", |b| {
        b.iter(|| keys.verify(black_box(&es)).expect("verify"))
    });
    c.bench_function("render JWKS", |b| b.iter(|| keys.jwks().to_string()));

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
    c.bench_function("parse authorization request", |b| {
        b.iter(|| {
            let p = Params::parse(black_box(query).as_bytes());
            let (_, uri) = latchkey::oidc::authorize::identify(&p).expect("identify");
            let uri = latchkey::oidc::authorize::check_redirect_uri(&client, uri.as_deref())
                .expect("uri");
            latchkey::oidc::authorize::parse(&p, &client, &uri).expect("parse")
        })
    });
}

/// The records one code exchange writes, with fresh random keys.
struct Exchange {
    code_hash: String,
    code: AuthCode,
    grant: Grant,
    rt_hash: String,
    rt: RefreshToken,
}

fn exchange() -> Exchange {
    let id = latchkey::clock::random_id;
    let now = latchkey::clock::now();
    let grant = Grant {
        grant_id: id(),
        client_id: "grafana".into(),
        user_id: "k2PpRSm0Nq1xEtyv3fX6Hg".into(),
        created_at: now,
        revoked: false,
        session_hash: "h".into(),
        offline: false,
        userinfo_claims: vec![],
        tokens_until: now + 900,
        keep_until: 0,
    };
    let scopes: Vec<String> = ["openid", "profile"].map(String::from).to_vec();
    Exchange {
        code_hash: id(),
        code: AuthCode {
            client_id: grant.client_id.clone(),
            redirect_uri: "https://grafana.example/cb".into(),
            user_id: grant.user_id.clone(),
            scopes: scopes.clone(),
            nonce: Some("n".into()),
            code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
            grant_id: grant.grant_id.clone(),
            auth_time: now,
            amr: vec!["pwd".into()],
            acr: "1".into(),
            sid: id(),
            session_hash: "h".into(),
            expires_at: now + 60,
            used: false,
            claims: None,
        },
        rt_hash: id(),
        rt: RefreshToken {
            grant_id: grant.grant_id.clone(),
            client_id: grant.client_id.clone(),
            user_id: grant.user_id.clone(),
            scopes,
            auth_time: now,
            amr: vec!["pwd".into()],
            acr: "1".into(),
            sid: id(),
            session_hash: "h".into(),
            offline: false,
            nonce: None,
            issued_at: now,
            expires_at: now + 86_400,
            absolute_expires_at: now + 30 * 86_400,
            used: false,
            claims: None,
        },
        grant,
    }
}

/// Issues a code and redeems it (a non-durable and a durable transaction).
fn code_round(store: &RedbStore) {
    let x = exchange();
    store.put_code(&x.code_hash, &x.code).expect("put code");
    let issued = Issued {
        grant: &x.grant,
        refresh: Some((&x.rt_hash, &x.rt)),
    };
    let r = store.redeem_code(&x.code_hash, &issued).expect("redeem");
    assert!(matches!(r, Consumed::Fresh(_)));
}

/// Time per operation of `op` run by `threads` threads at once, `iters` in all.
fn concurrent(iters: u64, threads: u64, op: impl Fn() + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..iters.div_ceil(threads) {
                    op();
                }
            });
        }
    });
    start.elapsed()
}

fn store(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("latchkey-micro-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let store = RedbStore::open(&dir.join("bench.redb")).expect("store");
    let mut g = c.benchmark_group("store");
    g.sample_size(30);
    g.bench_function("code issue (non-durable commit)", |b| {
        b.iter(|| {
            let x = exchange();
            store.put_code(&x.code_hash, &x.code).expect("put code");
        })
    });
    g.bench_function("code issue + redemption", |b| b.iter(|| code_round(&store)));
    g.bench_function("code issue + redemption, 8 threads (per op)", |b| {
        b.iter_custom(|iters| concurrent(iters, 8, || code_round(&store)))
    });

    let rotate = |old: &str| {
        let x = exchange();
        let r = store
            .rotate_refresh_token(old, &x.rt_hash, &x.rt, x.grant.tokens_until, &[])
            .expect("rotate");
        assert!(matches!(r, Consumed::Fresh(_)));
        x.rt_hash
    };
    let first = exchange();
    store
        .issue_tokens(&Issued {
            grant: &first.grant,
            refresh: Some((&first.rt_hash, &first.rt)),
        })
        .expect("first refresh token");
    let mut current = first.rt_hash;
    g.bench_function("refresh rotation", |b| {
        b.iter(|| current = rotate(&current))
    });
    g.finish();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

fn password(c: &mut Criterion) {
    let params = latchkey::config::PasswordParams::default();
    let pw = "correct horse battery staple 9";
    let phc = latchkey::keys::password::hash(pw, &params).expect("hash");
    let mut g = c.benchmark_group("password");
    g.sample_size(10);
    g.bench_function("verify argon2id m=64MiB t=3 p=1", |b| {
        b.iter(|| assert!(latchkey::keys::password::verify(black_box(pw), &phc)))
    });
    g.finish();
}

criterion_group!(benches, tokens, store, password);
criterion_main!(benches);
