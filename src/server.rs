//! Start-up and the listener: prepares the data directory, store, keys and certificate
//! (SPEC §4), then accepts connections with a cap, a TLS handshake timeout, hyper's
//! header-read timer, and a graceful drain on SIGTERM.

use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hyper::server::conn::http1;

use crate::http::framing::{Framing, Sniffed};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::config::Config;
use crate::http::App;
use crate::keys::KeySet;
use crate::model::{Alg, KeyState};
use crate::store::prelude::*;

/// Security baseline §4.7.
const MAX_CONNECTIONS: usize = 1024;
/// Connections one address (IPv6: one /64) may hold at once: a quarter of the whole, so
/// no single address can take them all (an office behind one NAT has room: idle
/// connections close after the header-read timeout).
const MAX_CONNECTIONS_PER_SOURCE: usize = 256;
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);
const SETUP_LINK_TTL: i64 = 3600;

/// Everything start-up creates or loads before serving.
pub struct Prepared {
    pub store: Arc<dyn Store>,
    pub keys: KeySet,
    pub csrf_secret: Vec<u8>,
    pub dummy_hash: String,
    /// The one-time setup link, while no administrator exists.
    pub setup_link: Option<String>,
}

/// First start creates keys, secrets and the setup link; later starts load them.
pub fn prepare(config: &Config, now: i64) -> Result<Prepared, String> {
    crate::datadir::ensure_data_dir(&config.data_dir)?;
    let store = crate::datadir::open_store(config)?;
    let err = |e: crate::store::StoreError| e.to_string();

    let mut records = store.keys().map_err(err)?;
    for alg in [Alg::RS256, Alg::ES256] {
        if !records
            .iter()
            .any(|k| k.alg == alg && k.state == KeyState::Active)
        {
            let rec = crate::keys::signing::generate(alg, now).map_err(|e| e.to_string())?;
            store.put_key(&rec).map_err(err)?;
            tracing::info!(kid = %rec.kid, alg = alg.as_str(), "generated a signing key");
            records.push(rec);
        }
    }
    // Nodes that start together on an empty shared store each add keys: every node uses
    // all of them (the newest active one signs, the same on each node).
    if store.shared() {
        records = store.keys().map_err(err)?;
    }
    let keys = KeySet::from_records(&records).map_err(|e| format!("signing keys: {e}"))?;

    let csrf_secret = match store
        .meta("csrf_secret")
        .map_err(err)?
        .and_then(|s| STANDARD.decode(s).ok())
    {
        Some(s) if s.len() == 32 => s,
        _ => {
            let s = crate::clock::random_bytes::<32>().to_vec();
            // One secret for every node, whichever starts first.
            let kept = store
                .put_meta_if_absent("csrf_secret", &STANDARD.encode(&s))
                .map_err(err)?;
            STANDARD
                .decode(kept)
                .ok()
                .filter(|k| k.len() == 32)
                .ok_or("csrf_secret: unreadable in the store")?
        }
    };

    // A hash to verify against when the username is unknown, so that failures take the
    // same time either way; remade when the argon2 parameters change.
    let dummy_hash = match store.meta("dummy_hash").map_err(err)? {
        Some(h) if !crate::keys::password::needs_rehash(&h, &config.password) => h,
        _ => {
            let h = crate::keys::password::hash(&crate::clock::random_token(), &config.password)?;
            store.put_meta("dummy_hash", &h).map_err(err)?;
            h
        }
    };

    let setup_link = if crate::admin::admin_exists(store.as_ref()).map_err(err)? {
        let _ = store.delete_meta(crate::admin::SETUP_TOKEN_KEY);
        None
    } else {
        let token = crate::clock::random_token();
        let value = format!(
            "{}:{}",
            crate::keys::token_hash(&token),
            now + SETUP_LINK_TTL
        );
        store
            .put_meta(crate::admin::SETUP_TOKEN_KEY, &value)
            .map_err(err)?;
        Some(format!("{}/setup?token={token}", config.issuer))
    };

    Ok(Prepared {
        store,
        keys,
        csrf_secret,
        dummy_hash,
        setup_link,
    })
}

