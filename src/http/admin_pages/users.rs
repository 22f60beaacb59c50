//! The users pages: the list, the user form, and the actions on one user.

use hyper::StatusCode;
use serde_json::{Value, json};

use super::{Ctx, group_names, not_found};
use crate::admin::{Command, NewUser};
use crate::http::response::{self, Resp};

pub(super) fn users(c: &Ctx<'_>) -> Resp {
    let q = c.req.query_params();
    let query = q.get_lenient("q").unwrap_or("").trim().to_lowercase();
    let mut all = match c.app.store.users() {
        Ok(u) => u,
        Err(e) => return c.app.fail_page(e.into()),
    };
    all.retain(|u| {
        query.is_empty()
            || u.username.to_lowercase().contains(&query)
            || u.email.to_lowercase().contains(&query)
            || u.display_name().to_lowercase().contains(&query)
    });
    all.sort_by(|a, b| a.username.cmp(&b.username));
    let rows: Vec<Value> = all
        .iter()
        .take(500)
        .map(|u| {
            json!({"id": u.id, "username": u.username, "name": u.display_name(), "email": u.email,
                   "groups": u.groups.join(", "), "disabled": u.disabled, "two_factor": u.mfa.enrolled(),
                   "directory": u.source.is_some()})
        })
        .collect();
    let notice = match q.get_lenient("synced") {
        Some("ok") => Some("The directory was synced."),
        _ => None,
    };
    c.page(
        "users",
        "admin_users.html",
        json!({"title": "Users", "users": rows, "q": q.get_lenient("q").unwrap_or(""),
               "directory": directory_view(c), "notice": notice}),
        StatusCode::OK,
    )
}

/// The directory's state for the users pages: reachable, and the last sync (`None`
/// without `[ldap]`).
pub(super) fn directory_view(c: &Ctx<'_>) -> Option<Value> {
    c.app.directory.as_ref()?;
    let last = crate::ldap::sync::last(c.app.store.as_ref());
    let when = |t: i64| crate::http::account::when(t);
    Some(json!({
        "reachable": c.app.directory_health.up(),
        "last_sync": last.as_ref().map(|r| when(r.at)),
        "last_ok": last.as_ref().and_then(|r| r.last_ok_at).map(when),
        "error": last.as_ref().and_then(|r| r.error.clone()),
        "people": last.as_ref().map(|r| r.people),
        "problems": last.map(|r| r.problems).unwrap_or_default(),
    }))
}

/// `POST /admin/users/sync`: a directory sync now; its failure is shown on the page.
pub(super) async fn sync_now(c: &Ctx<'_>) -> Resp {
    let store = c.app.store.clone();
    match crate::admin::sync_directory(store, &c.app.config, false, c.now).await {
        Ok(_) => {
            c.app.directory_health.saw(true);
            c.app.audit(
                "admin.ldap.sync",
                Some(&c.s.user.username),
                None,
                Some(c.req.peer),
                "",
                c.now,
            );
            response::redirect("/admin/users?synced=ok")
        }
        Err(e) if e.exit_code == 1 => {
            c.app.directory_health.saw(false);
            c.app.error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The directory could not be synced",
                &e.message,
            )
        }
        Err(e) => c.fail(e),
    }
}

/// The user form's view of a stored user.
pub(super) fn user_view(u: &crate::model::User) -> Value {
    json!({
        "id": u.id, "username": u.username, "email": u.email, "given_name": u.given_name,
        "family_name": u.family_name, "phone": u.phone, "groups": u.groups,
        "disabled": u.disabled, "two_factor": u.mfa.enrolled(),
        "must_change_password": u.must_change_password,
        "passkeys_only": u.passkeys_only,
        "email_verified": u.email_verified,
        "attributes": attributes_text(&u.attributes),
        "invited_until": u.invitation.as_ref().map(|(_, until, _)| crate::http::account::when(*until)),
        "recovery_left": u.mfa.recovery_hashes.len(),
        "passkeys": crate::http::passkeys::listed(u),
        "directory": u.source.is_some(),
        "directory_disabled": u.directory_disabled,
    })
}

