//! Directory sign-in (SPEC §11): the person is found with the service account, their
//! password checked by binding as them, and their local record (id from the directory's
//! stable id, profile and groups from the directory, no password) created or brought up
//! to date. Second factors, passkeys and throttling then apply as to local accounts.

use super::App;
use crate::model::User;

pub(super) use crate::ldap::sync::SOURCE;
/// What is known of the directory's reachability, for `/healthz` and the metrics:
/// updated by every sign-in that asks it and by the server's periodic probe.
#[derive(Default)]
pub struct Health {
    /// 0: not asked yet; 1: answered; 2: did not answer.
    state: std::sync::atomic::AtomicU8,
}

impl Health {
    pub fn saw(&self, up: bool) {
        let v = if up { 1 } else { 2 };
        self.state.store(v, std::sync::atomic::Ordering::Relaxed);
    }

    /// `None` until the directory was first asked.
    pub fn up(&self) -> Option<bool> {
        match self.state.load(std::sync::atomic::Ordering::Relaxed) {
            1 => Some(true),
            2 => Some(false),
            _ => None,
        }
    }
}

/// A directory sign-in never takes longer than this.
const SIGN_IN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);
/// Directory sign-ins at once.
pub(super) const SLOTS: usize = 16;
const UNREACHABLE: &str = "The directory cannot be reached. Try again in a moment.";

/// Runs `work` against the directory for a page (`what` names it in the log): at most
/// [`SLOTS`] at once and [`SIGN_IN_DEADLINE`] long, so a slow or absent directory holds
/// only these; the page's sentence when it cannot answer.
async fn ask<T>(
    app: &App,
    what: &'static str,
    work: impl AsyncFnOnce(&crate::ldap::Directory) -> Result<T, crate::ldap::LdapError>,
) -> Result<T, &'static str> {
    let Some(dir) = &app.directory else {
        return Err(UNREACHABLE);
    };
    let Ok(_slot) = app.directory_slots.clone().try_acquire_owned() else {
        return Err("The directory is busy. Try again in a moment.");
    };
    let outcome = tokio::time::timeout(SIGN_IN_DEADLINE, work(dir)).await;
    app.directory_health.saw(matches!(outcome, Ok(Ok(_))));
    match outcome {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "the directory did not answer {what}");
            Err(UNREACHABLE)
        }
        Err(_) => {
            tracing::warn!("the directory did not answer {what} in time");
            Err(UNREACHABLE)
        }
    }
}

/// Whether `password` is the directory password of `user` (a directory account): to
/// confirm it on the account page.
pub(super) async fn confirm(app: &App, user: &User, password: &str) -> Result<bool, &'static str> {
    if app.directory.is_none() {
        return Ok(false);
    }
    ask(app, "a password check", async |dir| {
        match dir.find(&user.username).await? {
            Some(p) if p.id == user.id => dir.check_password(&p.dn, password).await,
            _ => Ok(false),
        }
    })
    .await
}

/// Changes `user`'s directory password from `old` to `new` (with `ldap_password_change`).
/// `Ok(Err)` is the directory's refusal, in words for its owner; `Err` is what the page
/// says when the directory cannot answer.
pub(super) async fn change_password(
    app: &App,
    user: &User,
    old: &str,
    new: &str,
) -> Result<Result<(), String>, &'static str> {
    ask(app, "a password change", async |dir| {
        match dir.find(&user.username).await? {
            Some(p) if p.id == user.id => dir.change_password(&p.dn, old, new).await,
            _ => Ok(Err("the directory no longer has this account".to_string())),
        }
    })
    .await
}

/// Whether the directory still lists `user` (a directory account signing in with a
/// passkey, which the directory never sees): their name still leads to their id there and
/// they are not disabled there (then they are disabled here at once). A directory that
/// cannot answer does not stop them, as it stops no signed-in session; the next sync
/// decides then.
pub(super) async fn still_listed(app: &App, user: &User, now: i64) -> bool {
    if app.directory.is_none() {
        return true;
    }
    match ask(app, "a passkey sign-in", async |dir| {
        dir.find(&user.username).await
    })
    .await
    {
        Ok(Some(p)) if p.id == user.id && !p.disabled => true,
        Ok(Some(p)) if p.id == user.id => {
            if let Err(e) = crate::ldap::sync::settle(app.store.as_ref(), &p.id, Some(&p), now) {
                tracing::warn!(error = %e, "a person disabled in the directory could not be disabled here");
            }
            false
        }
        Ok(_) => false,
        Err(_) => true,
    }
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
    if app.directory.is_none() {
        return Ok(None);
    }
    let found = ask(app, "a sign-in", async |dir| {
        let Some(mut person) = dir.find(username).await? else {
            // A bind that fails all the same, so nobody tells from the time taken
            // whether the directory has this name.
            dir.pretend_password_check(password).await;
            return Ok(None);
        };
        if !dir.check_password(&person.dn, password).await? {
            return Ok(None);
        }
        // Groups only once the password is right.
        person.groups = dir.groups(&person.dn).await?;
        Ok(Some(person))
    })
    .await?;
    let Some(person) = found else {
        return Ok(None);
    };
    crate::ldap::sync::record_sign_in(app.store.as_ref(), &person, now).map_err(|e| {
        tracing::warn!(error = %e, "a directory user could not be recorded");
        "This account cannot be used here. Ask your administrator."
    })
}
