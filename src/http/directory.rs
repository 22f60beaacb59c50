//! Directory sign-in (SPEC §11): the person is found with the service account, their
//! password checked by binding as them, and their local record (id from the directory's
//! stable id, profile and groups from the directory, no password) created or brought up
//! to date. Second factors, passkeys and throttling then apply as to local accounts.

use super::App;
use crate::model::{Group, User};

/// `User::source` of directory accounts.
pub(super) const SOURCE: &str = "ldap";

/// The local record of the directory person `username` whose password is `password`;
/// `Ok(None)` for no such person, a wrong password or an account disabled here; `Err` is
/// what the sign-in page says when the directory cannot answer.
pub(super) async fn sign_in(
    app: &App,
    username: &str,
    password: &str,
    now: i64,
) -> Result<Option<User>, &'static str> {
    let Some(dir) = &app.directory else {
        return Ok(None);
    };
    let unreachable = |e: crate::ldap::LdapError| {
        tracing::warn!(error = %e, "the directory did not answer a sign-in");
        "The directory cannot be reached. Try again in a moment."
    };
    let Some(person) = dir.find(username).await.map_err(unreachable)? else {
        return Ok(None);
    };
    if !dir
        .check_password(&person.dn, password)
        .await
        .map_err(unreachable)?
    {
        return Ok(None);
    }
    record(app, person, now).map_err(|e| {
        tracing::warn!(error = %e, "a directory user could not be recorded");
        "This account cannot be used here. Ask your administrator."
    })
}

/// Creates or updates the local record of a directory person; `Ok(None)` when an
/// administrator disabled it here.
fn record(app: &App, p: crate::ldap::Person, now: i64) -> Result<Option<User>, String> {
    let store = app.store.as_ref();
    let known = store.groups().map_err(|e| e.to_string())?;
    for g in &p.groups {
        if !known.iter().any(|k| &k.name == g) {
            store
                .put_group(&Group {
                    name: g.clone(),
                    description: "From the directory".to_string(),
                    attributes: Default::default(),
                })
                .map_err(|e| e.to_string())?;
        }
    }
    match store.user(&p.id).map_err(|e| e.to_string())? {
        Some(u) if u.disabled => Ok(None),
        Some(u) if u.source.as_deref() != Some(SOURCE) => Err(format!(
            "a local account has the directory id of {}",
            p.username
        )),
        Some(old) => {
            let mut u = old.clone();
            let moved = u.email != p.email;
            u.username = p.username;
            u.email = p.email;
            u.email_verified = u.email_verified && !moved;
            u.given_name = p.given_name;
            u.family_name = p.family_name;
            u.phone = p.phone;
            u.groups = p.groups;
            if u != old {
                u.updated_at = now;
                store.update_user(&u).map_err(|e| e.to_string())?;
            }
            Ok(Some(u))
        }
        None => {
            // A local account of the same name is not merged with the directory's.
            if store
                .user_by_name(&p.username)
                .map_err(|e| e.to_string())?
                .is_some()
            {
                return Err(format!(
                    "a local account is named {} like a directory person",
                    p.username
                ));
            }
            let u = User {
                id: p.id,
                username: p.username,
                email: p.email,
                given_name: p.given_name,
                family_name: p.family_name,
                phone: p.phone,
                groups: p.groups,
                created_at: now,
                updated_at: now,
                source: Some(SOURCE.to_string()),
                ..User::default()
            };
            store.create_user(&u).map_err(|e| e.to_string())?;
            Ok(Some(u))
        }
    }
}
