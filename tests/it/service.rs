//! Running as a service: systemd notifications and SIGHUP reloads.

use std::time::Duration;

use crate::support::*;

#[tokio::test]
async fn systemd_is_told_ready_and_stopping() {
    let mut server = Server::new("");
    let sock = server.dir.0.join("notify.sock");
    let listener = std::os::unix::net::UnixDatagram::bind(&sock).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    server
        .env
        .push(("NOTIFY_SOCKET".into(), sock.to_str().unwrap().into()));
    server.spawn().await;
    let mut buf = [0u8; 256];
    let n = listener.recv(&mut buf).unwrap();
    let ready = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(ready.starts_with("READY=1"), "{ready}");
    // Ready means serving: the listener answers at once.
    assert_eq!(server.browser().get("/healthz").await.status, 200);
    server.signal("HUP");
    let n = listener.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("RELOADING=1\nMONOTONIC_USEC="));
    let n = listener.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("READY=1"));
    server.stop();
    let n = listener.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("STOPPING=1"));
}

async fn instance_name_on_login_page(b: &mut Browser) -> String {
    let page = b.get("/login").await;
    let start = page.body.find("class=\"instance\">").unwrap() + 17;
    page.body[start..].split('<').next().unwrap().to_string()
}

#[tokio::test]
async fn sighup_reloads_configuration_and_keeps_it_when_invalid() {
    let server = Server::new("instance_name = \"Before\"").start().await;
    let mut b = server.browser();
    assert_eq!(instance_name_on_login_page(&mut b).await, "Before");
    let original = std::fs::read_to_string(&server.config).unwrap();
    std::fs::write(&server.config, original.replace("Before", "After")).unwrap();
    server.signal("HUP");
    let mut name = String::new();
    for _ in 0..100 {
        name = instance_name_on_login_page(&mut b).await;
        if name == "After" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(name, "After");

    // An invalid file is refused with a log line; the running configuration stays.
    std::fs::write(&server.config, format!("{original}\nnot_a_key = 1\n")).unwrap();
    server.signal("HUP");
    for _ in 0..100 {
        if server.log().contains("reload refused") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(server.log().contains("reload refused"), "{}", server.log());
    assert!(server.log().contains("not_a_key"));
    assert_eq!(instance_name_on_login_page(&mut b).await, "After");
    assert_eq!(b.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn sighup_reloads_the_tls_certificate() {
    // Two certificates, made by two throwaway instances.
    let mut a = Server::new("").start().await;
    a.stop();
    let mut b = Server::new("").start().await;
    b.stop();
    let served_cert = a.dir.0.join("served-cert.pem");
    let served_key = a.dir.0.join("served-key.pem");
    std::fs::copy(a.data_dir().join("tls/cert.pem"), &served_cert).unwrap();
    std::fs::copy(a.data_dir().join("tls/key.pem"), &served_key).unwrap();
    let extra = format!(
        "[tls]\nmode = \"files\"\ncert = \"{}\"\nkey = \"{}\"",
        served_cert.display(),
        served_key.display()
    );
    let mut server = Server::new(&extra);
    std::fs::create_dir_all(server.data_dir().join("tls")).unwrap();
    // The test browser trusts whatever sits in <data_dir>/tls/cert.pem.
    std::fs::copy(&served_cert, server.data_dir().join("tls/cert.pem")).unwrap();
    server.spawn().await;
    let mut old_trust = server.browser();
    assert_eq!(old_trust.get("/healthz").await.status, 200);

    std::fs::copy(b.data_dir().join("tls/cert.pem"), &served_cert).unwrap();
    std::fs::copy(b.data_dir().join("tls/key.pem"), &served_key).unwrap();
    std::fs::copy(&served_cert, server.data_dir().join("tls/cert.pem")).unwrap();
    server.signal("HUP");
    let mut switched = false;
    for _ in 0..100 {
        if old_trust.try_get("/healthz").await.is_err() {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(switched, "new connections get the new certificate");
    assert_eq!(server.browser().get("/healthz").await.status, 200);
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut server = Server::new("[tls]\nmode = \"off\"").start().await;
    // A token request whose body is still on its way when SIGTERM arrives.
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let body = "grant_type=client_credentials&client_id=nobody";
    let head = format!(
        "POST /api/v1/oauth/token HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&body.as_bytes()[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // New connections are no longer accepted...
    assert!(server.browser().try_get("/healthz").await.is_err());
    // ...but the request under way is answered.
    tcp.write_all(&body.as_bytes()[10..]).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    server.stop();
    assert!(server.log().contains("stopped"));
}

#[tokio::test]
async fn json_logs_on_request() {
    let server = Server::new("[log]\nformat = \"json\"").start().await;
    server.browser().get("/healthz").await;
    let log = server.log_with("\"path\":\"/healthz\"");
    let line = log
        .lines()
        .find(|l| l.contains("\"path\":\"/healthz\""))
        .expect("a JSON request line");
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["fields"]["status"], 200);
    assert!(v["fields"]["request_id"].is_string());
}

#[tokio::test]
async fn per_connection_tls_noise_stays_out_of_the_log() {
    // An IP address as SNI (wrk and some libraries send one): rustls warns about it on
    // every connection, which Latchkey shows only at debug level.
    let mut server = Server::new("").start().await;
    let run = |port: u16| {
        std::process::Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .args(["-servername", "127.0.0.1"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl s_client")
    };
    let out = run(server.port);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("BEGIN CERTIFICATE"),
        "the handshake happened"
    );
    server.browser().get("/healthz").await;
    let log = server.log_with("path=/healthz");
    assert!(!log.contains("SNI"), "{log}");
    // At debug level it is there, so the filter is what keeps it out.
    server.stop();
    server.env.push(("LATCHKEY_LOG".into(), "debug".into()));
    server.spawn().await;
    run(server.port);
    server.browser().get("/healthz").await;
    assert!(server.log_with("SNI").contains("SNI"), "{}", server.log());
}
