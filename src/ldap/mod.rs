//! The directory (SPEC §11): LDAP and Active Directory through ldap3 over rustls (the
//! aws-lc-rs provider, the system's trust store or `ca_file`). Finds a person with the
//! service account (the username escaped per RFC 4515), checks their password by binding
//! as them (never stored, never logged), and reads their groups. Every call has a
//! deadline; failures name the stage (connection, TLS, bind, search). [`sync`] brings
//! the local records up to date with the whole directory.

pub mod sync;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ldap3::adapters::PagedResults;
use ldap3::{
    Ldap, LdapConnAsync, LdapConnSettings, Mod, Scope, SearchEntry, SearchOptions, ldap_escape,
};

use crate::config::ldap::{Attributes, LdapSettings};

/// Connecting and each operation wait at most this long.
const TIMEOUT: Duration = Duration::from_secs(10);
/// LDAP result code 49: invalid credentials (RFC 4511 §4.1.9).
const INVALID_CREDENTIALS: u32 = 49;
/// LDAP result code 4: more entries than the size limit (here: not one person).
const SIZE_LIMIT_EXCEEDED: u32 = 4;
/// A group search returns at most this many groups.
const MAX_GROUPS: i32 = 500;
/// The group a directory may never grant: Latchkey's administrators are made here.
pub const LOCAL_ONLY_GROUP: &str = "admin";
/// A sync reads at most this many people (more is an error: narrow `user_filter`).
pub const MAX_PEOPLE: usize = 50_000;
/// People read per page of a sync's search (RFC 2696; Active Directory serves 1000).
const PAGE: i32 = 500;
/// Reading every person for a sync ends within this; reading their groups then has as
/// long again.
const SYNC_DEADLINE: Duration = Duration::from_secs(300);
/// The attributes that say an account is disabled or locked in the directory.
const ACCOUNT_STATE: [&str; 5] = [
    "userAccountControl",
    "accountExpires",
    "nsAccountLock",
    "pwdAccountLockedTime",
    "shadowExpire",
];
/// OpenLDAP's password policy: an account locked by an administrator (other values of
/// `pwdAccountLockedTime` are temporary lockouts after failed binds, which must not end
/// anyone's access here: anybody can cause them).
const LOCKED_FOR_GOOD: &str = "000001010000Z";
/// Seconds from 1601-01-01 (Windows FILETIME's start) to 1970-01-01.
const FILETIME_TO_UNIX: i64 = 11_644_473_600;
/// Active Directory's `userAccountControl` bit ACCOUNTDISABLE.
const AD_ACCOUNT_DISABLED: u64 = 0x2;

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
    /// Disabled or locked there (AD `userAccountControl` bit 2, `nsAccountLock`,
    /// `pwdAccountLockedTime`).
    pub disabled: bool,
}

/// Whether an entry's account-state attributes say, at `now`, that it may not sign in:
/// Active Directory's ACCOUNTDISABLE bit or a past `accountExpires`, 389-DS/FreeIPA's
/// `nsAccountLock: TRUE`, an OpenLDAP password-policy lock by an administrator
/// (`pwdAccountLockedTime: 000001010000Z`), or a past `shadowExpire`.
pub fn disabled_by(first: impl Fn(&str) -> Option<String>, now: i64) -> bool {
    let number = |name: &str| first(name).and_then(|v| v.trim().parse::<i64>().ok());
    let uac = number("userAccountControl").is_some_and(|v| (v as u64) & AD_ACCOUNT_DISABLED != 0);
    // 100-nanosecond intervals since 1601; 0 and i64::MAX: never.
    let expired = number("accountExpires")
        .filter(|v| *v > 0 && *v != i64::MAX)
        .is_some_and(|v| v / 10_000_000 - FILETIME_TO_UNIX <= now);
    // Days since 1970; -1 (or absent): never.
    let shadow = number("shadowExpire")
        .filter(|d| *d >= 0)
        .is_some_and(|d| d.saturating_mul(86_400) <= now);
    let ns_lock = first("nsAccountLock").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let locked = first("pwdAccountLockedTime").is_some_and(|v| v.trim() == LOCKED_FOR_GOOD);
    uac || expired || shadow || ns_lock || locked
}

