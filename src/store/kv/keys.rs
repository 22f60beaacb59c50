//! [`SigningKeys`]: signing key records.

use super::*;

impl<E: Engine> SigningKeys for E {
    fn put_key(&self, k: &KeyRecord) -> Result<()> {
        self.put(KEYS, &k.kid, k, true)
    }

    fn put_keys(&self, keys: &[KeyRecord]) -> Result<()> {
        self.write(true, |tx| {
            for k in keys {
                tx_put(tx, KEYS, &k.kid, k)?;
            }
            Ok(())
        })
    }

    fn delete_key(&self, kid: &str) -> Result<bool> {
        self.remove(KEYS, kid, true)
    }

    fn keys(&self) -> Result<Vec<KeyRecord>> {
        self.list(KEYS)
    }
}
