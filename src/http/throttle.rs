//! Login throttling (SPEC §8, security baseline §4.4). Per submitted username, existing or
//! not, a growing delay after failures (1 s after 1-2, 3 s after 3-8, 5 s after 9-24,
//! 10 s after 25-99, then locked until 24 h after the last failure: no permanent lockout).
//! Per source address, `ip_max_failures` within `ip_window` blocks the address for
//! `ip_block`, doubling on repeat up to an hour. Counters live in memory, bounded, so a
//! flood of failures cannot force database writes. Times are in milliseconds, so a one
//! second delay is a whole second.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::config::LoginLimits;

const MAX_ENTRIES: usize = 50_000;
const SECOND: i64 = 1000;
const USER_RESET: i64 = 24 * 3600 * SECOND;
const MAX_IP_BLOCK: i64 = 3600 * SECOND;

#[derive(Debug, Clone, Copy)]
struct UserEntry {
    failures: u32,
    last: i64,
}

#[derive(Debug, Clone, Copy)]
struct IpEntry {
    failures: u32,
    window_start: i64,
    blocked_until: i64,
    blocks: u32,
}

#[derive(Default)]
struct State {
    users: HashMap<String, UserEntry>,
    ips: HashMap<IpAddr, IpEntry>,
}

pub struct Throttle {
    limits: LoginLimits,
    state: Mutex<State>,
}

fn user_delay(failures: u32) -> i64 {
    match failures {
        0 => 0,
        1..=2 => SECOND,
        3..=8 => 3 * SECOND,
        9..=24 => 5 * SECOND,
        25..=99 => 10 * SECOND,
        _ => USER_RESET,
    }
}

impl Throttle {
    pub fn new(limits: LoginLimits) -> Throttle {
        Throttle {
            limits,
            state: Mutex::new(State::default()),
        }
    }

    /// `Err(seconds)` (rounded up) when an attempt must wait; no password is checked
    /// then. `now` is in milliseconds.
    pub fn check(&self, username: &str, ip: IpAddr, now: i64) -> Result<(), i64> {
        let Ok(st) = self.state.lock() else {
            return Ok(());
        };
        let mut wait = 0;
        if let Some(e) = st.ips.get(&ip)
            && e.blocked_until > now
        {
            wait = e.blocked_until - now;
        }
        if let Some(u) = st.users.get(&username.to_lowercase())
            && now - u.last < USER_RESET
        {
            wait = wait.max(user_delay(u.failures) - (now - u.last));
        }
        if wait > 0 {
            Err((wait + SECOND - 1) / SECOND)
        } else {
            Ok(())
        }
    }

    /// Records a failed attempt at `now` (milliseconds).
    pub fn failure(&self, username: &str, ip: IpAddr, now: i64) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        if st.users.len() + st.ips.len() > MAX_ENTRIES {
            st.users.retain(|_, u| now - u.last < USER_RESET);
            st.ips
                .retain(|_, e| e.blocked_until > now || now - e.window_start < 3600 * SECOND);
            if st.users.len() + st.ips.len() > MAX_ENTRIES {
                st.users.clear();
            }
        }
        let u = st
            .users
            .entry(username.to_lowercase())
            .or_insert(UserEntry {
                failures: 0,
                last: now,
            });
        if now - u.last >= USER_RESET {
            u.failures = 0;
        }
        u.failures = u.failures.saturating_add(1);
        u.last = now;

        let (max, window, block) = (
            self.limits.ip_max_failures,
            self.limits.ip_window * SECOND,
            self.limits.ip_block * SECOND,
        );
        let e = st.ips.entry(ip).or_insert(IpEntry {
            failures: 0,
            window_start: now,
            blocked_until: 0,
            blocks: 0,
        });
        if now - e.window_start >= window {
            e.failures = 0;
            e.window_start = now;
        }
        e.failures += 1;
        if e.failures >= max {
            e.blocked_until = now + (block << e.blocks.min(10)).min(MAX_IP_BLOCK);
            e.blocks += 1;
            e.failures = 0;
            e.window_start = now;
        }
    }

    /// A successful sign-in clears the username's counter (not the address's).
    pub fn success(&self, username: &str) {
        if let Ok(mut st) = self.state.lock() {
            st.users.remove(&username.to_lowercase());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Throttle {
        Throttle::new(LoginLimits {
            ip_max_failures: 5,
            ip_window: 300,
            ip_block: 300,
        })
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    const S: i64 = SECOND;

    #[test]
    fn username_delay_grows_and_resets_on_success() {
        let t = t();
        assert!(t.check("alice", IP, 0).is_ok());
        t.failure("Alice", IP, 0);
        assert_eq!(t.check("alice", OTHER, 0), Err(1));
        assert_eq!(t.check("alice", OTHER, 999), Err(1));
        assert!(t.check("alice", OTHER, S).is_ok());
        t.failure("alice", OTHER, S);
        t.failure("alice", OTHER, 2 * S);
        assert_eq!(t.check("alice", OTHER, 2 * S), Err(3));
        assert_eq!(
            t.check("alice", OTHER, 2 * S + 500),
            Err(3),
            "2.5 s left rounds up"
        );
        t.success("alice");
        assert!(t.check("alice", OTHER, 2 * S).is_ok());
    }

    #[test]
    fn no_permanent_lockout() {
        let t = t();
        for i in 0..100 {
            t.failure("bob", OTHER, i * 100 * S);
        }
        assert!(t.check("bob", IP, 100 * 100 * S).is_err());
        assert!(t.check("bob", IP, 99 * 100 * S + USER_RESET).is_ok());
    }

    #[test]
    fn source_address_is_blocked_after_many_failures() {
        let t = t();
        for i in 0..5 {
            t.failure(&format!("user{i}"), IP, 10 * S);
        }
        assert_eq!(t.check("someone", IP, 10 * S), Err(300));
        assert!(t.check("someone", OTHER, 10 * S).is_ok());
        assert!(t.check("someone", IP, 310 * S).is_ok());
        for i in 0..5 {
            t.failure(&format!("x{i}"), IP, 400 * S);
        }
        assert_eq!(
            t.check("someone", IP, 400 * S),
            Err(600),
            "a repeat block doubles"
        );
    }
}
