//! Mail sent by management commands (invitations): at once, so the command's answer says
//! what happened (a CLI exit code, an admin page notice); a mail that fails stays in the
//! outbox and the server retries it.

use serde_json::{Value, json};

use super::AdminError;
use crate::config::Config;
use crate::mail::Mailer;
use crate::mail::outbox::{self, Outcome};
use crate::model::{MailKind, User};
use crate::store::Store;

pub(super) fn not_configured() -> AdminError {
    AdminError::input("mail: not configured (add a [mail] section to the configuration)")
}

/// The issuer's host, which names this server to the SMTP server.
fn issuer_host(config: &Config) -> String {
    url::Url::parse(&config.issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "localhost".to_string())
}

/// A client for `[mail]`.
pub fn mailer(config: &Config) -> Option<Result<Mailer, String>> {
    let settings = config.mail.as_ref()?;
    Some(Mailer::new(settings, &issuer_host(config)))
}

/// Queues `kind` for `user` and sends it now; `out` (the command's answer) gains `mail`
/// (the server's answer) or `mail_error` (why it failed: it stays queued and is retried).
pub(super) fn send_now(
    store: &dyn Store,
    config: &Config,
    kind: MailKind,
    user: &User,
    mut out: Value,
    now: i64,
) -> Value {
    let mut m = outbox::new_mail(kind, user, now);
    // The server's worker leaves it alone while this attempt runs.
    m.next_attempt = now + 60;
    let outcome = match store.queue_mail(&m) {
        Err(e) => Outcome::Failed(crate::mail::MailError::new("storage", e.to_string())),
        Ok(()) => match mailer(config) {
            None => Outcome::Failed(crate::mail::MailError::new("set-up", "[mail] is missing")),
            Some(Err(e)) => Outcome::Failed(crate::mail::MailError::new("set-up", e)),
            Some(Ok(mailer)) => outbox::deliver(
                store,
                &config.issuer,
                &config.instance_name,
                &mailer,
                &m,
                now,
            ),
        },
    };
    match outbox::record(store, &m, &user.username, &outcome, retry_secs(config), now) {
        Ok(event) => {
            if let Err(e) = store.append_audit(&event) {
                tracing::warn!(error = %e, "could not record audit event");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not record the mail's outcome"),
    }
    if let Value::Object(o) = &mut out {
        match outcome {
            Outcome::Sent(answer) => {
                o.insert(
                    "mail".into(),
                    json!(format!("sent to {}: {answer}", user.email)),
                );
            }
            Outcome::Dropped(why) => {
                o.insert("mail_error".into(), json!(format!("not sent: {why}")));
            }
            Outcome::Failed(e) => {
                o.insert(
                    "mail_error".into(),
                    json!(format!(
                        "not sent to {} ({e}); it stays queued and is retried",
                        user.email
                    )),
                );
            }
        }
    }
    out
}

fn retry_secs(config: &Config) -> i64 {
    config.mail.as_ref().map_or(30, |m| m.retry_secs)
}

/// `latchkey mail queue`: what waits or failed.
pub(super) fn queue_json(store: &dyn Store) -> Result<Value, AdminError> {
    let all = store.outbox()?;
    Ok(Value::Array(
        all.iter()
            .map(|m| {
                json!({
                    "key": m.key(), "kind": m.kind.as_str(), "to": m.to,
                    "queued_at": m.created_at, "attempts": m.attempts,
                    "next_attempt": (!m.gave_up).then_some(m.next_attempt),
                    "failed": m.gave_up, "last_error": m.last_error,
                })
            })
            .collect(),
    ))
}

/// `latchkey mail retry`: every mail is due now (failed ones get another day).
pub(super) fn retry_all(store: &dyn Store, now: i64) -> Result<Value, AdminError> {
    let mut n = 0;
    for mut m in store.outbox()? {
        if m.gave_up {
            m.created_at = now;
        }
        m.gave_up = false;
        m.next_attempt = now;
        if store.update_mail(&m)? {
            n += 1;
        }
    }
    Ok(json!({ "due_now": n }))
}
