//! The audit log page, with its filters.

use hyper::StatusCode;
use serde_json::{Value, json};

use super::Ctx;
use crate::http::account::when;
use crate::http::response::Resp;

/// Events offered in the audit filter.
const EVENT_KINDS: &[&str] = &[
    "login.success",
    "login.failure",
    "login.throttled",
    "mfa.success",
    "mfa.failure",
    "mfa.throttled",
    "client.throttled",
    "mfa.enrolled",
    "mfa.removed",
    "consent.given",
    "consent.denied",
    "consent.revoked",
    "token.issued",
    "token.revoked",
    "logout",
    "account.password_changed",
    "account.profile_changed",
];

/// Unix time of a `YYYY-MM-DD` date at 00:00 UTC.
pub(super) fn day_start(date: &str) -> Option<i64> {
    let mut parts = date.splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    let month = time::Month::try_from(month).ok()?;
    let d = time::Date::from_calendar_date(year, month, day).ok()?;
    Some(d.midnight().assume_utc().unix_timestamp())
}

const AUDIT_PAGE: usize = 500;

pub(super) fn audit(c: &Ctx<'_>) -> Resp {
    let q = c.req.query_params();
    let get = |k: &str| q.get_lenient(k).unwrap_or("").trim().to_string();
    let (user, client, kind, from, to) = (
        get("user"),
        get("client"),
        get("kind"),
        get("from"),
        get("to"),
    );
    let since = day_start(&from).unwrap_or(0);
    let until = day_start(&to).map_or(i64::MAX, |t| t + 86_400);
    // Read newest first; the other filters apply to what was read.
    let events = match c
        .app
        .store
        .audit(since, 50_000, (!user.is_empty()).then_some(user.as_str()))
    {
        Ok(e) => e,
        Err(e) => return c.app.fail_page(e.into()),
    };
    let matching: Vec<_> = events
        .into_iter()
        .filter(|e| e.time < until)
        .filter(|e| client.is_empty() || e.client.as_deref() == Some(client.as_str()))
        .filter(|e| kind.is_empty() || e.kind == kind)
        .collect();
    let more = matching.len() > AUDIT_PAGE;
    let rows: Vec<Value> = matching
        .iter()
        .take(AUDIT_PAGE)
        .map(|e| {
            json!({"time": when(e.time), "kind": e.kind, "user": e.user, "client": e.client,
                   "ip": e.ip, "detail": e.detail})
        })
        .collect();
    c.page(
        "audit",
        "admin_audit.html",
        json!({"title": "Audit log", "events": rows, "more": more, "kinds": EVENT_KINDS,
               "f": {"user": user, "client": client, "kind": kind, "from": from, "to": to}}),
        StatusCode::OK,
    )
}
