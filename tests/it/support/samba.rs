//! A real Active Directory domain controller for the directory tests: Debian's Samba
//! (installed by `scripts/test`), provisioned by the test in its own directory as a
//! domain `corp.example.test` and serving LDAP only, over TLS with a test CA's certificate
//! for `localhost`, on 127.0.0.1 and ::1. Samba's LDAP ports are fixed (636), so the
//! tests that use it take a lock; it needs root for that port (CI runs as root).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REALM: &str = "CORP.EXAMPLE.TEST";
pub const BASE: &str = "DC=corp,DC=example,DC=test";
pub const ADMIN_DN: &str = "CN=Administrator,CN=Users,DC=corp,DC=example,DC=test";
pub const ADMIN_PASSWORD: &str = "Adm1n-Passw0rd!";

/// One Samba at a time: its ports are fixed.
static ONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Samba {
    child: Option<Child>,
    pub dir: PathBuf,
    _one: tokio::sync::MutexGuard<'static, ()>,
}

impl Samba {
    /// Whether this machine can run the domain controller here (root, Samba installed).
    pub fn possible() -> Result<(), String> {
        if !Path::new("/usr/sbin/samba").exists() {
            return Err("samba is missing: run scripts/test once (it installs samba)".into());
        }
        if !root() {
            return Err("Samba's LDAP port 636 needs root".into());
        }
        Ok(())
    }

    /// Provisions a domain under `dir`, runs `setup` (samba-tool arguments, each list one
    /// command) against its database, and starts it with `cert`/`key` for TLS.
    pub async fn start(dir: &Path, cert: &Path, key: &Path, setup: &[&[&str]]) -> Samba {
        let one = ONE.lock().await;
        let dir = dir.join("samba");
        std::fs::create_dir_all(dir.join("run")).unwrap();
        let s = Samba {
            child: None,
            dir,
            _one: one,
        };
        s.tool(&[
            "domain",
            "provision",
            &format!("--realm={REALM}"),
            "--domain=CORP",
            "--server-role=dc",
            "--dns-backend=NONE",
            &format!("--adminpass={ADMIN_PASSWORD}"),
            &format!("--targetdir={}", s.dir.display()),
            "--option=interfaces=lo",
            "--option=bind interfaces only=yes",
        ]);
        // LDAP only, its files and logs under the test's directory, the test CA's
        // certificate (Samba wants the key readable by its owner only); a changed password
        // stops working at once (AD's default keeps it an hour for NTLM, which Samba's
        // simple binds go through).
        use std::os::unix::fs::PermissionsExt;
        let tls = s.dir.join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        std::fs::copy(cert, tls.join("cert.pem")).unwrap();
        std::fs::copy(key, tls.join("key.pem")).unwrap();
        std::fs::set_permissions(tls.join("key.pem"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        let conf = s.conf();
        let text = std::fs::read_to_string(&conf).unwrap().replacen(
            "[global]",
            &format!(
                "[global]\n\tserver services = ldap\n\told password allowed period = 0\n\tpid directory = {d}/run\n\tlog file = {d}/log.%m\n\
                 \ttls enabled = yes\n\ttls certfile = {t}/cert.pem\n\ttls keyfile = {t}/key.pem\n\ttls cafile =\n",
                d = s.dir.display(),
                t = tls.display()
            ),
            1,
        );
        std::fs::write(&conf, text).unwrap();
        // People change their own password whenever they like (the domain's default
        // minimum age is a day).
        s.tool(&[
            "domain",
            "passwordsettings",
            "set",
            "--min-pwd-age=0",
            "-H",
            &s.ldb(),
        ]);
        for command in setup {
            let mut args = command.to_vec();
            let ldb = s.ldb();
            args.extend_from_slice(&["-H", &ldb]);
            s.tool(&args);
        }
        let mut s = s;
        s.run();
        s
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("etc/smb.conf")
    }

    fn ldb(&self) -> String {
        self.dir.join("private/sam.ldb").display().to_string()
    }

    fn run(&mut self) {
        let log = std::fs::File::create(self.dir.join("samba.out")).unwrap();
        let child = Command::new("/usr/sbin/samba")
            .args(["-i", "-M", "single", "-s"])
            .arg(self.conf())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("samba starts");
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", 636)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "samba did not start: {}",
                std::fs::read_to_string(self.dir.join("samba.out")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `samba-tool` with these arguments against the domain (its database file).
    pub fn tool(&self, args: &[&str]) {
        let mut cmd = Command::new("samba-tool");
        cmd.args(args);
        if self.conf().exists() {
            cmd.arg("-s").arg(self.conf());
        }
        let out = cmd.stdin(Stdio::null()).output().expect("samba-tool runs");
        assert!(
            out.status.success(),
            "samba-tool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `samba-tool <args> -H <database>` while the server runs.
    pub fn change(&self, args: &[&str]) {
        let mut a = args.to_vec();
        let ldb = self.ldb();
        a.extend_from_slice(&["-H", &ldb]);
        self.tool(&a);
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Samba {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether this process runs as root (its effective uid, from /proc).
fn root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
