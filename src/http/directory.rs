//! Directory sign-in (SPEC §11): the person is found with the service account, their
//! password checked by binding as them, and their local record (id from the directory's
//! stable id, profile and groups from the directory, no password) created or brought up
//! to date. Second factors, passkeys and throttling then apply as to local accounts.

use super::App;
use crate::model::{Group, User};

/// `User::source` of directory accounts.
pub(super) const SOURCE: &str = "ldap";
/// A directory sign-in never takes longer than this.
const SIGN_IN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);
/// Directory sign-ins at once.
pub(super) const SLOTS: usize = 16;

/// Whether `password` is the directory password of `user` (a directory account): to
/// confirm it on the account page.
pub(super) async fn confirm(app: &App, user: &User, password: &str) -> Result<bool, &'static str> {
    let Some(dir) = &app.directory else {
        return Ok(false);
    };
    let Ok(_slot) = app.directory_slots.clone().try_acquire_owned() else {
        return Err("The directory is busy. Try again in a moment.");
    };
    let unreachable = |e: crate::ldap::LdapError| {
        tracing::warn!(error = %e, "the directory did not answer a password check");
        "The directory cannot be reached. Try again in a moment."
    };
    let checked = async {
        match dir.find(&user.username).await.map_err(unreachable)? {
            Some(p) if p.id == user.id => dir
                .check_password(&p.dn, password)
                .await
                .map_err(unreachable),
            _ => Ok(false),
        }
    };
    tokio::time::timeout(SIGN_IN_DEADLINE, checked)
        .await
        .unwrap_or(Err(
            "The directory cannot be reached. Try again in a moment.",
        ))
}

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
    // A slow or absent directory holds at most this many sign-ins, each for a bounded
    // time; the others are told to try again.
    let Ok(_slot) = app.directory_slots.clone().try_acquire_owned() else {
        return Err("The directory is busy. Try again in a moment.");
    };
    let unreachable = |e: crate::ldap::LdapError| {
        tracing::warn!(error = %e, "the directory did not answer a sign-in");
        "The directory cannot be reached. Try again in a moment."
    };
    let checked = async {
        let Some(mut person) = dir.find(username).await.map_err(unreachable)? else {
            return Ok(None);
        };
        if !dir
            .check_password(&person.dn, password)
            .await
            .map_err(unreachable)?
        {
            return Ok(None);
        }
        // Groups only once the password is right.
        person.groups = dir.groups(&person.dn).await.map_err(unreachable)?;
        Ok(Some(person))
    };
    let person = match tokio::time::timeout(SIGN_IN_DEADLINE, checked).await {
        Ok(Ok(Some(p))) => p,
        Ok(Ok(None)) => return Ok(None),
        Ok(Err(message)) => return Err(message),
        Err(_) => return Err("The directory cannot be reached. Try again in a moment."),
    };
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
            // The directory decides the groups, except `admin`, which only an
            // administrator here grants (or takes).
            let admin = u.groups.iter().any(|g| g == crate::admin::ADMIN_GROUP);
            u.groups = p.groups;
            if admin {
                u.groups.push(crate::admin::ADMIN_GROUP.to_string());
            }
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