/// The user form: a new user when `id` is `None`.
pub(super) fn user_form(
    c: &Ctx<'_>,
    id: Option<&str>,
    view: Value,
    error: Option<&str>,
    status: StatusCode,
) -> Resp {
    let (title, action) = match id {
        Some(id) => (
            view["username"].as_str().unwrap_or_default().to_string(),
            format!("/admin/users/{id}"),
        ),
        None => ("Add user".to_string(), "/admin/users/new".to_string()),
    };
    // Fixed notices after an invitation (`?mail=`), never text from the request.
    let notice = match c.req.query_params().get_lenient("mail") {
        Some("sent") => Some("The invitation was mailed."),
        Some("failed") => Some(
            "The invitation could not be mailed yet. It waits under Mail, with the reason, and is retried.",
        ),
        _ => None,
    };
    c.page(
        "users",
        "admin_user.html",
        json!({"title": title, "action": action, "new": id.is_none(), "u": view,
               "groups": group_names(c), "error": error, "notice": notice,
               "mail": c.app.mailer.is_some(), "directory": directory_view(c)}),
        status,
    )
}

/// Attributes as the forms show them: a JSON object, empty for none.
pub(super) fn attributes_text(a: &crate::model::Attributes) -> String {
    if a.is_empty() {
        return String::new();
    }
    serde_json::to_string_pretty(a).unwrap_or_default()
}

/// The attributes typed into a form (a JSON object; empty: none).
pub(super) fn attributes_of(text: &str) -> Result<crate::model::Attributes, String> {
    if text.trim().is_empty() {
        return Ok(Default::default());
    }
    serde_json::from_str(text).map_err(|e| format!("attributes: not a JSON object ({e})"))
}

/// The submitted user form as a profile.
fn new_user(c: &Ctx<'_>) -> NewUser {
    let mut groups = c.all("group");
    if let Some(g) = c.field("new_group").map(|g| g.trim().to_string())
        && !g.is_empty()
    {
        groups.push(g);
    }
    NewUser {
        username: c.field("username").unwrap_or_default(),
        email: c.field("email").unwrap_or_default(),
        given_name: c.field("given_name"),
        family_name: c.field("family_name"),
        phone: c.field("phone"),
        groups,
        email_verified: c.checked("email_verified"),
        attributes: None,
        ..NewUser::default()
    }
}

/// Where the browser goes after a command that mailed: the user's page, saying whether
/// the mail left.
fn after_mail(v: &serde_json::Value) -> Resp {
    let state = if v.get("mail_error").is_some() {
        "failed"
    } else {
        "sent"
    };
    response::redirect(&format!(
        "/admin/users/{}?mail={state}",
        v["id"].as_str().unwrap_or_default()
    ))
}

pub(super) async fn user_save(c: &Ctx<'_>, id: Option<&str>) -> Resp {
    let mut new = new_user(c);
    match attributes_of(&c.field("attributes").unwrap_or_default()) {
        Ok(a) => new.attributes = Some(a),
        Err(e) => {
            let view = json!({"username": new.username, "email": new.email, "groups": new.groups});
            return user_form(c, id, view, Some(&e), StatusCode::BAD_REQUEST);
        }
    }
    let existing = match id.map(|i| c.app.store.user(i)).transpose() {
        Ok(x) => x.flatten(),
        Err(e) => return c.app.fail_page(e.into()),
    };
    if id.is_some() && existing.is_none() {
        return not_found(c);
    }
    // A directory account's profile and groups are the directory's (shown read-only):
    // only `admin`, the address's verification and the attributes are decided here.
    if let Some(u) = existing.as_ref().filter(|u| u.source.is_some()) {
        let admin = new.groups.iter().any(|g| g == crate::admin::ADMIN_GROUP);
        new.username = u.username.clone();
        new.email = u.email.clone();
        new.given_name = u.given_name.clone();
        new.family_name = u.family_name.clone();
        new.phone = u.phone.clone();
        new.groups = u
            .groups
            .iter()
            .filter(|g| *g != crate::admin::ADMIN_GROUP)
            .cloned()
            .collect();
        if admin {
            new.groups.push(crate::admin::ADMIN_GROUP.to_string());
        }
    }
    // Giving or taking administrator rights is sensitive.
    let admin = |groups: &[String]| groups.iter().any(|g| g == crate::admin::ADMIN_GROUP);
    let was_admin = existing.as_ref().is_some_and(|u| admin(&u.groups));
    if admin(&new.groups) != was_admin && !c.fresh() {
        return c.reauth_page(
            &id.map_or_else(
                || "/admin/users/new".into(),
                |i| format!("/admin/users/{i}"),
            ),
            None,
            StatusCode::OK,
        );
    }
    let invite = existing.is_none() && c.checked("invite");
    let cmd = match &existing {
        None if invite => Command::UserInvite { user: new.clone() },
        None => Command::UserAdd {
            user: new.clone(),
            password: c.field("password").unwrap_or_default(),
            admin: false,
            temporary: c.checked("temporary"),
        },
        Some(u) => Command::UserUpdate {
            username: u.username.clone(),
            user: new.clone(),
        },
    };
    let result = c.run(cmd).await;
    match result {
        Ok(v) if invite => after_mail(&v),
        Ok(v) => response::redirect(&format!(
            "/admin/users/{}",
            v["id"].as_str().unwrap_or_default()
        )),
        Err(e) if e.exit_code == 2 => {
            // Shown again with what was typed, and the reason.
            let mut view = existing.as_ref().map_or_else(|| json!({}), user_view);
            for (k, v) in [
                ("username", json!(new.username)),
                ("email", json!(new.email)),
                ("given_name", json!(new.given_name)),
                ("family_name", json!(new.family_name)),
                ("phone", json!(new.phone)),
                ("groups", json!(new.groups)),
            ] {
                view[k] = v;
            }
            user_form(c, id, view, Some(&e.message), StatusCode::BAD_REQUEST)
        }
        Err(e) => c.fail(e),
    }
}

