//! The PostgreSQL engine (SPEC §13): the same tables as on redb (a key and a JSON value
//! each, keys as bytes so their order is redb's), so several Latchkey nodes on one
//! database keep every guarantee the roles in `store::kv` give on one file. Each write
//! runs as a SERIALIZABLE transaction and is run again when PostgreSQL reports a conflict
//! with a concurrent one (on this node or another): a code is redeemed once, a refresh
//! token rotated once, a username taken once. Durable writes commit with PostgreSQL's
//! `synchronous_commit` (its WAL writer flushes concurrent commits together, the group
//! commit redb gets from `commit.rs`); the others, as on redb, commit without waiting
//! for the flush. The only module that imports tokio-postgres.

mod pool;
mod tls;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::Arc;

use self::pool::{Conn, DbError, Pool};
use super::kv::{ALL, Engine, Reader, Table, Writer, decode, encode};
use super::{AuditLog, Result, SCHEMA_VERSION, StoreError};
use crate::model::AuditEvent;

/// Version of the PostgreSQL layout (its own history, kept in `latchkey_schema`):
/// 1 = the keyed tables of redb schema 4 and an audit table.
pub const PG_SCHEMA_VERSION: i32 = 1;

/// Conflicts with concurrent transactions a write goes through before giving up.
const RETRIES: u32 = 30;
/// Rows read per query by a scan.
const SCAN_PAGE: i64 = 256;

/// How to reach the database, from `[store]`.
#[derive(Clone)]
pub struct PgSettings {
    pub config: tokio_postgres::Config,
    /// `None`: plain TCP (only to this machine; see `config::store`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Connections this node keeps at most.
    pub pool_size: usize,
}

pub struct PgStore {
    pool: Pool,
    /// Audit events waiting to be written (time, encoded event), with when the first was
    /// queued: written together when 64 wait, when the first has waited a second (checked
    /// at each write), when the log is read and when the store closes. As on redb, a
    /// crash may lose the last few.
    audit_queue: std::sync::Mutex<AuditQueue>,
}

/// Queued audit events (time, encoded event) and when the first was queued.
type AuditQueue = (Vec<(i64, Vec<u8>)>, Option<std::time::Instant>);

/// Audit events written in one statement at most.
const AUDIT_BATCH: usize = 64;
/// The longest an audit event waits for others before a write takes it along.
const AUDIT_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs storage work off the async runtime's worker thread (see `store::off_runtime`).
/// Every use of the pool goes through here: its connections are driven by runtimes of
/// their own, which a worker thread cannot enter.
fn off<R>(f: impl FnOnce() -> R) -> R {
    super::off_runtime(true, f)
}

impl PgStore {
    /// Connects, creates the schema on an empty database (once, whichever node starts
    /// first) and refuses one written by a newer Latchkey.
    pub fn open(s: &PgSettings) -> Result<PgStore> {
        // Commits do not wait for the WAL flush unless a durable write asks for it
        // (`SET LOCAL synchronous_commit TO ON`): the non-durable single statements then
        // run without a transaction around them.
        let mut config = s.config.clone();
        let options = config.get_options().unwrap_or_default().to_string();
        config.options(format!("{options} -c synchronous_commit=off").trim());
        let pool = Pool::new(config, s.tls.clone().map(tls::Rustls), s.pool_size);
        let store = PgStore {
            pool,
            audit_queue: std::sync::Mutex::default(),
        };
        off(|| store.migrate())?;
        Ok(store)
    }

