//! [`AuditLog`] on redb: the audit log.

use super::*;

impl AuditLog for RedbStore {
    fn append_audit(&self, e: &AuditEvent) -> Result<()> {
        let bytes = encode(e)?;
        let full = {
            let mut q = self
                .audit_queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            q.push(bytes);
            q.len() >= AUDIT_QUEUE_MAX
        };
        if full {
            self.flush_audit(false)
        } else {
            Ok(())
        }
    }

    fn audit(&self, since: i64, limit: usize, user: Option<&str>) -> Result<Vec<AuditEvent>> {
        self.flush_audit(false)?;
        self.read_tx(|tx| {
            let table = tx.open_table(AUDIT).map_err(backend)?;
            let mut out = Vec::new();
            for item in table.iter().map_err(backend)?.rev() {
                let (_, v) = item.map_err(backend)?;
                let e: AuditEvent = decode(v.value())?;
                if e.time < since {
                    break;
                }
                if user.is_some_and(|u| e.user.as_deref() != Some(u)) {
                    continue;
                }
                out.push(e);
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn purge_audit(&self, before: i64) -> Result<usize> {
        self.flush_audit(false)?;
        // Keys grow with time, so the old events are the first ones: each batch takes the
        // oldest `PURGE_BATCH` in a transaction of its own, with a pause between batches,
        // so a minute's worth of events never holds the writer at once.
        let mut n = 0;
        loop {
            let removed = self.write_tx(false, |tx| {
                let mut t = tx.open_table(AUDIT).map_err(backend)?;
                let mut doomed = Vec::with_capacity(PURGE_BATCH);
                for item in t.iter().map_err(backend)? {
                    let (k, v) = item.map_err(backend)?;
                    match decode::<AuditEvent>(v.value()) {
                        Ok(e) if e.time < before && doomed.len() < PURGE_BATCH => {
                            doomed.push(k.value())
                        }
                        _ => break,
                    }
                }
                for k in &doomed {
                    t.remove(k).map_err(backend)?;
                }
                Ok(doomed.len())
            })?;
            n += removed;
            if removed < PURGE_BATCH {
                return Ok(n);
            }
            std::thread::sleep(PURGE_PAUSE);
        }
    }
}
