//! The load tool: starts a real Latchkey, fills its database, drives it over HTTPS on
//! loopback and prints, per scenario, operations and requests per second, p50/p90/p99
//! latency, errors and the server's memory (RSS from /proc). It measures the two costs an
//! OP cannot avoid in the same run (the two-core RS256 signing rate and the argon2 pool's
//! hash rate) and prints each target of issue 6 as a ratio of those. Beside Latchkey it
//! runs the floor (`floor.rs`, a minimal hyper + rustls server in its own process) and
//! compares the server CPU per request of the two.
//!
//! `cargo bench --bench load` runs everything but the sustained phase (about 20 minutes, 15 of
//! them the soak; `sustained.rs` adds about 21). Settings, all optional:
//! `LATCHKEY_LOAD_SECS` per scenario (default 5), `LATCHKEY_LOAD_CONNS` connections
//! (default 32: the code flow and refresh wait for a shared fsync, and with 16 connections
//! the server sat idle for a quarter of the time while all of them waited),
//! `LATCHKEY_LOAD_ONLY` comma-separated phases (`start`, `scenarios`,
//! `restart`, `scale`, `soak`, and `sustained` and `postgres`, which run only when named
//! here; `postgres` runs the grant scenarios on redb and on PostgreSQL, one after the
//! other, with a PostgreSQL server it starts itself),
//! `LATCHKEY_LOAD_BIG_USERS` (default 100000),
//! `LATCHKEY_LOAD_SCENARIOS` (names or their beginnings, as `code,refresh`; `floor` picks
//! `floor_static` and `floor_token1`),
//! `LATCHKEY_LOAD_SOAK_SECS` (default 900: the retention windows of used codes
//! and tokens fill the database for the first 6-7 minutes, so the last third of a 15-minute
//! run is steady load), `LATCHKEY_LOAD_SUSTAINED_SECS` (default 600, per load of the
//! sustained phase: client_credentials, then code flows and refreshes, each reported per
//! 10-second window; `sustained.rs`), `LATCHKEY_LOAD_KEEP=1` keeps the temp dir.
//! Nothing is asserted: machines are shared, so read the ratios of one run.

mod client;
mod floor;
#[path = "../../src/testutil_postgres.rs"]
mod pg;
mod scenario;
mod seed;
mod server;
mod sustained;

use std::time::{Duration, Instant};

use floor::Floor;
use latchkey::store::prelude::*;
use scenario::{Kind, Outcome, Target};
use server::{Measured, Server};

struct Settings {
    secs: u64,
    conns: usize,
    only: Option<Vec<String>>,
    big_users: usize,
    soak_secs: u64,
    sustained_secs: u64,
}

impl Settings {
    fn from_env() -> Settings {
        let num = |k: &str, d: u64| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        Settings {
            secs: num("LATCHKEY_LOAD_SECS", 5),
            conns: num("LATCHKEY_LOAD_CONNS", 32) as usize,
            only: std::env::var("LATCHKEY_LOAD_ONLY")
                .ok()
                .map(|v| v.split(',').map(|s| s.trim().to_string()).collect()),
            big_users: num("LATCHKEY_LOAD_BIG_USERS", 100_000) as usize,
            soak_secs: num("LATCHKEY_LOAD_SOAK_SECS", 900),
            sustained_secs: num("LATCHKEY_LOAD_SUSTAINED_SECS", 600),
        }
    }

    /// `LATCHKEY_LOAD_SCENARIOS`: scenarios whose names start with one of these.
    fn runs(&self, k: Kind) -> bool {
        std::env::var("LATCHKEY_LOAD_SCENARIOS").map_or(true, |v| {
            v.split(',').any(|p| k.name().starts_with(p.trim()))
        })
    }

    fn wants(&self, phase: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|p| p == phase))
    }

    /// Phases outside the default set run only when `LATCHKEY_LOAD_ONLY` names them.
    fn asks(&self, phase: &str) -> bool {
        self.only
            .as_ref()
            .is_some_and(|o| o.iter().any(|p| p == phase))
    }
}

/// Clients seeded; every scenario that needs users draws from the first `SMALL_USERS`.
const CLIENTS: usize = 100;
const SMALL_USERS: usize = 100;
const RESTART_USERS: usize = 10_000;
const RESTART_TOKENS: usize = 100_000;

/// Raised so the load measures hashing, not the per-address failure throttle.
const BASE_CONFIG: &str = "[login]\nip_max_failures = 1000000\n";

