//! Directory sync (SPEC §11): the local records of directory people follow the
//! directory. Gather (every person and their groups, or one person at sign-in), decide
//! in pure functions that take `now` ([`merge`], [`plan`]), act ([`apply`]): records
//! created and updated, people removed or disabled there disabled here with their
//! sessions and tokens ended, people enabled there again enabled here (unless an
//! administrator disabled them here). A local account and a directory person never merge.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{Directory, Person};
use crate::model::{Group, User};
use crate::store::Store;

/// `User::source` of directory accounts.
pub const SOURCE: &str = "ldap";
/// The store's meta key holding the last sync's [`Report`].
pub const LAST_SYNC: &str = "ldap.last_sync";
/// The group only an administrator here grants.
const ADMIN_GROUP: &str = super::LOCAL_ONLY_GROUP;

/// Why a directory person's record was disabled here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// Disabled or locked in the directory.
    Disabled,
    /// No longer in the directory (or no longer matched by `user_filter`).
    Removed,
}

impl Gone {
    pub fn text(self) -> &'static str {
        match self {
            Gone::Disabled => "disabled in the directory",
            Gone::Removed => "removed from the directory",
        }
    }
}

/// What the directory's view of one person does to the local records.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A person not known here yet.
    Create(User),
    /// The record brought up to date (profile, groups).
    Update(User),
    /// The person may no longer sign in: their record, disabled.
    Disable(User, Gone),
    /// Enabled there again after the directory had disabled them here.
    Enable(User),
    /// Nothing to write (the record as it is).
    Same(User),
    /// Disabled here by an administrator: stays so.
    Refused,
    /// The person is disabled there and not known here: nothing is made.
    Ignored,
    /// A local account stands in the way (same id or name): never merged.
    Conflict(String),
}

/// The change the directory's `p` makes to `known` (the record with the person's id)
/// given `named` (the record holding the person's username, if another one does).
pub fn merge(p: &Person, known: Option<&User>, named: Option<&User>, now: i64) -> Change {
    // Locked or disabled there ends access here first, whatever else is the matter with
    // the record (a name clash must never keep someone in).
    if let Some(old) = known.filter(|k| k.source.as_deref() == Some(SOURCE))
        && p.disabled
        && !old.disabled
    {
        return disabled(old, Gone::Disabled, now);
    }
    if let Some(other) = named.filter(|o| known.is_none_or(|k| k.id != o.id)) {
        return Change::Conflict(if other.source.as_deref() == Some(SOURCE) {
            format!(
                "{}: another directory person had this name here; delete that account to let this one in",
                p.username
            )
        } else {
            format!("{}: a local account has this name", p.username)
        });
    }
    let Some(old) = known else {
        if p.disabled {
            return Change::Ignored;
        }
        return Change::Create(User {
            id: p.id.clone(),
            username: p.username.clone(),
            email: p.email.clone(),
            given_name: p.given_name.clone(),
            family_name: p.family_name.clone(),
            phone: p.phone.clone(),
            groups: p.groups.clone(),
            created_at: now,
            updated_at: now,
            source: Some(SOURCE.to_string()),
            ..User::default()
        });
    };
    if old.source.as_deref() != Some(SOURCE) {
        return Change::Conflict(format!(
            "{}: a local account has this person's directory id",
            p.username
        ));
    }
    let mut u = old.clone();
    let moved = u.email != p.email;
    u.username = p.username.clone();
    u.email = p.email.clone();
    u.email_verified = u.email_verified && !moved;
    u.given_name = p.given_name.clone();
    u.family_name = p.family_name.clone();
    u.phone = p.phone.clone();
    // The directory decides the groups, except `admin`, which only an administrator
    // here grants (or takes).
    let admin = u.groups.iter().any(|g| g == ADMIN_GROUP);
    u.groups = p.groups.clone();
    if admin {
        u.groups.push(ADMIN_GROUP.to_string());
    }
    if old.disabled && !p.disabled {
        if !old.directory_disabled {
            return Change::Refused;
        }
        u.disabled = false;
        u.directory_disabled = false;
        u.updated_at = now;
        return Change::Enable(u);
    }
    if &u == old {
        Change::Same(u)
    } else {
        u.updated_at = now;
        Change::Update(u)
    }
}

