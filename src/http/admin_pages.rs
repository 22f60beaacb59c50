//! `/admin/...`: the administrators' pages (members of the `admin` group). Changes go
//! through the same executor as the CLI (`admin::execute`), so the pages, the CLI and the
//! admin socket validate and audit alike. Actions that change other people's access
//! (deleting, disabling, resets, secret and key rotation) need the password confirmed
//! within the last ten minutes.

use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::account::{checked_form, render, require_session, when};
use super::response::{self, Fail, Resp};
use super::signin::safe_next;
use super::{App, Req, SignedIn, check_password};
use crate::admin::{AdminError, Command, NewUser};
use crate::keys::Secret;
use crate::model::{Client, Policy};
use crate::oidc::params::Params;
use crate::oidc::registration::{ClientSpec, DEVICE_CODE};

/// Grant types offered on the application form, with their plain names.
const GRANTS: &[(&str, &str)] = &[
    (
        "authorization_code",
        "Authorization code (sign-in through the browser)",
    ),
    ("refresh_token", "Refresh tokens"),
    (
        "client_credentials",
        "Client credentials (the application itself)",
    ),
    (DEVICE_CODE, "Device code (TVs and command-line tools)"),
    ("implicit", "Implicit (legacy browser applications)"),
    ("password", "Password (legacy; one-factor users only)"),
];

/// Events offered in the audit filter.
const EVENT_KINDS: &[&str] = &[
    "login.success",
    "login.failure",
    "login.throttled",
    "mfa.success",
    "mfa.failure",
    "mfa.throttled",
    "client.throttled",
    "mfa.enrolled",
    "mfa.removed",
    "consent.given",
    "consent.denied",
    "consent.revoked",
    "token.issued",
    "token.revoked",
    "logout",
    "account.password_changed",
    "account.profile_changed",
];

struct Ctx<'a> {
    app: &'a Arc<App>,
    req: &'a Req,
    s: SignedIn,
    form: Params,
    now: i64,
}

impl Ctx<'_> {
    fn page(&self, tab: &str, template: &str, ctx: Value, status: StatusCode) -> Resp {
        render(
            self.app,
            self.req,
            &self.s,
            ("admin", tab),
            template,
            ctx,
            status,
        )
    }

    fn field(&self, name: &str) -> Option<String> {
        self.form.get_lenient(name).map(str::to_string)
    }

    fn checked(&self, name: &str) -> bool {
        self.form.get_lenient(name) == Some("yes")
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.form
            .all(name)
            .into_iter()
            .map(str::to_string)
            .collect()
    }

    /// Runs a management command as this administrator, off the async runtime (some
    /// hash passwords).
    async fn run(&self, cmd: Command) -> Result<Value, AdminError> {
        let app = self.app.clone();
        let actor = self.s.user.username.clone();
        let (ip, now) = (self.req.peer, self.now);
        self.app
            .pool
            .run(move || {
                crate::admin::execute_from(
                    app.store.as_ref(),
                    &app.config,
                    cmd,
                    &actor,
                    Some(ip),
                    now,
                )
            })
            .await
            .unwrap_or_else(|_| {
                Err(AdminError {
                    message: "The server is busy. Try again in a moment.".into(),
                    exit_code: 1,
                })
            })
    }

    /// Whether the password was confirmed recently enough for a sensitive action.
    fn fresh(&self) -> bool {
        self.s.session.auth_time.max(self.s.session.reauth_at)
            >= self.now - self.app.config.reauth_window
    }

    fn reauth_page(&self, back: &str, error: Option<&str>, status: StatusCode) -> Resp {
        self.page(
            "",
            "reauth.html",
            json!({"title": "Confirm it is you", "back": back, "error": error}),
            status,
        )
    }

    fn fail(&self, e: AdminError) -> Resp {
        if e.exit_code == 2 {
            self.app
                .error_page(StatusCode::BAD_REQUEST, "Not possible", &e.message)
        } else {
            let id = crate::clock::random_id();
            tracing::error!(request_id = %id, error = %e.message, "admin page: command failed");
            self.app.error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Something went wrong",
                &format!("The change was not made (request id {id}). Try again in a moment."),
            )
        }
    }
}