/// What new connections are served with; replaced as a whole on SIGHUP.
struct Live {
    app: Arc<App>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

type Current = Arc<std::sync::RwLock<Arc<Live>>>;

fn current(c: &Current) -> Arc<Live> {
    match c.read() {
        Ok(l) => l.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

fn set_cert_expiry(app: &App) {
    let t = crate::tls::certificate_path(&app.config)
        .and_then(|c| crate::tls::certificate_expiry(&c))
        .unwrap_or(0);
    app.cert_expiry
        .store(t, std::sync::atomic::Ordering::Relaxed);
}

/// SIGHUP: reads the configuration and the TLS files again. An invalid configuration (or
/// one that changes what only a restart can: listen address, data directory) is refused
/// and the running one kept. Open connections finish with what they started with.
fn reload(live: &Current, config_path: Option<&Path>) -> Result<(), String> {
    let new = crate::config::load(config_path).map_err(|e| e.to_string())?;
    let old = current(live);
    if new.listen != old.app.config.listen || new.data_dir != old.app.config.data_dir {
        return Err("listen and data_dir change only with a restart".into());
    }
    let tls =
        crate::tls::server_config(&new, crate::clock::now())?.map(tokio_rustls::TlsAcceptor::from);
    let app = Arc::new(old.app.reconfigured(new)?);
    set_cert_expiry(&app);
    let next = Arc::new(Live { app, tls });
    match live.write() {
        Ok(mut l) => *l = next,
        Err(poisoned) => *poisoned.into_inner() = next,
    }
    Ok(())
}

/// Runs the server until SIGTERM or Ctrl-C; SIGHUP reloads. `config_path` is what
/// `--config` said, for reloading.
pub async fn run(config: Config, config_path: Option<std::path::PathBuf>) -> Result<(), String> {
    let now = crate::clock::now();
    let prepared = prepare(&config, now)?;
    let tls = crate::tls::server_config(&config, now)?.map(tokio_rustls::TlsAcceptor::from);
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("listen {}: {e}", config.listen))?;
    let admin_listener =
        crate::admin::socket::bind(&config.data_dir).map_err(|e| format!("admin socket: {e}"))?;

    let store: Arc<dyn Store> = prepared.store.clone();
    let app = Arc::new(App::new(
        config,
        store.clone(),
        prepared.keys,
        &prepared.csrf_secret,
        prepared.dummy_hash,
    )?);
    set_cert_expiry(&app);
    let live: Current = Arc::new(std::sync::RwLock::new(Arc::new(Live {
        app: app.clone(),
        tls,
    })));

    let (for_keys, for_config) = (live.clone(), live.clone());
    let after: crate::admin::socket::AfterCommand = Arc::new(move |name: &str| {
        if name.starts_with("mail.") || name.starts_with("user.invite") {
            current(&for_keys).app.mail_wake.wake();
        }
        if name.starts_with("keys.")
            && let Err(e) = current(&for_keys).app.reload_keys()
        {
            tracing::error!(error = %e, "could not reload signing keys");
        }
    });
    let config_now: crate::admin::socket::CurrentConfig =
        Arc::new(move || Arc::new(current(&for_config).app.config.clone()));
    tokio::spawn(crate::admin::socket::serve(
        admin_listener,
        store.clone(),
        config_now,
        after,
    ));
    let maintenance = maintenance(live.clone());
    mail_worker(live.clone());
    tokio::spawn(directory_worker(live.clone()));
    if store.shared() {
        tokio::spawn(key_watcher(live.clone()));
    }

    let first = current(&live);
    let cfg = &first.app.config;
    tracing::info!(
        listen = %cfg.listen,
        issuer = %cfg.issuer,
        tls = first.tls.is_some(),
        data_dir = %cfg.data_dir.display(),
        "latchkey is ready"
    );
    if let Some(link) = &prepared.setup_link {
        // The administrator needs this link; it is printed, never logged through tracing.
        println!(
            "No administrator exists yet. Create one within the next hour at:\n\n    {link}\n"
        );
        if first.tls.is_some() && matches!(cfg.tls, crate::config::TlsMode::SelfSigned) {
            let (cert, _) = crate::tls::self_signed_paths(&cfg.data_dir);
            println!(
                "The certificate is self-signed; trust {} on client machines.\n",
                cert.display()
            );
        }
    }
    let data_dir = cfg.data_dir.clone();
    drop(first);
    crate::notify::notify("READY=1\nSTATUS=serving");
    if let Some(every) = crate::notify::watchdog_interval() {
        tokio::spawn(watchdog(store.clone(), every));
    }

    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let shares = crate::signin::throttle::ConnectionShares::new(MAX_CONNECTIONS_PER_SOURCE);
    let (stop_tx, stop_rx) = watch::channel(false);
    let signal =
        |kind| tokio::signal::unix::signal(kind).map_err(|e| format!("signal handler: {e}"));
    let mut terminate = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hangup = signal(tokio::signal::unix::SignalKind::hangup())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    drop(tcp);
                    continue;
                };
                let (now_live, stop) = (current(&live), stop_rx.clone());
                // A trusted reverse proxy carries everyone's connections: no share for it.
                let slot = if now_live.app.config.trusted_proxies.contains(&peer.ip()) {
                    None
                } else {
                    match shares.take(peer.ip()) {
                        Some(slot) => Some(slot),
                        None => {
                            drop(tcp);
                            continue;
                        }
                    }
                };
                tokio::spawn(async move {
                    let (_permit, _slot) = (permit, slot);
                    let _ = tcp.set_nodelay(true);
                    let app = now_live.app.clone();
                    match &now_live.tls {
                        Some(acceptor) => {
                            if let Ok(Ok(stream)) = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                                let (io, framing) = Sniffed::new(stream);
                                connection(app, TokioIo::new(io), framing, peer, stop).await;
                            }
                        }
                        None => {
                            let (io, framing) = Sniffed::new(tcp);
                            connection(app, TokioIo::new(io), framing, peer, stop).await
                        }
                    }
                });
            }
            _ = hangup.recv() => {
                crate::notify::reloading();
                match reload(&live, config_path.as_deref()) {
                    Ok(()) => tracing::info!("configuration and TLS certificate reloaded"),
                    Err(e) => tracing::error!(error = %e, "reload refused; the running configuration stays"),
                }
                crate::notify::notify("READY=1\nSTATUS=serving");
            }
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }

    crate::notify::notify("STOPPING=1\nSTATUS=draining connections");
    tracing::info!("shutting down: draining connections");
    drop(listener);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(
        DRAIN_TIMEOUT,
        connections.acquire_many(MAX_CONNECTIONS as u32),
    )
    .await;
    let _ = std::fs::remove_file(crate::admin::socket::path(&data_dir));
    // The maintenance thread lets go of the store, so it is closed cleanly (a restart
    // then needs no repair).
    if let Some((stop, thread)) = maintenance {
        drop(stop);
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    // Refusals still waiting for their window are written now, then pending
    // non-durable commits (sessions, codes, audit events) are persisted before exit.
    let app = current(&live).app.clone();
    let _ = tokio::task::spawn_blocking(move || app.write_refusals(true)).await;
    let s = store.clone();
    let _ = tokio::task::spawn_blocking(move || s.purge_expired(crate::clock::now())).await;
    current(&live).app.access_log.flush();
    tracing::info!("stopped");
    Ok(())
}