/// Disable, enable, temporary password, reset link, second-factor reset, passkey
/// removal, invitation resent or withdrawn, delete.
pub(super) async fn user_action(c: &Ctx<'_>, id: &str, action: &str) -> Resp {
    let user = match c.app.store.user(id) {
        Ok(Some(u)) => u,
        Ok(None) => return not_found(c),
        Err(e) => return c.app.fail_page(e.into()),
    };
    let username = user.username.clone();
    let back = format!("/admin/users/{id}");
    let cmd = match action {
        "disable" => Command::UserDisable { username },
        "enable" => Command::UserEnable { username },
        "reset-2fa" => Command::UserResetMfa { username },
        "remove-passkey" => Command::UserRemovePasskeys {
            username,
            id: Some(c.form.get_lenient("id").unwrap_or("").to_string()),
        },
        "remove-passkeys" => Command::UserRemovePasskeys { username, id: None },
        "require-passkeys" => Command::UserPasskeysOnly { username, on: true },
        "allow-password" => Command::UserPasskeysOnly {
            username,
            on: false,
        },
        "reset-link" => Command::UserResetLink { username },
        "invite-resend" => Command::UserInviteResend { username },
        "invite-revoke" => Command::UserInviteRevoke { username },
        "delete" => Command::UserDelete { username },
        "temporary-password" => Command::UserPasswd {
            username,
            password: temporary_password(),
            temporary: true,
        },
        _ => return not_found(c),
    };
    let password = match &cmd {
        Command::UserPasswd { password, .. } => Some(password.clone()),
        _ => None,
    };
    match c.run(cmd).await {
        Ok(v) => match action {
            "delete" => response::redirect("/admin/users"),
            "invite-resend" => after_mail(&v),
            "reset-link" => c.page(
                "users",
                "once.html",
                json!({
                    "title": "Password reset link",
                    "lead": format!("Give this link to {} in person or by a channel you trust. It works once, for 24 hours.", user.username),
                    "items": [{"label": "Link", "value": v["reset_url"]}],
                    "next": back, "next_text": "Done",
                }),
                StatusCode::OK,
            ),
            "temporary-password" => c.page(
                "users",
                "once.html",
                json!({
                    "title": "Temporary password",
                    "lead": format!("{} signs in with this password once and must then choose their own. Their sessions and tokens have ended.", user.username),
                    "items": [{"label": "Temporary password", "value": password}],
                    "next": back, "next_text": "Done",
                }),
                StatusCode::OK,
            ),
            _ => response::redirect(&back),
        },
        Err(e) => c.fail(e),
    }
}

/// Four groups of five letters and digits (about 100 bits): readable aloud, and long
/// enough for the password policy.
pub(super) fn temporary_password() -> String {
    crate::clock::random_readable(4)
}
