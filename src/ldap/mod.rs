//! The directory (SPEC §11): LDAP and Active Directory through ldap3 over rustls (the
//! aws-lc-rs provider, the system's trust store or `ca_file`). Finds a person with the
//! service account (the username escaped per RFC 4515), checks their password by binding
//! as them (never stored, never logged), and reads their groups. Every call has a
//! deadline; failures name the stage (connection, TLS, bind, search).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ldap3::{
    Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, SearchOptions, ldap_escape,
};

use crate::config::ldap::LdapSettings;

/// Connecting and each operation wait at most this long.
const TIMEOUT: Duration = Duration::from_secs(10);
/// LDAP result code 49: invalid credentials (RFC 4511 §4.1.9).
const INVALID_CREDENTIALS: u32 = 49;
/// LDAP result code 4: more entries than the size limit (here: not one person).
const SIZE_LIMIT_EXCEEDED: u32 = 4;
/// A group search returns at most this many groups.
const MAX_GROUPS: i32 = 500;
/// The group a directory may never grant: Latchkey's administrators are made here.
const LOCAL_ONLY_GROUP: &str = "admin";

/// A person as the directory has them.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub dn: String,
    /// The directory's stable id as Latchkey's user id (16 bytes, base64url).
    pub id: String,
    pub username: String,
    pub email: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub groups: Vec<String>,
}

/// Why the directory did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapError {
    /// `connection`, `TLS`, `bind`, `search`.
    pub stage: &'static str,
    pub detail: String,
}

impl std::fmt::Display for LdapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.stage, self.detail)
    }
}

fn err(stage: &'static str, e: impl std::fmt::Display) -> LdapError {
    LdapError {
        stage,
        detail: e.to_string(),
    }
}

