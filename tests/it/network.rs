//! No phone-home: during a full session of use, the server opens no connection of its own
//! (it only answers on its listening socket) unless an administrator configured a target.

use crate::support::*;

/// Every TCP/UDP socket of a process: (local port, remote address, remote port, state).
fn sockets(pid: u32) -> Vec<(u16, String, u16, String)> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|l| {
                    l.to_str()?
                        .strip_prefix("socket:[")?
                        .strip_suffix(']')
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || !inodes.contains(f[9]) {
                continue;
            }
            let port =
                |a: &str| u16::from_str_radix(a.rsplit(':').next().unwrap_or("0"), 16).unwrap_or(0);
            let remote = f[2]
                .rsplit_once(':')
                .map(|(a, _)| a.to_string())
                .unwrap_or_default();
            out.push((
                port(f[1]),
                format!("{table}:{remote}"),
                port(f[2]),
                f[3].to_string(),
            ));
        }
    }
    out
}

#[tokio::test]
async fn no_outbound_connections_during_a_full_session() {
    let server = Server::new("").start().await;
    let pid = server.pid();
    server.add_user("alice", &[]);
    let (id, secret) = server.add_client(&["--skip-consent"]);
    let mut seen = Vec::new();
    let mut b = server.browser();
    let watch = |seen: &mut Vec<(u16, String, u16, String)>| {
        for s in sockets(pid) {
            // Listening sockets (state 0A) and connections on the server's own port are
            // inbound; anything else would be a connection the server opened.
            if s.3 != "0A" && s.0 != server.port {
                seen.push(s);
            }
        }
    };
    watch(&mut seen);
    let first = b
        .get(&authorize_url(&id, "&scope=openid%20offline_access"))
        .await;
    watch(&mut seen);
    let cb = b.drive_to_callback(first, "alice").await;
    watch(&mut seen);
    let t = b.redeem(&cb, None, &basic(&id, &secret)).await.json();
    watch(&mut seen);
    let bearer = format!("Bearer {}", t["access_token"].as_str().unwrap());
    b.get_with("/api/v1/oauth/userinfo", &[("authorization", &bearer)])
        .await;
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", t["refresh_token"].as_str().unwrap()),
    ];
    b.post_form_with(
        "/api/v1/oauth/token",
        &form,
        &[("authorization", &basic(&id, &secret))],
    )
    .await;
    watch(&mut seen);
    let page = b.get("/logout").await;
    b.post_form("/logout", &[("csrf", &page.input("csrf").unwrap())])
        .await;
    for _ in 0..5 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        watch(&mut seen);
    }
    assert!(
        !sockets(pid).is_empty(),
        "the probe sees the server's own sockets"
    );
    assert!(
        seen.is_empty(),
        "the server opened connections of its own: {seen:?}"
    );
}

/// The same probe does see a connection the server opens when an administrator configured
/// one (a back-channel logout target that never answers keeps it open long enough).
#[tokio::test]
async fn the_probe_sees_configured_outbound_connections() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            open.push(s);
        }
    });
    let server = Server::new("").start().await;
    let pid = server.pid();
    server.add_user("alice", &[]);
    let bc = format!("http://127.0.0.1:{target_port}/bc");
    let (id, _) = server.add_client(&["--skip-consent", "--backchannel-logout-uri", &bc]);
    let mut b = server.browser();
    let first = b.get(&authorize_url(&id, "")).await;
    b.drive_to_callback(first, "alice").await;
    let page = b.get("/logout").await;
    b.post_form("/logout", &[("csrf", &page.input("csrf").unwrap())])
        .await;
    let mut found = false;
    for _ in 0..40 {
        if sockets(pid).iter().any(|s| s.2 == target_port) {
            found = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    held.abort();
    assert!(
        found,
        "the configured back-channel connection is visible to the probe"
    );
}
