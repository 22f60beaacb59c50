//! HTTP/1.1 message rules that hyper leaves to the server (SPEC §8, RFC 9110, RFC 9112),
//! checked on the request head before any body is read. Pure: a version, headers and the
//! request-target's length in, the refusal out. (Content-Length with Transfer-Encoding,
//! which hyper hides from the head, is caught on the wire in `framing`.)

use hyper::header::{self, HeaderMap};
use hyper::{StatusCode, Version};

/// Longest single header field line (name, value and separator) accepted.
pub const MAX_FIELD: usize = 8 * 1024;
/// Longest header section accepted (all field lines).
pub const MAX_HEADERS: usize = 16 * 1024;
/// Longest request-target accepted (RFC 9112 §3: servers should handle 8000 octets).
pub const MAX_TARGET: usize = 8 * 1024;

/// Why a request head is refused: its status and a short reason for the plain-text body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: &'static str,
}

fn refuse(status: StatusCode, reason: &'static str) -> Result<(), Refusal> {
    Err(Refusal { status, reason })
}

/// Checks a request head; `max_body` is the largest body the server reads.
pub fn check(
    version: Version,
    headers: &HeaderMap,
    target_len: usize,
    max_body: usize,
) -> Result<(), Refusal> {
    if target_len > MAX_TARGET {
        return refuse(StatusCode::URI_TOO_LONG, "request target too long");
    }
    // RFC 9110 §5.4: 431 when the header section, or one field line, is too large.
    let mut total = 0usize;
    for (name, value) in headers {
        let line = name.as_str().len() + value.len() + 4;
        if line > MAX_FIELD {
            return refuse(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "header field too large",
            );
        }
        total += line;
    }
    if total > MAX_HEADERS {
        return refuse(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "header section too large",
        );
    }
    // RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, and for any request with
    // more than one Host or an invalid one.
    let mut hosts = headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if version == Version::HTTP_11 => {
            return refuse(StatusCode::BAD_REQUEST, "missing Host header");
        }
        (Some(_), Some(_)) => return refuse(StatusCode::BAD_REQUEST, "more than one Host header"),
        (Some(h), None) if !valid_host(h.as_bytes()) => {
            return refuse(StatusCode::BAD_REQUEST, "invalid Host header");
        }
        _ => {}
    }
    // RFC 9112 §6.1: chunked is the one transfer coding understood here; anything else
    // is 501, and chunked applied twice is malformed.
    let codings: Vec<String> = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    if !codings.is_empty() {
        if codings.iter().any(|c| c != "chunked") {
            return refuse(StatusCode::NOT_IMPLEMENTED, "unsupported transfer coding");
        }
        if codings.len() > 1 {
            return refuse(StatusCode::BAD_REQUEST, "chunked applied more than once");
        }
    }
    if headers.get_all(header::AUTHORIZATION).iter().count() > 1 {
        return refuse(
            StatusCode::BAD_REQUEST,
            "more than one Authorization header",
        );
    }
    // RFC 9110 §15.5.14: a declared body over the limit is refused at once, not awaited.
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    if let Some(v) = lengths.next() {
        let n = v
            .to_str()
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok());
        match n {
            None => return refuse(StatusCode::BAD_REQUEST, "invalid Content-Length"),
            Some(n) if n > max_body as u64 => {
                return refuse(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
            }
            Some(_) => {}
        }
        if lengths.next().is_some() {
            return refuse(StatusCode::BAD_REQUEST, "more than one Content-Length");
        }
    }
    Ok(())
}

/// RFC 9110 §7.2: `Host = uri-host [ ":" port ]`, uri-host an IP-literal in brackets or a
/// reg-name (unreserved, percent-encoded, sub-delims). Empty is refused: every Latchkey
/// URL has an authority.
fn valid_host(h: &[u8]) -> bool {
    let (host, port) = if h.first() == Some(&b'[') {
        let Some(end) = h.iter().position(|&b| b == b']') else {
            return false;
        };
        let Ok(inner) = std::str::from_utf8(&h[1..end]) else {
            return false;
        };
        if !valid_ip_literal(inner) {
            return false;
        }
        (&h[..=end], &h[end + 1..])
    } else {
        match h.iter().position(|&b| b == b':') {
            Some(i) => (&h[..i], &h[i..]),
            None => (h, &h[h.len()..]),
        }
    };
    let reg_name_ok = host.first() == Some(&b'[')
        || (!host.is_empty()
            && host.iter().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'-' | b'.'
                            | b'_'
                            | b'~'
                            | b'%'
                            | b'!'
                            | b'$'
                            | b'&'
                            | b'\''
                            | b'('
                            | b')'
                            | b'*'
                            | b'+'
                            | b','
                            | b';'
                            | b'='
                    )
            }));
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => {
            digits.iter().all(u8::is_ascii_digit)
                && std::str::from_utf8(digits)
                    .ok()
                    .is_none_or(|d| d.is_empty() || d.parse::<u16>().is_ok())
        }
        Some(_) => false,
    };
    reg_name_ok && port_ok
}

