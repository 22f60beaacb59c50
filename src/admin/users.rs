//! Users: profile validation, creation, and the read-modify-write of stored users.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{ADMIN_GROUP, AdminError, RESET_LINK_TTL, check_text};
use crate::config::{Config, PasswordParams};
use crate::model::{Address, Group, User, valid_email, valid_username};
use crate::oidc::registration::valid_group_name;
use crate::store::StoreError;
use crate::store::prelude::*;

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
    /// An administrator vouches for the address (`--email-verified`).
    #[serde(default)]
    pub email_verified: bool,
    /// Replaces the custom attributes when given (the admin pages' form).
    #[serde(default)]
    pub attributes: Option<crate::model::Attributes>,
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
            // Links mailed to the old address stop working.
            u.email_verified = false;
            u.email_check = None;
            if let Some(inv) = &mut u.invitation {
                inv.0.clear();
            }
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
    let address = validate_address(new.address)?;
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
        address,
        groups,
    })
}

/// Checks a postal address (trimmed; `None` when every field is empty).
pub fn validate_address(a: Address) -> Result<Option<Address>, AdminError> {
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
    Ok((!address.is_empty()).then_some(address))
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
    crate::keys::password::check_policy(password, new.username.trim())
        .map_err(AdminError::input)?;
    let password_hash = crate::keys::password::hash(password, params).map_err(|e| AdminError {
        message: e,
        exit_code: 1,
    })?;
    store_new_user(store, new, password_hash, None, now)
}

/// Stores an invited user (SPEC §12): no password until they choose one at the link, the
/// invitation good for seven days (its link is made when the mail is sent).
pub(super) fn create_invited(
    store: &dyn Store,
    new: NewUser,
    now: i64,
) -> Result<User, AdminError> {
    if new.email.trim().is_empty() {
        return Err(AdminError::input("email: an invitation needs an address"));
    }
    let until = now + crate::mail::outbox::INVITATION_TTL;
    store_new_user(store, new, String::new(), Some(until), now)
}

fn store_new_user(
    store: &dyn Store,
    new: NewUser,
    password_hash: String,
    invited_until: Option<i64>,
    now: i64,
) -> Result<User, AdminError> {
    let (must_change_password, email_verified) = (new.must_change_password, new.email_verified);
    let Profile {
        username,
        email,
        given_name,
        family_name,
        phone,
        address,
        groups,
    } = validate_profile(new)?;
    if store.user_by_name(&username)?.is_some() {
        return Err(AdminError::input(format!(
            "username: {username:?} is taken"
        )));
    }
    let user = User {
        id: crate::clock::random_id(),
        username,
        invitation: invited_until.map(|t| (String::new(), t, email.clone())),
        email,
        email_verified,
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
        passkeys_only: false,
        email_check: None,
        reset_mailed: false,
        attributes: Default::default(),
        source: None,
        directory_disabled: false,
    };
    ensure_groups(store, &user.groups)?;
    store.create_user(&user)?;
    Ok(user)
}

pub(super) fn ensure_groups(store: &dyn Store, groups: &[String]) -> Result<(), AdminError> {
    let known = store.groups()?;
    for g in groups {
        if !known.iter().any(|k| &k.name == g) {
            store.put_group(&Group {
                name: g.clone(),
                description: String::new(),
                attributes: Default::default(),
            })?;
        }
    }
    Ok(())
}

pub(super) fn user_json(u: &User) -> Value {
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
        "passkeys": u.mfa.passkeys.iter().map(|p| json!({
            "id": p.id, "name": p.name, "kind": p.kind,
            "created_at": p.created_at, "last_used": p.last_used,
        })).collect::<Vec<_>>(),
        "must_change_password": u.must_change_password,
        "passkeys_only": u.passkeys_only,
        "email_verified": u.email_verified,
        "attributes": u.attributes,
        "source": u.source.as_deref().unwrap_or("local"),
        "invited_until": u.invitation.as_ref().map(|(_, until, _)| *until),
        "created_at": u.created_at,
        "updated_at": u.updated_at,
    })
}

pub(super) fn find_user(store: &dyn Store, username: &str) -> Result<User, AdminError> {
    store
        .user_by_name(username)?
        .ok_or_else(|| AdminError::input(format!("username: no user {username:?}")))
}

