//! Management commands (users, clients, keys, audit) as one executor. The CLI calls it
//! directly when the server is stopped, and through the admin socket ([`socket`]) when it
//! runs: one code path either way. Bad input is an [`AdminError`] with exit code 2 that
//! names the field, and nothing is written.

pub mod socket;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::{Config, PasswordParams};
use crate::model::{Address, Alg, Client, Group, User, valid_email, valid_username};
use crate::oidc::registration::{ClientSpec, build_client, valid_group_name};
use crate::store::StoreError;
use crate::store::prelude::*;

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

/// Profile fields of a new user.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub phone: Option<String>,
    pub address: Address,
    pub groups: Vec<String>,
    /// A temporary password: the user chooses their own at the first sign-in.
    #[serde(default)]
    pub must_change_password: bool,
}

/// Changes to a client; absent or empty fields keep their value.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientPatch {
    pub name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub skip_consent: Option<bool>,
    pub require_pkce: Option<bool>,
    pub id_token_alg: Option<String>,
    pub policy: Option<String>,
    pub allowed_groups: Option<Vec<String>>,
    pub backchannel_logout_uri: Option<String>,
    pub frontchannel_logout_uri: Option<String>,
    pub refresh_requires_session: Option<bool>,
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
    /// grant types, policy, consent skipping, PKCE, allowed groups); the others stay.
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
            Command::UserResetLink { .. } => "user.reset_link",
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
                | Command::UserShow { .. }
                | Command::ClientList
                | Command::ClientShow { .. }
                | Command::KeysList
                | Command::Backup
                | Command::Audit { .. }
        )
    }
}

/// Whether any enabled user is in the admin group.
pub fn admin_exists(store: &dyn Store) -> Result<bool, StoreError> {
    // Streams the users: start-up asks this, and a list of 100,000 users cost tens of
    // MiB that the allocator then kept.
    store.any_user(&|u| !u.disabled && u.groups.iter().any(|g| g == ADMIN_GROUP))
}

fn clean(s: Option<String>) -> Option<String> {
    s.map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
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

/// Profile fields after validation (trimmed; empty optional fields are `None`).
pub struct Profile {
    pub username: String,
    pub email: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub phone: Option<String>,
    pub address: Option<Address>,
    pub groups: Vec<String>,
}

impl Profile {
    /// Copies the contact fields (email, names, phone, address) onto `u`; a changed email
    /// address is no longer verified.
    pub fn apply_contact(&self, u: &mut User, now: i64) {
        if u.email != self.email {
            u.email_verified = false;
        }
        u.email = self.email.clone();
        u.given_name = self.given_name.clone();
        u.family_name = self.family_name.clone();
        u.phone = self.phone.clone();
        u.address = self.address.clone();
        u.updated_at = now;
    }
}

/// Checks every profile field of a new or edited user, naming the first bad one.
pub fn validate_profile(new: NewUser) -> Result<Profile, AdminError> {
    let username = new.username.trim().to_string();
    if !valid_username(&username) {
        return Err(AdminError::input(
            "username: 1-64 letters, digits or .-_@, starting with a letter or digit",
        ));
    }
    let email = new.email.trim().to_string();
    if !valid_email(&email) {
        return Err(AdminError::input("email: not a valid email address"));
    }
    let given_name = clean(new.given_name);
    let family_name = clean(new.family_name);
    let phone = clean(new.phone);
    check_text("given_name", &given_name, 100)?;
    check_text("family_name", &family_name, 100)?;
    check_text("phone", &phone, 32)?;
    let a = new.address;
    let address = Address {
        street_address: clean(a.street_address),
        locality: clean(a.locality),
        region: clean(a.region),
        postal_code: clean(a.postal_code),
        country: clean(a.country),
    };
    for (f, v) in [
        ("street_address", &address.street_address),
        ("locality", &address.locality),
        ("region", &address.region),
        ("postal_code", &address.postal_code),
        ("country", &address.country),
    ] {
        check_text(f, v, 200)?;
    }
    let mut groups: Vec<String> = Vec::new();
    for g in new.groups {
        if !valid_group_name(&g) {
            return Err(AdminError::input(format!(
                "group: {g:?} is not a valid group name"
            )));
        }
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    Ok(Profile {
        username,
        email,
        given_name,
        family_name,
        phone,
        address: (!address.is_empty()).then_some(address),
        groups,
    })
}

/// Validates and stores a new user; the password is hashed with the configured argon2id
/// parameters (slow: call it off the async runtime).
pub fn create_user(
    store: &dyn Store,
    params: &PasswordParams,
    new: NewUser,
    password: &str,
    now: i64,
) -> Result<User, AdminError> {
    let must_change_password = new.must_change_password;
    let Profile {
        username,
        email,
        given_name,
        family_name,
        phone,
        address,
        groups,
    } = validate_profile(new)?;
    crate::keys::password::check_policy(password, &username).map_err(AdminError::input)?;
    if store.user_by_name(&username)?.is_some() {
        return Err(AdminError::input(format!(
            "username: {username:?} is taken"
        )));
    }
    let password_hash = crate::keys::password::hash(password, params).map_err(|e| AdminError {
        message: e,
        exit_code: 1,
    })?;
    let user = User {
        id: crate::clock::random_id(),
        username,
        email,
        email_verified: false,
        given_name,
        family_name,
        phone,
        address,
        groups,
        password_hash,
        disabled: false,
        created_at: now,
        updated_at: now,
        mfa: Default::default(),
        must_change_password,
        reset_link: None,
    };
    ensure_groups(store, &user.groups)?;
    store.create_user(&user)?;
    Ok(user)
}

fn ensure_groups(store: &dyn Store, groups: &[String]) -> Result<(), AdminError> {
    let known = store.groups()?;
    for g in groups {
        if !known.iter().any(|k| &k.name == g) {
            store.put_group(&Group {
                name: g.clone(),
                description: String::new(),
            })?;
        }
    }
    Ok(())
}

fn user_json(u: &User) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "email": u.email,
        "given_name": u.given_name,
        "family_name": u.family_name,
        "phone": u.phone,
        "address": u.address,
        "groups": u.groups,
        "disabled": u.disabled,
        "two_factor": u.mfa.enrolled(),
        "must_change_password": u.must_change_password,
        "created_at": u.created_at,
        "updated_at": u.updated_at,
    })
}

