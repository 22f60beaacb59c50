//! End-to-end tests: the real `latchkey` binary on 127.0.0.1 with a temporary data
//! directory, driven through whole flows by a real HTTP client.

#![allow(unreachable_pub)] // a test binary exports nothing
#![allow(clippy::unwrap_used)] // test helpers fail loudly

mod support;

mod apps;
mod backup;
mod browser;
mod cli;
mod client_auth;
mod clocked;
mod cluster;
mod crash;
mod directory;
mod errors;
mod exhaustion;
mod flows;
mod grants;
mod hardening;
mod hostile;
mod implicit;
mod inprocess;
mod keys;
mod languages;
mod lifecycle;
mod logout;
mod mail;
mod network;
mod ops;
mod pages;
mod passkeys;
mod people;
mod service;
mod standing;
mod storage;