    fn migrate(&self) -> Result<()> {
        self.with_conn(|c| {
            c.batch(
                "BEGIN; SELECT pg_advisory_xact_lock(7627311001); \
                 CREATE TABLE IF NOT EXISTS latchkey_schema (version INTEGER NOT NULL)",
            )?;
            let found: Option<i32> = c
                .query("SELECT version FROM latchkey_schema", &[])?
                .first()
                .map(|r| r.get(0));
            match found {
                Some(v) if v > PG_SCHEMA_VERSION => {
                    c.batch("ROLLBACK")?;
                    return Err(DbError {
                        error: StoreError::Schema(format!(
                            "the database was written by a newer Latchkey (PostgreSQL schema \
                             {v}); this build reads up to schema {PG_SCHEMA_VERSION}: upgrade \
                             Latchkey"
                        )),
                        retry: false,
                    });
                }
                Some(_) => {
                    // Tables added since (without a layout change: older builds ignore
                    // them).
                    let mut ddl = String::new();
                    for t in ALL {
                        ddl.push_str(&format!(
                            "CREATE TABLE IF NOT EXISTS \"{t}\" \
                             (key BYTEA PRIMARY KEY, value BYTEA NOT NULL);"
                        ));
                    }
                    c.batch(&ddl)?;
                }
                None => {
                    let mut ddl = String::new();
                    for t in ALL {
                        ddl.push_str(&format!(
                            "CREATE TABLE \"{t}\" (key BYTEA PRIMARY KEY, value BYTEA NOT NULL);"
                        ));
                    }
                    ddl.push_str(
                        "CREATE TABLE audit (id BIGSERIAL PRIMARY KEY, time BIGINT NOT NULL, \
                         value BYTEA NOT NULL); CREATE INDEX audit_time ON audit (time);",
                    );
                    ddl.push_str(&format!(
                        "INSERT INTO latchkey_schema (version) VALUES ({PG_SCHEMA_VERSION});"
                    ));
                    c.batch(&ddl)?;
                    tracing::info!(version = PG_SCHEMA_VERSION, "PostgreSQL schema created");
                }
            }
            // The records' layout, as redb's file keeps it (`/healthz` reads it too).
            let layout: Option<Vec<u8>> = c
                .query(
                    "SELECT value FROM \"meta\" WHERE key = $1",
                    &[&"schema_version".as_bytes()],
                )?
                .first()
                .map(|r| r.get(0));
            let layout = layout.map(|v| String::from_utf8_lossy(&v).into_owned());
            if let Some(v) = layout.as_deref().and_then(|v| v.parse::<u32>().ok())
                && v > SCHEMA_VERSION
            {
                c.batch("ROLLBACK")?;
                return Err(DbError {
                    error: StoreError::Schema(format!(
                        "the database was written by a newer Latchkey (records of schema {v}); \
                         this build reads up to schema {SCHEMA_VERSION}: upgrade Latchkey"
                    )),
                    retry: false,
                });
            }
            c.execute(
                "INSERT INTO \"meta\" (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                &[
                    &"schema_version".as_bytes(),
                    &SCHEMA_VERSION.to_string().as_bytes(),
                ],
            )?;
            c.batch("COMMIT")
        })
    }

    /// Runs `f` on a pooled connection, returning it afterwards (a broken one is dropped).
    fn with_conn<R>(
        &self,
        f: impl FnOnce(&mut Conn) -> std::result::Result<R, DbError>,
    ) -> Result<R> {
        let mut c = self.pool.take()?;
        let out = f(&mut c);
        self.pool.give_back(c);
        out.map_err(|e| e.error)
    }

    /// Number of records in a table (for tests and `migrate`).
    pub fn count(&self, name: &str) -> Result<u64> {
        let t = ALL
            .into_iter()
            .find(|t| *t == name)
            .ok_or_else(|| StoreError::Backend("no such table".into()))?;
        off(|| {
            self.with_conn(|c| {
                let rows = c.query(&format!("SELECT count(*) FROM \"{t}\""), &[])?;
                Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0)) as u64)
            })
        })
    }

    /// Writes the queued audit events (one statement, without waiting for the flush).
    fn flush_audit(&self) -> Result<()> {
        let (events, _) = std::mem::take(
            &mut *self
                .audit_queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if events.is_empty() {
            return Ok(());
        }
        let (times, values): (Vec<i64>, Vec<Vec<u8>>) = events.iter().cloned().unzip();
        let written = off(|| {
            self.with_conn(|c| {
                c.begin_with_next("BEGIN");
                let done = c
                    .execute(
                        "INSERT INTO audit (time, value) \
                         SELECT * FROM unnest($1::bigint[], $2::bytea[])",
                        &[&times, &values],
                    )
                    .and_then(|_| c.end(true));
                if done.is_err() {
                    c.rollback();
                }
                done
            })
        });
        if written.is_err() {
            // Back in front of the queue, to be written with the next try (at most a few
            // thousand are kept: past that the oldest go, as a crash would lose them).
            let mut q = self
                .audit_queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut back = events;
            back.append(&mut q.0);
            let excess = back.len().saturating_sub(AUDIT_BATCH * 64);
            back.drain(..excess);
            q.0 = back;
            q.1.get_or_insert_with(std::time::Instant::now);
        }
        written
    }

    /// Whether queued audit events have waited long enough to go with the next write.
    fn audit_due(&self) -> bool {
        self.audit_queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .1
            .is_some_and(|t| t.elapsed() >= AUDIT_WAIT)
    }

    /// Forgets the idle connections, so the next request connects anew.
    pub fn reconnect(&self) {
        self.pool.clear();
    }
}

