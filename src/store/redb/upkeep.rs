//! [`Upkeep`] on redb: metadata, maintenance and backup.

use super::*;

impl Upkeep for RedbStore {
    fn meta(&self, key: &str) -> Result<Option<String>> {
        self.read(|tx| {
            let table = tx.open_table(META).map_err(backend)?;
            let v = table.get(key).map_err(backend)?;
            Ok(v.map(|g| String::from_utf8_lossy(g.value()).into_owned()))
        })
    }

    fn put_meta(&self, key: &str, value: &str) -> Result<()> {
        self.write(true, |tx| {
            tx.open_table(META)
                .map_err(backend)?
                .insert(key, value.as_bytes())
                .map_err(backend)?;
            Ok(())
        })
    }

    fn delete_meta(&self, key: &str) -> Result<bool> {
        self.remove(META, key, true)
    }

    fn purge_expired(&self, now: i64) -> Result<usize> {
        let mut n = self.purge(CODES, |c: &AuthCode| {
            c.expires_at + CODE_REPLAY_WINDOW < now
        })?;
        n += self.purge(SESSIONS, |s: &Session| s.expires_at < now)?;
        n += self.purge(ASSERTIONS, |exp: &i64| *exp + 120 < now)?;
        n += self.write(false, |tx| {
            let mut gone_codes = Vec::new();
            let n = tx_retain::<DeviceGrant>(tx, DEVICES, |_, d| {
                let gone = d.expires_at + CODE_REPLAY_WINDOW < now;
                if gone {
                    gone_codes.push(d.user_code.clone());
                }
                gone
            })?;
            let mut codes = tx.open_table(USER_CODES).map_err(backend)?;
            for c in &gone_codes {
                codes.remove(c.as_str()).map_err(backend)?;
            }
            Ok(n)
        })?;
        // Two minutes past expiry, as for assertions: a clock stepped back a little never
        // brings a revoked token back.
        n += self.purge(REVOKED_ACCESS, |exp: &i64| *exp + 120 < now)?;
        n += self.purge(REFRESH_TOKENS, |r: &RefreshToken| {
            r.expires_at.min(r.absolute_expires_at) < now
        })?;
        // A grant lives as long as something refers to it: a code (a late replay revokes
        // it) or a refresh token, and at least until its last access token expires
        // (`tokens_until`). Grants and their first tokens are stored together, and later
        // tokens only come from earlier ones, so a grant that nothing refers to in one
        // snapshot, past that time, never will again.
        let unreferenced = self.read(|tx| {
            let mut referenced = std::collections::HashSet::new();
            let mut note = |grant_id: String| {
                referenced.insert(grant_id);
            };
            read_visit::<AuthCode>(tx, CODES, |c| note(c.grant_id))?;
            read_visit::<RefreshToken>(tx, REFRESH_TOKENS, |r| note(r.grant_id))?;
            let mut doomed = Vec::new();
            read_visit::<Grant>(tx, GRANTS, |g| {
                if g.tokens_until < now && !referenced.contains(&g.grant_id) {
                    doomed.push(g.grant_id);
                }
            })?;
            Ok(doomed)
        })?;
        n += self.remove_batched(GRANTS, &unreferenced, |g: &Grant| g.tokens_until < now)?;
        // One durable commit persists the batches and every earlier non-durable commit.
        self.write(true, |_| Ok(()))?;
        Ok(n)
    }

    fn backup_to(&self, path: &Path) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        // Created owner-only before redb writes anything into it.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?;
        let target = Database::create(path)
            .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?;
        self.flush_audit(true)?;
        let snapshot = self.handle(true)?.begin_read().map_err(backend)?;
        // Failures from here on concern the backup file, not the live database.
        let out = target.begin_write().map_err(invalid)?;
        for t in ALL {
            let src = snapshot.open_table(t).map_err(backend)?;
            let mut dst = out.open_table(t).map_err(invalid)?;
            for item in src.iter().map_err(backend)? {
                let (k, v) = item.map_err(backend)?;
                dst.insert(k.value(), v.value()).map_err(invalid)?;
            }
        }
        {
            let src = snapshot.open_table(AUDIT).map_err(backend)?;
            let mut dst = out.open_table(AUDIT).map_err(invalid)?;
            for item in src.iter().map_err(backend)? {
                let (k, v) = item.map_err(backend)?;
                dst.insert(k.value(), v.value()).map_err(invalid)?;
            }
        }
        out.commit().map_err(invalid)?;
        Ok(())
    }
}
