//! HTML pages rendered from the templates in `assets/templates/`, embedded in the binary.
//! minijinja escapes every value in `.html` templates. No protocol decisions here.

use minijinja::Environment;
use serde::Serialize;

const TEMPLATES: &[(&str, &str)] = &[
    (
        "base.html",
        include_str!("../../assets/templates/base.html"),
    ),
    (
        "login.html",
        include_str!("../../assets/templates/login.html"),
    ),
    (
        "consent.html",
        include_str!("../../assets/templates/consent.html"),
    ),
    (
        "error.html",
        include_str!("../../assets/templates/error.html"),
    ),
    (
        "message.html",
        include_str!("../../assets/templates/message.html"),
    ),
    (
        "form_post.html",
        include_str!("../../assets/templates/form_post.html"),
    ),
    (
        "setup.html",
        include_str!("../../assets/templates/setup.html"),
    ),
    (
        "logout.html",
        include_str!("../../assets/templates/logout.html"),
    ),
    (
        "device.html",
        include_str!("../../assets/templates/device.html"),
    ),
    (
        "logged_out.html",
        include_str!("../../assets/templates/logged_out.html"),
    ),
];

/// Static files under `/assets/`.
pub const STYLE_CSS: &[u8] = include_bytes!("../../assets/style.css");
pub const FORM_POST_JS: &[u8] = include_bytes!("../../assets/form_post.js");

pub struct Pages {
    env: Environment<'static>,
    instance: String,
}

#[derive(Serialize)]
struct WithInstance<'a, T: Serialize> {
    instance: &'a str,
    #[serde(flatten)]
    inner: &'a T,
}

impl Pages {
    pub fn new(instance_name: &str) -> Result<Pages, String> {
        let mut env = Environment::new();
        for (name, src) in TEMPLATES {
            env.add_template(name, src)
                .map_err(|e| format!("template {name}: {e}"))?;
        }
        Ok(Pages {
            env,
            instance: instance_name.to_string(),
        })
    }

    /// Renders a template with `ctx` (plus `instance`). A rendering failure is a bug in a
    /// template; it is logged and a minimal page is returned instead of a stack trace.
    pub fn render<T: Serialize>(&self, name: &str, ctx: &T) -> String {
        let full = WithInstance {
            instance: &self.instance,
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

    pub fn error(&self, title: &str, message: &str) -> String {
        self.render(
            "error.html",
            &serde_json::json!({"title": title, "message": message}),
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
        let p = Pages::new("Acme <Office>").unwrap();
        let evil = "<script>alert(1)</script>\"'";
        let ctx = serde_json::json!({
            "title": evil, "message": evil, "client_name": evil, "username": evil, "error": evil,
            "csrf": "c", "interaction": evil, "scopes": [evil], "action": "https://rp/cb",
                        "fields": [["state", evil]], "token": evil, "email": evil, "link": "/x", "link_text": evil,
            "frames": [evil], "next": evil,
        });
        for (name, _) in TEMPLATES {
            let html = p.render(name, &ctx);
            assert!(!html.contains("<script>alert"), "{name} leaks markup");
            assert!(
                html.contains("Acme &lt;Office&gt;"),
                "{name} misses the instance name"
            );
            assert!(!html.contains("style="), "{name} has an inline style");
        }
        assert!(p.render("login.html", &ctx).contains("name=\"csrf\""));
    }
}
