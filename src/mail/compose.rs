//! The messages, from the templates in `assets/mail/` (a plain-text part and a simple
//! HTML part, escaped by the template engine). Pure: the caller supplies the link.

use minijinja::Environment;
use serde_json::json;

use crate::model::MailKind;

/// A message ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Composed {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// What a message says; `Test` is `latchkey mail test`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Letter {
    Kind(MailKind),
    Test,
}

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../assets/mail/base.html")),
    ("reset.txt", include_str!("../../assets/mail/reset.txt")),
    ("reset.html", include_str!("../../assets/mail/reset.html")),
    (
        "invitation.txt",
        include_str!("../../assets/mail/invitation.txt"),
    ),
    (
        "invitation.html",
        include_str!("../../assets/mail/invitation.html"),
    ),
    (
        "verification.txt",
        include_str!("../../assets/mail/verification.txt"),
    ),
    (
        "verification.html",
        include_str!("../../assets/mail/verification.html"),
    ),
    ("test.txt", include_str!("../../assets/mail/test.txt")),
    ("test.html", include_str!("../../assets/mail/test.html")),
];

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    crate::pages::i18n::install(&mut env, crate::pages::i18n::catalogue());
    for (name, source) in TEMPLATES {
        // The templates are part of the binary and tested below; a broken one is a bug
        // that the test suite catches, so this cannot fail at run time.
        if let Err(e) = env.add_template(name, source) {
            tracing::error!(template = name, error = %e, "mail template does not parse");
        }
    }
    env
}

/// The message `letter` in `lang` for `username` at the instance `instance`, with `link`
/// (empty for the test mail).
pub fn compose(letter: Letter, lang: &str, instance: &str, username: &str, link: &str) -> Composed {
    let (name, subject) = match letter {
        Letter::Kind(MailKind::Reset) => ("reset", "Reset your {instance} password"),
        Letter::Kind(MailKind::Invitation) => ("invitation", "You are invited to {instance}"),
        Letter::Kind(MailKind::Verification) => {
            ("verification", "Confirm your email address for {instance}")
        }
        Letter::Test => ("test", "Test mail from {instance}"),
    };
    let cat = crate::pages::i18n::catalogue();
    let subject = crate::pages::i18n::fill(
        cat.text(lang, subject),
        &[("instance", instance.to_string())],
    );
    let ctx = json!({
        "instance": instance,
        "username": username,
        "link": link,
        "subject": subject,
        "lang": lang,
    });
    let env = environment();
    let render = |file: String| {
        env.get_template(&file)
            .and_then(|t| t.render(&ctx))
            .unwrap_or_else(|e| {
                tracing::error!(template = %file, error = %e, "mail template failed");
                String::new()
            })
    };
    Composed {
        text: render(format!("{name}.txt")),
        html: render(format!("{name}.html")),
        subject,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_has_both_parts_with_the_link_and_escapes_html() {
        let evil = "<b>Acme</b> & Co";
        let link = "https://id.example.com/reset?token=u.abc";
        for letter in [
            Letter::Kind(MailKind::Reset),
            Letter::Kind(MailKind::Invitation),
            Letter::Kind(MailKind::Verification),
        ] {
            let m = compose(letter, "en", evil, "alice", link);
            assert!(
                m.subject.contains(evil),
                "{letter:?}: subject is plain text"
            );
            assert!(m.text.contains(link), "{letter:?}: {}", m.text);
            assert!(m.text.contains("alice"), "{letter:?}");
            // minijinja escapes `/` too (`&#x2f;`), which HTML reads back as `/`.
            let html = m.html.replace("&#x2f;", "/");
            assert!(
                html.contains(&format!("href=\"{link}\"")),
                "{letter:?}: {html}"
            );
            assert!(
                html.contains("&lt;b&gt;Acme&lt;/b&gt; &amp; Co"),
                "{letter:?}"
            );
            assert!(!m.html.contains("<b>Acme"), "{letter:?}");
            // Short lines: no part needs quoted-printable soft breaks in the middle of
            // the link (the link is on a line of its own).
            assert!(m.text.lines().any(|l| l.trim() == link), "{letter:?}");
        }
        let t = compose(Letter::Test, "en", "Latchkey", "", "");
        assert!(t.text.contains("Latchkey") && !t.html.is_empty());
        // In German, subject and body.
        let de = compose(Letter::Kind(MailKind::Reset), "de", "Acme", "alice", link);
        assert!(de.subject.contains("Passwort"), "{}", de.subject);
        assert!(de.text.contains("Hallo alice"), "{}", de.text);
        assert!(de.html.contains("lang=\"de\""));
    }
}
