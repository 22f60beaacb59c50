//! The hyper entry point: [`serve_hyper`], the body read within its limits, [`client_ip`].

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Request, StatusCode};

use super::response::{self, Resp};
use super::{App, BODY_TIMEOUT, MAX_BODY, REQUEST_ID, Req, access_log, head, routes};

/// The hyper entry point: gives the request its id (logged, sent as `x-request-id`, and
/// named on error pages), answers it, and writes its access-log line.
pub async fn serve_hyper(
    app: Arc<App>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Resp, Infallible> {
    let id = crate::clock::random_id();
    let now_ms = crate::clock::now_ms();
    let log = app
        .access_log
        .enabled()
        .then(|| (req.method().clone(), req.uri().path().to_string()));
    let started = std::time::Instant::now();
    let (resp, route) = REQUEST_ID
        .scope(id.clone(), answer(&app, req, peer, now_ms))
        .await;
    let took = started.elapsed();
    let status = resp.status().as_u16();
    app.metrics.request(route, status, took);
    // One line per request: no query string (it may hold codes or tokens), no body;
    // queued here and written in batches off the request path.
    if let Some((method, path)) = log {
        app.access_log.push(access_log::Line {
            at_us: now_ms * 1000,
            request_id: id.clone(),
            method,
            path,
            status,
            took_us: took.as_micros().min(u64::MAX as u128) as u64,
        });
    }
    Ok(response::with_header(resp, "x-request-id", &id))
}

/// Checks the head, reads the body within its size and time limits, and routes.
async fn answer(
    app: &Arc<App>,
    req: Request<Incoming>,
    peer: SocketAddr,
    now_ms: i64,
) -> (Resp, &'static str) {
    let (parts, body) = req.into_parts();
    // Refused before routing: counted under the path's label (looked up only then; the
    // router looks the route up for everything else).
    let early = |r: Resp| (r, routes::label(parts.uri.path()));
    let target_len = parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if let Err(r) = head::check(parts.version, &parts.headers, target_len, MAX_BODY) {
        // The body, if any, is not read: the connection closes after this answer.
        return early(response::closing(r.status, r.reason));
    }
    let body =
        match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY).collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return early(response::closing(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request body too large",
                ));
            }
            // A malformed chunk size or a connection cut mid-body (RFC 9112 §7.1).
            Ok(Err(_)) => {
                return early(response::closing(
                    StatusCode::BAD_REQUEST,
                    "malformed request body",
                ));
            }
            Err(_) => {
                return early(response::closing(
                    StatusCode::REQUEST_TIMEOUT,
                    "request body too slow",
                ));
            }
        };
    let req = Req {
        peer: client_ip(peer.ip(), &parts.headers, &app.config.trusted_proxies),
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts.headers,
        body,
        now_ms,
    };
    app.respond_labelled(req).await
}

/// The client's address: the TCP peer, unless the peer is a trusted reverse proxy, in
/// which case the right-most `X-Forwarded-For` entry that is not itself a trusted proxy
/// (entries further left can be forged by the client).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops: Vec<Option<IpAddr>> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("").split(','))
        .map(|h| h.trim().parse().ok())
        .collect();
    for hop in hops.into_iter().rev() {
        match hop {
            Some(ip) if trusted.contains(&ip) => continue,
            Some(ip) => return ip,
            // An entry that is not an address ends what can be trusted.
            None => break,
        }
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "203.0.113.9, 192.0.2.7, 10.0.0.1".parse().unwrap(),
        );
        assert_eq!(client_ip(proxy, &h, &[proxy]), client);
        assert_eq!(
            client_ip(client, &h, &[proxy]),
            client,
            "untrusted peers are taken as they are"
        );
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &[proxy]), proxy);
        h.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(client_ip(proxy, &h, &[proxy]), proxy);
        h.insert(
            "x-forwarded-for",
            "192.0.2.7, junk, 198.51.100.1".parse().unwrap(),
        );
        assert_eq!(
            client_ip(proxy, &h, &[proxy]),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
    }
}
