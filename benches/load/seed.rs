//! Fills the database of a stopped server through the library: users (all sharing one
//! real argon2id hash of `PASSWORD`, so any of them can sign in), clients, and live
//! refresh tokens that are never used (the weight a restart and a lookup must carry).
//! Writes run on several threads, so durable commits are group-committed as in the server.

use std::sync::atomic::{AtomicUsize, Ordering};

use latchkey::model::{Client, Grant, RefreshToken, User};
use latchkey::oidc::registration::{ClientSpec, build_client};
use latchkey::store::Issued;
use latchkey::store::prelude::*;

pub(crate) const PASSWORD: &str = "correct horse battery staple 9";
pub(crate) const CALLBACK: &str = "https://rp.example/cb";
const THREADS: usize = 16;

pub(crate) fn password_hash() -> String {
    latchkey::keys::password::hash(PASSWORD, &latchkey::config::PasswordParams::default())
        .expect("hash")
}

pub(crate) fn user_name(i: usize) -> String {
    format!("user-{i:06}")
}

pub(crate) fn client_id(i: usize) -> String {
    format!("client-{i:03}")
}

/// Every seeded client has this secret (client_secret_basic).
pub(crate) fn client_secret(i: usize) -> String {
    format!("secret-of-client-{i:03}-0123456789abcdef")
}

/// A client declared in the configuration with an argon2id secret hash (SPEC §3): the
/// server verifies the slow hash once and remembers the secret.
pub(crate) const DECLARED_CLIENT: &str = "declared-argon2";
pub(crate) const DECLARED_SECRET: &str = "declared-client-secret-0123456789";

/// The `[[clients]]` entry for it.
pub(crate) fn declared_client_config() -> String {
    let hash = latchkey::keys::password::hash(
        DECLARED_SECRET,
        &latchkey::config::PasswordParams::default(),
    )
    .expect("hash");
    format!(
        "[[clients]]\nclient_id = \"{DECLARED_CLIENT}\"\nsecret_hash = \"{hash}\"\n\
         grant_types = [\"client_credentials\"]\n"
    )
}

/// Runs `f(i)` for `range` on `THREADS` threads.
fn parallel(range: std::ops::Range<usize>, f: impl Fn(usize) + Sync) {
    let next = AtomicUsize::new(range.start);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= range.end {
                        return;
                    }
                    f(i);
                }
            });
        }
    });
}

pub(crate) fn users(store: &dyn Store, range: std::ops::Range<usize>, hash: &str) {
    let now = latchkey::clock::now();
    parallel(range, |i| {
        let name = user_name(i);
        let u = User {
            id: latchkey::clock::random_id(),
            email: format!("{name}@example.com"),
            username: name,
            email_verified: false,
            given_name: Some("Load".into()),
            family_name: Some(format!("Tester {i}")),
            phone: None,
            address: None,
            groups: vec!["staff".into()],
            password_hash: hash.to_string(),
            disabled: false,
            created_at: now,
            updated_at: now,
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
        };
        store.create_user(&u).expect("create user");
    });
}

pub(crate) fn clients(store: &dyn Store, range: std::ops::Range<usize>) {
    let now = latchkey::clock::now();
    parallel(range, |i| {
        let spec = ClientSpec {
            name: format!("Load client {i}"),
            redirect_uris: vec![CALLBACK.into()],
            scopes: ["openid", "profile", "email", "offline_access"]
                .map(String::from)
                .to_vec(),
            grant_types: ["authorization_code", "refresh_token", "client_credentials"]
                .map(String::from)
                .to_vec(),
            skip_consent: true,
            ..ClientSpec::default()
        };
        let mut c: Client = build_client(client_id(i), spec, now).expect("client");
        c.secret_hash = Some(latchkey::keys::client_secret_hash(&client_secret(i)));
        store.create_client(&c).expect("create client");
    });
}

/// `n` live refresh tokens spread over the first `users` users and client 0.
pub(crate) fn refresh_tokens(store: &dyn Store, n: usize, users: &[User]) {
    let now = latchkey::clock::now();
    parallel(0..n, |i| {
        let user = &users[i % users.len()];
        let grant = Grant {
            grant_id: latchkey::clock::random_id(),
            client_id: client_id(0),
            user_id: user.id.clone(),
            created_at: now,
            revoked: false,
            session_hash: String::new(),
            offline: true,
            userinfo_claims: vec![],
            tokens_until: now + 600,
            keep_until: 0,
        };
        let scopes: Vec<String> = ["openid", "offline_access"].map(String::from).to_vec();
        let rt = RefreshToken {
            grant_id: grant.grant_id.clone(),
            client_id: grant.client_id.clone(),
            user_id: user.id.clone(),
            scopes,
            auth_time: now,
            amr: vec!["pwd".into()],
            acr: "1".into(),
            sid: latchkey::clock::random_id(),
            session_hash: String::new(),
            offline: true,
            nonce: None,
            issued_at: now,
            expires_at: now + 30 * 86_400,
            absolute_expires_at: now + 90 * 86_400,
            used: false,
            claims: None,
        };
        let hash = latchkey::keys::token_hash(&latchkey::clock::random_token());
        store
            .issue_tokens(&Issued {
                grant: &grant,
                refresh: Some((&hash, &rt)),
            })
            .expect("issue tokens");
    });
}
