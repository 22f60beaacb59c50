//! Prometheus metrics (text exposition format 0.0.4): requests and latency per endpoint
//! and status, sign-ins by result, tokens by grant, and gauges read at scrape time
//! (active sessions, database size, signing-key age, certificate expiry). Labels come
//! from fixed sets, so hostile paths cannot grow the series without bound.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Counters {
    requests: BTreeMap<(&'static str, u16), u64>,
    latency: BTreeMap<&'static str, Histogram>,
    signins: BTreeMap<&'static str, u64>,
    tokens: BTreeMap<String, u64>,
    mail: BTreeMap<&'static str, u64>,
}

#[derive(Default)]
pub struct Metrics {
    c: Mutex<Counters>,
}

/// Values read when the metrics are scraped.
pub struct Gauges {
    pub active_sessions: u64,
    pub database_bytes: u64,
    /// (algorithm, seconds since the active key was made).
    pub key_ages: Vec<(&'static str, i64)>,
    /// Unix time the TLS certificate expires, when Latchkey serves TLS.
    pub cert_expiry: Option<i64>,
    /// Mail in the outbox waiting for an attempt, and mail given up on.
    pub mail_waiting: u64,
    pub mail_given_up: u64,
    /// With `[ldap]`: whether the directory answered last time it was asked, and the
    /// last sync's report.
    pub directory: Option<(Option<bool>, Option<crate::ldap::sync::Report>)>,
}

impl Metrics {
    /// Counts a request under its route's label (from the route table; "other" for a
    /// path that is no route).
    pub fn request(&self, e: &'static str, status: u16, took: Duration) {
        let Ok(mut c) = self.c.lock() else { return };
        *c.requests.entry((e, status)).or_default() += 1;
        let h = c.latency.entry(e).or_default();
        let secs = took.as_secs_f64();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// Counts what the audit log records: sign-ins by result, tokens by grant.
    pub fn event(&self, kind: &str, detail: &str) {
        let Ok(mut c) = self.c.lock() else { return };
        match kind {
            "login.success" => *c.signins.entry("success").or_default() += 1,
            "login.failure" => *c.signins.entry("failure").or_default() += 1,
            "login.throttled" => *c.signins.entry("throttled").or_default() += 1,
            "mail.sent" => *c.mail.entry("sent").or_default() += 1,
            "mail.failed" => *c.mail.entry("failed").or_default() += 1,
            "mail.given_up" => *c.mail.entry("given_up").or_default() += 1,
            "mail.dropped" => *c.mail.entry("dropped").or_default() += 1,
            "token.issued" => {
                // Only the fixed grant names (the detail is chosen by the code, not input).
                let grant = match detail {
                    "authorization_code" | "refresh_token" | "client_credentials" | "password"
                    | "device_code" => detail,
                    _ => "other",
                };
                *c.tokens.entry(grant.to_string()).or_default() += 1;
            }
            _ => {}
        }
    }

    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::new();
        let Ok(c) = self.c.lock() else { return out };
        out.push_str("# HELP latchkey_http_requests_total HTTP requests by endpoint and status.\n");
        out.push_str("# TYPE latchkey_http_requests_total counter\n");
        for ((e, s), n) in &c.requests {
            let _ = writeln!(
                out,
                "latchkey_http_requests_total{{endpoint=\"{e}\",status=\"{s}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP latchkey_http_request_duration_seconds Time to answer, by endpoint.\n",
        );
        out.push_str("# TYPE latchkey_http_request_duration_seconds histogram\n");
        for (e, h) in &c.latency {
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "latchkey_http_request_duration_seconds_bucket{{endpoint=\"{e}\",le=\"{le}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "latchkey_http_request_duration_seconds_bucket{{endpoint=\"{e}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "latchkey_http_request_duration_seconds_sum{{endpoint=\"{e}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "latchkey_http_request_duration_seconds_count{{endpoint=\"{e}\"}} {}",
                h.count
            );
        }
        out.push_str("# HELP latchkey_signins_total Password sign-ins by result.\n");
        out.push_str("# TYPE latchkey_signins_total counter\n");
        for (r, n) in &c.signins {
            let _ = writeln!(out, "latchkey_signins_total{{result=\"{r}\"}} {n}");
        }
        out.push_str("# HELP latchkey_tokens_issued_total Token responses by grant.\n");
        out.push_str("# TYPE latchkey_tokens_issued_total counter\n");
        for (grant, n) in &c.tokens {
            let _ = writeln!(out, "latchkey_tokens_issued_total{{grant=\"{grant}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP latchkey_active_sessions Unexpired sign-in sessions.\n# TYPE latchkey_active_sessions gauge\nlatchkey_active_sessions {}",
            g.active_sessions
        );
        let _ = writeln!(
            out,
            "# HELP latchkey_database_size_bytes Size of the database file.\n# TYPE latchkey_database_size_bytes gauge\nlatchkey_database_size_bytes {}",
            g.database_bytes
        );
        out.push_str("# HELP latchkey_signing_key_age_seconds Age of the active signing key.\n");
        out.push_str("# TYPE latchkey_signing_key_age_seconds gauge\n");
        for (alg, age) in &g.key_ages {
            let _ = writeln!(
                out,
                "latchkey_signing_key_age_seconds{{alg=\"{alg}\"}} {age}"
            );
        }
        out.push_str("# HELP latchkey_mail_attempts_total Mail sending attempts by result.\n");
        out.push_str("# TYPE latchkey_mail_attempts_total counter\n");
        for (r, n) in &c.mail {
            let _ = writeln!(out, "latchkey_mail_attempts_total{{result=\"{r}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP latchkey_mail_queued Mail in the outbox by state.\n# TYPE latchkey_mail_queued gauge\nlatchkey_mail_queued{{state=\"waiting\"}} {}\nlatchkey_mail_queued{{state=\"given_up\"}} {}",
            g.mail_waiting, g.mail_given_up
        );
        if let Some((up, last)) = &g.directory {
            if let Some(up) = up {
                out.push_str("# HELP latchkey_directory_up Whether the directory answered when last asked.\n");
                out.push_str("# TYPE latchkey_directory_up gauge\n");
                let _ = writeln!(out, "latchkey_directory_up {}", u8::from(*up));
            }
            if let Some(r) = last {
                out.push_str("# HELP latchkey_directory_sync_timestamp_seconds When the directory was last synced, by result.\n");
                out.push_str("# TYPE latchkey_directory_sync_timestamp_seconds gauge\n");
                let _ = writeln!(
                    out,
                    "latchkey_directory_sync_timestamp_seconds{{result=\"attempt\"}} {}",
                    r.at
                );
                let _ = writeln!(
                    out,
                    "latchkey_directory_sync_timestamp_seconds{{result=\"success\"}} {}",
                    r.last_ok_at.unwrap_or(0)
                );
                out.push_str("# HELP latchkey_directory_people People listed by the directory at the last sync that worked.\n");
                out.push_str("# TYPE latchkey_directory_people gauge\n");
                let _ = writeln!(out, "latchkey_directory_people {}", r.people);
            }
        }
        if let Some(t) = g.cert_expiry {
            let _ = writeln!(
                out,
                "# HELP latchkey_tls_certificate_expiry_timestamp_seconds When the TLS certificate expires.\n\
                 # TYPE latchkey_tls_certificate_expiry_timestamp_seconds gauge\n\
                 latchkey_tls_certificate_expiry_timestamp_seconds {t}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_counters_histograms_and_gauges() {
        let m = Metrics::default();
        m.request(
            super::super::routes::label("/api/v1/oauth/token"),
            200,
            Duration::from_millis(3),
        );
        m.request(
            super::super::routes::label("/api/v1/oauth/token"),
            400,
            Duration::from_millis(30),
        );
        m.request(
            super::super::routes::label("/../../etc/passwd"),
            404,
            Duration::from_millis(1),
        );
        m.event("login.success", "password");
        m.event("token.issued", "refresh_token");
        m.event("token.issued", "<script>");
        m.event("mail.failed", "reset to a@example.com: connection: refused");
        let g = Gauges {
            active_sessions: 2,
            database_bytes: 4096,
            key_ages: vec![("RS256", 60)],
            cert_expiry: Some(1_900_000_000),
            mail_waiting: 1,
            mail_given_up: 0,
            directory: Some((
                Some(false),
                Some(crate::ldap::sync::Report {
                    at: 1_800_000_000,
                    last_ok_at: Some(1_799_999_000),
                    people: 12,
                    ..Default::default()
                }),
            )),
        };
        let text = m.render(&g);
        assert!(text.contains("latchkey_mail_attempts_total{result=\"failed\"} 1"));
        assert!(text.contains("latchkey_mail_queued{state=\"waiting\"} 1"));
        assert!(text.contains("latchkey_directory_up 0\n"));
        assert!(text.contains(
            "latchkey_directory_sync_timestamp_seconds{result=\"success\"} 1799999000\n"
        ));
        assert!(text.contains("latchkey_directory_people 12\n"));
        assert!(
            text.lines().all(|l| !l.starts_with(' ') && !l.is_empty()),
            "{text}"
        );
        assert!(text.contains("latchkey_http_requests_total{endpoint=\"token\",status=\"200\"} 1"));
        assert!(text.contains("latchkey_http_requests_total{endpoint=\"other\",status=\"404\"} 1"));
        assert!(text.contains(
            "latchkey_http_request_duration_seconds_bucket{endpoint=\"token\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "latchkey_http_request_duration_seconds_bucket{endpoint=\"token\",le=\"+Inf\"} 2"
        ));
        assert!(text.contains("latchkey_signins_total{result=\"success\"} 1"));
        assert!(text.contains("latchkey_tokens_issued_total{grant=\"refresh_token\"} 1"));
        assert!(text.contains("latchkey_tokens_issued_total{grant=\"other\"} 1"));
        assert!(text.contains("latchkey_active_sessions 2"));
        assert!(text.contains("latchkey_signing_key_age_seconds{alg=\"RS256\"} 60"));
        assert!(text.contains("latchkey_tls_certificate_expiry_timestamp_seconds 1900000000"));
        assert!(!text.contains("passwd") && !text.contains("script"));
    }
}
