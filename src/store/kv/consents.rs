//! [`Consents`]: consents.

use super::*;

impl<E: Engine> Consents for E {
    fn put_consent(&self, c: &Consent) -> Result<()> {
        self.put(CONSENTS, &consent_key(&c.user_id, &c.client_id), c, true)
    }

    fn consent(&self, user_id: &str, client_id: &str) -> Result<Option<Consent>> {
        self.get(CONSENTS, &consent_key(user_id, client_id))
    }

    fn consents(&self, user_id: &str) -> Result<Vec<Consent>> {
        let prefix = consent_key(user_id, "");
        Ok(self
            .list_keyed::<Consent>(CONSENTS)?
            .into_iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, c)| c)
            .collect())
    }

    fn delete_consent(&self, user_id: &str, client_id: &str) -> Result<bool> {
        self.remove(CONSENTS, &consent_key(user_id, client_id), true)
    }
}
