//! A real OpenLDAP server for the directory tests: Debian's `slapd` (installed by
//! `scripts/test`), started by each test on a loopback port with its own configuration
//! file and database directory, as root or not; stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SUFFIX: &str = "dc=example,dc=test";
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=test";
pub const ADMIN_PASSWORD: &str = "directory admin secret";

pub struct Slapd {
    child: Option<Child>,
    pub port: u16,
    /// The `ldaps://` port, when started with TLS.
    pub tls_port: Option<u16>,
    dir: PathBuf,
}

impl Slapd {
    /// Starts slapd with the people and groups of `ldif` (after the base entries).
    pub fn start(dir: &Path, ldif: &str) -> Slapd {
        Slapd::start_with(dir, ldif, None)
    }

    /// [`Slapd::start`] serving TLS too (`ldaps://` on its own port, and StartTLS on the
    /// plain one) with this certificate and key (PEM files).
    pub fn start_with(dir: &Path, ldif: &str, tls: Option<(&Path, &Path)>) -> Slapd {
        assert!(
            Path::new("/usr/sbin/slapd").exists(),
            "slapd is missing: run scripts/test once (it installs slapd and ldap-utils)"
        );
        let dir = dir.join("slapd");
        std::fs::create_dir_all(dir.join("db")).unwrap();
        let conf = dir.join("slapd.conf");
        let tls_lines = tls.map_or(String::new(), |(cert, key)| {
            format!(
                "TLSCertificateFile {}\nTLSCertificateKeyFile {}\n",
                cert.display(),
                key.display()
            )
        });
        // The password-policy overlay makes `pwdAccountLockedTime` (an account locked
        // there); people may change their own password, and nobody reads it.
        std::fs::write(
            &conf,
            format!(
                "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\n\
                 include /etc/ldap/schema/inetorgperson.schema\ninclude /etc/ldap/schema/nis.schema\n\
                 pidfile {d}/slapd.pid\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\nmoduleload ppolicy\n\
                 {tls_lines}\
                 database mdb\nsuffix \"{SUFFIX}\"\nrootdn \"{ADMIN_DN}\"\nrootpw \"{ADMIN_PASSWORD}\"\n\
                 directory {d}/db\noverlay ppolicy\n\
                 access to attrs=userPassword by self write by anonymous auth by * none\n\
                 access to * by * read\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let port = super::free_port();
        let mut s = Slapd {
            child: None,
            port,
            tls_port: tls.map(|_| super::free_port()),
            dir,
        };
        s.run();
        s.add(&format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
             dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n{ldif}"
        ));
        s
    }

    /// Starts (or starts again) the server process and waits until it answers.
    pub fn run(&mut self) {
        let mut urls = format!("ldap://127.0.0.1:{}/", self.port);
        if let Some(p) = self.tls_port {
            urls.push_str(&format!(" ldaps://127.0.0.1:{p}/"));
        }
        let child = Command::new("/usr/sbin/slapd")
            .arg("-f")
            .arg(self.dir.join("slapd.conf"))
            .arg("-h")
            .arg(urls)
            .args(["-d", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("slapd starts");
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "slapd did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// Adds entries (LDIF) as the directory's administrator.
    pub fn add(&self, ldif: &str) {
        self.ldap_tool("ldapadd", ldif);
    }

    /// Changes entries (LDIF with changetype) as the administrator.
    pub fn modify(&self, ldif: &str) {
        self.ldap_tool("ldapmodify", ldif);
    }

    /// Removes the entry `dn`.
    pub fn delete(&self, dn: &str) {
        self.ldap_tool("ldapdelete", &format!("{dn}\n"));
    }

    /// Locks (`true`) or unlocks a person's account the way OpenLDAP's password policy
    /// does (`pwdAccountLockedTime`).
    pub fn lock(&self, uid: &str, locked: bool) {
        let change = if locked {
            "add: pwdAccountLockedTime\npwdAccountLockedTime: 000001010000Z"
        } else {
            "delete: pwdAccountLockedTime"
        };
        self.modify(&format!(
            "dn: uid={uid},ou=people,{SUFFIX}\nchangetype: modify\n{change}\n"
        ));
    }

    fn ldap_tool(&self, tool: &str, ldif: &str) {
        use std::io::Write;
        let mut child = Command::new(tool)
            .args([
                "-x",
                "-H",
                &self.url(),
                "-D",
                ADMIN_DN,
                "-w",
                ADMIN_PASSWORD,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ldap-utils are installed");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ldif.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server (the directory goes down).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A person's LDIF entry under `ou=people`.
pub fn person(uid: &str, password: &str) -> String {
    format!(
        "dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid} Example\n\
         sn: Example\ngivenName: {uid}\nmail: {uid}@example.test\nuserPassword: {password}\n\n"
    )
}

/// A group's LDIF entry under `ou=groups` with these members (uids).
pub fn group(cn: &str, members: &[&str]) -> String {
    let mut s = format!("dn: cn={cn},ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: {cn}\n");
    for m in members {
        s.push_str(&format!("member: uid={m},ou=people,{SUFFIX}\n"));
    }
    s.push('\n');
    s
}

/// The `[ldap]` lines for this server, with the administrator as service account (its
/// password in a 0600 file under `dir`); no periodic sync (the tests sync when they mean to).
pub fn ldap_config(slapd: &Slapd, dir: &Path) -> String {
    ldap_config_at(&slapd.url(), dir, "sync_interval_secs = 0\n")
}

/// The `[ldap]` lines for a directory at `url`, with `extra` lines.
pub fn ldap_config_at(url: &str, dir: &Path, extra: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let file = dir.join("ldap-bind-password");
    std::fs::write(&file, format!("{ADMIN_PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    format!(
        "[ldap]\nurl = \"{url}\"\nbind_dn = \"{ADMIN_DN}\"\nbind_password_file = \"{}\"\n\
         user_base = \"ou=people,{SUFFIX}\"\ngroup_base = \"ou=groups,{SUFFIX}\"\n{extra}",
        file.display()
    )
}
