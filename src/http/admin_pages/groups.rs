//! The groups page: the list of groups with their member counts.

use hyper::StatusCode;
use serde_json::{Value, json};

use super::Ctx;
use crate::http::response::Resp;

pub(super) fn groups(c: &Ctx<'_>, error: Option<&str>, status: StatusCode) -> Resp {
    let (groups, users) = match (c.app.store.groups(), c.app.store.users()) {
        (Ok(g), Ok(u)) => (g, u),
        (Err(e), _) | (_, Err(e)) => return c.app.fail_page(e.into()),
    };
    let rows: Vec<Value> = groups
        .iter()
        .map(|g| {
            let members = users.iter().filter(|u| u.groups.contains(&g.name)).count();
            json!({"name": g.name, "description": g.description, "members": members,
                   "attributes": super::users::attributes_text(&g.attributes)})
        })
        .collect();
    c.page(
        "groups",
        "admin_groups.html",
        json!({"title": "Groups", "groups": rows, "error": error}),
        status,
    )
}