/// A directory entry as a person, or why it is skipped (no unique id, no usable
/// username). Attribute names are matched without regard to case.
pub fn person_of(entry: SearchEntry, a: &Attributes, now: i64) -> Result<Person, String> {
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
        return Err(format!("no unique id in {}", a.id));
    };
    let Some(name) = first(&a.username).filter(|n| crate::model::valid_username(n)) else {
        return Err(format!("no usable username in {}", a.username));
    };
    let clip = |v: Option<String>| v.map(|t| t.chars().take(200).collect::<String>());
    Ok(Person {
        id,
        username: name,
        email: first(&a.email)
            .filter(|e| crate::model::valid_email(e))
            .unwrap_or_default(),
        given_name: clip(first(&a.given_name)),
        family_name: clip(first(&a.family_name)),
        name: clip(first(&a.name)),
        phone: clip(first(&a.phone)),
        disabled: disabled_by(first, now),
        dn: entry.dn,
        groups: vec![],
    })
}

/// Group names from a group search's entries: their `cn`, sorted, once each; and the
/// names left out: those Latchkey cannot use as group names (letters, digits, `-_.`; a
/// space, as in "Domain Users", is not one) and `admin` (granted only here, never by a
/// directory).
pub fn group_names(entries: Vec<SearchEntry>) -> (Vec<String>, Vec<String>) {
    let (mut kept, mut left): (Vec<String>, Vec<String>) = entries
        .into_iter()
        .filter_map(|e| {
            e.attrs
                .into_iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("cn"))
                .and_then(|(_, v)| v.into_iter().next())
        })
        .partition(|g| crate::oidc::registration::valid_group_name(g) && g != LOCAL_ONLY_GROUP);
    for v in [&mut kept, &mut left] {
        v.sort();
        v.dedup();
    }
    (kept, left)
}

/// The whole directory as a sync reads it.
#[derive(Debug, Default)]
pub struct Listing {
    pub people: Vec<Person>,
    /// Entries skipped (no unique id, no usable username, an id seen twice).
    pub skipped: usize,
    /// Group names not taken (see [`group_names`]).
    pub groups_left_out: Vec<String>,
    /// Why the groups could not be read (then every person's groups are empty).
    pub groups_error: Option<String>,
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
    if let Some(t) = text.filter(|t| t.len() == 16) {
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
        let tls = crate::outbound::tls_client_config(s.ca_pem.as_deref(), "ldap")?;
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
        let filter = filter_with(&self.s.user_filter, "username", username);
        // Two entries are enough to know it is not one person; every operation has a
        // deadline (ldap3's applies to the next operation only).
        let found = ldap
            .with_timeout(TIMEOUT)
            .with_search_options(SearchOptions::new().sizelimit(2).timelimit(10))
            .search(&self.s.user_base, Scope::Subtree, &filter, self.wanted())
            .await
            .map_err(|e| err("search", e))?;
        let _ = ldap.unbind().await;
        // Active Directory adds search references (its DNS and configuration
        // partitions): they are not people.
        let entries: Vec<_> = found.0.into_iter().filter(is_entry).collect();
        let result = found.1;
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
        let dn = entry.dn.clone();
        match person_of(entry, &self.s.attributes, crate::clock::now()) {
            Ok(p) => Ok(Some(p)),
            Err(why) => {
                tracing::warn!(dn = %dn, "directory entry skipped: {why}");
                Ok(None)
            }
        }
    }

    /// The attributes a person is read with.
    fn wanted(&self) -> Vec<String> {
        let a = &self.s.attributes;
        let mut v: Vec<String> = [
            &a.username,
            &a.email,
            &a.given_name,
            &a.family_name,
            &a.name,
            &a.phone,
            &a.id,
        ]
        .into_iter()
        .cloned()
        .collect();
        v.extend(ACCOUNT_STATE.iter().map(|s| s.to_string()));
        v
    }

