//! [`Ephemera`]: short-lived records, each prefixed with its expiry.

use super::*;
use crate::store::Ephemera;

/// The record inside a stored value, if it has not expired by `now`.
fn live(v: &[u8], now: i64) -> Option<Vec<u8>> {
    (ephemeral_expiry(v) > now).then(|| v[8..].to_vec())
}

fn stored(value: &[u8], expires_at: i64) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + value.len());
    v.extend_from_slice(&expires_at.to_be_bytes());
    v.extend_from_slice(value);
    v
}

impl<E: Engine> Ephemera for E {
    fn shared(&self) -> bool {
        Engine::shared(self)
    }

    fn put_ephemeral(&self, key: &str, value: &[u8], expires_at: i64) -> Result<()> {
        let v = stored(value, expires_at);
        self.write(false, |tx| tx.put(EPHEMERAL, key, &v))
    }

    fn ephemeral(&self, key: &str, now: i64) -> Result<Option<Vec<u8>>> {
        self.read_latest(|tx| Ok(tx.get(EPHEMERAL, key)?.and_then(|v| live(&v, now))))
    }

    fn take_ephemeral(&self, key: &str, now: i64) -> Result<Option<Vec<u8>>> {
        // Durable: a record taken must not come back after a crash (a ceremony, a pushed
        // request is single use).
        self.write(true, |tx| {
            let Some(v) = tx.get(EPHEMERAL, key)? else {
                return Ok(None);
            };
            tx.remove(EPHEMERAL, key)?;
            Ok(live(&v, now))
        })
    }

    fn update_ephemeral(
        &self,
        key: &str,
        now: i64,
        edit: &dyn Fn(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<bool> {
        self.write(false, |tx| {
            let Some(v) = tx.get(EPHEMERAL, key)? else {
                return Ok(false);
            };
            let Some(new) = live(&v, now).and_then(|old| edit(&old)) else {
                return Ok(false);
            };
            tx.put(EPHEMERAL, key, &stored(&new, ephemeral_expiry(&v)))?;
            Ok(true)
        })
    }

    fn delete_ephemeral(&self, key: &str) -> Result<bool> {
        self.remove(EPHEMERAL, key, false)
    }

    fn merge_ephemeral(
        &self,
        key: &str,
        now: i64,
        expires_at: i64,
        make: &dyn Fn(Option<&[u8]>) -> Vec<u8>,
    ) -> Result<Vec<u8>> {
        self.write(false, |tx| {
            let old = tx.get(EPHEMERAL, key)?.and_then(|v| live(&v, now));
            let new = make(old.as_deref());
            tx.put(EPHEMERAL, key, &stored(&new, expires_at))?;
            Ok(new)
        })
    }
}