/// Read-modify-write of a user that never loses a concurrent change: the edit is applied
/// to the latest version, and retried if someone else saved in between.
pub(super) fn modify_user(
    store: &dyn Store,
    username: &str,
    edit: impl Fn(&mut User) -> Result<(), AdminError>,
) -> Result<User, AdminError> {
    for _ in 0..16 {
        let old = find_user(store, username)?;
        let mut new = old.clone();
        edit(&mut new)?;
        if let Some(field) = crate::ldap::sync::ruled_change(&old, &new) {
            return Err(AdminError::input(format!(
                "{field}: {} comes from the directory; change it there",
                old.username
            )));
        }
        if new == old || store.update_user_if(&old, &new)? {
            return Ok(new);
        }
    }
    Err(AdminError {
        message: "the user keeps changing; try again".into(),
        exit_code: 1,
    })
}

pub(super) fn set_disabled(
    store: &dyn Store,
    username: &str,
    disabled: bool,
    now: i64,
) -> Result<Value, AdminError> {
    let u = modify_user(store, username, |u| {
        u.disabled = disabled;
        // An administrator's word: a directory sync neither undoes nor repeats it.
        u.directory_disabled = false;
        u.updated_at = now;
        Ok(())
    })?;
    if disabled {
        store.delete_user_sessions(&u.id)?;
    }
    Ok(user_json(&u))
}

/// `Command::UserPasswd`: a new password, which ends the account's sign-ins and tokens.
pub(super) fn passwd(
    store: &dyn Store,
    config: &Config,
    username: String,
    password: String,
    temporary: bool,
    now: i64,
) -> Result<Value, AdminError> {
    let current = find_user(store, &username)?;
    crate::keys::password::check_policy(&password, &current.username).map_err(AdminError::input)?;
    let hash =
        crate::keys::password::hash(&password, &config.password).map_err(|e| AdminError {
            message: e,
            exit_code: 1,
        })?;
    let u = modify_user(store, &username, |u| {
        u.password_hash = hash.clone();
        u.must_change_password = temporary;
        u.invitation = None;
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

/// `Command::UserResetLink`: a one-time link at which the user sets a new password.
pub(super) fn reset_link(
    store: &dyn Store,
    config: &Config,
    username: String,
    now: i64,
) -> Result<Value, AdminError> {
    let secret = crate::clock::random_token();
    let u = modify_user(store, &username, |u| {
        u.reset_link = Some((crate::keys::token_hash(&secret), now + RESET_LINK_TTL));
        u.reset_mailed = false;
        Ok(())
    })?;
    let token = format!("{}.{secret}", u.id);
    Ok(json!({
        "username": u.username,
        "reset_url": format!("{}/reset?token={token}", config.issuer),
        "expires_at": now + RESET_LINK_TTL,
    }))
}

/// Contact fields `latchkey user update` changes; `None` keeps a field.
pub(super) struct Edit {
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub phone: Option<String>,
    pub email_verified: Option<bool>,
}

/// `Command::UserEdit`: the named fields change, checked like a whole profile; a new
/// address is unverified unless `email_verified` says otherwise in the same command.
pub(super) fn edit(
    store: &dyn Store,
    username: &str,
    e: Edit,
    now: i64,
) -> Result<Value, AdminError> {
    let u = find_user(store, username)?;
    let or = |new: &Option<String>, old: &Option<String>| new.clone().or_else(|| old.clone());
    let profile = validate_profile(NewUser {
        username: u.username.clone(),
        email: e.email.clone().unwrap_or_else(|| u.email.clone()),
        given_name: or(&e.given_name, &u.given_name),
        family_name: or(&e.family_name, &u.family_name),
        phone: or(&e.phone, &u.phone),
        address: u.address.clone().unwrap_or_default(),
        groups: u.groups.clone(),
        ..NewUser::default()
    })?;
    let u = modify_user(store, username, |u| {
        profile.apply_contact(u, now);
        if let Some(v) = e.email_verified {
            u.email_verified = v;
        }
        Ok(())
    })?;
    Ok(user_json(&u))
}

/// `Command::UserGroupAdd`.
pub(super) fn group_add(
    store: &dyn Store,
    username: String,
    group: String,
    now: i64,
) -> Result<Value, AdminError> {
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

/// `Command::UserGroupDel`.
pub(super) fn group_del(
    store: &dyn Store,
    username: String,
    group: String,
    now: i64,
) -> Result<Value, AdminError> {
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
