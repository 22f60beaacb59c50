//! A real PostgreSQL server for tests: Debian's `postgresql` binaries, a data directory of
//! its own under the temporary directory, listening on a free loopback port only. Started
//! once per test process (as the `postgres` user when the tests run as root: initdb
//! refuses root) and stopped, with its directory removed, by a watchdog as soon as the
//! test process is gone. Each caller gets a database of its own. Uses std only, so the
//! end-to-end tests include this file too.

#![allow(unreachable_pub, dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Server {
    pub port: u16,
    pub dir: PathBuf,
    /// Runs commands as the server's owner (`runuser -u postgres --` as root).
    as_owner: Vec<String>,
    bin: PathBuf,
    durable: bool,
}

/// The newest installed server's binaries, e.g. `/usr/lib/postgresql/15/bin`.
fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL tests need the server binaries (apt-get install postgresql; \
             scripts/test installs it)"
        ),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Server {
    fn start() -> Server {
        Server::start_with(false)
    }

    /// `durable`: fsync on, as a production server runs (the benchmarks); the tests run
    /// without it.
    fn start_with(durable: bool) -> Server {
        let bin = bin_dir();
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("latchkey-pg-{}-{}", std::process::id(), port));
        std::fs::create_dir_all(&dir).expect("a directory for PostgreSQL");
        let as_owner: Vec<String> = if is_root() {
            let ok = Command::new("chown")
                .args(["postgres:postgres", &dir.display().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown of {} to postgres failed", dir.display());
            ["runuser", "-u", "postgres", "--"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            Vec::new()
        };
        let server = Server {
            port,
            dir: dir.clone(),
            as_owner,
            bin,
            durable,
        };
        let data = dir.join("data");
        let out = server
            .owner_cmd("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        server.run_server(&data);
        server
    }

    /// The server's command-line settings.
    fn options(&self) -> String {
        format!(
            "-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync={fsync}",
            port = self.port,
            dir = self.dir.display(),
            fsync = if self.durable { "on" } else { "off" },
        )
    }

    fn ctl(&self, args: &[&str]) {
        let data = self.dir.join("data");
        let out = self
            .owner_cmd("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(args)
            .output()
            .expect("pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }

    /// Stops the server (fast shutdown: connections are cut).
    pub fn stop(&self) {
        self.ctl(&["-m", "fast", "-w", "stop"]);
    }

    /// Starts the stopped server again, on the same port with the same data.
    pub fn start_again(&self) {
        let log = self.dir.join("log").display().to_string();
        let options = self.options();
        self.ctl(&["-l", &log, "-w", "-o", &options, "start"]);
    }

    /// Serves TLS with this certificate chain and key (PEM) from now on; plain
    /// connections stay allowed.
    pub fn enable_tls(&self, cert_pem: &str, key_pem: &str) {
        let cert = self.dir.join("server.crt");
        let key = self.dir.join("server.key");
        std::fs::write(&cert, cert_pem).expect("server.crt");
        std::fs::write(&key, key_pem).expect("server.key");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        if !self.as_owner.is_empty() {
            for f in [&cert, &key] {
                let ok = Command::new("chown")
                    .args(["postgres:postgres", &f.display().to_string()])
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "chown {}", f.display());
            }
        }
        self.psql(
            "postgres",
            &format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert.display()),
        );
        self.psql(
            "postgres",
            &format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()),
        );
        self.psql("postgres", "ALTER SYSTEM SET ssl = on");
        self.psql("postgres", "SELECT pg_reload_conf()");
    }

    fn owner_cmd(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        match self.as_owner.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    /// Starts the server under a watchdog shell that stops it (fast shutdown) and removes
    /// the directory once this process has exited.
    fn run_server(&self, data: &Path) {
        let log = self.dir.join("log");
        let ctl = self.bin.join("pg_ctl").display().to_string();
        let owner = self.as_owner.join(" ");
        let script = format!(
            "{owner} {ctl} -D {data} -l {log} -w -o \"{options}\" start >/dev/null || exit 1; \
             ( while kill -0 {me} 2>/dev/null; do sleep 1; done; \
               {owner} {ctl} -D {data} -m fast stop >/dev/null 2>&1; rm -rf {dir} ) \
               </dev/null >/dev/null 2>&1 &",
            data = data.display(),
            log = log.display(),
            dir = self.dir.display(),
            me = std::process::id(),
            options = self.options(),
        );
        let ok = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "PostgreSQL did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Runs SQL as the superuser, on database `db`.
    pub fn psql(&self, db: &str, sql: &str) {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .args(["-p", &self.port.to_string(), "-d", db, "-c", sql])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A new, empty database; returns its URL.
    pub fn database(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

/// The test process's server, started on first use.
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(Server::start)
}

/// A server of the caller's own, which it may stop, start and reconfigure; stopped when
/// this process exits.
pub fn private() -> Server {
    Server::start()
}

/// A server with fsync on, started on first use (for measurements).
pub fn durable_server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| Server::start_with(true))
}

impl Server {
    /// The server's version, as `postgres --version` prints it.
    pub fn version(&self) -> String {
        Command::new(self.bin.join("postgres"))
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }

    /// The server's processes' CPU time so far, in seconds (the postmaster and every
    /// backend, read from /proc).
    pub fn cpu_secs(&self) -> f64 {
        let pid: u32 = std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()))
            .unwrap_or(0);
        let tick = 100.0;
        let mut total = 0.0;
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            let Some(after) = stat.rsplit_once(')').map(|(_, a)| a) else {
                continue;
            };
            let f: Vec<&str> = after.split_whitespace().collect();
            let own: u32 = e
                .file_name()
                .to_str()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let ppid: u32 = f.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
            if own == pid || ppid == pid {
                let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
                total += (t(11) + t(12)) / tick;
            }
        }
        total
    }
}
