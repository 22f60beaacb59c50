//! The sessions page: every live sign-in, and ending one.

use hyper::StatusCode;
use serde_json::{Value, json};

use super::Ctx;
use crate::http::account::when;
use crate::http::response::{self, Resp};

pub(super) fn sessions(c: &Ctx<'_>) -> Resp {
    let all = match c.app.store.sessions() {
        Ok(s) => s,
        Err(e) => return c.app.fail_page(e.into()),
    };
    let mut live: Vec<_> = all
        .into_iter()
        .filter(|(_, s)| s.expires_at > c.now)
        .collect();
    live.sort_by_key(|(_, s)| std::cmp::Reverse(s.auth_time));
    let rows: Vec<Value> = live
        .iter()
        .take(1000)
        .map(|(_, s)| {
            json!({"sid": s.sid, "user": c.app.username(&s.user_id), "label": s.label, "ip": s.ip,
                   "since": when(s.auth_time), "factors": if s.acr == "2" { "two" } else { "one" }})
        })
        .collect();
    c.page(
        "sessions",
        "admin_sessions.html",
        json!({"title": "Sessions", "sessions": rows}),
        StatusCode::OK,
    )
}

pub(super) fn end_session(c: &Ctx<'_>) -> Resp {
    let sid = c.field("sid").unwrap_or_default();
    let found = match c.app.store.sessions() {
        Ok(all) => all.into_iter().find(|(_, s)| s.sid == sid),
        Err(e) => return c.app.fail_page(e.into()),
    };
    if let Some((hash, session)) = found {
        if let Err(f) = crate::http::logout::end_stored_session(c.app, &hash, &session, c.now) {
            return c.app.fail_page(f);
        }
        c.app.audit(
            "admin.session_end",
            Some(&c.s.user.username),
            None,
            Some(c.req.peer),
            &c.app.username(&session.user_id),
            c.now,
        );
    }
    response::redirect("/admin/sessions")
}
