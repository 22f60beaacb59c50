//! [`Outbox`] on redb: queued mail, keyed `<user id>:<kind>`.

use super::*;

impl Outbox for RedbStore {
    fn queue_mail(&self, m: &OutboxMail) -> Result<()> {
        self.put(OUTBOX, &m.key(), m, true)
    }

    fn update_mail(&self, m: &OutboxMail) -> Result<bool> {
        let key = m.key();
        let value = encode(m)?;
        self.write(true, |tx| {
            let mut t = tx.open_table(OUTBOX).map_err(backend)?;
            if t.get(key.as_str()).map_err(backend)?.is_none() {
                return Ok(false);
            }
            t.insert(key.as_str(), value.as_slice()).map_err(backend)?;
            Ok(true)
        })
    }

    fn delete_mail(&self, key: &str) -> Result<bool> {
        self.remove(OUTBOX, key, true)
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
