//! [`App`], the state every request shares, with [`Macs`] and [`check_password`].

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;

use crate::config::Config;
use crate::keys::{KeySet, MacKey};
use crate::model::{AuditEvent, Client, User};
use crate::pages::Pages;
use crate::store::{Store, StoreError};

use super::interaction::{self, Interactions};
use super::pool::HashPool;
use super::response::Fail;
use super::{Req, access_log, device, metrics, par, signin};
use crate::signin::throttle::{self, Throttle};

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
    discovery: Arc<RwLock<(Bytes, i64)>>,
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
    /// client_credentials and refresh_token tokens, counted for their per-minute audit
    /// rows.
    pub(super) issued: Arc<super::tally::IssuedTally>,
    pub secret_cache: Arc<crate::keys::SecretCache>,
    pub interactions: Arc<Interactions>,
    /// WebAuthn for this issuer and the passkey ceremonies under way.
    pub passkeys: Arc<super::passkeys::Passkeys>,
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
    /// Refresh answers kept for clients with a grace period (issue 17).
    pub refresh_grace: Arc<super::grace::RefreshGrace>,
    /// The directory of `[ldap]` (SPEC §11), `None` without one.
    pub directory: Option<Arc<crate::ldap::Directory>>,
    /// Directory sign-ins under way (bounded: a slow directory holds only these).
    pub directory_slots: Arc<tokio::sync::Semaphore>,
    /// Whether the directory answered last time it was asked.
    pub directory_health: Arc<super::directory::Health>,
    /// The SMTP client of `[mail]` (`None` without mail: no page offers it).
    pub mailer: Option<Arc<crate::mail::Mailer>>,
    /// Wakes the mail worker when a mail is queued.
    pub mail_wake: Arc<crate::mail::outbox::Wake>,
    /// Mail asked for from the sign-in pages ("Forgot your password?"), per account and
    /// per address: each request counts, so nobody can flood an inbox.
    pub mail_throttle: Arc<Throttle>,
    pub(super) macs: Arc<Macs>,
    dummy_hash: Arc<String>,
    /// One line per request, written off the request path.
    pub access_log: access_log::AccessLog,
}

/// The SMTP client for `[mail]`; a set-up failure (unreadable trust anchors) is logged
/// and mail stays off.
fn mailer(config: &Config) -> Option<Arc<crate::mail::Mailer>> {
    match crate::admin::mailer(config)? {
        Ok(m) => Some(Arc::new(m)),
        Err(e) => {
            tracing::error!(error = %e, "mail is off");
            None
        }
    }
}

