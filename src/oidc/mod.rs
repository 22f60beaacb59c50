//! The protocol core: OAuth 2.0 / OpenID Connect rules as synchronous, deterministic
//! functions. Nothing here performs I/O, reads the clock or touches storage: callers pass
//! `now`, the client, the session and the stored records, and get back a decision.

pub mod authorize;
pub mod claims;
pub mod client_auth;
pub mod device;
pub mod discovery;
pub mod error;
pub mod grant;
pub mod logout;
pub mod params;
pub mod pkce;
pub mod registration;
pub mod scope;

pub use error::{ErrorCode, OidcError};
