//! The store's roles written once, over any engine that keeps tables of JSON values keyed
//! by strings and runs closures as serializable transactions ([`Engine`]): redb
//! (`store::redb`) and PostgreSQL (`store::postgres`). The role files below hold the
//! record logic (what a redemption, a rotation or a revocation changes, in one
//! transaction); an engine supplies only reads, writes, key-ordered scans, the audit log
//! and backups. So both backends keep the same guarantees by construction, and the same
//! tests run against both.

mod codes;
mod consents;
mod directory;
mod ephemera;
mod keys;
mod outbox;
mod registry;
mod sessions;
mod tokens;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    CodeContext, Codes, Consents, Consumed, Directory, Issued, Outbox, RefreshContext, Registry,
    Result, SessionContext, Sessions, SigningKeys, StoreError, TokenContext, Tokens, Upkeep,
};
use crate::model::{
    AuthCode, Client, Consent, DeviceGrant, Grant, Group, KeyRecord, OutboxMail, RefreshToken,
    Session, User,
};

/// A table, by name.
pub type Table = &'static str;

pub const USERS: Table = "users";
/// Lower-cased username → user id.
pub const USERNAMES: Table = "usernames";
pub const GROUPS: Table = "groups";
pub const CLIENTS: Table = "clients";
pub const CODES: Table = "codes";
pub const SESSIONS: Table = "sessions";
pub const CONSENTS: Table = "consents";
pub const GRANTS: Table = "grants";
/// Access tokens revoked one by one (RFC 7009): jti → when the token expires.
pub const REVOKED_ACCESS: Table = "revoked_access_tokens";
pub const REFRESH_TOKENS: Table = "refresh_tokens";
pub const KEYS: Table = "keys";
/// Metadata; values are plain text, not JSON.
pub const META: Table = "meta";
pub const DEVICES: Table = "device_codes";
/// User code → device code hash.
pub const USER_CODES: Table = "user_codes";
pub const ASSERTIONS: Table = "assertion_jtis";
/// Mail waiting to be sent, one per user and kind.
pub const OUTBOX: Table = "outbox";
/// Short-lived records of work in progress ([`super::Ephemera`]): the expiry (8 bytes,
/// big-endian seconds) followed by the record.
pub const EPHEMERAL: Table = "ephemeral";

/// Every keyed table (the audit log is the engine's own).
pub const ALL: [Table; 17] = [
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
    EPHEMERAL,
];

/// Used codes stay this long past expiry so a late replay is still recognised and
/// revokes the grant (OIDC conformance replays after 30 s).
pub const CODE_REPLAY_WINDOW: i64 = 300;

/// Records removed per transaction by the background purge: each holds locks and memory
/// only briefly, however much has expired.
pub const PURGE_BATCH: usize = 250;
/// The purge's pause between two batches, so that requests waiting to write go first (the
/// purge runs on the maintenance thread, never on a request's).
pub const PURGE_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);

/// What a transaction reads.
pub trait Reader {
    fn get(&self, t: Table, key: &str) -> Result<Option<Vec<u8>>>;
    /// Several records that do not depend on each other, in order: one round trip on an
    /// engine across the network.
    fn get_many(&self, keys: &[(Table, &str)]) -> Result<Vec<Option<Vec<u8>>>> {
        keys.iter().map(|(t, k)| self.get(t, k)).collect()
    }
    /// Calls `each` with the records of `t` in key order (bytewise), starting after
    /// `after`, until it returns `false`.
    fn scan(
        &self,
        t: Table,
        after: Option<&str>,
        each: &mut dyn FnMut(&str, &[u8]) -> Result<bool>,
    ) -> Result<()>;
}

/// What a write transaction does besides reading.
pub trait Writer: Reader {
    fn put(&self, t: Table, key: &str, value: &[u8]) -> Result<()>;
    /// Whether there was a record.
    fn remove(&self, t: Table, key: &str) -> Result<bool>;
}

