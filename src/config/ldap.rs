//! `[ldap]` (SPEC §11): the directory to check passwords against and take people from,
//! checked when the configuration is loaded (files read then, errors naming the key).

use std::path::PathBuf;

use serde::Deserialize;

use super::mail::Password;

/// `[ldap.attributes]`: the directory's attribute for each of Latchkey's fields.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAttributes {
    pub username: Option<String>,
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLdap {
    pub url: Option<String>,
    #[serde(default)]
    pub starttls: bool,
    pub ca_file: Option<PathBuf>,
    pub bind_dn: Option<String>,
    pub bind_password_file: Option<PathBuf>,
    pub user_base: Option<String>,
    pub user_filter: Option<String>,
    pub group_base: Option<String>,
    pub group_filter: Option<String>,
    #[serde(default)]
    pub attributes: RawAttributes,
    pub preset: Option<String>,
    pub sync_interval_secs: Option<u64>,
    /// Directory people change their password here, in the directory (RFC 3062's
    /// password modify operation; Active Directory's `unicodePwd`).
    #[serde(default, alias = "password_change")]
    pub ldap_password_change: bool,
}

impl RawLdap {
    pub fn is_empty(&self) -> bool {
        self.url.is_none() && self.preset.is_none() && self.bind_dn.is_none()
    }
}

/// The directory's attribute names.
#[derive(Debug, Clone, PartialEq)]
pub struct Attributes {
    pub username: String,
    pub email: String,
    pub given_name: String,
    pub family_name: String,
    pub name: String,
    pub phone: String,
    /// A unique, stable id (entryUUID, objectGUID, ipaUniqueID): the user's `sub`.
    pub id: String,
}

/// The validated `[ldap]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct LdapSettings {
    pub url: String,
    pub starttls: bool,
    pub ca_pem: Option<Vec<u8>>,
    pub bind_dn: String,
    pub bind_password: Password,
    pub user_base: String,
    /// With `{username}`, replaced by the escaped name (RFC 4515).
    pub user_filter: String,
    pub group_base: String,
    /// With `{dn}`, replaced by the escaped DN of the user.
    pub group_filter: String,
    pub attributes: Attributes,
    /// `openldap`, `active-directory`, `freeipa` or `lldap`.
    pub preset: String,
    /// Seconds between syncs; 0: only `latchkey ldap sync` and sign-ins bring records up
    /// to date.
    pub sync_interval_secs: u64,
    /// Whether the account page changes a directory person's password in the directory.
    pub password_change: bool,
}

/// Sync interval without `sync_interval_secs`: a person removed from the directory loses
/// access here within a quarter of an hour.
pub const DEFAULT_SYNC_SECS: u64 = 900;
/// The shortest sync interval (a sync reads every person and their groups).
const MIN_SYNC_SECS: u64 = 60;

/// Defaults of a preset: user filter, group filter, attributes.
fn preset(name: &str) -> Option<(&'static str, &'static str, Attributes)> {
    let attrs = |username: &str, id: &str| Attributes {
        username: username.into(),
        email: "mail".into(),
        given_name: "givenName".into(),
        family_name: "sn".into(),
        name: "cn".into(),
        phone: "telephoneNumber".into(),
        id: id.into(),
    };
    Some(match name {
        "openldap" => (
            "(&(objectClass=inetOrgPerson)(uid={username}))",
            "(&(objectClass=groupOfNames)(member={dn}))",
            attrs("uid", "entryUUID"),
        ),
        "active-directory" => (
            "(&(objectCategory=person)(objectClass=user)(sAMAccountName={username}))",
            // LDAP_MATCHING_RULE_IN_CHAIN: nested groups too.
            "(&(objectClass=group)(member:1.2.840.113556.1.4.1941:={dn}))",
            Attributes {
                name: "displayName".into(),
                ..attrs("sAMAccountName", "objectGUID")
            },
        ),
        "freeipa" => (
            "(&(objectClass=person)(uid={username}))",
            "(&(objectClass=groupOfNames)(member={dn}))",
            attrs("uid", "ipaUniqueID"),
        ),
        "lldap" => (
            "(&(objectClass=person)(uid={username}))",
            "(&(objectClass=groupOfUniqueNames)(uniqueMember={dn}))",
            Attributes {
                name: "displayName".into(),
                given_name: "firstName".into(),
                family_name: "lastName".into(),
                ..attrs("uid", "entryUUID")
            },
        ),
        _ => return None,
    })
}

/// Whether `url`'s host is this machine (the only place plain LDAP may go).
fn loopback(url: &url::Url) -> bool {
    crate::config::mail::is_loopback(url.host_str().unwrap_or(""))
}