fn client_json(c: &Client) -> Value {
    json!({
        "client_id": c.client_id,
        "name": c.name,
        "public": c.is_public(),
        "redirect_uris": c.redirect_uris,
        "post_logout_redirect_uris": c.post_logout_redirect_uris,
        "scopes": c.scopes,
        "grant_types": c.grant_types,
        "response_types": c.response_types,
        "token_endpoint_auth_method": c.token_endpoint_auth_method.as_str(),
        "policy": c.policy,
        "skip_consent": c.skip_consent,
        "id_token_alg": c.id_token_alg.as_str(),
        "require_pkce": c.require_pkce,
                        "allowed_groups": c.allowed_groups,
        "jwks_uri": c.jwks_uri,
        "has_jwks": c.jwks.is_some(),
                "require_par": c.require_par,
        "refresh_requires_session": c.refresh_requires_session,
        "backchannel_logout_uri": c.backchannel_logout_uri,
        "frontchannel_logout_uri": c.frontchannel_logout_uri,
        "frontchannel_logout_session_required": c.frontchannel_logout_session_required,
        "declared": c.declared,
        "created_at": c.created_at,
    })
}

fn find_user(store: &dyn Store, username: &str) -> Result<User, AdminError> {
    store
        .user_by_name(username)?
        .ok_or_else(|| AdminError::input(format!("username: no user {username:?}")))
}

