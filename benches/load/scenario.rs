//! Scenarios, the workers that drive them, and the report.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey::oidc::discovery::paths;

use crate::client::{Conn, Reply};
use crate::floor::{self, Floor};
use crate::seed::{self, CALLBACK, PASSWORD};
use crate::server::{Measured, Memory, Server};
use crate::{CLIENTS, Settings};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Healthz,
    /// The floor server's static 1 KiB JSON (`floor.rs`).
    FloorStatic,
    Discovery,
    Jwks,
    /// The floor server's one-signature token response.
    FloorToken1,
    ClientCredentials,
    /// client_credentials for a client declared in the config with an argon2id secret.
    DeclaredClient,
    CodeFlow,
    Refresh,
    Userinfo,
    Introspection,
    PasswordSignin,
}

impl Kind {
    /// Scenarios whose rate is bound by RS256 signing (their targets are ratios of it).
    pub(crate) fn signs(self) -> bool {
        matches!(
            self,
            Kind::ClientCredentials | Kind::CodeFlow | Kind::Refresh
        )
    }

    /// Scenarios against the floor server, not Latchkey.
    pub(crate) fn floor(self) -> bool {
        matches!(self, Kind::FloorStatic | Kind::FloorToken1)
    }

    /// Each floor scenario runs right before the Latchkey scenarios compared with it.
    pub(crate) const ALL: &'static [Kind] = &[
        Kind::Healthz,
        Kind::FloorStatic,
        Kind::Discovery,
        Kind::Jwks,
        Kind::FloorToken1,
        Kind::ClientCredentials,
        Kind::DeclaredClient,
        Kind::CodeFlow,
        Kind::Refresh,
        Kind::Userinfo,
        Kind::Introspection,
        Kind::PasswordSignin,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Healthz => "healthz",
            Kind::FloorStatic => "floor_static",
            Kind::Discovery => "discovery",
            Kind::Jwks => "jwks",
            Kind::FloorToken1 => "floor_token1",
            Kind::ClientCredentials => "client_credentials",
            Kind::DeclaredClient => "client_credentials, argon2 secret",
            Kind::CodeFlow => "code flow (SSO session)",
            Kind::Refresh => "refresh",
            Kind::Userinfo => "userinfo",
            Kind::Introspection => "introspection",
            Kind::PasswordSignin => "password sign-in",
        }
    }

    /// Connections for this scenario: sign-ins fill the hashing pool and its queue
    /// (2 + 8 by default) without overflowing it into 503s.
    fn conns(self, default: usize) -> usize {
        match self {
            Kind::PasswordSignin => 6,
            _ => default,
        }
    }
}

/// One connection's state: its session cookie, client and latest tokens.
pub(crate) struct Worker {
    conn: Conn,
    user: String,
    client: usize,
    basic: String,
    pub(crate) cookie: String,
    access: String,
    refresh: String,
}

type Step = Result<u32, String>;

