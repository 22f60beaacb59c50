//! The redb backend: one file, tables of JSON values keyed by strings. The only module
//! that imports redb. This file holds the engine (tables, the handle that reopens after
//! I/O errors, group-committed writes, reads and helpers); each role of the store is
//! implemented in a file of its own below it.

mod audit;
mod codes;
mod consents;
mod directory;
mod keys;
mod outbox;
mod registry;
mod sessions;
mod tokens;
mod upkeep;

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, TableHandle, WriteTransaction,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::commit::GroupCommit;
use super::{
    AuditLog, Codes, Consents, Consumed, Directory, Issued, Outbox, Registry, Result,
    SCHEMA_VERSION, Sessions, SigningKeys, StoreError, TokenContext, Tokens, Upkeep,
};
use crate::model::{
    AuditEvent, AuthCode, Client, Consent, DeviceGrant, Grant, Group, KeyRecord, OutboxMail,
    RefreshToken, Session, User,
};

type Table = TableDefinition<'static, &'static str, &'static [u8]>;

const USERS: Table = TableDefinition::new("users");
const USERNAMES: Table = TableDefinition::new("usernames");
const GROUPS: Table = TableDefinition::new("groups");
const CLIENTS: Table = TableDefinition::new("clients");
const CODES: Table = TableDefinition::new("codes");
const SESSIONS: Table = TableDefinition::new("sessions");
const CONSENTS: Table = TableDefinition::new("consents");
const GRANTS: Table = TableDefinition::new("grants");
/// Schema 2 kept a record per access token here; schema 3 drops the table.
const LEGACY_ACCESS_TOKENS: Table = TableDefinition::new("access_tokens");
/// Access tokens revoked one by one (RFC 7009): jti → when the token expires.
const REVOKED_ACCESS: Table = TableDefinition::new("revoked_access_tokens");
const REFRESH_TOKENS: Table = TableDefinition::new("refresh_tokens");
const KEYS: Table = TableDefinition::new("keys");
const META: Table = TableDefinition::new("meta");
const DEVICES: Table = TableDefinition::new("device_codes");
const USER_CODES: Table = TableDefinition::new("user_codes");
const ASSERTIONS: Table = TableDefinition::new("assertion_jtis");
/// Mail waiting to be sent, one per user and kind (added without a schema change: an
/// older binary ignores it).
const OUTBOX: Table = TableDefinition::new("outbox");
const AUDIT: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("audit");

const ALL: [Table; 16] = [
    USERS,
    USERNAMES,
    GROUPS,
    CLIENTS,
    CODES,
    SESSIONS,
    CONSENTS,
    GRANTS,
    REVOKED_ACCESS,
    REFRESH_TOKENS,
    KEYS,
    META,
    DEVICES,
    USER_CODES,
    ASSERTIONS,
    OUTBOX,
];

/// Used codes stay this long past expiry so a late replay is still recognised and
/// revokes the grant (OIDC conformance replays after 30 s).
const CODE_REPLAY_WINDOW: i64 = 300;

/// Maps a redb error. I/O failures (a full disk, a failing device) are `Unavailable`: the
/// request may succeed later, and the handle that saw them is replaced (see `after`).
fn backend<E: Into<redb::Error>>(e: E) -> StoreError {
    match e.into() {
        // redb reports a damaged file as InvalidData: no retry will help that.
        redb::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            StoreError::Backend(format!("damaged data: {io}"))
        }
        redb::Error::Io(io) => StoreError::Unavailable(io.to_string()),
        redb::Error::PreviousIo => {
            StoreError::Unavailable("an earlier I/O error on this handle".into())
        }
        other => StoreError::Backend(other.to_string()),
    }
}

/// A stored value that does not decode, or a value that does not encode.
fn invalid(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(invalid)
}

/// redb's page cache. Its default (1 GiB) would let a busy server grow far past what a
/// small machine should give an OP; pages beyond this come from the OS page cache.
const CACHE_BYTES: usize = 8 * 1024 * 1024;

/// Audit events wait in memory for the next write transaction (or a read of the log)
/// instead of costing a commit each; past this many, they are written on their own.
const AUDIT_QUEUE_MAX: usize = 256;

