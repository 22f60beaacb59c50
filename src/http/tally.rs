//! Client_credentials tokens are audited per client and minute, not one row each: at
//! thousands of tokens a second a row per token would be the only thing issuing one
//! writes (SPEC §6 keeps no other state for them). [`IssuedTally`] counts them in memory;
//! the minute maintenance (and shutdown) turns each client's count from each address into
//! one `token.issued` row, "client_credentials: N token(s) in S s" (a secret used from
//! somewhere new still shows).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Client and address pairs counted at once; a registered client's secret is the only
/// way in, so this is a guard, not a limit anyone meets (the rest are counted under one
/// overflow row).
pub const MAX_CLIENTS: usize = 10_000;
/// Length of one counting window.
pub const WINDOW_MS: i64 = 60_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// `None` for the overflow row.
    pub client_id: Option<String>,
    pub ip: Option<IpAddr>,
    pub count: u64,
    pub first_ms: i64,
    pub last_ms: i64,
}

#[derive(Default)]
struct State {
    counts: HashMap<(String, IpAddr), (u64, i64, i64)>,
    overflow: Option<(u64, i64, i64)>,
}

#[derive(Default)]
pub struct IssuedTally(Mutex<State>);

fn bump(slot: &mut (u64, i64, i64), now_ms: i64) {
    slot.0 += 1;
    slot.2 = now_ms;
}

impl IssuedTally {
    /// Counts one token for `client_id`, requested from `ip`.
    pub fn note(&self, client_id: &str, ip: IpAddr, now_ms: i64) {
        let Ok(mut s) = self.0.lock() else { return };
        let key = (client_id.to_string(), ip);
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
        let keys: Vec<(String, IpAddr)> = s
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
                    client_id: Some(k.0),
                    ip: Some(k.1),
                    count,
                    first_ms,
                    last_ms,
                })
            })
            .collect();
        if let Some((count, first_ms, last_ms)) = s.overflow.filter(|(_, f, _)| ripe(*f)) {
            s.overflow = None;
            rows.push(Row {
                client_id: None,
                ip: None,
                count,
                first_ms,
                last_ms,
            });
        }
        rows.sort_by(|a, b| (&a.client_id, a.ip).cmp(&(&b.client_id, b.ip)));
        rows
    }
}

impl Row {
    pub fn detail(&self) -> String {
        let secs = (self.last_ms - self.first_ms) / 1000;
        match &self.client_id {
            Some(_) => format!("client_credentials: {} token(s) in {secs} s", self.count),
            None => format!(
                "client_credentials: {} token(s) in {secs} s by clients past the first {MAX_CLIENTS}",
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
            t.note("a", IP, T + i);
        }
        t.note("b", IP, T + 30_000);
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
            t.note(&format!("c{i}"), IP, T);
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
        t.note("a", "192.0.2.1".parse().unwrap(), 0);
        t.note("a", other, 0);
        t.note("a", other, 1);
        let rows = t.due(0, true);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows.iter().find(|r| r.ip == Some(other)).unwrap().count, 2);
    }
}