fn expect(r: &std::io::Result<Reply>, status: &[u16], what: &str) -> Result<(), String> {
    match r {
        Ok(r) if status.contains(&r.status) => Ok(()),
        Ok(r) => Err(format!("{what}: {} {}", r.status, r.text())),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

fn pkce() -> (String, String) {
    let verifier = latchkey::clock::random_token();
    let challenge = URL_SAFE_NO_PAD.encode(latchkey::keys::sha256(verifier.as_bytes()));
    (verifier, challenge)
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `name=value` of every cookie a response sets (not the ones it clears).
fn cookies_of(r: &Reply) -> Vec<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| !v.contains("Max-Age=0"))
        .filter_map(|v| v.split(';').next().map(str::to_string))
        .collect()
}

fn input(body: &str, name: &str) -> Option<String> {
    let needle = format!("name=\"{name}\" value=\"");
    let start = body.find(&needle)? + needle.len();
    let end = start + body[start..].find('"')?;
    Some(body[start..end].to_string())
}

impl Worker {
    fn new(conn: Conn, user: String, client: usize) -> Worker {
        Worker {
            conn,
            user,
            client,
            basic: basic(&seed::client_id(client), &seed::client_secret(client)),
            cookie: String::new(),
            access: String::new(),
            refresh: String::new(),
        }
    }

    /// GET /login, POST the form: a new SSO session. Two requests.
    pub(crate) async fn sign_in(&mut self) -> Result<String, String> {
        let page = self.conn.get("/login", &[]).await;
        expect(&page, &[200], "login page")?;
        let page = page.map_err(|e| e.to_string())?;
        let csrf = input(page.text(), "csrf").ok_or("no CSRF field")?;
        let cookie = cookies_of(&page).join("; ");
        let r = self
            .conn
            .post(
                "/login",
                &[("cookie", &cookie)],
                &[
                    ("username", &self.user),
                    ("password", PASSWORD),
                    ("csrf", &csrf),
                ],
            )
            .await;
        expect(&r, &[302, 303], "sign-in")?;
        let r = r.map_err(|e| e.to_string())?;
        let set = cookies_of(&r);
        if set.is_empty() {
            return Err("sign-in set no session cookie".into());
        }
        Ok(set.join("; "))
    }

    /// authorize (with the session) → code → token → userinfo, with PKCE. Three requests.
    async fn code_flow(&mut self) -> Step {
        let (verifier, challenge) = pkce();
        let url = format!(
            "{}?client_id={}&redirect_uri={}&response_type=code&scope=openid%20profile%20email\
             &state=s&nonce=n&code_challenge={challenge}&code_challenge_method=S256",
            paths::AUTHORIZE,
            seed::client_id(self.client),
            enc(CALLBACK)
        );
        let r = self.conn.get(&url, &[("cookie", &self.cookie)]).await;
        expect(&r, &[302, 303], "authorize")?;
        let loc = r.map_err(|e| e.to_string())?.header("location").to_string();
        let code = url::Url::parse(&loc)
            .ok()
            .and_then(|u| {
                u.query_pairs()
                    .find(|(k, _)| k == "code")
                    .map(|(_, v)| v.into_owned())
            })
            .ok_or_else(|| format!("authorize: no code in {loc}"))?;
        let r = self
            .conn
            .post(
                paths::TOKEN,
                &[("authorization", &self.basic)],
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", CALLBACK),
                    ("code_verifier", &verifier),
                ],
            )
            .await;
        expect(&r, &[200], "token")?;
        let tokens = r.map_err(|e| e.to_string())?.json();
        self.access = tokens["access_token"].as_str().unwrap_or("").to_string();
        if let Some(rt) = tokens["refresh_token"].as_str() {
            self.refresh = rt.to_string();
        }
        self.userinfo().await?;
        Ok(3)
    }

    async fn userinfo(&mut self) -> Step {
        let bearer = format!("Bearer {}", self.access);
        let r = self
            .conn
            .get(paths::USERINFO, &[("authorization", &bearer)])
            .await;
        expect(&r, &[200], "userinfo")?;
        Ok(1)
    }

    pub(crate) async fn step(&mut self, kind: Kind) -> Step {
        match kind {
            Kind::Healthz | Kind::FloorStatic | Kind::Discovery | Kind::Jwks => {
                let path = match kind {
                    Kind::Healthz => "/healthz",
                    Kind::FloorStatic => floor::STATIC,
                    Kind::Discovery => paths::OIDC_DISCOVERY,
                    _ => paths::JWKS,
                };
                expect(&self.conn.get(path, &[]).await, &[200], path)?;
                Ok(1)
            }
            // The floor gets the same request as Latchkey's token endpoint.
            Kind::ClientCredentials | Kind::DeclaredClient | Kind::FloorToken1 => {
                let auth = if kind == Kind::DeclaredClient {
                    basic(seed::DECLARED_CLIENT, seed::DECLARED_SECRET)
                } else {
                    self.basic.clone()
                };
                let path = if kind == Kind::FloorToken1 {
                    floor::TOKEN1
                } else {
                    paths::TOKEN
                };
                let r = self
                    .conn
                    .post(
                        path,
                        &[("authorization", &auth)],
                        &[("grant_type", "client_credentials")],
                    )
                    .await;
                expect(&r, &[200], kind.name())?;
                Ok(1)
            }
            Kind::CodeFlow => self.code_flow().await,
            Kind::Refresh => {
                let r = self
                    .conn
                    .post(
                        paths::TOKEN,
                        &[("authorization", &self.basic)],
                        &[
                            ("grant_type", "refresh_token"),
                            ("refresh_token", &self.refresh),
                        ],
                    )
                    .await;
                expect(&r, &[200], "refresh")?;
                let tokens = r.map_err(|e| e.to_string())?.json();
                self.refresh = tokens["refresh_token"].as_str().unwrap_or("").to_string();
                Ok(1)
            }
            Kind::Userinfo => self.userinfo().await,
            Kind::Introspection => {
                let r = self
                    .conn
                    .post(
                        paths::INTROSPECT,
                        &[("authorization", &self.basic)],
                        &[("token", &self.access)],
                    )
                    .await;
                expect(&r, &[200], "introspection")?;
                let active = r.map(|r| r.json()["active"] == true).unwrap_or(false);
                if !active {
                    return Err("introspection: token not active".into());
                }
                Ok(1)
            }
            Kind::PasswordSignin => self.sign_in().await.map(|_| 2),
        }
    }
}

