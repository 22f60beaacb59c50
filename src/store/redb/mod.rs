//! The redb engine: one file, tables of JSON values keyed by strings. The only module
//! that imports redb. This file holds the engine (the handle that reopens after I/O
//! errors, group-committed writes, reads, schema migrations); the roles are written once
//! over any engine in `store::kv`, the audit log and backups are in files of their own
//! below.

mod audit;
mod upkeep;

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, WriteTransaction,
};

use super::commit::GroupCommit;
use super::kv::{
    ALL, CODE_REPLAY_WINDOW, CODES, Engine, GRANTS, META, PURGE_BATCH, PURGE_PAUSE, REFRESH_TOKENS,
    REVOKED_ACCESS, Reader, Table, Writer, decode, encode, invalid, kept_until, refresh_end,
    tx_put, tx_update_all,
};
use super::{AuditLog, Result, SCHEMA_VERSION, StoreError};
use crate::model::{AuditEvent, AuthCode, Grant, RefreshToken};

type Def = TableDefinition<'static, &'static str, &'static [u8]>;

/// The redb table of a keyed table.
fn def(t: Table) -> Def {
    TableDefinition::new(t)
}

/// Schema 2 kept a record per access token here; schema 3 drops the table.
const LEGACY_ACCESS_TOKENS: Table = "access_tokens";
const AUDIT: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("audit");

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
        store.write_tx(true, |tx| {
            for t in ALL {
                tx.open_table(def(t)).map_err(backend)?;
            }
            tx.open_table(AUDIT).map_err(backend)?;
            let w = Tx(tx);
            let found = w
                .get(META, "schema_version")?
                .map(|v| String::from_utf8_lossy(&v).into_owned());
            let version = match found {
                None => SCHEMA_VERSION,
                Some(v) => v
                    .parse::<u32>()
                    .map_err(|_| StoreError::Schema(format!("unreadable schema version {v:?}")))?,
            };
            if version > SCHEMA_VERSION {
                // The transaction is dropped uncommitted: nothing in the newer file changes.
                return Err(StoreError::Schema(format!(
                    "the database was written by a newer Latchkey (schema {version}); this \
                     build reads up to schema {SCHEMA_VERSION}: upgrade Latchkey, or restore \
                     a backup made by this version"
                )));
            }
            // Migrations. 1 → 2 only adds tables, which the loop above has created.
            // 2 → 3: access tokens keep no record; the old records go. A person's access
            // token issued before the upgrade names no grant and is refused from now on
            // (refresh tokens keep working, so relying parties get new ones by refreshing);
            // a client's own token stays good unless it was revoked, which the revocation
            // list takes over.
            if version < 3 {
                migrate_revoked_access_tokens(&w)?;
                tx.delete_table(def(LEGACY_ACCESS_TOKENS))
                    .map_err(backend)?;
            }
            // 3 → 4: grants carry how long they are kept.
            if version < 4 {
                migrate_grant_keep_until(&w)?;
            }
            if version < SCHEMA_VERSION {
                tracing::info!(
                    from = version,
                    to = SCHEMA_VERSION,
                    "database schema migrated"
                );
            }
            w.put(
                META,
                "schema_version",
                SCHEMA_VERSION.to_string().as_bytes(),
            )
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
    fn write_tx<R>(
        &self,
        durable: bool,
        f: impl FnOnce(&WriteTransaction) -> Result<R>,
    ) -> Result<R> {
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
        super::off_runtime(may_wait, || {
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
            self.write_tx(durable, |_| Ok(()))
        }
    }

    /// A read transaction; tried once more on a fresh handle if this one had failed on I/O
    /// (reads never change anything, so the retry is harmless).
    fn read_tx<R>(&self, f: impl Fn(&ReadTransaction) -> Result<R>) -> Result<R> {
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

    /// Number of records in a table (for tests and metrics).
    pub fn count(&self, name: &str) -> Result<u64> {
        let t = ALL
            .into_iter()
            .find(|t| *t == name)
            .ok_or_else(|| invalid("no such table"))?;
        self.read_tx(|tx| {
            tx.open_table(def(t))
                .map_err(backend)?
                .len()
                .map_err(backend)
        })
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

impl Engine for RedbStore {
    #[track_caller]
    fn write<R>(&self, durable: bool, mut f: impl FnMut(&dyn Writer) -> Result<R>) -> Result<R> {
        // redb has one writer at a time: a transaction never conflicts and runs once.
        self.write_tx(durable, |tx| f(&Tx(tx)))
    }

    fn read<R>(&self, f: impl Fn(&dyn Reader) -> Result<R>) -> Result<R> {
        self.read_tx(|tx| f(&Snapshot(tx)))
    }

    fn backup(&self, path: &Path) -> Result<()> {
        self.backup_file(path)
    }
}

/// A write transaction as the roles see it.
struct Tx<'a>(&'a WriteTransaction);

/// A read transaction as the roles see it.
struct Snapshot<'a>(&'a ReadTransaction);

/// The value of `key` in `table`.
fn get_in(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<Vec<u8>>> {
    let v = table.get(key).map_err(backend)?;
    Ok(v.map(|g| g.value().to_vec()))
}

/// Calls `each` on the records of `table` after `after`, in key order, until it says stop.
fn scan_table(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    after: Option<&str>,
    each: &mut dyn FnMut(&str, &[u8]) -> Result<bool>,
) -> Result<()> {
    let range = match after {
        Some(a) => table.range(a..).map_err(backend)?,
        None => table.range::<&str>(..).map_err(backend)?,
    };
    for item in range {
        let (k, v) = item.map_err(backend)?;
        if after == Some(k.value()) {
            continue;
        }
        if !each(k.value(), v.value())? {
            break;
        }
    }
    Ok(())
}

/// Reads through a write or a read transaction alike.
macro_rules! reader {
    ($t:ident) => {
        impl Reader for $t<'_> {
            fn get(&self, t: Table, key: &str) -> Result<Option<Vec<u8>>> {
                get_in(&self.0.open_table(def(t)).map_err(backend)?, key)
            }

            fn scan(
                &self,
                t: Table,
                after: Option<&str>,
                each: &mut dyn FnMut(&str, &[u8]) -> Result<bool>,
            ) -> Result<()> {
                scan_table(&self.0.open_table(def(t)).map_err(backend)?, after, each)
            }
        }
    };
}

reader!(Tx);
reader!(Snapshot);

impl Writer for Tx<'_> {
    fn put(&self, t: Table, key: &str, value: &[u8]) -> Result<()> {
        self.0
            .open_table(def(t))
            .map_err(backend)?
            .insert(key, value)
            .map_err(backend)?;
        Ok(())
    }

    fn remove(&self, t: Table, key: &str) -> Result<bool> {
        Ok(self
            .0
            .open_table(def(t))
            .map_err(backend)?
            .remove(key)
            .map_err(backend)?
            .is_some())
    }
}

/// Schema 3 → 4: each grant learns how long it is kept (`keep_until`) from the codes and
/// refresh tokens that refer to it, so the purge no longer needs to look at those.
fn migrate_grant_keep_until(tx: &dyn Writer) -> Result<()> {
    let mut until = std::collections::HashMap::<String, i64>::new();
    let mut refer = |grant_id: String, t: i64| {
        let e = until.entry(grant_id).or_insert(t);
        *e = (*e).max(t);
    };
    tx.scan(CODES, None, &mut |_, v| {
        if let Ok(c) = decode::<AuthCode>(v) {
            refer(c.grant_id, c.expires_at + CODE_REPLAY_WINDOW);
        }
        Ok(true)
    })?;
    tx.scan(REFRESH_TOKENS, None, &mut |_, v| {
        if let Ok(r) = decode::<RefreshToken>(v) {
            let end = refresh_end(&r);
            refer(r.grant_id, end);
        }
        Ok(true)
    })?;
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
fn migrate_revoked_access_tokens(tx: &dyn Writer) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Legacy {
        expires_at: i64,
        #[serde(default)]
        revoked: bool,
    }
    let mut revoked = Vec::new();
    tx.scan(LEGACY_ACCESS_TOKENS, None, &mut |k, v| {
        if let Ok(a) = decode::<Legacy>(v)
            && a.revoked
        {
            revoked.push((k.to_string(), a.expires_at));
        }
        Ok(true)
    })?;
    for (jti, exp) in revoked {
        tx_put(tx, REVOKED_ACCESS, &jti, &exp)?;
    }
    Ok(())
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
