//! Connections to PostgreSQL: tokio-postgres clients kept in a pool of at most `size`,
//! each with its prepared statements and a single-threaded runtime of its own on which
//! the thread using it drives its socket ([`Driver`]). The store's roles are synchronous
//! (as on redb): a caller waits for its answers on its own thread, never inside another
//! runtime, so the store works the same from the server's workers, blocking threads and
//! command-line tools.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll};
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

/// The answer of one request to the connection.
type PgResult<T> = std::result::Result<T, tokio_postgres::Error>;
/// A connection's socket work (tokio-postgres's `Connection`, with or without TLS).
type Socket = Pin<Box<dyn Future<Output = PgResult<()>> + Send>>;

/// Drives one connection on the thread that waits for its answers: a single-threaded
/// runtime of the connection's own runs the socket work and the request together, so a
/// round trip costs the caller one wake-up (its own `epoll_wait` returning) and no
/// hand-over to another thread, as with the synchronous `postgres` crate.
struct Driver {
    /// Dropped with `shutdown_background`, never blocking.
    runtime: Option<tokio::runtime::Runtime>,
    /// `None` once the connection has ended: the client's requests then fail as closed.
    socket: Option<Socket>,
}

impl Driver {
    fn new() -> std::result::Result<Driver, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("PostgreSQL runtime: {e}"))?;
        Ok(Driver {
            runtime: Some(runtime),
            socket: None,
        })
    }

    /// Runs `fut` to completion, driving the socket meanwhile, for at most `deadline`.
    /// `None`: the deadline passed.
    fn drive<F: Future + Send>(&mut self, fut: F, deadline: Duration) -> Option<F::Output>
    where
        F::Output: Send,
    {
        self.on_free_thread(move |d| {
            let runtime = d.runtime.as_ref()?;
            let socket = &mut d.socket;
            runtime.block_on(async {
                let mut fut = std::pin::pin!(fut);
                let work = std::future::poll_fn(|cx| {
                    // The request first (it queues itself to the connection), then the
                    // socket (which sends it and reads answers), then the request again.
                    if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                        return Poll::Ready(v);
                    }
                    poll_socket(socket, cx);
                    fut.as_mut().poll(cx)
                });
                tokio::time::timeout(deadline, work).await.ok()
            })
        })
    }

    /// Gives the socket a turn without waiting: sends what is queued, reads what has
    /// arrived, and notices a connection the server has closed.
    fn turn(&mut self) {
        self.on_free_thread(|d| {
            let Some(runtime) = d.runtime.as_ref() else {
                return;
            };
            let socket = &mut d.socket;
            runtime.block_on(async {
                // The runtime looks at the socket's readiness before the next poll.
                tokio::task::yield_now().await;
                std::future::poll_fn(|cx| {
                    poll_socket(socket, cx);
                    Poll::Ready(())
                })
                .await;
            });
        });
    }

    /// Runs `f` on this thread, or on a thread of its own when this one is inside a
    /// runtime already (which cannot be entered twice): only the single-threaded
    /// runtimes of command-line tools call the store so; the server's calls leave its
    /// runtime through `block_in_place`.
    fn on_free_thread<R: Send>(&mut self, f: impl FnOnce(&mut Driver) -> R + Send) -> R {
        let inside = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        if !inside {
            return f(self);
        }
        std::thread::scope(|s| {
            s.spawn(|| f(self))
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    fn ended(&self) -> bool {
        self.socket.is_none()
    }
}

/// One turn of the connection's socket work; an ended connection is dropped.
fn poll_socket(socket: &mut Option<Socket>, cx: &mut Context<'_>) {
    let Some(s) = socket.as_mut() else {
        return;
    };
    if let Poll::Ready(r) = s.as_mut().poll(cx) {
        if let Err(e) = r {
            tracing::warn!(error = %e, "PostgreSQL connection ended");
        }
        *socket = None;
    }
}

impl Drop for Driver {
    /// The connection's client is gone by now (`Conn` drops it first): one last turn of
    /// the socket sends the server a Terminate instead of dropping the connection on it.
    fn drop(&mut self) {
        if self.socket.is_some() {
            if tokio::runtime::Handle::try_current().is_ok() {
                // Perhaps a runtime's worker, where no runtime can be entered.
                std::thread::scope(|s| {
                    let _ = s.spawn(|| self.turn()).join();
                });
            } else {
                self.turn();
            }
        }
        self.socket = None;
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
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
///
/// Fields are dropped in order: everything holding the client before the driver.
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
    driver: Driver,
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
        let client = self.client.clone();
        let s = self.run(async move { client.prepare(sql).await })?;
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    /// Waits for a request's answer, driving the connection meanwhile.
    fn run<T: Send>(
        &mut self,
        request: impl Future<Output = PgResult<T>> + Send,
    ) -> std::result::Result<T, DbError> {
        if self.broken.get() {
            // Its requests after a timeout or a failure would each wait out the deadline.
            return Err(DbError {
                error: StoreError::Unavailable("the PostgreSQL connection failed".into()),
                retry: false,
            });
        }
        match self.driver.drive(request, DEADLINE) {
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

    /// [`Conn::run`] for a request sent now, behind the statements sent earlier (in the
    /// same round trip): their answers are read first.
    fn run_behind_later<T: Send>(
        &mut self,
        request: impl Future<Output = PgResult<T>> + Send,
    ) -> std::result::Result<T, DbError> {
        let mut request = Box::pin(request);
        // Polled once, the request is queued to the connection.
        let ready = request
            .as_mut()
            .poll(&mut Context::from_waker(std::task::Waker::noop()));
        self.collect_later()?;
        match ready {
            Poll::Ready(r) => r.map_err(db_error),
            Poll::Pending => self.run(request),
        }
    }

    /// Reads the answers of the statements sent earlier, in order; the first failure.
    fn collect_later(&mut self) -> std::result::Result<(), DbError> {
        let mut first = Ok(());
        for fut in std::mem::take(&mut self.later) {
            let r = self.run(fut).map(|_| ());
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
    pub(super) fn execute_later<P: ToSql + Sync + Send + 'static>(
        &mut self,
        sql: &str,
        params: Vec<P>,
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
            let client = self.client.clone();
            return self.run_behind_later(async move { client.query(&s, params).await });
        }
        self.run_opening(|c| async move { c.query(&s, params).await })
    }

    pub(super) fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<u64, DbError> {
        let s = self.statement(sql)?;
        self.collect_later()?;
        self.run_opening(|c| async move { c.execute(&s, params).await })
    }

    /// [`Conn::run`] for the request `make` makes, sent in one round trip after the
    /// transaction's BEGIN when that is still to be sent.
    fn run_opening<T: Send, F>(
        &mut self,
        make: impl FnOnce(Arc<Client>) -> F,
    ) -> std::result::Result<T, DbError>
    where
        F: Future<Output = PgResult<T>> + Send,
    {
        let c = self.client.clone();
        match self.begin.take() {
            None => self.run(make(c)),
            Some(begin) => {
                self.opened = true;
                let b = c.clone();
                // Nothing is sent before the first poll, which reaches the BEGIN first.
                let request = make(c);
                self.run(async move {
                    let (began, out) = tokio::join!(b.batch_execute(begin), request);
                    began.and(out)
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
    /// (a read-only transaction, which has nothing to make durable; the answer is read
    /// with the connection's next request).
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
            return self.run_behind_later(async move { client.batch_execute("COMMIT").await });
        }
        self.collect_later()?;
        // Polled once, the request is queued to the connection; its answer is dropped.
        let mut commit = std::pin::pin!(self.client.batch_execute("COMMIT"));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if let Poll::Ready(Err(e)) = commit.as_mut().poll(&mut cx) {
            return Err(db_error(e));
        }
        // Sent now, so the transaction does not stay open while the connection is idle.
        self.driver.turn();
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
        let c = self.client.clone();
        self.run(async move { c.batch_execute(sql).await })
    }

    /// Whether the connection has ended (the server closed it, or it failed).
    fn is_closed(&self) -> bool {
        self.driver.ended() || self.client.is_closed()
    }
}

struct State {
    idle: Vec<Conn>,
    /// Connection attempts under way.
    connecting: usize,
    last_failure: Option<(Instant, String)>,
}

/// Its connections are driven by the threads that use them: every call comes through
/// `off` (see `postgres::off`), never from a runtime's worker directly.
pub(super) struct Pool {
    config: tokio_postgres::Config,
    tls: Option<Rustls>,
    state: Mutex<State>,
    freed: Condvar,
    size: usize,
    /// Connections open (see `Conn::alive`).
    alive: Arc<std::sync::atomic::AtomicUsize>,
}

impl Pool {
    pub(super) fn new(config: tokio_postgres::Config, tls: Option<Rustls>, size: usize) -> Pool {
        Pool {
            config,
            tls,
            state: Mutex::new(State {
                idle: Vec::new(),
                connecting: 0,
                last_failure: None,
            }),
            freed: Condvar::new(),
            size: size.max(1),
            alive: Arc::default(),
        }
    }

    /// A connection for one transaction; returned with [`Pool::give_back`].
    pub(super) fn take(&self) -> Result<Conn> {
        let deadline = Instant::now() + CHECKOUT_WAIT;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(mut c) = state.idle.pop() {
                drop(state);
                // Reads what arrived while it was idle: the answer to a read-only
                // COMMIT, or the end of a connection the server has closed.
                c.driver.turn();
                if !c.is_closed() {
                    return Ok(c);
                }
                drop(c);
                state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                continue;
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
        let unusable = c.broken.get() || c.is_closed() || !c.later.is_empty() || c.opened;
        // Dropped outside the lock (its runtime shuts down): its slot is free again.
        let dropped = if unusable {
            Some(c)
        } else {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.idle.push(c);
            None
        };
        drop(dropped);
        self.freed.notify_one();
    }

    /// Forgets idle connections (after the database was restarted, say).
    pub(super) fn clear(&self) {
        let idle = std::mem::take(
            &mut self
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .idle,
        );
        drop(idle);
    }

    fn connect(&self) -> std::result::Result<Conn, String> {
        let mut driver = Driver::new()?;
        let config = self.config.clone();
        let tls = self.tls.clone();
        let made = driver.drive(
            async move {
                match tls {
                    Some(tls) => {
                        let (client, conn) = config.connect(tls).await?;
                        Ok::<_, tokio_postgres::Error>((client, Box::pin(conn) as Socket))
                    }
                    None => {
                        let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
                        Ok((client, Box::pin(conn) as Socket))
                    }
                }
            },
            DEADLINE + Duration::from_secs(1),
        );
        match made {
            Some(Ok((client, socket))) => {
                driver.socket = Some(socket);
                self.alive.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(Conn {
                    client: Arc::new(client),
                    driver,
                    later: Vec::new(),
                    statements: HashMap::new(),
                    broken: std::cell::Cell::new(false),
                    begin: None,
                    opened: false,
                    alive: self.alive.clone(),
                })
            }
            Some(Err(e)) => Err(format!("PostgreSQL: {}", describe(&e))),
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
