//! Backups of a redb file.

use super::*;

impl RedbStore {
    /// Copies every table, in one read snapshot, into a new file at `path` (owner-only).
    pub(super) fn backup_file(&self, path: &Path) -> Result<()> {
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
            let src = snapshot.open_table(def(t)).map_err(backend)?;
            let mut dst = out.open_table(def(t)).map_err(invalid)?;
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
