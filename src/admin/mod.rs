//! Management commands (users, clients, keys, audit) as one executor. The CLI calls it
//! directly when the server is stopped, and through the admin socket ([`socket`]) when it
//! runs: one code path either way. Bad input is an [`AdminError`] with exit code 2 that
//! names the field, and nothing is written.

mod mail;
pub mod socket;

pub use mail::mailer;

mod backup;
mod clients;
pub mod presets;
mod users;

pub use backup::{backup_direct, restore};
pub use clients::{ClientPatch, spec_of};
pub use users::{NewUser, Profile, admin_exists, create_user, validate_address, validate_profile};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::Config;
use crate::model::{Alg, Client, Group, MailKind};
use crate::oidc::registration::{ClientSpec, valid_group_name};
use crate::store::StoreError;
use crate::store::prelude::*;
use clients::{apply_patch, client_json, find_client, modify_client};
use users::{ensure_groups, find_user, modify_user, set_disabled, user_json};

/// Members of this group may use the admin pages.
pub const ADMIN_GROUP: &str = "admin";
/// Metadata key of the one-time setup link: `<sha256 of token>:<expiry>`.
pub const SETUP_TOKEN_KEY: &str = "setup_token";
/// How long an administrator's password reset link stays valid.
pub const RESET_LINK_TTL: i64 = 24 * 3600;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminError {
    pub message: String,
    /// 2 for bad input, 1 for anything else.
    pub exit_code: i32,
}

impl AdminError {
    pub fn input(message: impl Into<String>) -> Self {
        AdminError {
            message: message.into(),
            exit_code: 2,
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => AdminError::input(m),
            other => AdminError {
                message: other.to_string(),
                exit_code: 1,
            },
        }
    }
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// One management command. Passwords travel only over the owner-only admin socket.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Command {
    UserAdd {
        user: NewUser,
        password: String,
        admin: bool,
        /// The user must choose a new password at the first sign-in.
        #[serde(default)]
        temporary: bool,
    },
    UserList,
    UserShow {
        username: String,
    },
    UserPasswd {
        username: String,
        password: String,
        /// The user must choose a new password at the next sign-in.
        #[serde(default)]
        temporary: bool,
    },
    /// Replaces the profile and groups (the username may change; the id never does).
    UserUpdate {
        username: String,
        user: NewUser,
    },
    /// Removes the second factor: TOTP, recovery codes and trusted browsers.
    UserResetMfa {
        username: String,
    },
    /// Removes one passkey (by credential id) or, without an id, all of the user's.
    UserRemovePasskeys {
        username: String,
        id: Option<String>,
    },
    /// Creates a user without a password and mails them an invitation (SPEC §12).
    UserInvite {
        user: NewUser,
    },
    /// Mails a pending invitation again, good for seven days from now.
    UserInviteResend {
        username: String,
    },
    /// Ends a pending invitation: its link stops working.
    UserInviteRevoke {
        username: String,
    },
    /// Changes some contact fields, leaving the others (`latchkey user update`).
    UserEdit {
        username: String,
        #[serde(default)]
        email: Option<String>,
        #[serde(default)]
        given_name: Option<String>,
        #[serde(default)]
        family_name: Option<String>,
        #[serde(default)]
        phone: Option<String>,
        #[serde(default)]
        email_verified: Option<bool>,
    },
    /// Sets (or, without a value, removes) a custom attribute of a user (SPEC §14).
    UserSetAttribute {
        username: String,
        key: String,
        value: Option<Value>,
    },
    /// The same for a group.
    GroupSetAttribute {
        name: String,
        key: String,
        value: Option<Value>,
    },
    /// Replaces every attribute of a group (the admin pages' form).
    GroupSetAttributes {
        name: String,
        attributes: crate::model::Attributes,
    },
    /// The mail waiting or failed (SPEC §12).
    MailQueue,
    /// Tries every waiting or failed mail again now.
    MailRetry,
    /// Brings the directory's people here now (SPEC §11); asynchronous, so carried out
    /// by [`sync_directory`], never by [`execute`]. `force` applies removals held back as
    /// too many.
    LdapSync {
        #[serde(default)]
        force: bool,
    },
    /// Removes one mail from the outbox (its key, `<user id>:<kind>`).
    MailDrop {
        key: String,
    },
    /// Requires passkeys (`on`) or allows the password again (SPEC §10).
    UserPasskeysOnly {
        username: String,
        on: bool,
    },
    /// Makes a one-time link (24 hours) at which the user sets a new password.
    UserResetLink {
        username: String,
    },
    GroupAdd {
        name: String,
        #[serde(default)]
        description: String,
    },
    /// Deletes a group and removes every user from it.
    GroupDelete {
        name: String,
    },
    /// Sets the fields the admin page's application form edits (name, URLs, scopes,
    /// grant types, policy, consent skipping, PKCE, allowed groups, groups filter,
    /// refresh grace, custom claims); the others stay.
    ClientReplace {
        client_id: String,
        spec: ClientSpec,
    },
    UserDisable {
        username: String,
    },
    UserEnable {
        username: String,
    },
    UserDelete {
        username: String,
    },
    UserGroupAdd {
        username: String,
        group: String,
    },
    UserGroupDel {
        username: String,
        group: String,
    },
    ClientAdd {
        spec: ClientSpec,
        /// A preset and the application's URL: the answer carries its configuration
        /// snippet (issue 17).
        #[serde(default)]
        preset: Option<(String, String)>,
    },
    ClientList,
    ClientShow {
        client_id: String,
    },
    ClientUpdate {
        client_id: String,
        patch: ClientPatch,
    },
    ClientRotateSecret {
        client_id: String,
    },
    ClientDelete {
        client_id: String,
    },
    KeysList,
    /// A consistent copy of the database, streamed over the admin socket (see `socket`).
    Backup,
    /// Rotates the signing key of one algorithm, or of both when `alg` is `None`.
    KeysRotate {
        alg: Option<String>,
    },
    Audit {
        since: i64,
        user: Option<String>,
        limit: usize,
    },
}

