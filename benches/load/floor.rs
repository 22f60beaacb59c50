//! The floor: the least an HTTPS server on Latchkey's stack does per request, measured in
//! the same run as Latchkey so the CPU targets can be ratios of the two. It is hyper 1
//! (HTTP/1.1, keep-alive) over rustls with Latchkey's own TLS configuration, on a tokio
//! runtime with Latchkey's worker count, and two routes:
//!
//! - `GET /static`: a fixed 1,024-byte JSON body (the floor of discovery and JWKS);
//! - `POST /token1` (or GET): one RS256 signature of a fresh access token through
//!   `latchkey::keys::KeySet::sign`, Latchkey's signing path (the floor of a
//!   client_credentials grant).
//!
//! Nothing else: no logging, no routing table, no store, no security headers.
//!
//! It runs in its own process, so its CPU is counted apart from the tool's and from
//! Latchkey's: the load binary starts itself again with `LATCHKEY_LOAD_FLOOR` set to
//! Latchkey's configuration file, and `main` then runs only [`serve`]. The floor prints
//! its port as the first line on stdout once it listens.

use std::convert::Infallible;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use latchkey::keys::KeySet;
use latchkey::model::Alg;
use serde_json::{Map, json};

use crate::server::{Measured, Server};

/// Set to Latchkey's configuration file: this process is the floor server.
pub(crate) const ENV: &str = "LATCHKEY_LOAD_FLOOR";
pub(crate) const STATIC: &str = "/static";
pub(crate) const TOKEN1: &str = "/token1";
const STATIC_LEN: usize = 1024;
const TOKEN_TTL: i64 = 900;

/// The floor server process, seen from the load tool.
pub(crate) struct Floor {
    pub(crate) port: u16,
    child: Child,
}

impl Floor {
    /// Starts the floor on the certificate and key of `srv` (made at its first start)
    /// and returns once it listens.
    pub(crate) fn start(srv: &Server) -> Floor {
        let log_path = srv.dir.join("floor.log");
        let log = std::fs::File::create(&log_path).expect("floor log");
        let mut child = Command::new(std::env::current_exe().expect("the tool's own path"))
            .env(ENV, &srv.config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("floor server");
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = std::io::BufReader::new(out).read_line(&mut line);
        }
        let Ok(port) = line.trim().parse::<u16>() else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no port from the floor server; see {}", log_path.display());
        };
        Floor { port, child }
    }
}

impl Measured for Floor {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What every connection shares.
struct State {
    keys: KeySet,
    issuer: String,
    static_body: Bytes,
}

/// The floor process: serves until killed. `config` is Latchkey's configuration file.
pub(crate) fn serve(config: &Path) {
    let cfg = latchkey::config::load(Some(config)).expect("Latchkey's configuration");
    // Latchkey's own function (aws-lc-rs provider, TLS 1.3 and 1.2, ALPN http/1.1,
    // rustls' default session cache and tickets) on the self-signed certificate and
    // P-256 key that Latchkey generated in its data directory at first start.
    let tls = latchkey::tls::server_config(&cfg, latchkey::clock::now())
        .expect("TLS configuration")
        .expect("TLS is on in Latchkey's configuration");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    // An RSA-2048 key made and loaded the way Latchkey makes and loads its own.
    let rec =
        latchkey::keys::signing::generate(Alg::RS256, latchkey::clock::now()).expect("RSA key");
    let state = Arc::new(State {
        keys: KeySet::from_records(&[rec]).expect("key set"),
        issuer: cfg.issuer.clone(),
        static_body: static_body(),
    });
    // As in src/main.rs: a multi-thread runtime with the default worker count (one per core).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        println!("{}", listener.local_addr().expect("address").port());
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, state) = (acceptor.clone(), state.clone());
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                if let Ok(stream) = acceptor.accept(tcp).await {
                    connection(state, TokioIo::new(stream)).await;
                }
            });
        }
    });
}

/// hyper's HTTP/1.1 connection with the settings of src/server.rs (header-read timer,
/// buffer limit, keep-alive).
async fn connection<I>(state: Arc<State>, io: I)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| respond(state.clone(), req));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(32 * 1024)
        .keep_alive(true);
    let _ = builder.serve_connection(io, service).await;
}

async fn respond(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    // Read to the end, as Latchkey reads a form.
    let _ = body.collect().await;
    Ok(match (&parts.method, parts.uri.path()) {
        (&Method::GET, STATIC) => json_response(state.static_body.clone()),
        (&Method::GET | &Method::POST, TOKEN1) => {
            let mut r = json_response(token1(&state));
            r.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        _ => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    })
}

fn json_response(body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A token response with one fresh access token: the claims of Latchkey's
/// client_credentials token minus `client_id` and `scope`, signed RS256 as `at+jwt`.
fn token1(state: &State) -> Bytes {
    let now = latchkey::clock::now();
    let mut c = Map::new();
    c.insert("iss".into(), state.issuer.clone().into());
    c.insert("sub".into(), "floor-client".into());
    c.insert("aud".into(), state.issuer.clone().into());
    c.insert("exp".into(), (now + TOKEN_TTL).into());
    c.insert("iat".into(), now.into());
    c.insert("jti".into(), latchkey::clock::random_id().into());
    let token = state
        .keys
        .sign(Alg::RS256, "at+jwt", &c)
        .expect("RS256 signature");
    Bytes::from(
        json!({"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_TTL}).to_string(),
    )
}

/// `{"floor":"static","pad":"xxx…"}`, exactly `STATIC_LEN` bytes.
fn static_body() -> Bytes {
    const HEAD: &str = r#"{"floor":"static","pad":""#;
    const TAIL: &str = r#""}"#;
    let body = format!(
        "{HEAD}{}{TAIL}",
        "x".repeat(STATIC_LEN - HEAD.len() - TAIL.len())
    );
    assert_eq!(body.len(), STATIC_LEN);
    Bytes::from(body)
}