/// What one scenario measured.
pub(crate) struct Outcome {
    pub(crate) kind: Kind,
    label: String,
    ops: u64,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
    /// Per-operation latency, µs, sorted.
    lat: Vec<u32>,
    pub(crate) memory: Memory,
    /// Cores the server kept busy on average.
    cores: f64,
    /// For the signing-bound scenarios: the RS256 two-core rate measured just before and
    /// just after it (their mean), so drift in a shared machine's speed between the start
    /// of the run and the scenario does not end up in the ratio.
    pub(crate) reference: Option<f64>,
}

impl Outcome {
    pub(crate) fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// Server CPU seconds per operation.
    pub(crate) fn cpu_per_op(&self) -> f64 {
        self.cores / self.ops_per_sec()
    }

    fn pct(&self, p: f64) -> f64 {
        if self.lat.is_empty() {
            return 0.0;
        }
        let i = ((self.lat.len() as f64 * p) as usize).min(self.lat.len() - 1);
        self.lat[i] as f64 / 1e3
    }

    pub(crate) fn header() {
        println!(
            "{:<34} {:>9} {:>9} {:>8} {:>8} {:>8} {:>6} {:>9} {:>9}",
            "scenario",
            "ops/s",
            "req/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "errors",
            "RSS MiB",
            "peak MiB"
        );
        println!("{:>107}", "server CPU");
    }

    fn print(&self) {
        println!(
            "{:<34} {:>9.0} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>6} {:>9.1} {:>9.1} {:>7.2}",
            self.label,
            self.ops_per_sec(),
            self.requests as f64 / self.elapsed.as_secs_f64(),
            self.pct(0.5),
            self.pct(0.9),
            self.pct(0.99),
            self.errors,
            self.memory.rss,
            self.memory.peak,
            self.cores
        );
        if let Some(e) = &self.first_error {
            println!("    first error: {e}");
        }
    }
}

#[derive(Default)]
struct Tally {
    ops: u64,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    lat: Vec<u32>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.ops += o.ops;
        self.requests += o.requests;
        self.errors += o.errors;
        self.first_error = self.first_error.take().or(o.first_error);
        self.lat.extend(o.lat);
    }
}

/// Runs `kind` on every worker until `until`, one operation after another, or one every
/// `pace` when given (an open rate, for latency probes).
async fn drive(
    kind: Kind,
    workers: Vec<Worker>,
    until: Instant,
    pace: Option<Duration>,
) -> (Tally, Vec<Worker>) {
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|mut w| {
            tokio::spawn(async move {
                let mut t = Tally::default();
                let mut next = Instant::now();
                while Instant::now() < until {
                    if let Some(p) = pace {
                        tokio::time::sleep_until(next.into()).await;
                        next += p;
                    }
                    let start = Instant::now();
                    match w.step(kind).await {
                        Ok(n) => {
                            t.ops += 1;
                            t.requests += u64::from(n);
                            t.lat
                                .push(start.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        }
                        Err(e) => {
                            t.errors += 1;
                            t.first_error.get_or_insert(e);
                        }
                    }
                }
                (t, w)
            })
        })
        .collect();
    let mut total = Tally::default();
    let mut back = Vec::new();
    for task in tasks {
        let (t, w) = task.await.expect("worker");
        total.merge(t);
        back.push(w);
    }
    (total, back)
}

