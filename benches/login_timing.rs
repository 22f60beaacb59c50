//! Login timing for unknown and known users (SPEC §8: one generic failure and equal timing,
//! so response times do not tell which usernames exist). Starts the real server with the
//! default argon2id parameters, then sends interleaved failed sign-ins for existing users
//! (wrong password) and for names that do not exist, timing each POST /login.
//!
//! Run with `cargo bench --bench login_timing` (`LATCHKEY_BENCH_LOGINS` sets the number of
//! attempts per kind, default 40). It prints the distributions and the ratio of medians.
//! No assertions on time: machines are shared, so compare the ratios of one run.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_latchkey");
const PASSWORD: &str = "correct horse battery staple 9";

struct Reply {
    status: u16,
    head: String,
    body: String,
}

fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One failed sign-in: fetch the form (CSRF cookie and field), then time the POST.
fn timed_login(port: u16, username: &str) -> Duration {
    let page = request(port, "GET", "/login", &[], "");
    assert_eq!(page.status, 200, "login page: {}", page.body);
    let cookie = page
        .head
        .lines()
        .filter_map(|l| l.strip_prefix("set-cookie: "))
        .find(|c| c.contains("csrf"))
        .and_then(|c| c.split(';').next())
        .expect("CSRF cookie")
        .to_string();
    let needle = "name=\"csrf\" value=\"";
    let start = page.body.find(needle).expect("CSRF field") + needle.len();
    let end = start + page.body[start..].find('"').expect("end of CSRF field");
    let csrf = &page.body[start..end];
    let form = format!(
        "username={}&password={}&csrf={}",
        enc(username),
        enc("not the right password at all"),
        enc(csrf)
    );
    let t = Instant::now();
    let r = request(
        port,
        "POST",
        "/login",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("cookie", &cookie),
        ],
        &form,
    );
    let took = t.elapsed();
    assert_eq!(
        r.status, 401,
        "{username}: expected the generic failure, got {}",
        r.status
    );
    took
}

fn summary(name: &str, v: &mut [Duration]) -> f64 {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mean = v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64;
    let median = ms(v[v.len() / 2]);
    println!(
        "{name:<28} n={:<4} min {:>7.2} ms  median {:>7.2} ms  mean {:>7.2} ms  p90 {:>7.2} ms  max {:>7.2} ms",
        v.len(),
        ms(v[0]),
        median,
        mean,
        ms(v[v.len() * 9 / 10]),
        ms(v[v.len() - 1])
    );
    median
}

struct Running(Child, PathBuf);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn main() {
    let n: usize = std::env::var("LATCHKEY_BENCH_LOGINS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let dir = std::env::temp_dir().join(format!("latchkey-login-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let config = dir.join("latchkey.toml");
    // Default argon2id parameters (what users run); the per-address limit is raised so the
    // run measures hashing, not the throttle. Each username is tried once, so the
    // per-username delay never applies either.
    std::fs::write(
        &config,
        format!(
            "issuer = \"http://127.0.0.1:{port}\"\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n[tls]\nmode = \"off\"\n[login]\nip_max_failures = 1000000\n",
            dir.join("data").display()
        ),
    )
    .expect("config");
    println!("creating {n} users with the default argon2id parameters ...");
    for i in 0..n {
        add_user(&config, &format!("known-{i}"));
    }
    let log = std::fs::File::create(dir.join("server.log")).expect("log");
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("serve");
    let _running = Running(child, dir.clone());
    wait_ready(port);

    // Warm-up: the first hashes allocate the work areas.
    for i in 0..3 {
        timed_login(port, &format!("warm-up-{i}"));
    }
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..n {
        // Alternate the order so drift in machine load hits both kinds alike.
        if i % 2 == 0 {
            known.push(timed_login(port, &format!("known-{i}")));
            unknown.push(timed_login(port, &format!("nobody-{i}")));
        } else {
            unknown.push(timed_login(port, &format!("nobody-{i}")));
            known.push(timed_login(port, &format!("known-{i}")));
        }
    }
    let k = summary("known user, wrong password", &mut known);
    let u = summary("unknown user", &mut unknown);
    println!(
        "median unknown/known = {:.3} (1.000 = equal; compare with the spread above)",
        u / k
    );
}

fn add_user(config: &Path, name: &str) {
    let mut child = Command::new(BIN)
        .args(["user", "add", name, "--email"])
        .arg(format!("{name}@example.com"))
        .args(["--password-stdin", "--config"])
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("user add");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .expect("password");
    assert!(child.wait().expect("user add").success(), "user add {name}");
}

fn wait_ready(port: u16) {
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok()
            && request(port, "GET", "/healthz", &[], "").status == 200
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server did not become ready");
}
