//! Known-browser cookies (SPEC §8, OWASP "device cookies"): a browser in which a user
//! completed a sign-in carries a cookie signed for that user. Throttling then counts that
//! browser's failures on their own, so failures from anywhere else (an attacker behind the
//! office's own NAT included) never delay it. The cookie grants nothing else: it is no
//! session, skips no factor and names no secret.

use std::net::IpAddr;

use super::{App, Req};
use crate::signin::throttle::Who;

/// How long a browser stays known after its last sign-in.
pub const LIFETIME: i64 = 180 * 86_400;
const NAME: &str = "known";

fn payload(id: &str, user_id: &str, expires: i64) -> String {
    format!("known|{id}|{user_id}|{expires}")
}

/// The id of this browser's known-browser cookie when it is valid for `user_id` at `now`.
pub fn id_for(app: &App, req: &Req, user_id: &str, now: i64) -> Option<String> {
    let value = req.cookie(&app.cookie_name(NAME))?;
    let mut parts = value.splitn(4, '.');
    let (id, uid, exp, tag) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let expires: i64 = exp.parse().ok()?;
    let valid =
        uid == user_id && expires > now && app.macs().known.verify(&payload(id, uid, expires), tag);
    valid.then(|| id.to_string())
}

/// Whether this browser carries a valid known-browser cookie for anyone.
pub fn any_valid(app: &App, req: &Req, now: i64) -> bool {
    let Some(value) = req.cookie(&app.cookie_name(NAME)) else {
        return false;
    };
    value
        .split('.')
        .nth(1)
        .is_some_and(|uid| id_for(app, req, uid, now).is_some())
}

/// The `Set-Cookie` that makes this browser known for `user_id` (a new id each sign-in,
/// so the count of a browser that was attacked starts afresh only after a success).
pub fn cookie(app: &App, user_id: &str, now: i64) -> String {
    let id = crate::clock::random_id();
    let expires = now + LIFETIME;
    let tag = app.macs().known.tag(&payload(&id, user_id, expires));
    app.set_cookie(
        NAME,
        &format!("{id}.{user_id}.{expires}.{tag}"),
        Some(LIFETIME),
        "Lax",
    )
}

/// Who is attempting, for the throttle: the known browser, or the account key and the
/// source address.
pub fn who<'a>(known: Option<&'a str>, key: &'a str, addr: IpAddr) -> Who<'a> {
    match known {
        Some(id) => Who::Known(id),
        None => Who::Anonymous { key, addr },
    }
}