/// A storage engine: transactions over the tables above, serializable (as if one ran after
/// the other, whatever runs on other threads or nodes).
pub trait Engine: Send + Sync {
    /// Runs `f` in a write transaction and commits it; a `durable` write returns only once
    /// the commit is on disk (or on the database's disk). An engine may run `f` again after
    /// a conflict with a concurrent transaction, so `f` starts from nothing each time.
    fn write<R>(&self, durable: bool, f: impl FnMut(&dyn Writer) -> Result<R>) -> Result<R>;

    /// Runs `f` on one consistent snapshot.
    fn read<R>(&self, f: impl Fn(&dyn Reader) -> Result<R>) -> Result<R>;

    /// Runs `f` with reads that each see the latest committed records, with no snapshot
    /// across them (on PostgreSQL no transaction around them, which saves two statements
    /// and a round trip). For reads that follow links the earlier ones found, where what
    /// changed in between is what a request arriving a moment later would see; the write
    /// that acts on them (a redemption, a rotation) checks what decides again in its own
    /// transaction.
    fn read_latest<R>(&self, f: impl Fn(&dyn Reader) -> Result<R>) -> Result<R> {
        self.read(f)
    }

    /// Whether other processes share this database (see [`super::Ephemera::shared`]).
    fn shared(&self) -> bool {
        false
    }

    /// Copies the database to `path` (see [`Upkeep::backup_to`]).
    fn backup(&self, path: &std::path::Path) -> Result<()>;

    fn get<T: DeserializeOwned>(&self, t: Table, key: &str) -> Result<Option<T>> {
        self.read(|tx| tx.get(t, key)?.map(|v| decode(&v)).transpose())
    }

    /// [`Reader::get_many`] on one snapshot.
    fn get_many(&self, keys: &[(Table, &str)]) -> Result<Vec<Option<Vec<u8>>>> {
        self.read(|tx| tx.get_many(keys))
    }

    #[track_caller]
    fn put<T: Serialize>(&self, t: Table, key: &str, v: &T, durable: bool) -> Result<()> {
        let bytes = encode(v)?;
        self.write(durable, |tx| tx.put(t, key, &bytes))
    }

    #[track_caller]
    fn remove(&self, t: Table, key: &str, durable: bool) -> Result<bool> {
        self.write(durable, |tx| tx.remove(t, key))
    }

    fn list<T: DeserializeOwned>(&self, t: Table) -> Result<Vec<T>> {
        Ok(self.list_keyed(t)?.into_iter().map(|(_, v)| v).collect())
    }

    /// Every record of a table with its key.
    fn list_keyed<T: DeserializeOwned>(&self, t: Table) -> Result<Vec<(String, T)>> {
        self.read(|tx| {
            let mut out = Vec::new();
            tx.scan(t, None, &mut |k, v| {
                out.push((k.to_string(), decode(v)?));
                Ok(true)
            })?;
            Ok(out)
        })
    }

    /// Removes the records of `t` for which `doomed` holds: found in read snapshots, at
    /// most `PURGE_BATCH` at a time, each batch removed in its own transaction with every
    /// record checked again. Memory stays at one batch of keys.
    fn purge<T: DeserializeOwned>(&self, t: Table, doomed: impl Fn(&T) -> bool) -> Result<usize> {
        // An undecodable record is left for an operator to look at.
        self.purge_raw(t, |v| decode::<T>(v).is_ok_and(|r| doomed(&r)))
    }

