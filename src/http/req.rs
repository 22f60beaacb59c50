//! [`Req`]: a request with its body read, as the handlers see it.

use std::net::IpAddr;

use bytes::Bytes;
use hyper::Method;
use hyper::header::{self, HeaderMap};

use crate::oidc::params::Params;

/// A request with its body read, as the handlers see it.
pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub peer: IpAddr,
    /// The clock, read once when the request arrived (milliseconds since the Unix epoch):
    /// every rule the request meets sees this one time. In-process tests set it freely.
    pub now_ms: i64,
}

impl Req {
    pub fn header(&self, name: impl header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn query_params(&self) -> Params {
        Params::parse(self.query.as_bytes())
    }

    /// Whether the body is `application/x-www-form-urlencoded` (parameters allowed).
    pub fn is_form(&self) -> bool {
        self.header(header::CONTENT_TYPE).is_some_and(|ct| {
            ct.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        })
    }

    pub fn form(&self) -> Params {
        Params::parse(&self.body)
    }

    /// The value of a cookie sent by the browser.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}
