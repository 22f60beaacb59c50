//! Persistence behind role traits ([`Directory`], [`Registry`], [`Codes`], [`Sessions`],
//! [`Consents`], [`Tokens`], [`SigningKeys`], [`AuditLog`], [`Outbox`], [`Upkeep`]) that
//! together make
//! [`Store`]. [`redb::RedbStore`] is the embedded default; another backend plugs in by
//! implementing the roles. The store keeps records; it never
//! decides protocol questions, except the atomic check-and-set steps that must happen in
//! one transaction (a code or refresh token is consumed exactly once).
//!
//! Access tokens keep no record each. A token is a signed RFC 9068 JWT whose `jti` names
//! its grant (`<grant id>.<random>`, see `oidc::grant::token_jti`); a client's own token
//! (client_credentials) has no grant. UserInfo and introspection check a token against
//! what is alive at grant level, read in one snapshot ([`Tokens::access_token_context`]):
//! the grant (revoked by token revocation of its refresh token, replay, logout of its
//! session unless offline, the user's or an administrator's revocation, a password
//! change, disabling or deleting the user), the user (must exist and be enabled), the
//! client (must still exist), and the revocation list of single access tokens revoked
//! through RFC 7009, each entry kept until the token would have expired. So every
//! guarantee of SPEC §6 holds at once and across restarts, while the state grows with
//! what is revoked or alive at grant level, not with tokens minted: issuing a
//! client_credentials token writes nothing, and the other grants write their grant and
//! refresh token, which they need anyway. A grant is kept while a code or refresh token
//! refers to it and at least until its last access token expires (`tokens_until`); each
//! write that adds such a reference raises the grant's `keep_until`, so the purge decides
//! from the grant alone.
//!
//! Durability: users, groups, clients, consents, grants, refresh tokens, keys and
//! metadata are committed durably before the caller answers, and so is every change that
//! undoes or consumes a credential (a code or device code redeemed, an assertion jti
//! recorded, a session ended, an access token revoked): losing one of those would bring a
//! credential back. New codes, sessions, device polls and the grants of tokens without a
//! refresh token use non-durable commits (a crash may lose them, which costs a user one more sign-in
//! at worst), and audit events ride along with the next write transaction (they are also
//! written when the log is read, when 256 are waiting, and when the store closes, so a
//! crash may lose the last few). Every durable commit and the once-a-minute maintenance
//! persist them all. Durable writes are group-committed (`commit.rs`): each commits without an
//! fsync and then waits for a shared flush, so concurrent durable requests pay one fsync
//! between them instead of one each.

mod commit;
pub mod kv;
pub mod migrate;
pub mod postgres;
pub mod redb;

/// Runs storage work. When it may wait (for a flush, for a database), on a multi-threaded
/// tokio runtime the worker thread is handed over first, so the other requests on that
/// worker go on. A write that will not wait takes tens of microseconds, less than the
/// hand-over costs, and runs in place.
pub(crate) fn off_runtime<R>(may_wait: bool, f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) if may_wait && rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

use crate::model::{
    AuditEvent, AuthCode, Client, Consent, DeviceGrant, Grant, Group, KeyRecord, OutboxMail,
    RefreshToken, Session, User,
};

