//! systemd's notification protocol (sd_notify(3)): READY=1 once the listener is bound and
//! the store open, RELOADING=1 / READY=1 around a configuration reload, STOPPING=1 on
//! shutdown, and WATCHDOG=1 keep-alives when the unit sets WatchdogSec=. Does nothing
//! when not started by systemd.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Sends one notification; `false` when there is no systemd to tell.
pub fn notify(state: &str) -> bool {
    match std::env::var("NOTIFY_SOCKET") {
        Ok(path) => notify_to(&path, state),
        Err(_) => false,
    }
}

/// Sends `state` to the socket named like NOTIFY_SOCKET (`@name` is abstract).
pub fn notify_to(path: &str, state: &str) -> bool {
    let addr = match path.strip_prefix('@') {
        // An abstract socket name (Linux).
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        None => SocketAddr::from_pathname(path),
    };
    let Ok(addr) = addr else { return false };
    let Ok(sock) = UnixDatagram::unbound() else {
        return false;
    };
    sock.send_to_addr(state.as_bytes(), &addr).is_ok()
}

/// `RELOADING=1` with the monotonic timestamp systemd's notify-reload expects
/// (CLOCK_MONOTONIC, read as the system uptime).
pub fn reloading() -> bool {
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    let secs = uptime
        .split_whitespace()
        .next()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(0.0);
    notify(&format!(
        "RELOADING=1\nMONOTONIC_USEC={}",
        Duration::from_secs_f64(secs).as_micros()
    ))
}

/// How often to send WATCHDOG=1: half of WatchdogSec, if the unit set one for us.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_the_notify_socket() {
        let dir = crate::testutil::TempDir::new("notify");
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        assert!(notify_to(path.to_str().unwrap(), "READY=1"));
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        assert!(!notify_to("/nonexistent/notify.sock", "READY=1"));
    }
}
