//! Backup and restore of the database with the server stopped.

use serde_json::{Value, json};

use super::AdminError;
use crate::store::StoreError;
use crate::store::prelude::*;

/// `latchkey backup FILE` with the server stopped: the copy is made directly.
pub fn backup_direct(store: &dyn Store, target: &std::path::Path) -> Result<Value, AdminError> {
    store.backup_to(target).map_err(|e| AdminError {
        message: e.to_string(),
        exit_code: 1,
    })?;
    let bytes = std::fs::metadata(target).map(|m| m.len()).unwrap_or(0);
    Ok(json!({"path": target.display().to_string(), "bytes": bytes}))
}

/// `latchkey restore FILE` (server stopped): checks the file is a Latchkey database this
/// build can read (migrating an older schema), then puts it in place and keeps the
/// current database aside. Nothing is replaced when a check fails.
pub fn restore(
    data_dir: &std::path::Path,
    source: &std::path::Path,
    now: i64,
) -> Result<Value, AdminError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e: std::io::Error, what: &std::path::Path| AdminError {
        message: format!("{}: {e}", what.display()),
        exit_code: 1,
    };
    let live = crate::datadir::db_path(data_dir);
    if live.exists() {
        // Fails with Locked while a server holds the database.
        if let Err(StoreError::Locked) = crate::store::redb::RedbStore::open(&live) {
            return Err(AdminError {
                message: "the server is running: stop it before restoring".into(),
                exit_code: 1,
            });
        }
    }
    let staging = data_dir.join(format!("latchkey.redb.restoring-{now}"));
    std::fs::copy(source, &staging).map_err(|e| io(e, source))?;
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io(e, &staging))?;
    let checked = match crate::store::redb::RedbStore::open(&staging) {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&staging);
            return Err(AdminError::input(format!(
                "file: {} is not a usable Latchkey backup: {e}",
                source.display()
            )));
        }
    };
    let users = checked.users()?.len();
    let clients = checked.clients()?.len();
    let keys = checked.keys()?.len();
    drop(checked);
    let previous = data_dir.join(format!("latchkey.redb.before-restore-{now}"));
    let had_previous = live.exists();
    if had_previous {
        std::fs::rename(&live, &previous).map_err(|e| io(e, &live))?;
    }
    std::fs::rename(&staging, &live).map_err(|e| io(e, &staging))?;
    Ok(json!({
        "restored_from": source.display().to_string(),
        "users": users,
        "clients": clients,
        "keys": keys,
                "previous": had_previous.then(|| previous.display().to_string()),
    }))
}
