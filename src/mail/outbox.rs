//! The outbox: mail is queued in the store, sent by a worker thread, and retried with a
//! doubling wait for a day, across restarts. Each attempt's outcome reaches the audit log
//! and the metrics; a mail that failed for good stays listed on the admin pages until an
//! administrator drops or retries it. [`next_step`] is the pure retry rule.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::compose::{Letter, compose};
use super::{MailError, Mailer};
use crate::model::{AuditEvent, MailKind, OutboxMail, User};
use crate::store::{Store, StoreError};

/// A mail that cannot be sent within a day is given up.
pub const GIVE_UP_AFTER: i64 = 24 * 3600;
/// The longest wait between two attempts.
pub const MAX_WAIT: i64 = 3600;
/// How long each link works.
pub const RESET_TTL: i64 = 3600;
pub const INVITATION_TTL: i64 = 7 * 24 * 3600;
pub const VERIFICATION_TTL: i64 = 24 * 3600;

/// After a failed attempt: when to try again, or `None` to give up. `attempts` counts
/// the failed ones so far (at least 1), `base` is `[mail] retry_secs`.
pub fn next_step(attempts: u32, created_at: i64, now: i64, base: i64) -> Option<i64> {
    if now - created_at >= GIVE_UP_AFTER {
        return None;
    }
    let doubled = base.saturating_mul(1i64 << attempts.saturating_sub(1).min(20));
    Some(now + doubled.min(MAX_WAIT))
}

/// A new mail for `user`, due at once, in the language of the request that asks for it.
pub fn new_mail(kind: MailKind, user: &User, now: i64) -> OutboxMail {
    OutboxMail {
        lang: crate::pages::current_lang().to_string(),
        id: crate::clock::random_id(),
        kind,
        user_id: user.id.clone(),
        to: user.email.clone(),
        created_at: now,
        attempts: 0,
        next_attempt: now,
        last_error: String::new(),
        gave_up: false,
    }
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The server's answer.
    Sent(String),
    /// Not needed any more (the user or their address is gone, the invitation was
    /// accepted or revoked, the address is verified already).
    Dropped(&'static str),
    Failed(MailError),
}

/// Whether `m` still has a purpose for `user` as it is now.
fn still_wanted(m: &OutboxMail, user: Option<&User>, now: i64) -> Result<(), &'static str> {
    let u = user.ok_or("the account no longer exists")?;
    if u.email != m.to || u.email.is_empty() {
        return Err("the address changed");
    }
    match m.kind {
        MailKind::Reset if u.disabled => Err("the account is disabled"),
        // An invited account has no password to reset (its invitation is the way in), and
        // a passkeys-only account's way back is its administrator.
        MailKind::Reset if u.password_hash.is_empty() => Err("the account has no password yet"),
        MailKind::Reset if u.passkeys_only => Err("the account signs in with passkeys only"),
        MailKind::Invitation => match &u.invitation {
            Some((_, until, _)) if *until > now => Ok(()),
            _ => Err("the invitation was accepted, revoked or has expired"),
        },
        MailKind::Verification if u.email_verified => Err("the address is verified already"),
        _ => Ok(()),
    }
}

/// The page a link opens.
fn link_path(kind: MailKind) -> &'static str {
    match kind {
        MailKind::Reset => "/reset",
        MailKind::Invitation => "/invite",
        MailKind::Verification => "/verify",
    }
}

