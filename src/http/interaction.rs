//! State of a sign-in in progress, kept in memory (a restart asks the user to start again
//! from the application), bounded in number and lifetime so unauthenticated requests
//! cannot grow it without limit: pending authorization requests while the user signs in
//! or answers the consent page, and sign-ins waiting for a second factor or a new password.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::oidc::authorize::AuthRequest;
use crate::signin::throttle::Source;
use crate::store::Store;

/// Security baseline §4.3: the login/consent interaction lives 15 minutes.
pub const TTL: i64 = 15 * 60;
const MAX: usize = 10_000;

/// Limits on records that unauthenticated requests create (SPEC §8). A new record that
/// does not fit is refused: nothing is ever pushed out for it, so no sign-in in progress
/// is lost to a flood (nor to a colleague behind the same NAT). Browsers that signed in
/// here before (a session or a known-browser cookie) use a reserve beyond the general
/// share, and are not held to their address's share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub count: usize,
    pub bytes: usize,
    pub per_source: usize,
    pub per_source_bytes: usize,
    pub reserve_count: usize,
    pub reserve_bytes: usize,
}

/// Pending authorization requests: at most 10,000 records and 24 MiB from anybody, 1,000
/// records and 1 MiB from one address (IPv6: one /64), and 2,000 more records and 8 MiB
/// for browsers that signed in before.
pub const INTERACTIONS: Budget = Budget {
    count: MAX,
    bytes: 24 << 20,
    per_source: 1_000,
    per_source_bytes: 1 << 20,
    reserve_count: 2_000,
    reserve_bytes: 8 << 20,
};

struct Record<T> {
    made: i64,
    value: T,
    source: Option<Source>,
    bytes: usize,
}

struct Inner<T> {
    map: HashMap<String, Record<T>>,
    bytes: usize,
    /// Records and bytes held per source.
    by_source: HashMap<Source, (usize, usize)>,
}

/// Records under random ids that expire `ttl` seconds after they were made. On a store
/// that several nodes share, the records live there (under `<kind>/<id>`), so the next
/// request of a sign-in may reach any node; this node's map then only counts what its
/// requests made, for the budgets.
pub struct Expiring<T> {
    inner: Mutex<Inner<T>>,
    ttl: i64,
    shared: Option<(Arc<dyn Store>, &'static str)>,
}

/// A record as a shared store keeps it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Kept<T> {
    made: i64,
    value: T,
}

