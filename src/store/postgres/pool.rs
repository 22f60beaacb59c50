//! Connections to PostgreSQL: tokio-postgres clients whose connections run on a small
//! runtime of the store's own, kept in a pool of at most `size`, each with its prepared
//! statements. The store's roles are synchronous (as on redb): a caller waits for a query
//! on its own thread ([`wait`]), never inside another runtime, so the store works the same
//! from the server's workers, blocking threads and command-line tools.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll, Wake};
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

use super::tls::Rustls;
use crate::store::{Result, StoreError};

/// How long one query (or a connection attempt) may take before the database counts as
/// unreachable for this request.
pub(super) const DEADLINE: Duration = Duration::from_secs(10);
/// After a failed connection attempt, requests fail at once for this long instead of each
/// waiting for its own attempt: a database that is down answers 503 quickly, and the node
/// tries again by itself afterwards.
const RETRY_CONNECT: Duration = Duration::from_millis(500);
/// How long a request waits for a connection when all are busy.
const CHECKOUT_WAIT: Duration = Duration::from_secs(10);

/// Runs `fut` to completion on this thread, waiting at most `deadline`. The futures of a
/// tokio-postgres client only wait on channels to the connection task (which runs on the
/// pool's runtime), so any thread may drive them.
pub(super) fn wait<F: Future>(fut: F, deadline: Duration) -> Option<F::Output> {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    let end = Instant::now() + deadline;
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return Some(v);
        }
        let now = Instant::now();
        if now >= end {
            return None;
        }
        std::thread::park_timeout(end - now);
    }
}

/// What a failed query means for the caller.
pub(super) struct DbError {
    pub(super) error: StoreError,
    /// A conflict with a concurrent transaction (serialization failure, deadlock, a unique
    /// key taken meanwhile): running the transaction again will decide it.
    pub(super) retry: bool,
}

pub(super) fn db_error(e: tokio_postgres::Error) -> DbError {
    let retry = matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::UNIQUE_VIOLATION
    );
    let unavailable = e.is_closed()
        || match e.code() {
            // Connection exceptions, the server shutting down or starting, too many
            // connections, out of disk or memory, a read-only standby after a failover.
            Some(c) => {
                let class = &c.code()[..2];
                matches!(class, "08" | "53" | "57" | "58")
                    || *c == SqlState::READ_ONLY_SQL_TRANSACTION
            }
            // No SQL state: the socket failed.
            None => true,
        };
    let error = if unavailable {
        StoreError::Unavailable(format!("PostgreSQL: {e}"))
    } else {
        StoreError::Backend(format!("PostgreSQL: {e}"))
    };
    DbError { error, retry }
}

fn timed_out() -> DbError {
    DbError {
        error: StoreError::Unavailable("PostgreSQL did not answer in time".into()),
        retry: false,
    }
}

/// A statement sent whose answer is collected later (see [`Conn::execute_later`]).
type Later =
    std::pin::Pin<Box<dyn Future<Output = std::result::Result<u64, tokio_postgres::Error>> + Send>>;