pub(super) async fn route(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    let s = match require_session(app, req, now) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !s.user.groups.iter().any(|g| g == crate::admin::ADMIN_GROUP) {
        return app.error_page(
            StatusCode::FORBIDDEN,
            "Administrators only",
            "Your account is not an administrator of this sign-in service.",
        );
    }
    // `[admin] require_second_factor`: a one-factor session steps up first (or, without a
    // second factor, is shown how to set one up), then comes back here.
    if app.config.admin_requires_second_factor
        && s.session.acr != crate::oidc::authorize::ACR_TWO_FACTOR
    {
        let back = super::signin::Target {
            interaction: None,
            next: Some(req.path.clone()).filter(|p| super::signin::safe_next(p)),
        };
        return super::signin::step_up(app, &s, back, "Administration");
    }
    let form = match checked_form(app, req) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let c = Ctx {
        app,
        req,
        s,
        form,
        now,
    };
    let parts: Vec<&str> = req
        .path
        .trim_start_matches("/admin")
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    let get = req.method == Method::GET;
    let post = req.method == Method::POST;
    // The page a sensitive action returns to after the password is confirmed.
    let sensitive_back = match parts.as_slice() {
        // Editing an application can weaken its sign-in policy or add a redirect URL.
        ["clients", id] if *id != "new" => Some(format!("/admin/clients/{id}")),
        ["clients", id, "rotate" | "delete"] => Some(format!("/admin/clients/{id}")),
        ["users", id, _] => Some(format!("/admin/users/{id}")),
        ["groups", _, "delete"] => Some("/admin/groups".to_string()),
        ["keys", "rotate"] => Some("/admin/keys".to_string()),
        // An application that skips consent receives people's data without asking them.
        ["clients", "new"] if c.checked("skip_consent") => Some("/admin/clients/new".to_string()),
        _ => None,
    };
    if post
        && let Some(back) = sensitive_back
        && !c.fresh()
    {
        return c.reauth_page(&back, None, StatusCode::OK);
    }
    match parts.as_slice() {
        [] if get => response::redirect("/admin/clients"),
        ["reauth"] if post => reauth(&c).await,
        ["clients"] if get => clients(&c),
        ["clients", "new"] if get => client_form(&c, None, None, StatusCode::OK),
        ["clients", "new"] if post => client_save(&c, None).await,
        ["clients", id] if get => match c.app.client(id) {
            Ok(Some(cl)) => client_form(&c, Some(&cl), None, StatusCode::OK),
            Ok(None) => not_found(&c),
            Err(e) => c.app.fail_page(e.into()),
        },
        ["clients", id] if post => client_save(&c, Some(id)).await,
        ["clients", id, "rotate"] if post => {
            match c
                .run(Command::ClientRotateSecret {
                    client_id: id.to_string(),
                })
                .await
            {
                Ok(v) => secret_page(&c, "New client secret", &v, &format!("/admin/clients/{id}")),
                Err(e) => c.fail(e),
            }
        }
        ["clients", id, "delete"] if get => confirm(
            &c,
            "Delete this application?",
            &format!(
                "Users will no longer be able to sign in to {} and every token it holds stops working.",
                c.app
                    .client(id)
                    .ok()
                    .flatten()
                    .map_or_else(|| id.to_string(), |x| x.name)
            ),
            &format!("/admin/clients/{id}/delete"),
            &format!("/admin/clients/{id}"),
        ),
        ["clients", id, "delete"] if post => {
            match c
                .run(Command::ClientDelete {
                    client_id: id.to_string(),
                })
                .await
            {
                Ok(_) => response::redirect("/admin/clients"),
                Err(e) => c.fail(e),
            }
        }
        ["users"] if get => users(&c),
        ["users", "new"] if get => user_form(
            &c,
            None,
            json!({"username": "", "email": "", "groups": []}),
            None,
            StatusCode::OK,
        ),
        ["users", "new"] if post => user_save(&c, None).await,
        ["users", id] if get => match c.app.store.user(id) {
            Ok(Some(u)) => user_form(&c, Some(id), user_view(&u), None, StatusCode::OK),
            Ok(None) => not_found(&c),
            Err(e) => c.app.fail_page(e.into()),
        },
        ["users", id] if post => user_save(&c, Some(id)).await,
        ["users", id, "delete"] if get => confirm(
            &c,
            "Delete this user?",
            "The account, its sessions and its consents are removed. This cannot be undone.",
            &format!("/admin/users/{id}/delete"),
            &format!("/admin/users/{id}"),
        ),
        ["users", id, action] if post => user_action(&c, id, action).await,
        ["groups"] if get => groups(&c, None, StatusCode::OK),
        ["groups"] if post => {
            let cmd = Command::GroupAdd {
                name: c.field("name").unwrap_or_default().trim().to_string(),
                description: c.field("description").unwrap_or_default(),
            };
            match c.run(cmd).await {
                Ok(_) => response::redirect("/admin/groups"),
                Err(e) if e.exit_code == 2 => groups(&c, Some(&e.message), StatusCode::BAD_REQUEST),
                Err(e) => c.fail(e),
            }
        }
        ["groups", name, "delete"] if get => confirm(
            &c,
            "Delete this group?",
            "Its members stay; they lose the group and any application that requires it.",
            &format!("/admin/groups/{name}/delete"),
            "/admin/groups",
        ),
        ["groups", name, "delete"] if post => {
            match c
                .run(Command::GroupDelete {
                    name: name.to_string(),
                })
                .await
            {
                Ok(_) => response::redirect("/admin/groups"),
                Err(e) => c.fail(e),
            }
        }
        ["sessions"] if get => sessions(&c),
        ["sessions", "end"] if post => end_session(&c),
        ["audit"] if get => audit(&c),
        ["keys"] if get => keys(&c),
        ["keys", "rotate"] if post => match c.run(Command::KeysRotate { alg: None }).await {
            Ok(_) => {
                if let Err(e) = c.app.reload_keys() {
                    tracing::error!(error = %e, "could not load the rotated keys");
                }
                response::redirect("/admin/keys")
            }
            Err(e) => c.fail(e),
        },
        _ => not_found(&c),
    }
}

