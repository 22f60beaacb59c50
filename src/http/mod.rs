//! HTTP: the [`App`] service that turns a request into a response, the router, bounded
//! parsing of queries, forms and cookies, and one file per endpoint. With `server.rs`, the
//! only code that names hyper. Tests call [`App::respond`] directly, without a socket.

pub mod access_log;
mod account;
mod admin_pages;
mod authorize;
mod device;
pub mod framing;
pub mod head;
pub mod interaction;
mod introspection;
mod issue;
pub mod known;
mod login;
mod logout;
pub mod metrics;
mod par;
pub mod pool;
pub mod response;
pub mod routes;
pub mod signin;
pub mod throttle;
mod token;
mod userinfo;
mod well_known;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};
use hyper::{Method, Request, StatusCode};

use crate::config::{Config, TlsMode};
use crate::keys::{KeySet, MacKey};
use crate::model::{AuditEvent, Client, Session, User};
use crate::oidc::params::Params;
use crate::pages::Pages;
use crate::store::{Store, StoreError};

use interaction::Interactions;
use pool::HashPool;
use response::{Fail, Resp};
use throttle::Throttle;

tokio::task_local! {
    /// The id of the request being answered (one per request, made when it arrives).
    static REQUEST_ID: String;
}

/// The id of the request this task is answering: logged with it, sent as
/// `x-request-id`, and named on error pages. `None` outside a request.
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Largest request body accepted (security baseline §4.7: forms ≤ 16 KiB; a little more
/// for long request URIs posted to the authorization endpoint).
pub const MAX_BODY: usize = 32 * 1024;
/// Time a client gets to send its body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(15);

/// A request with its body read, as the handlers see it.
pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub peer: IpAddr,
    /// The clock, read once when the request arrived (milliseconds since the Unix epoch):
    /// every rule the request meets sees this one time. In-process tests set it freely.
    pub now_ms: i64,
}

