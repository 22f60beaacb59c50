//! `[mail]` (SPEC §12): the SMTP server and sender, checked when the configuration is
//! loaded (files read then, errors naming the key).

use std::path::PathBuf;

use serde::Deserialize;
use zeroize::Zeroize;

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtps://`: TLS from the first byte (port 465).
    Implicit,
    /// `smtp://` to another host: STARTTLS, required.
    StartTls,
    /// `smtp://` to this machine: STARTTLS when the server offers it (checked against the
    /// trust anchors then), plain otherwise.
    LoopbackPlain,
}

/// The SMTP password, read from `password_file`; never printed.
#[derive(Clone, PartialEq)]
pub struct Password(String);

impl Password {
    pub fn new(p: String) -> Password {
        Password(p)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(…)")
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The validated `[mail]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct MailSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: Option<String>,
    pub password: Option<Password>,
    /// The sender, as `Name <address>` or a bare address.
    pub from: String,
    /// Trust anchors (PEM) that replace the system's for this server.
    pub ca_pem: Option<Vec<u8>>,
    /// The first retry waits this long; each later one twice as long, up to an hour.
    pub retry_secs: i64,
}

/// `[mail]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMail {
    pub smtp_url: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub from: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub retry_secs: Option<i64>,
}

impl RawMail {
    pub fn is_empty(&self) -> bool {
        self.smtp_url.is_none()
            && self.username.is_none()
            && self.password_file.is_none()
            && self.from.is_none()
            && self.ca_file.is_none()
            && self.retry_secs.is_none()
    }
}

/// Whether `host` names this machine (the only place plain SMTP may go).
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Checks `[mail]`; errors name the key. Files are read here, so a running server never
/// finds them missing later.
pub fn settings(raw: RawMail) -> Result<MailSettings, String> {
    let url_text = raw
        .smtp_url
        .ok_or("mail.smtp_url: required when [mail] is present")?;
    let url = url::Url::parse(&url_text)
        .map_err(|e| format!("mail.smtp_url: {url_text:?} is not a URL ({e})"))?;
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("mail.smtp_url: names no host")?
        .to_string();
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "mail.smtp_url: put the user name in mail.username and the password in mail.password_file, not in the URL"
                .into(),
        );
    }
    if url.path() != "/" && !url.path().is_empty() || url.query().is_some() {
        return Err("mail.smtp_url: only smtps://host:port or smtp://host:port".into());
    }
    let (security, default_port) = match url.scheme() {
        "smtps" => (Security::Implicit, 465),
        "smtp" if is_loopback(&host) => (Security::LoopbackPlain, 25),
        "smtp" => (Security::StartTls, 587),
        other => {
            return Err(format!(
                "mail.smtp_url: scheme {other:?} is not smtps (TLS) or smtp (STARTTLS)"
            ));
        }
    };
    let from = raw.from.ok_or("mail.from: required (the sender address)")?;
    if from.parse::<lettre::message::Mailbox>().is_err() {
        return Err(format!(
            "mail.from: {from:?} is not an address (\"Name <id@example.com>\" or \"id@example.com\")"
        ));
    }
    let password = match raw.password_file {
        None => None,
        Some(p) => Some(Password(read_secret_file(&p)?)),
    };
    if password.is_some() && raw.username.is_none() {
        return Err("mail.username: required with mail.password_file".into());
    }
    let ca_pem = match raw.ca_file {
        None => None,
        Some(p) => {
            let pem =
                std::fs::read(&p).map_err(|e| format!("mail.ca_file: {}: {e}", p.display()))?;
            lettre::transport::smtp::client::Certificate::from_pem(&pem).map_err(|e| {
                format!("mail.ca_file: {}: no usable certificate ({e})", p.display())
            })?;
            Some(pem)
        }
    };
    let retry_secs = raw.retry_secs.unwrap_or(30);
    if !(1..=3600).contains(&retry_secs) {
        return Err("mail.retry_secs: between 1 and 3600".into());
    }
    Ok(MailSettings {
        host,
        port: url.port().unwrap_or(default_port),
        security,
        username: raw.username,
        password,
        from,
        ca_pem,
        retry_secs,
    })
}

/// The first line of a file only its owner can read (mode 0600 or 0400).
pub(super) fn read_secret_file(p: &std::path::Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = p.display();
    let meta = std::fs::metadata(p).map_err(|e| format!("mail.password_file: {shown}: {e}"))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "mail.password_file: {shown}: readable by others; chmod 600 it"
        ));
    }
    let text =
        std::fs::read_to_string(p).map_err(|e| format!("mail.password_file: {shown}: {e}"))?;
    let line = text.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        return Err(format!("mail.password_file: {shown}: is empty"));
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(url: &str) -> RawMail {
        RawMail {
            smtp_url: Some(url.into()),
            from: Some("Latchkey <id@example.com>".into()),
            ..RawMail::default()
        }
    }

    #[test]
    fn urls_choose_the_protection() {
        let s = settings(raw("smtps://mail.example.com")).unwrap();
        assert_eq!((s.security, s.port), (Security::Implicit, 465));
        let s = settings(raw("smtp://mail.example.com:587")).unwrap();
        assert_eq!((s.security, s.port), (Security::StartTls, 587));
        let s = settings(raw("smtp://mail.example.com")).unwrap();
        assert_eq!(s.port, 587, "submission by default");
        // Plain SMTP only to this machine.
        for local in [
            "smtp://localhost:25",
            "smtp://127.0.0.1:2525",
            "smtp://[::1]",
        ] {
            let s = settings(raw(local)).unwrap();
            assert_eq!(s.security, Security::LoopbackPlain, "{local}");
        }
        assert_eq!(
            settings(raw("smtp://127.0.0.2.example.com"))
                .unwrap()
                .security,
            Security::StartTls
        );
    }

    #[test]
    fn bad_settings_name_their_key() {
        let cases = [
            (raw("http://mail.example.com"), "mail.smtp_url"),
            (raw("smtp://user:pw@mail.example.com"), "mail.smtp_url"),
            (raw("smtp://mail.example.com/x?y"), "mail.smtp_url"),
            (
                RawMail {
                    from: Some("not an address".into()),
                    ..raw("smtps://m.example.com")
                },
                "mail.from",
            ),
            (
                RawMail {
                    from: None,
                    ..raw("smtps://m.example.com")
                },
                "mail.from",
            ),
            (
                RawMail {
                    retry_secs: Some(0),
                    ..raw("smtps://m.example.com")
                },
                "mail.retry_secs",
            ),
            (
                RawMail {
                    ca_file: Some("/nonexistent/ca.pem".into()),
                    ..raw("smtps://m.example.com")
                },
                "mail.ca_file",
            ),
            (
                RawMail {
                    smtp_url: None,
                    ..raw("smtps://m.example.com")
                },
                "mail.smtp_url",
            ),
        ];
        for (r, key) in cases {
            let e = settings(r).unwrap_err();
            assert!(e.starts_with(key), "{e}");
        }
    }

    #[test]
    fn the_password_file_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("latchkey-mail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("smtp-password");
        std::fs::write(&file, "s3cret\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let with_file = || RawMail {
            username: Some("latchkey".into()),
            password_file: Some(file.clone()),
            ..raw("smtps://m.example.com")
        };
        assert!(settings(with_file()).unwrap_err().contains("chmod 600"));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = settings(with_file()).unwrap();
        assert_eq!(s.password.as_ref().map(Password::expose), Some("s3cret"));
        assert!(!format!("{s:?}").contains("s3cret"), "never printed");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