fn not_found(c: &Ctx<'_>) -> Resp {
    c.app.error_page(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such page, or what it showed was deleted.",
    )
}

/// POST `/admin/reauth`: confirms the password and returns to the page of the action.
async fn reauth(c: &Ctx<'_>) -> Resp {
    let back = c
        .field("back")
        .filter(|b| safe_next(b) && b.starts_with("/admin"))
        .unwrap_or_else(|| "/admin".to_string());
    let user = &c.s.user;
    let known = crate::http::known::id_for(c.app, c.req, &user.id, c.now);
    let who = crate::http::known::who(known.as_deref(), &user.username, c.req.peer);
    if let Err(refused) = c.app.throttle.check(who, crate::clock::now_ms()) {
        c.app
            .audit_refused("login.throttled", Some(&user.username), c.req.peer, refused);
        let msg = refused.message();
        return c.reauth_page(&back, Some(&msg), StatusCode::TOO_MANY_REQUESTS);
    }
    let password = Secret::new(c.field("password").unwrap_or_default());
    match check_password(c.app, Some(user), password).await {
        Ok(true) => {
            let now = c.now;
            match c
                .app
                .store
                .update_session(&c.s.hash, &|s| s.reauth_at = now)
            {
                Ok(true) => response::redirect(&back),
                Ok(false) => response::redirect("/login"),
                Err(e) => c.app.fail_page(e.into()),
            }
        }
        Ok(false) => {
            c.app.throttle.failure(who, crate::clock::now_ms());
            c.app.audit(
                "admin.reauth_failed",
                Some(&user.username),
                None,
                Some(c.req.peer),
                "",
                c.now,
            );
            c.reauth_page(
                &back,
                Some("That password is not correct."),
                StatusCode::UNAUTHORIZED,
            )
        }
        Err(Fail::Busy) => c.reauth_page(
            &back,
            Some("The server is busy. Try again in a moment."),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        Err(f) => c.app.fail_page(f),
    }
}

fn confirm(c: &Ctx<'_>, title: &str, message: &str, action: &str, back: &str) -> Resp {
    c.page(
        "",
        "confirm.html",
        json!({"title": title, "message": message, "action": action, "back": back, "button": "Delete"}),
        StatusCode::OK,
    )
}

/// A secret shown once, with copy buttons.
fn secret_page(c: &Ctx<'_>, title: &str, v: &Value, next: &str) -> Resp {
    let mut items = vec![json!({"label": "Client ID", "value": v["client_id"]})];
    if let Some(secret) = v.get("client_secret").and_then(Value::as_str) {
        items.push(json!({"label": "Client secret", "value": secret}));
    }
    c.page(
        "clients",
        "once.html",
        json!({
            "title": title,
            "lead": "Copy these into the application's OpenID Connect settings now. The secret is stored only as a hash and cannot be shown again.",
            "items": items,
            "next": next,
            "next_text": "Done",
        }),
        StatusCode::OK,
    )
}

// ---- applications ----

fn clients(c: &Ctx<'_>) -> Resp {
    let mut all: Vec<Client> = c.app.config.declared_clients.values().cloned().collect();
    match c.app.store.clients() {
        Ok(stored) => all.extend(stored),
        Err(e) => return c.app.fail_page(e.into()),
    }
    all.sort_by_key(|c| c.name.to_lowercase());
    let rows: Vec<Value> = all
        .iter()
        .map(|cl| {
            json!({"client_id": cl.client_id, "name": cl.name, "public": cl.is_public(),
                   "declared": cl.declared, "two_factor": cl.policy == Policy::TwoFactor})
        })
        .collect();
    c.page(
        "clients",
        "admin_clients.html",
        json!({"title": "Applications", "clients": rows}),
        StatusCode::OK,
    )
}

fn group_names(c: &Ctx<'_>) -> Vec<String> {
    let mut names: Vec<String> = c
        .app
        .store
        .groups()
        .unwrap_or_default()
        .into_iter()
        .map(|g| g.name)
        .collect();
    names.sort();
    names
}

/// The application form's view of a client: what it has, or what was submitted.
fn client_view(spec: &ClientSpec) -> Value {
    // One empty row to type a further URL into, without JavaScript.
    let with_blank = |v: &Vec<String>| {
        let mut v = v.clone();
        v.push(String::new());
        v
    };
    json!({
        "name": spec.name,
        "redirect_uris": with_blank(&spec.redirect_uris),
        "post_logout_redirect_uris": with_blank(&spec.post_logout_redirect_uris),
        "scopes": spec.scopes,
        "grant_types": spec.grant_types,
        "public": spec.public,
        "two_factor": spec.policy.as_deref() == Some("two_factor"),
        "allowed_groups": spec.allowed_groups,
        "skip_consent": spec.skip_consent,
        "require_pkce": spec.require_pkce,
    })
}

fn client_form(c: &Ctx<'_>, cl: Option<&Client>, error: Option<&str>, status: StatusCode) -> Resp {
    let spec = match cl {
        Some(cl) => crate::admin::spec_of(cl),
        None => ClientSpec {
            scopes: vec!["openid".into(), "profile".into(), "email".into()],
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            redirect_uris: vec![String::new()],
            ..ClientSpec::default()
        },
    };
    client_page(c, cl, &spec, error, status)
}

/// The application form for a new client (`existing` is `None`) or a stored one.
fn client_page(
    c: &Ctx<'_>,
    existing: Option<&Client>,
    spec: &ClientSpec,
    error: Option<&str>,
    status: StatusCode,
) -> Resp {
    let grants: Vec<Value> = GRANTS
        .iter()
        .map(|(v, l)| json!({"value": v, "label": l}))
        .collect();
    let (title, action) = match existing {
        Some(x) => (x.name.clone(), format!("/admin/clients/{}", x.client_id)),
        None => (
            "Add new application".to_string(),
            "/admin/clients/new".to_string(),
        ),
    };
    let mut view = client_view(spec);
    if let Some(x) = existing {
        view["public"] = json!(x.is_public());
    }
    c.page(
        "clients",
        "admin_client.html",
        json!({
            "title": title,
            "action": action,
            "new": existing.is_none(),
            "client_id": existing.map(|x| x.client_id.clone()),
            "readonly": existing.is_some_and(|x| x.declared),
            "c": view,
            "all_scopes": crate::oidc::scope::SUPPORTED,
            "all_grants": grants,
            "groups": group_names(c),
            "error": error,
        }),
        status,
    )
}

/// The submitted application form as a registration.
fn client_spec(c: &Ctx<'_>) -> ClientSpec {
    ClientSpec {
        name: c.field("name").unwrap_or_default().trim().to_string(),
        redirect_uris: c.all("redirect_uri"),
        post_logout_redirect_uris: c.all("post_logout_redirect_uri"),
        scopes: c.all("scope"),
        grant_types: c.all("grant_type"),
        public: c.field("type").as_deref() == Some("public"),
        policy: c.field("policy"),
        skip_consent: c.checked("skip_consent"),
        require_pkce: c.checked("require_pkce"),
        allowed_groups: c.all("allowed_group"),
        ..ClientSpec::default()
    }
}

async fn client_save(c: &Ctx<'_>, id: Option<&str>) -> Resp {
    let spec = client_spec(c);
    let existing = match id.map(|i| c.app.client(i)).transpose() {
        Ok(x) => x.flatten(),
        Err(e) => return c.app.fail_page(e.into()),
    };
    let cmd = match id {
        None => Command::ClientAdd { spec: spec.clone() },
        Some(id) => Command::ClientReplace {
            client_id: id.to_string(),
            spec: spec.clone(),
        },
    };
    match c.run(cmd).await {
        Ok(v) => match id {
            None => {
                let new_id = v["client_id"].as_str().unwrap_or_default().to_string();
                secret_page(
                    c,
                    "Application created",
                    &v,
                    &format!("/admin/clients/{new_id}"),
                )
            }
            Some(id) => response::redirect(&format!("/admin/clients/{id}")),
        },
        // Shown again with what was typed, and the reason.
        Err(e) if e.exit_code == 2 => client_page(
            c,
            existing.as_ref(),
            &spec,
            Some(&e.message),
            StatusCode::BAD_REQUEST,
        ),
        Err(e) => c.fail(e),
    }
}

// ---- users ----

fn users(c: &Ctx<'_>) -> Resp {
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
                   "groups": u.groups.join(", "), "disabled": u.disabled, "two_factor": u.mfa.enrolled()})
        })
        .collect();
    c.page(
        "users",
        "admin_users.html",
        json!({"title": "Users", "users": rows, "q": q.get_lenient("q").unwrap_or("")}),
        StatusCode::OK,
    )
}

