//! Latchkey: a single-binary OpenID Connect Provider. The binary (`main.rs`) is a thin
//! shell over this library, which the integration tests and benchmarks use as well.
//!
//! Direction of use (checked by the `layering` test below; no module names one above it):
//! `server → http → {signin, admin} → {datadir → store, config → oidc → keys} → model`, with
//! `pages`, `tls`, `clock` and the small leaf modules beside them. `oidc` is the pure
//! protocol core; `store` the only place that names redb; `keys` the only place that names
//! a crypto crate; `http` and `server` the only places that name hyper. Stored records are
//! plain `model` types.

pub mod admin;
pub mod cli;
pub mod clock;
pub mod config;
pub mod datadir;
pub mod http;
pub mod keys;
pub mod ldap;
pub mod mail;
pub mod model;
pub mod notify;
pub mod oidc;
pub mod outbound;
pub mod output;
pub mod pages;
pub mod panic;
pub mod server;
pub mod signin;
pub mod store;
#[cfg(test)]
mod testutil;
pub mod tls;

#[cfg(test)]
mod layering {
    use std::collections::BTreeSet;
    use std::path::Path;

    /// What each module may name (`crate::<module>`); `testutil` is free for tests.
    const ALLOWED: &[(&str, &[&str])] = &[
        ("model", &[]),
        ("clock", &[]),
        ("cli", &[]),
        ("outbound", &[]),
        ("output", &[]),
        ("panic", &[]),
        ("pages", &[]),
        ("notify", &[]),
        ("keys", &["clock", "model"]),
        ("oidc", &["clock", "keys", "model"]),
        (
            "config",
            &[
                "clock", "keys", "model", "oidc", "outbound", "pages", "store",
            ],
        ),
        ("store", &["clock", "model", "panic"]),
        ("datadir", &["config", "store"]),
        ("signin", &["config", "keys", "model", "oidc", "store"]),
        ("tls", &["clock", "config"]),
        (
            "mail",
            &["clock", "config", "keys", "model", "pages", "store"],
        ),
        (
            "ldap",
            &[
                "clock", "config", "model", "oidc", "outbound", "panic", "store",
            ],
        ),
        (
            "admin",
            &[
                "clock", "config", "datadir", "keys", "ldap", "mail", "model", "oidc", "output",
                "store",
            ],
        ),
        (
            "http",
            &[
                "admin", "clock", "config", "datadir", "keys", "ldap", "mail", "model", "oidc",
                "outbound", "pages", "signin", "store",
            ],
        ),
    ];

    fn named(path: &Path, out: &mut BTreeSet<String>) {
        if !path.exists() {
            return;
        }
        if path.is_dir() {
            for e in std::fs::read_dir(path).unwrap() {
                named(&e.unwrap().path(), out);
            }
            return;
        }
        if path.extension().is_none_or(|x| x != "rs") {
            return;
        }
        let text = std::fs::read_to_string(path).unwrap();
        for (i, _) in text.match_indices("crate::") {
            let name: String = text[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            out.insert(name);
        }
    }

    #[test]
    fn no_module_names_one_above_it() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        for (module, allowed) in ALLOWED {
            let mut uses = BTreeSet::new();
            named(&src.join(module), &mut uses);
            named(&src.join(format!("{module}.rs")), &mut uses);
            let bad: Vec<&String> = uses
                .iter()
                .filter(|u| *u != module && *u != "testutil" && !allowed.contains(&u.as_str()))
                .collect();
            assert!(bad.is_empty(), "{module} names {bad:?}");
        }
    }
}