/// A transaction as the roles see it.
struct Tx<'a> {
    conn: RefCell<&'a mut Conn>,
    /// A statement failed with a conflict: the transaction is run again.
    retry: Cell<bool>,
    /// Records put and not sent yet (see [`Tx::flush`]).
    puts: RefCell<Vec<(Table, String, Vec<u8>)>>,
}

impl<'a> Tx<'a> {
    fn on(conn: &'a mut Conn) -> Tx<'a> {
        Tx {
            conn: RefCell::new(conn),
            retry: Cell::new(false),
            puts: RefCell::default(),
        }
    }

    /// Sends the records put since the last statement, whatever their tables, as one
    /// statement (its answer comes with the next statement's or the COMMIT's): called
    /// before anything that reads or removes, and before the COMMIT.
    fn flush(&self) -> Result<()> {
        let puts = std::mem::take(&mut *self.puts.borrow_mut());
        if puts.is_empty() {
            return Ok(());
        }
        // By table, in table order (fewer different statements); a key put twice keeps
        // its last value (one statement cannot change a row twice).
        let mut by_table: BTreeMap<Table, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
        for (t, k, v) in puts {
            by_table.entry(t).or_default().insert(k, v);
        }
        let mut inserts = Vec::new();
        let mut params: Vec<Vec<Vec<u8>>> = Vec::new();
        for (t, rows) in by_table {
            let n = params.len();
            inserts.push(format!(
                "INSERT INTO \"{t}\" (key, value) \
                 SELECT * FROM unnest(${}::bytea[], ${}::bytea[]) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                n + 1,
                n + 2
            ));
            let (keys, values) = rows.into_iter().map(|(k, v)| (k.into_bytes(), v)).unzip();
            params.extend([keys, values]);
        }
        let last = inserts.pop().unwrap_or_default();
        let sql = if inserts.is_empty() {
            last
        } else {
            let before: Vec<String> = inserts
                .iter()
                .enumerate()
                .map(|(i, q)| format!("p{i} AS ({q})"))
                .collect();
            format!("WITH {} {last}", before.join(", "))
        };
        self.call(|c| c.execute_later(&sql, params))
    }

    fn call<T>(&self, f: impl FnOnce(&mut Conn) -> std::result::Result<T, DbError>) -> Result<T> {
        let mut c = self.conn.borrow_mut();
        f(&mut c).map_err(|e| {
            if e.retry {
                self.retry.set(true);
            }
            e.error
        })
    }
}

impl Reader for Tx<'_> {
    fn get(&self, t: Table, key: &str) -> Result<Option<Vec<u8>>> {
        self.flush()?;
        let sql = format!("SELECT value FROM \"{t}\" WHERE key = $1");
        let rows = self.call(|c| c.query(&sql, &[&key.as_bytes()]))?;
        Ok(rows.first().map(|r| r.get::<_, Vec<u8>>(0)))
    }

    /// One statement (see [`select_many`]).
    fn get_many(&self, keys: &[(Table, &str)]) -> Result<Vec<Option<Vec<u8>>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.flush()?;
        let (sql, keys_sent) = select_many(keys);
        let params = as_params(&keys_sent);
        let rows = self.call(|c| c.query(&sql, &params))?;
        Ok(by_index(keys.len(), &rows))
    }

    fn scan(
        &self,
        t: Table,
        after: Option<&str>,
        each: &mut dyn FnMut(&str, &[u8]) -> Result<bool>,
    ) -> Result<()> {
        self.flush()?;
        let mut from: Option<Vec<u8>> = after.map(|a| a.as_bytes().to_vec());
        loop {
            let rows = match &from {
                Some(k) => {
                    let sql = format!(
                        "SELECT key, value FROM \"{t}\" WHERE key > $1 ORDER BY key LIMIT $2"
                    );
                    self.call(|c| c.query(&sql, &[k, &SCAN_PAGE]))?
                }
                None => {
                    let sql = format!("SELECT key, value FROM \"{t}\" ORDER BY key LIMIT $1");
                    self.call(|c| c.query(&sql, &[&SCAN_PAGE]))?
                }
            };
            for r in &rows {
                let k: &[u8] = r.get(0);
                let v: &[u8] = r.get(1);
                let key = std::str::from_utf8(k)
                    .map_err(|_| StoreError::Backend(format!("{t}: a key is not UTF-8")))?;
                if !each(key, v)? {
                    return Ok(());
                }
            }
            if (rows.len() as i64) < SCAN_PAGE {
                return Ok(());
            }
            from = rows.last().map(|r| r.get::<_, Vec<u8>>(0));
        }
    }
}