    /// [`Engine::purge`] on the stored bytes (for records that are not JSON).
    fn purge_raw(&self, t: Table, doomed: impl Fn(&[u8]) -> bool) -> Result<usize> {
        let mut n = 0;
        let mut after: Option<String> = None;
        loop {
            let (keys, last) = self.read(|tx| {
                let mut keys = Vec::new();
                let mut last = None;
                tx.scan(t, after.as_deref(), &mut |k, v| {
                    last = Some(k.to_string());
                    if doomed(v) {
                        keys.push(k.to_string());
                    }
                    Ok(keys.len() < PURGE_BATCH)
                })?;
                Ok((keys, last))
            })?;
            n += self.write(false, |tx| {
                let mut removed = 0;
                for k in &keys {
                    if tx.get(t, k)?.is_some_and(|v| doomed(&v)) {
                        tx.remove(t, k)?;
                        removed += 1;
                    }
                }
                Ok(removed)
            })?;
            match last {
                Some(l) if keys.len() == PURGE_BATCH => {
                    after = Some(l);
                    std::thread::sleep(PURGE_PAUSE);
                }
                _ => return Ok(n),
            }
        }
    }

    /// Marks every live grant matching `pick` revoked, in one durable transaction.
    fn revoke_grants_where(&self, pick: impl Fn(&Grant) -> bool) -> Result<usize> {
        self.write(true, |tx| tx_revoke_grants_where(tx, &pick))
    }
}

impl<E: Engine> Upkeep for E {
    fn meta(&self, key: &str) -> Result<Option<String>> {
        self.read(|tx| {
            Ok(tx
                .get(META, key)?
                .map(|v| String::from_utf8_lossy(&v).into_owned()))
        })
    }

    fn put_meta(&self, key: &str, value: &str) -> Result<()> {
        self.write(true, |tx| tx.put(META, key, value.as_bytes()))
    }

    fn delete_meta(&self, key: &str) -> Result<bool> {
        self.remove(META, key, true)
    }

    fn put_meta_if_absent(&self, key: &str, value: &str) -> Result<String> {
        self.write(true, |tx| match tx.get(META, key)? {
            Some(v) => Ok(String::from_utf8_lossy(&v).into_owned()),
            None => {
                tx.put(META, key, value.as_bytes())?;
                Ok(value.to_string())
            }
        })
    }

    fn lease(&self, name: &str, holder: &str, now: i64, secs: i64) -> Result<bool> {
        // A store nobody else opens (redb locks its file): this process holds every lease.
        if !Engine::shared(self) {
            return Ok(true);
        }
        let key = format!("lease:{name}");
        self.write(true, |tx| {
            let current = tx
                .get(META, &key)?
                .map(|v| String::from_utf8_lossy(&v).into_owned());
            let held_by_other = current
                .as_deref()
                .and_then(|c| c.split_once(' '))
                .is_some_and(|(until, who)| {
                    who != holder && until.parse::<i64>().is_ok_and(|u| u > now)
                });
            if held_by_other {
                return Ok(false);
            }
            tx.put(META, &key, format!("{} {holder}", now + secs).as_bytes())?;
            Ok(true)
        })
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
            for c in &gone_codes {
                tx.remove(USER_CODES, c)?;
            }
            Ok(n)
        })?;
        // Two minutes past expiry, as for assertions: a clock stepped back a little never
        // brings a revoked token back.
        n += self.purge(REVOKED_ACCESS, |exp: &i64| *exp + 120 < now)?;
        n += self.purge(REFRESH_TOKENS, |r: &RefreshToken| refresh_end(r) < now)?;
        // A grant is kept while a code (a late replay revokes it) or a refresh token
        // refers to it, and at least until its last access token expires: `keep_until`
        // and `tokens_until`, which every write that adds such a reference raises. So the
        // purge decides from the grant alone, a batch at a time.
        n += self.purge(GRANTS, |g: &Grant| g.keep_until.max(g.tokens_until) < now)?;
        n += self.purge_raw(EPHEMERAL, |v| ephemeral_expiry(v) < now)?;
        // One durable commit persists the batches and every earlier non-durable commit.
        self.write(true, |_| Ok(()))?;
        Ok(n)
    }

    fn backup_to(&self, path: &std::path::Path) -> Result<()> {
        self.backup(path)
    }
}

