//! Test support: a real `latchkey serve` process on a loopback port with a temporary data
//! directory, a small HTTPS client with a cookie jar that trusts the server's generated
//! certificate, and independent JWT verification against the published JWKS.

#![allow(dead_code)]

#[path = "../../../src/testutil_postgres.rs"]
pub mod postgres;
pub mod samba;
pub mod slapd;
pub mod smtp;
pub mod webdriver;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use serde_json::Value;

pub const PASSWORD: &str = "correct horse battery staple";

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!("latchkey-it-{}", latchkey::clock::random_id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Server {
    pub dir: TempDir,
    pub port: u16,
    pub issuer: String,
    pub config: PathBuf,
    child: Option<Child>,
    tls: bool,
    /// Extra environment for the server process.
    pub env: Vec<(String, String)>,
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): stdout {:?} stderr {:?} code {}",
                self.stdout, self.stderr, self.code
            )
        })
    }
}

impl Server {
    /// A configured but not yet started server (TLS self-signed, fast argon2 parameters).
    pub fn new(extra: &str) -> Server {
        Server::named("127.0.0.1", extra)
    }

    /// A configured server whose issuer names `host` (it still listens on 127.0.0.1):
    /// `localhost` for what browsers allow only under a host name (passkeys).
    pub fn named(host: &str, extra: &str) -> Server {
        let dir = TempDir::new();
        let port = free_port();
        let tls = !extra.contains("mode = \"off\"");
        let scheme = if tls { "https" } else { "http" };
        let issuer = format!("{scheme}://{host}:{port}");
        let config = dir.0.join("latchkey.toml");
        let text = format!(
            "issuer = \"{issuer}\"\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n{extra}\n[password]\nmemory_kib = 19456\niterations = 2\n",
            dir.0.join("data").display()
        );
        std::fs::write(&config, text).unwrap();
        Server {
            dir,
            port,
            issuer,
            config,
            child: None,
            tls,
            env: vec![],
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.0.join("data")
    }

    /// Starts `latchkey serve` and waits until /healthz answers.
    pub async fn start(mut self) -> Server {
        self.spawn().await;
        self
    }

    pub async fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.0.join("server.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .env_remove("LATCHKEY_ISSUER")
            .env_remove("LATCHKEY_LISTEN")
            .env_remove("LATCHKEY_DATA_DIR")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..300 {
            if self.cert_ready() {
                let mut b = self.browser();
                if let Ok(r) = b.try_get("/healthz").await
                    && r.status == 200
                {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited with {status}: {}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server did not become ready: {}", self.log());
    }

    fn cert_ready(&self) -> bool {
        !self.tls || self.data_dir().join("tls/cert.pem").exists()
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server started").id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("server.log")).unwrap_or_default()
    }

    /// The log once it contains `text` (access-log lines are written in batches, a
    /// fraction of a second after their request), or as it is after five seconds.
    pub fn log_with(&self, text: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let log = self.log();
            if log.contains(text) || std::time::Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Sends a signal (`HUP`, `TERM`, ...) to the server.
    pub fn signal(&self, name: &str) {
        let pid = self.pid();
        assert!(
            Command::new("kill")
                .arg(format!("-{name}"))
                .arg(pid.to_string())
                .status()
                .unwrap()
                .success()
        );
    }

    /// Kills the server with SIGKILL (no chance to flush anything) and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            for _ in 0..200 {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs a management command with this server's configuration.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(s) = stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn add_user(&self, name: &str, extra: &[&str]) -> Value {
        let mut args = vec!["user", "add", name, "--email"];
        let email = format!("{name}@example.com");
        args.push(&email);
        args.extend_from_slice(&["--password-stdin", "--json"]);
        args.extend_from_slice(extra);
        let out = self.cli(&args, Some(&format!("{PASSWORD}\n")));
        assert_eq!(out.code, 0, "user add failed: {}", out.stderr);
        out.json()
    }

    /// Registers a confidential client with redirect URI `https://rp.example/cb`.
    pub fn add_client(&self, extra: &[&str]) -> (String, String) {
        let mut args = vec![
            "client",
            "add",
            "--name",
            "Test App",
            "--redirect-uri",
            CALLBACK,
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = self.cli(&args, None);
        assert_eq!(out.code, 0, "client add failed: {}", out.stderr);
        let v = out.json();
        (
            v["client_id"].as_str().unwrap().to_string(),
            v["client_secret"].as_str().unwrap_or("").to_string(),
        )
    }

    pub fn browser(&self) -> Browser {
        let tls = if self.tls {
            let mut roots = rustls::RootCertStore::empty();
            let pem = std::fs::read(self.data_dir().join("tls/cert.pem")).unwrap();
            use rustls::pki_types::pem::PemObject;
            for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
                roots.add(c.unwrap()).unwrap();
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let cfg = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
        } else {
            None
        };
        Browser {
            base: self.issuer.clone(),
            port: self.port,
            tls,
            cookies: HashMap::new(),
            set_cookies: vec![],
            local: None,
        }
    }

    /// A browser whose connections come from another loopback address (127.0.0.0/8), as
    /// another machine's would.
    pub fn browser_from(&self, local: std::net::IpAddr) -> Browser {
        Browser {
            local: Some(local),
            ..self.browser()
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub const CALLBACK: &str = "https://rp.example/cb";

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn location(&self) -> String {
        self.header("location")
            .unwrap_or_else(|| panic!("no Location ({}): {}", self.status, self.body))
            .to_string()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Whether a `Set-Cookie` of this response clears the cookie whose name ends in `name`.
    pub fn set_cookie_cleared(&self, name: &str) -> bool {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|c| {
                c.split_once('=').is_some_and(|(k, _)| k.ends_with(name)) && c.contains("Max-Age=0")
            })
    }

    /// Value of a hidden input in an HTML form.
    pub fn input(&self, name: &str) -> Option<String> {
        let needle = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&needle)? + needle.len();
        let end = self.body[start..].find('"')? + start;
        Some(html_unescape(&self.body[start..end]))
    }
}

pub fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Query (or fragment) parameters of a URL.
pub fn params_of(url: &str) -> HashMap<String, String> {
    let q = url.split_once(['?', '#']).map(|(_, q)| q).unwrap_or("");
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A user agent with a cookie jar. Redirects are never followed automatically.
pub struct Browser {
    pub base: String,
    port: u16,
    tls: Option<tokio_rustls::TlsConnector>,
    pub cookies: HashMap<String, String>,
    pub set_cookies: Vec<String>,
    /// The loopback address connections come from (default 127.0.0.1).
    pub local: Option<std::net::IpAddr>,
}

impl Browser {
    fn url_path(&self, url: &str) -> String {
        url.strip_prefix(&self.base).unwrap_or(url).to_string()
    }

    pub async fn try_send(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> std::io::Result<Resp> {
        let path = self.url_path(url);
        let server = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let tcp = match self.local {
            None => tokio::net::TcpStream::connect(server).await?,
            Some(ip) => {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.bind(std::net::SocketAddr::new(ip, 0))?;
                socket.connect(server).await?
            }
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(&path)
            .header("host", format!("127.0.0.1:{}", self.port));
        if !self.cookies.is_empty() {
            let c = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            builder = builder.header("cookie", c);
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let req = builder
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let resp = match &self.tls {
            Some(connector) => {
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
                let stream = connector.connect(name, tcp).await?;
                send(hyper_util::rt::TokioIo::new(stream), req).await?
            }
            None => send(hyper_util::rt::TokioIo::new(tcp), req).await?,
        };
        for v in resp.headers.get_all("set-cookie") {
            let v = v.to_str().unwrap().to_string();
            if let Some((kv, _)) = v.split_once(';')
                && let Some((k, val)) = kv.split_once('=')
            {
                if v.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), val.to_string());
                }
            }
            self.set_cookies.push(v);
        }
        Ok(resp)
    }

    pub async fn try_get(&mut self, url: &str) -> std::io::Result<Resp> {
        self.try_send("GET", url, &[], "").await
    }

    pub async fn get(&mut self, url: &str) -> Resp {
        self.try_get(url).await.unwrap()
    }

    pub async fn get_with(&mut self, url: &str, headers: &[(&str, &str)]) -> Resp {
        self.try_send("GET", url, headers, "").await.unwrap()
    }

    pub async fn post_form(&mut self, url: &str, pairs: &[(&str, &str)]) -> Resp {
        self.post_form_with(url, pairs, &[]).await
    }

    pub async fn post_form_with(
        &mut self,
        url: &str,
        pairs: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Resp {
        let body = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut h = vec![("content-type", "application/x-www-form-urlencoded")];
        h.extend_from_slice(headers);
        self.try_send("POST", url, &h, &body).await.unwrap()
    }

    pub async fn post_raw(
        &mut self,
        url: &str,
        content_type: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut h = vec![("content-type", content_type)];
        h.extend_from_slice(headers);
        self.try_send("POST", url, &h, body).await.unwrap()
    }

    /// Submits the login form shown at `login_url` (a relative URL).
    pub async fn login(&mut self, login_url: &str, username: &str, password: &str) -> Resp {
        let page = self.get(login_url).await;
        assert_eq!(page.status, 200, "login page: {}", page.body);
        let csrf = page.input("csrf").expect("login form has a CSRF field");
        let mut form = vec![
            ("username", username),
            ("password", password),
            ("csrf", csrf.as_str()),
        ];
        let interaction = page.input("interaction");
        if let Some(i) = &interaction {
            form.push(("interaction", i.as_str()));
        }
        let next = page.input("next");
        if let Some(n) = &next {
            form.push(("next", n.as_str()));
        }
        self.post_form("/login", &form).await
    }

    /// Answers the consent page at `url` with `decision`.
    pub async fn consent(&mut self, url: &str, decision: &str) -> Resp {
        let page = self.get(url).await;
        assert_eq!(page.status, 200, "consent page: {}", page.body);
        let csrf = page.input("csrf").unwrap();
        let interaction = page.input("interaction").unwrap();
        self.post_form(
            "/consent",
            &[
                ("csrf", &csrf),
                ("interaction", &interaction),
                ("decision", decision),
            ],
        )
        .await
    }

    /// Follows redirects from `resp` through login and consent until the browser is sent
    /// to the relying party; returns that final Location.
    /// A refresh_token grant (RFC 6749 §6) with the given client authentication header.
    pub async fn refresh(&mut self, refresh_token: &str, auth: &str) -> Resp {
        self.post_form_with(
            "/api/v1/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
            &[("authorization", auth)],
        )
        .await
    }

    /// Redeems the code in `callback` at the token endpoint with the given client
    /// authentication header (and PKCE verifier, if any).
    pub async fn redeem(&mut self, callback: &str, verifier: Option<&str>, auth: &str) -> Resp {
        let code = params_of(callback)["code"].clone();
        // The redirect URI is the callback the code arrived at, without its query.
        let redirect_uri = callback.split('?').next().unwrap_or(CALLBACK);
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v));
        }
        self.post_form_with("/api/v1/oauth/token", &form, &[("authorization", auth)])
            .await
    }

    /// A whole code flow with PKCE for `username`: the token response.
    pub async fn sign_in_for_tokens(
        &mut self,
        client_id: &str,
        auth: &str,
        username: &str,
    ) -> Resp {
        let (verifier, challenge) = pkce();
        let start = self
            .get(&authorize_url(
                client_id,
                &format!("&code_challenge={challenge}&code_challenge_method=S256"),
            ))
            .await;
        let callback = self.drive_to_callback(start, username).await;
        self.redeem(&callback, Some(&verifier), auth).await
    }

    pub async fn drive_to_callback(&mut self, mut resp: Resp, username: &str) -> String {
        for _ in 0..10 {
            assert!(
                matches!(resp.status, 302 | 303),
                "expected a redirect, got {}: {}",
                resp.status,
                resp.body
            );
            let loc = resp.location();
            if loc.starts_with(CALLBACK) {
                return loc;
            }
            resp = if loc.starts_with("/login") {
                self.login(&loc, username, PASSWORD).await
            } else if loc.starts_with("/consent") {
                self.consent(&loc, "allow").await
            } else {
                self.get(&loc).await
            };
        }
        panic!("too many redirects");
    }
}

async fn send<I>(io: I, req: Request<Full<Bytes>>) -> std::io::Result<Resp>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    let resp = sender
        .send_request(req)
        .await
        .map_err(std::io::Error::other)?;
    let (parts, body) = resp.into_parts();
    let bytes = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    Ok(Resp {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// A PKCE pair (RFC 7636): 64-character verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    let verifier = format!(
        "{}{}",
        latchkey::clock::random_token(),
        "-._~abcdefghijklmnopqrstu"
    );
    let challenge = URL_SAFE_NO_PAD.encode(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref(),
    );
    (verifier, challenge)
}

/// Verifies a compact JWS against a JWKS document, independently of the server's code:
/// RS256 with the JWK's n/e and ES256 with its x/y, through aws-lc-rs. Returns the header
/// and the claims.
pub fn verify_jwt(token: &str, jwks: &Value) -> (Value, Value) {
    use aws_lc_rs::signature;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "compact JWS");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    let kid = header["kid"].as_str().expect("kid in header");
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .expect("kid in JWKS");
    let input = format!("{}.{}", parts[0], parts[1]);
    let b = |f: &str| URL_SAFE_NO_PAD.decode(key[f].as_str().unwrap()).unwrap();
    match header["alg"].as_str().unwrap() {
        "RS256" => {
            let (n, e) = (b("n"), b("e"));
            signature::RsaPublicKeyComponents { n: &n, e: &e }
                .verify(
                    &signature::RSA_PKCS1_2048_8192_SHA256,
                    input.as_bytes(),
                    &sig,
                )
                .expect("RS256 signature verifies");
        }
        "ES256" => {
            let mut point = vec![4u8];
            point.extend(b("x"));
            point.extend(b("y"));
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point)
                .verify(input.as_bytes(), &sig)
                .expect("ES256 signature verifies");
        }
        other => panic!("unexpected alg {other}"),
    }
    (header, claims)
}

/// `at_hash` per OIDC Core §3.1.3.6.
pub fn at_hash(token: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    URL_SAFE_NO_PAD.encode(&d.as_ref()[..16])
}

pub fn basic(id: &str, secret: &str) -> String {
    use base64::engine::general_purpose::STANDARD;
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

/// An authorization request for `CALLBACK`; `extra` may replace the default scope.
pub fn authorize_url(client_id: &str, extra: &str) -> String {
    let scope = if extra.contains("&scope=") {
        ""
    } else {
        "&scope=openid%20profile%20email"
    };
    format!(
        "/api/v1/oauth/authorize?client_id={client_id}&redirect_uri={}&response_type=code{scope}&state=st-._~8&nonce=n-0S6_WzA2Mj{extra}",
        enc(CALLBACK)
    )
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// A one-endpoint HTTP server on 127.0.0.1 that records each request body it receives
/// (a relying party's back-channel logout URI) and answers 200.
pub async fn body_receiver() -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            let _ = tx.send(body[..len].to_string());
                            let _ = s
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                                .await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (port, rx)
}

/// An HTTP server on 127.0.0.1 answering every request with `body` as JSON (a client's
/// jwks_uri); counts the requests it served.
pub async fn json_server(body: String) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let (body, counter) = (body.clone(), counter.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    (port, hits)
}
