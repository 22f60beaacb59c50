//! The server under test: a `latchkey serve` child process with its own data directory,
//! started with a notify socket so "ready" means what systemd means by it (READY=1 after
//! the listener is bound and the store open).

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");

pub(crate) struct Server {
    pub(crate) dir: PathBuf,
    pub(crate) port: u16,
    pub(crate) config: PathBuf,
    child: Option<Child>,
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Memory {
    /// Resident set now, MiB.
    pub(crate) rss: f64,
    /// Peak resident set since start, MiB.
    pub(crate) peak: f64,
}

impl Server {
    pub(crate) fn new(name: &str, extra_config: &str) -> Server {
        let dir = std::env::temp_dir().join(format!("latchkey-load-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let config = dir.join("latchkey.toml");
        std::fs::write(
            &config,
            format!(
                "issuer = \"https://127.0.0.1:{port}\"\nlisten = \"127.0.0.1:{port}\"\n\
                 data_dir = \"{}\"\n{extra_config}",
                dir.join("data").display()
            ),
        )
        .expect("config");
        Server {
            dir,
            port,
            config,
            child: None,
        }
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub(crate) fn database(&self) -> PathBuf {
        self.data_dir().join("latchkey.redb")
    }

    pub(crate) fn cert(&self) -> PathBuf {
        self.data_dir().join("tls/cert.pem")
    }

    /// Starts `serve` and returns the time from spawn to READY=1.
    pub(crate) fn start(&mut self) -> Duration {
        let sock_path = self.dir.join("notify.sock");
        let _ = std::fs::remove_file(&sock_path);
        let sock = UnixDatagram::bind(&sock_path).expect("notify socket");
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .expect("log");
        let t = Instant::now();
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("NOTIFY_SOCKET", &sock_path)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("serve");
        self.child = Some(child);
        let mut buf = [0u8; 512];
        loop {
            let n = sock.recv(&mut buf).unwrap_or_else(|e| {
                panic!(
                    "no READY=1 from the server ({e}); see {}",
                    self.log_path().display()
                )
            });
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
            {
                return t.elapsed();
            }
        }
    }

    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// SIGTERM and wait (the server drains and persists).
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

/// A child process whose memory and CPU the tool reads from /proc: the server under test,
/// or the floor server (`floor.rs`).
pub(crate) trait Measured {
    fn pid(&self) -> u32;

    fn memory(&self) -> Memory {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map_or(0.0, |kb| kb / 1024.0)
        };
        Memory {
            rss: field("VmRSS:"),
            peak: field("VmHWM:"),
        }
    }

    /// CPU seconds the process has used (user + system).
    fn cpu_secs(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<f64> = rest
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        // Clock ticks are 1/100 s on Linux (USER_HZ).
        (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
    }

    /// Starts a new peak-RSS measurement (VmHWM) from the current RSS.
    fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5");
    }
}

impl Measured for Server {
    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::env::var_os("LATCHKEY_LOAD_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub(crate) fn file_size_mib(p: &Path) -> f64 {
    std::fs::metadata(p).map_or(0.0, |m| m.len() as f64 / (1024.0 * 1024.0))
}