/// Makes the mail's link (its token's hash saved on the user first, so the link works
/// when it arrives) and sends it. Blocks.
pub fn deliver(
    store: &dyn Store,
    issuer: &str,
    instance: &str,
    mailer: &Mailer,
    m: &OutboxMail,
    now: i64,
) -> Outcome {
    let user = match store.user(&m.user_id) {
        Ok(u) => u,
        Err(e) => return Outcome::Failed(MailError::new("storage", e.to_string())),
    };
    if let Err(why) = still_wanted(m, user.as_ref(), now) {
        return Outcome::Dropped(why);
    }
    let secret = crate::clock::random_token();
    let hash = crate::keys::token_hash(&secret);
    let saved = modify_user(store, &m.user_id, |u| {
        if still_wanted(m, Some(u), now).is_err() {
            return false;
        }
        match m.kind {
            MailKind::Reset => {
                u.reset_link = Some((hash.clone(), now + RESET_TTL));
                u.reset_mailed = true;
            }
            MailKind::Invitation => {
                if let Some(inv) = &mut u.invitation {
                    inv.0 = hash.clone();
                    inv.2 = u.email.clone();
                }
            }
            MailKind::Verification => {
                u.email_check = Some((hash.clone(), now + VERIFICATION_TTL, u.email.clone()))
            }
        }
        true
    });
    let user = match saved {
        Ok(Some(u)) => u,
        Ok(None) => return Outcome::Dropped("the account changed meanwhile"),
        Err(e) => return Outcome::Failed(MailError::new("storage", e.to_string())),
    };
    let link = format!("{issuer}{}?token={}.{secret}", link_path(m.kind), user.id);
    let message = compose(
        Letter::Kind(m.kind),
        &m.lang,
        instance,
        &user.username,
        &link,
    );
    match mailer.send(&m.to, &message) {
        Ok(answer) => Outcome::Sent(answer),
        Err(e) => Outcome::Failed(e),
    }
}

/// Read-modify-write of a user that keeps concurrent changes; `None` when `edit` gave up
/// or the user is gone.
fn modify_user(
    store: &dyn Store,
    id: &str,
    edit: impl Fn(&mut User) -> bool,
) -> Result<Option<User>, StoreError> {
    for _ in 0..16 {
        let Some(old) = store.user(id)? else {
            return Ok(None);
        };
        let mut new = old.clone();
        if !edit(&mut new) {
            return Ok(None);
        }
        if store.update_user_if(&old, &new)? {
            return Ok(Some(new));
        }
    }
    Err(StoreError::Unavailable("the user keeps changing".into()))
}

/// Saves an attempt's outcome in the outbox and returns the audit event that tells it.
/// `who` names the user in the event.
pub fn record(
    store: &dyn Store,
    m: &OutboxMail,
    who: &str,
    outcome: &Outcome,
    retry_secs: i64,
    now: i64,
) -> Result<AuditEvent, StoreError> {
    let event = |kind: &str, detail: String| AuditEvent {
        time: now,
        kind: kind.to_string(),
        user: Some(who.to_string()),
        client: None,
        ip: None,
        detail,
    };
    let what = format!("{} to {}", m.kind.as_str(), m.to);
    Ok(match outcome {
        Outcome::Sent(answer) => {
            store.delete_mail(&m.key(), Some(&m.id))?;
            event("mail.sent", format!("{what}: {answer}"))
        }
        Outcome::Dropped(why) => {
            store.delete_mail(&m.key(), Some(&m.id))?;
            event("mail.dropped", format!("{what}: {why}"))
        }
        Outcome::Failed(e) => {
            let mut next = m.clone();
            next.attempts += 1;
            next.last_error = e.to_string();
            match next_step(next.attempts, m.created_at, now, retry_secs) {
                Some(at) => next.next_attempt = at,
                None => next.gave_up = true,
            }
            store.update_mail(&next)?;
            let kind = if next.gave_up {
                "mail.given_up"
            } else {
                "mail.failed"
            };
            event(kind, format!("{what}: {e}"))
        }
    })
}

/// Wakes the worker when a mail is queued (instead of at its next poll).
#[derive(Default)]
pub struct Wake {
    due: Mutex<bool>,
    cv: Condvar,
}

impl Wake {
    pub fn wake(&self) {
        let mut due = self.due.lock().unwrap_or_else(|p| p.into_inner());
        *due = true;
        self.cv.notify_all();
    }

