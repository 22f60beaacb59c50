//! `latchkey migrate`: copies every record from one engine into another that is empty
//! (redb → PostgreSQL, or back), then checks the copy by counting.

use super::kv::{ALL, Engine, Table};
use super::{AuditLog, Result, StoreError};

/// Records written per transaction on the receiving side.
const BATCH: usize = 500;

/// What was copied: the number of records per table, and of audit events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub tables: Vec<(Table, u64)>,
    pub audit_events: u64,
}

/// Every record of `t`, raw.
fn records(e: &impl Engine, t: Table) -> Result<Vec<(String, Vec<u8>)>> {
    e.read(|tx| {
        let mut out = Vec::new();
        tx.scan(t, None, &mut |k, v| {
            out.push((k.to_string(), v.to_vec()));
            Ok(true)
        })?;
        Ok(out)
    })
}

fn count(e: &impl Engine, t: Table) -> Result<u64> {
    e.read(|tx| {
        let mut n = 0u64;
        tx.scan(t, None, &mut |_, _| {
            n += 1;
            Ok(true)
        })?;
        Ok(n)
    })
}

/// Whether `e` holds nothing but what opening it wrote (the schema version).
fn is_empty(e: &(impl Engine + AuditLog)) -> Result<bool> {
    for t in ALL {
        let n = if t == super::kv::META {
            records(e, t)?
                .iter()
                .filter(|(k, _)| k != "schema_version")
                .count() as u64
        } else {
            count(e, t)?
        };
        if n > 0 {
            return Ok(false);
        }
    }
    Ok(e.audit(i64::MIN, 1, None)?.is_empty())
}

/// Copies everything in `from` into `to`, which must be empty; then compares the counts
/// of every table and of the audit log.
pub fn copy(from: &(impl Engine + AuditLog), to: &(impl Engine + AuditLog)) -> Result<Copied> {
    if !is_empty(to)? {
        return Err(StoreError::Conflict(
            "the target database is not empty: migrate copies into an empty one only".into(),
        ));
    }
    let mut tables = Vec::new();
    for t in ALL {
        let rows = records(from, t)?;
        for chunk in rows.chunks(BATCH) {
            to.write(true, |tx| {
                for (k, v) in chunk {
                    tx.put(t, k, v)?;
                }
                Ok(())
            })?;
        }
        tables.push((t, rows.len() as u64));
    }
    // Oldest first, so the copy keeps the order.
    let mut events = from.audit(i64::MIN, usize::MAX, None)?;
    events.reverse();
    for e in &events {
        to.append_audit(e)?;
    }
    // One durable commit makes everything above durable.
    to.write(true, |_| Ok(()))?;
    for (t, n) in &tables {
        let there = count(to, t)?;
        if there != *n {
            return Err(StoreError::Backend(format!(
                "{t}: copied {n} records but the target holds {there}"
            )));
        }
    }
    let audit_there = to.audit(i64::MIN, usize::MAX, None)?.len() as u64;
    if audit_there != events.len() as u64 {
        return Err(StoreError::Backend(format!(
            "audit: copied {} events but the target holds {audit_there}",
            events.len()
        )));
    }
    Ok(Copied {
        tables,
        audit_events: events.len() as u64,
    })
}
