//! The sustained phase ("Flat under sustained load"): a fresh server with short
//! lifetimes, driven at full rate for `LATCHKEY_LOAD_SUSTAINED_SECS` (default 600) with
//! client_credentials, then a fresh one with code flows and refreshes. Every operation's
//! latency goes into the 10-second window it ended in; each window prints its operations,
//! p50/p99/p99.9/max, the database's file size and disk usage and the server's RSS. At
//! the end: the stall target (no window max above 10× the median of the windows' p50s),
//! bytes on disk per issued token, and whether the file size and RSS stayed flat once the
//! records of the first lifetime were gone.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Settings;
use crate::scenario::{self, Kind, Target, Worker};
use crate::seed;
use crate::server::{Measured, Server};

const WINDOW_SECS: u64 = 10;
const WINDOW: Duration = Duration::from_secs(WINDOW_SECS);

const CODE_TTL: u64 = 30;
const ACCESS_TTL: u64 = 120;
const REFRESH_IDLE: u64 = 120;
const REFRESH_ABSOLUTE: u64 = 300;
const AUDIT_RETENTION: u64 = 120;
/// Used codes are kept this long past expiry (`CODE_REPLAY_WINDOW` in
/// `src/store/redb/mod.rs`: a late replay revokes the grant).
const CODE_REPLAY: u64 = 300;
/// Expired records are removed once a minute (`MAINTENANCE_INTERVAL` in `src/server.rs`).
const MAINTENANCE: u64 = 60;

/// Stall: a window whose max exceeds this many times the median of the windows' p50s.
const STALL: f64 = 10.0;
/// File size and RSS may move by this much (%) after the first lifetime.
const FLAT: f64 = 10.0;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mix {
    ClientCredentials,
    CodeAndRefresh,
}

impl Mix {
    fn name(self) -> &'static str {
        match self {
            Mix::ClientCredentials => "client_credentials",
            Mix::CodeAndRefresh => "code flow + refresh",
        }
    }

    /// For the temporary directory's name.
    fn tag(self) -> &'static str {
        match self {
            Mix::ClientCredentials => "cc",
            Mix::CodeAndRefresh => "mixed",
        }
    }

    /// What connection `i` of `n` does: client_credentials on all of them, or code flows
    /// on the first half and refreshes on the rest.
    fn kind(self, i: usize, n: usize) -> Kind {
        match self {
            Mix::ClientCredentials => Kind::ClientCredentials,
            Mix::CodeAndRefresh if i < n / 2 => Kind::CodeFlow,
            Mix::CodeAndRefresh => Kind::Refresh,
        }
    }

    /// Seconds after which the records of the first lifetime are gone: the longest any
    /// record this load writes is kept, plus one maintenance interval (a record that
    /// expires now is removed by the next run). client_credentials writes only its
    /// per-minute audit rows; the code flow also a code (kept 5 minutes past its expiry),
    /// refresh tokens (no family outlives its absolute lifetime) and a grant, kept until
    /// the last access token of its family expires (one issued just before the family's
    /// absolute end lives an access lifetime longer).
    fn settle(self) -> u64 {
        let longest = match self {
            Mix::ClientCredentials => ACCESS_TTL.max(AUDIT_RETENTION),
            Mix::CodeAndRefresh => (CODE_TTL + CODE_REPLAY)
                .max(REFRESH_ABSOLUTE + ACCESS_TTL)
                .max(AUDIT_RETENTION),
        };
        longest + MAINTENANCE
    }
}

/// Runs both loads (or the one `LATCHKEY_LOAD_SUSTAINED_MIX` names: `client` or
/// `code`), each on a server of its own; returns their targets.
pub(crate) async fn run(s: &Settings, hash: &str) -> Vec<Target> {
    let only = std::env::var("LATCHKEY_LOAD_SUSTAINED_MIX").unwrap_or_default();
    let mut targets = Vec::new();
    for mix in [Mix::ClientCredentials, Mix::CodeAndRefresh] {
        let tag = match mix {
            Mix::ClientCredentials => "client",
            Mix::CodeAndRefresh => "code",
        };
        if only.is_empty() || only == tag {
            targets.extend(one(s, hash, mix).await);
        }
    }
    targets
}

/// The configuration: short lifetimes, so the first has passed early in the run.
fn config() -> String {
    format!(
        "{}[tokens]\ncode_ttl_secs = {CODE_TTL}\naccess_token_ttl_secs = {ACCESS_TTL}\n\
         id_token_ttl_secs = {ACCESS_TTL}\nrefresh_token_idle_ttl_secs = {REFRESH_IDLE}\n\
         refresh_token_absolute_ttl_secs = {REFRESH_ABSOLUTE}\n\
         [audit]\nretention_secs = {AUDIT_RETENTION}\n",
        crate::BASE_CONFIG
    )
}