fn outcome(
    kind: Kind,
    label: String,
    mut t: Tally,
    elapsed: Duration,
    cpu_at_start: f64,
    srv: &dyn Measured,
) -> Outcome {
    t.lat.sort_unstable();
    let o = Outcome {
        kind,
        label,
        ops: t.ops,
        requests: t.requests,
        errors: t.errors,
        first_error: t.first_error,
        elapsed,
        lat: t.lat,
        memory: srv.memory(),
        cores: (srv.cpu_secs() - cpu_at_start) / elapsed.as_secs_f64(),
        reference: None,
    };
    o.print();
    o
}

/// Connections signed in as users spread over the first `users`, each with tokens from
/// one code flow, each on its own client (round robin over the seeded clients).
pub(crate) async fn workers(srv: &Server, n: usize, users: usize) -> Vec<Worker> {
    let tls = crate::client::connector(&srv.cert());
    let mut out = Vec::new();
    for i in 0..n {
        let user = seed::user_name(i * (users / n).max(1) % users);
        let mut w = Worker::new(Conn::new(srv.port, tls.clone()), user, i % CLIENTS);
        w.cookie = w.sign_in().await.expect("sign in");
        w.code_flow().await.expect("first code flow");
        assert!(
            !w.refresh.is_empty(),
            "the code flow returned no refresh token"
        );
        out.push(w);
    }
    out
}

/// Connections to the floor server (it has Latchkey's certificate), one request done on
/// each so no TLS handshake falls in a scenario.
async fn floor_workers(floor: &Floor, srv: &Server, n: usize) -> Vec<Worker> {
    let tls = crate::client::connector(&srv.cert());
    let mut out = Vec::new();
    for i in 0..n {
        let mut w = Worker::new(
            Conn::new(floor.port, tls.clone()),
            String::new(),
            i % CLIENTS,
        );
        w.step(Kind::FloorStatic)
            .await
            .expect("first request to the floor server");
        out.push(w);
    }
    out
}

/// Runs `kinds` in order; the floor scenarios among them against `floor` (skipped
/// without one), measuring that process instead of Latchkey.
pub(crate) async fn run_all(
    srv: &Server,
    floor: Option<&Floor>,
    s: &Settings,
    kinds: &[Kind],
    users: usize,
) -> Vec<Outcome> {
    let mut pool = workers(srv, s.conns, users).await;
    let mut floor_pool: Vec<Worker>;
    // The declared client's argon2 secret is verified once and then remembered: one
    // request first, so the scenario measures the steady state (the first burst of
    // concurrent requests would each wait for, or be refused by, the hashing pool).
    if let Some(w) = pool.first_mut() {
        w.step(Kind::DeclaredClient)
            .await
            .expect("first declared-client request");
    }
    let mut out = Vec::new();
    for &kind in kinds.iter().filter(|k| s.runs(**k)) {
        let (measured, workers): (&dyn Measured, &mut Vec<Worker>) = match floor {
            Some(f) if kind.floor() => {
                // Fresh, warmed connections for each floor scenario: idle ones from the
                // last would meet the header-read timeout (10 s, as in Latchkey) and
                // reconnect inside the measurement.
                floor_pool = floor_workers(f, srv, s.conns).await;
                (f, &mut floor_pool)
            }
            None if kind.floor() => continue,
            _ => (srv, &mut pool),
        };
        let n = kind.conns(s.conns);
        let mut idle = std::mem::take(workers);
        let rest = idle.split_off(n.min(idle.len()));
        let before = kind
            .signs()
            .then(|| rs256_rate_two_cores(Duration::from_secs(1)));
        measured.reset_peak();
        let cpu = measured.cpu_secs();
        let start = Instant::now();
        let (t, mut used) = drive(kind, idle, start + Duration::from_secs(s.secs), None).await;
        let mut o = outcome(
            kind,
            kind.name().to_string(),
            t,
            start.elapsed(),
            cpu,
            measured,
        );
        if let Some(before) = before {
            let after = rs256_rate_two_cores(Duration::from_secs(1));
            let mean = (before + after) / 2.0;
            println!(
                "    RS256 2-core rate around it: {before:.0} before, {after:.0} after (mean {mean:.0}/s)"
            );
            o.reference = Some(mean);
        }
        used.extend(rest);
        *workers = used;
        out.push(o);
    }
    out
}