impl Writer for Tx<'_> {
    /// Sent with the transaction's next statement (see [`Tx::flush`]).
    fn put(&self, t: Table, key: &str, value: &[u8]) -> Result<()> {
        self.puts
            .borrow_mut()
            .push((t, key.to_string(), value.to_vec()));
        Ok(())
    }

    fn remove(&self, t: Table, key: &str) -> Result<bool> {
        self.flush()?;
        let sql = format!("DELETE FROM \"{t}\" WHERE key = $1");
        Ok(self.call(|c| c.execute(&sql, &[&key.as_bytes()]))? > 0)
    }
}

impl Engine for PgStore {
    fn write<R>(&self, durable: bool, mut f: impl FnMut(&dyn Writer) -> Result<R>) -> Result<R> {
        let begin = if durable {
            "BEGIN ISOLATION LEVEL SERIALIZABLE; SET LOCAL synchronous_commit TO ON"
        } else {
            "BEGIN ISOLATION LEVEL SERIALIZABLE"
        };
        off(|| {
            for attempt in 0..RETRIES {
                if attempt > 0 {
                    // Spread the contenders out a little, more each time.
                    let jitter = u64::from(aws_lc_rs_jitter()) % (1 + u64::from(attempt) * 2);
                    std::thread::sleep(std::time::Duration::from_millis(jitter));
                }
                let mut c = self.pool.take()?;
                c.begin_with_next(begin);
                let (out, retry) = {
                    let tx = Tx::on(&mut c);
                    // A durable write that wrote nothing has nothing to wait for (unlike a
                    // redb flush, it persists no earlier commit: those reach the disk with
                    // PostgreSQL's WAL writer within a fraction of a second).
                    let out = f(&tx)
                        .and_then(|v| tx.flush().map(|()| v))
                        .and_then(|v| tx.call(|c| c.end(true)).map(|()| v));
                    (out, tx.retry.get())
                };
                if out.is_err() {
                    // A broken connection is dropped by `give_back` anyway.
                    c.rollback();
                }
                self.pool.give_back(c);
                match out {
                    Err(_) if retry => continue,
                    other => {
                        if other.is_ok() && self.audit_due() {
                            if let Err(e) = self.flush_audit() {
                                tracing::warn!(error = %e, "could not write audit events");
                            }
                        }
                        return other;
                    }
                }
            }
            Err(StoreError::Unavailable(
                "too many conflicting writes; try again".into(),
            ))
        })
    }

    fn read<R>(&self, f: impl Fn(&dyn Reader) -> Result<R>) -> Result<R> {
        off(|| {
            let mut c = self.pool.take()?;
            c.begin_with_next(READ_SNAPSHOT);
            let out = {
                let tx = Tx::on(&mut c);
                let out = f(&tx);
                let done = tx.call(|c| c.end(false));
                out.and_then(|v| done.map(|()| v))
            };
            if out.is_err() {
                c.rollback();
            }
            self.pool.give_back(c);
            out
        })
    }

    /// Each statement on its own, on one connection.
    fn read_latest<R>(&self, f: impl Fn(&dyn Reader) -> Result<R>) -> Result<R> {
        off(|| {
            let mut c = self.pool.take()?;
            let out = f(&Tx::on(&mut c));
            self.pool.give_back(c);
            out
        })
    }

    /// A non-durable record (a new code or session, under a fresh random key) is one
    /// statement without a transaction around it: one round trip.
    fn put<T: serde::Serialize>(&self, t: Table, key: &str, v: &T, durable: bool) -> Result<()> {
        let bytes = encode(v)?;
        if durable {
            return self.write(true, |tx| tx.put(t, key, &bytes));
        }
        let sql = format!(
            "INSERT INTO \"{t}\" (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
        );
        off(|| self.with_conn(|c| c.execute(&sql, &[&key.as_bytes(), &bytes]).map(|_| ())))
    }

    /// One statement, no transaction around it.
    fn get<T: serde::de::DeserializeOwned>(&self, t: Table, key: &str) -> Result<Option<T>> {
        let sql = format!("SELECT value FROM \"{t}\" WHERE key = $1");
        let found = off(|| {
            self.with_conn(|c| {
                let rows = c.query(&sql, &[&key.as_bytes()])?;
                Ok(rows.first().map(|r| r.get::<_, Vec<u8>>(0)))
            })
        })?;
        found.map(|v| decode(&v)).transpose()
    }