/// Checks `[ldap]`; `env_password` is `LATCHKEY_LDAP_BIND_PASSWORD`.
pub fn settings(raw: RawLdap, env_password: Option<String>) -> Result<LdapSettings, String> {
    let preset_name = raw.preset.as_deref().unwrap_or("openldap");
    let (user_filter, group_filter, defaults) = preset(preset_name).ok_or_else(|| {
        format!("ldap.preset: {preset_name:?} is not openldap, active-directory, freeipa or lldap")
    })?;
    let url_text = raw.url.ok_or("ldap.url: required when [ldap] is present")?;
    let url = url::Url::parse(&url_text)
        .map_err(|e| format!("ldap.url: {url_text:?} is not a URL ({e})"))?;
    match url.scheme() {
        "ldaps" if raw.starttls => {
            return Err("ldap.starttls: not with ldaps:// (TLS from the start already)".into());
        }
        "ldaps" => {}
        "ldap" if raw.starttls || loopback(&url) => {}
        "ldap" => {
            return Err(
                "ldap.url: plain ldap:// only to this machine; use ldaps:// or starttls = true"
                    .into(),
            );
        }
        other => return Err(format!("ldap.url: scheme {other:?} is not ldaps or ldap")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("ldap.url: names no host".into());
    }
    let bind_dn = raw
        .bind_dn
        .ok_or("ldap.bind_dn: required (the service account)")?;
    let bind_password = match (raw.bind_password_file, env_password) {
        (_, Some(p)) if !p.is_empty() => Password::new(p),
        (Some(f), _) => Password::new(
            super::mail::read_secret_file(&f)
                .map_err(|e| e.replacen("mail.password_file", "ldap.bind_password_file", 1))?,
        ),
        _ => {
            return Err(
                "ldap.bind_password_file: required (or LATCHKEY_LDAP_BIND_PASSWORD)".into(),
            );
        }
    };
    let ca_pem = match raw.ca_file {
        None => None,
        Some(p) => {
            Some(std::fs::read(&p).map_err(|e| format!("ldap.ca_file: {}: {e}", p.display()))?)
        }
    };
    let user_base = raw.user_base.ok_or("ldap.user_base: required")?;
    let user_filter = raw.user_filter.unwrap_or_else(|| user_filter.to_string());
    if !user_filter.contains("{username}") {
        return Err("ldap.user_filter: must contain {username}".into());
    }
    let group_filter = raw.group_filter.unwrap_or_else(|| group_filter.to_string());
    if !group_filter.contains("{dn}") {
        return Err("ldap.group_filter: must contain {dn}".into());
    }
    let sync_interval_secs = raw.sync_interval_secs.unwrap_or(DEFAULT_SYNC_SECS);
    if (1..MIN_SYNC_SECS).contains(&sync_interval_secs) {
        return Err(format!(
            "ldap.sync_interval_secs: at least {MIN_SYNC_SECS} (or 0: no periodic sync)"
        ));
    }
    let a = raw.attributes;
    let pick = |v: Option<String>, d: &str| v.unwrap_or_else(|| d.to_string());
    Ok(LdapSettings {
        url: url_text,
        starttls: raw.starttls,
        ca_pem,
        bind_dn,
        bind_password,
        group_base: raw.group_base.unwrap_or_else(|| user_base.clone()),
        user_base,
        user_filter,
        group_filter,
        attributes: Attributes {
            username: pick(a.username, &defaults.username),
            email: pick(a.email, &defaults.email),
            given_name: pick(a.given_name, &defaults.given_name),
            family_name: pick(a.family_name, &defaults.family_name),
            name: pick(a.name, &defaults.name),
            phone: pick(a.phone, &defaults.phone),
            id: pick(a.id, &defaults.id),
        },
        preset: preset_name.to_string(),
        sync_interval_secs,
        password_change: raw.ldap_password_change,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(url: &str) -> RawLdap {
        RawLdap {
            url: Some(url.into()),
            bind_dn: Some("cn=latchkey,dc=example,dc=test".into()),
            user_base: Some("ou=people,dc=example,dc=test".into()),
            ..RawLdap::default()
        }
    }

    #[test]
    fn presets_fill_the_defaults_and_errors_name_the_key() {
        let pw = || Some("s3cret".to_string());
        let s = settings(raw("ldaps://dc.example.test"), pw()).unwrap();
        assert_eq!(s.attributes.id, "entryUUID");
        assert!(s.user_filter.contains("uid={username}"));
        let ad = RawLdap {
            preset: Some("active-directory".into()),
            ..raw("ldaps://dc.example.test")
        };
        let s = settings(ad, pw()).unwrap();
        assert_eq!(s.attributes.id, "objectGUID");
        assert!(s.group_filter.contains("1.2.840.113556.1.4.1941"));
        for (r, key) in [
            (raw("ldap://dc.example.test"), "ldap.url"),
            (raw("http://dc.example.test"), "ldap.url"),
            (
                RawLdap {
                    preset: Some("novell".into()),
                    ..raw("ldaps://x")
                },
                "ldap.preset",
            ),
            (
                RawLdap {
                    user_filter: Some("(uid=*)".into()),
                    ..raw("ldaps://x")
                },
                "ldap.user_filter",
            ),
            (
                RawLdap {
                    bind_dn: None,
                    ..raw("ldaps://x")
                },
                "ldap.bind_dn",
            ),
        ] {
            let e = settings(r, pw()).unwrap_err();
            assert!(e.starts_with(key), "{e}");
        }
        // Plain LDAP to this machine, or with StartTLS elsewhere.
        assert!(settings(raw("ldap://127.0.0.1:3389"), pw()).is_ok());
        let tls = RawLdap {
            starttls: true,
            ..raw("ldap://dc.example.test")
        };
        assert!(settings(tls, pw()).is_ok());
        assert!(
            settings(raw("ldaps://x"), None)
                .unwrap_err()
                .starts_with("ldap.bind_password_file")
        );
        assert!(!format!("{:?}", settings(raw("ldaps://x"), pw()).unwrap()).contains("s3cret"));
        // Sync every quarter of an hour unless told otherwise; never more often than a
        // minute; 0 turns it off.
        assert_eq!(
            settings(raw("ldaps://x"), pw()).unwrap().sync_interval_secs,
            900
        );
        let every = |n| RawLdap {
            sync_interval_secs: Some(n),
            ..raw("ldaps://x")
        };
        assert_eq!(settings(every(0), pw()).unwrap().sync_interval_secs, 0);
        assert!(
            settings(every(5), pw())
                .unwrap_err()
                .starts_with("ldap.sync_interval_secs")
        );
    }
}
