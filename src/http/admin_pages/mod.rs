//! `/admin/...`: the administrators' pages (members of the `admin` group). Changes go
//! through the same executor as the CLI (`admin::execute`), so the pages, the CLI and the
//! admin socket validate and audit alike. Actions that change other people's access
//! (deleting, disabling, resets, secret and key rotation) need the password confirmed
//! within the last ten minutes.

mod audit;
mod clients;
mod groups;
mod keys;
mod mail;
mod sessions;
mod users;

use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::account::{checked_form, render, require_session};
use super::response::{self, Fail, Resp};
use super::signin::safe_next;
use super::{App, Req, SignedIn, check_password};
use crate::admin::{AdminError, Command};
use crate::keys::Secret;
use crate::oidc::params::Params;
use audit::audit;
use clients::{client_form, client_save, clients};
use groups::groups;
use keys::keys;
use sessions::{end_session, sessions};
use users::{user_action, user_form, user_save, user_view, users};

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
        // A command that mails waits for the mail server (up to a minute): on a blocking
        // thread of its own, never on the password-hashing pool that sign-ins need.
        let mails = matches!(
            cmd,
            Command::UserInvite { .. } | Command::UserInviteResend { .. }
        );
        let work = move || {
            crate::admin::execute_from(app.store.as_ref(), &app.config, cmd, &actor, Some(ip), now)
        };
        let busy = || {
            Err(AdminError {
                message: "The server is busy. Try again in a moment.".into(),
                exit_code: 1,
            })
        };
        if mails {
            return tokio::task::spawn_blocking(work)
                .await
                .unwrap_or_else(|_| busy());
        }
        self.app.pool.run(work).await.unwrap_or_else(|_| busy())
    }

    /// Whether the password was confirmed recently enough for a sensitive action.
    fn fresh(&self) -> bool {
        self.s.fresh(self.app.config.reauth_window, self.now)
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
            // Logged under the request's own id, which the page shows.
            let id = crate::http::request_id().unwrap_or_default();
            tracing::error!(request_id = %id, error = %e.message, "admin page: command failed");
            self.app.error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Something went wrong",
                "The change was not made. Try again in a moment.",
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
        return super::signin::step_up(app, &s, back, "Administration", false, now);
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
        ["users", "sync"] if post => users::sync_now(&c).await,
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
        ["groups", name, "attributes"] if post => {
            let attributes = match users::attributes_of(&c.field("attributes").unwrap_or_default())
            {
                Ok(a) => a,
                Err(e) => return groups(&c, Some(&e), StatusCode::BAD_REQUEST),
            };
            let cmd = Command::GroupSetAttributes {
                name: name.to_string(),
                attributes,
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
        ["mail"] if get => mail::mail(&c),
        ["mail", action] if post => mail::mail_action(&c, action).await,
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
    if let Err(refused) = c.app.throttle.check(who, c.req.now_ms) {
        c.app
            .audit_refused("login.throttled", Some(&user.username), c.req, refused);
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
            c.app.throttle.failure(who, c.req.now_ms);
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
            "snippet": v.get("snippet"),
            "next": next,
            "next_text": "Done",
        }),
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

#[cfg(test)]
mod tests {
    use super::audit::day_start;
    use super::users::temporary_password;

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