/// Version of the on-disk layout. History: 1 = the first layout; 2 = adds the device
/// authorization, user code and client-assertion tables; 3 = access tokens keep no
/// record (the `access_tokens` table is dropped, `revoked_access_tokens` added); 4 = each
/// grant records how long it is kept (`keep_until`). Older databases are migrated when
/// opened; newer ones are refused.
pub const SCHEMA_VERSION: u32 = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A unique value is taken (username, client_id).
    Conflict(String),
    /// The database belongs to another schema version.
    Schema(String),
    /// The database is held by another process (a running server).
    Locked,
    /// Storage failed (corruption, a bug). The detail is for the log only.
    Backend(String),
    /// Storage cannot work right now (full disk, I/O error); worth retrying later.
    Unavailable(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Conflict(m) => write!(f, "{m}"),
            StoreError::Schema(m) => write!(f, "schema: {m}"),
            StoreError::Locked => f.write_str("the database is in use by another process"),
            StoreError::Backend(m) => write!(f, "storage: {m}"),
            StoreError::Unavailable(m) => write!(f, "storage unavailable: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The outcome of consuming a single-use record.
#[derive(Debug, Clone, PartialEq)]
pub enum Consumed<T> {
    /// First use: the record, now marked used.
    Fresh(T),
    /// Already used before: replay.
    Replayed(T),
    Missing,
}

/// What [`Tokens::access_token_context`] returns: what decides whether an access token
/// is still good, read in one snapshot.
#[derive(Debug, Clone, Default)]
pub struct TokenContext {
    /// The token was revoked on its own (RFC 7009).
    pub revoked: bool,
    /// The grant the token names (`None` when it has none or it is gone).
    pub grant: Option<Grant>,
    /// The grant's user (`None` without a grant, for users that no longer exist, and
    /// when the token's subject is not the grant's user).
    pub user: Option<User>,
    /// The client as stored (declared clients live in the configuration).
    pub client: Option<Client>,
}

/// What [`Codes::code_context`] returns.
#[derive(Debug, Clone)]
pub struct CodeContext {
    pub code: AuthCode,
    /// `None` for a user that no longer exists.
    pub user: Option<User>,
    /// `None` for a session that has ended.
    pub session: Option<Session>,
}

/// What [`Tokens::refresh_context`] returns.
#[derive(Debug, Clone)]
pub struct RefreshContext {
    pub token: RefreshToken,
    /// `None` for a grant that is gone.
    pub grant: Option<Grant>,
    /// `None` for a user that no longer exists.
    pub user: Option<User>,
    /// The grant's session; `None` when it has ended.
    pub session: Option<Session>,
}

/// What [`Sessions::session_context`] returns.
#[derive(Debug, Clone)]
pub struct SessionContext {
    pub session: Session,
    /// `None` for a user that no longer exists.
    pub user: Option<User>,
    /// The user's consent for the client asked about, if any.
    pub consent: Option<Consent>,
}

/// A grant with its first refresh token, stored in one transaction.
#[derive(Debug, Clone)]
pub struct Issued<'a> {
    pub grant: &'a Grant,
    pub refresh: Option<(&'a str, &'a RefreshToken)>,
}

/// People: users and groups.
pub trait Directory: Send + Sync {
    fn create_user(&self, u: &User) -> Result<()>;

    /// Saves a changed user; a new username must be free.
    fn update_user(&self, u: &User) -> Result<()>;

    /// Saves `new` only if the stored user still equals `expected` (no lost update when
    /// two administrators edit one user); `false` when it changed meanwhile.
    fn update_user_if(&self, expected: &User, new: &User) -> Result<bool>;

    fn user(&self, id: &str) -> Result<Option<User>>;

    fn user_by_name(&self, username: &str) -> Result<Option<User>>;

    fn users(&self) -> Result<Vec<User>>;

    /// Whether some user satisfies `pred`, reading one user at a time (no list in memory).
    fn any_user(&self, pred: &dyn Fn(&User) -> bool) -> Result<bool>;

    /// Deletes the user with their sessions and consents.
    fn delete_user(&self, id: &str) -> Result<bool>;

    fn put_group(&self, g: &Group) -> Result<()>;

    fn groups(&self) -> Result<Vec<Group>>;

    /// Deletes a group record (members keep the name until edited).
    fn delete_group(&self, name: &str) -> Result<bool>;
}

/// Applications registered in the store (declared ones live in the configuration).
pub trait Registry: Send + Sync {
    fn create_client(&self, c: &Client) -> Result<()>;

    fn update_client(&self, c: &Client) -> Result<()>;

    /// Saves `new` only if the stored client still equals `expected`.
    fn update_client_if(&self, expected: &Client, new: &Client) -> Result<bool>;

    fn client(&self, id: &str) -> Result<Option<Client>>;

    fn clients(&self) -> Result<Vec<Client>>;

    fn delete_client(&self, id: &str) -> Result<bool>;
}

/// Single-use credentials in flight: authorization codes, device authorizations and client-assertion ids, each consumed exactly once.
pub trait Codes: Send + Sync {
    fn put_code(&self, hash: &str, code: &AuthCode) -> Result<()>;

    fn code(&self, hash: &str) -> Result<Option<AuthCode>>;

    /// A code with the user and the session it names, read together (on PostgreSQL
    /// without a transaction: the redemption checks the code, its grant, session and
    /// user again).
    fn code_context(&self, hash: &str) -> Result<Option<CodeContext>>;

    /// Redeems a code: in one transaction marks it used and stores the grant with its
    /// first tokens (durably when a refresh token is included). A code already used
    /// returns [`Consumed::Replayed`] and stores nothing; a code whose grant was revoked,
    /// whose session ended (without offline access) or whose user was disabled meanwhile
    /// is spent and returns [`Consumed::Missing`].
    fn redeem_code(&self, hash: &str, issued: &Issued<'_>) -> Result<Consumed<AuthCode>>;

    /// Stores a new device authorization; fails with Conflict if its user code is taken.
    fn put_device(&self, hash: &str, d: &DeviceGrant) -> Result<()>;

    /// Notes a poll (and a grown interval) while the authorization is still pending and
    /// unused; otherwise changes nothing. One transaction, so it never undoes an answer.
    fn record_device_poll(&self, hash: &str, now: i64, slow_down: bool) -> Result<()>;

    /// Records the person's answer if the authorization is still pending, unused and
    /// unexpired; `false` (and no change) otherwise.
    fn answer_device(
        &self,
        hash: &str,
        status: &crate::model::DeviceStatus,
        now: i64,
    ) -> Result<bool>;

    fn device(&self, hash: &str) -> Result<Option<DeviceGrant>>;

    /// The device authorization a (normalised) user code belongs to, with its key.
    fn device_by_user_code(&self, code: &str) -> Result<Option<(String, DeviceGrant)>>;

    /// Marks an approved device authorization used and stores its tokens, atomically.
    fn redeem_device(&self, hash: &str, issued: &Issued<'_>) -> Result<Consumed<DeviceGrant>>;

    /// Records a client assertion's id until `exp`; `false` if it was seen before (replay).
    fn record_assertion(&self, key: &str, exp: i64) -> Result<bool>;
}

/// SSO sessions, stored under the hash of their cookie.
pub trait Sessions: Send + Sync {
    fn put_session(&self, hash: &str, s: &Session) -> Result<()>;

    fn session(&self, hash: &str) -> Result<Option<Session>>;

    /// A session with its user and, for `consent_for` (a client id), the user's consent,
    /// read together (on PostgreSQL without a transaction).
    fn session_context(
        &self,
        hash: &str,
        consent_for: Option<&str>,
    ) -> Result<Option<SessionContext>>;

    fn delete_session(&self, hash: &str) -> Result<bool>;

    /// Changes a stored session in one transaction; `false` (and nothing written) when it
    /// no longer exists, so an ended session is never brought back.
    fn update_session(&self, hash: &str, edit: &dyn Fn(&mut Session)) -> Result<bool>;

    /// Gives a session a new key (a new cookie after the user re-authenticated) with
    /// `edit` applied to it as stored, and moves its grants and unredeemed codes along, in
    /// one durable transaction; `None` when the old session no longer exists. (Refresh
    /// tokens follow their grant's session.)
    fn move_session(
        &self,
        old_hash: &str,
        new_hash: &str,
        edit: &dyn Fn(&mut Session),
    ) -> Result<Option<Session>>;

    /// Every stored session with its key (the hash of the cookie), expired ones included.
    fn sessions(&self) -> Result<Vec<(String, Session)>>;

    /// Number of unexpired sessions (a metric).
    fn count_sessions(&self, now: i64) -> Result<u64>;

    /// Ends every session of a user but the one stored under `keep`; returns how many.
    fn delete_user_sessions_except(&self, user_id: &str, keep: &str) -> Result<usize>;

    /// Ends every session of a user; returns how many.
    fn delete_user_sessions(&self, user_id: &str) -> Result<usize>;
}

/// What each user allowed each application.
pub trait Consents: Send + Sync {
    fn put_consent(&self, c: &Consent) -> Result<()>;

    fn consent(&self, user_id: &str, client_id: &str) -> Result<Option<Consent>>;

    /// Every application a user consented to.
    fn consents(&self, user_id: &str) -> Result<Vec<Consent>>;

    fn delete_consent(&self, user_id: &str, client_id: &str) -> Result<bool>;
}

/// Grants and the access and refresh tokens issued under them.
pub trait Tokens: Send + Sync {
    /// Stores a grant with its first refresh token where no code is consumed (password,
    /// device and implicit grants); durable with a refresh token.
    fn issue_tokens(&self, issued: &Issued<'_>) -> Result<()>;

    fn grant(&self, id: &str) -> Result<Option<Grant>>;

    /// Revokes every token of a grant; creates a revoked record if none exists yet.
    fn revoke_grant(&self, id: &str, client_id: &str, user_id: &str, now: i64) -> Result<()>;

    /// Revokes every grant of a user (all their access and refresh tokens); returns how
    /// many were live.
    fn revoke_user_grants(&self, user_id: &str) -> Result<usize>;

    /// Revokes every grant of one user at one client (the user revoked the application).
    fn revoke_user_client_grants(&self, user_id: &str, client_id: &str) -> Result<usize>;

    /// Revokes the grants that came from an SSO session, except offline ones (logout).
    fn revoke_session_grants(&self, session_hash: &str) -> Result<usize>;

    /// Puts one access token on the revocation list until `expires_at` (when it would
    /// have expired anyway), durably.
    fn revoke_access_token(&self, jti: &str, expires_at: i64) -> Result<()>;

    /// What decides whether the access token `jti` of `client_id` for subject `sub`,
    /// naming `grant_id`, is still good, read in one snapshot and, on PostgreSQL, one
    /// round trip (userinfo and introspection run this on every call).
    fn access_token_context(
        &self,
        jti: &str,
        grant_id: Option<&str>,
        client_id: &str,
        sub: &str,
    ) -> Result<TokenContext>;

    fn refresh_token(&self, hash: &str) -> Result<Option<RefreshToken>>;

    /// A refresh token with its grant, user and the grant's session, read together (on
    /// PostgreSQL without a transaction: the rotation checks the token and grant again).
    fn refresh_context(&self, hash: &str) -> Result<Option<RefreshContext>>;

    /// Marks `old` used and stores its successor, atomically and durably; keeps the
    /// grant at least until `tokens_until` (the new access token's expiry) and sets the
    /// claims its access tokens release at UserInfo (narrowed to the client as it is
    /// now). A replay of `old` returns [`Consumed::Replayed`] and stores nothing; a grant
    /// revoked meanwhile gives [`Consumed::Missing`].
    fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new_hash: &str,
        new: &RefreshToken,
        tokens_until: i64,
        userinfo_claims: &[String],
    ) -> Result<Consumed<RefreshToken>>;
}

/// Signing key records.
pub trait SigningKeys: Send + Sync {
    fn put_key(&self, k: &KeyRecord) -> Result<()>;

    /// Stores several key records in one durable transaction (a rotation).
    fn put_keys(&self, keys: &[KeyRecord]) -> Result<()>;

    fn delete_key(&self, kid: &str) -> Result<bool>;

    fn keys(&self) -> Result<Vec<KeyRecord>>;
}

/// The audit log.
pub trait AuditLog: Send + Sync {
    fn append_audit(&self, e: &AuditEvent) -> Result<()>;

    /// Newest first, at most `limit`, at or after `since`, of `user` when given.
    fn audit(&self, since: i64, limit: usize, user: Option<&str>) -> Result<Vec<AuditEvent>>;

    /// Removes audit events older than `before`; returns how many.
    fn purge_audit(&self, before: i64) -> Result<usize>;
}

/// Metadata, maintenance and backup.
pub trait Upkeep: Send + Sync {
    fn meta(&self, key: &str) -> Result<Option<String>>;

    fn put_meta(&self, key: &str, value: &str) -> Result<()>;

    fn delete_meta(&self, key: &str) -> Result<bool>;

    /// Stores `value` under `key` unless a value is there already; returns the value the
    /// store holds afterwards (so nodes starting together agree on one).
    fn put_meta_if_absent(&self, key: &str, value: &str) -> Result<String>;

    /// Takes or renews the lease `name` for `holder` until `now + secs`: `true` when this
    /// holder has it, `false` while another holder's lease runs. Periodic work that must
    /// run on one node at a time (purges, key rotation, mail, directory sync) runs only
    /// under its lease; a node that dies loses its leases when they run out.
    fn lease(&self, name: &str, holder: &str, now: i64, secs: i64) -> Result<bool>;

    /// Removes expired codes, sessions and tokens, and grants no code or token refers to
    /// any more; persists pending non-durable commits.
    fn purge_expired(&self, now: i64) -> Result<usize>;

    /// Writes a consistent copy of the whole database to a new file at `path` (one read
    /// snapshot, so concurrent writes are either wholly in it or not at all).
    fn backup_to(&self, path: &std::path::Path) -> Result<()>;
}

/// Mail waiting to be sent (SPEC §12), kept across restarts. Written durably: a mail
/// that was asked for is not lost.
pub trait Outbox: Send + Sync {
    /// Queues `m`, replacing a waiting mail of the same user and kind.
    fn queue_mail(&self, m: &OutboxMail) -> Result<()>;
    /// Saves an attempt's outcome on the mail with `m`'s key and id; `false` when that
    /// mail is no longer queued (sent, dropped or replaced by a newer request).
    fn update_mail(&self, m: &OutboxMail) -> Result<bool>;
    /// Removes the mail with this key (and this id, when given).
    fn delete_mail(&self, key: &str, id: Option<&str>) -> Result<bool>;
    fn mail(&self, key: &str) -> Result<Option<OutboxMail>>;
    /// Every queued or failed mail, oldest first.
    fn outbox(&self) -> Result<Vec<OutboxMail>>;
}

/// Short-lived records of work in progress (a sign-in between its pages, a pushed
/// authorization request, a passkey ceremony), kept in the store only when other nodes
/// share it ([`Ephemera::shared`]); on one node they stay in memory. Each expires by
/// itself; none is durable (a crash costs a user one more sign-in at worst).
pub trait Ephemera: Send + Sync {
    /// Whether other processes see this store (PostgreSQL), so what one node keeps in
    /// memory must live here instead.
    fn shared(&self) -> bool;
    fn put_ephemeral(&self, key: &str, value: &[u8], expires_at: i64) -> Result<()>;
    /// The record, unless it expired by `now`.
    fn ephemeral(&self, key: &str, now: i64) -> Result<Option<Vec<u8>>>;
    /// Takes the record out: whichever node takes it first gets it, the others nothing.
    fn take_ephemeral(&self, key: &str, now: i64) -> Result<Option<Vec<u8>>>;
    /// Rewrites the record with what `edit` makes of it; `false` when there is none.
    fn update_ephemeral(
        &self,
        key: &str,
        now: i64,
        edit: &dyn Fn(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<bool>;
    fn delete_ephemeral(&self, key: &str) -> Result<bool>;
    /// Writes what `make` makes of the record (`None` when there is none, or it expired),
    /// to expire at `expires_at`; returns what was written. One transaction: concurrent
    /// merges on several nodes all count.
    fn merge_ephemeral(
        &self,
        key: &str,
        now: i64,
        expires_at: i64,
        make: &dyn Fn(Option<&[u8]>) -> Vec<u8>,
    ) -> Result<Vec<u8>>;
}

/// The whole store, as the server uses it: every role. A backend implements the roles;
/// this trait follows.
pub trait Store:
    Directory
    + Registry
    + Codes
    + Sessions
    + Consents
    + Tokens
    + SigningKeys
    + AuditLog
    + Outbox
    + Upkeep
    + Ephemera
{
}

impl<T> Store for T where
    T: Directory
        + Registry
        + Codes
        + Sessions
        + Consents
        + Tokens
        + SigningKeys
        + AuditLog
        + Outbox
        + Upkeep
        + Ephemera
{
}

/// Every role trait, for code that calls store methods on a concrete backend.
pub mod prelude {
    pub use super::{
        AuditLog, Codes, Consents, Directory, Ephemera, Outbox, Registry, Sessions, SigningKeys,
        Store, Tokens, Upkeep,
    };
}

#[cfg(test)]
mod tests;
