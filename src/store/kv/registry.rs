//! [`Registry`]: clients.

use super::*;

impl<E: Engine> Registry for E {
    fn create_client(&self, c: &Client) -> Result<()> {
        self.write(true, |tx| {
            if tx_get::<Client>(tx, CLIENTS, &c.client_id)?.is_some() {
                return Err(StoreError::Conflict(format!(
                    "client_id: {:?} is taken",
                    c.client_id
                )));
            }
            tx_put(tx, CLIENTS, &c.client_id, c)
        })
    }

    fn update_client(&self, c: &Client) -> Result<()> {
        self.put(CLIENTS, &c.client_id, c, true)
    }

    fn update_client_if(&self, expected: &Client, new: &Client) -> Result<bool> {
        self.write(true, |tx| {
            if tx_get::<Client>(tx, CLIENTS, &expected.client_id)?.as_ref() != Some(expected) {
                return Ok(false);
            }
            tx_put(tx, CLIENTS, &new.client_id, new)?;
            Ok(true)
        })
    }

    fn client(&self, id: &str) -> Result<Option<Client>> {
        self.get(CLIENTS, id)
    }

    fn clients(&self) -> Result<Vec<Client>> {
        let mut v: Vec<Client> = self.list(CLIENTS)?;
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    fn delete_client(&self, id: &str) -> Result<bool> {
        self.write(true, |tx| {
            let existed = tx.remove(CLIENTS, id)?;
            tx_retain::<Consent>(tx, CONSENTS, |_, c| c.client_id == id)?;
            tx_retain::<RefreshToken>(tx, REFRESH_TOKENS, |_, r| r.client_id == id)?;
            Ok(existed)
        })
    }
}