/// The user form's view of a stored user.
fn user_view(u: &crate::model::User) -> Value {
    json!({
        "id": u.id, "username": u.username, "email": u.email, "given_name": u.given_name,
        "family_name": u.family_name, "phone": u.phone, "groups": u.groups,
        "disabled": u.disabled, "two_factor": u.mfa.enrolled(),
        "must_change_password": u.must_change_password,
    })
}

/// The user form: a new user when `id` is `None`.
fn user_form(
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
    c.page(
        "users",
        "admin_user.html",
        json!({"title": title, "action": action, "new": id.is_none(), "u": view,
               "groups": group_names(c), "error": error}),
        status,
    )
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
        ..NewUser::default()
    }
}

async fn user_save(c: &Ctx<'_>, id: Option<&str>) -> Resp {
    let new = new_user(c);
    let existing = match id.map(|i| c.app.store.user(i)).transpose() {
        Ok(x) => x.flatten(),
        Err(e) => return c.app.fail_page(e.into()),
    };
    if id.is_some() && existing.is_none() {
        return not_found(c);
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
    let cmd = match &existing {
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

/// Disable, enable, temporary password, reset link, second-factor reset, delete.
async fn user_action(c: &Ctx<'_>, id: &str, action: &str) -> Resp {
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
        "reset-link" => Command::UserResetLink { username },
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
fn temporary_password() -> String {
    crate::clock::random_readable(4)
}

// ---- groups, sessions, audit, keys ----

fn groups(c: &Ctx<'_>, error: Option<&str>, status: StatusCode) -> Resp {
    let (groups, users) = match (c.app.store.groups(), c.app.store.users()) {
        (Ok(g), Ok(u)) => (g, u),
        (Err(e), _) | (_, Err(e)) => return c.app.fail_page(e.into()),
    };
    let rows: Vec<Value> = groups
        .iter()
        .map(|g| {
            let members = users.iter().filter(|u| u.groups.contains(&g.name)).count();
            json!({"name": g.name, "description": g.description, "members": members})
        })
        .collect();
    c.page(
        "groups",
        "admin_groups.html",
        json!({"title": "Groups", "groups": rows, "error": error}),
        status,
    )
}

fn sessions(c: &Ctx<'_>) -> Resp {
    let all = match c.app.store.sessions() {
        Ok(s) => s,
        Err(e) => return c.app.fail_page(e.into()),
    };
    let mut live: Vec<_> = all
        .into_iter()
        .filter(|(_, s)| s.expires_at > c.now)
        .collect();
    live.sort_by_key(|(_, s)| std::cmp::Reverse(s.auth_time));
    let rows: Vec<Value> = live
        .iter()
        .take(1000)
        .map(|(_, s)| {
            json!({"sid": s.sid, "user": c.app.username(&s.user_id), "label": s.label, "ip": s.ip,
                   "since": when(s.auth_time), "factors": if s.acr == "2" { "two" } else { "one" }})
        })
        .collect();
    c.page(
        "sessions",
        "admin_sessions.html",
        json!({"title": "Sessions", "sessions": rows}),
        StatusCode::OK,
    )
}

fn end_session(c: &Ctx<'_>) -> Resp {
    let sid = c.field("sid").unwrap_or_default();
    let found = match c.app.store.sessions() {
        Ok(all) => all.into_iter().find(|(_, s)| s.sid == sid),
        Err(e) => return c.app.fail_page(e.into()),
    };
    if let Some((hash, session)) = found {
        if let Err(f) = super::logout::end_stored_session(c.app, &hash, &session, c.now) {
            return c.app.fail_page(f);
        }
        c.app.audit(
            "admin.session_end",
            Some(&c.s.user.username),
            None,
            Some(c.req.peer),
            &c.app.username(&session.user_id),
            c.now,
        );
    }
    response::redirect("/admin/sessions")
}

/// Unix time of a `YYYY-MM-DD` date at 00:00 UTC.
fn day_start(date: &str) -> Option<i64> {
    let mut parts = date.splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    let month = time::Month::try_from(month).ok()?;
    let d = time::Date::from_calendar_date(year, month, day).ok()?;
    Some(d.midnight().assume_utc().unix_timestamp())
}

const AUDIT_PAGE: usize = 500;

fn audit(c: &Ctx<'_>) -> Resp {
    let q = c.req.query_params();
    let get = |k: &str| q.get_lenient(k).unwrap_or("").trim().to_string();
    let (user, client, kind, from, to) = (
        get("user"),
        get("client"),
        get("kind"),
        get("from"),
        get("to"),
    );
    let since = day_start(&from).unwrap_or(0);
    let until = day_start(&to).map_or(i64::MAX, |t| t + 86_400);
    // Read newest first; the other filters apply to what was read.
    let events = match c
        .app
        .store
        .audit(since, 50_000, (!user.is_empty()).then_some(user.as_str()))
    {
        Ok(e) => e,
        Err(e) => return c.app.fail_page(e.into()),
    };
    let matching: Vec<_> = events
        .into_iter()
        .filter(|e| e.time < until)
        .filter(|e| client.is_empty() || e.client.as_deref() == Some(client.as_str()))
        .filter(|e| kind.is_empty() || e.kind == kind)
        .collect();
    let more = matching.len() > AUDIT_PAGE;
    let rows: Vec<Value> = matching
        .iter()
        .take(AUDIT_PAGE)
        .map(|e| {
            json!({"time": when(e.time), "kind": e.kind, "user": e.user, "client": e.client,
                   "ip": e.ip, "detail": e.detail})
        })
        .collect();
    c.page(
        "audit",
        "admin_audit.html",
        json!({"title": "Audit log", "events": rows, "more": more, "kinds": EVENT_KINDS,
               "f": {"user": user, "client": client, "kind": kind, "from": from, "to": to}}),
        StatusCode::OK,
    )
}

fn keys(c: &Ctx<'_>) -> Resp {
    let mut keys = match c.app.store.keys() {
        Ok(k) => k,
        Err(e) => return c.app.fail_page(e.into()),
    };
    keys.sort_by_key(|k| std::cmp::Reverse(k.created_at));
    let rows: Vec<Value> = keys
        .iter()
        .map(|k| {
            json!({"kid": k.kid, "alg": k.alg.as_str(),
                   "state": if k.state == crate::model::KeyState::Active { "active" } else { "retired" },
                   "created": when(k.created_at), "retired": k.retired_at.map(when).unwrap_or_default()})
        })
        .collect();
    c.page(
        "keys",
        "admin_keys.html",
        json!({"title": "Signing keys", "keys": rows}),
        StatusCode::OK,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_passwords_meet_the_policy() {
        let p = temporary_password();
        assert_eq!(p.len(), 23);
        assert!(crate::keys::password::check_policy(&p, "bob").is_ok());
        assert_ne!(p, temporary_password());
    }

    #[test]
    fn audit_dates_are_utc_days() {
        assert_eq!(day_start("2023-11-14"), Some(1_699_920_000));
        assert_eq!(day_start("14/11/2023"), None);
    }
}