/// A stored value that does not decode, or a value that does not encode.
pub fn invalid(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

pub fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(invalid)
}

pub fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    serde_json::from_slice(b).map_err(|e| StoreError::Backend(format!("undecodable record: {e}")))
}

/// The records [`Reader::get_many`] found, decoded one by one in the order asked for.
pub struct Found(std::vec::IntoIter<Option<Vec<u8>>>);

impl Found {
    pub fn new(records: Vec<Option<Vec<u8>>>) -> Found {
        Found(records.into_iter())
    }

    /// The next record asked for, if it was there.
    pub fn take<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        self.0.next().flatten().map(|v| decode(&v)).transpose()
    }
}

pub fn tx_get<T: DeserializeOwned>(tx: &dyn Reader, t: Table, key: &str) -> Result<Option<T>> {
    tx.get(t, key)?.map(|v| decode(&v)).transpose()
}

pub fn tx_put<T: Serialize>(tx: &dyn Writer, t: Table, key: &str, v: &T) -> Result<()> {
    tx.put(t, key, &encode(v)?)
}

/// Rewrites every decodable record of a table that `edit` changes (returns `true` for);
/// returns how many.
pub fn tx_update_all<T: DeserializeOwned + Serialize>(
    tx: &dyn Writer,
    t: Table,
    mut edit: impl FnMut(&mut T) -> bool,
) -> Result<usize> {
    let mut changed = Vec::new();
    tx.scan(t, None, &mut |k, v| {
        if let Ok(mut rec) = decode::<T>(v)
            && edit(&mut rec)
        {
            changed.push((k.to_string(), rec));
        }
        Ok(true)
    })?;
    for (k, rec) in &changed {
        tx_put(tx, t, k, rec)?;
    }
    Ok(changed.len())
}

/// Removes every record of a table for which `drop` says so; returns how many.
pub fn tx_retain<T: DeserializeOwned>(
    tx: &dyn Writer,
    t: Table,
    mut drop: impl FnMut(&str, &T) -> bool,
) -> Result<usize> {
    let mut doomed = Vec::new();
    tx.scan(t, None, &mut |k, v| {
        // An undecodable record is left for an operator to look at, never silently removed.
        if let Ok(rec) = decode::<T>(v)
            && drop(k, &rec)
        {
            doomed.push(k.to_string());
        }
        Ok(true)
    })?;
    for k in &doomed {
        tx.remove(t, k)?;
    }
    Ok(doomed.len())
}

/// Marks every live grant `pick` chooses revoked; returns how many.
pub fn tx_revoke_grants_where(tx: &dyn Writer, pick: impl Fn(&Grant) -> bool) -> Result<usize> {
    tx_update_all::<Grant>(tx, GRANTS, |g| {
        let hit = !g.revoked && pick(g);
        g.revoked |= hit;
        hit
    })
}

/// Stores a grant with its first refresh token. The grant is kept (`keep_until`) at
/// least until its access tokens and that refresh token expire, and until `also` (the
/// replay window of the code or device code it came from): the purge then needs no
/// look at what refers to it.
pub fn put_issued(tx: &dyn Writer, i: &Issued<'_>, also: i64) -> Result<()> {
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
pub fn refresh_end(rt: &RefreshToken) -> i64 {
    rt.expires_at.min(rt.absolute_expires_at)
}

/// How long `g` must be kept once something new that lasts until `until` refers to it.
pub fn kept_until(g: &Grant, until: i64) -> i64 {
    g.keep_until.max(g.tokens_until).max(until)
}

/// When an [`EPHEMERAL`] record expires.
pub fn ephemeral_expiry(v: &[u8]) -> i64 {
    v.get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(i64::MIN, i64::from_be_bytes)
}

pub fn consent_key(user_id: &str, client_id: &str) -> String {
    format!("{user_id}\u{0}{client_id}")
}
