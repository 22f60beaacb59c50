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
        n += self.purge(REFRESH_TOKENS, |r: &RefreshToken| refresh_end(r) < now)?;
        // A grant is kept while a code (a late replay revokes it) or a refresh token
        // refers to it, and at least until its last access token expires: `keep_until`
        // and `tokens_until`, which every write that adds such a reference raises. So the
        // purge decides from the grant alone, a batch at a time.
        n += self.purge(GRANTS, |g: &Grant| g.keep_until.max(g.tokens_until) < now)?;
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
