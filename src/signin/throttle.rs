//! Throttling that slows attackers without locking the rightful owner out (SPEC §8, OWASP
//! "device cookies"). Pure bookkeeping over a caller-supplied clock in milliseconds; the
//! handlers decide who is asking and what to answer.
//!
//! - A browser where a user signed in before carries a signed *known-browser* cookie for
//!   that user ([`Who::Known`]). Its failures count against that cookie only, and nobody
//!   else's failures, from any address, ever delay it.
//! - Everyone else ([`Who::Anonymous`]) is delayed per key (a username, a user id, a
//!   client id) *and* per source address (IPv6 counted per /64): a few free failures, then
//!   delays that double from one second up to a cap of 15 minutes. Nothing is ever locked
//!   for longer than the cap.
//! - Tables are bounded. When one is full, entries past their forget time go first, then
//!   the entry whose delay ended longest ago; an entry that is still delaying is never
//!   evicted, and the table is never cleared.
//! - Refused attempts are not audited one by one: [`RefusalLog`] counts them per kind,
//!   account and address, and each key becomes one audit event per [`AUDIT_WINDOW`] (its
//!   first refusal, its last and how many), written when the window has passed.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::config::LoginLimits;

const SECOND: i64 = 1000;
/// The longest delay any schedule reaches (SPEC §8: capped at 15 minutes).
pub const CAP: i64 = 15 * 60 * SECOND;
/// One aggregated audit event per key and window.
pub const AUDIT_WINDOW: i64 = 5 * 60 * SECOND;
/// Entries per table.
const MAX_ENTRIES: usize = 20_000;

/// How delays grow: `free` failures cost nothing, then `base` doubling per failure, up to
/// `cap`. An entry is forgotten `forget` after its delay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub free: u32,
    pub base: i64,
    pub cap: i64,
    pub forget: i64,
}

impl Schedule {
    /// The delay after `failures` failures, in milliseconds.
    pub fn delay(&self, failures: u32) -> i64 {
        if failures <= self.free {
            return 0;
        }
        let doublings = (failures - self.free - 1).min(40);
        self.base.saturating_mul(1i64 << doublings).min(self.cap)
    }
}

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Entry {
    failures: u32,
    last: i64,
}

impl Entry {
    fn until(&self, s: &Schedule) -> i64 {
        self.last.saturating_add(s.delay(self.failures))
    }
}

/// One bounded table of failure counters.
struct Table<K> {
    map: HashMap<K, Entry>,
    schedule: Schedule,
    max: usize,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(schedule: Schedule, max: usize) -> Self {
        Table {
            map: HashMap::new(),
            schedule,
            max,
        }
    }

    /// Milliseconds still to wait for `key` at `now` (0: go ahead).
    fn wait(&self, key: &K, now: i64) -> i64 {
        self.map
            .get(key)
            .map_or(0, |e| (e.until(&self.schedule) - now).max(0))
    }

    /// Counts a failure; `false` when the table is full of entries still delaying
    /// someone and `key` went unrecorded.
    fn failure(&mut self, key: &K, now: i64) -> bool {
        let s = self.schedule;
        if let Some(e) = self.map.get_mut(key) {
            if now - e.until(&s) > s.forget {
                e.failures = 0;
            }
            e.failures = e.failures.saturating_add(1);
            e.last = now;
            return true;
        }
        if self.map.len() >= self.max && !self.make_room(now) {
            // Every entry is still delaying someone: this key goes unrecorded rather
            // than freeing a delay an attacker earned.
            return false;
        }
        self.map.insert(
            key.clone(),
            Entry {
                failures: 1,
                last: now,
            },
        );
        true
    }