/// `old` disabled by the directory (its profile left as it was: only access ends).
fn disabled(old: &User, why: Gone, now: i64) -> Change {
    let mut d = old.clone();
    d.disabled = true;
    d.directory_disabled = true;
    d.updated_at = now;
    Change::Disable(d, why)
}

/// The change for a directory account the directory no longer lists.
pub fn gone(current: Option<&User>, now: i64) -> Change {
    match current {
        Some(u) if u.source.as_deref() == Some(SOURCE) && !u.disabled => {
            disabled(u, Gone::Removed, now)
        }
        Some(u) => Change::Same(u.clone()),
        None => Change::Ignored,
    }
}

/// The first field the directory rules that `new` changes on the directory account
/// `old`: profile fields and groups come from the directory (only `admin` is granted
/// here), and the password lives there (no local password, reset link or invitation).
/// `None` for a local account or a change the directory leaves alone.
pub fn ruled_change(old: &User, new: &User) -> Option<&'static str> {
    if old.source.as_deref() != Some(SOURCE) {
        return None;
    }
    let not_admin = |u: &User| -> Vec<String> {
        let mut g: Vec<String> = u
            .groups
            .iter()
            .filter(|g| *g != ADMIN_GROUP)
            .cloned()
            .collect();
        g.sort();
        g
    };
    [
        ("username", old.username != new.username),
        ("email", old.email != new.email),
        ("given_name", old.given_name != new.given_name),
        ("family_name", old.family_name != new.family_name),
        ("phone", old.phone != new.phone),
        ("groups", not_admin(old) != not_admin(new)),
        ("password", old.password_hash != new.password_hash),
        (
            "reset link",
            new.reset_link.is_some() && old.reset_link != new.reset_link,
        ),
        (
            "invitation",
            new.invitation.is_some() && old.invitation != new.invitation,
        ),
        ("source", old.source != new.source),
    ]
    .into_iter()
    .find_map(|(field, changed)| changed.then_some(field))
}

/// What a whole sync does: each person's change, then the directory accounts here whose
/// person the directory no longer lists (disabled), and the groups to create.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub groups: Vec<String>,
    /// Removals held back: a directory that lists nobody while accounts here came from
    /// it, or a run that would disable more than a quarter of the directory's accounts
    /// (and more than [`MASS_DISABLE`]), is taken for a misconfiguration (a wrong base,
    /// filter or permission), not as people leaving; this says so. `force` applies them.
    pub held_back: Option<String>,
}

/// More removals than this in one run (and more than a quarter) wait for `--force`.
pub const MASS_DISABLE: usize = 5;

/// The plan for the directory's complete list of `people` against every local record.
pub fn plan(
    people: &[Person],
    users: &[User],
    known_groups: &[Group],
    force: bool,
    now: i64,
) -> Plan {
    let by_id: HashMap<&str, &User> = users.iter().map(|u| (u.id.as_str(), u)).collect();
    // Usernames are unique without regard to case, as the store keeps them.
    let by_name: HashMap<String, &User> = users
        .iter()
        .map(|u| (u.username.to_lowercase(), u))
        .collect();
    let mut out = Plan::default();
    let listed: HashSet<&str> = people.iter().map(|p| p.id.as_str()).collect();
    for p in people {
        let known = by_id.get(p.id.as_str()).copied();
        let named = by_name.get(&p.username.to_lowercase()).copied();
        out.changes.push(merge(p, known, named, now));
    }
    let ours = users
        .iter()
        .filter(|u| u.source.as_deref() == Some(SOURCE) && !u.disabled)
        .count();
    let gone_now: Vec<Change> = users
        .iter()
        .filter(|u| !listed.contains(u.id.as_str()))
        .map(|u| gone(Some(u), now))
        .filter(|c| matches!(c, Change::Disable(..)))
        .collect();
    let n = gone_now.len();
    if people.is_empty() && n > 0 {
        out.held_back = Some(format!(
            "the directory listed nobody: {n} directory account(s) left as they are"
        ));
    } else if !force && n > MASS_DISABLE && n * 4 > ours {
        out.held_back = Some(format!(
            "{n} of {ours} directory accounts are no longer listed: left as they are; if that is right, run `latchkey ldap sync --force`"
        ));
    } else {
        out.changes.extend(gone_now);
    }
    out.groups = new_groups(people.iter(), known_groups);
    out
}