/// userinfo at a fixed 100 requests/s for at least 10 s (1,000+ samples), alone and
/// while sign-ins keep the hashing pool busy; returns p90 during / p90 alone.
pub(crate) async fn latency_under_login_load(srv: &Server, s: &Settings) -> f64 {
    println!("\nuserinfo at 100/s (2 connections, one request every 20 ms each):");
    Outcome::header();
    let probes = workers(srv, 2, crate::SMALL_USERS).await;
    let pace = Some(Duration::from_millis(20));
    let secs = Duration::from_secs(s.secs.max(10));
    let start = Instant::now();
    srv.reset_peak();
    let cpu = srv.cpu_secs();
    let (t, probes) = drive(Kind::Userinfo, probes, start + secs, pace).await;
    let alone = outcome(
        Kind::Userinfo,
        "userinfo alone".into(),
        t,
        start.elapsed(),
        cpu,
        srv,
    );

    let signers = workers(srv, Kind::PasswordSignin.conns(0), crate::SMALL_USERS).await;
    let cpu = srv.cpu_secs();
    let start = Instant::now();
    let until = start + secs;
    let load = tokio::spawn(drive(Kind::PasswordSignin, signers, until, None));
    let (t, _) = drive(Kind::Userinfo, probes, until, pace).await;
    let during = outcome(
        Kind::Userinfo,
        "userinfo during sign-in saturation".into(),
        t,
        start.elapsed(),
        cpu,
        srv,
    );
    let (t, _) = load.await.expect("sign-ins");
    outcome(
        Kind::PasswordSignin,
        "  (the sign-ins meanwhile)".into(),
        t,
        start.elapsed(),
        cpu,
        srv,
    );
    println!(
        "during/alone: p50 {:.2}, p90 {:.2}, p99 {:.2}",
        during.pct(0.5) / alone.pct(0.5),
        during.pct(0.9) / alone.pct(0.9),
        during.pct(0.99) / alone.pct(0.99)
    );
    during.pct(0.9) / alone.pct(0.9)
}

/// A long run of code flows and refreshes with short lifetimes, printing the database
/// size as expired records are removed; returns the growth over the second half, in %.
pub(crate) async fn soak(s: &Settings, hash: &str) -> f64 {
    let config = format!(
        "{}[tokens]\ncode_ttl_secs = 30\naccess_token_ttl_secs = 60\nid_token_ttl_secs = 60\n\
         refresh_token_idle_ttl_secs = 60\nrefresh_token_absolute_ttl_secs = 120\n\
         [session]\nidle_ttl_secs = 120\nabsolute_ttl_secs = 300\n[audit]\nretention_secs = 120\n",
        crate::BASE_CONFIG
    );
    let mut srv = Server::new("soak", &config);
    srv.start();
    srv.stop();
    {
        let store = latchkey::store::redb::RedbStore::open(&srv.database()).expect("store");
        seed::users(&store, 0..crate::SMALL_USERS, hash);
        seed::clients(&store, 0..CLIENTS);
    }
    srv.start();
    println!(
        "\n== soak: code flows and refreshes for {} s, 8 connections, short lifetimes ==",
        s.soak_secs
    );
    let total = Duration::from_secs(s.soak_secs);
    let start = Instant::now();
    let mut flows = workers(&srv, 4, crate::SMALL_USERS).await;
    let mut refreshers = workers(&srv, 4, crate::SMALL_USERS).await;
    let mut sizes = Vec::new();
    println!(
        "{:>6} {:>10} {:>12} {:>9}",
        "time s", "DB MiB", "operations", "RSS MiB"
    );
    let mut ops = 0;
    while start.elapsed() < total {
        let until = Instant::now() + Duration::from_secs(30).min(total - start.elapsed());
        let a = tokio::spawn(drive(Kind::CodeFlow, flows, until, None));
        let (t, r) = drive(Kind::Refresh, refreshers, until, None).await;
        let (t2, f) = a.await.expect("flows");
        (flows, refreshers) = (f, r);
        ops += t.ops + t2.ops;
        // A refresh token past its absolute lifetime starts a new one.
        for w in refreshers.iter_mut().chain(flows.iter_mut()) {
            if t.errors + t2.errors > 0 {
                w.cookie = w.sign_in().await.unwrap_or_default();
                let _ = w.code_flow().await;
            }
        }
        let size = crate::server::file_size_mib(&srv.database());
        sizes.push(size);
        println!(
            "{:>6.0} {:>10.2} {:>12} {:>9.1}",
            start.elapsed().as_secs_f64(),
            size,
            ops,
            srv.memory().rss
        );
    }
    srv.stop();
    // Used codes stay 5 minutes past expiry, so the last third is the steady state.
    let from = sizes[sizes.len() * 2 / 3];
    let end = sizes[sizes.len() - 1];
    (end - from) / from * 100.0
}

