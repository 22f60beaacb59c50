//! The access log: one line per request, in the format of the rest of the log (text or
//! JSON), without the query string (it may hold codes or tokens) and without the body.
//! A request only queues its facts; one thread formats the queue every
//! [`FLUSH_EVERY`] and writes it to stderr in one call, so a busy server pays neither a
//! formatted event nor a write per request. The queue is bounded: past [`MAX_QUEUED`]
//! lines, requests are counted instead and the count is written in their place.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use hyper::Method;

/// How often queued lines are written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Lines that may wait for the writer (a few MiB at most).
pub const MAX_QUEUED: usize = 50_000;
/// Longest path written (longer ones are cut).
const MAX_PATH_CHARS: usize = 200;

/// What one request leaves in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// When the request arrived, in microseconds since the Unix epoch.
    pub at_us: i64,
    pub request_id: String,
    pub method: Method,
    pub path: String,
    pub status: u16,
    pub took_us: u64,
}

struct Shared {
    queue: Mutex<Vec<Line>>,
    dropped: AtomicU64,
    json: bool,
}

/// The queue of access-log lines and its writer thread. Cloning shares both.
#[derive(Clone)]
pub struct AccessLog {
    shared: Option<Arc<Shared>>,
}

impl AccessLog {
    /// A log that writes when the `latchkey::access` target is enabled at INFO (not with
    /// `LATCHKEY_LOG=warn`, nor where no subscriber is installed, as in tests).
    pub fn start(json: bool) -> AccessLog {
        if !tracing::enabled!(target: "latchkey::access", tracing::Level::INFO) {
            return AccessLog { shared: None };
        }
        let shared = Arc::new(Shared {
            queue: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
            json,
        });
        let weak = Arc::downgrade(&shared);
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || writer(weak));
        match spawned {
            Ok(_) => AccessLog {
                shared: Some(shared),
            },
            Err(e) => {
                tracing::warn!(error = %e, "no access-log thread; requests are not logged");
                AccessLog { shared: None }
            }
        }
    }

    /// Whether lines are written at all (callers skip gathering them otherwise).
    pub fn enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// Queues a line (or counts it when the queue is full).
    pub fn push(&self, line: Line) {
        let Some(s) = &self.shared else { return };
        let Ok(mut q) = s.queue.lock() else { return };
        if q.len() < MAX_QUEUED {
            q.push(line);
        } else {
            s.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes everything queued now (at shutdown).
    pub fn flush(&self) {
        if let Some(s) = &self.shared {
            write_out(s);
        }
    }
}

/// The writer: every [`FLUSH_EVERY`], everything queued in one write. Ends once the
/// log itself is gone.
fn writer(shared: Weak<Shared>) {
    loop {
        std::thread::sleep(FLUSH_EVERY);
        let Some(s) = shared.upgrade() else { return };
        write_out(&s);
    }
}

fn write_out(s: &Shared) {
    let lines = match s.queue.lock() {
        Ok(mut q) if !q.is_empty() => std::mem::take(&mut *q),
        _ => Vec::new(),
    };
    let dropped = s.dropped.swap(0, Ordering::Relaxed);
    if lines.is_empty() && dropped == 0 {
        return;
    }
    let mut out = String::with_capacity(lines.len() * 160 + 100);
    for l in &lines {
        format_line(&mut out, l, s.json);
    }
    if dropped > 0 {
        let at = lines.last().map_or(0, |l| l.at_us);
        format_dropped(&mut out, at, dropped, s.json);
    }
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(out.as_bytes());
    let _ = err.flush();
}

/// RFC 3339 UTC with microseconds, as the rest of the log prints time.
fn timestamp(out: &mut String, at_us: i64) {
    let secs = at_us.div_euclid(1_000_000);
    let micros = at_us.rem_euclid(1_000_000);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => {
            let _ = write!(
                out,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{micros:06}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            );
        }
        Err(_) => out.push_str("1970-01-01T00:00:00.000000Z"),
    }
}

