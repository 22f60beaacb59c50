//! [`Codes`]: authorization codes, device authorizations and assertion ids.

use super::*;

impl<E: Engine> Codes for E {
    fn put_code(&self, hash: &str, code: &AuthCode) -> Result<()> {
        self.put(CODES, hash, code, false)
    }

    fn code(&self, hash: &str) -> Result<Option<AuthCode>> {
        self.get(CODES, hash)
    }

    fn code_context(&self, hash: &str) -> Result<Option<CodeContext>> {
        self.read_latest(|tx| {
            let Some(code) = tx_get::<AuthCode>(tx, CODES, hash)? else {
                return Ok(None);
            };
            let mut found =
                Found::new(tx.get_many(&[(USERS, &code.user_id), (SESSIONS, &code.session_hash)])?);
            Ok(Some(CodeContext {
                user: found.take()?,
                session: found.take()?,
                code,
            }))
        })
    }

    fn redeem_code(&self, hash: &str, i: &Issued<'_>) -> Result<Consumed<AuthCode>> {
        // Durable: a used code must never come back (crash, or a reopen after an I/O error).
        self.write(true, |tx| {
            // The grant the code would start, its session and its user (as the caller
            // found them), read in the same round trip.
            let mut found = Found::new(tx.get_many(&[
                (CODES, hash),
                (GRANTS, i.grant.grant_id.as_str()),
                (SESSIONS, i.grant.session_hash.as_str()),
                (USERS, i.grant.user_id.as_str()),
            ])?);
            let Some(mut code) = found.take::<AuthCode>()? else {
                return Ok(Consumed::Missing);
            };
            let before = found.take::<Grant>()?;
            let mut session = found.take::<Session>()?;
            let user = found.take::<User>()?;
            if code.used {
                return Ok(Consumed::Replayed(code));
            }
            code.used = true;
            // Kept until purged only to recognise a replay: the slim form.
            tx_put(tx, CODES, hash, &code.spent())?;
            if code.session_hash != i.grant.session_hash {
                // Moved by a sign-in again since the caller read the code.
                session = tx_get(tx, SESSIONS, &code.session_hash)?;
            }
            // What ended since the caller decided leaves the code spent and yielding
            // nothing: a grant revoked meanwhile (logout ended its front-channel tokens),
            // the session ended by a logout or the user's deletion (unless offline access
            // was granted: a deleted user's tokens are refused wherever they are checked),
            // the user disabled.
            let revoked = before.as_ref().is_some_and(|g| g.revoked);
            let ended = session.is_none() && !i.grant.offline;
            let unusable = user.is_some_and(|u| u.disabled || u.id != code.user_id);
            if revoked || ended || unusable {
                return Ok(Consumed::Missing);
            }
            // The session as it is now: a sign-in again may have moved it since the
            // caller read the code. Tokens the grant already has (the hybrid flow's access
            // token) keep it alive as long as they live.
            let grant = Grant {
                session_hash: code.session_hash.clone(),
                tokens_until: i
                    .grant
                    .tokens_until
                    .max(before.as_ref().map_or(0, |g| g.tokens_until)),
                keep_until: before.map_or(0, |g| g.keep_until),
                ..i.grant.clone()
            };
            put_issued(
                tx,
                &Issued {
                    grant: &grant,
                    ..i.clone()
                },
                // The used code refers to the grant until it is purged.
                code.expires_at + CODE_REPLAY_WINDOW,
            )?;
            Ok(Consumed::Fresh(code))
        })
    }

    fn put_device(&self, hash: &str, d: &DeviceGrant) -> Result<()> {
        self.write(false, |tx| {
            if tx_get::<String>(tx, USER_CODES, &d.user_code)?.is_some() {
                return Err(StoreError::Conflict("user code taken".into()));
            }
            tx_put(tx, USER_CODES, &d.user_code, &hash.to_string())?;
            tx_put(tx, DEVICES, hash, d)
        })
    }

    fn record_device_poll(&self, hash: &str, now: i64, slow_down: bool) -> Result<()> {
        self.write(false, |tx| {
            let Some(mut d) = tx_get::<DeviceGrant>(tx, DEVICES, hash)? else {
                return Ok(());
            };
            if d.used || d.status != crate::model::DeviceStatus::Pending {
                return Ok(());
            }
            d.last_poll = Some(now);
            if slow_down {
                d.interval += 5;
            }
            tx_put(tx, DEVICES, hash, &d)
        })
    }

    fn answer_device(
        &self,
        hash: &str,
        status: &crate::model::DeviceStatus,
        now: i64,
    ) -> Result<bool> {
        self.write(false, |tx| {
            let Some(mut d) = tx_get::<DeviceGrant>(tx, DEVICES, hash)? else {
                return Ok(false);
            };
            if d.used || d.status != crate::model::DeviceStatus::Pending || now >= d.expires_at {
                return Ok(false);
            }
            d.status = status.clone();
            tx_put(tx, DEVICES, hash, &d)?;
            Ok(true)
        })
    }

    fn device(&self, hash: &str) -> Result<Option<DeviceGrant>> {
        self.get(DEVICES, hash)
    }

    fn device_by_user_code(&self, code: &str) -> Result<Option<(String, DeviceGrant)>> {
        let Some(hash) = self.get::<String>(USER_CODES, code)? else {
            return Ok(None);
        };
        Ok(self.device(&hash)?.map(|d| (hash, d)))
    }

    fn redeem_device(&self, hash: &str, i: &Issued<'_>) -> Result<Consumed<DeviceGrant>> {
        self.write(true, |tx| {
            let Some(mut d) = tx_get::<DeviceGrant>(tx, DEVICES, hash)? else {
                return Ok(Consumed::Missing);
            };
            if d.used {
                return Ok(Consumed::Replayed(d));
            }
            d.used = true;
            tx_put(tx, DEVICES, hash, &d)?;
            put_issued(tx, i, d.expires_at + CODE_REPLAY_WINDOW)?;
            Ok(Consumed::Fresh(d))
        })
    }

    fn record_assertion(&self, key: &str, exp: i64) -> Result<bool> {
        self.write(true, |tx| {
            if tx_get::<i64>(tx, ASSERTIONS, key)?.is_some() {
                return Ok(false);
            }
            tx_put(tx, ASSERTIONS, key, &exp)?;
            Ok(true)
        })
    }
}