    /// Every person of the directory with their groups, for a sync: all or an error
    /// (a partial answer must never look like people removed). Entries without a
    /// unique id or usable username are skipped with a warning and counted.
    pub async fn people(&self) -> Result<Listing, LdapError> {
        let (mut ldap, mut people, skipped) =
            tokio::time::timeout(SYNC_DEADLINE, self.list_people())
                .await
                .unwrap_or_else(|_| {
                    Err(err(
                        "search",
                        format!(
                            "listing people took longer than {} s",
                            SYNC_DEADLINE.as_secs()
                        ),
                    ))
                })?;
        // Groups: one search per person (Active Directory resolves nested groups only per
        // person); if they cannot all be read in time, the people still count.
        let mut left_out = std::collections::BTreeSet::new();
        let read = tokio::time::timeout(SYNC_DEADLINE, async {
            for p in &mut people {
                let (kept, left) = self.groups_with(&mut ldap, &p.dn).await?;
                p.groups = kept;
                left_out.extend(left);
            }
            Ok::<(), LdapError>(())
        })
        .await;
        let groups_error = match read {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!(
                "reading groups took longer than {} s",
                SYNC_DEADLINE.as_secs()
            )),
        };
        if groups_error.is_some() {
            for p in &mut people {
                p.groups.clear();
            }
        }
        let _ = ldap.unbind().await;
        Ok(Listing {
            people,
            skipped,
            groups_left_out: left_out.into_iter().collect(),
            groups_error,
        })
    }

    /// Every person (without groups) on a connection bound as the service account.
    async fn list_people(&self) -> Result<(Ldap, Vec<Person>, usize), LdapError> {
        let mut ldap = self.service().await?;
        // `{username}` becomes a presence (or substring) match: every person.
        let filter = self.s.user_filter.replace("{username}", "*");
        let mut stream = ldap
            .streaming_search_with(
                PagedResults::<String, Vec<String>>::new(PAGE),
                &self.s.user_base,
                Scope::Subtree,
                &filter,
                self.wanted(),
            )
            .await
            .map_err(|e| err("search", e))?;
        let (mut people, mut skipped) = (Vec::new(), 0usize);
        let mut ids: HashMap<String, ()> = HashMap::new();
        loop {
            let next = tokio::time::timeout(TIMEOUT, stream.next())
                .await
                .map_err(|_| err("search", "the directory stopped answering"))?
                .map_err(|e| err("search", e))?;
            let Some(entry) = next else { break };
            if !is_entry(&entry) {
                continue;
            }
            let Some(entry) = entry_of(entry) else {
                skipped += 1;
                continue;
            };
            let dn = entry.dn.clone();
            match person_of(entry, &self.s.attributes, crate::clock::now()) {
                Ok(p) if ids.insert(p.id.clone(), ()).is_none() => people.push(p),
                Ok(p) => {
                    tracing::warn!(dn = %dn, id = %p.id, "directory entry skipped: its id is another entry's");
                    skipped += 1;
                }
                Err(why) => {
                    tracing::warn!(dn = %dn, "directory entry skipped: {why}");
                    skipped += 1;
                }
            }
            if people.len() > MAX_PEOPLE {
                let _ = stream.finish().await;
                return Err(err(
                    "search",
                    format!("more than {MAX_PEOPLE} people: narrow ldap.user_filter"),
                ));
            }
        }
        let done = stream.finish().await;
        if done.rc != 0 {
            return Err(err(
                "search",
                format!("the directory answered {}: {}", done.rc, done.text),
            ));
        }
        Ok((ldap, people, skipped))
    }

    /// Whether the service account can bind (the directory is up and the account works).
    pub async fn probe(&self) -> Result<(), LdapError> {
        let mut ldap = self.service().await?;
        let _ = ldap.unbind().await;
        Ok(())
    }

    /// Changes the password of the person `dn` from `old` to `new`, bound as them: RFC
    /// 3062's password modify operation, or for Active Directory the removal of the old
    /// `unicodePwd` and addition of the new (a user's own change, over TLS). `Ok(Err)`
    /// carries the directory's refusal (a wrong old password, its password policy).
    pub async fn change_password(
        &self,
        dn: &str,
        old: &str,
        new: &str,
    ) -> Result<Result<(), String>, LdapError> {
        if old.is_empty() || new.is_empty() || dn.is_empty() {
            return Ok(Err("a password is empty".into()));
        }
        let mut ldap = self.connect().await?;
        let bound = ldap
            .with_timeout(TIMEOUT)
            .simple_bind(dn, old)
            .await
            .map_err(|e| err("bind", e))?;
        match bound.rc {
            0 => {}
            INVALID_CREDENTIALS => return Ok(Err("the current password is wrong".into())),
            rc => return Err(err("bind", format!("the directory answered {rc}"))),
        }
        let result = if self.s.preset == "active-directory" {
            let quoted = |p: &str| -> Vec<u8> {
                format!("\"{p}\"")
                    .encode_utf16()
                    .flat_map(u16::to_le_bytes)
                    .collect()
            };
            ldap.with_timeout(TIMEOUT)
                .modify(
                    dn,
                    vec![
                        Mod::Delete(b"unicodePwd".to_vec(), [quoted(old)].into()),
                        Mod::Add(b"unicodePwd".to_vec(), [quoted(new)].into()),
                    ],
                )
                .await
        } else {
            ldap.with_timeout(TIMEOUT)
                .extended(ldap3::exop::PasswordModify {
                    user_id: None,
                    old_pass: Some(old),
                    new_pass: Some(new),
                })
                .await
                .map(|r| r.1)
        }
        .map_err(|e| err("password change", e))?;
        let _ = ldap.unbind().await;
        Ok(match result.rc {
            0 => Ok(()),
            rc => Err(refusal(rc, &result.text)),
        })
    }

    /// The groups of the person `dn` (read once their password was checked). Names that
    /// are not Latchkey group names, and `admin` (granted only here, never by a
    /// directory), are left out.
    pub async fn groups(&self, dn: &str) -> Result<Vec<String>, LdapError> {
        let mut ldap = self.service().await?;
        let groups = self.groups_with(&mut ldap, dn).await;
        let _ = ldap.unbind().await;
        groups.map(|(kept, _)| kept)
    }

    /// [`Directory::groups`] on a connection bound as the service account, with the names
    /// left out.
    async fn groups_with(
        &self,
        ldap: &mut Ldap,
        dn: &str,
    ) -> Result<(Vec<String>, Vec<String>), LdapError> {
        let filter = filter_with(&self.s.group_filter, "dn", dn);
        let found = ldap
            .with_timeout(TIMEOUT)
            .with_search_options(SearchOptions::new().sizelimit(MAX_GROUPS).timelimit(10))
            .search(&self.s.group_base, Scope::Subtree, &filter, vec!["cn"])
            .await
            .map_err(|e| err("search", format!("groups: {e}")))?;
        if found.1.rc == SIZE_LIMIT_EXCEEDED {
            tracing::warn!(dn = %dn, "more than {MAX_GROUPS} groups: only the first are taken");
        }
        if !matches!(found.1.rc, 0 | SIZE_LIMIT_EXCEEDED) {
            return Err(err(
                "search",
                format!("groups: the directory answered {}", found.1.rc),
            ));
        }
        Ok(group_names(
            found
                .0
                .into_iter()
                .filter(is_entry)
                .filter_map(entry_of)
                .collect(),
        ))
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

    /// The bind of [`Directory::check_password`] for a name the directory does not have
    /// (a random DN under `user_base`, which fails), so that a wrong name costs what a
    /// wrong password does. Its answer is never used.
    pub async fn pretend_password_check(&self, password: &str) {
        let nobody = format!(
            "{}={},{}",
            self.s.attributes.username,
            crate::clock::random_token(),
            self.s.user_base
        );
        // As long as the typed password, never it: it is nobody's business there.
        let decoy: String = crate::clock::random_token()
            .chars()
            .cycle()
            .take(password.chars().count().clamp(1, 128))
            .collect();
        let _ = self.check_password(&nobody, &decoy).await;
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

/// What the directory's refusal of a new password tells its owner: the policy's reason
/// when it gives one (a short, printable text), else the result code's meaning.
fn refusal(rc: u32, text: &str) -> String {
    let meaning = match rc {
        19 => "the directory's password policy refused it",
        50 => "the directory does not let you change it",
        _ => "the directory refused it",
    };
    let text: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
    if text.trim().is_empty() {
        meaning.to_string()
    } else {
        format!("{meaning} ({})", text.trim())
    }
}

/// Whether a search answer is an entry (not a search reference or intermediate message).
fn is_entry(e: &ldap3::ResultEntry) -> bool {
    !e.is_ref() && !e.is_intermediate()
}

/// A search result entry, parsed without letting a malformed answer panic the server.
fn entry_of(e: ldap3::ResultEntry) -> Option<SearchEntry> {
    crate::panic::contained(|| SearchEntry::construct(e))
}

/// The certificates of a PEM file.
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

    const NOW: i64 = 1_796_400_000;

    fn leak_pairs(k: &'static str, v: &'static str) -> &'static [(&'static str, &'static str)] {
        Box::leak(vec![(k, v)].into_boxed_slice())
    }

    fn attrs(pairs: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in pairs {
            m.entry(k.to_string()).or_default().push(v.to_string());
        }
        m
    }

    fn ad_attributes() -> Attributes {
        let raw = crate::config::ldap::RawLdap {
            url: Some("ldaps://dc1.corp.example.test".into()),
            bind_dn: Some("CN=svc-latchkey,OU=Service,DC=corp,DC=example,DC=test".into()),
            user_base: Some("DC=corp,DC=example,DC=test".into()),
            preset: Some("active-directory".into()),
            ..Default::default()
        };
        crate::config::ldap::settings(raw, Some("x".into()))
            .unwrap()
            .attributes
    }

    /// Entries shaped as Active Directory answers a search: attribute names spelt its way,
    /// objectGUID as 16 raw bytes (not UTF-8, so ldap3 hands them over as binary), and
    /// userAccountControl values from Microsoft's documentation (512 NORMAL_ACCOUNT, 514
    /// and 66050 with ACCOUNTDISABLE, 66048 DONT_EXPIRE_PASSWORD).
    #[test]
    fn active_directory_entries_become_people() {
        let guid: [u8; 16] = [
            0x9a, 0x4c, 0xd3, 0xe1, 0x72, 0x0b, 0x5f, 0x4d, 0xb1, 0xfe, 0x88, 0x13, 0xc2, 0x07,
            0xa0, 0xff,
        ];
        let entry = |uac: &str| SearchEntry {
            dn: "CN=Dora Example,OU=Staff,DC=corp,DC=example,DC=test".into(),
            attrs: attrs(&[
                ("sAMAccountName", "dora"),
                ("mail", "dora@corp.example.test"),
                ("givenName", "Dora"),
                ("sn", "Example"),
                ("displayName", "Dora Example"),
                ("userAccountControl", uac),
                ("memberOf", "CN=Staff,OU=Groups,DC=corp,DC=example,DC=test"),
            ]),
            bin_attrs: [("objectGUID".to_string(), vec![guid.to_vec()])].into(),
        };
        let a = ad_attributes();
        let p = person_of(entry("512"), &a, NOW).unwrap();
        assert_eq!(p.id, URL_SAFE_NO_PAD.encode(guid));
        assert_eq!(p.username, "dora");
        assert_eq!(p.name.as_deref(), Some("Dora Example"));
        assert!(!p.disabled);
        assert!(!person_of(entry("66048"), &a, NOW).unwrap().disabled);
        assert!(person_of(entry("514"), &a, NOW).unwrap().disabled);
        assert!(person_of(entry("66050"), &a, NOW).unwrap().disabled);
        // No objectGUID: skipped, with the reason.
        let mut e = entry("512");
        e.bin_attrs.clear();
        assert!(person_of(e, &a, NOW).unwrap_err().contains("objectGUID"));
        // Attribute names in another case still match.
        let mut e = entry("512");
        let v = e.attrs.remove("sAMAccountName").unwrap();
        e.attrs.insert("samaccountname".into(), v);
        assert_eq!(person_of(e, &a, NOW).unwrap().username, "dora");
    }

    #[test]
    fn locks_of_389_ds_freeipa_and_openldap_disable() {
        let get = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(disabled_by(get(&[("nsAccountLock", "TRUE")]), NOW));
        assert!(!disabled_by(get(&[("nsAccountLock", "false")]), NOW));
        // Locked by an administrator; a lockout after failed binds (its time) is not a
        // reason to end anyone's access here.
        assert!(disabled_by(
            get(&[("pwdAccountLockedTime", "000001010000Z")]),
            NOW
        ));
        assert!(!disabled_by(
            get(&[("pwdAccountLockedTime", "20261205101500Z")]),
            NOW
        ));
        assert!(disabled_by(get(&[("userAccountControl", "2")]), NOW));
        assert!(!disabled_by(
            get(&[("userAccountControl", "not a number")]),
            NOW
        ));
        assert!(!disabled_by(get(&[]), NOW));
        // accountExpires: 100-nanosecond intervals since 1601.
        let filetime = |unix: i64| ((unix + FILETIME_TO_UNIX) * 10_000_000).to_string();
        let past = filetime(NOW - 60);
        let future = filetime(NOW + 86_400);
        let leak = |v: String| -> &'static str { Box::leak(v.into_boxed_str()) };
        assert!(disabled_by(
            get(leak_pairs("accountExpires", leak(past))),
            NOW
        ));
        assert!(!disabled_by(
            get(leak_pairs("accountExpires", leak(future))),
            NOW
        ));
        assert!(!disabled_by(get(&[("accountExpires", "0")]), NOW));
        assert!(!disabled_by(
            get(&[("accountExpires", "9223372036854775807")]),
            NOW
        ));
        // shadowExpire: days since 1970.
        let day = leak((NOW / 86_400 - 1).to_string());
        assert!(disabled_by(get(leak_pairs("shadowExpire", day)), NOW));
        assert!(!disabled_by(get(&[("shadowExpire", "-1")]), NOW));
    }

    /// Groups as Active Directory's in-chain search returns them (nested groups included
    /// by the server), and the DN escaped in that filter.
    #[test]
    fn active_directory_groups_and_their_filter() {
        let group = |cn: &str| SearchEntry {
            dn: format!("CN={cn},OU=Groups,DC=corp,DC=example,DC=test"),
            attrs: attrs(&[("cn", cn)]),
            bin_attrs: HashMap::new(),
        };
        let (names, left) = group_names(vec![
            group("Staff"),
            group("VPN-Users"),
            group("admin"),
            group("Domain Users"),
            group("Staff"),
        ]);
        assert_eq!(names, ["Staff", "VPN-Users"]);
        assert_eq!(
            left,
            ["Domain Users", "admin"],
            "admin never; unusable names left out"
        );
        let f = filter_with(
            "(&(objectClass=group)(member:1.2.840.113556.1.4.1941:={dn}))",
            "dn",
            "CN=Smith\\, John (IT)*,OU=Staff,DC=corp",
        );
        assert_eq!(
            f,
            "(&(objectClass=group)(member:1.2.840.113556.1.4.1941:=CN=Smith\\5c, John \\28IT\\29\\2a,OU=Staff,DC=corp))"
        );
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