/// What the workers record into one window.
#[derive(Default)]
struct Slot {
    /// Latency of each operation that ended in the window, µs.
    lat: Vec<u32>,
    /// Latency of the discovery probes that ended in the window, µs.
    probe: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

/// One window, as printed.
struct Row {
    start: u64,
    ops: u64,
    errors: u64,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    /// The slowest discovery probe of the window (a request that needs no store).
    probe_max: f64,
    file: u64,
    disk: u64,
    rss: f64,
}

impl Row {
    fn header() {
        println!(
            "{:>7} {:>7} {:>6} {:>8} {:>8} {:>8} {:>8} {:>9} {:>12} {:>12} {:>8}",
            "start s",
            "ops",
            "errors",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "probe ms",
            "file bytes",
            "disk bytes",
            "RSS MiB"
        );
    }

    fn print(&self) {
        println!(
            "{:>7} {:>7} {:>6} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>12} {:>12} {:>8.1}",
            self.start,
            self.ops,
            self.errors,
            self.p50,
            self.p99,
            self.p999,
            self.max,
            self.probe_max,
            self.file,
            self.disk,
            self.rss
        );
    }
}

/// File size and disk usage (allocated blocks) of the database, bytes.
fn sizes(db: &Path) -> (u64, u64) {
    std::fs::metadata(db).map_or((0, 0), |m| (m.len(), m.blocks() * 512))
}

/// Percentile `p` of sorted µs, in ms.
fn pct(lat: &[u32], p: f64) -> f64 {
    if lat.is_empty() {
        return 0.0;
    }
    let i = ((lat.len() as f64 * p) as usize).min(lat.len() - 1);
    lat[i] as f64 / 1e3
}

/// One connection until `until`: operations of `kind` one after another, each recorded
/// in the window it ended in. A refresh connection starts a new token family with a code
/// flow (recorded too) before its absolute lifetime runs out or after a refused refresh;
/// a connection whose code flow failed signs in again first.
async fn work(
    mut w: Worker,
    kind: Kind,
    start: Instant,
    until: Instant,
    slots: Arc<Mutex<Vec<Slot>>>,
) {
    let renew_after = Duration::from_secs(REFRESH_ABSOLUTE - 2 * WINDOW_SECS);
    // The connection's first code flow (in `scenario::workers`) was just done.
    let mut renew_at = Instant::now() + renew_after;
    let mut sign_in = false;
    while Instant::now() < until {
        if sign_in {
            if let Ok(c) = w.sign_in().await {
                w.cookie = c;
            }
            sign_in = false;
        }
        let op = if kind == Kind::Refresh && Instant::now() >= renew_at {
            Kind::CodeFlow
        } else {
            kind
        };
        let t = Instant::now();
        let r = w.step(op).await;
        let us = t.elapsed().as_micros().min(u32::MAX as u128) as u32;
        let ok = r.is_ok();
        {
            // The window is read under the lock, so a window the report has taken gets
            // nothing more.
            let mut slots = slots.lock().expect("windows");
            let i = ((start.elapsed().as_secs() / WINDOW_SECS) as usize).min(slots.len() - 1);
            let slot = &mut slots[i];
            match r {
                Ok(_) => slot.lat.push(us),
                Err(e) => {
                    slot.errors += 1;
                    slot.first_error.get_or_insert(e);
                }
            }
        }
        match (op, ok) {
            (Kind::CodeFlow, true) => renew_at = t + renew_after,
            (Kind::CodeFlow, false) => sign_in = true,
            (Kind::Refresh, false) => renew_at = Instant::now(),
            _ => {}
        }
    }
}

/// A discovery request every 50 ms on a connection of its own until `until`: whether
/// requests that need no store keep answering while the store works (or stalls).
async fn probe(mut w: Worker, start: Instant, until: Instant, slots: Arc<Mutex<Vec<Slot>>>) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    while Instant::now() < until {
        tick.tick().await;
        let t = Instant::now();
        let ok = w.step(Kind::Discovery).await.is_ok();
        let us = t.elapsed().as_micros().min(u32::MAX as u128) as u32;
        let mut slots = slots.lock().expect("windows");
        let i = ((start.elapsed().as_secs() / WINDOW_SECS) as usize).min(slots.len() - 1);
        if ok {
            slots[i].probe.push(us);
        }
    }
}

