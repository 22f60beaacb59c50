//! Fuzz targets for the parsers that face the network or the administrator, on the stable
//! toolchain (no nightly for cargo-fuzz here): a seeded mutation fuzzer that starts from
//! the corpus in `fuzz/corpus/<target>/`, mutates (bit flips, boundary bytes, insertions,
//! deletions, repetition up to oversize, splices between corpus entries, target
//! dictionaries) and feeds each input to the target under `catch_unwind`.
//!
//! Each target runs for `LATCHKEY_FUZZ_SECS` seconds (default 3; `scripts/test` runs the
//! default, `LATCHKEY_FUZZ_SECS=300 cargo test --test fuzz -- --nocapture` is a long run).
//! A failing input is written to `target/fuzz-failures/` with the seed that found it; add it
//! to the corpus once fixed. `LATCHKEY_FUZZ_SEED` replays a run.
//!
//! Targets do more than "does not panic": each checks a property of its parser.

#![allow(clippy::unwrap_used)] // a failing set-up should stop the run loudly

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey::admin::socket::decode as decode_admin;
use latchkey::admin::{Command, NewUser, execute};
use latchkey::config::{self, Env};
use latchkey::keys::assertion::{self, ClientKeys};
use latchkey::keys::signing::{self, KeySet};
use latchkey::model::{Alg, Client};
use latchkey::oidc::authorize;
use latchkey::oidc::params::Params;
use latchkey::oidc::registration::{self, ClientSpec};
use latchkey::store::redb::RedbStore;
use serde_json::{Map, Value, json};

/// splitmix64: a small deterministic generator, enough to choose mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const MAX_INPUT: usize = 256 * 1024;
const BOUNDARY: &[u8] = b"\x00\xff\x7f\x80%&=.\"\\\n\r#?/@:;+ \t{}[]<>'";

fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>], dict: &[&[u8]]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(9) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = BOUNDARY[rng.below(BOUNDARY.len())];
            }
            2 => {
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(at..at, bytes);
            }
            3 if !v.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                let start = at.min(end);
                v.drain(start..end);
            }
            4 if !v.is_empty() => {
                // Repetition: usually a little, sometimes up to oversize.
                let start = rng.below(v.len());
                let end = (start + 1 + rng.below(32)).min(v.len());
                let times = if rng.below(16) == 0 {
                    1 + rng.below(4096)
                } else {
                    1 + rng.below(4)
                };
                let chunk = v[start..end].repeat(times);
                v.splice(end..end, chunk);
            }
            5 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                let from = rng.below(other.len() + 1);
                v.truncate(at);
                v.extend_from_slice(&other[from..]);
            }
            6 | 7 if !dict.is_empty() => {
                let word = dict[rng.below(dict.len())];
                if rng.below(2) == 0 {
                    v.splice(at..at, word.iter().copied());
                } else {
                    let end = (at + word.len()).min(v.len());
                    v.splice(at..end, word.iter().copied());
                }
            }
            _ => v.insert(at.min(v.len()), BOUNDARY[rng.below(BOUNDARY.len())]),
        }
    }
    v.truncate(MAX_INPUT);
    v
}

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn load_corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let corpus: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(!corpus.is_empty(), "{}: empty corpus", dir.display());
    corpus
}

