//! [`Tokens`]: grants, refresh tokens and the access-token revocation list.

use super::*;

impl<E: Engine> Tokens for E {
    fn issue_tokens(&self, i: &Issued<'_>) -> Result<()> {
        self.write(i.refresh.is_some(), |tx| put_issued(tx, i, 0))
    }

    fn grant(&self, id: &str) -> Result<Option<Grant>> {
        self.get(GRANTS, id)
    }

    fn revoke_grant(&self, id: &str, client_id: &str, user_id: &str, now: i64) -> Result<()> {
        self.write(true, |tx| {
            let mut g = tx_get::<Grant>(tx, GRANTS, id)?.unwrap_or_else(|| Grant {
                grant_id: id.to_string(),
                client_id: client_id.to_string(),
                user_id: user_id.to_string(),
                created_at: now,
                // A marker for a grant already gone: kept as long as a used code is.
                keep_until: now + CODE_REPLAY_WINDOW,
                ..Grant::default()
            });
            g.revoked = true;
            tx_put(tx, GRANTS, id, &g)
        })
    }

    fn revoke_user_grants(&self, user_id: &str) -> Result<usize> {
        self.revoke_grants_where(|g| g.user_id == user_id)
    }

    fn revoke_user_client_grants(&self, user_id: &str, client_id: &str) -> Result<usize> {
        // One transaction: a code redeemed meanwhile cannot start a grant in between.
        self.write(true, |tx| {
            let n =
                tx_revoke_grants_where(tx, |g| g.user_id == user_id && g.client_id == client_id)?;
            // A code issued but not redeemed yet has no grant record; a revoked one makes
            // its redemption fail instead of starting a grant after the revocation.
            let mut pending = Vec::new();
            tx.scan(CODES, None, &mut |_, v| {
                if let Ok(c) = decode::<AuthCode>(v)
                    && !c.used
                    && c.user_id == user_id
                    && c.client_id == client_id
                {
                    pending.push(c);
                }
                Ok(true)
            })?;
            for c in pending {
                if tx_get::<Grant>(tx, GRANTS, &c.grant_id)?.is_none() {
                    let g = Grant {
                        grant_id: c.grant_id.clone(),
                        client_id: c.client_id.clone(),
                        user_id: c.user_id.clone(),
                        created_at: c.auth_time,
                        revoked: true,
                        session_hash: c.session_hash.clone(),
                        keep_until: c.expires_at + CODE_REPLAY_WINDOW,
                        ..Grant::default()
                    };
                    tx_put(tx, GRANTS, &c.grant_id, &g)?;
                }
            }
            Ok(n)
        })
    }

    fn revoke_session_grants(&self, session_hash: &str) -> Result<usize> {
        self.revoke_grants_where(|g| g.session_hash == session_hash && !g.offline)
    }

    fn revoke_access_token(&self, jti: &str, expires_at: i64) -> Result<()> {
        self.put(REVOKED_ACCESS, jti, &expires_at, true)
    }

    fn access_token_context(
        &self,
        jti: &str,
        grant_id: Option<&str>,
        client_id: &str,
        sub: &str,
    ) -> Result<TokenContext> {
        // Independent of each other: the user is read by the token's subject, which a
        // grant must name anyway.
        let mut keys = vec![(REVOKED_ACCESS, jti), (CLIENTS, client_id)];
        if let Some(id) = grant_id {
            keys.extend([(GRANTS, id), (USERS, sub)]);
        }
        let mut found = Found::new(self.get_many(&keys)?);
        let revoked = found.take::<serde::de::IgnoredAny>()?.is_some();
        let client: Option<Client> = found.take()?;
        let grant: Option<Grant> = found.take()?;
        let user = found
            .take::<User>()?
            .filter(|u| grant.as_ref().is_some_and(|g| g.user_id == u.id));
        Ok(TokenContext {
            revoked,
            grant,
            user,
            client,
        })
    }

    fn refresh_token(&self, hash: &str) -> Result<Option<RefreshToken>> {
        self.get(REFRESH_TOKENS, hash)
    }

    fn refresh_context(&self, hash: &str) -> Result<Option<RefreshContext>> {
        self.read_latest(|tx| {
            let Some(token) = tx_get::<RefreshToken>(tx, REFRESH_TOKENS, hash)? else {
                return Ok(None);
            };
            let mut found = Found::new(tx.get_many(&[
                (GRANTS, token.grant_id.as_str()),
                (USERS, token.user_id.as_str()),
            ])?);
            let grant: Option<Grant> = found.take()?;
            let user = found.take()?;
            // The grant follows its session when a sign-in again moves it to a new cookie.
            let session = match &grant {
                Some(g) => tx_get(tx, SESSIONS, &g.session_hash)?,
                None => None,
            };
            Ok(Some(RefreshContext {
                token,
                grant,
                user,
                session,
            }))
        })
    }

    fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new_hash: &str,
        new: &RefreshToken,
        tokens_until: i64,
        userinfo_claims: &[String],
    ) -> Result<Consumed<RefreshToken>> {
        self.write(true, |tx| {
            let mut found = Found::new(
                tx.get_many(&[(REFRESH_TOKENS, old_hash), (GRANTS, new.grant_id.as_str())])?,
            );
            let Some(mut old) = found.take::<RefreshToken>()? else {
                return Ok(Consumed::Missing);
            };
            if old.used {
                return Ok(Consumed::Replayed(old));
            }
            // A grant revoked since the caller looked (logout, revocation, a password
            // change) yields nothing: no successor, and the caller's new access token is
            // refused wherever it is checked.
            let Some(mut g) = found.take::<Grant>()?.filter(|g| !g.revoked) else {
                return Ok(Consumed::Missing);
            };
            old.used = true;
            // Kept until it expires only to recognise a replay: the slim form.
            tx_put(tx, REFRESH_TOKENS, old_hash, &old.spent())?;
            tx_put(tx, REFRESH_TOKENS, new_hash, new)?;
            g.tokens_until = g.tokens_until.max(tokens_until);
            g.keep_until = kept_until(&g, refresh_end(new));
            g.userinfo_claims = userinfo_claims.to_vec();
            tx_put(tx, GRANTS, &new.grant_id, &g)?;
            Ok(Consumed::Fresh(old))
        })
    }
}