/// Tells systemd the service is alive, as long as the store answers.
async fn watchdog(store: Arc<dyn Store>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let s = store.clone();
        if let Ok(Ok(Some(_))) = tokio::task::spawn_blocking(move || s.meta("schema_version")).await
        {
            crate::notify::notify("WATCHDOG=1");
        }
    }
}

async fn connection<I>(
    app: Arc<App>,
    io: I,
    framing: Arc<std::sync::Mutex<Framing>>,
    peer: std::net::SocketAddr,
    mut stop: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        // SPEC §8 / RFC 9112 §6.1: Content-Length with Transfer-Encoding is refused
        // (hyper, which would process it by Transfer-Encoding, hides the pair).
        let smuggled = framing.lock().map(|mut f| f.next_verdict()).unwrap_or(true);
        let app = app.clone();
        async move {
            if smuggled {
                return Ok(crate::http::response::closing(
                    hyper::StatusCode::BAD_REQUEST,
                    "Content-Length together with Transfer-Encoding",
                ));
            }
            crate::http::serve_hyper(app, req, peer).await
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        // A head past this is answered 431 by hyper; smaller limits are in `http::head`.
        .max_buf_size(32 * 1024)
        .keep_alive(true);
    let conn = builder.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Once a minute: removes expired records and audit events past their retention
/// (persisting non-durable commits), drops retired keys whose tokens have all expired,
/// and rotates keys that are due. On one long-lived thread: the memory a purge allocates
/// is then reused by the next one, where tokio's changing blocking threads left it in a
/// different allocator arena each minute (RSS crept up by about 15 MiB a minute).
fn maintenance(live: Current) -> Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)> {
    let (stop, stopped) = mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("maintenance".into())
        .spawn(move || {
            // Runs once a minute until `stop` is dropped.
            while let Err(mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(MAINTENANCE_INTERVAL)
            {
                let a = current(&live).app.clone();
                let now = crate::clock::now();
                // Aggregated refusal events whose window has passed.
                a.write_refusals(false);
                let result = (|| {
                    // On a shared store, one node at a time (the lease outlives a minute,
                    // so the node that has it keeps it while it runs).
                    if !a
                        .store
                        .lease("maintenance", node_id(), now, 150)
                        .map_err(|e| e.to_string())?
                    {
                        return Ok(0);
                    }
                    let mut removed = a.store.purge_expired(now).map_err(|e| e.to_string())?;
                    removed += a
                        .store
                        .purge_audit(now - a.config.audit_retention)
                        .map_err(|e| e.to_string())?;
                    if key_housekeeping(a.store.as_ref(), &a.config, now)? {
                        a.reload_keys()?;
                    }
                    Ok::<usize, String>(removed)
                })();
                match result {
                    Ok(n) if n > 0 => tracing::debug!(removed = n, "expired records removed"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "maintenance failed"),
                }
            }
        });
    match spawned {
        Ok(thread) => Some((stop, thread)),
        Err(e) => {
            tracing::error!(error = %e, "could not start the maintenance thread");
            None
        }
    }
}

/// This process, as the holder of leases on a shared store: its host name (for people
/// reading `meta`) and a random part, so two processes are never one holder (containers
/// share host names and paths). A restarted node waits for its old leases to run out.
pub fn node_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}:{}", host.trim(), crate::clock::random_id())
    })
}

