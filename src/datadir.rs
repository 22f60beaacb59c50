//! The data directory: where the database lives, creating the directory owner-only, and
//! opening the store with an error that says what to do. Used by `serve`, the CLI and the
//! admin socket alike, so none of them needs the others for it.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use std::sync::Arc;

use crate::config::Config;
use crate::config::store::Backend;
use crate::store::Store;
use crate::store::postgres::PgStore;
use crate::store::redb::RedbStore;

/// The database file inside the data directory.
pub fn db_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("latchkey.redb")
}

/// Creates the data directory (0700) if needed.
pub fn ensure_data_dir(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Opens the store `[store]` names, with an error that says what to do.
pub fn open_store(config: &Config) -> Result<Arc<dyn Store>, String> {
    match &config.store {
        Backend::Redb => Ok(Arc::new(open_redb(&config.data_dir)?)),
        Backend::Postgres { settings, shown } => PgStore::open(settings)
            .map(|s| Arc::new(s) as Arc<dyn Store>)
            .map_err(|e| format!("store.url: {shown}: {e}")),
    }
}

/// Opens the redb file in the data directory, with an error that says what to do.
pub fn open_redb(data_dir: &Path) -> Result<RedbStore, String> {
    let path = db_path(data_dir);
    let store = RedbStore::open(&path).map_err(|e| match e {
                crate::store::StoreError::Locked => {
            format!("{}: the database is in use (is another latchkey serving this data directory?)", path.display())
        }
        crate::store::StoreError::Schema(m) => format!("{}: {m}", path.display()),
        other => format!(
            "{}: {other}. If the file is damaged, put a backup in place with `latchkey restore FILE`",
            path.display()
        ),
    })?;
    // The database holds every hash and the signing keys: owner-only, like the directory.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(store)
}
