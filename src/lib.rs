//! Latchkey: a single-binary OpenID Connect Provider. The binary (`main.rs`) is a thin
//! shell over this library, which the integration tests and benchmarks use as well.
//!
//! Direction of use: `server → http → {oidc, store, keys, pages} → model`. `oidc` is the
//! pure protocol core; `store` the only place that names redb; `keys` the only place that
//! names a crypto crate; `http` and `server` the only places that name hyper.

pub mod admin;
pub mod cli;
pub mod clock;
pub mod config;
pub mod http;
pub mod keys;
pub mod model;
pub mod notify;
pub mod oidc;
pub mod outbound;
pub mod output;
pub mod pages;
pub mod panic;
pub mod server;
pub mod store;
#[cfg(test)]
mod testutil;
pub mod tls;
