//! [`Outbox`]: queued mail, keyed `<user id>:<kind>`.

use super::*;

impl<E: Engine> Outbox for E {
    fn queue_mail(&self, m: &OutboxMail) -> Result<()> {
        self.put(OUTBOX, &m.key(), m, true)
    }

    fn update_mail(&self, m: &OutboxMail) -> Result<bool> {
        let key = m.key();
        let value = encode(m)?;
        self.write(true, |tx| {
            let same = tx_get::<OutboxMail>(tx, OUTBOX, &key)?.is_some_and(|old| old.id == m.id);
            if !same {
                return Ok(false);
            }
            tx.put(OUTBOX, &key, &value)?;
            Ok(true)
        })
    }

    fn delete_mail(&self, key: &str, id: Option<&str>) -> Result<bool> {
        let Some(id) = id else {
            return self.remove(OUTBOX, key, true);
        };
        self.write(true, |tx| {
            let same = tx_get::<OutboxMail>(tx, OUTBOX, key)?.is_some_and(|old| old.id == id);
            if !same {
                return Ok(false);
            }
            tx.remove(OUTBOX, key)?;
            Ok(true)
        })
    }

    fn mail(&self, key: &str) -> Result<Option<OutboxMail>> {
        self.get(OUTBOX, key)
    }

    fn outbox(&self) -> Result<Vec<OutboxMail>> {
        let mut all: Vec<OutboxMail> = self
            .list_keyed::<OutboxMail>(OUTBOX)?
            .into_iter()
            .map(|(_, m)| m)
            .collect();
        all.sort_by_key(|m| m.created_at);
        Ok(all)
    }
}