/// Runs `check` on every seed, then on mutations until the time is up. Returns the count.
fn fuzz(target: &str, extra_seeds: Vec<Vec<u8>>, dict: &[&[u8]], check: impl Fn(&[u8])) -> u64 {
    let mut corpus = load_corpus(target);
    corpus.extend(extra_seeds);
    let secs: u64 = std::env::var("LATCHKEY_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let seed: u64 = std::env::var("LATCHKEY_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from_le_bytes(latchkey::clock::random_bytes::<8>()));
    let mut rng = Rng(seed ^ target.len() as u64);
    let run = |input: &[u8]| {
        if catch_unwind(AssertUnwindSafe(|| check(input))).is_err() {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures");
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join(format!("{target}-{seed}.bin"));
            std::fs::write(&file, input).unwrap();
            panic!(
                "fuzz target {target} failed (LATCHKEY_FUZZ_SEED={seed}); input saved to {}",
                file.display()
            );
        }
    };
    for input in &corpus {
        run(input);
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut count = corpus.len() as u64;
    let mut last = corpus[0].clone();
    while Instant::now() < deadline {
        // Mostly fresh mutations of a seed, sometimes stacked on the previous input.
        let base = if rng.below(4) == 0 {
            last.clone()
        } else {
            corpus[rng.below(corpus.len())].clone()
        };
        let input = mutate(&mut rng, &base, &corpus, dict);
        run(&input);
        last = input;
        count += 1;
    }
    eprintln!("fuzz {target}: {count} inputs in {secs} s (LATCHKEY_FUZZ_SEED={seed}), no failure");
    count
}

const FORM_DICT: &[&[u8]] = &[
    b"&",
    b"=",
    b"+",
    b"%",
    b"%2",
    b"%zz",
    b"%00",
    b"%C3%A9",
    b"%FF",
    b"%E2%82",
    b"client_id=",
    b"redirect_uri=",
    b"scope=",
    b"response_type=",
    b"state=",
    b"nonce=",
    b"code_challenge=",
    b"code_challenge_method=",
    b"prompt=",
    b"max_age=",
    b"request=",
    b"request_uri=",
    b"claims=",
    b"response_mode=",
    b"id_token_hint=",
    b"login_hint=",
    b"ui_locales=",
    b"display=",
];

#[test]
fn form_and_query_decoder() {
    fuzz("form", vec![], FORM_DICT, |input| {
        let p = Params::parse(input);
        // RFC 6749 §3.1: an empty value counts as absent; a repeated one is an error.
        let mut values: std::collections::HashMap<&str, Vec<&str>> = Default::default();
        for (k, v) in &p.0 {
            let entry = values.entry(k.as_str()).or_default();
            if !v.is_empty() {
                entry.push(v.as_str());
            }
        }
        // A name any of whose pairs was not UTF-8 (name or value) is refused as such.
        let not_utf8: std::collections::HashSet<String> = input
            .split(|&b| b == b'&')
            .filter(|pair| !pair.is_empty())
            .filter_map(|pair| {
                let plus: Vec<u8> = pair
                    .iter()
                    .map(|&b| if b == b'+' { b' ' } else { b })
                    .collect();
                let (k, v) = match plus.iter().position(|&b| b == b'=') {
                    Some(i) => (&plus[..i], &plus[i + 1..]),
                    None => (&plus[..], &plus[plus.len()..]),
                };
                let ok = |x: &[u8]| percent_encoding::percent_decode(x).decode_utf8().is_ok();
                (!(ok(k) && ok(v))).then(|| {
                    percent_encoding::percent_decode(k)
                        .decode_utf8_lossy()
                        .into_owned()
                })
            })
            .collect();
        for (name, present) in values {
            if not_utf8.contains(name) {
                let e = p
                    .get(name)
                    .expect_err("a name with bytes that are not UTF-8");
                let shown: String = name.chars().take(64).collect();
                assert_eq!(e.to_string(), format!("{shown} is not valid UTF-8"));
                continue;
            }
            match (p.get(name), present.as_slice()) {
                (Ok(None), []) | (Err(_), [_, _, ..]) => {}
                (Ok(Some(v)), [only]) => assert_eq!(v, *only),
                (got, present) => panic!("{name:?}: get {got:?} but values {present:?}"),
            }
            assert_eq!(p.contains(name), !present.is_empty());
        }
    });
}

fn client(id: &str, redirect: &str, public: bool) -> Option<Client> {
    registration::build_client(
        id.to_string(),
        ClientSpec {
            name: "Fuzz".into(),
            redirect_uris: vec![redirect.to_string()],
            public,
            scopes: vec![
                "openid".into(),
                "profile".into(),
                "email".into(),
                "groups".into(),
            ],
            grant_types: vec![
                "authorization_code".into(),
                "refresh_token".into(),
                "implicit".into(),
            ],
            response_types: vec!["code".into(), "id_token".into(), "code id_token".into()],
            ..ClientSpec::default()
        },
        1_700_000_000,
    )
    .ok()
}

#[test]
fn authorization_request_parser() {
    let confidential = client("fuzz-app", "https://rp.example/cb", false).unwrap();
    let native = client("fuzz-native", "http://127.0.0.1/cb", true).unwrap();
    fuzz("authorize", vec![], FORM_DICT, |input| {
        let p = Params::parse(input);
        let Ok((client_id, redirect)) = authorize::identify(&p) else {
            return;
        };
        let client = if client_id == native.client_id {
            &native
        } else {
            &confidential
        };
        let Ok(uri) = authorize::check_redirect_uri(client, redirect.as_deref()) else {
            return;
        };
        match authorize::parse(&p, client, &uri) {
            Ok(req) => {
                // A parsed request is bound to the client and the verified redirect_uri, and
                // what the user is asked to grant stays within the client's scopes.
                assert_eq!(req.client_id, client.client_id);
                assert_eq!(req.redirect_uri, uri);
                let asked = authorize::consent_scopes(&req, client);
                assert!(asked.iter().all(|s| client.scopes.contains(s)), "{asked:?}");
            }
            Err(e) => {
                // Errors go back to the verified redirect_uri, never elsewhere.
                assert_eq!(e.redirect_uri, uri);
                let params = authorize::error_params(&e.error, e.state.as_deref(), "https://op");
                let _ = authorize::deliver(&e.redirect_uri, e.response_mode, params);
            }
        }
    });
}

#[test]
fn redirect_uri_matching() {
    // Input: "registered\npresented", first byte odd = public client.
    fuzz(
        "redirect",
        vec![],
        &[
            b"http://127.0.0.1",
            b"http://[::1]",
            b":8080",
            b":0",
            b"https://",
            b"@",
            b"#",
            b"?",
            b"/..",
            b"%2F",
            b"%2e",
            b"\\",
            b"HTTPS://",
            b"\n",
        ],
        |input| {
            let text = String::from_utf8_lossy(input);
            let Some((registered, presented)) = text.split_once('\n') else {
                let _ = registration::check_redirect_uri(&text);
                return;
            };
            let public = input.first().is_some_and(|b| b & 1 == 1);
            let Some(c) = client("fuzz", registered, public) else {
                return;
            };
            if let Ok(matched) = authorize::check_redirect_uri(&c, Some(presented)) {
                assert_eq!(matched, presented);
                if presented != registered {
                    // Only the RFC 8252 loopback port may differ, and only for public clients.
                    assert!(
                        public,
                        "{presented:?} matched {registered:?} for a confidential client"
                    );
                    let loopback = |u: &str| {
                        u.starts_with("http://127.0.0.1") || u.starts_with("http://[::1]")
                    };
                    assert!(loopback(presented) && loopback(registered));
                    let strip = |u: &str| {
                        let (host, rest) = u.split_at(if u.starts_with("http://[::1]") {
                            12
                        } else {
                            16
                        });
                        let rest = rest
                            .strip_prefix(':')
                            .map(|r| r.trim_start_matches(|c: char| c.is_ascii_digit()))
                            .unwrap_or(rest);
                        format!("{host}{rest}")
                    };
                    assert_eq!(strip(presented), strip(registered));
                }
            }
        },
    );
}

#[test]
fn jwt_and_jws_parsing() {
    let now = 1_700_000_000;
    let record = signing::generate(Alg::ES256, now).unwrap();
    let keys = KeySet::from_records(&[record]).unwrap();
    let mut claims = Map::new();
    claims.insert("iss".into(), json!("https://op.example"));
    claims.insert("sub".into(), json!("alice"));
    claims.insert("aud".into(), json!("fuzz"));
    claims.insert("exp".into(), json!(now + 300));
    let signed = keys.sign(Alg::ES256, "JWT", &claims).unwrap();
    let jwks = keys.jwks();
    let secret = "a-client-secret-that-is-long-enough-for-hs256";
    let hs = hs256(secret, &claims);
    fuzz(
        "jwt",
        vec![signed.clone().into_bytes(), hs.clone().into_bytes()],
        &[
            b".",
            b"eyJ",
            b"eyJhbGciOiJub25lIn0",
            b"=",
            b"+",
            b"/",
            b"AAAA",
            b"\"",
        ],
        |input| {
            let Ok(token) = std::str::from_utf8(input) else {
                return;
            };
            // Any change to a signed token must fail verification.
            if keys.verify(token).is_ok() {
                assert_eq!(token, signed, "a modified token verified");
            }
            if assertion::verify(token, ClientKeys::Jwks(&jwks)).is_ok() {
                assert_eq!(token, signed, "a modified client assertion verified");
            }
            if assertion::verify(token, ClientKeys::Secret(secret)).is_ok() {
                assert_eq!(token, hs, "a modified HS256 assertion verified");
            }
        },
    );
}

fn hs256(secret: &str, claims: &Map<String, Value>) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "typ": "JWT"}).to_string()),
        URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