/// One load on a fresh server for the configured time; prints its windows and summary
/// and returns its targets.
async fn one(s: &Settings, hash: &str, mix: Mix) -> Vec<Target> {
    let mut srv = Server::new(&format!("sustained-{}", mix.tag()), &config());
    srv.start();
    srv.stop();
    {
        let store = latchkey::store::redb::RedbStore::open(&srv.database()).expect("store");
        seed::users(&store, 0..crate::SMALL_USERS, hash);
        seed::clients(&store, 0..crate::CLIENTS);
    }
    srv.start();
    let secs = s.sustained_secs.max(1);
    let n = secs.div_ceil(WINDOW_SECS) as usize;
    let conns = s.conns.max(2);
    let conn_note = match mix {
        Mix::ClientCredentials => format!("{conns} connections"),
        Mix::CodeAndRefresh => format!(
            "{} connections of code flows, {} of refreshes",
            conns / 2,
            conns - conns / 2
        ),
    };
    println!(
        "\n== sustained: {} for {secs} s, {conn_note}; lifetimes: code {CODE_TTL} s, \
         access {ACCESS_TTL} s, refresh {REFRESH_IDLE}/{REFRESH_ABSOLUTE} s, \
         audit {AUDIT_RETENTION} s ==",
        mix.name()
    );
    let pool = scenario::workers(&srv, conns, crate::SMALL_USERS).await;
    let prober = scenario::workers(&srv, 1, crate::SMALL_USERS)
        .await
        .pop()
        .expect("a probe connection");
    Row::header();
    let slots = Arc::new(Mutex::new(
        (0..n).map(|_| Slot::default()).collect::<Vec<_>>(),
    ));
    let (file0, disk0) = sizes(&srv.database());
    let start = Instant::now();
    let until = start + Duration::from_secs(secs);
    let mut tasks: Vec<_> = pool
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            tokio::spawn(work(
                w,
                mix.kind(i, conns),
                start,
                until,
                Arc::clone(&slots),
            ))
        })
        .collect();
    tasks.push(tokio::spawn(probe(
        prober,
        start,
        until,
        Arc::clone(&slots),
    )));
    let mut rows = Vec::with_capacity(n);
    let mut first_error = None;
    for i in 0..n {
        if i + 1 < n {
            tokio::time::sleep_until((start + WINDOW * (i as u32 + 1)).into()).await;
        } else {
            // The last window also takes the operations that ended after `until`.
            for t in tasks.drain(..) {
                t.await.expect("worker");
            }
        }
        let mut slot = std::mem::take(&mut slots.lock().expect("windows")[i]);
        slot.lat.sort_unstable();
        let probe_max = slot.probe.iter().max().map_or(0.0, |&us| us as f64 / 1e3);
        let (file, disk) = sizes(&srv.database());
        let row = Row {
            start: i as u64 * WINDOW_SECS,
            ops: slot.lat.len() as u64,
            errors: slot.errors,
            p50: pct(&slot.lat, 0.5),
            p99: pct(&slot.lat, 0.99),
            p999: pct(&slot.lat, 0.999),
            max: slot.lat.last().map_or(0.0, |&us| us as f64 / 1e3),
            probe_max,
            file,
            disk,
            rss: srv.memory().rss,
        };
        row.print();
        first_error = first_error.or(slot.first_error);
        rows.push(row);
    }
    srv.stop();
    slow_writes(&srv.log_path());
    tables(&srv.database());
    summary(mix, secs, &rows, (file0, disk0), first_error)
}

/// The server's reports of slow store writes (at most one a second), where they were.
fn slow_writes(log: &Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let slow: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("slow store write"))
        .collect();
    println!("slow store writes reported by the server: {}", slow.len());
    for l in slow.iter().take(30) {
        println!("    {l}");
    }
}

/// What the file holds at the end, table by table: where the bytes per token go.
fn tables(db: &Path) {
    use redb::{ReadableDatabase, ReadableTableMetadata};
    let Ok(db) = redb::Database::open(db) else {
        println!("(the file could not be opened for its table sizes)");
        return;
    };
    let Ok(tx) = db.begin_read() else { return };
    println!(
        "{:<24} {:>10} {:>12} {:>12} {:>12}",
        "table", "entries", "stored B", "metadata B", "fragmented B"
    );
    let Ok(handles) = tx.list_tables() else {
        return;
    };
    for h in handles {
        let name = redb::TableHandle::name(&h).to_owned();
        let Ok(t) = tx.open_untyped_table(h) else {
            continue;
        };
        let (Ok(n), Ok(st)) = (t.len(), t.stats()) else {
            continue;
        };
        println!(
            "{name:<24} {n:>10} {:>12} {:>12} {:>12}",
            st.stored_bytes(),
            st.metadata_bytes(),
            st.fragmented_bytes()
        );
    }
}