fn main() {
    // The tool started again as the floor server: nothing else runs in this process.
    if let Some(config) = std::env::var_os(floor::ENV) {
        floor::serve(std::path::Path::new(&config));
        return;
    }
    let s = Settings::from_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("{}", machine());
    let mut targets: Vec<Target> = Vec::new();

    println!("\n== reference rates (in this process, server idle) ==");
    let sign_rate = scenario::rs256_rate_two_cores(Duration::from_secs(2));
    println!("RS256 ID-token signing, 2 threads: {sign_rate:>8.0} signatures/s");
    let hash = seed::password_hash();
    let hash_rate = scenario::argon2_rate(&hash, 2, Duration::from_secs(3));
    println!(
        "argon2id verification at SPEC parameters, 2 threads (the pool): {hash_rate:>6.1} hashes/s"
    );

    let mut srv = Server::new(
        "main",
        &format!("{BASE_CONFIG}{}", seed::declared_client_config()),
    );
    let first = srv.start();
    println!("\n== first start (keys and certificate generated) ==");
    println!("first start to READY=1: {:.0} ms", ms(first));
    targets.push(Target::at_most(
        "first start with key generation (ms)",
        ms(first),
        1000.0,
    ));
    std::thread::sleep(Duration::from_secs(1));
    let idle = srv.memory();
    println!("idle RSS: {:.1} MiB", idle.rss);
    targets.push(Target::at_most("idle RSS (MiB)", idle.rss, 20.0));
    srv.stop();

    {
        let store = latchkey::store::redb::RedbStore::open(&srv.database()).expect("store");
        seed::users(&store, 0..SMALL_USERS, &hash);
        seed::clients(&store, 0..CLIENTS);
    }

    let mut small: Vec<Outcome> = Vec::new();
    if s.wants("scenarios") {
        srv.start();
        let floor = Kind::ALL
            .iter()
            .any(|k| k.floor() && s.runs(*k))
            .then(|| Floor::start(&srv));
        println!(
            "\n== scenarios: {SMALL_USERS} users, {CLIENTS} clients, {} connections, {} s each ==",
            s.conns, s.secs
        );
        Outcome::header();
        small = rt.block_on(scenario::run_all(
            &srv,
            floor.as_ref(),
            &s,
            Kind::ALL,
            SMALL_USERS,
        ));
        drop(floor);
        targets.extend(floor_ratios(&small));
        let get = |k: Kind| {
            small
                .iter()
                .find(|o| o.kind == k)
                .map_or(0.0, |o| o.ops_per_sec())
        };
        let healthz = get(Kind::Healthz);
        // The RS256 rate measured around the scenario itself (the one at the start of the
        // run when a scenario did not measure its own).
        let reference = |k: Kind| {
            small
                .iter()
                .find(|o| o.kind == k)
                .and_then(|o| o.reference)
                .unwrap_or(sign_rate)
        };
        targets.push(Target::at_least(
            "client_credentials / RS256 2-core rate",
            get(Kind::ClientCredentials) / reference(Kind::ClientCredentials),
            0.6,
        ));
        // A slow (argon2id) declared secret is verified once, not per request.
        targets.push(Target::at_least(
            "client_credentials, argon2 secret / with SHA-256 secret",
            get(Kind::DeclaredClient) / get(Kind::ClientCredentials),
            0.8,
        ));
        targets.push(Target::at_least(
            "refresh / (RS256 2-core rate / 2)",
            get(Kind::Refresh) / (reference(Kind::Refresh) / 2.0),
            0.5,
        ));
        targets.push(Target::at_least(
            "code flow / (RS256 2-core rate / 2)",
            get(Kind::CodeFlow) / (reference(Kind::CodeFlow) / 2.0),
            0.5,
        ));
        for k in [Kind::Discovery, Kind::Jwks, Kind::Userinfo] {
            targets.push(Target::at_least(
                &format!("{} / healthz", k.name()),
                get(k) / healthz,
                0.4,
            ));
        }
        targets.push(Target::at_least(
            "password sign-in / argon2 pool rate",
            get(Kind::PasswordSignin) / hash_rate,
            0.8,
        ));
        let worst = small
            .iter()
            .filter(|o| o.kind != Kind::PasswordSignin && !o.kind.floor())
            .map(|o| o.memory.peak)
            .fold(0.0, f64::max);
        targets.push(Target::at_most(
            "peak RSS under non-login scenarios, 100 users (MiB)",
            worst,
            64.0,
        ));
        let mixed = rt.block_on(scenario::latency_under_login_load(&srv, &s));
        targets.push(Target::at_most(
            "userinfo p90 during sign-in saturation / alone",
            mixed,
            1.5,
        ));
        srv.stop();
    }

    if s.asks("postgres") {
        targets.extend(backends(&rt, &mut srv, &s, &hash));
    }

    if s.wants("restart") || s.wants("scale") {
        println!(
            "\n== restart with {RESTART_USERS} users, {CLIENTS} clients, {RESTART_TOKENS} live refresh tokens =="
        );
        let t = Instant::now();
        {
            let store = latchkey::store::redb::RedbStore::open(&srv.database()).expect("store");
            seed::users(&store, SMALL_USERS..RESTART_USERS, &hash);
            let users = store.users().expect("users");
            seed::refresh_tokens(&store, RESTART_TOKENS, &users);
        }
        println!(
            "seeded in {:.1} s; database {:.1} MiB",
            t.elapsed().as_secs_f64(),
            server::file_size_mib(&srv.database())
        );
        let mut times: Vec<f64> = (0..5)
            .map(|_| {
                let d = srv.start();
                srv.stop();
                ms(d)
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!("restart to READY=1, 5 runs: {times:.1?} ms");
        targets.push(Target::at_most(
            "restart to ready, median (ms)",
            times[2],
            100.0,
        ));
    }

    if s.wants("scale") && !small.is_empty() {
        println!("\n== grant rates with {} users ==", s.big_users);
        let t = Instant::now();
        {
            let store = latchkey::store::redb::RedbStore::open(&srv.database()).expect("store");
            seed::users(&store, RESTART_USERS..s.big_users, &hash);
        }
        println!("seeded in {:.1} s", t.elapsed().as_secs_f64());
        srv.start();
        Outcome::header();
        let grants = [Kind::ClientCredentials, Kind::CodeFlow, Kind::Refresh];
        let big = rt.block_on(scenario::run_all(&srv, None, &s, &grants, s.big_users));
        let worst = big.iter().map(|o| o.memory.peak).fold(0.0, f64::max);
        targets.push(Target::at_most(
            &format!("peak RSS, grant scenarios at {} users (MiB)", s.big_users),
            worst,
            64.0,
        ));
        // Each rate as a share of the RS256 rate measured around it: the two runs are
        // minutes apart, and this machine's speed drifts by that much in minutes.
        let share = |set: &[Outcome], k: Kind| {
            set.iter()
                .find(|o| o.kind == k)
                .map_or(0.0, |o| o.ops_per_sec() / o.reference.unwrap_or(sign_rate))
        };
        for k in grants {
            targets.push(Target::between(
                &format!(
                    "{} at {} users / at {SMALL_USERS} users",
                    k.name(),
                    s.big_users
                ),
                share(&big, k) / share(&small, k),
                0.8,
                1.2,
            ));
        }
        srv.stop();
    }
    drop(srv);

    if s.wants("soak") && s.soak_secs > 0 {
        let growth = rt.block_on(scenario::soak(&s, &hash));
        targets.push(Target::at_most(
            "database growth over the last third of the soak (%)",
            growth,
            5.0,
        ));
    }

    // About 21 minutes: only when asked for (`LATCHKEY_LOAD_ONLY=sustained`).
    if s.asks("sustained") && s.sustained_secs > 0 {
        targets.extend(rt.block_on(sustained::run(&s, &hash)));
    }

    let bin = std::fs::metadata(env!("CARGO_BIN_EXE_latchkey")).map_or(0, |m| m.len());
    targets.push(Target::at_most(
        "release binary, stripped (MiB)",
        bin as f64 / 1048576.0,
        20.0,
    ));

    println!("\n== targets (ratios from this run) ==");
    for t in &targets {
        t.print();
    }
}

/// Latchkey's server CPU per request against the floor's, for the scenarios that ran:
/// prints the table and returns the targets.
fn floor_ratios(small: &[Outcome]) -> Vec<Target> {
    let cpu = |k: Kind| small.iter().find(|o| o.kind == k).map(Outcome::cpu_per_op);
    let pairs = [
        (Kind::Discovery, Kind::FloorStatic, 2.0),
        (Kind::Jwks, Kind::FloorStatic, 2.0),
        (Kind::ClientCredentials, Kind::FloorToken1, 1.3),
    ];
    let mut out = Vec::new();
    for (ours, floor, high) in pairs {
        let (Some(a), Some(b)) = (cpu(ours), cpu(floor)) else {
            continue;
        };
        if out.is_empty() {
            println!("\n== floor ratios (server CPU per request, this run) ==");
            println!(
                "{:<36} {:>12} {:>12} {:>7}",
                "Latchkey / floor", "Latchkey µs", "floor µs", "ratio"
            );
        }
        let t = Target::at_most(
            &format!("{} CPU/request / {} CPU/request", ours.name(), floor.name()),
            a / b,
            high,
        );
        println!(
            "{:<36} {:>12.1} {:>12.1} {:>7.3}  target <= {high:.1}  {}",
            format!("{} / {}", ours.name(), floor.name()),
            a * 1e6,
            b * 1e6,
            a / b,
            if t.met() { "met" } else { "NOT MET" }
        );
        out.push(t);
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// CPU model, core count and kernel, for the report.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("machine: {cpu}, {cores} cores, Linux {}", kernel.trim())
}

/// The grant scenarios on redb, then on PostgreSQL (one node; Debian's server started by
/// the tool with fsync on, on loopback), same users and clients, same connections: each
/// scenario's rate on both and their ratio, and the database server's own CPU per
/// operation (Latchkey's is in the tables).
fn backends(
    rt: &tokio::runtime::Runtime,
    srv: &mut Server,
    s: &Settings,
    hash: &str,
) -> Vec<Target> {
    let kinds = [
        Kind::ClientCredentials,
        Kind::CodeFlow,
        Kind::Refresh,
        Kind::Userinfo,
        Kind::Introspection,
    ];
    let db = pg::durable_server();
    let url = db.database();
    let mut on_pg = Server::new(
        "postgres",
        &format!(
            "{BASE_CONFIG}{}[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n",
            seed::declared_client_config()
        ),
    );
    {
        let settings = latchkey::store::postgres::PgSettings {
            config: url.parse().expect("url"),
            tls: None,
            pool_size: 8,
        };
        let store = latchkey::store::postgres::PgStore::open(&settings).expect("PostgreSQL");
        seed::users(&store, 0..SMALL_USERS, hash);
        seed::clients(&store, 0..CLIENTS);
    }
    println!(
        "\n== backends: redb, then PostgreSQL {} (fsync on), {SMALL_USERS} users, {} connections, {} s each ==",
        db.version(),
        s.conns,
        s.secs
    );
    Outcome::header();
    srv.start();
    let on_redb = rt.block_on(scenario::run_all(srv, None, s, &kinds, SMALL_USERS));
    srv.stop();
    on_pg.start();
    let mut on_postgres = Vec::new();
    let mut db_cpu = Vec::new();
    for k in kinds {
        let before = (db.cpu_secs(), Instant::now());
        on_postgres.extend(rt.block_on(scenario::run_all(&on_pg, None, s, &[k], SMALL_USERS)));
        db_cpu.push((db.cpu_secs() - before.0) / before.1.elapsed().as_secs_f64());
    }
    on_pg.stop();
    println!(
        "\n{:<22} {:>10} {:>12} {:>9} {:>16} {:>16} {:>16}",
        "scenario",
        "redb op/s",
        "postgres op/s",
        "pg/redb",
        "µs CPU/op redb",
        "µs CPU/op pg",
        "µs DB CPU/op"
    );
    let mut targets = Vec::new();
    for ((r, p), cores) in on_redb.iter().zip(&on_postgres).zip(&db_cpu) {
        let ratio = p.ops_per_sec() / r.ops_per_sec();
        println!(
            "{:<22} {:>10.0} {:>12.0} {:>9.2} {:>16.0} {:>16.0} {:>16.0}",
            r.kind.name(),
            r.ops_per_sec(),
            p.ops_per_sec(),
            ratio,
            r.cpu_per_op() * 1e6,
            p.cpu_per_op() * 1e6,
            cores / p.ops_per_sec() * 1e6
        );
        if matches!(
            r.kind,
            Kind::CodeFlow | Kind::Refresh | Kind::ClientCredentials
        ) {
            targets.push(Target::at_least(
                &format!("{} on PostgreSQL / on redb", r.kind.name()),
                ratio,
                0.5,
            ));
        }
    }
    targets
}
