//! State of a sign-in in progress, kept in memory (a restart asks the user to start again
//! from the application), bounded in number and lifetime so unauthenticated requests
//! cannot grow it without limit: pending authorization requests while the user signs in
//! or answers the consent page, and sign-ins waiting for a second factor or a new password.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::oidc::authorize::AuthRequest;

/// Security baseline §4.3: the login/consent interaction lives 15 minutes.
pub const TTL: i64 = 15 * 60;
const MAX: usize = 10_000;

/// Records under random ids that expire `ttl` seconds after they were made; at most
/// `MAX`, the oldest giving way.
pub struct Expiring<T> {
    map: Mutex<HashMap<String, (i64, T)>>,
    ttl: i64,
}

impl<T: Clone> Expiring<T> {
    pub fn new(ttl: i64) -> Self {
        Expiring {
            map: Mutex::default(),
            ttl,
        }
    }

    /// Stores `value` under a new random id.
    pub fn start(&self, value: T, now: i64) -> String {
        let id = crate::clock::random_token();
        if let Ok(mut m) = self.map.lock() {
            if m.len() >= MAX {
                m.retain(|_, (t, _)| now - *t < self.ttl);
            }
            if m.len() >= MAX
                && let Some(oldest) = m
                    .iter()
                    .min_by_key(|(_, (t, _))| *t)
                    .map(|(k, _)| k.clone())
            {
                m.remove(&oldest);
            }
            m.insert(id.clone(), (now, value));
        }
        id
    }

    pub fn get(&self, id: &str, now: i64) -> Option<T> {
        let m = self.map.lock().ok()?;
        m.get(id)
            .filter(|(t, _)| now - t < self.ttl)
            .map(|(_, v)| v.clone())
    }

    /// When the record was made.
    pub fn started(&self, id: &str) -> Option<i64> {
        self.map.lock().ok()?.get(id).map(|(t, _)| *t)
    }

    pub fn update(&self, id: &str, edit: impl FnOnce(&mut T)) {
        if let Ok(mut m) = self.map.lock()
            && let Some((_, v)) = m.get_mut(id)
        {
            edit(v);
        }
    }

    pub fn finish(&self, id: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(id);
        }
    }
}

#[derive(Debug, Clone)]
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
    /// Stores an interaction under a new random id.
    pub fn start(&self, request: AuthRequest, now: i64) -> String {
        self.0.start(
            Interaction {
                request,
                started: now,
                consented_by: None,
            },
            now,
        )
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
}
