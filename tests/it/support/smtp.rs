//! A real SMTP server for the mail tests: aiosmtpd (PyPI) in the test virtualenv that
//! `scripts/test` makes (`target/interop-venv`), started on a loopback port with its own
//! output file; every message it takes is one JSON line there (see `smtp_server.py`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The virtualenv's Python with aiosmtpd (`LATCHKEY_TEST_PYTHON` overrides it).
fn python() -> PathBuf {
    let p = std::env::var_os("LATCHKEY_TEST_PYTHON").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/interop-venv/bin/python"),
        PathBuf::from,
    );
    let ok = Command::new(&p)
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} has no aiosmtpd: run scripts/test once (it makes the virtualenv), or \
         python3 -m venv target/interop-venv && target/interop-venv/bin/pip install -r tests/interop/requirements.txt",
        p.display()
    );
    p
}

pub struct Smtp {
    child: Child,
    pub port: u16,
    out: PathBuf,
}

impl Smtp {
    /// Starts the server on `port`; with `tls` (certificate and key files) it offers and
    /// requires STARTTLS.
    pub fn start(dir: &Path, port: u16, tls: Option<(&Path, &Path)>) -> Smtp {
        let out = dir.join(format!("mail-{port}.jsonl"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/smtp_server.py");
        let mut cmd = Command::new(python());
        cmd.arg(script).arg(port.to_string()).arg(&out);
        if let Some((cert, key)) = tls {
            cmd.arg(cert).arg(key);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the SMTP server starts");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the SMTP server did not start");
        Smtp { child, port, out }
    }

    /// Every message received so far.
    pub fn mails(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits until `n` messages have arrived (at most `timeout`) and returns them all.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let mails = self.mails();
            if mails.len() >= n {
                return mails;
            }
            assert!(
                start.elapsed() < timeout,
                "{} of {n} mails within {timeout:?}",
                mails.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The link on a line of its own in a mail's text part that starts with `prefix`.
pub fn link_in(mail: &Value, prefix: &str) -> String {
    mail["text"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} link in {mail}"))
        .to_string()
}

/// A test CA and a certificate it signed for `localhost` and 127.0.0.1: the CA's PEM
/// file, the certificate's and the key's.
pub fn test_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca_cert, &ca_key)
        .unwrap();
    let paths = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}-cert.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, leaf.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    (paths.0, paths.1, paths.2)
}

/// The `[mail]` lines for a server on 127.0.0.1:`port`, with `extra` lines.
pub fn mail_config(port: u16, extra: &str) -> String {
    format!(
        "[mail]\nsmtp_url = \"smtp://127.0.0.1:{port}\"\nfrom = \"Latchkey <id@example.test>\"\nretry_secs = 1\n{extra}\n"
    )
}