impl Command {
    /// Name for the audit log (never includes arguments, which may hold passwords).
    pub fn name(&self) -> &'static str {
        match self {
            Command::UserAdd { .. } => "user.add",
            Command::UserList => "user.list",
            Command::UserShow { .. } => "user.show",
            Command::UserPasswd { .. } => "user.passwd",
            Command::UserUpdate { .. } => "user.update",
            Command::UserResetMfa { .. } => "user.reset_mfa",
            Command::UserRemovePasskeys { .. } => "user.passkeys_removed",
            Command::UserPasskeysOnly { on: true, .. } => "user.passkeys_required",
            Command::UserPasskeysOnly { on: false, .. } => "user.password_allowed",
            Command::UserResetLink { .. } => "user.reset_link",
            Command::UserInvite { .. } => "user.invite",
            Command::UserInviteResend { .. } => "user.invite_resend",
            Command::UserInviteRevoke { .. } => "user.invite_revoke",
            Command::UserEdit { .. } => "user.update",
            Command::MailQueue => "mail.queue",
            Command::UserSetAttribute { .. } => "user.attribute",
            Command::GroupSetAttribute { .. } | Command::GroupSetAttributes { .. } => {
                "group.attribute"
            }
            Command::MailRetry => "mail.retry",
            Command::LdapSync { .. } => "ldap.sync",
            Command::MailDrop { .. } => "mail.drop",
            Command::GroupAdd { .. } => "group.add",
            Command::GroupDelete { .. } => "group.delete",
            Command::ClientReplace { .. } => "client.replace",
            Command::UserDisable { .. } => "user.disable",
            Command::UserEnable { .. } => "user.enable",
            Command::UserDelete { .. } => "user.delete",
            Command::UserGroupAdd { .. } => "user.group_add",
            Command::UserGroupDel { .. } => "user.group_del",
            Command::ClientAdd { .. } => "client.add",
            Command::ClientList => "client.list",
            Command::ClientShow { .. } => "client.show",
            Command::ClientUpdate { .. } => "client.update",
            Command::ClientRotateSecret { .. } => "client.rotate_secret",
            Command::ClientDelete { .. } => "client.delete",
            Command::KeysList => "keys.list",
            Command::Backup => "backup",
            Command::KeysRotate { .. } => "keys.rotate",
            Command::Audit { .. } => "audit",
        }
    }

    fn changes_state(&self) -> bool {
        !matches!(
            self,
            Command::UserList
                | Command::MailQueue
                | Command::UserShow { .. }
                | Command::ClientList
                | Command::ClientShow { .. }
                | Command::KeysList
                | Command::Backup
                | Command::Audit { .. }
        )
    }
}

