//! HTTP: the [`App`] service that turns a request into a response, the router, bounded
//! parsing of queries, forms and cookies, and one file per endpoint. With `server.rs`, the
//! only code that names hyper. Tests call [`App::respond`] directly, without a socket.

pub mod access_log;
mod account;
mod admin_pages;
mod app;
mod authorize;
mod browser;
mod device;
mod directory;
mod errors;
pub mod framing;
mod grace;
pub mod head;
pub mod interaction;
mod introspection;
mod issue;
pub mod known;
mod login;
mod logout;
mod mail;
pub mod metrics;
mod par;
mod passkeys;
pub mod pool;
mod req;
pub mod response;
mod router;
pub mod routes;
mod serve;
pub mod signin;
pub mod tally;
mod token;
mod userinfo;
mod well_known;

use std::time::Duration;

pub use app::{App, Macs, check_password};
pub use browser::SignedIn;
pub use req::Req;
pub use serve::{client_ip, serve_hyper};

tokio::task_local! {
    /// The id of the request being answered (one per request, made when it arrives).
    static REQUEST_ID: String;
}

/// The id of the request this task is answering: logged with it, sent as
/// `x-request-id`, and named on error pages. `None` outside a request.
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Largest request body accepted (security baseline §4.7: forms ≤ 16 KiB; a little more
/// for long request URIs posted to the authorization endpoint).
pub const MAX_BODY: usize = 32 * 1024;
/// Time a client gets to send its body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(15);
