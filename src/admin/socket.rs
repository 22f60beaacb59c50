//! The admin socket: a Unix socket in the data directory, mode 0600, through which the CLI
//! runs management commands while the server holds the database. One JSON request line,
//! one JSON response line.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use super::{AdminError, Command, execute};
use crate::config::Config;
use crate::store::Store;

/// Largest request line accepted.
const MAX_REQUEST: u64 = 1024 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Ok(Value),
    Error(AdminError),
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

/// Binds the socket (replacing a stale one) with owner-only permissions.
pub fn bind(data_dir: &Path) -> std::io::Result<tokio::net::UnixListener> {
    let p = path(data_dir);
    if p.exists() {
        std::fs::remove_file(&p)?;
    }
    let listener = tokio::net::UnixListener::bind(&p)?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves commands until the listener fails.
/// Called after each successful command with its audit name (`keys.rotate`, ...), so the
/// server can pick up changes it caches.
pub type AfterCommand = Arc<dyn Fn(&str) + Send + Sync>;

/// The configuration in force (it changes on SIGHUP).
pub type CurrentConfig = Arc<dyn Fn() -> Arc<Config> + Send + Sync>;

pub async fn serve(
    listener: tokio::net::UnixListener,
    store: Arc<dyn Store>,
    config: CurrentConfig,
    after: AfterCommand,
) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "admin socket accept failed");
                continue;
            }
        };
        let (store, config, after) = (store.clone(), config(), after.clone());
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST));
            if reader.read_line(&mut line).await.is_err() {
                return;
            }
            let reply = match decode(&line) {
                Ok(Command::Backup) => {
                    stream_backup(&mut write, store, &config.data_dir).await;
                    return;
                }
                Err(e) => Reply::Error(e),
                Ok(Command::LdapSync { force }) => {
                    match super::sync_directory(store, &config, force, crate::clock::now()).await {
                        Ok(v) => Reply::Ok(v),
                        Err(e) => Reply::Error(e),
                    }
                }
                Ok(cmd) => {
                    let name = cmd.name();
                    let now = crate::clock::now();
                    let result = tokio::task::spawn_blocking(move || {
                        execute(store.as_ref(), &config, cmd, "cli", now)
                    })
                    .await;
                    match result {
                        Ok(Ok(v)) => {
                            after(name);
                            Reply::Ok(v)
                        }
                        Ok(Err(e)) => Reply::Error(e),
                        Err(_) => Reply::Error(AdminError {
                            message: "command failed".into(),
                            exit_code: 1,
                        }),
                    }
                }
            };
            let mut out = serde_json::to_vec(&reply).unwrap_or_default();
            out.push(b'\n');
            let _ = write.write_all(&out).await;
        });
    }
}

/// Decodes one request line (a JSON [`Command`]); anything else is an input error.
pub fn decode(line: &str) -> Result<Command, AdminError> {
    serde_json::from_str::<Command>(line)
        .map_err(|e| AdminError::input(format!("bad admin request: {e}")))
}

/// Sends a backup: a JSON header line `{"ok":{"bytes":N}}` then N bytes of database.
async fn stream_backup(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    store: Arc<dyn Store>,
    data_dir: &Path,
) {
    let tmp = data_dir.join(format!("backup-{}.redb", crate::clock::random_id()));
    let path = tmp.clone();
    let made = tokio::task::spawn_blocking(move || store.backup_to(&path)).await;
    let reply = match (made, tokio::fs::read(&tmp).await) {
        (Ok(Ok(())), Ok(bytes)) => {
            let mut head =
                serde_json::to_vec(&Reply::Ok(serde_json::json!({"bytes": bytes.len()})))
                    .unwrap_or_default();
            head.push(b'\n');
            let _ = write.write_all(&head).await;
            let _ = write.write_all(&bytes).await;
            None
        }
        (Ok(Err(e)), _) => Some(e.to_string()),
        (_, Err(e)) => Some(e.to_string()),
        (Err(e), _) => Some(e.to_string()),
    };
    let _ = tokio::fs::remove_file(&tmp).await;
    if let Some(message) = reply {
        tracing::error!(error = %message, "backup failed");
        let mut line = serde_json::to_vec(&Reply::Error(AdminError {
            message,
            exit_code: 1,
        }))
        .unwrap_or_default();
        line.push(b'\n');
        let _ = write.write_all(&line).await;
    }
}

/// Receives a backup from a running server into `target` (created 0600, never
/// overwritten).
pub fn call_backup(data_dir: &Path, target: &Path) -> Result<Result<Value, AdminError>, CallError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut stream = std::os::unix::net::UnixStream::connect(path(data_dir))
        .map_err(|_| CallError::NotRunning)?;
    let broken = |e: std::io::Error| CallError::Broken(e.to_string());
    let mut line =
        serde_json::to_vec(&Command::Backup).map_err(|e| CallError::Broken(e.to_string()))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(broken)?;
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    reader.read_line(&mut head).map_err(broken)?;
    let bytes = match serde_json::from_str::<Reply>(&head) {
        Ok(Reply::Ok(v)) => v
            .get("bytes")
            .and_then(Value::as_u64)
            .ok_or_else(|| CallError::Broken("bad backup header".into()))?,
        Ok(Reply::Error(e)) => return Ok(Err(e)),
        Err(e) => {
            return Err(CallError::Broken(format!(
                "bad reply from the server ({e})"
            )));
        }
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(target);
    let mut file = match file {
        Ok(f) => f,
        Err(e) => {
            return Ok(Err(AdminError::input(format!(
                "file: {}: {e}",
                target.display()
            ))));
        }
    };
    let copied = std::io::copy(&mut reader.by_ref().take(bytes), &mut file).map_err(broken)?;
    if copied != bytes {
        let _ = std::fs::remove_file(target);
        return Err(CallError::Broken(format!(
            "backup cut short after {copied} of {bytes} bytes"
        )));
    }
    file.sync_all().map_err(broken)?;
    Ok(Ok(
        serde_json::json!({"path": target.display().to_string(), "bytes": bytes}),
    ))
}

/// Why a command could not be sent to a running server.
#[derive(Debug)]
pub enum CallError {
    /// No server listens on the socket: run the command on the database directly.
    NotRunning,
    /// A server took the command but the exchange broke off; it may have run, so it
    /// must not be retried on the database.
    Broken(String),
}

/// Sends a command to a running server.
pub fn call(data_dir: &Path, cmd: &Command) -> Result<Result<Value, AdminError>, CallError> {
    let mut stream = std::os::unix::net::UnixStream::connect(path(data_dir))
        .map_err(|_| CallError::NotRunning)?;
    let broken = |e: std::io::Error| CallError::Broken(e.to_string());
    let mut line = serde_json::to_vec(cmd).map_err(|e| CallError::Broken(e.to_string()))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(broken)?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .map_err(broken)?;
    match serde_json::from_str::<Reply>(&reply) {
        Ok(Reply::Ok(v)) => Ok(Ok(v)),
        Ok(Reply::Error(e)) => Ok(Err(e)),
        Err(e) => Err(CallError::Broken(format!(
            "bad reply from the server ({e}): {reply:?}"
        ))),
    }
}