    /// Frees one place: forgotten entries first (all of them), else the entry whose delay
    /// ended longest ago. `false` when every entry is still delaying.
    fn make_room(&mut self, now: i64) -> bool {
        let s = self.schedule;
        self.map.retain(|_, e| now - e.until(&s) <= s.forget);
        if self.map.len() < self.max {
            return true;
        }
        let oldest = self
            .map
            .iter()
            .filter(|(_, e)| e.until(&s) <= now)
            .min_by_key(|(_, e)| e.until(&s))
            .map(|(k, _)| k.clone());
        match oldest {
            Some(k) => {
                self.map.remove(&k);
                true
            }
            None => false,
        }
    }

    fn clear(&mut self, key: &K) {
        self.map.remove(key);
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// Source addresses as counted: IPv4 (and IPv4-mapped IPv6) per address, IPv6 per /64,
/// since one host is handed a whole /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    V4(u32),
    V6Net(u64),
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(u32::from(v4)),
                None => Source::V6Net((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// Who is attempting.
#[derive(Debug, Clone, Copy)]
pub enum Who<'a> {
    /// A browser with a valid known-browser cookie for the account; the cookie's id.
    Known(&'a str),
    /// Anyone else: the account key (lowercased username, user id) and the address.
    Anonymous { key: &'a str, addr: IpAddr },
    /// Guesses that name no account (reset links): the address alone.
    Address(IpAddr),
    /// Guesses by a signed-in account on its own behalf (device user codes from a known
    /// browser): the account alone, whatever browser or address it uses.
    Account(&'a str),
}

/// An attempt that must wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Seconds to wait, rounded up.
    pub wait_secs: i64,
}

impl Refused {
    /// How long to wait, in words ("1 second", "512 seconds").
    pub fn wait_text(&self) -> String {
        match self.wait_secs {
            1 => "1 second".to_string(),
            n => format!("{n} seconds"),
        }
    }

    /// What a page tells the person.
    pub fn message(&self) -> String {
        format!(
            "Too many failed attempts. Wait {} and try again.",
            self.wait_text()
        )
    }
}

struct Tables {
    keys: Table<String>,
    addrs: Table<Source>,
    known: Table<String>,
}

/// Failure counters for one kind of secret (passwords, second-factor codes, ...). On a
/// store several nodes share, the counters are kept there too (under
/// `throttle/<kind>/...`), and a check takes the larger of this node's and the shared
/// count: spreading guesses over nodes gains nothing.
pub struct Throttle {
    state: Mutex<Tables>,
    shared: Option<(Arc<dyn crate::store::Store>, &'static str)>,
}

/// How a table's key is named in the shared store.
trait Shared {
    fn shared_key(&self) -> String;
}

impl Shared for String {
    fn shared_key(&self) -> String {
        self.clone()
    }
}

impl Shared for Source {
    fn shared_key(&self) -> String {
        match self {
            Source::V4(a) => format!("v4:{a}"),
            Source::V6Net(n) => format!("v6:{n}"),
        }
    }
}

fn secs(ms: i64) -> i64 {
    (ms + SECOND - 1) / SECOND
}

impl Throttle {
    /// Per-account and per-address schedules from `[login]`, and the known-browser one.
    pub fn new(limits: &LoginLimits) -> Throttle {
        let key = Schedule {
            free: 3,
            base: SECOND,
            cap: CAP,
            forget: 3600 * SECOND,
        };
        let addr = Schedule {
            free: limits.ip_max_failures,
            base: SECOND,
            cap: (limits.ip_block * SECOND).min(CAP),
            forget: limits.ip_window * SECOND,
        };
        let known = Schedule { free: 5, ..key };
        Throttle::with(key, addr, known, MAX_ENTRIES)
    }

    /// Mail asked for without signing in (SPEC §12): per account three, then one after
    /// 10 minutes, doubling up to six hours (about ten a day at most: nobody can flood an
    /// inbox); per address as for passwords.
    pub fn for_mail(limits: &LoginLimits) -> Throttle {
        let key = Schedule {
            free: 3,
            base: 10 * 60 * SECOND,
            cap: 6 * 3600 * SECOND,
            forget: 24 * 3600 * SECOND,
        };
        let t = Throttle::new(limits);
        let (addr, known) = {
            let s = t.lock();
            (s.addrs.schedule, s.known.schedule)
        };
        Throttle::with(key, addr, known, MAX_ENTRIES)
    }

    fn with(key: Schedule, addr: Schedule, known: Schedule, max: usize) -> Throttle {
        Throttle {
            state: Mutex::new(Tables {
                keys: Table::new(key, max),
                addrs: Table::new(addr, max),
                known: Table::new(known, max),
            }),
            shared: None,
        }
    }

    /// Keeps the counters in `store` too when other nodes share it; `kind` names them.
    pub fn shared_through(
        mut self,
        store: &Arc<dyn crate::store::Store>,
        kind: &'static str,
    ) -> Throttle {
        self.shared = store.shared().then(|| (store.clone(), kind));
        self
    }

    /// The shared count's wait for `key` of `table` (ms); 0 without a shared store or when
    /// it cannot answer (this node's own count still holds).
    fn shared_wait(&self, table: &str, key: &impl Shared, s: &Schedule, now: i64) -> i64 {
        let Some((store, kind)) = &self.shared else {
            return 0;
        };
        let found = store.ephemeral(
            &format!("throttle/{kind}/{table}/{}", key.shared_key()),
            now / SECOND,
        );
        match found {
            Ok(Some(b)) => {
                serde_json::from_slice::<Entry>(&b).map_or(0, |e| (e.until(s) - now).max(0))
            }
            Ok(None) => 0,
            Err(e) => {
                tracing::warn!(error = %e, "the shared throttle did not answer; this node's counts hold");
                0
            }
        }
    }

    fn shared_failure(&self, table: &str, key: &impl Shared, s: &Schedule, now: i64) {
        let Some((store, kind)) = &self.shared else {
            return;
        };
        let make = |old: Option<&[u8]>| {
            let mut e = old
                .and_then(|b| serde_json::from_slice::<Entry>(b).ok())
                .unwrap_or(Entry {
                    failures: 0,
                    last: now,
                });
            if now - e.until(s) > s.forget {
                e.failures = 0;
            }
            e.failures = e.failures.saturating_add(1);
            e.last = now;
            serde_json::to_vec(&e).unwrap_or_default()
        };
        // Kept as long as the local entry would be: until its delay ends and is forgotten.
        let until = now.saturating_add(s.cap).saturating_add(s.forget) / SECOND + 1;
        let key = format!("throttle/{kind}/{table}/{}", key.shared_key());
        if let Err(e) = store.merge_ephemeral(&key, now / SECOND, until, &make) {
            tracing::warn!(error = %e, "could not count a failure in the shared throttle");
        }
    }

    fn shared_clear(&self, table: &str, key: &impl Shared) {
        if let Some((store, kind)) = &self.shared {
            let _ =
                store.delete_ephemeral(&format!("throttle/{kind}/{table}/{}", key.shared_key()));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic while holding the lock cannot leave a counter half-written that
        // matters more than refusing every sign-in would.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long `key` of the table `pick` chooses must still wait (ms): this node's count
    /// (read under the lock) or the shared one (read after it), whichever is longer.
    fn wait_in<K: Hash + Eq + Clone + Shared>(
        &self,
        pick: impl Fn(&Tables) -> &Table<K>,
        name: &str,
        key: &K,
        now: i64,
    ) -> i64 {
        let (local, schedule) = {
            let t = self.lock();
            let table = pick(&t);
            (table.wait(key, now), table.schedule)
        };
        local.max(self.shared_wait(name, key, &schedule, now))
    }

    /// Whether `who` may attempt at `now` (ms).
    pub fn check(&self, who: Who<'_>, now: i64) -> Result<(), Refused> {
        let refuse = |wait: i64| match wait {
            0 => Ok(()),
            w => Err(Refused { wait_secs: secs(w) }),
        };
        match who {
            Who::Known(id) => refuse(self.wait_in(|t| &t.known, "known", &id.to_string(), now)),
            Who::Address(addr) => {
                refuse(self.wait_in(|t| &t.addrs, "addr", &Source::from(addr), now))
            }
            Who::Account(key) => refuse(self.wait_in(|t| &t.keys, "key", &key.to_lowercase(), now)),
            Who::Anonymous { key, addr } => {
                let key_wait = self.wait_in(|t| &t.keys, "key", &key.to_lowercase(), now);
                let addr_wait = self.wait_in(|t| &t.addrs, "addr", &Source::from(addr), now);
                if key_wait > 0 {
                    return Err(Refused {
                        wait_secs: secs(key_wait).max(secs(addr_wait)),
                    });
                }
                refuse(addr_wait)
            }
        }
    }

    /// Records a failed attempt at `now` (ms).
    pub fn failure(&self, who: Who<'_>, now: i64) {
        // This node's counts under the lock; the shared ones after it is released (a
        // database round trip must not hold every sign-in of the node).
        // What this node recorded is shared too: the shared rows stay within what the
        // nodes' own tables (at most `MAX_ENTRIES` each) hold.
        let (key_kept, addr_kept, keys, addrs, known) = {
            let mut t = self.lock();
            let (k, a) = match who {
                Who::Known(id) => (t.known.failure(&id.to_string(), now), false),
                Who::Address(addr) => (false, t.addrs.failure(&Source::from(addr), now)),
                Who::Account(key) => (t.keys.failure(&key.to_lowercase(), now), false),
                Who::Anonymous { key, addr } => (
                    t.keys.failure(&key.to_lowercase(), now),
                    t.addrs.failure(&Source::from(addr), now),
                ),
            };
            (k, a, t.keys.schedule, t.addrs.schedule, t.known.schedule)
        };
        match who {
            Who::Known(id) if key_kept => {
                self.shared_failure("known", &id.to_string(), &known, now)
            }
            Who::Address(addr) if addr_kept => {
                self.shared_failure("addr", &Source::from(addr), &addrs, now)
            }
            Who::Account(key) if key_kept => {
                self.shared_failure("key", &key.to_lowercase(), &keys, now)
            }
            Who::Anonymous { key, addr } => {
                if key_kept {
                    self.shared_failure("key", &key.to_lowercase(), &keys, now);
                }
                if addr_kept {
                    self.shared_failure("addr", &Source::from(addr), &addrs, now);
                }
            }
            _ => {}
        }
    }

    /// A success clears the account's (or the known browser's) counter; the address
    /// keeps its count, so one good password does not buy an attacker new guesses.
    pub fn success(&self, who: Who<'_>) {
        {
            let mut t = self.lock();
            match who {
                Who::Known(id) => t.known.clear(&id.to_string()),
                Who::Address(_) => {}
                Who::Anonymous { key, .. } | Who::Account(key) => t.keys.clear(&key.to_lowercase()),
            }
        }
        match who {
            Who::Known(id) => self.shared_clear("known", &id.to_string()),
            Who::Address(_) => {}
            Who::Anonymous { key, .. } | Who::Account(key) => {
                self.shared_clear("key", &key.to_lowercase())
            }
        }
    }

    /// Entries held, for tests and metrics.
    pub fn entries(&self) -> usize {
        let t = self.lock();
        t.keys.len() + t.addrs.len() + t.known.len()
    }
}

/// One aggregated audit event: how many attempts of one kind, for one account (if named)
/// from one address, were refused between `first` and `last` (ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalRow {
    pub kind: &'static str,
    pub user: Option<String>,
    pub ip: IpAddr,
    pub count: u64,
    pub first: i64,
    pub last: i64,
    pub wait_secs: i64,
}

/// Refused attempts waiting to become audit events: one per kind, account and address and
/// [`AUDIT_WINDOW`], written once the window has passed ([`RefusalLog::due`]), so a loop
/// of refused attempts writes one row where it would have written thousands. At most
/// [`RefusalLog::MAX_KEYS`] keys wait; refusals past that are counted in one overflow row.
#[derive(Default)]
pub struct RefusalLog(Mutex<RefusalState>);

#[derive(Default)]
struct RefusalState {
    pending: HashMap<(&'static str, Option<String>, IpAddr), RefusalRow>,
    overflow: Option<RefusalRow>,
}

impl RefusalLog {
    pub const MAX_KEYS: usize = 10_000;

    /// Counts one refused attempt at `now` (ms).
    pub fn note(
        &self,
        kind: &'static str,
        user: Option<&str>,
        ip: IpAddr,
        wait_secs: i64,
        now: i64,
    ) {
        let mut st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let key = (
            kind,
            user.map(|u| u.chars().take(128).collect::<String>()),
            ip,
        );
        let fresh = |user: Option<String>, ip| RefusalRow {
            kind,
            user,
            ip,
            count: 0,
            first: now,
            last: now,
            wait_secs,
        };
        let full = st.pending.len() >= Self::MAX_KEYS && !st.pending.contains_key(&key);
        let row = if full {
            st.overflow.get_or_insert_with(|| fresh(None, ip))
        } else {
            let (user, ip) = (key.1.clone(), key.2);
            st.pending.entry(key).or_insert_with(|| fresh(user, ip))
        };
        row.count += 1;
        row.last = now;
        row.wait_secs = wait_secs;
    }

    /// The rows whose window has passed at `now` (all of them with `all`, at shutdown),
    /// removed from the log.
    pub fn due(&self, now: i64, all: bool) -> Vec<RefusalRow> {
        let mut st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let ripe = |r: &RefusalRow| all || now - r.first >= AUDIT_WINDOW;
        let keys: Vec<_> = st
            .pending
            .iter()
            .filter(|(_, r)| ripe(r))
            .map(|(k, _)| k.clone())
            .collect();
        let mut rows: Vec<RefusalRow> = keys.iter().filter_map(|k| st.pending.remove(k)).collect();
        if st.overflow.as_ref().is_some_and(ripe)
            && let Some(o) = st.overflow.take()
        {
            rows.push(o);
        }
        rows.sort_by_key(|r| r.first);
        rows
    }
}

/// Open connections per source address (IPv6 per /64), so that one address cannot take
/// every connection the server accepts (SPEC §8). A slot is given back when dropped.
pub struct ConnectionShares {
    counts: Mutex<HashMap<Source, usize>>,
    limit: usize,
}

/// One connection's place in its address's share.
pub struct ConnectionSlot {
    shares: std::sync::Arc<ConnectionShares>,
    source: Source,
}

impl ConnectionShares {
    pub fn new(limit: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(ConnectionShares {
            counts: Mutex::new(HashMap::new()),
            limit,
        })
    }

    /// A slot for a new connection from `ip`, or `None` when its address has its share.
    pub fn take(self: &std::sync::Arc<Self>, ip: IpAddr) -> Option<ConnectionSlot> {
        let source = Source::from(ip);
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = c.entry(source).or_default();
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot {
            shares: self.clone(),
            source,
        })
    }

    #[cfg(test)]
    fn held(&self, ip: IpAddr) -> usize {
        let c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.get(&Source::from(ip)).copied().unwrap_or(0)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut c = self.shares.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = c.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.source);
            }
        }
    }
}

/// A ceiling on the aggregated refusal events all keys together may write: at most
/// [`AuditGate::PER_MINUTE`] rows a minute, so a flood that primes many keys from many
/// addresses still writes a bounded number of rows. Events past the ceiling are counted
/// and reported by the next row that is written.
#[derive(Default)]
pub struct AuditGate(Mutex<(i64, u32, u64)>);

impl AuditGate {
    pub const PER_MINUTE: u32 = 60;

    /// `Some(n)`: write the row, noting `n` events suppressed before it; `None`: suppressed.
    pub fn admit(&self, now: i64) -> Option<u64> {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (start, written, suppressed) = &mut *g;
        if now - *start >= 60 * SECOND {
            (*start, *written) = (now, 0);
        }
        if *written >= Self::PER_MINUTE {
            *suppressed += 1;
            return None;
        }
        *written += 1;
        Some(std::mem::take(suppressed))
    }
}

/// Wrong client credentials, per client (RFC 6749 §2.3.1). A right credential is never
/// refused: the caller checks cheap secrets first and only then waits out [`wait_ms`]
/// before answering a wrong one, and waits before hashing an expensive one.
///
/// [`wait_ms`]: ClientThrottle::wait_ms
pub struct ClientThrottle {
    state: Mutex<Table<String>>,
}

impl Default for ClientThrottle {
    fn default() -> Self {
        ClientThrottle::with(MAX_ENTRIES)
    }
}

impl ClientThrottle {
    /// Ten free failures, then 250 ms doubling up to 4 s: a relying-party test suite's
    /// error cases pass quickly, a guessing loop does not.
    pub const SCHEDULE: Schedule = Schedule {
        free: 10,
        base: SECOND / 4,
        cap: 4 * SECOND,
        forget: 600 * SECOND,
    };

    fn with(max: usize) -> Self {
        ClientThrottle {
            state: Mutex::new(Table::new(Self::SCHEDULE, max)),
        }
    }

    /// How long a wrong attempt for this (known) client is slowed at `now` (ms).
    pub fn wait_ms(&self, client_id: &str, now: i64) -> i64 {
        let t = self.state.lock().unwrap_or_else(|p| p.into_inner());
        t.wait(&client_id.to_string(), now)
    }

    pub fn failure(&self, client_id: &str, now: i64) {
        let mut t = self.state.lock().unwrap_or_else(|p| p.into_inner());
        t.failure(&client_id.to_string(), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two nodes on one PostgreSQL database: guesses spread over both count as one run.
    #[test]
    fn spreading_guesses_over_nodes_gains_nothing() {
        let url = crate::testutil::postgres::server().database();
        let node = || -> Arc<dyn crate::store::Store> {
            let settings = crate::store::postgres::PgSettings {
                config: url.parse().unwrap(),
                tls: None,
                pool_size: 2,
            };
            Arc::new(crate::store::postgres::PgStore::open(&settings).unwrap())
        };
        let limits = crate::config::LoginLimits {
            ip_max_failures: 1000,
            ip_window: 3600,
            ip_block: 900,
        };
        let a = Throttle::new(&limits).shared_through(&node(), "password");
        let b = Throttle::new(&limits).shared_through(&node(), "password");
        let who = Who::Account("alice");
        let now = 1_000_000_000;
        for i in 0..4 {
            let t = if i % 2 == 0 { &a } else { &b };
            assert!(t.check(who, now).is_ok(), "guess {i}");
            t.failure(who, now);
        }
        assert!(a.check(who, now).is_err(), "four failures over two nodes");
        assert!(b.check(who, now).is_err());
        b.success(who);
        assert!(
            a.check(who, now).is_ok(),
            "a success on one node clears both"
        );
    }

    const S: i64 = SECOND;
    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 7));

    fn limits() -> LoginLimits {
        LoginLimits {
            ip_max_failures: 30,
            ip_window: 300,
            ip_block: 900,
        }
    }

    fn anon(key: &str, addr: IpAddr) -> Who<'_> {
        Who::Anonymous { key, addr }
    }

    #[test]
    fn delays_double_and_stop_at_fifteen_minutes() {
        let s = Schedule {
            free: 3,
            base: S,
            cap: CAP,
            forget: 3600 * S,
        };
        let d: Vec<i64> = (0..20).map(|n| s.delay(n) / S).collect();
        assert_eq!(
            d,
            [
                0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900, 900, 900, 900
            ]
        );
        assert_eq!(s.delay(u32::MAX), CAP, "no overflow, no lock past the cap");
    }

    #[test]
    fn a_known_browser_is_never_delayed_by_others() {
        let t = Throttle::new(&limits());
        // 120 wrong passwords for alice from her own office address.
        for i in 0..120 {
            t.failure(anon("alice", HOME), i * S);
        }
        assert!(t.check(anon("Alice", HOME), 120 * S).is_err());
        assert!(t.check(anon("alice", OTHER), 120 * S).is_err());
        assert!(t.check(Who::Known("cookie-1"), 120 * S).is_ok());
        // Nor by failures from another known browser.
        for i in 0..50 {
            t.failure(Who::Known("stolen-laptop"), i * S);
        }
        assert!(t.check(Who::Known("stolen-laptop"), 50 * S).is_err());
        assert!(t.check(Who::Known("cookie-1"), 50 * S).is_ok());
    }

    #[test]
    fn no_lock_outlasts_the_cap() {
        let t = Throttle::new(&limits());
        for _ in 0..10_000 {
            t.failure(anon("bob", OTHER), 0);
        }
        let r = t.check(anon("bob", HOME), 0).unwrap_err();
        assert_eq!(r.wait_secs, 900);
        assert!(t.check(anon("bob", HOME), CAP).is_ok());
        assert!(t.check(anon("carol", OTHER), CAP).is_ok());
    }

    #[test]
    fn addresses_are_counted_per_v6_prefix_and_after_free_failures() {
        let t = Throttle::new(&limits());
        let a: IpAddr = "2001:db8:1:2::10".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::10".parse().unwrap();
        for i in 0..31 {
            t.failure(anon(&format!("user{i}"), a), 0);
        }
        assert_eq!(t.check(anon("someone", b), 0).unwrap_err().wait_secs, 1);
        assert!(t.check(anon("someone", c), 0).is_ok());
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(Source::from(mapped), Source::from(HOME));
    }

    #[test]
    fn guesses_without_an_account_count_per_address_only() {
        let t = Throttle::new(&LoginLimits {
            ip_max_failures: 2,
            ..limits()
        });
        for _ in 0..3 {
            t.failure(Who::Address(HOME), 0);
        }
        assert!(t.check(Who::Address(HOME), 0).is_err());
        assert!(t.check(Who::Address(OTHER), 0).is_ok());
        assert!(t.check(anon("x", OTHER), 0).is_ok());
    }

    #[test]
    fn success_clears_the_account_but_not_the_address() {
        let t = Throttle::new(&LoginLimits {
            ip_max_failures: 4,
            ..limits()
        });
        for _ in 0..5 {
            t.failure(anon("dave", HOME), 0);
        }
        t.success(anon("dave", HOME));
        assert!(t.check(anon("dave", OTHER), 0).is_ok());
        assert!(t.check(anon("erin", HOME), 0).is_err());
    }

    #[test]
    fn refusals_become_one_row_per_key_and_window() {
        let log = RefusalLog::default();
        for i in 0..146 {
            log.note("login.throttled", Some("alice"), HOME, 1, i * S);
        }
        log.note("login.throttled", Some("bob"), HOME, 4, 10 * S);
        log.note("mfa.throttled", Some("alice"), HOME, 2, 20 * S);
        assert!(
            log.due(AUDIT_WINDOW - 1, false).is_empty(),
            "the window has not passed"
        );
        let rows = log.due(AUDIT_WINDOW + 20 * S, false);
        assert_eq!(rows.len(), 3);
        assert_eq!(
            (
                rows[0].user.as_deref(),
                rows[0].count,
                rows[0].first,
                rows[0].last
            ),
            (Some("alice"), 146, 0, 145 * S)
        );
        assert_eq!(
            (rows[1].user.as_deref(), rows[1].count, rows[1].wait_secs),
            (Some("bob"), 1, 4)
        );
        assert_eq!(rows[2].kind, "mfa.throttled");
        assert!(
            log.due(AUDIT_WINDOW * 10, true).is_empty(),
            "each row is written once"
        );
        log.note("login.throttled", None, OTHER, 1, 0);
        assert_eq!(log.due(1, true).len(), 1, "shutdown writes what is waiting");
    }

    #[test]
    fn full_tables_evict_the_oldest_unlocked_entry_never_all() {
        let sched = Schedule {
            free: 0,
            base: 10 * S,
            cap: CAP,
            forget: 3600 * S,
        };
        let t = Throttle::with(sched, sched, sched, 3);
        t.failure(Who::Known("a"), 0); // delays until 10 s
        t.failure(Who::Known("b"), 5 * S); // until 15 s
        t.failure(Who::Known("c"), 20 * S); // until 30 s
        // At 21 s, a and b are done delaying; a ended first and goes.
        t.failure(Who::Known("d"), 21 * S);
        let t2 = t.lock();
        assert!(!t2.known.map.contains_key("a"));
        assert!(t2.known.map.contains_key("b"));
        assert!(t2.known.map.contains_key("c"));
        assert!(t2.known.map.contains_key("d"));
        drop(t2);
        // At 22 s b (done at 15 s) gives way to e; then c, d and e all still delay, so
        // neither b again nor f is recorded, and nothing is dropped for them.
        t.failure(Who::Known("e"), 22 * S);
        t.failure(Who::Known("b"), 22 * S);
        t.failure(Who::Known("f"), 22 * S);
        let t3 = t.lock();
        let mut held: Vec<&String> = t3.known.map.keys().collect();
        held.sort();
        assert_eq!(held, ["c", "d", "e"]);
    }

    #[test]
    fn connections_are_shared_per_address() {
        let shares = ConnectionShares::new(2);
        let a = shares.take(HOME).unwrap();
        let _b = shares.take(HOME).unwrap();
        assert!(shares.take(HOME).is_none(), "this address has its share");
        assert!(shares.take(OTHER).is_some(), "others are not affected");
        drop(a);
        assert_eq!(shares.held(HOME), 1);
        assert!(
            shares.take(HOME).is_some(),
            "a closed connection gives its place back"
        );
        let v6a: IpAddr = "2001:db8::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8::2".parse().unwrap();
        let _c = shares.take(v6a).unwrap();
        let _d = shares.take(v6b).unwrap();
        assert!(shares.take(v6a).is_none(), "IPv6 per /64");
    }

    #[test]
    fn the_audit_gate_bounds_rows_and_counts_the_rest() {
        let g = AuditGate::default();
        let admitted: Vec<Option<u64>> = (0..62).map(|i| g.admit(i)).collect();
        assert!(admitted[..60].iter().all(|a| *a == Some(0)));
        assert_eq!(admitted[60..], [None, None]);
        assert_eq!(
            g.admit(60 * S),
            Some(2),
            "the next minute reports the suppressed"
        );
        assert_eq!(g.admit(60 * S + 1), Some(0));
    }

    #[test]
    fn client_failures_slow_after_the_free_ones() {
        let c = ClientThrottle::with(10);
        for _ in 0..10 {
            c.failure("app", 0);
        }
        assert_eq!(c.wait_ms("app", 0), 0);
        c.failure("app", 0);
        assert_eq!(c.wait_ms("app", 0), 250);
        for _ in 0..20 {
            c.failure("app", 0);
        }
        assert_eq!(c.wait_ms("app", 0), 4 * S);
        assert_eq!(c.wait_ms("other", 0), 0);
    }
}