/// A user id from the directory's id: a UUID (entryUUID, ipaUniqueID) as text, or 16
/// bytes (objectGUID); `None` for anything else (such entries are skipped).
pub fn id_from(text: Option<&str>, binary: Option<&[u8]>) -> Option<String> {
    if let Some(b) = binary.filter(|b| b.len() == 16) {
        return Some(URL_SAFE_NO_PAD.encode(b));
    }
    // An objectGUID whose 16 bytes happen to be valid UTF-8 arrives as text.
    if let Some(t) = text.filter(|t| t.len() == 16 && !t.contains('-')) {
        return Some(URL_SAFE_NO_PAD.encode(t.as_bytes()));
    }
    let hex: String = text?.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
        .collect::<Result<_, _>>()
        .ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

/// `filter` with `{name}` replaced by `value` escaped per RFC 4515 (so a username such as
/// `*)(uid=*` matches nothing).
pub fn filter_with(filter: &str, name: &str, value: &str) -> String {
    filter.replace(&format!("{{{name}}}"), &ldap_escape(value))
}

pub struct Directory {
    s: LdapSettings,
    tls: Arc<rustls::ClientConfig>,
}

impl Directory {
    pub fn new(s: &LdapSettings) -> Result<Directory, String> {
        let mut roots = rustls::RootCertStore::empty();
        match &s.ca_pem {
            Some(pem) => {
                let certs = rustls_pemfile_certs(pem)?;
                if certs.is_empty() {
                    return Err("ldap.ca_file: no certificate in it".into());
                }
                for cert in certs {
                    roots.add(cert).map_err(|e| format!("ldap.ca_file: {e}"))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("ldap: TLS set-up: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Directory {
            s: s.clone(),
            tls: Arc::new(tls),
        })
    }

    async fn connect(&self) -> Result<Ldap, LdapError> {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(TIMEOUT)
            .set_starttls(self.s.starttls)
            .set_config(self.tls.clone());
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &self.s.url)
            .await
            .map_err(|e| {
                let text = e.to_string();
                let lower = text.to_lowercase();
                let stage = if lower.contains("tls") || lower.contains("certificate") {
                    "TLS"
                } else {
                    "connection"
                };
                err(stage, text)
            })?;
        ldap3::drive!(conn);
        Ok(ldap)
    }

    /// Connects and binds as the service account.
    async fn service(&self) -> Result<Ldap, LdapError> {
        let mut ldap = self.connect().await?;
        ldap.with_timeout(TIMEOUT)
            .simple_bind(&self.s.bind_dn, self.s.bind_password.expose())
            .await
            .and_then(|r| r.success())
            .map_err(|e| err("bind", format!("as {}: {e}", self.s.bind_dn)))?;
        Ok(ldap)
    }

    /// The person with this username (without groups: see [`Directory::groups`]); `None`
    /// when the directory has no such person, several, or one without a usable id or
    /// username.
    pub async fn find(&self, username: &str) -> Result<Option<Person>, LdapError> {
        let mut ldap = self.service().await?;
        let a = &self.s.attributes;
        let filter = filter_with(&self.s.user_filter, "username", username);
        let wanted = [
            &a.username,
            &a.email,
            &a.given_name,
            &a.family_name,
            &a.name,
            &a.phone,
            &a.id,
        ];
        // Two entries are enough to know it is not one person; every operation has a
        // deadline (ldap3's applies to the next operation only).
        let found = ldap
            .with_timeout(TIMEOUT)
            .with_search_options(SearchOptions::new().sizelimit(2).timelimit(10))
            .search(&self.s.user_base, Scope::Subtree, &filter, wanted.to_vec())
            .await
            .map_err(|e| err("search", e))?;
        let _ = ldap.unbind().await;
        let (entries, result) = (found.0, found.1);
        match result.rc {
            0 => {}
            SIZE_LIMIT_EXCEEDED => return Ok(None),
            rc => {
                return Err(err(
                    "search",
                    format!("the directory answered {rc}: {}", result.text),
                ));
            }
        }
        // Exactly one match, or nobody: never guess between two.
        if entries.len() != 1 {
            return Ok(None);
        }
        let Some(entry) = entries.into_iter().next().and_then(entry_of) else {
            return Ok(None);
        };
        let first = |name: &str| {
            entry
                .attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.first())
                .cloned()
        };
        let binary = entry
            .bin_attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&a.id))
            .and_then(|(_, v)| v.first())
            .map(Vec::as_slice);
        let Some(id) = id_from(first(&a.id).as_deref(), binary) else {
            tracing::warn!(dn = %entry.dn, attribute = %a.id, "directory entry without a unique id: skipped");
            return Ok(None);
        };
        let Some(name) = first(&a.username).filter(|n| crate::model::valid_username(n)) else {
            tracing::warn!(dn = %entry.dn, attribute = %a.username, "directory entry without a usable username: skipped");
            return Ok(None);
        };
        let clip = |v: Option<String>| v.map(|t| t.chars().take(200).collect::<String>());
        Ok(Some(Person {
            id,
            username: name,
            email: first(&a.email)
                .filter(|e| crate::model::valid_email(e))
                .unwrap_or_default(),
            given_name: clip(first(&a.given_name)),
            family_name: clip(first(&a.family_name)),
            name: clip(first(&a.name)),
            phone: clip(first(&a.phone)),
            dn: entry.dn,
            groups: vec![],
        }))
    }

    /// The groups of the person `dn` (read once their password was checked). Names that
    /// are not Latchkey group names, and `admin` (granted only here, never by a
    /// directory), are left out.
    pub async fn groups(&self, dn: &str) -> Result<Vec<String>, LdapError> {
        let mut ldap = self.service().await?;
        let filter = filter_with(&self.s.group_filter, "dn", dn);
        let found = ldap
            .with_timeout(TIMEOUT)
            .with_search_options(SearchOptions::new().sizelimit(MAX_GROUPS).timelimit(10))
            .search(&self.s.group_base, Scope::Subtree, &filter, vec!["cn"])
            .await
            .map_err(|e| err("search", format!("groups: {e}")))?;
        let _ = ldap.unbind().await;
        if !matches!(found.1.rc, 0 | SIZE_LIMIT_EXCEEDED) {
            return Err(err(
                "search",
                format!("groups: the directory answered {}", found.1.rc),
            ));
        }
        let mut groups: Vec<String> = found
            .0
            .into_iter()
            .filter_map(entry_of)
            .filter_map(|e| e.attrs.get("cn").and_then(|v| v.first()).cloned())
            .filter(|g| crate::oidc::registration::valid_group_name(g) && g != LOCAL_ONLY_GROUP)
            .collect();
        groups.sort();
        groups.dedup();
        Ok(groups)
    }

    /// Whether `password` is the person's: a bind as them. An empty password is never
    /// tried (RFC 4513 §5.1.2: it would be an unauthenticated bind, which succeeds).
    pub async fn check_password(&self, dn: &str, password: &str) -> Result<bool, LdapError> {
        if password.is_empty() || dn.is_empty() {
            return Ok(false);
        }
        let mut ldap = self.connect().await?;
        let result = ldap
            .with_timeout(TIMEOUT)
            .simple_bind(dn, password)
            .await
            .map_err(|e| err("bind", e))?;
        let _ = ldap.unbind().await;
        match result.rc {
            0 => Ok(true),
            INVALID_CREDENTIALS => Ok(false),
            rc => Err(err(
                "bind",
                format!("the directory answered {rc}: {}", result.text),
            )),
        }
    }

    /// `latchkey ldap test`: the service account binds, and the person (if named) is
    /// found, with their groups, as a JSON report.
    pub async fn report(&self, username: Option<&str>) -> Result<serde_json::Value, LdapError> {
        let mut ldap = self.service().await?;
        let _ = ldap.unbind().await;
        let mut out =
            serde_json::json!({"url": self.s.url, "bind": format!("ok as {}", self.s.bind_dn)});
        if let Some(name) = username {
            out["user"] = match self.find(name).await? {
                Some(p) => {
                    let groups = self.groups(&p.dn).await?;
                    serde_json::json!({
                        "dn": p.dn, "id": p.id, "username": p.username, "email": p.email,
                        "given_name": p.given_name, "family_name": p.family_name,
                        "name": p.name, "phone": p.phone, "groups": groups,
                    })
                }
                None => serde_json::Value::Null,
            };
        }
        Ok(out)
    }
}

/// A search result entry, parsed without letting a malformed answer panic the server.
fn entry_of(e: ldap3::ResultEntry) -> Option<SearchEntry> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| SearchEntry::construct(e))).ok()
}

/// The certificates of a PEM file.
fn rustls_pemfile_certs(
    pem: &[u8],
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("ldap.ca_file: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_ids_become_user_ids() {
        let a = id_from(Some("94cd5b38-8499-1041-8458-c577a8ba1803"), None).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 16);
        assert_eq!(
            id_from(None, Some(&[7u8; 16])),
            Some(URL_SAFE_NO_PAD.encode([7u8; 16]))
        );
        assert_eq!(id_from(Some("not-a-uuid"), None), None);
        assert_eq!(id_from(None, Some(&[1, 2, 3])), None);
    }

    #[test]
    fn usernames_are_escaped_in_filters() {
        let f = filter_with(
            "(&(objectClass=person)(uid={username}))",
            "username",
            "*)(uid=*",
        );
        assert_eq!(f, "(&(objectClass=person)(uid=\\2a\\29\\28uid=\\2a))");
        let g = filter_with("(member={dn})", "dn", "cn=a\\,b,dc=x");
        assert!(g.contains("\\5c"), "{g}");
    }
}
