//! The mail page (SPEC §12): what waits in the outbox or was given up on, with its last
//! error; retry now or drop.

use hyper::StatusCode;
use serde_json::{Value, json};

use super::Ctx;
use crate::admin::Command;
use crate::http::account::when;
use crate::http::response::{self, Resp};

pub(super) fn mail(c: &Ctx<'_>) -> Resp {
    let all = match c.app.store.outbox() {
        Ok(m) => m,
        Err(e) => return c.app.fail_page(e.into()),
    };
    let rows: Vec<Value> = all
        .iter()
        .map(|m| {
            json!({
                "key": m.key(), "kind": m.kind.as_str(), "to": m.to,
                "user": c.app.username(&m.user_id), "queued": when(m.created_at),
                "attempts": m.attempts, "failed": m.gave_up,
                "next": (!m.gave_up).then(|| when(m.next_attempt)),
                "error": m.last_error,
            })
        })
        .collect();
    c.page(
        "mail",
        "admin_mail.html",
        json!({"title": "Mail", "mails": rows, "configured": c.app.mailer.is_some()}),
        StatusCode::OK,
    )
}

/// `POST /admin/mail/retry` (everything) and `/admin/mail/drop` (field `key`).
pub(super) async fn mail_action(c: &Ctx<'_>, action: &str) -> Resp {
    let cmd = match action {
        "retry" => Command::MailRetry,
        "drop" => Command::MailDrop {
            key: c.field("key").unwrap_or_default(),
        },
        _ => return super::not_found(c),
    };
    match c.run(cmd).await {
        Ok(_) => {
            c.app.mail_wake.wake();
            response::redirect("/admin/mail")
        }
        Err(e) => c.fail(e),
    }
}