/// `latchkey ldap sync` and the admin pages' "Sync now": one directory sync, its report
/// as JSON; a directory that cannot be read is an error (exit code 1) and changes nothing.
pub async fn sync_directory(
    store: std::sync::Arc<dyn Store>,
    config: &Config,
    force: bool,
    now: i64,
) -> Result<Value, AdminError> {
    let Some(settings) = &config.ldap else {
        return Err(AdminError {
            message: "ldap: not configured (add an [ldap] section)".into(),
            exit_code: 2,
        });
    };
    let dir = crate::ldap::Directory::new(settings).map_err(|message| AdminError {
        message,
        exit_code: 2,
    })?;
    let r = crate::ldap::sync::run(&dir, store, force, now).await;
    match &r.error {
        Some(e) => Err(AdminError {
            message: format!("ldap sync: {e}"),
            exit_code: 1,
        }),
        None => Ok(serde_json::to_value(&r).unwrap_or_default()),
    }
}

fn check_text(field: &str, v: &Option<String>, max: usize) -> Result<(), AdminError> {
    if let Some(v) = v
        && (v.chars().count() > max || v.chars().any(char::is_control))
    {
        return Err(AdminError::input(format!(
            "{field}: at most {max} printable characters"
        )));
    }
    Ok(())
}

/// Runs one command. `actor` names who asked (for the audit log).
pub fn execute(
    store: &dyn Store,
    config: &Config,
    cmd: Command,
    actor: &str,
    now: i64,
) -> Result<Value, AdminError> {
    execute_from(store, config, cmd, actor, None, now)
}

/// [`execute`] for a command that came over the network (the admin pages): the audit
/// line also names the address.
pub fn execute_from(
    store: &dyn Store,
    config: &Config,
    cmd: Command,
    actor: &str,
    ip: Option<std::net::IpAddr>,
    now: i64,
) -> Result<Value, AdminError> {
    let name = cmd.name();
    let changes = cmd.changes_state();
    let out = run(store, config, cmd, now)?;
    if changes {
        let text = |k: &str| out.get(k).and_then(Value::as_str).map(str::to_string);
        let e = crate::model::AuditEvent {
            time: now,
            kind: format!("admin.{name}"),
            user: Some(actor.to_string()),
            client: text("client_id"),
            ip: ip.map(|i| i.to_string()),
            detail: text("username")
                .or_else(|| text("group"))
                .unwrap_or_default(),
        };
        if let Err(err) = store.append_audit(&e) {
            tracing::warn!(error = %err, "could not record audit event");
        }
    }
    Ok(out)
}

/// Checks a whole set of attributes (names, values, how many).
pub fn check_attributes(attributes: &crate::model::Attributes) -> Result<(), AdminError> {
    if attributes.len() > crate::oidc::claims::MAX_ATTRIBUTES {
        return Err(AdminError::input(format!(
            "attribute: at most {} per user or group",
            crate::oidc::claims::MAX_ATTRIBUTES
        )));
    }
    for (k, v) in attributes {
        crate::oidc::claims::check_attribute(k, v).map_err(AdminError::input)?;
    }
    Ok(())
}

/// Sets or removes one attribute, within [`crate::oidc::claims::MAX_ATTRIBUTES`].
fn set_attribute(
    attributes: &mut crate::model::Attributes,
    key: &str,
    value: Option<Value>,
) -> Result<(), AdminError> {
    match value {
        Some(v) => {
            if !attributes.contains_key(key)
                && attributes.len() >= crate::oidc::claims::MAX_ATTRIBUTES
            {
                return Err(AdminError::input(format!(
                    "attribute: at most {} per user or group",
                    crate::oidc::claims::MAX_ATTRIBUTES
                )));
            }
            attributes.insert(key.to_string(), v);
        }
        None => {
            attributes.remove(key);
        }
    }
    Ok(())
}

