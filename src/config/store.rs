//! `[store]` (SPEC §13): redb (the default, a file in the data directory) or PostgreSQL,
//! checked when the configuration is loaded (files read then, errors naming the key).

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use crate::store::postgres::PgSettings;

/// Where the records live.
#[derive(Clone, Default)]
pub enum Backend {
    /// `latchkey.redb` in the data directory.
    #[default]
    Redb,
    Postgres {
        settings: Box<PgSettings>,
        /// The URL without its password, for messages.
        shown: String,
    },
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Redb => f.write_str("redb"),
            Backend::Postgres { shown, .. } => write!(f, "postgres ({shown})"),
        }
    }
}

/// `[store]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub backend: Option<String>,
    pub url: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    /// Connections a node keeps to PostgreSQL at most (default 16).
    pub pool_size: Option<usize>,
}

/// Whether `host` is this machine (plain connections are allowed only there).
fn is_local(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.starts_with('/')
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub fn settings(raw: RawStore) -> Result<Backend, String> {
    match raw.backend.as_deref().unwrap_or("redb") {
        "redb" => {
            if raw.url.is_some() || raw.password_file.is_some() || raw.ca_file.is_some() {
                return Err(
                    "store.url, store.password_file and store.ca_file are for backend = \"postgres\""
                        .into(),
                );
            }
            Ok(Backend::Redb)
        }
        "postgres" => postgres(raw),
        other => Err(format!(
            "store.backend: {other:?} is not \"redb\" or \"postgres\""
        )),
    }
}

fn postgres(raw: RawStore) -> Result<Backend, String> {
    let text = raw
        .url
        .ok_or("store.url: required with backend = \"postgres\" (postgres://user@host/db)")?;
    let mut url =
        url::Url::parse(&text).map_err(|e| format!("store.url: not a postgres:// URL ({e})"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err("store.url: must start with postgres://".into());
    }
    if url.password().is_some() {
        return Err(
            "store.url: put the password in store.password_file, not in the URL (it would show in \
             process lists and logs)"
                .into(),
        );
    }
    let mut sslmode = None;
    let mut kept = Vec::new();
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "sslmode" => sslmode = Some(v.into_owned()),
            "sslrootcert" => return Err("store.url: give the CA as store.ca_file".into()),
            "password" | "passfile" => {
                return Err(
                    "store.url: put the password in store.password_file, not in the URL (it \
                     would show in process lists and logs)"
                        .into(),
                );
            }
            _ => kept.push((k.into_owned(), v.into_owned())),
        }
    }
    url.query_pairs_mut().clear().extend_pairs(&kept);
    let mut clean = url.to_string();
    if kept.is_empty() {
        clean = clean.trim_end_matches('?').to_string();
    }
    let mut config: tokio_postgres::Config =
        clean.parse().map_err(|e| format!("store.url: {e}"))?;
    // Every address the driver may connect to, as it reads them (the URL's host, each
    // `host=`, each `hostaddr=`): plain text only when all of them are this machine.
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => return Err("store.url: names no host".into()),
    };
    let local = config.get_hosts().iter().all(|h| match h {
        Host::Tcp(h) => is_local(h),
        Host::Unix(_) => true,
    }) && config.get_hostaddrs().iter().all(|a| a.is_loopback());
    let tls = match sslmode.as_deref() {
        None => !local,
        Some("disable") if local => false,
        Some("disable") => {
            return Err(format!(
                "store.url: sslmode=disable only to this machine; {host} is reached over TLS \
                 (sslmode=verify-full)"
            ));
        }
        // Latchkey never talks TLS without checking who answers: these all verify the
        // certificate chain and the host name.
        Some("require" | "verify-ca" | "verify-full") => true,
        Some(other @ ("allow" | "prefer")) => {
            return Err(format!(
                "store.url: sslmode={other} would fall back to plain text; use verify-full"
            ));
        }
        Some(other) => return Err(format!("store.url: unknown sslmode {other:?}")),
    };
    if config.get_user().is_none() {
        return Err("store.url: names no user (postgres://latchkey@host/db)".into());
    }
    if config.get_dbname().is_none() {
        return Err("store.url: names no database (postgres://latchkey@host/db)".into());
    }
    if let Some(p) = &raw.password_file {
        let password = super::mail::read_secret_file(p)
            .map_err(|e| e.replacen("mail.password_file", "store.password_file", 1))?;
        config.password(password.as_bytes());
    }
    config
        .ssl_mode(if tls {
            tokio_postgres::config::SslMode::Require
        } else {
            tokio_postgres::config::SslMode::Disable
        })
        .connect_timeout(std::time::Duration::from_secs(10))
        .keepalives(true)
        .application_name("latchkey");
    let ca_pem = match &raw.ca_file {
        None => None,
        Some(p) => {
            Some(std::fs::read(p).map_err(|e| format!("store.ca_file: {}: {e}", p.display()))?)
        }
    };
    if ca_pem.is_some() && !tls {
        return Err(
            "store.ca_file: only with TLS (a host other than this machine, or sslmode=verify-full)"
                .into(),
        );
    }
    let tls = if tls {
        Some(Arc::new(crate::outbound::tls_client_config(
            ca_pem.as_deref(),
            "store",
        )?))
    } else {
        None
    };
    let pool_size = raw.pool_size.unwrap_or(16);
    if !(1..=256).contains(&pool_size) {
        return Err("store.pool_size: between 1 and 256".into());
    }
    Ok(Backend::Postgres {
        settings: Box::new(PgSettings {
            config,
            tls,
            pool_size,
        }),
        shown: clean,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(url: &str) -> Result<Backend, String> {
        settings(RawStore {
            backend: Some("postgres".into()),
            url: Some(url.into()),
            ..RawStore::default()
        })
    }

    fn uses_tls(b: &Backend) -> bool {
        match b {
            Backend::Postgres { settings, .. } => settings.tls.is_some(),
            Backend::Redb => panic!("not postgres"),
        }
    }

    #[test]
    fn redb_is_the_default_and_postgres_is_checked() {
        assert!(matches!(settings(RawStore::default()), Ok(Backend::Redb)));
        assert!(
            settings(RawStore {
                backend: Some("sqlite".into()),
                ..RawStore::default()
            })
            .unwrap_err()
            .starts_with("store.backend")
        );
        assert!(pg("mysql://a@b/c").unwrap_err().contains("postgres://"));
        assert!(
            pg("postgres://a:secret@db/c")
                .unwrap_err()
                .contains("password_file")
        );
        assert!(
            pg("postgres://db.example.lan/latchkey")
                .unwrap_err()
                .contains("no user")
        );
        assert!(
            pg("postgres://latchkey@db.example.lan/x?sslmode=prefer")
                .unwrap_err()
                .contains("plain text")
        );
        assert!(
            pg("postgres://latchkey@db.example.lan/x?sslmode=disable")
                .unwrap_err()
                .contains("only to this machine")
        );
    }

    #[test]
    fn plain_text_only_when_every_address_is_this_machine() {
        for url in [
            "postgres://u@db.remote/x?host=/run/postgresql",
            "postgres://u@localhost/x?host=db.remote",
            "postgres://u@localhost/x?hostaddr=203.0.113.5",
        ] {
            assert!(uses_tls(&pg(url).unwrap()), "{url}");
            assert!(
                pg(&format!("{url}&sslmode=disable"))
                    .unwrap_err()
                    .contains("only to this machine"),
                "{url}"
            );
        }
        assert!(!uses_tls(
            &pg("postgres://u@localhost/x?host=/run/postgresql").unwrap()
        ));
        assert!(
            pg("postgres://u@db/x?password=secret")
                .unwrap_err()
                .contains("password_file")
        );
        assert!(
            pg("postgres://u@db/x?passfile=/root/.pgpass")
                .unwrap_err()
                .contains("password_file")
        );
    }

    #[test]
    fn tls_unless_the_database_is_on_this_machine() {
        assert!(uses_tls(
            &pg("postgres://latchkey@db.example.lan/latchkey").unwrap()
        ));
        assert!(uses_tls(
            &pg("postgres://latchkey@db.example.lan/latchkey?sslmode=require").unwrap()
        ));
        assert!(!uses_tls(
            &pg("postgres://latchkey@127.0.0.1:5432/latchkey").unwrap()
        ));
        assert!(uses_tls(
            &pg("postgres://latchkey@localhost/latchkey?sslmode=verify-full").unwrap()
        ));
        match pg("postgres://latchkey@[::1]:5433/latchkey?sslmode=disable&connect_timeout=3")
            .unwrap()
        {
            Backend::Postgres { shown, settings } => {
                assert!(!shown.contains("sslmode"), "{shown}");
                assert_eq!(settings.config.get_ports(), &[5433]);
            }
            Backend::Redb => panic!(),
        }
    }

    /// `sslmode=verify-full` with `ca_file` against a real PostgreSQL serving TLS with a
    /// certificate from a test CA: accepted; the same server under another CA: refused,
    /// and nothing falls back to plain text.
    #[test]
    fn verify_full_with_a_ca_file_against_a_real_server() {
        let db = crate::testutil::postgres::private();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
        db.enable_tls(&leaf.pem(), &leaf_key.serialize_pem());
        let dir = crate::testutil::TempDir::new("pg-ca");
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, ca.pem()).unwrap();
        let other_key = rcgen::KeyPair::generate().unwrap();
        let mut other_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        other_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let bad = dir.path().join("other.pem");
        std::fs::write(&bad, other_params.self_signed(&other_key).unwrap().pem()).unwrap();
        let url = db.database().replace("127.0.0.1", "localhost") + "?sslmode=verify-full";
        let open = |ca: &std::path::Path| {
            let backend = settings(RawStore {
                backend: Some("postgres".into()),
                url: Some(url.clone()),
                ca_file: Some(ca.to_path_buf()),
                pool_size: Some(1),
                ..RawStore::default()
            })
            .unwrap();
            let Backend::Postgres { settings, .. } = backend else {
                panic!("not postgres")
            };
            assert!(settings.tls.is_some());
            crate::store::postgres::PgStore::open(&settings)
        };
        let store = open(&good).expect("TLS with the right CA");
        assert_eq!(store.count("users").unwrap(), 0);
        let refused = open(&bad).err().expect("another CA is refused");
        assert!(
            matches!(refused, crate::store::StoreError::Unavailable(ref m) if m.contains("certificate")),
            "{refused}"
        );
    }
}
