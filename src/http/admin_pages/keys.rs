//! The signing keys page.

use hyper::StatusCode;
use serde_json::{Value, json};

use super::Ctx;
use crate::http::account::when;
use crate::http::response::Resp;

pub(super) fn keys(c: &Ctx<'_>) -> Resp {
    let mut keys = match c.app.store.keys() {
        Ok(k) => k,
        Err(e) => return c.app.fail_page(e.into()),
    };
    keys.sort_by_key(|k| std::cmp::Reverse(k.created_at));
    let rows: Vec<Value> = keys
        .iter()
        .map(|k| {
            json!({"kid": k.kid, "alg": k.alg.as_str(),
                   "state": if k.state == crate::model::KeyState::Active { "active" } else { "retired" },
                   "created": when(k.created_at), "retired": k.retired_at.map(when).unwrap_or_default()})
        })
        .collect();
    c.page(
        "keys",
        "admin_keys.html",
        json!({"title": "Signing keys", "keys": rows}),
        StatusCode::OK,
    )
}