/// How often a node on a shared store looks for signing keys another node changed.
const KEY_WATCH: Duration = Duration::from_secs(5);

/// On a shared store: reloads the signing keys when another node rotated, retired or
/// removed one, so every node signs with the same key and publishes the same JWKS.
async fn key_watcher(live: Current) {
    let mut seen: Option<Vec<(String, String)>> = None;
    loop {
        tokio::time::sleep(KEY_WATCH).await;
        let a = current(&live).app.clone();
        let store = a.store.clone();
        let Ok(Ok(records)) = tokio::task::spawn_blocking(move || store.keys()).await else {
            continue;
        };
        let mut now_seen: Vec<(String, String)> = records
            .iter()
            .map(|k| (k.kid.clone(), format!("{:?}", k.state)))
            .collect();
        now_seen.sort();
        // The first look reloads too: a change may have come between this node's start
        // and its first look.
        if seen.as_ref() != Some(&now_seen) {
            match tokio::task::spawn_blocking(move || a.reload_keys()).await {
                Ok(Ok(())) => {
                    tracing::debug!("signing keys reloaded from the shared store");
                    seen = Some(now_seen);
                }
                // Tried again at the next look.
                Ok(Err(e)) => tracing::warn!(error = %e, "could not reload the signing keys"),
                Err(_) => {}
            }
        }
    }
}

/// How often the server checks that the directory answers (a bind as the service
/// account), for `/healthz` and the metrics.
const DIRECTORY_PROBE: std::time::Duration = std::time::Duration::from_secs(60);

