//! [`Sessions`]: SSO sessions.

use super::*;

impl<E: Engine> Sessions for E {
    fn put_session(&self, hash: &str, s: &Session) -> Result<()> {
        self.put(SESSIONS, hash, s, false)
    }

    fn session(&self, hash: &str) -> Result<Option<Session>> {
        self.get(SESSIONS, hash)
    }

    fn session_context(
        &self,
        hash: &str,
        consent_for: Option<&str>,
    ) -> Result<Option<SessionContext>> {
        self.read_latest(|tx| {
            let Some(session) = tx_get::<Session>(tx, SESSIONS, hash)? else {
                return Ok(None);
            };
            let consent = consent_for.map(|c| consent_key(&session.user_id, c));
            let mut keys = vec![(USERS, session.user_id.as_str())];
            keys.extend(consent.as_deref().map(|k| (CONSENTS, k)));
            let mut found = Found::new(tx.get_many(&keys)?);
            Ok(Some(SessionContext {
                user: found.take()?,
                consent: found.take()?,
                session,
            }))
        })
    }

    fn delete_session(&self, hash: &str) -> Result<bool> {
        self.remove(SESSIONS, hash, true)
    }

    fn update_session(&self, hash: &str, edit: &dyn Fn(&mut Session)) -> Result<bool> {
        self.write(false, |tx| {
            let Some(mut s) = tx_get::<Session>(tx, SESSIONS, hash)? else {
                return Ok(false);
            };
            edit(&mut s);
            tx_put(tx, SESSIONS, hash, &s)?;
            Ok(true)
        })
    }

    fn move_session(
        &self,
        old_hash: &str,
        new_hash: &str,
        edit: &dyn Fn(&mut Session),
    ) -> Result<Option<Session>> {
        self.write(true, |tx| {
            let Some(mut s) = tx_get::<Session>(tx, SESSIONS, old_hash)? else {
                return Ok(None);
            };
            tx.remove(SESSIONS, old_hash)?;
            edit(&mut s);
            tx_put(tx, SESSIONS, new_hash, &s)?;
            // Codes and grants exist only for applications the session took part in.
            if !s.clients.is_empty() {
                let moved = |h: &mut String| {
                    let hit = h == old_hash;
                    if hit {
                        *h = new_hash.to_string();
                    }
                    hit
                };
                tx_update_all::<Grant>(tx, GRANTS, |g| moved(&mut g.session_hash))?;
                tx_update_all::<AuthCode>(tx, CODES, |c| moved(&mut c.session_hash))?;
            }
            Ok(Some(s))
        })
    }

    fn sessions(&self) -> Result<Vec<(String, Session)>> {
        self.list_keyed(SESSIONS)
    }

    fn count_sessions(&self, now: i64) -> Result<u64> {
        Ok(self
            .list::<Session>(SESSIONS)?
            .iter()
            .filter(|s| s.expires_at > now)
            .count() as u64)
    }

    fn delete_user_sessions_except(&self, user_id: &str, keep: &str) -> Result<usize> {
        self.write(true, |tx| {
            tx_retain::<Session>(tx, SESSIONS, |k, s| s.user_id == user_id && k != keep)
        })
    }

    fn delete_user_sessions(&self, user_id: &str) -> Result<usize> {
        self.write(true, |tx| {
            tx_retain::<Session>(tx, SESSIONS, |_, s| s.user_id == user_id)
        })
    }
}