/// Why a record was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl<T: Clone + Serialize + DeserializeOwned> Expiring<T> {
    /// Records in this process's memory.
    pub fn new(ttl: i64) -> Self {
        Expiring {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                bytes: 0,
                by_source: HashMap::new(),
            }),
            ttl,
            shared: None,
        }
    }

    /// Records in `store` when other nodes share it ([`crate::store::Ephemera::shared`]),
    /// in memory otherwise; `kind` names them there.
    pub fn in_store(ttl: i64, store: &Arc<dyn Store>, kind: &'static str) -> Self {
        Expiring {
            shared: store.shared().then(|| (store.clone(), kind)),
            ..Expiring::new(ttl)
        }
    }

    /// Where the shared store keeps record `id`: under the id's hash, as sessions and
    /// codes are (a reader of the database learns no usable id).
    fn key(kind: &str, id: &str) -> String {
        format!("{kind}/{}", crate::keys::token_hash(id))
    }

    /// Puts a new record into the shared store, if there is one; `false` when the store
    /// could not take it (the record is then unusable: nodes read only the store).
    fn share(&self, id: &str, made: i64, value: &T) -> bool {
        if let Some((store, kind)) = &self.shared {
            let kept = serde_json::to_vec(&Kept { made, value });
            let put = kept.map_err(|e| e.to_string()).and_then(|v| {
                store
                    .put_ephemeral(&Self::key(kind, id), &v, made + self.ttl)
                    .map_err(|e| e.to_string())
            });
            if let Err(e) = put {
                tracing::warn!(kind, error = %e, "could not share a sign-in record with the other nodes");
                return false;
            }
        }
        true
    }

    /// The shared record: `Some(None)` when the store has none or cannot answer (never
    /// this node's copy instead: another node may have used it up), `None` without a
    /// shared store.
    fn shared_get(&self, id: &str, now: i64, take: bool) -> Option<Option<(i64, T)>> {
        let (store, kind) = self.shared.as_ref()?;
        let key = Self::key(kind, id);
        let found = if take {
            store.take_ephemeral(&key, now)
        } else {
            store.ephemeral(&key, now)
        };
        match found {
            Ok(v) => Some(
                v.and_then(|b| serde_json::from_slice::<Kept<T>>(&b).ok())
                    .filter(|k| now - k.made < self.ttl)
                    .map(|k| (k.made, k.value)),
            ),
            Err(e) => {
                tracing::warn!(kind, error = %e, "the shared store did not answer for a sign-in record");
                Some(None)
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `value` under a new random id; at most `MAX` records, the oldest giving way.
    /// Only for records made after authentication (a correct password), whose number
    /// the throttle and the hashing pool already bound.
    pub fn start(&self, value: T, now: i64) -> String {
        let id = crate::clock::random_token();
        let mut m = self.lock();
        if m.map.len() >= MAX {
            m.purge(now, self.ttl);
        }
        if m.map.len() >= MAX
            && let Some(oldest) = m
                .map
                .iter()
                .min_by_key(|(_, r)| r.made)
                .map(|(k, _)| k.clone())
        {
            let _ = m.remove(&oldest);
        }
        m.insert(id.clone(), now, value.clone(), None, 0);
        drop(m);
        self.share(&id, now, &value);
        id
    }

    /// Stores `value` (about `bytes` large) for `source` within `budget`; `reserved` lets
    /// it use the reserve. `Err(Full)` when there is no room that is not someone else's.
    pub fn try_start(
        &self,
        value: T,
        bytes: usize,
        source: Source,
        reserved: bool,
        budget: &Budget,
        now: i64,
    ) -> Result<String, Full> {
        let mut m = self.lock();
        let (count, size) = if reserved {
            (
                budget.count + budget.reserve_count,
                budget.bytes + budget.reserve_bytes,
            )
        } else {
            (budget.count, budget.bytes)
        };
        let fits = |m: &Inner<T>| m.map.len() < count && m.bytes + bytes <= size;
        if !fits(&m) {
            m.purge(now, self.ttl);
        }
        let (n, b) = m.by_source.get(&source).copied().unwrap_or_default();
        let source_full = n >= budget.per_source || b + bytes > budget.per_source_bytes;
        if !fits(&m) || (source_full && !reserved) {
            return Err(Full);
        }
        // Reserved records do not use up their address's share.
        let id = crate::clock::random_token();
        m.insert(
            id.clone(),
            now,
            value.clone(),
            (!reserved).then_some(source),
            bytes,
        );
        drop(m);
        // The database round trip after the lock is released.
        if !self.share(&id, now, &value) {
            let _ = self.lock().remove(&id);
            return Err(Full);
        }
        Ok(id)
    }

    pub fn get(&self, id: &str, now: i64) -> Option<T> {
        if let Some(found) = self.shared_get(id, now, false) {
            return found.map(|(_, v)| v);
        }
        let m = self.lock();
        m.map
            .get(id)
            .filter(|r| now - r.made < self.ttl)
            .map(|r| r.value.clone())
    }

    /// When the record was made.
    pub fn started(&self, id: &str, now: i64) -> Option<i64> {
        if let Some(found) = self.shared_get(id, now, false) {
            return found.map(|(made, _)| made);
        }
        self.lock().map.get(id).map(|r| r.made)
    }

    pub fn update(&self, id: &str, edit: impl Fn(&mut T)) {
        if let Some((store, kind)) = &self.shared {
            let rewrite = |b: &[u8]| {
                let mut k: Kept<T> = serde_json::from_slice(b).ok()?;
                edit(&mut k.value);
                serde_json::to_vec(&k).ok()
            };
            if let Err(e) = store.update_ephemeral(&Self::key(kind, id), i64::MIN, &rewrite) {
                tracing::warn!(kind, error = %e, "could not update a shared sign-in record");
            }
        }
        if let Some(r) = self.lock().map.get_mut(id) {
            edit(&mut r.value);
        }
    }

    pub fn finish(&self, id: &str) {
        if let Some((store, kind)) = &self.shared
            && let Err(e) = store.delete_ephemeral(&Self::key(kind, id))
        {
            tracing::warn!(kind, error = %e, "could not end a shared sign-in record");
        }
        let _ = self.lock().remove(id);
    }

    /// Takes the record out: a second take of the same id finds nothing (single use),
    /// on any node.
    pub fn take(&self, id: &str, now: i64) -> Option<T> {
        if let Some(found) = self.shared_get(id, now, true) {
            let _ = self.lock().remove(id);
            return found.map(|(_, v)| v);
        }
        self.lock()
            .remove(id)
            .filter(|r| now - r.made < self.ttl)
            .map(|r| r.value)
    }

    /// Records held and their bytes, for tests and metrics.
    pub fn usage(&self) -> (usize, usize) {
        let m = self.lock();
        (m.map.len(), m.bytes)
    }
}

impl<T> Inner<T> {
    fn insert(&mut self, id: String, made: i64, value: T, source: Option<Source>, bytes: usize) {
        if let Some(src) = source {
            let used = self.by_source.entry(src).or_default();
            *used = (used.0 + 1, used.1 + bytes);
        }
        self.bytes += bytes;
        self.map.insert(
            id,
            Record {
                made,
                value,
                source,
                bytes,
            },
        );
    }

    /// Removes a record and its share of the totals; returns it.
    fn remove(&mut self, id: &str) -> Option<Record<T>> {
        let r = self.map.remove(id)?;
        self.bytes -= r.bytes;
        if let Some(src) = r.source
            && let Some(used) = self.by_source.get_mut(&src)
        {
            *used = (used.0 - 1, used.1 - r.bytes);
            if used.0 == 0 {
                self.by_source.remove(&src);
            }
        }
        Some(r)
    }

    fn purge(&mut self, now: i64, ttl: i64) {
        let expired: Vec<String> = self
            .map
            .iter()
            .filter(|(_, r)| now - r.made >= ttl)
            .map(|(k, _)| k.clone())
            .collect();
        for id in expired {
            let _ = self.remove(&id);
        }
    }
}

/// About what a pending request occupies: its strings plus a fixed overhead for the
/// record, the map entry and the id.
fn request_bytes(r: &AuthRequest) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    let list = |v: &[String]| v.iter().map(|s| s.len() + 24).sum::<usize>();
    let claims = r.claims.as_ref().map_or(0, |c| {
        list(&c.userinfo) + list(&c.id_token) + opt(&c.sub) + list(&c.essential_acr)
    });
    512 + r.client_id.len()
        + r.redirect_uri.len()
        + r.response_type.len()
        + list(&r.scopes)
        + opt(&r.state)
        + opt(&r.nonce)
        + opt(&r.code_challenge)
        + opt(&r.login_hint)
        + opt(&r.id_token_hint)
        + list(&r.acr_values)
        + claims
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Interaction {
    pub request: AuthRequest,
    /// When the interaction began; a sign-in at or after it counts as fresh.
    pub started: i64,
    /// The user who approved the consent page during this interaction. Consent counts
    /// only for that user, so an interaction id handed to someone else grants nothing.
    pub consented_by: Option<String>,
}

/// Pending authorization requests.
pub struct Interactions(Expiring<Interaction>);

impl Default for Interactions {
    fn default() -> Self {
        Interactions(Expiring::new(TTL))
    }
}

impl Interactions {
    /// Pending requests in `store` when other nodes share it, in memory otherwise.
    pub fn in_store(store: &Arc<dyn Store>) -> Interactions {
        Interactions(Expiring::in_store(TTL, store, "interaction"))
    }

    /// Stores an interaction under a new random id, within [`INTERACTIONS`]; `reserved`
    /// for browsers that signed in here before.
    pub fn start(
        &self,
        request: AuthRequest,
        source: Source,
        reserved: bool,
        now: i64,
    ) -> Result<String, Full> {
        let bytes = request_bytes(&request);
        self.0.try_start(
            Interaction {
                request,
                started: now,
                consented_by: None,
            },
            bytes,
            source,
            reserved,
            &INTERACTIONS,
            now,
        )
    }

    /// Records held and their bytes.
    pub fn usage(&self) -> (usize, usize) {
        self.0.usage()
    }

    pub fn get(&self, id: &str, now: i64) -> Option<Interaction> {
        self.0.get(id, now)
    }

    pub fn mark_consented(&self, id: &str, user_id: &str) {
        self.0
            .update(id, |i| i.consented_by = Some(user_id.to_string()));
    }

    pub fn finish(&self, id: &str) {
        self.0.finish(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_expire_and_the_oldest_give_way() {
        let e: Expiring<u32> = Expiring::new(60);
        let a = e.start(1, 1000);
        assert_eq!(e.get(&a, 1059), Some(1));
        assert_eq!(e.get(&a, 1060), None, "expired");
        e.update(&a, |v| *v = 2);
        assert_eq!(e.get(&a, 1001), Some(2));
        e.finish(&a);
        assert_eq!(e.get(&a, 1001), None);
        let first = e.start(0, 0);
        for i in 1..MAX {
            e.start(1, 1 + i as i64 % 49);
        }
        let last = e.start(9, 55);
        assert_eq!(e.get(&first, 10), None, "the oldest gave way");
        assert_eq!(e.get(&last, 56), Some(9));
    }

    const SMALL: Budget = Budget {
        count: 4,
        bytes: 1000,
        per_source: 2,
        per_source_bytes: 500,
        reserve_count: 1,
        reserve_bytes: 100,
    };

    fn src(n: u32) -> Source {
        Source::V4(n)
    }

    #[test]
    fn a_source_at_its_share_is_refused_and_nothing_is_evicted() {
        let e: Expiring<u32> = Expiring::new(60);
        let a1 = e.try_start(1, 10, src(1), false, &SMALL, 0).unwrap();
        let a2 = e.try_start(2, 10, src(1), false, &SMALL, 1).unwrap();
        assert_eq!(
            e.try_start(3, 10, src(1), false, &SMALL, 2),
            Err(Full),
            "count"
        );
        assert_eq!(
            e.try_start(3, 600, src(2), false, &SMALL, 2),
            Err(Full),
            "bytes"
        );
        assert_eq!(e.get(&a1, 3), Some(1), "a colleague's sign-in stays");
        assert_eq!(e.get(&a2, 3), Some(2));
        // A browser that signed in before is not held to its address's share.
        let r = e.try_start(4, 10, src(1), true, &SMALL, 3).unwrap();
        assert_eq!(e.get(&r, 3), Some(4));
        // A finished record frees its share.
        e.finish(&a1);
        assert!(e.try_start(5, 10, src(1), false, &SMALL, 4).is_ok());
        assert_eq!(e.usage(), (3, 30));
    }

    #[test]
    fn a_full_budget_refuses_and_never_evicts_others() {
        let e: Expiring<u32> = Expiring::new(60);
        let ids: Vec<String> = (0..4)
            .map(|i| e.try_start(i, 10, src(i), false, &SMALL, 0).unwrap())
            .collect();
        assert_eq!(e.try_start(9, 10, src(99), false, &SMALL, 1), Err(Full));
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(e.get(id, 1), Some(i as u32), "kept");
        }
        // A known browser may use the reserve, once.
        let r = e.try_start(7, 10, src(98), true, &SMALL, 1).unwrap();
        assert_eq!(e.get(&r, 1), Some(7));
        assert_eq!(e.try_start(8, 10, src(97), true, &SMALL, 1), Err(Full));
        // Bytes count as well as records.
        let f: Expiring<u32> = Expiring::new(60);
        f.try_start(1, 450, src(1), false, &SMALL, 0).unwrap();
        f.try_start(2, 450, src(2), false, &SMALL, 0).unwrap();
        assert_eq!(f.try_start(3, 200, src(3), false, &SMALL, 0), Err(Full));
        // Expired records make room.
        let late = e.try_start(5, 10, src(50), false, &SMALL, 60).unwrap();
        assert_eq!(e.get(&late, 61), Some(5));
        assert_eq!(
            e.usage().0,
            2,
            "the reserved record made at 1 s is still live"
        );
    }
}