    /// Waits for a wake-up or `timeout`, whichever comes first.
    pub fn wait(&self, timeout: Duration) {
        let due = self.due.lock().unwrap_or_else(|p| p.into_inner());
        let (mut due, _) = self
            .cv
            .wait_timeout_while(due, timeout, |d| !*d)
            .unwrap_or_else(|p| p.into_inner());
        *due = false;
    }
}

/// The mails due at `now`, oldest first, and when the next one after them is due.
pub fn due(all: &[OutboxMail], now: i64) -> (Vec<OutboxMail>, Option<i64>) {
    let waiting = all.iter().filter(|m| !m.gave_up);
    let (now_due, later): (Vec<&OutboxMail>, Vec<&OutboxMail>) =
        waiting.partition(|m| m.next_attempt <= now);
    (
        now_due.into_iter().cloned().collect(),
        later.iter().map(|m| m.next_attempt).min(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    #[test]
    fn retries_double_up_to_an_hour_and_stop_after_a_day() {
        let waits: Vec<i64> = (1..=9)
            .map(|n| next_step(n, NOW, NOW, 30).unwrap() - NOW)
            .collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(next_step(40, NOW, NOW, 30), Some(NOW + 3600), "no overflow");
        assert!(next_step(3, NOW, NOW + GIVE_UP_AFTER - 1, 30).is_some());
        assert_eq!(next_step(3, NOW, NOW + GIVE_UP_AFTER, 30), None);
    }

    fn user() -> User {
        User {
            id: "u1".into(),
            username: "alice".into(),
            email: "alice@example.com".into(),
            password_hash: "$argon2id$…".into(),
            ..User::default()
        }
    }

    #[test]
    fn a_mail_is_dropped_when_it_has_no_purpose_left() {
        let u = user();
        let reset = new_mail(MailKind::Reset, &u, NOW);
        assert_eq!(still_wanted(&reset, Some(&u), NOW), Ok(()));
        let invited = User {
            password_hash: String::new(),
            ..user()
        };
        assert!(
            still_wanted(&reset, Some(&invited), NOW).is_err(),
            "no password yet"
        );
        let keyed = User {
            passkeys_only: true,
            ..user()
        };
        assert!(
            still_wanted(&reset, Some(&keyed), NOW).is_err(),
            "passkeys only"
        );
        assert!(still_wanted(&reset, None, NOW).is_err());
        let moved = User {
            email: "new@example.com".into(),
            ..user()
        };
        assert!(still_wanted(&reset, Some(&moved), NOW).is_err());
        let invite = new_mail(MailKind::Invitation, &u, NOW);
        assert!(
            still_wanted(&invite, Some(&u), NOW).is_err(),
            "no invitation"
        );
        let invited = User {
            invitation: Some((String::new(), NOW + 10, String::new())),
            ..user()
        };
        assert_eq!(still_wanted(&invite, Some(&invited), NOW), Ok(()));
        assert!(still_wanted(&invite, Some(&invited), NOW + 10).is_err());
        let check = new_mail(MailKind::Verification, &u, NOW);
        let verified = User {
            email_verified: true,
            ..user()
        };
        assert!(still_wanted(&check, Some(&verified), NOW).is_err());
    }

    #[test]
    fn due_mail_and_the_next_wake_up() {
        let u = user();
        let mut a = new_mail(MailKind::Reset, &u, NOW);
        a.next_attempt = NOW - 1;
        let mut b = new_mail(MailKind::Verification, &u, NOW);
        b.next_attempt = NOW + 50;
        let mut c = new_mail(MailKind::Invitation, &u, NOW);
        c.gave_up = true;
        c.next_attempt = NOW - 100;
        let (now_due, next) = due(&[a.clone(), b, c], NOW);
        assert_eq!(now_due, vec![a]);
        assert_eq!(next, Some(NOW + 50));
    }
}