/// RFC 3986 §3.2.2 `IP-literal` without its brackets: an IPv6 address, optionally with
/// an RFC 6874 zone id (`%25eth0`), or an IPvFuture (`v1.x`).
fn valid_ip_literal(inner: &str) -> bool {
    if let Some(future) = inner.strip_prefix(['v', 'V']) {
        let Some((version, rest)) = future.split_once('.') else {
            return false;
        };
        return !version.is_empty()
            && version.bytes().all(|b| b.is_ascii_hexdigit())
            && !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:".contains(&b));
    }
    let (address, zone) = match inner.split_once("%25") {
        Some((a, z)) => (a, Some(z)),
        None => (inner, None),
    };
    address.parse::<std::net::Ipv6Addr>().is_ok()
        && zone.is_none_or(|z| {
            !z.is_empty()
                && z.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                header::HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn status(v: Version, pairs: &[(&str, &str)]) -> Option<u16> {
        check(v, &head(pairs), 10, 32 * 1024)
            .err()
            .map(|r| r.status.as_u16())
    }

    const H11: Version = Version::HTTP_11;

    #[test]
    fn host_must_be_there_once_and_valid() {
        assert_eq!(status(H11, &[("host", "id.example:8443")]), None);
        assert_eq!(status(H11, &[("host", "[::1]:8443")]), None);
        assert_eq!(status(H11, &[("host", "[fe80::1%25eth0]:8443")]), None);
        assert_eq!(status(H11, &[("host", "ID.Example.LAN.")]), None);
        assert_eq!(status(H11, &[("host", "127.0.0.1")]), None);
        assert_eq!(status(H11, &[]), Some(400));
        assert_eq!(
            status(Version::HTTP_10, &[]),
            None,
            "HTTP/1.0 may omit Host"
        );
        assert_eq!(status(H11, &[("host", "a"), ("host", "a")]), Some(400));
        for bad in [
            "evil\"><img src=x>",
            "",
            "a b",
            "host:port",
            "host:123456",
            "host:99999",
            "[::1",
            "[a b]",
            "[::1]x",
            "[zz]",
            "[1.2.3.4]",
            "[:]",
            "[::1%eth0]",
            "a/b",
            "a@b",
        ] {
            assert_eq!(status(H11, &[("host", bad)]), Some(400), "{bad:?}");
        }
    }

    #[test]
    fn oversized_heads_are_431_and_targets_414() {
        let big = "x".repeat(MAX_FIELD);
        assert_eq!(
            status(H11, &[("host", "a"), ("cookie", big.as_str())]),
            Some(431)
        );
        let mid = "y".repeat(MAX_FIELD - 100);
        assert_eq!(
            status(
                H11,
                &[("host", "a"), ("x-a", &mid), ("x-b", &mid), ("x-c", &mid)]
            ),
            Some(431)
        );
        assert_eq!(
            check(H11, &head(&[("host", "a")]), MAX_TARGET + 1, 1)
                .unwrap_err()
                .status,
            StatusCode::URI_TOO_LONG
        );
    }

    #[test]
    fn framing_conflicts_and_declared_sizes() {
        let h = ("host", "a");
        assert_eq!(
            status(H11, &[h, ("content-length", "10000000000")]),
            Some(413)
        );
        assert_eq!(status(H11, &[h, ("content-length", "32768")]), None);
        assert_eq!(status(H11, &[h, ("transfer-encoding", "chunked")]), None);
        assert_eq!(status(H11, &[h, ("transfer-encoding", "Chunked")]), None);
        assert_eq!(
            status(H11, &[h, ("transfer-encoding", "gzip, chunked")]),
            Some(501)
        );
        assert_eq!(
            status(H11, &[h, ("transfer-encoding", "chunked, chunked")]),
            Some(400)
        );
        assert_eq!(
            status(
                H11,
                &[
                    h,
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked")
                ]
            ),
            Some(400)
        );
        assert_eq!(status(H11, &[h, ("content-length", "+5")]), Some(400));
        assert_eq!(
            status(
                H11,
                &[
                    h,
                    ("authorization", "Bearer a"),
                    ("authorization", "Bearer b")
                ]
            ),
            Some(400)
        );
        assert_eq!(status(H11, &[h, ("authorization", "Bearer a")]), None);
    }
}