fn find_client(store: &dyn Store, config: &Config, client_id: &str) -> Result<Client, AdminError> {
    if config.declared_clients.contains_key(client_id) {
        return Err(AdminError::input(format!(
            "client_id: {client_id:?} is declared in the configuration file; change it there"
        )));
    }
    store
        .client(client_id)?
        .ok_or_else(|| AdminError::input(format!("client_id: no client {client_id:?}")))
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
        } => {
            let current = find_user(store, &username)?;
            crate::keys::password::check_policy(&password, &current.username)
                .map_err(AdminError::input)?;
            let hash = crate::keys::password::hash(&password, &config.password).map_err(|e| {
                AdminError {
                    message: e,
                    exit_code: 1,
                }
            })?;
            let u = modify_user(store, &username, |u| {
                u.password_hash = hash.clone();
                u.must_change_password = temporary;
                u.reset_link = None;
                // Browsers trusted to skip the second factor were trusted under the old
                // password: someone who had it may have made one.
                u.mfa.devices.clear();
                u.updated_at = now;
                Ok(())
            })?;
            // A new password ends every existing sign-in of the account and every token
            // issued from one (ASVS V3.3.3, RFC 9700 §4.14.2).
            store.delete_user_sessions(&u.id)?;
            store.revoke_user_grants(&u.id)?;
            Ok(user_json(&u))
        }
        Command::UserUpdate { username, user } => {
            let p = validate_profile(user)?;
            ensure_groups(store, &p.groups)?;
            let u = modify_user(store, &username, |u| {
                u.username = p.username.clone();
                u.groups = p.groups.clone();
                p.apply_contact(u, now);
                Ok(())
            })?;
            Ok(user_json(&u))
        }
        Command::UserResetMfa { username } => {
            let u = modify_user(store, &username, |u| {
                u.mfa = crate::model::Mfa::default();
                u.updated_at = now;
                Ok(())
            })?;
            Ok(user_json(&u))
        }
        Command::UserResetLink { username } => {
            let secret = crate::clock::random_token();
            let u = modify_user(store, &username, |u| {
                u.reset_link = Some((crate::keys::token_hash(&secret), now + RESET_LINK_TTL));
                Ok(())
            })?;
            let token = format!("{}.{secret}", u.id);
            Ok(json!({
                "username": u.username,
                "reset_url": format!("{}/reset?token={token}", config.issuer),
                "expires_at": now + RESET_LINK_TTL,
            }))
        }
        Command::GroupAdd { name, description } => {
            if !valid_group_name(&name) {
                return Err(AdminError::input(format!(
                    "group: {name:?} is not a valid group name"
                )));
            }
            check_text("description", &Some(description.clone()), 200)?;
            store.put_group(&Group {
                name: name.clone(),
                description: description.trim().to_string(),
            })?;
            Ok(json!({"group": name}))
        }
        Command::GroupDelete { name } => {
            if name == ADMIN_GROUP {
                return Err(AdminError::input(
                    "group: the admin group cannot be deleted",
                ));
            }
            for u in store.users()? {
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
            let client = modify_client(store, config, &client_id, |old| {
                // The fields the admin page edits come from `spec`; the rest stay.
                let grants_changed = spec.grant_types != old.grant_types;
                let full = ClientSpec {
                    name: spec.name.clone(),
                    redirect_uris: spec.redirect_uris.clone(),
                    post_logout_redirect_uris: spec.post_logout_redirect_uris.clone(),
                    scopes: spec.scopes.clone(),
                    grant_types: spec.grant_types.clone(),
                    policy: spec.policy.clone(),
                    skip_consent: spec.skip_consent,
                    require_pkce: spec.require_pkce,
                    allowed_groups: spec.allowed_groups.clone(),
                    response_types: if grants_changed {
                        vec![]
                    } else {
                        old.response_types.clone()
                    },
                    ..spec_of(old)
                };
                let mut c = build_client(old.client_id.clone(), full, old.created_at)
                    .map_err(AdminError::input)?;
                c.secret_hash = old.secret_hash.clone();
                c.jwt_secret = old.jwt_secret.clone();
                Ok(c)
            })?;
            Ok(client_json(&client))
        }
        Command::UserDisable { username } => set_disabled(store, &username, true, now),
        Command::UserEnable { username } => set_disabled(store, &username, false, now),
        Command::UserDelete { username } => {
            let u = find_user(store, &username)?;
            store.delete_user(&u.id)?;
            Ok(json!({"username": u.username, "deleted": true}))
        }
        Command::UserGroupAdd { username, group } => {
            if !valid_group_name(&group) {
                return Err(AdminError::input(format!(
                    "group: {group:?} is not a valid group name"
                )));
            }
            ensure_groups(store, std::slice::from_ref(&group))?;
            let u = modify_user(store, &username, |u| {
                if !u.groups.contains(&group) {
                    u.groups.push(group.clone());
                    u.updated_at = now;
                }
                Ok(())
            })?;
            Ok(user_json(&u))
        }
        Command::UserGroupDel { username, group } => {
            let u = modify_user(store, &username, |u| {
                if !u.groups.contains(&group) {
                    return Err(AdminError::input(format!(
                        "group: {} is not in {group:?}",
                        u.username
                    )));
                }
                u.groups.retain(|g| g != &group);
                u.updated_at = now;
                Ok(())
            })?;
            Ok(user_json(&u))
        }
        Command::ClientAdd { spec } => {
            let public = spec.public;
            let mut client = build_client(crate::clock::random_client_id(), spec, now)
                .map_err(AdminError::input)?;
            let secret = (!public).then(crate::clock::random_token);
            client.secret_hash = secret.as_deref().map(crate::keys::client_secret_hash);
            if client.token_endpoint_auth_method == crate::model::AuthMethod::ClientSecretJwt {
                client.jwt_secret = secret.clone();
            }
            store.create_client(&client)?;
            let mut out = client_json(&client);
            if let (Some(s), Value::Object(o)) = (secret, &mut out) {
                o.insert("client_secret".into(), json!(s));
            }
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
            let secret = crate::clock::random_token();
            let client = modify_client(store, config, &client_id, |old| {
                if old.is_public() {
                    return Err(AdminError::input(
                        "client_id: public clients have no secret",
                    ));
                }
                let mut c = old.clone();
                c.secret_hash = Some(crate::keys::client_secret_hash(&secret));
                if c.jwt_secret.is_some() {
                    c.jwt_secret = Some(secret.clone());
                }
                Ok(c)
            })?;
            Ok(json!({"client_id": client.client_id, "client_secret": secret}))
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

/// `latchkey backup FILE` with the server stopped: the copy is made directly.
pub fn backup_direct(store: &dyn Store, target: &std::path::Path) -> Result<Value, AdminError> {
    store.backup_to(target).map_err(|e| AdminError {
        message: e.to_string(),
        exit_code: 1,
    })?;
    let bytes = std::fs::metadata(target).map(|m| m.len()).unwrap_or(0);
    Ok(json!({"path": target.display().to_string(), "bytes": bytes}))
}

/// `latchkey restore FILE` (server stopped): checks the file is a Latchkey database this
/// build can read (migrating an older schema), then puts it in place and keeps the
/// current database aside. Nothing is replaced when a check fails.
pub fn restore(
    data_dir: &std::path::Path,
    source: &std::path::Path,
    now: i64,
) -> Result<Value, AdminError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e: std::io::Error, what: &std::path::Path| AdminError {
        message: format!("{}: {e}", what.display()),
        exit_code: 1,
    };
    let live = crate::datadir::db_path(data_dir);
    if live.exists() {
        // Fails with Locked while a server holds the database.
        if let Err(StoreError::Locked) = crate::store::redb::RedbStore::open(&live) {
            return Err(AdminError {
                message: "the server is running: stop it before restoring".into(),
                exit_code: 1,
            });
        }
    }
    let staging = data_dir.join(format!("latchkey.redb.restoring-{now}"));
    std::fs::copy(source, &staging).map_err(|e| io(e, source))?;
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io(e, &staging))?;
    let checked = match crate::store::redb::RedbStore::open(&staging) {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&staging);
            return Err(AdminError::input(format!(
                "file: {} is not a usable Latchkey backup: {e}",
                source.display()
            )));
        }
    };
    let users = checked.users()?.len();
    let clients = checked.clients()?.len();
    let keys = checked.keys()?.len();
    drop(checked);
    let previous = data_dir.join(format!("latchkey.redb.before-restore-{now}"));
    let had_previous = live.exists();
    if had_previous {
        std::fs::rename(&live, &previous).map_err(|e| io(e, &live))?;
    }
    std::fs::rename(&staging, &live).map_err(|e| io(e, &staging))?;
    Ok(json!({
        "restored_from": source.display().to_string(),
        "users": users,
        "clients": clients,
        "keys": keys,
                "previous": had_previous.then(|| previous.display().to_string()),
    }))
}

