//! HTML pages rendered from the templates in `assets/templates/`, embedded in the binary.
//! minijinja escapes every value in `.html` templates. No protocol decisions here.

pub mod i18n;
pub mod qr;

tokio::task_local! {
    /// The language of the request being answered (see [`i18n::choose`]).
    pub static LANG: &'static str;
}

/// The language pages are rendered in now: the request's, else English.
pub fn current_lang() -> &'static str {
    LANG.try_with(|l| *l).unwrap_or("en")
}

use minijinja::Environment;
use serde::Serialize;

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../assets/templates/", $name)))),*]
    };
}

const TEMPLATES: &[(&str, &str)] = templates![
    "base.html",
    "login.html",
    "consent.html",
    "error.html",
    "message.html",
    "form_post.html",
    "setup.html",
    "logout.html",
    "device.html",
    "logged_out.html",
    "second_factor.html",
    "new_password.html",
    "reauth.html",
    "account.html",
    "account_2fa.html",
    "_passkey_add.html",
    "passkey_offer.html",
    "reset_request.html",
    "verify.html",
    "once.html",
    "confirm.html",
    "admin_clients.html",
    "admin_client.html",
    "admin_users.html",
    "admin_user.html",
    "admin_groups.html",
    "admin_sessions.html",
    "admin_audit.html",
    "admin_keys.html",
    "admin_mail.html",
];

/// Static files under `/assets/`.
pub const STYLE_CSS: &[u8] = include_bytes!("../../assets/style.css");
pub const FORM_POST_JS: &[u8] = include_bytes!("../../assets/form_post.js");
/// Copy buttons and row lists: the only script of the account and admin pages.
pub const APP_JS: &[u8] = include_bytes!("../../assets/app.js");

pub struct Pages {
    env: Environment<'static>,
    instance: String,
    logo: bool,
    catalogue: std::sync::Arc<i18n::Catalogue>,
}

/// Texts the code hands to every page under these names (titles, errors, notices,
/// leads, messages, link texts): translated before rendering, so no call site needs to.
const TRANSLATED: &[&str] = &[
    "title",
    "error",
    "notice",
    "lead",
    "message",
    "link_text",
    "next_text",
    "button",
    "continue_label",
];

#[derive(Serialize)]
struct WithInstance<'a, T: Serialize> {
    instance: &'a str,
    logo: bool,
    lang: &'static str,
    languages: Vec<serde_json::Value>,
    #[serde(flatten)]
    inner: &'a T,
}

impl Pages {
    pub fn new(instance_name: &str, logo: bool) -> Result<Pages, String> {
        let mut env = Environment::new();
        let catalogue = i18n::catalogue();
        i18n::install(&mut env, catalogue.clone());
        for (name, src) in TEMPLATES {
            env.add_template(name, src)
                .map_err(|e| format!("template {name}: {e}"))?;
        }
        Ok(Pages {
            env,
            instance: instance_name.to_string(),
            logo,
            catalogue,
        })
    }