/// RS256 signatures of a real ID token per second on two threads.
pub(crate) fn rs256_rate_two_cores(d: Duration) -> f64 {
    let rec = latchkey::keys::signing::generate(latchkey::model::Alg::RS256, 0).expect("RSA key");
    let keys = latchkey::keys::KeySet::from_records(&[rec]).expect("key set");
    let claims = serde_json::json!({
        "iss": "https://id.example:8443", "sub": "k2PpRSm0Nq1xEtyv3fX6Hg", "aud": "grafana",
        "exp": 1_700_000_910, "iat": 1_700_000_010, "auth_time": 1_700_000_000,
        "nonce": "n-0S6_WzA2Mj", "sid": "s1", "amr": ["pwd"], "acr": "1",
        "email": "alice@example.com", "name": "Alice Liddell", "groups": ["staff"],
    })
    .as_object()
    .cloned()
    .expect("claims object");
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let start = Instant::now();
                    let mut n = 0;
                    while start.elapsed() < d {
                        std::hint::black_box(
                            keys.sign(latchkey::model::Alg::RS256, "JWT", &claims)
                                .expect("sign"),
                        );
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("signer")).sum()
    });
    total as f64 / d.as_secs_f64()
}

/// Password verifications per second on `threads` threads (the pool's size).
pub(crate) fn argon2_rate(hash: &str, threads: usize, d: Duration) -> f64 {
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let start = Instant::now();
                    let mut n = 0;
                    while start.elapsed() < d {
                        assert!(latchkey::keys::password::verify(PASSWORD, hash));
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("hasher")).sum()
    });
    total as f64 / d.as_secs_f64()
}

/// A target from issue 6 and how this run compares.
pub(crate) struct Target {
    name: String,
    value: f64,
    low: Option<f64>,
    high: Option<f64>,
}

impl Target {
    pub(crate) fn at_least(name: &str, value: f64, low: f64) -> Target {
        Target {
            name: name.into(),
            value,
            low: Some(low),
            high: None,
        }
    }

    pub(crate) fn at_most(name: &str, value: f64, high: f64) -> Target {
        Target {
            name: name.into(),
            value,
            low: None,
            high: Some(high),
        }
    }

    pub(crate) fn between(name: &str, value: f64, low: f64, high: f64) -> Target {
        Target {
            name: name.into(),
            value,
            low: Some(low),
            high: Some(high),
        }
    }

    pub(crate) fn met(&self) -> bool {
        self.low.is_none_or(|l| self.value >= l) && self.high.is_none_or(|h| self.value <= h)
    }

    pub(crate) fn print(&self) {
        let bound = match (self.low, self.high) {
            (Some(l), Some(h)) => format!("{l} to {h}"),
            (Some(l), None) => format!(">= {l}"),
            (None, Some(h)) => format!("<= {h}"),
            (None, None) => String::new(),
        };
        println!(
            "{:<62} {:>9.3}  target {:<12} {}",
            self.name,
            self.value,
            bound,
            if self.met() { "met" } else { "NOT MET" }
        );
    }
}