/// The figures and targets of one load from its windows.
fn summary(
    mix: Mix,
    secs: u64,
    rows: &[Row],
    (file0, disk0): (u64, u64),
    first_error: Option<String>,
) -> Vec<Target> {
    let name = mix.name();
    let mut targets = Vec::new();
    let ops: u64 = rows.iter().map(|r| r.ops).sum();
    let errors: u64 = rows.iter().map(|r| r.errors).sum();
    println!(
        "{name}: {ops} operations in {secs} s ({:.0}/s), {errors} errors",
        ops as f64 / secs as f64
    );
    if let Some(e) = first_error {
        println!("    first error: {e}");
    }
    let empty = rows.iter().filter(|r| r.ops == 0).count();
    if empty > 0 {
        println!("    {empty} windows without a completed operation");
    }

    let mut p50s: Vec<f64> = rows.iter().filter(|r| r.ops > 0).map(|r| r.p50).collect();
    p50s.sort_by(f64::total_cmp);
    let median = p50s.get(p50s.len() / 2).copied().unwrap_or(0.0);
    let worst = rows.iter().max_by(|a, b| a.max.total_cmp(&b.max));
    let (worst_max, worst_at) = worst.map_or((0.0, 0), |r| (r.max, r.start));
    let stall = Target::at_most(
        &format!("sustained {name}: worst window max / median p50"),
        worst_max / median,
        STALL,
    );
    println!(
        "median of the windows' p50: {median:.2} ms; worst window max: {worst_max:.2} ms \
         (window at {worst_at} s), {:.1}× the median; no stall (<= {STALL}×): {}",
        worst_max / median,
        if stall.met() { "met" } else { "NOT MET" }
    );
    targets.push(stall);
    // Discovery needs no store: it should never wait for the store's work, so its
    // slowest answer stays under the load's own median. Judged for the load that writes
    // (client_credentials writes nothing: a slow probe there is CPU queueing only).
    let probe_worst = rows.iter().map(|r| r.probe_max).fold(0.0, f64::max);
    let probe = Target::at_most(
        &format!("sustained {name}: slowest discovery probe / median p50"),
        probe_worst / median,
        1.0,
    );
    if mix == Mix::CodeAndRefresh {
        println!(
            "slowest discovery probe: {probe_worst:.2} ms, {:.2}× the median p50 (<= 1×): {}",
            probe_worst / median,
            if probe.met() { "met" } else { "NOT MET" }
        );
        targets.push(probe);
    } else {
        println!(
            "slowest discovery probe: {probe_worst:.2} ms, {:.2}× the median p50 (not judged: \
             this load writes nothing to the store)",
            probe_worst / median
        );
    }

    // Each successful operation is one token response (client_credentials: an access
    // token; code flow: access, ID and refresh token; refresh: access and refresh token).
    let last = rows.last().expect("at least one window");
    let per_token = |end: u64, begin: u64| (end as f64 - begin as f64) / ops.max(1) as f64;
    println!(
        "bytes per issued token (token responses): {:.1} on disk ({disk0} → {} bytes), \
         {:.1} of file size ({file0} → {} bytes), {ops} issued",
        per_token(last.disk, disk0),
        last.disk,
        per_token(last.file, file0),
        last.file
    );

    // The first window that ends once the records of the first lifetime are gone.
    let settle = mix.settle();
    let from = (settle.div_ceil(WINDOW_SECS) as usize).max(1) - 1;
    if from + 1 >= rows.len() {
        println!(
            "file size and RSS not judged: the run is shorter than {} s \
             (the first lifetime's records gone at {settle} s, then one window)",
            settle + WINDOW_SECS
        );
        return targets;
    }
    let base = &rows[from];
    let change = |end: f64, begin: f64| (end - begin) / begin * 100.0;
    let growth = change(last.file as f64, base.file as f64);
    let file = Target::at_most(
        &format!("sustained {name}: file growth after {settle} s (%)"),
        growth,
        FLAT,
    );
    let moved = change(last.rss, base.rss);
    let rss = Target::between(
        &format!("sustained {name}: RSS change after {settle} s (%)"),
        moved,
        -FLAT,
        FLAT,
    );
    println!(
        "from {} s (the first lifetime's records gone) to the end: file {} → {} bytes \
         ({growth:+.1}%, <= {FLAT}%: {}); RSS {:.1} → {:.1} MiB ({moved:+.1}%, within ±{FLAT}%: {})",
        base.start + WINDOW_SECS,
        base.file,
        last.file,
        if file.met() { "met" } else { "NOT MET" },
        base.rss,
        last.rss,
        if rss.met() { "met" } else { "NOT MET" }
    );
    targets.push(file);
    targets.push(rss);
    targets
}