fn run(store: &dyn Store, config: &Config, cmd: Command, now: i64) -> Result<Value, AdminError> {
    match cmd {
        Command::UserAdd {
            mut user,
            password,
            admin,
            temporary,
        } => {
            if admin && !user.groups.iter().any(|g| g == ADMIN_GROUP) {
                user.groups.push(ADMIN_GROUP.to_string());
            }
            user.must_change_password = temporary;
            let u = create_user(store, &config.password, user, &password, now)?;
            Ok(user_json(&u))
        }
        Command::UserList => Ok(Value::Array(store.users()?.iter().map(user_json).collect())),
        Command::UserShow { username } => Ok(user_json(&find_user(store, &username)?)),
        Command::UserPasswd {
            username,
            password,
            temporary,
        } => users::passwd(store, config, username, password, temporary, now),
        Command::UserUpdate { username, user } => {
            let verified = user.email_verified;
            let attributes = user.attributes.clone();
            if let Some(a) = &attributes {
                check_attributes(a)?;
            }
            // A directory account: its profile is the directory's (not checked here, where
            // its values may not fit local rules); only `admin`, the address's
            // verification and the attributes are set.
            let current = find_user(store, &username)?;
            if current.source.is_some() {
                let admin = user.groups.iter().any(|g| g == ADMIN_GROUP);
                let u = modify_user(store, &username, |u| {
                    u.groups.retain(|g| g != ADMIN_GROUP);
                    if admin {
                        u.groups.push(ADMIN_GROUP.to_string());
                    }
                    u.email_verified = verified;
                    if let Some(a) = &attributes {
                        u.attributes = a.clone();
                    }
                    u.updated_at = now;
                    Ok(())
                })?;
                return Ok(user_json(&u));
            }
            let p = validate_profile(user)?;
            ensure_groups(store, &p.groups)?;
            let u = modify_user(store, &username, |u| {
                let moved = u.email != p.email;
                u.username = p.username.clone();
                u.groups = p.groups.clone();
                p.apply_contact(u, now);
                // The administrator's word holds for the address as it was shown; a new
                // one is unverified until checked (or ticked again).
                u.email_verified = verified && !moved;
                if let Some(a) = &attributes {
                    u.attributes = a.clone();
                }
                Ok(())
            })?;
            Ok(user_json(&u))
        }
        Command::UserEdit {
            username,
            email,
            given_name,
            family_name,
            phone,
            email_verified,
        } => users::edit(
            store,
            &username,
            users::Edit {
                email,
                given_name,
                family_name,
                phone,
                email_verified,
            },
            now,
        ),
        Command::UserInvite { user } => {
            config.mail.as_ref().ok_or_else(mail::not_configured)?;
            let u = users::create_invited(store, user, now)?;
            Ok(mail::send_now(
                store,
                config,
                MailKind::Invitation,
                &u,
                user_json(&u),
                now,
            ))
        }
        Command::UserInviteResend { username } => {
            config.mail.as_ref().ok_or_else(mail::not_configured)?;
            let u = modify_user(store, &username, |u| {
                if u.invitation.is_none() && !u.password_hash.is_empty() {
                    return Err(AdminError::input(format!(
                        "username: {:?} accepted the invitation already",
                        u.username
                    )));
                }
                let until = now + crate::mail::outbox::INVITATION_TTL;
                u.invitation = Some((String::new(), until, u.email.clone()));
                Ok(())
            })?;
            Ok(mail::send_now(
                store,
                config,
                MailKind::Invitation,
                &u,
                user_json(&u),
                now,
            ))
        }
        Command::UserInviteRevoke { username } => {
            let u = modify_user(store, &username, |u| {
                if u.invitation.take().is_none() {
                    return Err(AdminError::input(format!(
                        "username: {:?} has no pending invitation",
                        u.username
                    )));
                }
                Ok(())
            })?;
            Ok(user_json(&u))
        }
        Command::UserSetAttribute {
            username,
            key,
            value,
        } => {
            if let Some(v) = &value {
                crate::oidc::claims::check_attribute(&key, v).map_err(AdminError::input)?;
            }
            let u = modify_user(store, &username, |u| {
                set_attribute(&mut u.attributes, &key, value.clone())?;
                u.updated_at = now;
                Ok(())
            })?;
            Ok(user_json(&u))
        }
        Command::GroupSetAttribute { name, key, value } => {
            if let Some(v) = &value {
                crate::oidc::claims::check_attribute(&key, v).map_err(AdminError::input)?;
            }
            let mut g = store
                .groups()?
                .into_iter()
                .find(|g| g.name == name)
                .ok_or_else(|| AdminError::input(format!("group: no group {name:?}")))?;
            set_attribute(&mut g.attributes, &key, value)?;
            store.put_group(&g)?;
            Ok(json!({"group": g.name, "attributes": g.attributes}))
        }
        Command::GroupSetAttributes { name, attributes } => {
            check_attributes(&attributes)?;
            let mut g = store
                .groups()?
                .into_iter()
                .find(|g| g.name == name)
                .ok_or_else(|| AdminError::input(format!("group: no group {name:?}")))?;
            g.attributes = attributes;
            store.put_group(&g)?;
            Ok(json!({"group": g.name, "attributes": g.attributes}))
        }
        Command::MailQueue => mail::queue_json(store),
        Command::MailRetry => mail::retry_all(store, now),
        Command::LdapSync { .. } => Err(AdminError::input(
            "ldap sync: carried out by the server or `latchkey ldap sync`",
        )),
        Command::MailDrop { key } => {
            if !store.delete_mail(&key, None)? {
                return Err(AdminError::input(format!(
                    "mail: no mail {key:?} in the outbox"
                )));
            }
            Ok(serde_json::json!({ "dropped": key }))
        }
        Command::UserResetMfa { username } => {
            let u = modify_user(store, &username, |u| {
                u.mfa.turn_off_codes();
                u.updated_at = now;
                Ok(())
            })?;
            Ok(user_json(&u))
        }
        Command::UserRemovePasskeys { username, id } => {
            let u = modify_user(store, &username, |u| {
                let before = u.mfa.passkeys.len();
                u.mfa
                    .passkeys
                    .retain(|p| id.as_ref().is_some_and(|id| *id != p.id));
                if u.mfa.passkeys.len() == before {
                    return Err(AdminError::input("passkey: no such passkey".to_string()));
                }
                if !u.mfa.has_second_factor() {
                    u.mfa.devices.clear();
                }
                u.updated_at = now;
                Ok(())
            })?;
            Ok(user_json(&u))
        }
        Command::UserPasskeysOnly { username, on } => {
            let u = modify_user(store, &username, |u| {
                u.passkeys_only = on;
                u.updated_at = now;
                Ok(())
            })?;
            if on {
                // What the password opened before ends: the person signs in again, with
                // a passkey.
                store.delete_user_sessions(&u.id)?;
                store.revoke_user_grants(&u.id)?;
            }
            Ok(user_json(&u))
        }
        Command::UserResetLink { username } => users::reset_link(store, config, username, now),
        Command::GroupAdd { name, description } => {
            if !valid_group_name(&name) {
                return Err(AdminError::input(format!(
                    "group: {name:?} is not a valid group name"
                )));
            }
            check_text("description", &Some(description.clone()), 200)?;
            // A group added again keeps its attributes.
            let attributes = store
                .groups()?
                .into_iter()
                .find(|g| g.name == name)
                .map(|g| g.attributes)
                .unwrap_or_default();
            store.put_group(&Group {
                name: name.clone(),
                description: description.trim().to_string(),
                attributes,
            })?;
            Ok(json!({"group": name}))
        }
        Command::GroupDelete { name } => {
            if name == ADMIN_GROUP {
                return Err(AdminError::input(
                    "group: the admin group cannot be deleted",
                ));
            }
            let users = store.users()?;
            // Directory people's groups are the directory's: such a group is removed
            // there (the next sync would bring it back), and nobody loses it half-way.
            let from_directory = users
                .iter()
                .filter(|u| u.source.is_some() && u.groups.contains(&name))
                .count();
            if from_directory > 0 {
                return Err(AdminError::input(format!(
                    "group: {name} comes from the directory ({from_directory} directory account(s) are in it); remove it there"
                )));
            }
            for u in users {
                if u.groups.contains(&name) {
                    modify_user(store, &u.username, |u| {
                        u.groups.retain(|g| g != &name);
                        u.updated_at = now;
                        Ok(())
                    })?;
                }
            }
            store.delete_group(&name)?;
            Ok(json!({"group": name, "deleted": true}))
        }
        Command::ClientReplace { client_id, spec } => {
            clients::replace_client(store, config, client_id, spec)
        }
        Command::UserDisable { username } => set_disabled(store, &username, true, now),
        Command::UserEnable { username } => set_disabled(store, &username, false, now),
        Command::UserDelete { username } => {
            let u = find_user(store, &username)?;
            store.delete_user(&u.id)?;
            Ok(json!({"username": u.username, "deleted": true}))
        }
        Command::UserGroupAdd { username, group } => users::group_add(store, username, group, now),
        Command::UserGroupDel { username, group } => users::group_del(store, username, group, now),
        Command::ClientAdd { mut spec, preset } => {
            let Some((name, url)) = preset else {
                return clients::add_client(store, spec, now);
            };
            let p = presets::find(&name).ok_or_else(|| {
                let known: Vec<&str> = presets::PRESETS.iter().map(|p| p.name).collect();
                AdminError::input(format!(
                    "preset: {name:?} is not one of {}",
                    known.join(", ")
                ))
            })?;
            let url = presets::app_url(&url).map_err(AdminError::input)?;
            p.apply(&mut spec, &url).map_err(AdminError::input)?;
            let mut out = clients::add_client(store, spec, now)?;
            let text = |k: &str| out[k].as_str().unwrap_or_default().to_string();
            let snippet = p.snippet(
                &config.issuer,
                &url,
                &text("client_id"),
                &text("client_secret"),
            );
            out["snippet"] = json!(snippet);
            Ok(out)
        }
        Command::ClientList => {
            let mut all: Vec<Client> = config.declared_clients.values().cloned().collect();
            all.sort_by(|a, b| a.name.cmp(&b.name));
            all.extend(store.clients()?);
            Ok(Value::Array(all.iter().map(client_json).collect()))
        }
        Command::ClientShow { client_id } => match config.declared_clients.get(&client_id) {
            Some(c) => Ok(client_json(c)),
            None => Ok(client_json(&find_client(store, config, &client_id)?)),
        },
        Command::ClientUpdate { client_id, patch } => {
            let client = modify_client(store, config, &client_id, |old| apply_patch(old, &patch))?;
            Ok(client_json(&client))
        }
        Command::ClientRotateSecret { client_id } => {
            clients::rotate_secret(store, config, client_id)
        }
        Command::ClientDelete { client_id } => {
            find_client(store, config, &client_id)?;
            store.delete_client(&client_id)?;
            Ok(json!({"client_id": client_id, "deleted": true}))
        }
        Command::KeysRotate { alg } => {
            let algs = match alg.as_deref() {
                None => vec![Alg::RS256, Alg::ES256],
                Some(a) => vec![Alg::parse(a).ok_or_else(|| {
                    AdminError::input(format!("alg: {a:?} is not RS256 or ES256"))
                })?],
            };
            let mut records = store.keys()?;
            let mut new = Vec::new();
            for alg in algs {
                let changed =
                    crate::keys::signing::rotate(&records, alg, now).map_err(|e| AdminError {
                        message: e.to_string(),
                        exit_code: 1,
                    })?;
                store.put_keys(&changed)?;
                for c in changed {
                    if c.state == crate::model::KeyState::Active {
                        new.push(json!({"kid": c.kid, "alg": c.alg.as_str()}));
                    }
                    records.retain(|r| r.kid != c.kid);
                    records.push(c);
                }
            }
            Ok(json!({"rotated": new}))
        }
        // Handled by the socket (streamed) or by `backup` directly, never here.
        Command::Backup => Err(AdminError {
            message: "backup is not an executor command".into(),
            exit_code: 1,
        }),
        Command::KeysList => {
            let mut keys = store.keys()?;
            keys.sort_by_key(|k| std::cmp::Reverse(k.created_at));
            Ok(Value::Array(
                keys.iter()
                    .map(|k| {
                        json!({
                            "kid": k.kid,
                            "alg": k.alg.as_str(),
                            "state": k.state,
                                                        "created_at": k.created_at,
                            "retired_at": k.retired_at,
                            "age_days": (now - k.created_at) / 86_400,
                        })
                    })
                    .collect(),
            ))
        }
        Command::Audit { since, user, limit } => {
            let events = store.audit(since, limit.clamp(1, 100_000), user.as_deref())?;
            Ok(Value::Array(
                events
                    .into_iter()
                    .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
                    .collect(),
            ))
        }
    }
}

#[cfg(test)]
mod tests;