/// Opens the file. redb panics on some damaged files instead of returning an error: a
/// damaged file must be a clear error, never a crash.
fn open_database(path: &Path) -> Result<Database> {
    let opened =
        crate::panic::contained(|| Database::builder().set_cache_size(CACHE_BYTES).create(path))
            .ok_or_else(|| {
                StoreError::Backend("the file is damaged (truncated or overwritten)".into())
            })?;
    opened.map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked,
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::WouldBlock =>
        {
            StoreError::Locked
        }
        redb::DatabaseError::Storage(s) => backend(s),
        other => StoreError::Backend(other.to_string()),
    })
}

/// While the handle is being replaced after an I/O error.
fn reopening() -> StoreError {
    StoreError::Unavailable("the database is being reopened".into())
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    serde_json::from_slice(b).map_err(|e| StoreError::Backend(format!("undecodable record: {e}")))
}

/// Shortest time between two attempts to reopen the file after an I/O error.
const REOPEN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

pub struct RedbStore {
    path: PathBuf,
    last_reopen: std::sync::Mutex<Option<std::time::Instant>>,
    /// `None` after an I/O failure. redb refuses every later operation on a handle that saw
    /// one, reads included, so the handle is dropped and the file reopened on next use:
    /// reads work again at once and writes as soon as the disk has room.
    db: RwLock<Option<Arc<Handle>>>,
    /// Encoded audit events not yet written (see `AUDIT_QUEUE_MAX`). Like other
    /// non-durable records, a crash may lose them.
    audit_queue: std::sync::Mutex<Vec<Vec<u8>>>,
}

/// An open file with its group commit. A batch belongs to one handle: commits made on a
/// handle that is then dropped are only made durable by that handle's flush (which fails),
/// never by a flush on the reopened file, which no longer has them.
struct Handle {
    db: Database,
    group: GroupCommit,
    /// Durable writes under way: while there are any, a flush may hold the write lock.
    durable_writes: std::sync::atomic::AtomicUsize,
}

impl std::ops::Deref for Handle {
    type Target = Database;
    fn deref(&self) -> &Database {
        &self.db
    }
}