fn cut(path: &str) -> &str {
    match path.char_indices().nth(MAX_PATH_CHARS) {
        Some((i, _)) => &path[..i],
        None => path,
    }
}

/// One line, in the layout `tracing_subscriber::fmt` gives an event with these fields.
pub fn format_line(out: &mut String, l: &Line, json: bool) {
    let ms = l.took_us as f64 / 1000.0;
    let path = cut(&l.path);
    if json {
        out.push_str("{\"timestamp\":\"");
        timestamp(out, l.at_us);
        out.push_str("\",\"level\":\"INFO\",\"fields\":{\"message\":\"request\",\"request_id\":");
        push_json_str(out, &l.request_id);
        out.push_str(",\"method\":");
        push_json_str(out, l.method.as_str());
        out.push_str(",\"path\":");
        push_json_str(out, path);
        let _ = write!(
            out,
            ",\"status\":{},\"ms\":{ms}}},\"target\":\"latchkey::access\"}}",
            l.status
        );
    } else {
        timestamp(out, l.at_us);
        let _ = write!(
            out,
            "  INFO latchkey::access: request request_id={} method={} path={} status={} ms={ms}",
            l.request_id, l.method, path, l.status
        );
    }
    out.push('\n');
}

fn format_dropped(out: &mut String, at_us: i64, dropped: u64, json: bool) {
    if json {
        out.push_str("{\"timestamp\":\"");
        timestamp(out, at_us);
        let _ = write!(
            out,
            "\",\"level\":\"WARN\",\"fields\":{{\"message\":\"access-log lines dropped (queue full)\",\"dropped\":{dropped}}},\"target\":\"latchkey::access\"}}"
        );
    } else {
        timestamp(out, at_us);
        let _ = write!(
            out,
            "  WARN latchkey::access: access-log lines dropped (queue full) dropped={dropped}"
        );
    }
    out.push('\n');
}

fn push_json_str(out: &mut String, s: &str) {
    match serde_json::to_string(s) {
        Ok(q) => out.push_str(&q),
        Err(_) => out.push_str("\"\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(path: &str) -> Line {
        Line {
            at_us: 1_764_874_586_123_456,
            request_id: "abc".into(),
            method: Method::GET,
            path: path.into(),
            status: 200,
            took_us: 1500,
        }
    }

    #[test]
    fn text_lines_look_like_the_rest_of_the_log() {
        let mut out = String::new();
        format_line(&mut out, &line("/x"), false);
        assert_eq!(
            out,
            "2025-12-04T18:56:26.123456Z  INFO latchkey::access: request request_id=abc method=GET path=/x status=200 ms=1.5\n"
        );
    }

    #[test]
    fn json_lines_parse_and_long_paths_are_cut() {
        let mut out = String::new();
        format_line(&mut out, &line(&format!("/\"{}", "é".repeat(300))), true);
        let v: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(v["fields"]["status"], 200);
        assert_eq!(v["fields"]["ms"], 1.5);
        assert_eq!(v["target"], "latchkey::access");
        assert_eq!(v["timestamp"], "2025-12-04T18:56:26.123456Z");
        assert_eq!(
            v["fields"]["path"].as_str().unwrap().chars().count(),
            MAX_PATH_CHARS
        );
    }

    #[test]
    fn a_log_without_a_subscriber_keeps_nothing() {
        let log = AccessLog::start(false);
        assert!(!log.enabled());
        log.push(line("/"));
        log.flush();
    }

    #[test]
    fn a_full_queue_counts_instead_of_growing() {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
            json: false,
        });
        let log = AccessLog {
            shared: Some(shared.clone()),
        };
        for _ in 0..MAX_QUEUED + 3 {
            log.push(line("/"));
        }
        assert_eq!(shared.queue.lock().unwrap().len(), MAX_QUEUED);
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 3);
        let mut out = String::new();
        format_dropped(&mut out, 0, 3, false);
        assert!(out.contains("dropped=3"), "{out}");
    }
}
