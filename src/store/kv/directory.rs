//! [`Directory`]: users and groups.

use super::*;

impl<E: Engine> Directory for E {
    fn create_user(&self, u: &User) -> Result<()> {
        self.write(true, |tx| {
            let key = u.username.to_lowercase();
            if tx_get::<String>(tx, USERNAMES, &key)?.is_some() {
                return Err(StoreError::Conflict(format!(
                    "username: {:?} is taken",
                    u.username
                )));
            }
            tx_put(tx, USERNAMES, &key, &u.id)?;
            tx_put(tx, USERS, &u.id, u)
        })
    }

    fn update_user(&self, u: &User) -> Result<()> {
        self.write(true, |tx| {
            let old: Option<User> = tx_get(tx, USERS, &u.id)?;
            let new_key = u.username.to_lowercase();
            if let Some(old) = old {
                let old_key = old.username.to_lowercase();
                if old_key != new_key {
                    if tx_get::<String>(tx, USERNAMES, &new_key)?.is_some() {
                        return Err(StoreError::Conflict(format!(
                            "username: {:?} is taken",
                            u.username
                        )));
                    }
                    tx.remove(USERNAMES, &old_key)?;
                }
            }
            tx_put(tx, USERNAMES, &new_key, &u.id)?;
            tx_put(tx, USERS, &u.id, u)
        })
    }

    fn update_user_if(&self, expected: &User, new: &User) -> Result<bool> {
        self.write(true, |tx| {
            if tx_get::<User>(tx, USERS, &expected.id)?.as_ref() != Some(expected) {
                return Ok(false);
            }
            let (old_key, new_key) = (
                expected.username.to_lowercase(),
                new.username.to_lowercase(),
            );
            if old_key != new_key {
                if tx_get::<String>(tx, USERNAMES, &new_key)?.is_some() {
                    return Err(StoreError::Conflict(format!(
                        "username: {:?} is taken",
                        new.username
                    )));
                }
                tx.remove(USERNAMES, &old_key)?;
                tx_put(tx, USERNAMES, &new_key, &new.id)?;
            }
            tx_put(tx, USERS, &new.id, new)?;
            Ok(true)
        })
    }

    fn user(&self, id: &str) -> Result<Option<User>> {
        self.get(USERS, id)
    }

    fn user_by_name(&self, username: &str) -> Result<Option<User>> {
        match self.get::<String>(USERNAMES, &username.to_lowercase())? {
            Some(id) => self.user(&id),
            None => Ok(None),
        }
    }

    fn users(&self) -> Result<Vec<User>> {
        let mut v: Vec<User> = self.list(USERS)?;
        v.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(v)
    }

    fn any_user(&self, pred: &dyn Fn(&User) -> bool) -> Result<bool> {
        self.read(|tx| {
            let mut found = false;
            tx.scan(USERS, None, &mut |_, v| {
                found = pred(&decode::<User>(v)?);
                Ok(!found)
            })?;
            Ok(found)
        })
    }

    fn delete_user(&self, id: &str) -> Result<bool> {
        self.write(true, |tx| {
            let Some(u) = tx_get::<User>(tx, USERS, id)? else {
                return Ok(false);
            };
            tx.remove(USERNAMES, &u.username.to_lowercase())?;
            tx.remove(USERS, id)?;
            tx_retain::<Session>(tx, SESSIONS, |_, s| s.user_id == id)?;
            tx_retain::<Consent>(tx, CONSENTS, |_, c| c.user_id == id)?;
            tx_retain::<RefreshToken>(tx, REFRESH_TOKENS, |_, r| r.user_id == id)?;
            Ok(true)
        })
    }

    fn put_group(&self, g: &Group) -> Result<()> {
        self.put(GROUPS, &g.name, g, true)
    }

    fn groups(&self) -> Result<Vec<Group>> {
        self.list(GROUPS)
    }

    fn delete_group(&self, name: &str) -> Result<bool> {
        self.remove(GROUPS, name, true)
    }
}
