//! Resource exhaustion: slow-header and slow-body clients by the hundred do not stop normal
//! clients from being served and are cut off by the timers; a flood of wrong passwords
//! costs at most the hashing pool and is throttled; memory stays bounded (peak RSS is
//! printed).

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::support::*;

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn slow_clients_do_not_starve_normal_ones() {
    let server = Server::new("[tls]\nmode = \"off\"").start().await;
    let pid = server.pid();
    let mut slow = Vec::new();
    // From four other addresses (one address may hold 256 connections at most).
    let port = server.port;
    let connect = |i: usize| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        let ip = std::net::Ipv4Addr::new(127, 0, 1, (i % 4 + 1) as u8);
        socket.bind((ip, 0).into()).unwrap();
        socket
            .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .unwrap()
    };
    // 300 clients that send half a request head and then nothing...
    for i in 0..300 {
        let mut s = connect(i).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    // ...and 100 that announce a body and trickle it.
    for i in 0..100 {
        let mut s = connect(i).await;
        s.write_all(b"POST /api/v1/oauth/token HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 1000\r\n\r\ngrant").await.unwrap();
        slow.push(s);
    }
    let mut b = server.browser();
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(b.get("/healthz").await.status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "normal clients were held up: {:?}",
        started.elapsed()
    );

    // The header-read timer (10 s) and body timer (15 s) close the slow ones.
    let mut probe = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    probe
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let cut = tokio::time::timeout(Duration::from_secs(15), async {
        use tokio::io::AsyncReadExt;
        loop {
            match probe.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(cut.is_ok(), "a slow-header client was never cut off");
    let rss = peak_rss_kib(pid);
    println!(
        "slow clients: 400 held, normal requests served; peak RSS {} MiB",
        rss / 1024
    );
    assert!(rss < 200 * 1024, "peak RSS {rss} KiB");
    drop(slow);
}

#[tokio::test]
async fn a_password_flood_costs_at_most_the_pool_and_is_throttled() {
    let server = Server::new("[login]\nip_max_failures = 30").start().await;
    let pid = server.pid();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let mut b = server.browser();
        tasks.push(tokio::spawn(async move {
            let page = b.get("/login").await;
            let csrf = page.input("csrf").unwrap();
            let r = b
                .post_form(
                    "/login",
                    &[
                        ("username", &format!("guess{i}")),
                        ("password", "wrong password guess"),
                        ("csrf", &csrf),
                    ],
                )
                .await;
            r.status
        }));
    }
    let mut counts = std::collections::BTreeMap::new();
    for t in tasks {
        *counts.entry(t.await.unwrap()).or_insert(0) += 1;
    }
    println!(
        "password flood of 60: {counts:?}; peak RSS {} MiB",
        peak_rss_kib(pid) / 1024
    );
    for status in counts.keys() {
        assert!(
            matches!(status, 401 | 429 | 503),
            "unexpected status {status}"
        );
    }
    // At most 30 failures per address are evaluated before the address is blocked, and
    // the pool refuses what it cannot queue: some of the 60 never reach argon2.
    assert!(counts.get(&401).copied().unwrap_or(0) <= 30, "{counts:?}");
    assert!(
        counts.get(&429).copied().unwrap_or(0) + counts.get(&503).copied().unwrap_or(0) >= 30,
        "{counts:?}"
    );
    // Two hashing threads with 19 MiB each on top of the idle server.
    assert!(
        peak_rss_kib(pid) < 120 * 1024,
        "peak RSS {} KiB",
        peak_rss_kib(pid)
    );
}