/// One connection and its prepared statements.
pub(super) struct Conn {
    client: Arc<Client>,
    /// Statements sent, in order, whose answers have not been read yet.
    later: Vec<Later>,
    statements: HashMap<String, Statement>,
    /// Set after a timeout or a connection failure: the connection is not reused.
    broken: std::cell::Cell<bool>,
    /// A BEGIN not sent yet: it goes out with the transaction's first statement, in the
    /// same round trip (tokio-postgres pipelines requests made together).
    begin: Option<&'static str>,
    /// Whether a transaction was opened since [`Conn::begin_with_next`].
    opened: bool,
    /// The pool's count of open connections, lowered when this one is dropped (also when
    /// a panic drops it on its way back).
    alive: Arc<std::sync::atomic::AtomicUsize>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.alive.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Conn {
    fn statement(&mut self, sql: &str) -> std::result::Result<Statement, DbError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        // Answers are read in order: those of statements sent earlier first.
        self.collect_later()?;
        let s = self.run(|c| c.prepare(sql))?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    fn run<'c, T, F>(
        &'c self,
        call: impl FnOnce(&'c Client) -> F,
    ) -> std::result::Result<T, DbError>
    where
        F: Future<Output = std::result::Result<T, tokio_postgres::Error>> + 'c,
    {
        match wait(call(&self.client), DEADLINE) {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => {
                let e = db_error(e);
                if matches!(e.error, StoreError::Unavailable(_)) {
                    self.broken.set(true);
                }
                Err(e)
            }
            None => {
                self.broken.set(true);
                Err(timed_out())
            }
        }
    }

    /// Reads the answers of the statements sent earlier, in order; the first failure.
    fn collect_later(&mut self) -> std::result::Result<(), DbError> {
        let mut first = Ok(());
        for fut in std::mem::take(&mut self.later) {
            let r = self.run(|_| fut).map(|_| ());
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// Sends a statement whose only answer that matters is success, without waiting for
    /// it: the next statement or the COMMIT goes in the same round trip, and a failure
    /// (a conflict) is reported then, failing the transaction. Only inside a transaction
    /// already opened (so nothing can overtake it).
    pub(super) fn execute_later(
        &mut self,
        sql: &str,
        params: Vec<Vec<u8>>,
    ) -> std::result::Result<(), DbError> {
        if self.begin.is_some() {
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            return self.execute(sql, &refs).map(|_| ());
        }
        let s = self.statement(sql)?;
        let client = self.client.clone();
        let mut fut: Later = Box::pin(async move {
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            client.execute(&s, &refs).await
        });
        // Polled once, the request is queued to the connection.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(_)) => Ok(()),
            Poll::Ready(Err(e)) => Err(db_error(e)),
            Poll::Pending => {
                self.later.push(fut);
                Ok(())
            }
        }
    }

    pub(super) fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<Vec<Row>, DbError> {
        let s = self.statement(sql)?;
        if !self.later.is_empty() {
            // This statement goes out now, behind those sent earlier; their answers
            // come first.
            let client = self.client.clone();
            let mut q = Box::pin(async move { client.query(&s, params).await });
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let ready = q.as_mut().poll(&mut cx);
            self.collect_later()?;
            return match ready {
                Poll::Ready(r) => r.map_err(db_error),
                Poll::Pending => self.run(|_| q),
            };
        }
        match self.begin.take() {
            None => self.run(|c| async move { c.query(&s, params).await }),
            Some(begin) => {
                self.opened = true;
                self.run(|c| async move {
                    let (began, rows) = tokio::join!(c.batch_execute(begin), c.query(&s, params));
                    began.and(rows)
                })
            }
        }
    }

    pub(super) fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<u64, DbError> {
        let s = self.statement(sql)?;
        self.collect_later()?;
        match self.begin.take() {
            None => self.run(|c| async move { c.execute(&s, params).await }),
            Some(begin) => {
                self.opened = true;
                self.run(|c| async move {
                    let (began, n) = tokio::join!(c.batch_execute(begin), c.execute(&s, params));
                    began.and(n)
                })
            }
        }
    }

    /// Opens a transaction with `begin` together with the next statement.
    pub(super) fn begin_with_next(&mut self, begin: &'static str) {
        self.begin = Some(begin);
        self.opened = false;
    }

    /// Ends the transaction [`Conn::begin_with_next`] started, if a statement opened it:
    /// `COMMIT` and its answer (`wait`), or a `COMMIT` sent without waiting for the answer
    /// (a read-only transaction, which has nothing to make durable; the connection answers
    /// it before the next request).
    pub(super) fn end(&mut self, wait: bool) -> std::result::Result<(), DbError> {
        self.begin = None;
        if !std::mem::take(&mut self.opened) {
            return Ok(());
        }
        if wait {
            if self.later.is_empty() {
                return self.batch("COMMIT");
            }
            let client = self.client.clone();
            let mut commit = Box::pin(async move { client.batch_execute("COMMIT").await });
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let ready = commit.as_mut().poll(&mut cx);
            self.collect_later()?;
            return match ready {
                Poll::Ready(r) => r.map_err(db_error),
                Poll::Pending => self.run(|_| commit),
            };
        }
        self.collect_later()?;
        // Polled once, the request is queued to the connection; its answer is dropped.
        let mut commit = std::pin::pin!(self.client.batch_execute("COMMIT"));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if let Poll::Ready(Err(e)) = commit.as_mut().poll(&mut cx) {
            return Err(db_error(e));
        }
        Ok(())
    }

    /// Undoes the transaction, if one was opened. A broken connection is not waited on:
    /// `give_back` drops it.
    pub(super) fn rollback(&mut self) {
        self.begin = None;
        if self.broken.get() {
            self.later.clear();
            return;
        }
        // Their answers are read (and dropped) before the ROLLBACK's.
        let _ = self.collect_later();
        if std::mem::take(&mut self.opened) {
            let _ = self.batch("ROLLBACK");
        }
    }

    /// Runs statements without parameters (BEGIN, COMMIT, schema changes).
    pub(super) fn batch(&mut self, sql: &str) -> std::result::Result<(), DbError> {
        self.collect_later()?;
        self.run(|c| c.batch_execute(sql))
    }
}

struct State {
    idle: Vec<Conn>,
    /// Connection attempts under way.
    connecting: usize,
    last_failure: Option<(Instant, String)>,
}

pub(super) struct Pool {
    config: tokio_postgres::Config,
    tls: Option<Rustls>,
    /// Drives the connections. Dropped with `shutdown_background`, never blocking.
    runtime: Option<tokio::runtime::Runtime>,
    state: Mutex<State>,
    freed: Condvar,
    size: usize,
    /// Connections open (see `Conn::alive`).
    alive: Arc<std::sync::atomic::AtomicUsize>,
}

impl Pool {
    pub(super) fn new(
        config: tokio_postgres::Config,
        tls: Option<Rustls>,
        size: usize,
    ) -> std::result::Result<Pool, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("latchkey-pg")
            .enable_all()
            .build()
            .map_err(|e| format!("PostgreSQL runtime: {e}"))?;
        Ok(Pool {
            config,
            tls,
            runtime: Some(runtime),
            state: Mutex::new(State {
                idle: Vec::new(),
                connecting: 0,
                last_failure: None,
            }),
            freed: Condvar::new(),
            size: size.max(1),
            alive: Arc::default(),
        })
    }

    /// A connection for one transaction; returned with [`Pool::give_back`].
    pub(super) fn take(&self) -> Result<Conn> {
        let deadline = Instant::now() + CHECKOUT_WAIT;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(c) = state.idle.pop() {
                if c.client.is_closed() {
                    continue;
                }
                return Ok(c);
            }
            if let Some((at, why)) = &state.last_failure
                && at.elapsed() < RETRY_CONNECT
            {
                return Err(StoreError::Unavailable(why.clone()));
            }
            let open = self.alive.load(std::sync::atomic::Ordering::SeqCst);
            if state.connecting + open < self.size {
                state.connecting += 1;
                drop(state);
                let made = self.connect();
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                state.connecting -= 1;
                return match made {
                    Ok(c) => {
                        state.last_failure = None;
                        Ok(c)
                    }
                    Err(why) => {
                        state.last_failure = Some((Instant::now(), why.clone()));
                        self.freed.notify_all();
                        Err(StoreError::Unavailable(why))
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Unavailable(
                    "every PostgreSQL connection is busy".into(),
                ));
            }
            state = self
                .freed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    pub(super) fn give_back(&self, c: Conn) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if c.broken.get() || c.client.is_closed() || !c.later.is_empty() || c.opened {
            // Dropped: its slot is free again.
            drop(c);
        } else {
            state.idle.push(c);
        }
        self.freed.notify_one();
    }

    /// Forgets idle connections (after the database was restarted, say).
    pub(super) fn clear(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.idle.clear();
    }

    fn connect(&self) -> std::result::Result<Conn, String> {
        let Some(rt) = &self.runtime else {
            return Err("the store is closing".into());
        };
        let config = self.config.clone();
        let tls = self.tls.clone();
        let task = rt.spawn(async move {
            match tls {
                Some(tls) => {
                    let (client, conn) = config.connect(tls).await?;
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::warn!(error = %e, "PostgreSQL connection ended");
                        }
                    });
                    Ok::<_, tokio_postgres::Error>(client)
                }
                None => {
                    let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::warn!(error = %e, "PostgreSQL connection ended");
                        }
                    });
                    Ok(client)
                }
            }
        });
        match wait(task, DEADLINE + Duration::from_secs(1)) {
            Some(Ok(Ok(client))) => Ok(Conn {
                client: Arc::new(client),
                later: Vec::new(),
                statements: HashMap::new(),
                broken: std::cell::Cell::new(false),
                begin: None,
                opened: false,
                alive: {
                    self.alive.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    self.alive.clone()
                },
            }),
            Some(Ok(Err(e))) => Err(format!("PostgreSQL: {}", describe(&e))),
            Some(Err(e)) => Err(format!("PostgreSQL: {e}")),
            None => Err("PostgreSQL: the connection attempt timed out".into()),
        }
    }
}

/// A connection error with its cause (tokio-postgres's own text is often just "error
/// connecting to server").
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
    use std::error::Error;
    match e.source() {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .idle
            .clear();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