/// Read-modify-write of a user that never loses a concurrent change: the edit is applied
/// to the latest version, and retried if someone else saved in between.
fn modify_user(
    store: &dyn Store,
    username: &str,
    edit: impl Fn(&mut User) -> Result<(), AdminError>,
) -> Result<User, AdminError> {
    for _ in 0..16 {
        let old = find_user(store, username)?;
        let mut new = old.clone();
        edit(&mut new)?;
        if new == old || store.update_user_if(&old, &new)? {
            return Ok(new);
        }
    }
    Err(AdminError {
        message: "the user keeps changing; try again".into(),
        exit_code: 1,
    })
}

/// The registration a stored client was built from.
pub fn spec_of(c: &Client) -> ClientSpec {
    ClientSpec {
        name: c.name.clone(),
        redirect_uris: c.redirect_uris.clone(),
        post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
        scopes: c.scopes.clone(),
        grant_types: c.grant_types.clone(),
        response_types: c.response_types.clone(),
        public: c.is_public(),
        token_endpoint_auth_method: Some(c.token_endpoint_auth_method.as_str().to_string()),
        policy: Some(
            match c.policy {
                crate::model::Policy::OneFactor => "one_factor",
                crate::model::Policy::TwoFactor => "two_factor",
            }
            .to_string(),
        ),
        skip_consent: c.skip_consent,
        id_token_alg: Some(c.id_token_alg.as_str().to_string()),
        require_pkce: c.require_pkce,
        backchannel_logout_uri: c.backchannel_logout_uri.clone(),
        frontchannel_logout_uri: c.frontchannel_logout_uri.clone(),
        frontchannel_logout_session_required: c.frontchannel_logout_session_required,
        allowed_groups: c.allowed_groups.clone(),
        jwks: c.jwks.clone(),
        jwks_uri: c.jwks_uri.clone(),
        require_par: c.require_par,
        refresh_requires_session: c.refresh_requires_session,
    }
}

