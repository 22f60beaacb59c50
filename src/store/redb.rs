//! The redb backend: one file, tables of JSON values keyed by strings. The only module
//! that imports redb.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, TableHandle, WriteTransaction,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::commit::GroupCommit;
use super::{Consumed, Issued, Result, SCHEMA_VERSION, Store, StoreError, TokenContext};
use crate::model::{
    AccessTokenRecord, AuditEvent, AuthCode, Client, Consent, DeviceGrant, Grant, Group, KeyRecord,
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
const ACCESS_TOKENS: Table = TableDefinition::new("access_tokens");
const REFRESH_TOKENS: Table = TableDefinition::new("refresh_tokens");
const KEYS: Table = TableDefinition::new("keys");
const META: Table = TableDefinition::new("meta");
const DEVICES: Table = TableDefinition::new("device_codes");
const USER_CODES: Table = TableDefinition::new("user_codes");
const ASSERTIONS: Table = TableDefinition::new("assertion_jtis");
const AUDIT: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("audit");

const ALL: [Table; 15] = [
    USERS,
    USERNAMES,
    GROUPS,
    CLIENTS,
    CODES,
    SESSIONS,
    CONSENTS,
    GRANTS,
    ACCESS_TOKENS,
    REFRESH_TOKENS,
    KEYS,
    META,
    DEVICES,
    USER_CODES,
    ASSERTIONS,
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
            let mut tx = self.db.begin_write().map_err(backend)?;
            tx.set_durability(Durability::Immediate).map_err(invalid)?;
            tx.commit().map_err(backend)
        })
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
    fn write<R>(&self, durable: bool, f: impl FnOnce(&WriteTransaction) -> Result<R>) -> Result<R> {
        use std::sync::atomic::Ordering::SeqCst;
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
                let mut tx = db.begin_write().map_err(backend)?;
                tx.set_durability(Durability::None).map_err(invalid)?;
                let out = f(&tx)?;
                self.write_queued_audit(&tx)?;
                tx.commit().map_err(backend)?;
                if durable {
                    db.flush()?;
                }
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
                Some(l) if keys.len() == PURGE_BATCH => after = Some(l),
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
        for batch in keys.chunks(PURGE_BATCH) {
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

fn put_issued(tx: &WriteTransaction, i: &Issued<'_>) -> Result<()> {
    tx_put(tx, GRANTS, &i.grant.grant_id, i.grant)?;
    tx_put(tx, ACCESS_TOKENS, i.access_jti, i.access)?;
    if let Some((rt_hash, rt)) = i.refresh {
        tx_put(tx, REFRESH_TOKENS, rt_hash, rt)?;
    }
    Ok(())
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

/// Calls `f` with every decodable record of a table, in a read snapshot.
fn read_visit<T: DeserializeOwned>(
    tx: &ReadTransaction,
    t: Table,
    mut f: impl FnMut(T),
) -> Result<()> {
    let table = tx.open_table(t).map_err(backend)?;
    for item in table.iter().map_err(backend)? {
        let (_, v) = item.map_err(backend)?;
        if let Ok(rec) = decode::<T>(v.value()) {
            f(rec);
        }
    }
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
const PURGE_BATCH: usize = 1000;

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

impl Store for RedbStore {
    fn create_user(&self, u: &User) -> Result<()> {
        self.write(true, |tx| {
            let key = u.username.to_lowercase();
            if tx_get::<String>(tx, USERNAMES, &key)?.is_some() {
                return Err(StoreError::Conflict(format!(
                    "username: {:?} is taken",
                    u.username
                )));
            }
            tx_put(tx, USERNAMES, &key, &u.id)?;
            tx_put(tx, USERS, &u.id, u)
        })
    }

    fn update_user(&self, u: &User) -> Result<()> {
        self.write(true, |tx| {
            let old: Option<User> = tx_get(tx, USERS, &u.id)?;
            let new_key = u.username.to_lowercase();
            if let Some(old) = old {
                let old_key = old.username.to_lowercase();
                if old_key != new_key {
                    if tx_get::<String>(tx, USERNAMES, &new_key)?.is_some() {
                        return Err(StoreError::Conflict(format!(
                            "username: {:?} is taken",
                            u.username
                        )));
                    }
                    tx.open_table(USERNAMES)
                        .map_err(backend)?
                        .remove(old_key.as_str())
                        .map_err(backend)?;
                }
            }
            tx_put(tx, USERNAMES, &new_key, &u.id)?;
            tx_put(tx, USERS, &u.id, u)
        })
    }

    fn update_user_if(&self, expected: &User, new: &User) -> Result<bool> {
        self.write(true, |tx| {
            if tx_get::<User>(tx, USERS, &expected.id)?.as_ref() != Some(expected) {
                return Ok(false);
            }
            let (old_key, new_key) = (
                expected.username.to_lowercase(),
                new.username.to_lowercase(),
            );
            if old_key != new_key {
                if tx_get::<String>(tx, USERNAMES, &new_key)?.is_some() {
                    return Err(StoreError::Conflict(format!(
                        "username: {:?} is taken",
                        new.username
                    )));
                }
                tx.open_table(USERNAMES)
                    .map_err(backend)?
                    .remove(old_key.as_str())
                    .map_err(backend)?;
                tx_put(tx, USERNAMES, &new_key, &new.id)?;
            }
            tx_put(tx, USERS, &new.id, new)?;
            Ok(true)
        })
    }

    fn user(&self, id: &str) -> Result<Option<User>> {
        self.get(USERS, id)
    }

    fn user_by_name(&self, username: &str) -> Result<Option<User>> {
        match self.get::<String>(USERNAMES, &username.to_lowercase())? {
            Some(id) => self.user(&id),
            None => Ok(None),
        }
    }

    fn any_user(&self, pred: &dyn Fn(&User) -> bool) -> Result<bool> {
        self.read(|tx| {
            let table = tx.open_table(USERS).map_err(backend)?;
            for item in table.iter().map_err(backend)? {
                let (_, v) = item.map_err(backend)?;
                if pred(&decode::<User>(v.value())?) {
                    return Ok(true);
                }
            }
            Ok(false)
        })
    }

    fn users(&self) -> Result<Vec<User>> {
        let mut v: Vec<User> = self.list(USERS)?;
        v.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(v)
    }

    fn delete_user(&self, id: &str) -> Result<bool> {
        self.write(true, |tx| {
            let Some(u) = tx_get::<User>(tx, USERS, id)? else {
                return Ok(false);
            };
            tx.open_table(USERNAMES)
                .map_err(backend)?
                .remove(u.username.to_lowercase().as_str())
                .map_err(backend)?;
            tx.open_table(USERS)
                .map_err(backend)?
                .remove(id)
                .map_err(backend)?;
            tx_retain::<Session>(tx, SESSIONS, |_, s| s.user_id == id)?;
            tx_retain::<Consent>(tx, CONSENTS, |_, c| c.user_id == id)?;
            tx_retain::<RefreshToken>(tx, REFRESH_TOKENS, |_, r| r.user_id == id)?;
            Ok(true)
        })
    }

    fn put_group(&self, g: &Group) -> Result<()> {
        self.put(GROUPS, &g.name, g, true)
    }

    fn groups(&self) -> Result<Vec<Group>> {
        self.list(GROUPS)
    }

    fn delete_group(&self, name: &str) -> Result<bool> {
        self.remove(GROUPS, name, true)
    }

    fn create_client(&self, c: &Client) -> Result<()> {
        self.write(true, |tx| {
            if tx_get::<Client>(tx, CLIENTS, &c.client_id)?.is_some() {
                return Err(StoreError::Conflict(format!(
                    "client_id: {:?} is taken",
                    c.client_id
                )));
            }
            tx_put(tx, CLIENTS, &c.client_id, c)
        })
    }

    fn update_client(&self, c: &Client) -> Result<()> {
        self.put(CLIENTS, &c.client_id, c, true)
    }

    fn update_client_if(&self, expected: &Client, new: &Client) -> Result<bool> {
        self.write(true, |tx| {
            if tx_get::<Client>(tx, CLIENTS, &expected.client_id)?.as_ref() != Some(expected) {
                return Ok(false);
            }
            tx_put(tx, CLIENTS, &new.client_id, new)?;
            Ok(true)
        })
    }

    fn client(&self, id: &str) -> Result<Option<Client>> {
        self.get(CLIENTS, id)
    }

    fn clients(&self) -> Result<Vec<Client>> {
        let mut v: Vec<Client> = self.list(CLIENTS)?;
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    fn delete_client(&self, id: &str) -> Result<bool> {
        self.write(true, |tx| {
            let existed = tx
                .open_table(CLIENTS)
                .map_err(backend)?
                .remove(id)
                .map_err(backend)?
                .is_some();
            tx_retain::<Consent>(tx, CONSENTS, |_, c| c.client_id == id)?;
            tx_retain::<RefreshToken>(tx, REFRESH_TOKENS, |_, r| r.client_id == id)?;
            Ok(existed)
        })
    }

    fn put_code(&self, hash: &str, code: &AuthCode) -> Result<()> {
        self.put(CODES, hash, code, false)
    }

    fn code(&self, hash: &str) -> Result<Option<AuthCode>> {
        self.get(CODES, hash)
    }

    fn redeem_code(&self, hash: &str, i: &Issued<'_>) -> Result<Consumed<AuthCode>> {
        // Durable: a used code must never come back (crash, or a reopen after an I/O error).
        self.write(true, |tx| {
            let Some(mut code) = tx_get::<AuthCode>(tx, CODES, hash)? else {
                return Ok(Consumed::Missing);
            };
            if code.used {
                return Ok(Consumed::Replayed(code));
            }
            code.used = true;
            tx_put(tx, CODES, hash, &code)?;
            // A grant revoked meanwhile (logout ended its front-channel tokens) stays
            // revoked: the code is spent and yields nothing.
            if tx_get::<Grant>(tx, GRANTS, &i.grant.grant_id)?.is_some_and(|g| g.revoked) {
                return Ok(Consumed::Missing);
            }
            // The session as it is now: a sign-in again may have moved it since the
            // caller read the code.
            let grant = Grant {
                session_hash: code.session_hash.clone(),
                ..i.grant.clone()
            };
            put_issued(
                tx,
                &Issued {
                    grant: &grant,
                    ..i.clone()
                },
            )?;
            Ok(Consumed::Fresh(code))
        })
    }

    fn issue_tokens(&self, i: &Issued<'_>) -> Result<()> {
        self.write(i.refresh.is_some(), |tx| put_issued(tx, i))
    }

    fn put_device(&self, hash: &str, d: &DeviceGrant) -> Result<()> {
        self.write(false, |tx| {
            if tx_get::<String>(tx, USER_CODES, &d.user_code)?.is_some() {
                return Err(StoreError::Conflict("user code taken".into()));
            }
            tx_put(tx, USER_CODES, &d.user_code, &hash.to_string())?;
            tx_put(tx, DEVICES, hash, d)
        })
    }

    fn record_device_poll(&self, hash: &str, now: i64, slow_down: bool) -> Result<()> {
        self.write(false, |tx| {
            let Some(mut d) = tx_get::<DeviceGrant>(tx, DEVICES, hash)? else {
                return Ok(());
            };
            if d.used || d.status != crate::model::DeviceStatus::Pending {
                return Ok(());
            }
            d.last_poll = Some(now);
            if slow_down {
                d.interval += 5;
            }
            tx_put(tx, DEVICES, hash, &d)
        })
    }

    fn answer_device(
        &self,
        hash: &str,
        status: &crate::model::DeviceStatus,
        now: i64,
    ) -> Result<bool> {
        self.write(false, |tx| {
            let Some(mut d) = tx_get::<DeviceGrant>(tx, DEVICES, hash)? else {
                return Ok(false);
            };
            if d.used || d.status != crate::model::DeviceStatus::Pending || now >= d.expires_at {
                return Ok(false);
            }
            d.status = status.clone();
            tx_put(tx, DEVICES, hash, &d)?;
            Ok(true)
        })
    }

    fn device(&self, hash: &str) -> Result<Option<DeviceGrant>> {
        self.get(DEVICES, hash)
    }

    fn device_by_user_code(&self, code: &str) -> Result<Option<(String, DeviceGrant)>> {
        let Some(hash) = self.get::<String>(USER_CODES, code)? else {
            return Ok(None);
        };
        Ok(self.device(&hash)?.map(|d| (hash, d)))
    }

    fn redeem_device(&self, hash: &str, i: &Issued<'_>) -> Result<Consumed<DeviceGrant>> {
        self.write(true, |tx| {
            let Some(mut d) = tx_get::<DeviceGrant>(tx, DEVICES, hash)? else {
                return Ok(Consumed::Missing);
            };
            if d.used {
                return Ok(Consumed::Replayed(d));
            }
            d.used = true;
            tx_put(tx, DEVICES, hash, &d)?;
            put_issued(tx, i)?;
            Ok(Consumed::Fresh(d))
        })
    }

    fn record_assertion(&self, key: &str, exp: i64) -> Result<bool> {
        self.write(true, |tx| {
            if tx_get::<i64>(tx, ASSERTIONS, key)?.is_some() {
                return Ok(false);
            }
            tx_put(tx, ASSERTIONS, key, &exp)?;
            Ok(true)
        })
    }

    fn put_session(&self, hash: &str, s: &Session) -> Result<()> {
        self.put(SESSIONS, hash, s, false)
    }

    fn session(&self, hash: &str) -> Result<Option<Session>> {
        self.get(SESSIONS, hash)
    }

    fn delete_session(&self, hash: &str) -> Result<bool> {
        self.remove(SESSIONS, hash, true)
    }

    fn update_session(&self, hash: &str, edit: &dyn Fn(&mut Session)) -> Result<bool> {
        self.write(false, |tx| {
            let Some(mut s) = tx_get::<Session>(tx, SESSIONS, hash)? else {
                return Ok(false);
            };
            edit(&mut s);
            tx_put(tx, SESSIONS, hash, &s)?;
            Ok(true)
        })
    }

    fn move_session(
        &self,
        old_hash: &str,
        new_hash: &str,
        edit: &dyn Fn(&mut Session),
    ) -> Result<Option<Session>> {
        self.write(true, |tx| {
            let Some(mut s) = tx
                .open_table(SESSIONS)
                .map_err(backend)?
                .remove(old_hash)
                .map_err(backend)?
                .map(|v| decode::<Session>(v.value()))
                .transpose()?
            else {
                return Ok(None);
            };
            edit(&mut s);
            tx_put(tx, SESSIONS, new_hash, &s)?;
            // Codes and grants exist only for applications the session took part in.
            if !s.clients.is_empty() {
                let moved = |h: &mut String| {
                    let hit = h == old_hash;
                    if hit {
                        *h = new_hash.to_string();
                    }
                    hit
                };
                tx_update_all::<Grant>(tx, GRANTS, |g| moved(&mut g.session_hash))?;
                tx_update_all::<AuthCode>(tx, CODES, |c| moved(&mut c.session_hash))?;
            }
            Ok(Some(s))
        })
    }

    fn sessions(&self) -> Result<Vec<(String, Session)>> {
        self.list_keyed(SESSIONS)
    }

    fn count_sessions(&self, now: i64) -> Result<u64> {
        Ok(self
            .list::<Session>(SESSIONS)?
            .iter()
            .filter(|s| s.expires_at > now)
            .count() as u64)
    }

    fn delete_user_sessions_except(&self, user_id: &str, keep: &str) -> Result<usize> {
        self.write(true, |tx| {
            tx_retain::<Session>(tx, SESSIONS, |k, s| s.user_id == user_id && k != keep)
        })
    }

    fn delete_user_sessions(&self, user_id: &str) -> Result<usize> {
        self.write(true, |tx| {
            tx_retain::<Session>(tx, SESSIONS, |_, s| s.user_id == user_id)
        })
    }

    fn put_consent(&self, c: &Consent) -> Result<()> {
        self.put(CONSENTS, &consent_key(&c.user_id, &c.client_id), c, true)
    }

    fn consent(&self, user_id: &str, client_id: &str) -> Result<Option<Consent>> {
        self.get(CONSENTS, &consent_key(user_id, client_id))
    }

    fn consents(&self, user_id: &str) -> Result<Vec<Consent>> {
        let prefix = consent_key(user_id, "");
        Ok(self
            .list_keyed::<Consent>(CONSENTS)?
            .into_iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, c)| c)
            .collect())
    }

    fn delete_consent(&self, user_id: &str, client_id: &str) -> Result<bool> {
        self.remove(CONSENTS, &consent_key(user_id, client_id), true)
    }

    fn grant(&self, id: &str) -> Result<Option<Grant>> {
        self.get(GRANTS, id)
    }

    fn revoke_grant(&self, id: &str, client_id: &str, user_id: &str, now: i64) -> Result<()> {
        self.write(true, |tx| {
            let mut g = tx_get::<Grant>(tx, GRANTS, id)?.unwrap_or_else(|| Grant {
                grant_id: id.to_string(),
                client_id: client_id.to_string(),
                user_id: user_id.to_string(),
                created_at: now,
                revoked: false,
                session_hash: String::new(),
                offline: false,
            });
            g.revoked = true;
            tx_put(tx, GRANTS, id, &g)
        })
    }

    fn revoke_user_grants(&self, user_id: &str) -> Result<usize> {
        self.revoke_grants_where(|g| g.user_id == user_id)
    }

    fn revoke_user_client_grants(&self, user_id: &str, client_id: &str) -> Result<usize> {
        // One transaction: a code redeemed meanwhile cannot start a grant in between.
        self.write(true, |tx| {
            let n =
                tx_revoke_grants_where(tx, |g| g.user_id == user_id && g.client_id == client_id)?;
            // A code issued but not redeemed yet has no grant record; a revoked one makes
            // its redemption fail instead of starting a grant after the revocation.
            let mut pending = Vec::new();
            {
                let table = tx.open_table(CODES).map_err(backend)?;
                for item in table.iter().map_err(backend)? {
                    let (_, v) = item.map_err(backend)?;
                    if let Ok(c) = decode::<AuthCode>(v.value())
                        && !c.used
                        && c.user_id == user_id
                        && c.client_id == client_id
                    {
                        pending.push(c);
                    }
                }
            }
            for c in pending {
                if tx_get::<Grant>(tx, GRANTS, &c.grant_id)?.is_none() {
                    let g = Grant {
                        grant_id: c.grant_id.clone(),
                        client_id: c.client_id.clone(),
                        user_id: c.user_id.clone(),
                        created_at: c.auth_time,
                        revoked: true,
                        session_hash: c.session_hash.clone(),
                        offline: false,
                    };
                    tx_put(tx, GRANTS, &c.grant_id, &g)?;
                }
            }
            Ok(n)
        })
    }

    fn revoke_session_grants(&self, session_hash: &str) -> Result<usize> {
        self.revoke_grants_where(|g| g.session_hash == session_hash && !g.offline)
    }

    fn revoke_access_token(&self, jti: &str) -> Result<bool> {
        self.write(true, |tx| {
            let Some(mut a) = tx_get::<AccessTokenRecord>(tx, ACCESS_TOKENS, jti)? else {
                return Ok(false);
            };
            a.revoked = true;
            tx_put(tx, ACCESS_TOKENS, jti, &a)?;
            Ok(true)
        })
    }

    fn access_token(&self, jti: &str) -> Result<Option<AccessTokenRecord>> {
        self.get(ACCESS_TOKENS, jti)
    }

    fn access_token_context(&self, jti: &str) -> Result<Option<TokenContext>> {
        self.read(|tx| {
            let get = |t: Table, key: &str| -> Result<Option<Vec<u8>>> {
                let table = tx.open_table(t).map_err(backend)?;
                let v = table.get(key).map_err(backend)?;
                Ok(v.map(|g| g.value().to_vec()))
            };
            let Some(record) = get(ACCESS_TOKENS, jti)? else {
                return Ok(None);
            };
            let record: AccessTokenRecord = decode(&record)?;
            let grant = get(GRANTS, &record.grant_id)?
                .map(|b| decode(&b))
                .transpose()?;
            let user = if record.user_id.is_empty() {
                None
            } else {
                get(USERS, &record.user_id)?
                    .map(|b| decode(&b))
                    .transpose()?
            };
            let client_stored = tx
                .open_table(CLIENTS)
                .map_err(backend)?
                .get(record.client_id.as_str())
                .map_err(backend)?
                .is_some();
            Ok(Some(TokenContext {
                record,
                grant,
                user,
                client_stored,
            }))
        })
    }

    fn refresh_token(&self, hash: &str) -> Result<Option<RefreshToken>> {
        self.get(REFRESH_TOKENS, hash)
    }

    fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new_hash: &str,
        new: &RefreshToken,
        access_jti: &str,
        access: &AccessTokenRecord,
    ) -> Result<Consumed<RefreshToken>> {
        self.write(true, |tx| {
            let Some(mut old) = tx_get::<RefreshToken>(tx, REFRESH_TOKENS, old_hash)? else {
                return Ok(Consumed::Missing);
            };
            if old.used {
                return Ok(Consumed::Replayed(old));
            }
            old.used = true;
            tx_put(tx, REFRESH_TOKENS, old_hash, &old)?;
            tx_put(tx, REFRESH_TOKENS, new_hash, new)?;
            tx_put(tx, ACCESS_TOKENS, access_jti, access)?;
            Ok(Consumed::Fresh(old))
        })
    }

    fn put_key(&self, k: &KeyRecord) -> Result<()> {
        self.put(KEYS, &k.kid, k, true)
    }

    fn put_keys(&self, keys: &[KeyRecord]) -> Result<()> {
        self.write(true, |tx| {
            for k in keys {
                tx_put(tx, KEYS, &k.kid, k)?;
            }
            Ok(())
        })
    }

    fn delete_key(&self, kid: &str) -> Result<bool> {
        self.remove(KEYS, kid, true)
    }

    fn keys(&self) -> Result<Vec<KeyRecord>> {
        self.list(KEYS)
    }

    fn append_audit(&self, e: &AuditEvent) -> Result<()> {
        let bytes = encode(e)?;
        let full = {
            let mut q = self
                .audit_queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            q.push(bytes);
            q.len() >= AUDIT_QUEUE_MAX
        };
        if full {
            self.flush_audit(false)
        } else {
            Ok(())
        }
    }

    fn audit(&self, since: i64, limit: usize, user: Option<&str>) -> Result<Vec<AuditEvent>> {
        self.flush_audit(false)?;
        self.read(|tx| {
            let table = tx.open_table(AUDIT).map_err(backend)?;
            let mut out = Vec::new();
            for item in table.iter().map_err(backend)?.rev() {
                let (_, v) = item.map_err(backend)?;
                let e: AuditEvent = decode(v.value())?;
                if e.time < since {
                    break;
                }
                if user.is_some_and(|u| e.user.as_deref() != Some(u)) {
                    continue;
                }
                out.push(e);
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        self.read(|tx| {
            let table = tx.open_table(META).map_err(backend)?;
            let v = table.get(key).map_err(backend)?;
            Ok(v.map(|g| String::from_utf8_lossy(g.value()).into_owned()))
        })
    }

    fn put_meta(&self, key: &str, value: &str) -> Result<()> {
        self.write(true, |tx| {
            tx.open_table(META)
                .map_err(backend)?
                .insert(key, value.as_bytes())
                .map_err(backend)?;
            Ok(())
        })
    }

    fn delete_meta(&self, key: &str) -> Result<bool> {
        self.remove(META, key, true)
    }

    fn backup_to(&self, path: &Path) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        // Created owner-only before redb writes anything into it.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?;
        let target = Database::create(path)
            .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?;
        self.flush_audit(true)?;
        let snapshot = self.handle(true)?.begin_read().map_err(backend)?;
        // Failures from here on concern the backup file, not the live database.
        let out = target.begin_write().map_err(invalid)?;
        for t in ALL {
            let src = snapshot.open_table(t).map_err(backend)?;
            let mut dst = out.open_table(t).map_err(invalid)?;
            for item in src.iter().map_err(backend)? {
                let (k, v) = item.map_err(backend)?;
                dst.insert(k.value(), v.value()).map_err(invalid)?;
            }
        }
        {
            let src = snapshot.open_table(AUDIT).map_err(backend)?;
            let mut dst = out.open_table(AUDIT).map_err(invalid)?;
            for item in src.iter().map_err(backend)? {
                let (k, v) = item.map_err(backend)?;
                dst.insert(k.value(), v.value()).map_err(invalid)?;
            }
        }
        out.commit().map_err(invalid)?;
        Ok(())
    }

    fn purge_expired(&self, now: i64) -> Result<usize> {
        let mut n = self.purge(CODES, |c: &AuthCode| {
            c.expires_at + CODE_REPLAY_WINDOW < now
        })?;
        n += self.purge(SESSIONS, |s: &Session| s.expires_at < now)?;
        n += self.purge(ASSERTIONS, |exp: &i64| *exp + 120 < now)?;
        n += self.write(false, |tx| {
            let mut gone_codes = Vec::new();
            let n = tx_retain::<DeviceGrant>(tx, DEVICES, |_, d| {
                let gone = d.expires_at + CODE_REPLAY_WINDOW < now;
                if gone {
                    gone_codes.push(d.user_code.clone());
                }
                gone
            })?;
            let mut codes = tx.open_table(USER_CODES).map_err(backend)?;
            for c in &gone_codes {
                codes.remove(c.as_str()).map_err(backend)?;
            }
            Ok(n)
        })?;
        n += self.purge(ACCESS_TOKENS, |a: &AccessTokenRecord| a.expires_at < now)?;
        n += self.purge(REFRESH_TOKENS, |r: &RefreshToken| {
            r.expires_at.min(r.absolute_expires_at) < now
        })?;
        // A grant lives as long as something refers to it: a code (a late replay revokes
        // it), an access token or a refresh token. Grants and their first tokens are
        // stored together, and later tokens only come from earlier ones, so a grant that
        // nothing refers to in one snapshot never will again.
        let unreferenced = self.read(|tx| {
            let mut referenced = std::collections::HashSet::new();
            let mut note = |grant_id: String| {
                referenced.insert(grant_id);
            };
            read_visit::<AuthCode>(tx, CODES, |c| note(c.grant_id))?;
            read_visit::<AccessTokenRecord>(tx, ACCESS_TOKENS, |a| note(a.grant_id))?;
            read_visit::<RefreshToken>(tx, REFRESH_TOKENS, |r| note(r.grant_id))?;
            let mut doomed = Vec::new();
            read_visit::<Grant>(tx, GRANTS, |g| {
                if !referenced.contains(&g.grant_id) {
                    doomed.push(g.grant_id);
                }
            })?;
            Ok(doomed)
        })?;
        n += self.remove_batched(GRANTS, &unreferenced, |_: &Grant| true)?;
        // One durable commit persists the batches and every earlier non-durable commit.
        self.write(true, |_| Ok(()))?;
        Ok(n)
    }

    fn purge_audit(&self, before: i64) -> Result<usize> {
        self.flush_audit(false)?;
        self.write(false, |tx| {
            let mut t = tx.open_table(AUDIT).map_err(backend)?;
            let mut doomed = Vec::new();
            // Keys grow with time, so the old events are the first ones.
            for item in t.iter().map_err(backend)? {
                let (k, v) = item.map_err(backend)?;
                match decode::<AuditEvent>(v.value()) {
                    Ok(e) if e.time < before => doomed.push(k.value()),
                    _ => break,
                }
            }
            for k in &doomed {
                t.remove(k).map_err(backend)?;
            }
            Ok(doomed.len())
        })
    }
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