/// With `[ldap]` (SPEC §11): checks the directory every minute and syncs it at start and
/// every `sync_interval_secs` (0: never on its own). The configuration in force is read
/// at each turn, so a SIGHUP that adds, changes or removes `[ldap]` takes effect.
async fn directory_worker(live: Current) {
    let mut next_sync = 0;
    loop {
        // Each turn in a task of its own: a panic in it (a malformed answer) ends the
        // turn, not the worker.
        let turn = tokio::spawn(directory_turn(live.clone(), next_sync)).await;
        next_sync = turn.unwrap_or_else(|_| {
            tracing::error!("the directory check failed; trying again in a minute");
            next_sync
        });
        tokio::time::sleep(DIRECTORY_PROBE).await;
    }
}

/// One turn of [`directory_worker`]; returns when the next sync is due.
async fn directory_turn(live: Current, mut next_sync: i64) -> i64 {
    {
        let a = current(&live).app.clone();
        if let (Some(dir), Some(s)) = (a.directory.clone(), a.config.ldap.as_ref()) {
            let up = dir.probe().await;
            if let Err(e) = &up {
                tracing::warn!(error = %e, "the directory does not answer");
            }
            a.directory_health.saw(up.is_ok());
            let now = crate::clock::now();
            let every = i64::try_from(s.sync_interval_secs).unwrap_or(i64::MAX);
            // One node at a time on a shared store, once per interval.
            let mine = || {
                a.store
                    .lease("directory-sync", node_id(), now, every.min(86_400))
                    .unwrap_or(false)
            };
            if up.is_ok() && every > 0 && now >= next_sync && mine() {
                let r = crate::ldap::sync::run(&dir, a.store.clone(), false, now).await;
                tracing::info!(
                    people = r.people,
                    created = r.created,
                    updated = r.updated,
                    disabled = r.disabled,
                    enabled = r.enabled,
                    problems = r.problems.len(),
                    error = r.error.as_deref().unwrap_or(""),
                    "directory synced"
                );
                next_sync = now.saturating_add(every);
            }
        }
    }
    next_sync
}

/// Longest sleep of the mail worker between looks at the outbox.
const MAIL_POLL: std::time::Duration = std::time::Duration::from_secs(30);

/// Sends queued mail (SPEC §12) on its own thread: SMTP is blocking and may take its
/// time. Wakes when a mail is queued, when the next retry is due, and every 30 seconds;
/// each attempt's outcome reaches the outbox, the audit log and the metrics. The thread
/// ends with the process (a mail cut off mid-send is retried at the next start).
fn mail_worker(live: Current) {
    let spawned = std::thread::Builder::new()
        .name("mail".into())
        .spawn(move || {
            loop {
                let a = current(&live).app.clone();
                let wait = match &a.mailer {
                    None => MAIL_POLL,
                    // On a shared store, one node sends (no mail twice).
                    Some(_)
                        if !a
                            .store
                            .lease("mail", node_id(), crate::clock::now(), 90)
                            .unwrap_or(false) =>
                    {
                        MAIL_POLL
                    }
                    // A bug in one pass must not stop mail for good.
                    Some(mailer) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        send_due_mail(&a, mailer)
                    }))
                    .unwrap_or_else(|_| {
                        tracing::error!("the mail pass failed; trying again shortly");
                        MAIL_POLL
                    }),
                };
                let wake = a.mail_wake.clone();
                drop(a);
                wake.wait(wait);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the mail thread");
    }
}