/// The directory of `[ldap]`; a set-up failure (unreadable trust anchors) is logged and
/// directory sign-in stays off.
fn directory(config: &Config) -> Option<Arc<crate::ldap::Directory>> {
    match crate::ldap::Directory::new(config.ldap.as_ref()?) {
        Ok(d) => Some(Arc::new(d)),
        Err(e) => {
            tracing::error!(error = %e, "directory sign-in is off");
            None
        }
    }
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
            throttle: Arc::new(Throttle::new(&config.login).shared_through(&store, "password")),
            mfa_throttle: Arc::new(Throttle::new(&config.login).shared_through(&store, "mfa")),
            code_throttle: Arc::new(Throttle::new(&config.login).shared_through(&store, "code")),
            client_throttle: Default::default(),
            audit_gate: Default::default(),
            refusals: Default::default(),
            issued: Default::default(),
            secret_cache: Default::default(),
            interactions: Arc::new(interaction::Interactions::in_store(&store)),
            passkeys: Arc::new(super::passkeys::Passkeys::new(
                &config.issuer,
                &config.instance_name,
                &store,
            )),
            pendings: Arc::new(interaction::Expiring::in_store(
                signin::PENDING_TTL,
                &store,
                "pending",
            )),
            pushed: Arc::new(super::par::Pushed::in_store(&store)),
            outbound: Arc::new(crate::outbound::Outbound::new()),
            mailer: mailer(&config),
            directory: directory(&config),
            directory_slots: Arc::new(tokio::sync::Semaphore::new(super::directory::SLOTS)),
            directory_health: Default::default(),
            refresh_grace: Arc::new(super::grace::RefreshGrace::in_store(&store)),
            mail_wake: Default::default(),
            mail_throttle: Arc::new(
                Throttle::for_mail(&config.login).shared_through(&store, "mail"),
            ),
            metrics: Default::default(),
            cert_expiry: Default::default(),
            device_codes: Default::default(),
            jwks_cache: Default::default(),
            jwks: Arc::new(RwLock::new(Bytes::from(keys.jwks().to_string()))),
            keys: Arc::new(RwLock::new(Arc::new(keys))),
            discovery: Default::default(),
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
        let mailer = mailer(&config);
        let directory = directory(&config);
        Ok(App {
            discovery: Default::default(),
            pages: Pages::new(&config.instance_name, config.logo.is_some())?,
            passkeys: Arc::new(
                self.passkeys
                    .reloaded(&config.issuer, &config.instance_name),
            ),
            config,
            store: self.store.clone(),
            keys: self.keys.clone(),
            jwks: self.jwks.clone(),
            pool: self.pool.clone(),
            throttle: self.throttle.clone(),
            client_throttle: self.client_throttle.clone(),
            audit_gate: self.audit_gate.clone(),
            refusals: self.refusals.clone(),
            issued: self.issued.clone(),
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
            mailer,
            directory,
            directory_slots: self.directory_slots.clone(),
            directory_health: self.directory_health.clone(),
            refresh_grace: self.refresh_grace.clone(),
            mail_wake: self.mail_wake.clone(),
            mail_throttle: self.mail_throttle.clone(),
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
    /// The discovery document: fixed metadata plus the scopes and claims the clients
    /// define themselves (SPEC §14), rebuilt at most every ten seconds.
    pub fn discovery_document(&self, now: i64) -> Bytes {
        let cached = match self.discovery.read() {
            Ok(d) => d.clone(),
            Err(p) => p.into_inner().clone(),
        };
        if !cached.0.is_empty() && (0..10).contains(&(now - cached.1)) {
            return cached.0;
        }
        let mut all: Vec<Client> = self.config.declared_clients.values().cloned().collect();
        match self.store.clients() {
            Ok(stored) => all.extend(stored),
            // The last good document (or the fixed metadata), tried again next time.
            Err(e) if !cached.0.is_empty() => {
                tracing::warn!(error = %e, "discovery: clients unreadable; serving the last document");
                return cached.0;
            }
            Err(e) => tracing::warn!(error = %e, "discovery: clients unreadable"),
        }
        let (mut scopes, mut claims) = (Vec::new(), Vec::new());
        for c in &all {
            for s in &c.scopes {
                if !crate::oidc::scope::SUPPORTED.contains(&s.as_str()) && !scopes.contains(s) {
                    scopes.push(s.clone());
                }
            }
            for r in &c.claims {
                if !claims.contains(&r.name) {
                    claims.push(r.name.clone());
                }
            }
        }
        scopes.sort();
        claims.sort();
        let doc = Bytes::from(
            crate::oidc::discovery::metadata_with(
                &self.config.issuer,
                &scopes,
                &claims,
                &crate::pages::i18n::LANGUAGES
                    .iter()
                    .map(|(code, _)| *code)
                    .collect::<Vec<_>>(),
            )
            .to_string(),
        );
        match self.discovery.write() {
            Ok(mut d) => *d = (doc.clone(), now),
            Err(p) => *p.into_inner() = (doc.clone(), now),
        }
        doc
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

    /// The records of `user`'s groups with their attributes, those declared in the
    /// configuration file laid over the stored ones (SPEC §14).
    pub fn group_records(&self, user: &User) -> Result<Vec<crate::model::Group>, Fail> {
        let stored = self.store.groups()?;
        Ok(user
            .groups
            .iter()
            .map(|name| {
                let mut g = stored
                    .iter()
                    .find(|g| &g.name == name)
                    .cloned()
                    .unwrap_or_else(|| crate::model::Group {
                        name: name.clone(),
                        description: String::new(),
                        attributes: Default::default(),
                    });
                if let Some(declared) = self.config.declared_groups.get(name) {
                    g.attributes.extend(declared.clone());
                }
                g
            })
            .collect())
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
    /// row says how many events the ceiling kept out before it. Then the per-client
    /// counts of client_credentials tokens ([`super::tally`]).
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
        for row in self.issued.due(now_ms, all) {
            let e = AuditEvent {
                time: row.first_ms / 1000,
                kind: "token.issued".into(),
                user: row.user.clone(),
                client: row.client_id.clone(),
                ip: row.ip.map(|i| i.to_string()),
                detail: row.detail(),
            };
            if let Err(err) = self.store.append_audit(&e) {
                tracing::warn!(error = %err, "could not record audit event");
            }
        }
    }
}

/// Verifies a password on the hashing pool against a user's hash, or against a dummy
/// hash when there is no such user, so both cases take the same time (SPEC §8).
pub async fn check_password(
    app: &Arc<App>,
    user: Option<&User>,
    password: crate::keys::Secret<String>,
) -> Result<bool, Fail> {
    // An invited user has no password until they choose one: checked like no user.
    let (hash, real) = match user {
        Some(u) if !u.disabled && !u.password_hash.is_empty() => (u.password_hash.clone(), true),
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
}