    /// One statement, which reads one snapshot by itself: no transaction around it.
    fn get_many(&self, keys: &[(Table, &str)]) -> Result<Vec<Option<Vec<u8>>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let (sql, keys_sent) = select_many(keys);
        let params = as_params(&keys_sent);
        let rows = off(|| self.with_conn(|c| c.query(&sql, &params)))?;
        Ok(by_index(keys.len(), &rows))
    }

    fn shared(&self) -> bool {
        true
    }

    fn backup(&self, _path: &std::path::Path) -> Result<()> {
        Err(StoreError::Backend(
            "the store is PostgreSQL: back it up with pg_dump (see docs/cluster.md); \
             `latchkey backup` copies redb files only"
                .into(),
        ))
    }
}

/// How a read-only snapshot begins.
const READ_SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// One statement reading every record of `keys` (`(index, value)` for each found), with
/// its parameters: a single statement is one snapshot, and one round trip.
fn select_many<'k>(keys: &[(Table, &'k str)]) -> (String, Vec<&'k [u8]>) {
    let sql = keys
        .iter()
        .enumerate()
        .map(|(i, (t, _))| {
            format!(
                "SELECT {i}::int4, value FROM \"{t}\" WHERE key = ${}",
                i + 1
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    (sql, keys.iter().map(|(_, k)| k.as_bytes()).collect())
}

fn as_params<'a>(keys: &'a [&[u8]]) -> Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)> {
    keys.iter()
        .map(|k| k as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

/// The values [`select_many`] found, in the order of its keys.
fn by_index(n: usize, rows: &[tokio_postgres::Row]) -> Vec<Option<Vec<u8>>> {
    let mut out = vec![None; n];
    for r in rows {
        let i: i32 = r.get(0);
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) {
            *slot = Some(r.get::<_, Vec<u8>>(1));
        }
    }
    out
}

/// A few random bits for retry jitter.
fn aws_lc_rs_jitter() -> u8 {
    let mut b = [0u8; 1];
    let _ = aws_lc_rs::rand::fill(&mut b);
    b[0]
}

impl AuditLog for PgStore {
    /// Queued (see `PgStore::audit_queue`).
    fn append_audit(&self, e: &AuditEvent) -> Result<()> {
        let bytes = encode(e)?;
        let full = {
            let mut q = self
                .audit_queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            q.0.push((e.time, bytes));
            q.1.get_or_insert_with(std::time::Instant::now);
            q.0.len() >= AUDIT_BATCH
        };
        if full { self.flush_audit() } else { Ok(()) }
    }

    fn audit(&self, since: i64, limit: usize, user: Option<&str>) -> Result<Vec<AuditEvent>> {
        self.flush_audit()?;
        off(|| {
            self.with_conn(|c| {
                let mut out = Vec::new();
                let mut before = i64::MAX;
                loop {
                    let rows = c.query(
                        "SELECT id, value FROM audit WHERE time >= $1 AND id < $2 \
                         ORDER BY id DESC LIMIT $3",
                        &[&since, &before, &SCAN_PAGE],
                    )?;
                    for r in &rows {
                        before = r.get(0);
                        let e: AuditEvent =
                            decode(r.get::<_, &[u8]>(1)).map_err(|error| DbError {
                                error,
                                retry: false,
                            })?;
                        if user.is_some_and(|u| e.user.as_deref() != Some(u)) {
                            continue;
                        }
                        out.push(e);
                        if out.len() >= limit {
                            return Ok(out);
                        }
                    }
                    if (rows.len() as i64) < SCAN_PAGE {
                        return Ok(out);
                    }
                }
            })
        })
    }

    fn purge_audit(&self, before: i64) -> Result<usize> {
        self.flush_audit()?;
        let mut n = 0;
        loop {
            let removed = off(|| {
                self.with_conn(|c| {
                    c.execute(
                        "DELETE FROM audit WHERE id IN \
                         (SELECT id FROM audit WHERE time < $1 ORDER BY id LIMIT $2)",
                        &[&before, &(super::kv::PURGE_BATCH as i64)],
                    )
                })
            })? as usize;
            n += removed;
            if removed < super::kv::PURGE_BATCH {
                return Ok(n);
            }
            std::thread::sleep(super::kv::PURGE_PAUSE);
        }
    }
}

impl Drop for PgStore {
    /// A management command's audit event must not leave with the process.
    fn drop(&mut self) {
        if let Err(e) = self.flush_audit() {
            tracing::warn!(error = %e, "could not write the last audit events");
        }
    }
}