    /// Renders a template with `ctx` (plus `instance`). A rendering failure is a bug in a
    /// template; it is logged and a minimal page is returned instead of a stack trace.
    pub fn render<T: Serialize>(&self, name: &str, ctx: &T) -> String {
        let lang = current_lang();
        let mut ctx = serde_json::to_value(ctx).unwrap_or(serde_json::Value::Null);
        if lang != "en"
            && let serde_json::Value::Object(o) = &mut ctx
        {
            let t = |s: &mut String| *s = self.catalogue.text(lang, s).to_string();
            for key in TRANSLATED {
                if let Some(serde_json::Value::String(s)) = o.get_mut(*key) {
                    t(s);
                }
            }
            // The labels of values shown once (client ID, secret, link).
            if let Some(serde_json::Value::Array(items)) = o.get_mut("items") {
                for item in items {
                    if let Some(serde_json::Value::String(s)) = item.get_mut("label") {
                        t(s);
                    }
                }
            }
        }
        let ctx = &ctx;
        let full = WithInstance {
            instance: &self.instance,
            logo: self.logo,
            lang: current_lang(),
            languages: i18n::LANGUAGES
                .iter()
                .map(|(code, name)| serde_json::json!({"code": code, "name": name}))
                .collect(),
            inner: ctx,
        };
        match self.env.get_template(name).and_then(|t| t.render(&full)) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(template = name, error = %e, "template rendering failed");
                "<!doctype html><title>Error</title><p>Something went wrong.</p>".to_string()
            }
        }
    }

    /// An error page; it names the request id (the one logged and sent as
    /// `x-request-id`) so that an operator can find the request in the log.
    pub fn error(&self, title: &str, message: &str, request_id: Option<&str>) -> String {
        self.render(
            "error.html",
            &serde_json::json!({
                "title": title,
                "message": message,
                "request_id": request_id,
            }),
        )
    }

    pub fn message(&self, title: &str, message: &str, link: Option<(&str, &str)>) -> String {
        self.render(
            "message.html",
            &serde_json::json!({"title": title, "message": message, "link": link.map(|l| l.0), "link_text": link.map(|l| l.1)}),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_renders_and_values_are_escaped() {
        let p = Pages::new("Acme <Office>", false).unwrap();
        let evil = "<script>alert(1)</script>\"'";
        let row = serde_json::json!({
            "id": evil, "name": evil, "label": evil, "value": evil, "client_id": evil,
            "username": evil, "email": evil, "groups": [evil], "scopes": evil, "since": evil,
            "ip": evil, "sid": evil, "user": evil, "kind": evil, "detail": evil, "client": evil,
            "time": evil, "kid": evil, "alg": evil, "state": evil, "created": evil,
            "retired": evil, "expires": evil, "description": evil, "members": 1, "factors": evil,
            "given_name": evil, "family_name": evil, "phone": evil,
            "redirect_uris": [evil], "post_logout_redirect_uris": [evil], "grant_types": [evil],
            "allowed_groups": [evil], "street_address": evil, "locality": evil,
        });
        let mut ctx = serde_json::json!({
            "title": evil, "message": evil, "client_name": evil, "username": evil, "error": evil,
            "csrf": "c", "interaction": evil, "scopes": [evil], "action": "https://rp/cb",
            "fields": [["state", evil]], "token": evil, "email": evil, "link": "/x", "link_text": evil,
            "frames": [evil], "next": evil, "lead": evil, "notice": evil, "back": evil,
            "button": evil, "secret": evil, "qr": "<svg></svg>", "q": evil, "trust_days": 30,
        });
        for key in ["user", "address", "u", "c", "f"] {
            ctx[key] = row.clone();
        }
        for key in [
            "items",
            "devices",
            "apps",
            "sessions",
            "clients",
            "users",
            "events",
            "keys",
            "all_grants",
        ] {
            ctx[key] = serde_json::json!([row]);
        }
        for key in ["codes", "groups", "all_scopes", "kinds"] {
            ctx[key] = serde_json::json!([evil]);
        }
        ctx["client_id"] = serde_json::json!(evil);
        ctx["enrolled"] = serde_json::json!(true);
        ctx["recovery_left"] = serde_json::json!(3);
        let check = |ctx: &serde_json::Value, instance_shown: bool| {
            for (name, _) in TEMPLATES {
                let html = p.render(name, ctx);
                assert!(
                    !html.contains("Something went wrong"),
                    "{name} failed to render"
                );
                assert!(!html.contains("<script>alert"), "{name} leaks markup");
                // Partials (`_name.html`) are parts of pages, without the frame.
                let partial = name.starts_with('_');
                assert!(
                    !instance_shown || partial || html.contains("Acme &lt;Office&gt;"),
                    "{name} misses the instance name"
                );
                assert!(!html.contains("style="), "{name} has an inline style");
                assert!(!html.contains("<script>"), "{name} has an inline script");
            }
        };
        check(&ctx, true);
        // The signed-in layout: navigation with the sign-out form.
        ctx["nav"] =
            serde_json::json!({"user": evil, "admin": true, "section": "admin", "tab": "users"});
        check(&ctx, true);
        // Groups of the admin user page are plain names; of the groups page, records.
        ctx["groups"] = serde_json::json!([row]);
        check(&ctx, true);
        assert!(p.render("login.html", &ctx).contains("name=\"csrf\""));
    }
}