impl Req {
    pub fn header(&self, name: impl header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn query_params(&self) -> Params {
        Params::parse(self.query.as_bytes())
    }

    /// Whether the body is `application/x-www-form-urlencoded` (parameters allowed).
    pub fn is_form(&self) -> bool {
        self.header(header::CONTENT_TYPE).is_some_and(|ct| {
            ct.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        })
    }

    pub fn form(&self) -> Params {
        Params::parse(&self.body)
    }

    /// The value of a cookie sent by the browser.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

/// Everything a request handler needs, shared by all connections.
///
/// Everything but `config` and `pages` is shared (`Arc`) with the `App` that a
/// configuration reload builds, so pending sign-ins, throttling counters, caches and
/// metrics survive SIGHUP.
pub struct App {
    pub config: Config,
    pub store: Arc<dyn Store>,
    keys: Arc<RwLock<Arc<KeySet>>>,
    /// The JWKS document of `keys`, serialised when they change (served as it is).
    jwks: Arc<RwLock<Bytes>>,
    /// The discovery document of this issuer, serialised once.
    discovery: Bytes,
    pub pages: Pages,
    pub pool: Arc<HashPool>,
    /// Wrong passwords, per username and source address, or per known browser.
    pub throttle: Arc<Throttle>,
    /// Wrong second-factor codes, per user id and source address, or per known browser;
    /// cleared only by a correct code.
    pub mfa_throttle: Arc<Throttle>,
    /// Wrong device user codes, per signed-in user, and wrong reset links, per address.
    pub code_throttle: Arc<Throttle>,
    /// Failed client authentications, per client.
    pub client_throttle: Arc<throttle::ClientThrottle>,
    /// The ceiling on aggregated refusal events in the audit log.
    audit_gate: Arc<throttle::AuditGate>,
    /// Throttled attempts waiting to become aggregated audit events.
    refusals: Arc<throttle::RefusalLog>,
    pub secret_cache: Arc<crate::keys::SecretCache>,
    pub interactions: Arc<Interactions>,
    /// Sign-ins waiting for a second factor or a new password.
    pub pendings: Arc<interaction::Expiring<signin::Pending>>,
    /// Client JWK Sets fetched from their jwks_uri, with the time they were fetched.
    jwks_cache: Arc<std::sync::Mutex<std::collections::HashMap<String, (serde_json::Value, i64)>>>,
    /// Pushed authorization requests waiting for the browser (RFC 9126).
    pub pushed: Arc<par::Pushed>,
    /// Device codes not yet expired, by source and client (RFC 8628).
    pub device_codes: Arc<device::Outstanding>,
    pub metrics: Arc<metrics::Metrics>,
    /// Unix time the served TLS certificate expires (0: no TLS), for metrics.
    pub cert_expiry: Arc<std::sync::atomic::AtomicI64>,
    /// Connections Latchkey opens itself (back-channel logout).
    pub outbound: Arc<crate::outbound::Outbound>,
    macs: Arc<Macs>,
    dummy_hash: Arc<String>,
    /// One line per request, written off the request path.
    pub access_log: access_log::AccessLog,
}

/// One key per kind of signed value, derived from the server secret: a CSRF token never
/// verifies as a trusted-browser or known-browser cookie, nor the other way round.
pub struct Macs {
    pub csrf: MacKey,
    pub trusted: MacKey,
    pub known: MacKey,
}

impl Macs {
    fn new(secret: &[u8]) -> Macs {
        Macs {
            // CSRF tokens keep the key they always had, so open forms survive an upgrade.
            csrf: MacKey::new(secret),
            trusted: MacKey::derive(secret, "latchkey trusted-browser v1"),
            known: MacKey::derive(secret, "latchkey known-browser v1"),
        }
    }
}

/// A signed-in browser: the stored session (with its hash) and its user.
pub struct SignedIn {
    pub hash: String,
    pub session: Session,
    pub user: User,
}

impl App {
    /// Builds the service from a validated configuration and an initialised store (keys
    /// and the CSRF secret exist: see `server::prepare`).
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        keys: KeySet,
        csrf_secret: &[u8],
        dummy_hash: String,
    ) -> Result<App, String> {
        let pages = Pages::new(&config.instance_name, config.logo.is_some())?;
        Ok(App {
            pool: Arc::new(HashPool::new(
                config.password.pool_threads,
                config.password.pool_queue,
            )),
            throttle: Arc::new(Throttle::new(&config.login)),
            mfa_throttle: Arc::new(Throttle::new(&config.login)),
            code_throttle: Arc::new(Throttle::new(&config.login)),
            client_throttle: Default::default(),
            audit_gate: Default::default(),
            refusals: Default::default(),
            secret_cache: Default::default(),
            interactions: Default::default(),
            pendings: Arc::new(interaction::Expiring::new(signin::PENDING_TTL)),
            outbound: Arc::new(crate::outbound::Outbound::new()),
            metrics: Default::default(),
            cert_expiry: Default::default(),
            pushed: Default::default(),
            device_codes: Default::default(),
            jwks_cache: Default::default(),
            jwks: Arc::new(RwLock::new(Bytes::from(keys.jwks().to_string()))),
            keys: Arc::new(RwLock::new(Arc::new(keys))),
            discovery: discovery_document(&config.issuer),
            macs: Arc::new(Macs::new(csrf_secret)),
            dummy_hash: Arc::new(dummy_hash),
            access_log: access_log::AccessLog::start(config.log_json),
            pages,
            config,
            store,
        })
    }

    /// The same service with a new configuration (SIGHUP): state is shared, the pages are
    /// rebuilt for the new instance name. The listener, data directory and hashing pool
    /// stay as they are until a restart.
    pub fn reconfigured(&self, config: Config) -> Result<App, String> {
        Ok(App {
            discovery: discovery_document(&config.issuer),
            pages: Pages::new(&config.instance_name, config.logo.is_some())?,
            config,
            store: self.store.clone(),
            keys: self.keys.clone(),
            jwks: self.jwks.clone(),
            pool: self.pool.clone(),
            throttle: self.throttle.clone(),
            client_throttle: self.client_throttle.clone(),
            audit_gate: self.audit_gate.clone(),
            refusals: self.refusals.clone(),
            mfa_throttle: self.mfa_throttle.clone(),
            code_throttle: self.code_throttle.clone(),
            secret_cache: self.secret_cache.clone(),
            interactions: self.interactions.clone(),
            pendings: self.pendings.clone(),
            jwks_cache: self.jwks_cache.clone(),
            pushed: self.pushed.clone(),
            device_codes: self.device_codes.clone(),
            metrics: self.metrics.clone(),
            cert_expiry: self.cert_expiry.clone(),
            outbound: self.outbound.clone(),
            macs: self.macs.clone(),
            dummy_hash: self.dummy_hash.clone(),
            access_log: self.access_log.clone(),
        })
    }

    /// The current key set (cheap clone of an `Arc`; no lock is held afterwards).
    pub fn keys(&self) -> Arc<KeySet> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The JWKS document (a cheap clone of shared bytes).
    pub fn jwks_document(&self) -> Bytes {
        match self.jwks.read() {
            Ok(j) => j.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The discovery document (a cheap clone of shared bytes).
    pub fn discovery_document(&self) -> Bytes {
        self.discovery.clone()
    }

    /// Reloads the signing keys from the store (after a rotation or pruning).
    pub fn reload_keys(&self) -> Result<(), String> {
        let records = self.store.keys().map_err(|e| e.to_string())?;
        let keys = KeySet::from_records(&records).map_err(|e| e.to_string())?;
        let jwks = Bytes::from(keys.jwks().to_string());
        match self.keys.write() {
            Ok(mut k) => *k = Arc::new(keys),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(keys),
        }
        match self.jwks.write() {
            Ok(mut j) => *j = jwks,
            Err(poisoned) => *poisoned.into_inner() = jwks,
        }
        Ok(())
    }

    /// A client's public keys for private_key_jwt: registered by value, or fetched from its
    /// jwks_uri (cached five minutes; `fresh` refetches after a failed verification).
    pub async fn client_jwks(
        &self,
        client: &Client,
        fresh: bool,
        now: i64,
    ) -> Result<serde_json::Value, String> {
        if let Some(j) = &client.jwks {
            return serde_json::from_str(j).map_err(|e| e.to_string());
        }
        let uri = client.jwks_uri.as_ref().ok_or("the client has no keys")?;
        // Cached for five minutes; a refetch after a failed check at most once a minute, so
        // bad assertions cannot make Latchkey hammer the client's server.
        if let Ok(cache) = self.jwks_cache.lock()
            && let Some((v, at)) = cache.get(uri)
            && (now - at < 60 || (!fresh && now - at < 300))
        {
            return Ok(v.clone());
        }
        let (status, body) = self.outbound.get(uri, Duration::from_secs(5)).await?;
        if status != 200 {
            return Err(format!("{uri} answered {status}"));
        }
        let text =
            String::from_utf8(body.to_vec()).map_err(|_| "the JWKS is not UTF-8".to_string())?;
        crate::oidc::registration::check_jwks(&text)?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        if let Ok(mut cache) = self.jwks_cache.lock() {
            cache.insert(uri.clone(), (v.clone(), now));
        }
        Ok(v)
    }

    /// The claims of an ID token this issuer signed, for `id_token_hint` (OIDC Core
    /// §3.1.2.1, RP-Initiated Logout §2). Only ID tokens: an access token (`at+jwt`), a
    /// logout token (`logout+jwt`, with `events`) or another issuer's token is `None`.
    /// Expiry is not checked: a hint may be an expired ID token.
    pub fn verified_id_token(
        &self,
        token: &str,
    ) -> Option<serde_json::Map<String, serde_json::Value>> {
        let (header, claims) = self.keys().verify(token).ok()?;
        let typ = header.get("typ").and_then(|t| t.as_str());
        let is_id_token = typ.is_none_or(|t| t.eq_ignore_ascii_case("JWT"))
            && !claims.contains_key("events")
            && claims.contains_key("aud")
            && claims.get("iss").and_then(|v| v.as_str()) == Some(self.config.issuer.as_str());
        is_id_token.then_some(claims)
    }

    /// A declared client or one from the store.
    pub fn client(&self, id: &str) -> Result<Option<Client>, StoreError> {
        if let Some(c) = self.config.declared_clients.get(id) {
            return Ok(Some(c.clone()));
        }
        self.store.client(id)
    }

    fn secure(&self) -> bool {
        self.config.issuer.starts_with("https://")
    }

    /// `__Host-` cookies need Secure; an http issuer (tests, local trials) uses plain names.
    pub fn cookie_name(&self, base: &str) -> String {
        if self.secure() {
            format!("__Host-latchkey_{base}")
        } else {
            format!("latchkey_{base}")
        }
    }

    /// A `Set-Cookie` value: HttpOnly, Path=/, no Domain, Secure when the issuer is https.
    pub fn set_cookie(
        &self,
        base: &str,
        value: &str,
        max_age: Option<i64>,
        same_site: &str,
    ) -> String {
        let mut c = format!(
            "{}={value}; Path=/; HttpOnly; SameSite={same_site}",
            self.cookie_name(base)
        );
        if self.secure() {
            c.push_str("; Secure");
        }
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        c
    }

    /// The valid SSO session of this browser, if any.
    pub fn signed_in(&self, req: &Req, now: i64) -> Result<Option<SignedIn>, StoreError> {
        let Some(raw) = req.cookie(&self.cookie_name("session")) else {
            return Ok(None);
        };
        let hash = crate::keys::token_hash(&raw);
        let Some(session) = self.store.session(&hash)? else {
            return Ok(None);
        };
        if session.expires_at <= now {
            return Ok(None);
        }
        match self.store.user(&session.user_id)? {
            Some(user) if !user.disabled => Ok(Some(SignedIn {
                hash,
                session,
                user,
            })),
            _ => Ok(None),
        }
    }

    /// Extends the idle lifetime of a session in use (never past the absolute limit).
    /// Also records `client` as a participant, to be told when the session ends.
    pub fn touch_session(
        &self,
        s: &SignedIn,
        client: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let l = &self.config.lifetimes;
        let session = &s.session;
        let known = client.is_none_or(|c| session.clients.iter().any(|x| x == c));
        // A session used moments ago is not written again (a write per authorization
        // request is the costliest part of an SSO sign-in): its idle expiry is then up to
        // a tenth of the idle lifetime (at most a minute) early.
        let step = (l.session_idle / 10).min(60);
        if known && now - session.last_seen < step {
            return Ok(());
        }
        // Edited as stored, so a session ended or moved meanwhile is not written back.
        let expires = (now + l.session_idle).min(session.created_at + l.session_absolute);
        self.store.update_session(&s.hash, &|stored| {
            if let Some(c) = client
                && !stored.clients.iter().any(|x| x == c)
            {
                stored.clients.push(c.to_string());
            }
            stored.last_seen = now;
            stored.expires_at = expires;
        })?;
        Ok(())
    }

    /// CSRF: a per-browser random cookie, and in each form its HMAC under the server key.
    /// Returns the form token and, when the cookie is new, the `Set-Cookie` to send.
    pub fn csrf_token(&self, req: &Req) -> (String, Option<String>) {
        match req
            .cookie(&self.cookie_name("csrf"))
            .filter(|c| c.len() == 43)
        {
            Some(c) => (self.macs.csrf.tag(&c), None),
            None => {
                let c = crate::clock::random_token();
                (
                    self.macs.csrf.tag(&c),
                    Some(self.set_cookie("csrf", &c, None, "Strict")),
                )
            }
        }
    }

    /// The keys for trusted-browser and known-browser cookies (each its own).
    pub fn macs(&self) -> &Macs {
        &self.macs
    }

    /// A page with a form: `ctx` gets the CSRF token, and the response the CSRF cookie
    /// when the browser has none yet.
    pub fn form_page(
        &self,
        req: &Req,
        template: &str,
        mut ctx: serde_json::Value,
        status: StatusCode,
    ) -> Resp {
        let (csrf, cookie) = self.csrf_token(req);
        ctx["csrf"] = serde_json::Value::String(csrf);
        let resp = response::html(status, self.pages.render(template, &ctx));
        match cookie {
            Some(c) => response::with_header(resp, "set-cookie", &c),
            None => resp,
        }
    }

    pub fn csrf_ok(&self, req: &Req, form: &Params) -> bool {
        match (
            req.cookie(&self.cookie_name("csrf")),
            form.get_lenient("csrf"),
        ) {
            (Some(cookie), Some(token)) => self.macs.csrf.verify(&cookie, token),
            _ => false,
        }
    }

    /// The username for an audit line, from a user id (the id itself if the user is gone).
    pub fn username(&self, user_id: &str) -> String {
        match self.store.user(user_id) {
            Ok(Some(u)) => u.username,
            _ => user_id.to_string(),
        }
    }

    /// Records an audit event; a failure to record is logged, never fatal to the request.
    pub fn audit(
        &self,
        kind: &str,
        user: Option<&str>,
        client: Option<&str>,
        ip: Option<IpAddr>,
        detail: &str,
        now: i64,
    ) {
        let e = AuditEvent {
            time: now,
            kind: kind.to_string(),
            user: user.map(str::to_string),
            client: client.map(str::to_string),
            ip: ip.map(|i| i.to_string()),
            detail: detail.to_string(),
        };
        self.metrics.event(kind, detail);
        if let Err(err) = self.store.append_audit(&e) {
            tracing::warn!(error = %err, kind, "could not record audit event");
        }
    }

    /// Counts a throttled attempt; it reaches the audit log as one aggregated event per
    /// kind, account, address and window ([`App::write_refusals`]), never one row per
    /// request.
    pub fn audit_refused(
        &self,
        kind: &'static str,
        user: Option<&str>,
        req: &Req,
        refused: throttle::Refused,
    ) {
        self.metrics.event(kind, "");
        self.refusals
            .note(kind, user, req.peer, refused.wait_secs, req.now_ms);
    }

    /// Writes the aggregated refusal events whose window has passed (all of them with
    /// `all`, at shutdown), at most [`throttle::AuditGate::PER_MINUTE`] rows a minute; a
    /// row says how many events the ceiling kept out before it.
    pub fn write_refusals(&self, all: bool) {
        let now_ms = crate::clock::now_ms();
        for row in self.refusals.due(now_ms, all) {
            let Some(more) = self.audit_gate.admit(now_ms) else {
                continue;
            };
            let mut detail = format!(
                "{} attempt(s) refused in {} s, last wait {} s",
                row.count,
                (row.last - row.first) / 1000,
                row.wait_secs
            );
            if more > 0 {
                detail.push_str(&format!("; {more} more refusal event(s) not recorded"));
            }
            let e = AuditEvent {
                time: row.first / 1000,
                kind: row.kind.to_string(),
                user: row.user.clone(),
                client: None,
                ip: Some(row.ip.to_string()),
                detail,
            };
            if let Err(err) = self.store.append_audit(&e) {
                tracing::warn!(error = %err, kind = row.kind, "could not record audit event");
            }
        }
    }

    pub fn error_page(&self, status: StatusCode, title: &str, message: &str) -> Resp {
        let id = request_id();
        response::html(status, self.pages.error(title, message, id.as_deref()))
    }

    /// A failure on a page: a generic error page; the detail is logged under a request id.
    pub fn fail_page(&self, f: Fail) -> Resp {
        let e = f.to_oidc();
        let status = if f.is_temporary() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        self.error_page(status, "Something went wrong", &e.description)
    }

    /// Routes a request by [`routes::TABLE`]. Never panics on input; unknown paths get
    /// 404, known paths with another method 405 with `Allow`.
    pub async fn respond(self: &Arc<Self>, req: Req) -> Resp {
        self.respond_labelled(req).await.0
    }

    /// [`App::respond`], with the metrics label of the route that answered.
    async fn respond_labelled(self: &Arc<Self>, mut req: Req) -> (Resp, &'static str) {
        let now = req.now_ms.div_euclid(1000);
        let Some(entry) = routes::find(&req.path) else {
            let resp = self.finish(None, response::plain(StatusCode::NOT_FOUND, "not found"));
            return (resp, routes::OTHER);
        };
        // RFC 9110 §9.3.2: HEAD is GET without the body (hyper sends no body for HEAD).
        if req.method == Method::HEAD && entry.allows(&Method::GET) {
            req.method = Method::GET;
        }
        let resp = if req.method == Method::OPTIONS && entry.cors {
            well_known::preflight(entry.allow_header())
        } else if !entry.allows(&req.method) {
            response::with_header(
                response::plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
                "allow",
                entry.allow_header(),
            )
        } else if req.method == Method::POST && entry.page && self.cross_site(&req) {
            self.error_page(
                StatusCode::FORBIDDEN,
                "Request refused",
                "This form was sent from another site. Open the page here and try again.",
            )
        } else {
            self.dispatch(entry.route, &req, now).await
        };
        (self.finish(Some(entry), resp), entry.label)
    }

    /// Calls the handler of a route whose method is allowed.
    async fn dispatch(self: &Arc<Self>, route: routes::Route, req: &Req, now: i64) -> Resp {
        use routes::Route as R;
        let get = req.method == Method::GET;
        match route {
            R::Discovery => well_known::discovery(self),
            R::Jwks => well_known::jwks(self),
            R::Health => well_known::health(self),
            R::Metrics => well_known::metrics(self, req, now),
            R::StyleCss => response::asset("text/css; charset=utf-8", crate::pages::STYLE_CSS),
            R::FormPostJs => {
                response::asset("text/javascript; charset=utf-8", crate::pages::FORM_POST_JS)
            }
            R::AppJs => response::asset("text/javascript; charset=utf-8", crate::pages::APP_JS),
            R::Logo => match &self.config.logo {
                Some(logo) => response::set_header(
                    response::bytes(logo.content_type, logo.bytes.to_vec()),
                    "cache-control",
                    "public, max-age=3600",
                ),
                None => response::plain(StatusCode::NOT_FOUND, "not found"),
            },
            R::Authorize => authorize::authorize(self, req, now).await,
            R::Resume => authorize::resume(self, req, now).await,
            R::Token => token::token(self, req, now).await,
            R::Userinfo => userinfo::userinfo(self, req, now),
            R::Revoke => introspection::revoke(self, req, now).await,
            R::Introspect => introspection::introspect(self, req, now).await,
            R::Par => par::push(self, req, now).await,
            R::DeviceAuthorization => device::authorization(self, req, now).await,
            R::Device if get => device::page(self, req, now),
            R::Device => device::submit(self, req, now),
            R::EndSession => logout::end_session(self, req, now),
            R::Login if get => login::login_page(self, req, now),
            R::Login => login::login_submit(self, req, now).await,
            R::SecondFactor if get => signin::code_page(self, req, now),
            R::SecondFactor => signin::code_submit(self, req, now),
            R::NewPassword if get => signin::new_password_page(self, req, now),
            R::NewPassword => signin::new_password_submit(self, req, now).await,
            R::Reset if get => signin::reset_page(self, req, now),
            R::Reset => signin::reset_submit(self, req, now).await,
            R::Consent if get => login::consent_page(self, req, now),
            R::Consent => login::consent_submit(self, req, now),
            R::Setup if get => login::setup_page(self, req, now),
            R::Setup => login::setup_submit(self, req, now).await,
            R::Logout if get => logout::logout_page(self, req, now),
            R::Logout => logout::logout_submit(self, req, now),
            R::Home => login::home(self, req, now),
            R::Account => account::route(self, req, now).await,
            R::Admin => admin_pages::route(self, req, now).await,
        }
    }

    /// SPEC §8: whether a browser says this request came from another site: by
    /// `Sec-Fetch-Site` where sent (anything but same-origin, or `none` for a typed URL),
    /// else by an `Origin` other than the issuer's. `Origin: null` says nothing (the
    /// Fetch standard sends it for a POST from a page whose referrer policy is
    /// no-referrer, as Latchkey's pages are, in browsers without `Sec-Fetch-Site`).
    /// Requests without either (non-browser clients, old browsers) still need their
    /// CSRF token, as every request does.
    fn cross_site(&self, req: &Req) -> bool {
        if let Some(site) = req.header("sec-fetch-site") {
            return !matches!(site, "same-origin" | "none");
        }
        match req.header(header::ORIGIN) {
            None | Some("null") => false,
            Some(origin) => url::Url::parse(&self.config.issuer)
                .map(|u| u.origin().ascii_serialization())
                .is_ok_and(|own| own != origin),
        }
    }

    /// Headers every response gets: HSTS when served over TLS, CORS on the routes that
    /// relying parties call from browsers with a bearer token (never with cookies).
    fn finish(&self, route: Option<&routes::Entry>, mut resp: Resp) -> Resp {
        let h = resp.headers_mut();
        if self.config.tls != TlsMode::Off && self.secure() {
            h.insert(
                header::STRICT_TRANSPORT_SECURITY,
                header::HeaderValue::from_static("max-age=31536000"),
            );
        }
        if route.is_some_and(|r| r.cors) {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                header::HeaderValue::from_static("*"),
            );
        }
        resp
    }
}

fn discovery_document(issuer: &str) -> Bytes {
    Bytes::from(crate::oidc::discovery::metadata(issuer).to_string())
}

/// The hyper entry point: gives the request its id (logged, sent as `x-request-id`, and
/// named on error pages), answers it, and writes its access-log line.
pub async fn serve_hyper(
    app: Arc<App>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Resp, Infallible> {
    let id = crate::clock::random_id();
    let now_ms = crate::clock::now_ms();
    let log = app
        .access_log
        .enabled()
        .then(|| (req.method().clone(), req.uri().path().to_string()));
    let started = std::time::Instant::now();
    let (resp, route) = REQUEST_ID
        .scope(id.clone(), answer(&app, req, peer, now_ms))
        .await;
    let took = started.elapsed();
    let status = resp.status().as_u16();
    app.metrics.request(route, status, took);
    // One line per request: no query string (it may hold codes or tokens), no body;
    // queued here and written in batches off the request path.
    if let Some((method, path)) = log {
        app.access_log.push(access_log::Line {
            at_us: now_ms * 1000,
            request_id: id.clone(),
            method,
            path,
            status,
            took_us: took.as_micros().min(u64::MAX as u128) as u64,
        });
    }
    Ok(response::with_header(resp, "x-request-id", &id))
}

/// Checks the head, reads the body within its size and time limits, and routes.
async fn answer(
    app: &Arc<App>,
    req: Request<Incoming>,
    peer: SocketAddr,
    now_ms: i64,
) -> (Resp, &'static str) {
    // Refused before routing: counted under the path's label.
    let label = routes::label(req.uri().path());
    let early = |r: Resp| (r, label);
    let (parts, body) = req.into_parts();
    let target_len = parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if let Err(r) = head::check(parts.version, &parts.headers, target_len, MAX_BODY) {
        // The body, if any, is not read: the connection closes after this answer.
        return early(response::closing(r.status, r.reason));
    }
    let body =
        match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY).collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return early(response::closing(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request body too large",
                ));
            }
            // A malformed chunk size or a connection cut mid-body (RFC 9112 §7.1).
            Ok(Err(_)) => {
                return early(response::closing(
                    StatusCode::BAD_REQUEST,
                    "malformed request body",
                ));
            }
            Err(_) => {
                return early(response::closing(
                    StatusCode::REQUEST_TIMEOUT,
                    "request body too slow",
                ));
            }
        };
    let req = Req {
        peer: client_ip(peer.ip(), &parts.headers, &app.config.trusted_proxies),
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts.headers,
        body,
        now_ms,
    };
    app.respond_labelled(req).await
}

