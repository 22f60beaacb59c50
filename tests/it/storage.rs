//! Storage faults: a full disk. The data directory is a small tmpfs mounted in a private
//! user and mount namespace (`unshare -rm`), so the test needs no privileges and leaves
//! nothing mounted behind. A controller shell inside the namespace runs the server and
//! fills or frees the disk on request; the test talks to the server over 127.0.0.1.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use crate::support::*;

struct Namespace {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Namespace {
    /// Runs one shell line inside the namespace; returns its stdout and exit code.
    fn run(&mut self, line: &str) -> (String, i32) {
        writeln!(self.input, "{line}; echo \"@done:$?\"").unwrap();
        self.input.flush().unwrap();
        let mut out = String::new();
        loop {
            let mut l = String::new();
            assert!(
                self.output.read_line(&mut l).unwrap() > 0,
                "controller exited: {out}"
            );
            if let Some(code) = l.trim_end().strip_prefix("@done:") {
                return (out, code.parse().unwrap());
            }
            out.push_str(&l);
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = writeln!(self.input, "kill $server 2>/dev/null; wait; exit 0");
        let _ = self.input.flush();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn full_disk_refuses_writes_with_503_keeps_reads_and_recovers() {
    if !Command::new("unshare")
        .args(["-rm", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("SKIPPED: user and mount namespaces are not available here (unshare -rm)");
        return;
    }
    let server = Server::new("[tls]\nmode = \"off\"");
    let data = server.data_dir();
    std::fs::create_dir_all(&data).unwrap();
    let bin = env!("CARGO_BIN_EXE_latchkey");
    let log = server.dir.0.join("server.log");
    let mut child = Command::new("unshare")
        .args(["-rm", "sh"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut ns = Namespace {
        input: child.stdin.take().unwrap(),
        output: BufReader::new(child.stdout.take().unwrap()),
        child,
    };
    let q = |p: &std::path::Path| format!("'{}'", p.display());
    let cli = |args: &str| format!("{bin} {args} --config {}", q(&server.config));
    let (out, code) = ns.run(&format!(
        "mount -t tmpfs -o size=6m tmpfs {d} && chmod 700 {d}",
        d = q(&data)
    ));
    assert_eq!(code, 0, "mount: {out}");
    let (out, code) = ns.run(&format!(
        "printf '%s\\n' '{PASSWORD}' | {} >/dev/null && {}",
        cli("user add alice --email alice@example.com --password-stdin"),
        cli("client add --name App --redirect-uri https://rp.example/cb --json")
    ));
    assert_eq!(code, 0, "set-up: {out}");
    let client: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = client["client_id"].as_str().unwrap().to_string();
    let secret = client["client_secret"].as_str().unwrap().to_string();
    let auth = basic(&id, &secret);
    let (_, code) = ns.run(&format!("{} > {} 2>&1 & server=$!", cli("serve"), q(&log)));
    assert_eq!(code, 0);
    let mut b = server.browser();
    let mut ready = false;
    for _ in 0..200 {
        if b.try_get("/healthz").await.is_ok_and(|r| r.status == 200) {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        ready,
        "server did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // A session and tokens from before the disk fills.
    let tokens = b.sign_in_for_tokens(&id, &auth, "alice").await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let access = tokens.json()["access_token"].as_str().unwrap().to_string();
    let mut refresh = tokens.json()["refresh_token"].as_str().unwrap().to_string();

    // Fill the disk, then write until the database has to grow.
    let (_, code) = ns.run(&format!(
        "dd if=/dev/zero of={}/filler bs=16k 2>/dev/null",
        q(&data)
    ));
    assert_ne!(code, 0, "dd stops at a full disk");

    let mut refused = None;
    let mut accepted = 0;
    for _ in 0..20_000 {
        let r = b.refresh(&refresh, &auth).await;
        match r.status {
            200 => {
                accepted += 1;
                refresh = r.json()["refresh_token"].as_str().unwrap().to_string();
            }
            503 => {
                refused = Some(r);
                break;
            }
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    let refused = refused.expect("writes on a full disk must fail");
    assert_eq!(
        refused.json()["error"],
        "temporarily_unavailable",
        "{}",
        refused.body
    );
    eprintln!("full disk: {accepted} refreshes stored before the first 503");

    // Reads keep working on the full disk.
    assert_eq!(b.get("/healthz").await.status, 200);
    let info = b
        .get_with(
            "/api/v1/oauth/userinfo",
            &[("authorization", &format!("Bearer {access}"))],
        )
        .await;
    assert_eq!(info.status, 200, "{}", info.body);
    let intro = b
        .post_form_with(
            "/api/v1/oauth/introspect",
            &[("token", &refresh)],
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(intro.json()["active"], true, "{}", intro.body);
    // While the disk stays full, writes keep failing with 503 (redb may still fit one
    // into pages it already owns), never with a 500; a refused refresh changes nothing,
    // so its token still works once there is room.
    let mut in_a_row = 0;
    for _ in 0..20_000 {
        let r = b.refresh(&refresh, &auth).await;
        match r.status {
            200 => {
                in_a_row = 0;
                refresh = r.json()["refresh_token"].as_str().unwrap().to_string();
            }
            503 => in_a_row += 1,
            other => panic!("unexpected {other}: {}", r.body),
        }
        if in_a_row == 5 {
            break;
        }
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(in_a_row, 5, "{logged}");

    // The setup page (first administrator) fails with 503 and a request id, and does not
    // show the storage detail.
    let link = logged
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(&format!("{}/setup?token=", server.issuer)))
        .expect("setup link printed");
    let mut admin = server.browser();
    let mut page = admin.get(link.strip_prefix(&server.issuer).unwrap()).await;
    for _ in 0..10 {
        if page.status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        page = admin.get(link.strip_prefix(&server.issuer).unwrap()).await;
    }
    assert_eq!(page.status, 200, "{}", page.body);
    let (csrf, token) = (page.input("csrf").unwrap(), page.input("token").unwrap());
    let r = admin
        .post_form(
            "/setup",
            &[
                ("csrf", &csrf),
                ("token", &token),
                ("username", "root-admin"),
                ("email", "admin@example.com"),
                ("password", PASSWORD),
                ("password2", PASSWORD),
            ],
        )
        .await;
    if r.status == 303 {
        eprintln!("full disk: the setup write still fitted into the database file");
    } else {
        // Refused either while creating the account or earlier, while the store was being
        // reopened; either way a 503 that shows no storage detail.
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(
            r.body.contains("could not be created") || r.body.contains("temporarily unavailable"),
            "{}",
            r.body
        );
        assert!(
            !r.body.contains("No space") && !r.body.contains("os error"),
            "{}",
            r.body
        );
    }
    assert!(logged.contains("storage I/O failed"), "{logged}");
    assert!(!logged.contains("panicked"), "{logged}");

    // Space returns: the server recovers by itself.
    let (_, code) = ns.run(&format!("rm {}/filler", q(&data)));
    assert_eq!(code, 0);
    let mut recovered = None;
    for _ in 0..50 {
        let r = b.refresh(&refresh, &auth).await;
        if r.status != 503 {
            recovered = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let r = recovered.unwrap_or_else(|| {
        panic!(
            "writes work again: {}",
            std::fs::read_to_string(&log).unwrap()
        )
    });
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(push(&mut b, &id, &auth).await.status, 201);
    let logged = std::fs::read_to_string(&log).unwrap();
    for line in logged
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
    {
        eprintln!("server: {line}");
    }
    let (out, code) = ns.run(&cli("user list --json"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"alice\""), "{out}");
}

/// A pushed authorization request (RFC 9126): another kind of write.
async fn push(b: &mut Browser, id: &str, auth: &str) -> Resp {
    let state = "s".repeat(2000);
    b.post_form_with(
        "/api/v1/oauth/par",
        &[
            ("client_id", id),
            ("response_type", "code"),
            ("redirect_uri", CALLBACK),
            ("scope", "openid"),
            ("state", &state),
        ],
        &[("authorization", auth)],
    )
    .await
}