/// One pass over the outbox; returns how long to sleep.
fn send_due_mail(a: &App, mailer: &crate::mail::Mailer) -> std::time::Duration {
    use crate::mail::outbox;
    let now = crate::clock::now();
    let all = match a.store.outbox() {
        Ok(all) => all,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the outbox");
            return MAIL_POLL;
        }
    };
    let (due, next) = outbox::due(&all, now);
    let retry = a.config.mail.as_ref().map_or(30, |m| m.retry_secs);
    for m in &due {
        let now = crate::clock::now();
        // Still the same request, still due? (A command may have replaced or sent it.)
        match a.store.mail(&m.key()) {
            Ok(Some(cur)) if cur.id == m.id && !cur.gave_up && cur.next_attempt <= now => {}
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the outbox");
                continue;
            }
        }
        let outcome = outbox::deliver(
            a.store.as_ref(),
            &a.config.issuer,
            &a.config.instance_name,
            mailer,
            m,
            now,
        );
        let who = a.username(&m.user_id);
        match outbox::record(a.store.as_ref(), m, &who, &outcome, retry, now) {
            Ok(e) => a.audit(&e.kind, e.user.as_deref(), None, None, &e.detail, now),
            Err(e) => tracing::warn!(error = %e, "could not record a mail's outcome"),
        }
        if let outbox::Outcome::Failed(e) = &outcome {
            tracing::warn!(kind = m.kind.as_str(), error = %e, "mail not sent; it will be retried");
        }
    }
    if !due.is_empty() {
        // Attempts took time and may have queued retries: look again soon.
        return std::time::Duration::from_secs(1);
    }
    let until = next.map_or(MAIL_POLL.as_secs() as i64, |t| t - now);
    std::time::Duration::from_secs(until.clamp(1, MAIL_POLL.as_secs() as i64) as u64)
}

/// Drops retired keys no token can still need and rotates active keys older than the
/// configured period. Returns whether the key set changed.
pub fn key_housekeeping(store: &dyn Store, config: &Config, now: i64) -> Result<bool, String> {
    use crate::keys::signing;
    let l = &config.lifetimes;
    let longest = l.id_token.max(l.access_token).max(120);
    let records = store.keys().map_err(|e| e.to_string())?;
    let mut changed = false;
    for k in records
        .iter()
        .filter(|k| signing::retired_long_enough(k, now, longest))
    {
        store.delete_key(&k.kid).map_err(|e| e.to_string())?;
        tracing::info!(kid = %k.kid, "retired signing key dropped from the JWKS");
        changed = true;
    }
    for alg in [Alg::RS256, Alg::ES256] {
        let due = records
            .iter()
            .any(|k| k.alg == alg && signing::due_for_rotation(k, now, config.key_rotation));
        if due {
            let rotated = signing::rotate(&records, alg, now).map_err(|e| e.to_string())?;
            store.put_keys(&rotated).map_err(|e| e.to_string())?;
            tracing::info!(alg = alg.as_str(), "signing key rotated on schedule");
            changed = true;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn housekeeping_drops_expired_retired_keys_and_rotates_on_schedule() {
        let dir = TempDir::new("housekeeping");
        let store = crate::store::redb::RedbStore::open(&dir.path().join("db.redb")).unwrap();
        let mut config = crate::config::parse(
            None,
            &crate::config::Env {
                hostname: "h".into(),
                ..Default::default()
            },
        )
        .unwrap();
        config.key_rotation = Some(86_400);
        let t0 = 1_000_000;
        store
            .put_key(&crate::keys::signing::generate(Alg::ES256, t0).unwrap())
            .unwrap();
        store
            .put_key(&crate::keys::signing::generate(Alg::RS256, t0).unwrap())
            .unwrap();
        // Nothing due yet.
        assert!(!key_housekeeping(&store, &config, t0 + 100).unwrap());
        // A day later both keys rotate; the retired ones stay while tokens may live.
        let t1 = t0 + 86_400;
        assert!(key_housekeeping(&store, &config, t1).unwrap());
        let keys = store.keys().unwrap();
        assert_eq!(keys.len(), 4);
        assert_eq!(
            keys.iter().filter(|k| k.state == KeyState::Retired).count(),
            2
        );
        assert!(!key_housekeeping(&store, &config, t1 + 900).unwrap());
        // Once the longest token lifetime (and a minute) has passed they leave.
        assert!(key_housekeeping(&store, &config, t1 + 900 + 61).unwrap());
        let keys = store.keys().unwrap();
        assert_eq!(keys.len(), 2);
        assert!(
            keys.iter()
                .all(|k| k.state == KeyState::Active && k.created_at == t1)
        );
    }
}