impl Handle {
    fn new(db: Database) -> Arc<Handle> {
        Arc::new(Handle {
            db,
            group: GroupCommit::default(),
            durable_writes: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Makes every commit so far durable, sharing the fsync with concurrent callers.
    fn flush(&self) -> Result<()> {
        self.group.wait_durable(|| {
            let mut clock = SlowWrite::start(std::panic::Location::caller());
            let mut tx = self.db.begin_write().map_err(backend)?;
            clock.lap(0);
            tx.set_durability(Durability::Immediate).map_err(invalid)?;
            tx.commit().map_err(backend)?;
            clock.lap(3);
            clock.report();
            Ok(())
        })
    }
}

/// A write slower than this is reported (at most once a second), with where its time
/// went: an operator's first clue when the disk or the file is the bottleneck.
const SLOW_WRITE: std::time::Duration = std::time::Duration::from_millis(100);

/// When the last slow write was reported, in ms since the epoch (0: never).
static SLOW_REPORTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The phases of one write: waiting for the write lock, the work, the commit, the flush.
struct SlowWrite {
    caller: &'static std::panic::Location<'static>,
    started: std::time::Instant,
    last: std::time::Instant,
    phases: [std::time::Duration; 4],
}

impl SlowWrite {
    fn start(caller: &'static std::panic::Location<'static>) -> SlowWrite {
        let now = std::time::Instant::now();
        SlowWrite {
            caller,
            started: now,
            last: now,
            phases: [std::time::Duration::ZERO; 4],
        }
    }

    fn lap(&mut self, phase: usize) {
        let now = std::time::Instant::now();
        self.phases[phase] = now - self.last;
        self.last = now;
    }

    fn report(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.started.elapsed() < SLOW_WRITE {
            return;
        }
        let now_ms = crate::clock::now_ms().max(0) as u64;
        let last = SLOW_REPORTED.load(Relaxed);
        if now_ms < last + 1_000
            || SLOW_REPORTED
                .compare_exchange(last, now_ms, Relaxed, Relaxed)
                .is_err()
        {
            return;
        }
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        tracing::warn!(
            at = %self.caller,
            lock_wait_ms = ms(self.phases[0]),
            work_ms = ms(self.phases[1]),
            commit_ms = ms(self.phases[2]),
            flush_ms = ms(self.phases[3]),
            "slow store write"
        );
    }
}

/// Counts a durable write under way until it is dropped.
struct DurableWrite<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for DurableWrite<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Runs storage work. When it may wait for a flush, on a multi-threaded tokio runtime
/// the worker thread is handed over first, so the other requests on that worker go on.
/// A write that will not wait takes tens of microseconds, less than the hand-over
/// costs, and runs in place.
fn blocking<R>(may_wait: bool, f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) if may_wait && rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl RedbStore {
    /// Opens (or creates) the database file, creating every table and checking the
    /// schema version.
    pub fn open(path: &Path) -> Result<RedbStore> {
        let db = open_database(path)?;
        let store = RedbStore {
            path: path.to_path_buf(),
            last_reopen: std::sync::Mutex::new(None),
            db: RwLock::new(Some(Handle::new(db))),
            audit_queue: std::sync::Mutex::new(Vec::new()),
        };
        store.write(true, |tx| {
            for t in ALL {
                tx.open_table(t).map_err(backend)?;
            }
            tx.open_table(AUDIT).map_err(backend)?;
                        let mut meta = tx.open_table(META).map_err(backend)?;
            let found = meta.get("schema_version").map_err(backend)?.map(|v| String::from_utf8_lossy(v.value()).into_owned());
            let version = match found {
                None => SCHEMA_VERSION,
                Some(v) => v.parse::<u32>().map_err(|_| StoreError::Schema(format!("unreadable schema version {v:?}")))?,
            };
            if version > SCHEMA_VERSION {
                // The transaction is dropped uncommitted: nothing in the newer file changes.
                return Err(StoreError::Schema(format!(
                    "the database was written by a newer Latchkey (schema {version}); this build reads up to \
                     schema {SCHEMA_VERSION}: upgrade Latchkey, or restore a backup made by this version"
                )));
            }
            // Migrations. 1 → 2 only adds tables, which the loop above has created.
            // 2 → 3: access tokens keep no record; the old records go. A person's access
            // token issued before the upgrade names no grant and is refused from now on
            // (refresh tokens keep working, so relying parties get new ones by refreshing);
            // a client's own token stays good unless it was revoked, which the revocation
            // list takes over.
            if version < 3 {
                migrate_revoked_access_tokens(tx)?;
                tx.delete_table(LEGACY_ACCESS_TOKENS).map_err(backend)?;
            }
            // 3 → 4: grants carry how long they are kept.
            if version < 4 {
                migrate_grant_keep_until(tx)?;
            }
            if version < SCHEMA_VERSION {
                tracing::info!(from = version, to = SCHEMA_VERSION, "database schema migrated");
            }
            meta.insert("schema_version", SCHEMA_VERSION.to_string().as_bytes()).map_err(backend)?;
            Ok(())
        })?;
        Ok(store)
    }

    /// The open handle, reopening the file after an I/O failure. Reopening runs redb's
    /// repair (the failed handle could not mark the file clean), so it is tried at most
    /// once per `REOPEN_INTERVAL`. In between, writers get `Unavailable` at once and
    /// readers wait for the next attempt (at most that interval), so reads keep working
    /// while writes fail.
    fn handle(&self, wait: bool) -> Result<Arc<Handle>> {
        loop {
            if let Some(db) = self
                .db
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
            {
                return Ok(db.clone());
            }
            let since = self
                .last_reopen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .map(|t| t.elapsed());
            match since {
                Some(s) if s < REOPEN_INTERVAL && wait => std::thread::sleep(REOPEN_INTERVAL - s),
                Some(s) if s < REOPEN_INTERVAL => return Err(reopening()),
                _ => return self.reopen(),
            }
        }
    }

    fn reopen(&self) -> Result<Arc<Handle>> {
        let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(db) = slot.as_ref() {
            return Ok(db.clone());
        }
        let mut last = self
            .last_reopen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Checked again under the lock: another caller may have just tried.
        if last.is_some_and(|t| t.elapsed() < REOPEN_INTERVAL) {
            return Err(reopening());
        }
        *last = Some(std::time::Instant::now());
        let db = open_database(&self.path).map_err(|e| {
            tracing::error!(path = %self.path.display(), error = %e, "storage reopen failed");
            match e {
                // Transactions still running on the old handle hold the file lock a moment.
                StoreError::Locked => reopening(),
                other => other,
            }
        })?;
        let db = Handle::new(db);
        *slot = Some(db.clone());
        tracing::warn!(path = %self.path.display(), "storage reopened after an I/O error");
        Ok(db)
    }

    /// Drops `used` when an operation on it failed on I/O, so the next operation starts on
    /// a fresh handle. Only that handle: one that another request has reopened since stays.
    fn after<R>(&self, used: &Arc<Handle>, r: Result<R>) -> Result<R> {
        if let Err(StoreError::Unavailable(m)) = &r {
            let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
            if slot.as_ref().is_some_and(|db| Arc::ptr_eq(db, used)) {
                *slot = None;
                tracing::error!(
                    path = %self.path.display(),
                    error = %m,
                    "storage I/O failed (disk full or failing?): requests that change state get 503 until writing works again"
                );
            }
        }
        r
    }

    /// One write transaction. It commits without an fsync; a `durable` write then waits
    /// for the group commit, so it returns only once it is on disk (see `commit.rs`).
    #[track_caller]
    fn write<R>(&self, durable: bool, f: impl FnOnce(&WriteTransaction) -> Result<R>) -> Result<R> {
        use std::sync::atomic::Ordering::SeqCst;
        let caller = std::panic::Location::caller();
        let db = self.handle(false)?;
        // A write that may wait (for a flush, or behind one holding the write lock) leaves
        // its tokio worker first; the others are shorter than the hand-over.
        let may_wait = durable || db.durable_writes.load(SeqCst) > 0 || db.group.flushing();
        if durable {
            db.durable_writes.fetch_add(1, SeqCst);
        }
        let _done = durable.then(|| DurableWrite(&db.durable_writes));
        blocking(may_wait, || {
            let run = || {
                let mut clock = SlowWrite::start(caller);
                let mut tx = db.begin_write().map_err(backend)?;
                clock.lap(0);
                tx.set_durability(Durability::None).map_err(invalid)?;
                let out = f(&tx)?;
                self.write_queued_audit(&tx)?;
                clock.lap(1);
                tx.commit().map_err(backend)?;
                clock.lap(2);
                if durable {
                    db.flush()?;
                    clock.lap(3);
                }
                clock.report();
                Ok(out)
            };
            self.after(&db, run())
        })
    }

    /// Moves the queued audit events into `tx`.
    fn write_queued_audit(&self, tx: &WriteTransaction) -> Result<()> {
        let queued = std::mem::take(
            &mut *self
                .audit_queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        if queued.is_empty() {
            return Ok(());
        }
        let mut t = tx.open_table(AUDIT).map_err(backend)?;
        let first = t
            .last()
            .map_err(backend)?
            .map(|(k, _)| k.value() + 1)
            .unwrap_or(1);
        for (key, bytes) in (first..).zip(&queued) {
            t.insert(key, bytes.as_slice()).map_err(backend)?;
        }
        Ok(())
    }

    /// Writes queued audit events now (before the log is read or copied).
    fn flush_audit(&self, durable: bool) -> Result<()> {
        let empty = self
            .audit_queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty();
        if empty {
            Ok(())
        } else {
            self.write(durable, |_| Ok(()))
        }
    }

    /// A read transaction; tried once more on a fresh handle if this one had failed on I/O
    /// (reads never change anything, so the retry is harmless).
    fn read<R>(&self, f: impl Fn(&ReadTransaction) -> Result<R>) -> Result<R> {
        let run = || {
            let db = self.handle(true)?;
            let r = db.begin_read().map_err(backend).and_then(|tx| f(&tx));
            self.after(&db, r)
        };
        match run() {
            Err(StoreError::Unavailable(_)) => run(),
            other => other,
        }
    }

    fn get<T: DeserializeOwned>(&self, t: Table, key: &str) -> Result<Option<T>> {
        self.read(|tx| {
            let table = tx.open_table(t).map_err(backend)?;
            let v = table.get(key).map_err(backend)?;
            v.map(|g| decode(g.value())).transpose()
        })
    }

    #[track_caller]
    fn put<T: Serialize>(&self, t: Table, key: &str, v: &T, durable: bool) -> Result<()> {
        let bytes = encode(v)?;
        self.write(durable, |tx| {
            tx.open_table(t)
                .map_err(backend)?
                .insert(key, bytes.as_slice())
                .map_err(backend)?;
            Ok(())
        })
    }

    #[track_caller]
    fn remove(&self, t: Table, key: &str, durable: bool) -> Result<bool> {
        self.write(durable, |tx| {
            Ok(tx
                .open_table(t)
                .map_err(backend)?
                .remove(key)
                .map_err(backend)?
                .is_some())
        })
    }

    fn list<T: DeserializeOwned>(&self, t: Table) -> Result<Vec<T>> {
        self.read(|tx| {
            let table = tx.open_table(t).map_err(backend)?;
            let mut out = Vec::new();
            for item in table.iter().map_err(backend)? {
                let (_, v) = item.map_err(backend)?;
                out.push(decode(v.value())?);
            }
            Ok(out)
        })
    }

    /// Every record of a table with its key.
    fn list_keyed<T: DeserializeOwned>(&self, t: Table) -> Result<Vec<(String, T)>> {
        self.read(|tx| {
            let table = tx.open_table(t).map_err(backend)?;
            let mut out = Vec::new();
            for item in table.iter().map_err(backend)? {
                let (k, v) = item.map_err(backend)?;
                out.push((k.value().to_string(), decode(v.value())?));
            }
            Ok(out)
        })
    }

    /// Number of records in a table (for tests and metrics).
    pub fn count(&self, name: &str) -> Result<u64> {
        let t = ALL
            .into_iter()
            .find(|t| t.name() == name)
            .ok_or_else(|| invalid("no such table"))?;
        self.read(|tx| tx.open_table(t).map_err(backend)?.len().map_err(backend))
    }
}

impl Drop for RedbStore {
    /// A management command's audit event must not leave with the process.
    fn drop(&mut self) {
        if let Err(e) = self.flush_audit(true) {
            tracing::warn!(error = %e, "could not write the last audit events");
        }
    }
}

impl RedbStore {
    /// Removes the records of `t` for which `doomed` holds: found in read snapshots (no
    /// lock), at most `PURGE_BATCH` at a time, each batch removed in its own transaction
    /// with every record checked again. Memory stays at one batch of keys.
    fn purge<T: DeserializeOwned>(&self, t: Table, doomed: impl Fn(&T) -> bool) -> Result<usize> {
        let mut n = 0;
        let mut after: Option<String> = None;
        loop {
            let (keys, last) = self.read(|tx| {
                let table = tx.open_table(t).map_err(backend)?;
                let mut range = match after.as_deref() {
                    Some(a) => table.range(a..).map_err(backend)?,
                    None => table.iter().map_err(backend)?,
                };
                let mut keys = Vec::new();
                let mut last = None;
                for item in range.by_ref() {
                    let (k, v) = item.map_err(backend)?;
                    let key = k.value();
                    if after.as_deref() == Some(key) {
                        continue;
                    }
                    last = Some(key.to_string());
                    // An undecodable record is left for an operator to look at.
                    if decode::<T>(v.value()).is_ok_and(|r| doomed(&r)) {
                        keys.push(key.to_string());
                        if keys.len() == PURGE_BATCH {
                            break;
                        }
                    }
                }
                Ok((keys, last))
            })?;
            n += self.remove_batched(t, &keys, &doomed)?;
            match last {
                Some(l) if keys.len() == PURGE_BATCH => {
                    after = Some(l);
                    std::thread::sleep(PURGE_PAUSE);
                }
                _ => return Ok(n),
            }
        }
    }

    fn remove_batched<T: DeserializeOwned>(
        &self,
        t: Table,
        keys: &[String],
        doomed: impl Fn(&T) -> bool,
    ) -> Result<usize> {
        let mut n = 0;
        for (i, batch) in keys.chunks(PURGE_BATCH).enumerate() {
            if i > 0 {
                std::thread::sleep(PURGE_PAUSE);
            }
            n += self.write(false, |tx| {
                let mut table = tx.open_table(t).map_err(backend)?;
                let mut removed = 0;
                for k in batch {
                    let still = table
                        .get(k.as_str())
                        .map_err(backend)?
                        .is_some_and(|v| decode::<T>(v.value()).is_ok_and(|r| doomed(&r)));
                    if still {
                        table.remove(k.as_str()).map_err(backend)?;
                        removed += 1;
                    }
                }
                Ok(removed)
            })?;
        }
        Ok(n)
    }

    /// Marks every live grant matching `pick` revoked, in one durable transaction.
    fn revoke_grants_where(&self, pick: impl Fn(&Grant) -> bool) -> Result<usize> {
        self.write(true, |tx| tx_revoke_grants_where(tx, &pick))
    }
}

/// Marks every live grant `pick` chooses revoked; returns how many.
fn tx_revoke_grants_where(tx: &WriteTransaction, pick: impl Fn(&Grant) -> bool) -> Result<usize> {
    let mut live = Vec::new();
    {
        let table = tx.open_table(GRANTS).map_err(backend)?;
        for item in table.iter().map_err(backend)? {
            let (_, v) = item.map_err(backend)?;
            if let Ok(g) = decode::<Grant>(v.value())
                && !g.revoked
                && pick(&g)
            {
                live.push(g);
            }
        }
    }
    for g in &mut live {
        g.revoked = true;
        tx_put(tx, GRANTS, &g.grant_id, &*g)?;
    }
    Ok(live.len())
}

/// Schema 3 → 4: each grant learns how long it is kept (`keep_until`) from the codes and
/// refresh tokens that refer to it, so the purge no longer needs to look at those.
fn migrate_grant_keep_until(tx: &WriteTransaction) -> Result<()> {
    let mut until = std::collections::HashMap::<String, i64>::new();
    let mut refer = |grant_id: String, t: i64| {
        let e = until.entry(grant_id).or_insert(t);
        *e = (*e).max(t);
    };
    {
        let codes = tx.open_table(CODES).map_err(backend)?;
        for item in codes.iter().map_err(backend)? {
            let (_, v) = item.map_err(backend)?;
            if let Ok(c) = decode::<AuthCode>(v.value()) {
                refer(c.grant_id, c.expires_at + CODE_REPLAY_WINDOW);
            }
        }
        let refresh = tx.open_table(REFRESH_TOKENS).map_err(backend)?;
        for item in refresh.iter().map_err(backend)? {
            let (_, v) = item.map_err(backend)?;
            if let Ok(r) = decode::<RefreshToken>(v.value()) {
                let end = refresh_end(&r);
                refer(r.grant_id, end);
            }
        }
    }
    tx_update_all::<Grant>(tx, GRANTS, |g| {
        let keep = kept_until(g, until.get(&g.grant_id).copied().unwrap_or(0));
        let changed = keep != g.keep_until;
        g.keep_until = keep;
        changed
    })?;
    Ok(())
}

/// Schema 2 → 3: the access tokens revoked one by one move to the revocation list (the
/// purge drops those already expired).
fn migrate_revoked_access_tokens(tx: &WriteTransaction) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Legacy {
        expires_at: i64,
        #[serde(default)]
        revoked: bool,
    }
    let mut revoked = Vec::new();
    {
        let table = tx.open_table(LEGACY_ACCESS_TOKENS).map_err(backend)?;
        for item in table.iter().map_err(backend)? {
            let (k, v) = item.map_err(backend)?;
            if let Ok(a) = decode::<Legacy>(v.value())
                && a.revoked
            {
                revoked.push((k.value().to_string(), a.expires_at));
            }
        }
    }
    for (jti, exp) in revoked {
        tx_put(tx, REVOKED_ACCESS, &jti, &exp)?;
    }
    Ok(())
}

/// Stores a grant with its first refresh token. The grant is kept (`keep_until`) at
/// least until its access tokens and that refresh token expire, and until `also` (the
/// replay window of the code or device code it came from): the purge then needs no
/// look at what refers to it.
fn put_issued(tx: &WriteTransaction, i: &Issued<'_>, also: i64) -> Result<()> {
    let until = i.refresh.map_or(0, |(_, rt)| refresh_end(rt)).max(also);
    let grant = Grant {
        keep_until: kept_until(i.grant, until),
        ..i.grant.clone()
    };
    tx_put(tx, GRANTS, &grant.grant_id, &grant)?;
    if let Some((rt_hash, rt)) = i.refresh {
        tx_put(tx, REFRESH_TOKENS, rt_hash, rt)?;
    }
    Ok(())
}

/// When a refresh token ends: its idle expiry, never past the family's absolute one.
fn refresh_end(rt: &RefreshToken) -> i64 {
    rt.expires_at.min(rt.absolute_expires_at)
}

/// How long `g` must be kept once something new that lasts until `until` refers to it.
fn kept_until(g: &Grant, until: i64) -> i64 {
    g.keep_until.max(g.tokens_until).max(until)
}

fn consent_key(user_id: &str, client_id: &str) -> String {
    format!("{user_id}\u{0}{client_id}")
}

fn tx_get<T: DeserializeOwned>(tx: &WriteTransaction, t: Table, key: &str) -> Result<Option<T>> {
    let table = tx.open_table(t).map_err(backend)?;
    let v = table.get(key).map_err(backend)?;
    v.map(|g| decode(g.value())).transpose()
}

fn tx_put<T: Serialize>(tx: &WriteTransaction, t: Table, key: &str, v: &T) -> Result<()> {
    let bytes = encode(v)?;
    tx.open_table(t)
        .map_err(backend)?
        .insert(key, bytes.as_slice())
        .map_err(backend)?;
    Ok(())
}

/// Rewrites every decodable record of a table that `edit` changes (returns `true` for);
/// returns how many.
fn tx_update_all<T: DeserializeOwned + Serialize>(
    tx: &WriteTransaction,
    t: Table,
    mut edit: impl FnMut(&mut T) -> bool,
) -> Result<usize> {
    let mut changed = Vec::new();
    {
        let table = tx.open_table(t).map_err(backend)?;
        for item in table.iter().map_err(backend)? {
            let (k, v) = item.map_err(backend)?;
            if let Ok(mut rec) = decode::<T>(v.value())
                && edit(&mut rec)
            {
                changed.push((k.value().to_string(), rec));
            }
        }
    }
    for (k, rec) in &changed {
        tx_put(tx, t, k, rec)?;
    }
    Ok(changed.len())
}

/// Records removed per transaction by the background purge: each holds the write lock
/// and memory only briefly, however much has expired.
const PURGE_BATCH: usize = 250;
/// The purge's pause between two batches, so that requests waiting for the write lock
/// go first (the purge runs on the maintenance thread, never on a request's).
const PURGE_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);

/// Removes every record of a table for which `drop` says so; returns how many.
fn tx_retain<T: DeserializeOwned>(
    tx: &WriteTransaction,
    t: Table,
    mut drop: impl FnMut(&str, &T) -> bool,
) -> Result<usize> {
    let mut table = tx.open_table(t).map_err(backend)?;
    let mut doomed = Vec::new();
    for item in table.iter().map_err(backend)? {
        let (k, v) = item.map_err(backend)?;
        // An undecodable record is left for an operator to look at, never silently removed.
        if let Ok(rec) = decode::<T>(v.value())
            && drop(k.value(), &rec)
        {
            doomed.push(k.value().to_string());
        }
    }
    for k in &doomed {
        table.remove(k.as_str()).map_err(backend)?;
    }
    Ok(doomed.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_failures_are_temporary_but_damage_is_not() {
        let full = redb::StorageError::Io(std::io::Error::from_raw_os_error(28));
        assert!(matches!(backend(full), StoreError::Unavailable(_)));
        assert!(matches!(
            backend(redb::StorageError::PreviousIo),
            StoreError::Unavailable(_)
        ));
        let damaged = redb::StorageError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "checksum",
        ));
        assert!(matches!(backend(damaged), StoreError::Backend(_)));
    }
}
