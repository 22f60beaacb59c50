//! Mail (SPEC §12): the `[mail]` settings, the SMTP client ([`smtp`]), the messages
//! ([`compose`]) and the outbox that queues, sends and retries them ([`outbox`]).
//!
//! A queued mail holds no secret. The link it carries (password reset, invitation,
//! address check) is made when the mail is sent: the token's SHA-256 then goes on the
//! user and the token itself only into the message. A retry makes a new link, so an
//! earlier one that may have got through stops working; the store never holds a usable
//! link.

pub mod compose;
pub mod outbox;
pub mod smtp;

pub use crate::config::mail::{MailSettings, Security};
pub use smtp::{MailError, Mailer};