fn env() -> Env {
    Env {
        hostname: "fuzz.example".into(),
        ..Env::default()
    }
}

#[test]
fn config_parser() {
    fuzz(
        "config",
        vec![],
        &[
            b"issuer = ",
            b"listen = ",
            b"data_dir = ",
            b"[tls]",
            b"[password]",
            b"[limits]",
            b"\"",
            b"'''",
            b"= 0",
            b"= -1",
            b"= 99999999999999999999",
            b"\n[",
            b"]]",
        ],
        |input| {
            let text = String::from_utf8_lossy(input);
            if let Ok(c) = config::parse(Some(&text), &env()) {
                // What validates must keep validating: the issuer is an absolute URL.
                assert!(
                    c.issuer.starts_with("https://") || c.issuer.starts_with("http://"),
                    "{}",
                    c.issuer
                );
            }
        },
    );
}

#[test]
fn admin_socket_protocol() {
    let dir = std::env::temp_dir().join(format!("latchkey-fuzz-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = RedbStore::open(&dir.join("fuzz.redb")).unwrap();
    let cfg = config::parse(
        Some(&format!(
            "issuer = \"https://op.example\"\ndata_dir = \"{}\"\n[password]\nmemory_kib = 19456\niterations = 2\n",
            dir.display()
        )),
        &env(),
    )
    .unwrap();
    let seeds: Vec<Vec<u8>> = [
        Command::UserAdd {
            user: NewUser {
                username: "alice".into(),
                email: "alice@example.com".into(),
                given_name: None,
                family_name: None,
                phone: None,
                address: Default::default(),
                groups: vec!["staff".into()],
                must_change_password: false,
                email_verified: false,
                attributes: None,
            },
            password: "correct horse battery staple".into(),
            admin: false,
            temporary: false,
        },
        Command::UserList,
        Command::ClientAdd {
            spec: ClientSpec {
                name: "App".into(),
                redirect_uris: vec!["https://app.example/cb".into()],
                ..ClientSpec::default()
            },
            preset: None,
        },
        Command::KeysList,
        Command::Audit {
            since: 0,
            user: Some("alice".into()),
            limit: 5,
        },
    ]
    .iter()
    .map(|c| serde_json::to_vec(c).unwrap())
    .collect();
    let count = fuzz(
        "admin",
        seeds,
        &[
            b"\"command\":",
            b"\"user-add\"",
            b"\"client-update\"",
            b"\"keys-rotate\"",
            b"\"audit\"",
            b"null",
            b"-1",
            b"18446744073709551616",
            b"\"\\u0000\"",
            b"[]",
            b"{}",
        ],
        |input| {
            let line = String::from_utf8_lossy(input);
            if let Ok(cmd) = decode_admin(&line) {
                // Backups stream files; everything else runs against a scratch store.
                if !matches!(cmd, Command::Backup) {
                    let result = execute(&store, &cfg, cmd, "fuzz", 1_700_000_000);
                    if let Err(e) = result {
                        assert!(!e.message.is_empty());
                    }
                }
            } else if let Err(e) = decode_admin(&line) {
                assert!(e.message.starts_with("bad admin request"));
            }
        },
    );
    assert!(count > 0);
    let _ = std::fs::remove_dir_all(&dir);
}
