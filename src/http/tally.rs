//! Machine-driven grants (client_credentials, refresh_token) are audited per minute, not
//! one row each: at thousands of tokens a second a row per token would be most of what
//! issuing one writes (client_credentials keeps no other state at all). [`IssuedTally`]
//! counts them in memory per grant type, client, user and address; the minute
//! maintenance (and shutdown) turns each count into one `token.issued` row,
//! "refresh_token: N token(s) in S s" (a credential used from somewhere new still shows).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Counters (grant type, client, user, address) kept at once; a registered client's secret is the only
/// way in, so this is a guard, not a limit anyone meets (the rest are counted under one
/// overflow row).
pub const MAX_CLIENTS: usize = 10_000;
/// Length of one counting window.
pub const WINDOW_MS: i64 = 60_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub grant: &'static str,
    /// `None` for the overflow row.
    pub client_id: Option<String>,
    pub user: Option<String>,
    pub ip: Option<IpAddr>,
    pub count: u64,
    pub first_ms: i64,
    pub last_ms: i64,
}

#[derive(Default)]
struct State {
    counts: HashMap<Key, (u64, i64, i64)>,
    overflow: Option<(u64, i64, i64)>,
}

type Key = (&'static str, String, Option<String>, IpAddr);

#[derive(Default)]
pub struct IssuedTally(Mutex<State>);

fn bump(slot: &mut (u64, i64, i64), now_ms: i64) {
    slot.0 += 1;
    slot.2 = now_ms;
}

impl IssuedTally {
    /// Counts one token of `grant` for `client_id` (and `user`), requested from `ip`.
    pub fn note(
        &self,
        grant: &'static str,
        client_id: &str,
        user: Option<&str>,
        ip: IpAddr,
        now_ms: i64,
    ) {
        let Ok(mut s) = self.0.lock() else { return };
        let key = (grant, client_id.to_string(), user.map(str::to_string), ip);
        if let Some(slot) = s.counts.get_mut(&key) {
            bump(slot, now_ms);
        } else if s.counts.len() < MAX_CLIENTS {
            s.counts.insert(key, (1, now_ms, now_ms));
        } else {
            bump(s.overflow.get_or_insert((0, now_ms, now_ms)), now_ms);
        }
    }

    /// The rows whose window started at least [`WINDOW_MS`] ago (all of them with `all`),
    /// removed from the tally.
    pub fn due(&self, now_ms: i64, all: bool) -> Vec<Row> {
        let Ok(mut s) = self.0.lock() else {
            return Vec::new();
        };
        let ripe = |first: i64| all || now_ms - first >= WINDOW_MS;
        let keys: Vec<Key> = s
            .counts
            .iter()
            .filter(|(_, (_, first, _))| ripe(*first))
            .map(|(k, _)| k.clone())
            .collect();
        let mut rows: Vec<Row> = keys
            .into_iter()
            .filter_map(|k| {
                let (count, first_ms, last_ms) = s.counts.remove(&k)?;
                Some(Row {
                    grant: k.0,
                    client_id: Some(k.1),
                    user: k.2,
                    ip: Some(k.3),
                    count,
                    first_ms,
                    last_ms,
                })
            })
            .collect();
        if let Some((count, first_ms, last_ms)) = s.overflow.filter(|(_, f, _)| ripe(*f)) {
            s.overflow = None;
            rows.push(Row {
                grant: "various",
                client_id: None,
                user: None,
                ip: None,
                count,
                first_ms,
                last_ms,
            });
        }
        rows.sort_by(|a, b| {
            (a.grant, &a.client_id, &a.user, a.ip).cmp(&(b.grant, &b.client_id, &b.user, b.ip))
        });
        rows
    }
}

impl Row {
    pub fn detail(&self) -> String {
        let secs = (self.last_ms - self.first_ms) / 1000;
        match &self.client_id {
            Some(_) => format!("{}: {} token(s) in {secs} s", self.grant, self.count),
            None => format!(
                "{} token(s) in {secs} s past the first {MAX_CLIENTS} counters",
                self.count
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_700_000_000_000;
    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn one_row_per_client_and_window() {
        let t = IssuedTally::default();
        for i in 0..1000 {
            t.note("client_credentials", "a", None, IP, T + i);
        }
        t.note("client_credentials", "b", None, IP, T + 30_000);
        assert!(t.due(T + 59_999, false).is_empty(), "window still open");
        let rows = t.due(T + 60_000, false);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].client_id.as_deref(), Some("a"));
        assert_eq!(rows[0].count, 1000);
        assert_eq!(rows[0].ip, Some(IP));
        assert_eq!(rows[0].detail(), "client_credentials: 1000 token(s) in 0 s");
        // b's window is younger; at shutdown everything goes.
        let rest = t.due(T + 60_000, true);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].count, 1);
        assert!(t.due(T + 999_999, true).is_empty());
    }

    #[test]
    fn clients_past_the_guard_share_one_row() {
        let t = IssuedTally::default();
        for i in 0..MAX_CLIENTS + 5 {
            t.note("client_credentials", &format!("c{i}"), None, IP, T);
        }
        let rows = t.due(T, true);
        assert_eq!(rows.len(), MAX_CLIENTS + 1);
        let overflow: Vec<&Row> = rows.iter().filter(|r| r.client_id.is_none()).collect();
        assert_eq!(overflow[0].count, 5);
    }
    #[test]
    fn each_address_of_a_client_has_its_own_row() {
        let t = IssuedTally::default();
        let other: IpAddr = "198.51.100.7".parse().unwrap();
        t.note(
            "refresh_token",
            "a",
            Some("u"),
            "192.0.2.1".parse().unwrap(),
            0,
        );
        t.note("refresh_token", "a", Some("u"), other, 0);
        t.note("refresh_token", "a", Some("u"), other, 1);
        let rows = t.due(0, true);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows.iter().find(|r| r.ip == Some(other)).unwrap().count, 2);
    }
}