/// The directory's group names not yet known here.
fn new_groups<'a>(people: impl Iterator<Item = &'a Person>, known: &[Group]) -> Vec<String> {
    let known: HashSet<&str> = known.iter().map(|g| g.name.as_str()).collect();
    let mut names: Vec<String> = people
        .flat_map(|p| p.groups.iter())
        .filter(|g| !known.contains(g.as_str()))
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    names
}

/// What a sync did, kept under [`LAST_SYNC`] for the admin pages, `/healthz` and metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// When it ran.
    pub at: i64,
    /// `None`: it worked; else why it did not (the directory's error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When a sync last worked (this one or an earlier one).
    #[serde(default)]
    pub last_ok_at: Option<i64>,
    pub people: usize,
    pub created: usize,
    pub updated: usize,
    pub disabled: usize,
    pub enabled: usize,
    /// Entries skipped (no unique id, no usable username, an id seen twice).
    pub skipped: usize,
    /// Local accounts in the way, and a held-back removal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// Writes what the directory says of the account `id` (`person`, or `None`: no longer
/// listed) against the record as it is now: decided again on a fresh read and written
/// only if the record did not change meanwhile (an administrator's change, a spent
/// recovery code, a removed passkey are never overwritten). A disabled person's sessions
/// end and every token issued to them is revoked. Returns the change made.
pub fn settle(
    store: &dyn Store,
    id: &str,
    person: Option<&Person>,
    now: i64,
) -> Result<Change, String> {
    let e = |e: crate::store::StoreError| e.to_string();
    for _ in 0..16 {
        let current = store.user(id).map_err(e)?;
        let change = match person {
            Some(p) => {
                let named = store.user_by_name(&p.username).map_err(e)?;
                merge(p, current.as_ref(), named.as_ref(), now)
            }
            None => gone(current.as_ref(), now),
        };
        let written = match (&change, &current) {
            (Change::Create(u), None) => store.create_user(u).is_ok(),
            (Change::Update(u) | Change::Enable(u) | Change::Disable(u, _), Some(old)) => {
                store.update_user_if(old, u).map_err(e)?
            }
            (Change::Create(_), Some(_)) => false,
            _ => true,
        };
        if !written {
            continue;
        }
        match &change {
            Change::Disable(u, why) => {
                store.delete_user_sessions(&u.id).map_err(e)?;
                store.revoke_user_grants(&u.id).map_err(e)?;
                audit(store, "user.disabled", &u.username, why.text(), now);
            }
            Change::Create(u) => audit(
                store,
                "user.created",
                &u.username,
                "from the directory",
                now,
            ),
            Change::Enable(u) => audit(store, "user.enabled", &u.username, "by the directory", now),
            _ => {}
        }
        return Ok(change);
    }
    Err("the record keeps changing".into())
}

