//! Pending authorization requests while the user signs in or answers the consent page.
//! Kept in memory (a restart asks the user to start again from the application), bounded
//! in number and lifetime so unauthenticated requests cannot grow it without limit.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::oidc::authorize::AuthRequest;

/// Security baseline §4.3: the login/consent interaction lives 15 minutes.
pub const TTL: i64 = 15 * 60;
const MAX: usize = 10_000;

#[derive(Debug, Clone)]
pub struct Interaction {
    pub request: AuthRequest,
    /// When the interaction began; a sign-in at or after it counts as fresh.
    pub started: i64,
    /// The user who approved the consent page during this interaction. Consent counts
    /// only for that user, so an interaction id handed to someone else grants nothing.
    pub consented_by: Option<String>,
}

#[derive(Default)]
pub struct Interactions {
    map: Mutex<HashMap<String, Interaction>>,
}

impl Interactions {
    /// Stores an interaction under a new random id.
    pub fn start(&self, request: AuthRequest, now: i64) -> String {
        let id = crate::clock::random_token();
        if let Ok(mut m) = self.map.lock() {
            if m.len() >= MAX {
                m.retain(|_, i| now - i.started < TTL);
            }
            if m.len() >= MAX
                && let Some(oldest) = m
                    .iter()
                    .min_by_key(|(_, i)| i.started)
                    .map(|(k, _)| k.clone())
            {
                m.remove(&oldest);
            }
            m.insert(
                id.clone(),
                Interaction {
                    request,
                    started: now,
                    consented_by: None,
                },
            );
        }
        id
    }

    pub fn get(&self, id: &str, now: i64) -> Option<Interaction> {
        let m = self.map.lock().ok()?;
        m.get(id).filter(|i| now - i.started < TTL).cloned()
    }

    pub fn mark_consented(&self, id: &str, user_id: &str) {
        if let Ok(mut m) = self.map.lock()
            && let Some(i) = m.get_mut(id)
        {
            i.consented_by = Some(user_id.to_string());
        }
    }

    pub fn finish(&self, id: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(id);
        }
    }
}