/// The client's address: the TCP peer, unless the peer is a trusted reverse proxy, in
/// which case the right-most `X-Forwarded-For` entry that is not itself a trusted proxy
/// (entries further left can be forged by the client).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops: Vec<Option<IpAddr>> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .map(|h| h.trim().parse().ok())
        .collect();
    for hop in hops.into_iter().rev() {
        match hop {
            Some(ip) if trusted.contains(&ip) => continue,
            Some(ip) => return ip,
            // An entry that is not an address ends what can be trusted.
            None => break,
        }
    }
    peer
}

/// Verifies a password on the hashing pool against a user's hash, or against a dummy
/// hash when there is no such user, so both cases take the same time (SPEC §8).
pub async fn check_password(
    app: &Arc<App>,
    user: Option<&User>,
    password: crate::keys::Secret<String>,
) -> Result<bool, Fail> {
    let (hash, real) = match user {
        Some(u) if !u.disabled => (u.password_hash.clone(), true),
        _ => (app.dummy_hash.as_ref().clone(), false),
    };
    let ok = app
        .pool
        .run(move || crate::keys::password::verify(password.expose(), &hash))
        .await
        .map_err(|_| Fail::Busy)?;
    Ok(ok && real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_signed_value_has_its_own_key() {
        let m = Macs::new(b"0123456789abcdef0123456789abcdef");
        let v = "the same value";
        let tags = [m.csrf.tag(v), m.trusted.tag(v), m.known.tag(v)];
        assert_ne!(tags[0], tags[1]);
        assert_ne!(tags[0], tags[2]);
        assert_ne!(tags[1], tags[2]);
        assert!(
            !m.trusted.verify(v, &tags[0]),
            "a CSRF token is no trusted-browser tag"
        );
        assert!(!m.csrf.verify(v, &tags[1]));
    }

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "203.0.113.9, 192.0.2.7, 10.0.0.1".parse().unwrap(),
        );
        assert_eq!(client_ip(proxy, &h, &[proxy]), client);
        assert_eq!(
            client_ip(client, &h, &[proxy]),
            client,
            "untrusted peers are taken as they are"
        );
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &[proxy]), proxy);
        h.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(client_ip(proxy, &h, &[proxy]), proxy);
        h.insert(
            "x-forwarded-for",
            "192.0.2.7, junk, 198.51.100.1".parse().unwrap(),
        );
        assert_eq!(
            client_ip(proxy, &h, &[proxy]),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
    }
}