/// A client with the patch's fields changed, validated like a new one.
fn apply_patch(old: &Client, patch: &ClientPatch) -> Result<Client, AdminError> {
    let or =
        |v: &Vec<String>, old: &Vec<String>| if v.is_empty() { old.clone() } else { v.clone() };
    let base = spec_of(old);
    let spec = ClientSpec {
        name: patch.name.clone().unwrap_or_else(|| old.name.clone()),
        redirect_uris: or(&patch.redirect_uris, &old.redirect_uris),
        post_logout_redirect_uris: or(
            &patch.post_logout_redirect_uris,
            &old.post_logout_redirect_uris,
        ),
        scopes: or(&patch.scopes, &old.scopes),
        grant_types: or(&patch.grant_types, &old.grant_types),
        response_types: or(&patch.response_types, &old.response_types),
        policy: patch.policy.clone().or(base.policy.clone()),
        skip_consent: patch.skip_consent.unwrap_or(old.skip_consent),
        id_token_alg: patch.id_token_alg.clone().or(base.id_token_alg.clone()),
        require_pkce: patch.require_pkce.unwrap_or(old.require_pkce),
        allowed_groups: patch
            .allowed_groups
            .clone()
            .unwrap_or_else(|| old.allowed_groups.clone()),
        backchannel_logout_uri: patch
            .backchannel_logout_uri
            .clone()
            .or(old.backchannel_logout_uri.clone()),
        frontchannel_logout_uri: patch
            .frontchannel_logout_uri
            .clone()
            .or(old.frontchannel_logout_uri.clone()),
        refresh_requires_session: patch
            .refresh_requires_session
            .unwrap_or(old.refresh_requires_session),
        ..base
    };
    let mut client =
        build_client(old.client_id.clone(), spec, old.created_at).map_err(AdminError::input)?;
    client.secret_hash = old.secret_hash.clone();
    client.jwt_secret = old.jwt_secret.clone();
    Ok(client)
}

/// The same for a (non-declared) client.
fn modify_client(
    store: &dyn Store,
    config: &Config,
    client_id: &str,
    edit: impl Fn(&Client) -> Result<Client, AdminError>,
) -> Result<Client, AdminError> {
    for _ in 0..16 {
        let old = find_client(store, config, client_id)?;
        let new = edit(&old)?;
        if new == old || store.update_client_if(&old, &new)? {
            return Ok(new);
        }
    }
    Err(AdminError {
        message: "the client keeps changing; try again".into(),
        exit_code: 1,
    })
}

fn set_disabled(
    store: &dyn Store,
    username: &str,
    disabled: bool,
    now: i64,
) -> Result<Value, AdminError> {
    let u = modify_user(store, username, |u| {
        u.disabled = disabled;
        u.updated_at = now;
        Ok(())
    })?;
    if disabled {
        store.delete_user_sessions(&u.id)?;
    }
    Ok(user_json(&u))
}

#[cfg(test)]
mod tests;