/// Creates the directory's groups not yet known here.
pub fn create_groups(store: &dyn Store, names: &[String]) -> Result<(), String> {
    for name in names {
        store
            .put_group(&Group {
                name: name.clone(),
                description: "From the directory".to_string(),
                attributes: Default::default(),
            })
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn audit(store: &dyn Store, kind: &str, username: &str, detail: &str, now: i64) {
    let e = crate::model::AuditEvent {
        time: now,
        kind: kind.to_string(),
        user: (!username.is_empty()).then(|| username.to_string()),
        client: None,
        ip: None,
        detail: detail.to_string(),
    };
    if let Err(err) = store.append_audit(&e) {
        tracing::warn!(error = %err, kind, "could not record audit event");
    }
}

/// Carries out a plan, each change settled against the record as it is when written;
/// the report counts what was written.
pub fn apply(store: &dyn Store, p: &Plan, people: &[Person], skipped: usize, now: i64) -> Report {
    let mut r = Report {
        at: now,
        last_ok_at: Some(now),
        people: people.len(),
        skipped,
        ..Report::default()
    };
    if let Err(e) = create_groups(store, &p.groups) {
        r.problems.push(format!("groups: {e}"));
    }
    let by_id: HashMap<&str, &Person> = people.iter().map(|p| (p.id.as_str(), p)).collect();
    for c in &p.changes {
        let id = match c {
            Change::Conflict(why) => {
                tracing::warn!("directory sync: {why}");
                r.problems.push(why.clone());
                continue;
            }
            Change::Create(u) | Change::Update(u) | Change::Enable(u) | Change::Disable(u, _) => {
                u.id.as_str()
            }
            Change::Same(_) | Change::Refused | Change::Ignored => continue,
        };
        match settle(store, id, by_id.get(id).copied(), now) {
            Ok(Change::Create(_)) => r.created += 1,
            Ok(Change::Update(_)) => r.updated += 1,
            Ok(Change::Disable(..)) => r.disabled += 1,
            Ok(Change::Enable(_)) => r.enabled += 1,
            Ok(Change::Conflict(why)) => r.problems.push(why),
            Ok(_) => {}
            Err(e) => r.problems.push(format!("store: {e}")),
        }
    }
    if let Some(why) = &p.held_back {
        tracing::warn!("directory sync: {why}");
        r.problems.push(why.clone());
    }
    r
}

/// The last sync's report, if any ran.
pub fn last(store: &dyn Store) -> Option<Report> {
    let text = store.meta(LAST_SYNC).ok()??;
    serde_json::from_str(&text).ok()
}

/// Keeps `r` as the last sync (a failed one keeps the time of the last that worked) and
/// records it in the audit log.
pub fn remember(store: &dyn Store, mut r: Report) -> Report {
    if r.error.is_some() {
        r.last_ok_at = last(store).and_then(|l| l.last_ok_at);
    }
    let detail = match &r.error {
        Some(e) => format!("failed: {e}"),
        None => format!(
            "{} people: {} created, {} updated, {} disabled, {} enabled, {} skipped, {} problems",
            r.people,
            r.created,
            r.updated,
            r.disabled,
            r.enabled,
            r.skipped,
            r.problems.len()
        ),
    };
    audit(store, "directory.sync", "", &detail, r.at);
    match serde_json::to_string(&r) {
        Ok(text) => {
            if let Err(e) = store.put_meta(LAST_SYNC, &text) {
                tracing::warn!(error = %e, "could not keep the sync's report");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not keep the sync's report"),
    }
    r
}

/// One sync at a time in this process (the periodic one, `ldap sync`, "Sync now").
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One sync: read the whole directory, plan, apply, remember. A directory that cannot
/// be read changes nothing (and the report says why); groups that could not be read are
/// left as they were while the rest (who is listed, who is disabled) still applies.
/// `force` applies removals a plan held back as too many.
pub async fn run(
    dir: &Directory,
    store: std::sync::Arc<dyn Store>,
    force: bool,
    now: i64,
) -> Report {
    let _one = ONE_AT_A_TIME.lock().await;
    let listing = match dir.people().await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "directory sync failed");
            let failed = Report {
                at: now,
                error: Some(e.to_string()),
                ..Report::default()
            };
            let store2 = store.clone();
            return tokio::task::spawn_blocking(move || remember(store2.as_ref(), failed))
                .await
                .unwrap_or_default();
        }
    };
    let done = tokio::task::spawn_blocking(move || {
        let s = store.as_ref();
        let (users, groups) = match (s.users(), s.groups()) {
            (Ok(u), Ok(g)) => (u, g),
            (Err(e), _) | (_, Err(e)) => {
                let failed = Report {
                    at: now,
                    error: Some(format!("store: {e}")),
                    ..Report::default()
                };
                return remember(s, failed);
            }
        };
        let mut people = listing.people;
        if let Some(why) = &listing.groups_error {
            keep_groups(&mut people, &users);
            tracing::warn!(error = %why, "directory groups not read; kept as they were");
        }
        let p = plan(&people, &users, &groups, force, now);
        let mut r = apply(s, &p, &people, listing.skipped, now);
        if let Some(why) = listing.groups_error {
            r.problems
                .push(format!("groups not read ({why}): kept as they were"));
        }
        if !listing.groups_left_out.is_empty() {
            let names = listing.groups_left_out.join(", ");
            tracing::warn!(groups = %names, "directory groups left out (admin, or not a usable group name)");
            r.problems
                .push(format!("groups left out (admin, or not a usable group name): {names}"));
        }
        remember(s, r)
    })
    .await;
    done.unwrap_or_else(|_| Report {
        at: now,
        error: Some("the sync failed".into()),
        ..Report::default()
    })
}

/// Each person's groups as their record here has them (the directory's groups could not
/// be read this time).
fn keep_groups(people: &mut [Person], users: &[User]) {
    let by_id: HashMap<&str, &User> = users.iter().map(|u| (u.id.as_str(), u)).collect();
    for p in people {
        p.groups = by_id
            .get(p.id.as_str())
            .map(|u| {
                u.groups
                    .iter()
                    .filter(|g| *g != ADMIN_GROUP)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
    }
}

/// The record of the directory person `p` whose password was just checked, created or
/// brought up to date; `Ok(None)` when they may not sign in (disabled there or here).
pub fn record_sign_in(store: &dyn Store, p: &Person, now: i64) -> Result<Option<User>, String> {
    let known = store.groups().map_err(|e| e.to_string())?;
    create_groups(store, &new_groups(std::iter::once(p), &known))?;
    Ok(match settle(store, &p.id, Some(p), now)? {
        Change::Create(u) | Change::Update(u) | Change::Enable(u) | Change::Same(u) => {
            (!u.disabled).then_some(u)
        }
        Change::Disable(..) | Change::Refused | Change::Ignored => None,
        Change::Conflict(why) => return Err(why),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn person(id: &str, name: &str) -> Person {
        Person {
            dn: format!("uid={name},ou=people,dc=example,dc=test"),
            id: id.into(),
            username: name.into(),
            email: format!("{name}@example.test"),
            given_name: Some(name.into()),
            family_name: None,
            name: None,
            phone: None,
            groups: vec!["staff".into()],
            disabled: false,
        }
    }

    fn made(p: &Person) -> User {
        match merge(p, None, None, NOW - 100) {
            Change::Create(u) => u,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn new_people_are_created_as_directory_accounts() {
        let u = made(&person("id-dora", "dora"));
        assert_eq!(u.source.as_deref(), Some(SOURCE));
        assert_eq!(u.id, "id-dora");
        assert!(u.password_hash.is_empty(), "never a password here");
        let mut off = person("id-x", "x");
        off.disabled = true;
        assert_eq!(merge(&off, None, None, NOW), Change::Ignored);
    }

    #[test]
    fn the_directory_updates_profile_and_groups_but_never_admin() {
        let p = person("id-dora", "dora");
        let mut old = made(&p);
        old.groups.push("admin".into());
        old.email_verified = true;
        let mut q = p.clone();
        q.email = "dora@new.test".into();
        q.groups = vec!["ops".into()];
        let Change::Update(u) = merge(&q, Some(&old), Some(&old), NOW) else {
            panic!()
        };
        assert_eq!(u.groups, ["ops", "admin"]);
        assert!(!u.email_verified, "a changed address is unverified");
        assert_eq!(u.updated_at, NOW);
        assert_eq!(
            merge(&p, Some(&old), Some(&old), NOW),
            Change::Same(old.clone())
        );
    }

    #[test]
    fn disabled_there_disables_here_and_enabled_there_enables_only_what_it_disabled() {
        let p = person("id-dora", "dora");
        let old = made(&p);
        let mut off = p.clone();
        off.disabled = true;
        let Change::Disable(d, Gone::Disabled) = merge(&off, Some(&old), Some(&old), NOW) else {
            panic!()
        };
        assert!(d.disabled && d.directory_disabled);
        let Change::Enable(e) = merge(&p, Some(&d), Some(&d), NOW) else {
            panic!()
        };
        assert!(!e.disabled && !e.directory_disabled);
        // An administrator's disabling here stands.
        let mut by_admin = old.clone();
        by_admin.disabled = true;
        assert_eq!(
            merge(&p, Some(&by_admin), Some(&by_admin), NOW),
            Change::Refused
        );
    }

    #[test]
    fn local_accounts_are_never_merged() {
        let p = person("id-dora", "dora");
        let local = User {
            id: "local".into(),
            username: "dora".into(),
            ..User::default()
        };
        assert!(matches!(
            merge(&p, None, Some(&local), NOW),
            Change::Conflict(_)
        ));
        let same_id = User {
            id: "id-dora".into(),
            username: "dora".into(),
            ..User::default()
        };
        assert!(matches!(
            merge(&p, Some(&same_id), Some(&same_id), NOW),
            Change::Conflict(_)
        ));
        // A rename onto a name another account holds.
        let old = made(&p);
        let mut renamed = p.clone();
        renamed.username = "eve".into();
        let eve = User {
            id: "e".into(),
            username: "eve".into(),
            ..User::default()
        };
        assert!(matches!(
            merge(&renamed, Some(&old), Some(&eve), NOW),
            Change::Conflict(_)
        ));
    }

    #[test]
    fn the_directory_rules_profile_groups_and_password_only_for_its_accounts() {
        let old = made(&person("id-dora", "dora"));
        let mut new = old.clone();
        new.address = Some(Default::default());
        new.groups.push("admin".into());
        new.email_verified = true;
        new.disabled = true;
        assert_eq!(
            ruled_change(&old, &new),
            None,
            "address, admin, state: here"
        );
        for (field, edit) in [
            (
                "email",
                (|u: &mut User| u.email = "x@y.test".into()) as fn(&mut User),
            ),
            ("given_name", |u| u.given_name = None),
            ("groups", |u| u.groups.push("ops".into())),
            ("password", |u| u.password_hash = "$argon2id$x".into()),
            ("reset link", |u| u.reset_link = Some(("h".into(), 1))),
            ("username", |u| u.username = "dora2".into()),
        ] {
            let mut new = old.clone();
            edit(&mut new);
            assert_eq!(ruled_change(&old, &new), Some(field));
        }
        let mut local = old.clone();
        local.source = None;
        let mut changed = local.clone();
        changed.email = "x@y.test".into();
        assert_eq!(ruled_change(&local, &changed), None);
    }

    #[test]
    fn a_name_clash_never_keeps_a_disabled_person_in() {
        let p = person("id-dora", "dora");
        let old = made(&p);
        let mut off = p.clone();
        off.disabled = true;
        off.username = "eve".into();
        let eve = User {
            id: "e".into(),
            username: "eve".into(),
            ..User::default()
        };
        let Change::Disable(d, Gone::Disabled) = merge(&off, Some(&old), Some(&eve), NOW) else {
            panic!()
        };
        assert_eq!(d.username, "dora", "only access changes");
    }

    #[test]
    fn many_removals_at_once_wait_for_force() {
        let people: Vec<Person> = (0..20)
            .map(|i| person(&format!("id-{i}"), &format!("p{i}")))
            .collect();
        let users: Vec<User> = people.iter().map(made).collect();
        // The directory now lists 12 of 20: 8 removals, more than a quarter.
        let p = plan(&people[..12], &users, &[], false, NOW);
        assert!(p.held_back.as_deref().unwrap().contains("--force"));
        assert!(!p.changes.iter().any(|c| matches!(c, Change::Disable(..))));
        let forced = plan(&people[..12], &users, &[], true, NOW);
        let n = forced
            .changes
            .iter()
            .filter(|c| matches!(c, Change::Disable(..)))
            .count();
        assert_eq!(n, 8);
        // A few at a time go through.
        let p = plan(&people[..17], &users, &[], false, NOW);
        assert!(p.held_back.is_none());
    }

    #[test]
    fn people_gone_from_the_directory_are_disabled_unless_it_lists_nobody() {
        let dora = person("id-dora", "dora");
        let eve = person("id-eve", "eve");
        let local = User {
            id: "l".into(),
            username: "alice".into(),
            ..User::default()
        };
        let users = vec![made(&dora), made(&eve), local];
        let p = plan(std::slice::from_ref(&dora), &users, &[], false, NOW);
        let disabled: Vec<(&str, Gone)> = p
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Disable(u, g) => Some((u.username.as_str(), *g)),
                _ => None,
            })
            .collect();
        assert_eq!(
            disabled,
            [("eve", Gone::Removed)],
            "local accounts untouched"
        );
        assert_eq!(p.groups, ["staff"]);
        let none = plan(&[], &users, &[], false, NOW);
        assert!(none.changes.is_empty());
        assert!(none.held_back.is_some());
        // Already disabled: nothing more to do.
        let mut users2 = users.clone();
        users2[1].disabled = true;
        let p = plan(std::slice::from_ref(&dora), &users2, &[], false, NOW);
        assert!(!p.changes.iter().any(|c| matches!(c, Change::Disable(..))));
    }
}
