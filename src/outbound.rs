//! Outbound HTTP: the only connections Latchkey opens by itself, and only to targets an
//! administrator registered (back-channel logout URIs, client JWKS URIs). Every call has a deadline and a
//! response size limit; https targets are checked against the system's trust store.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// Largest response body read from a remote server.
const MAX_RESPONSE: usize = 64 * 1024;

pub struct Outbound {
    tls: tokio_rustls::TlsConnector,
}

impl Default for Outbound {
    fn default() -> Self {
        Self::new()
    }
}

impl Outbound {
    /// A client trusting the operating system's certificate store (where internal CAs of
    /// an air-gapped site are installed).
    pub fn new() -> Outbound {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            .unwrap_or_else(|_| {
                // The default provider always supports the default versions; keep a
                // working (TLS 1.3-only) client rather than fail start-up.
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            });
        Outbound {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        }
    }

    /// POSTs a form body; returns the response status.
    pub async fn post_form(
        &self,
        url: &str,
        body: String,
        deadline: Duration,
    ) -> Result<u16, String> {
        let r = tokio::time::timeout(deadline, self.send(url, Some(body))).await;
        r.map_err(|_| "timed out".to_string())?
            .map(|(status, _)| status)
    }

    /// GETs a document of at most 64 KiB; returns the status and the body.
    pub async fn get(&self, url: &str, deadline: Duration) -> Result<(u16, Bytes), String> {
        tokio::time::timeout(deadline, self.send(url, None))
            .await
            .map_err(|_| "timed out".to_string())?
    }

    async fn send(&self, url: &str, body: Option<String>) -> Result<(u16, Bytes), String> {
        let u = url::Url::parse(url).map_err(|e| e.to_string())?;
        let host = u
            .host_str()
            .ok_or("no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = u.port_or_known_default().ok_or("no port")?;
        let mut target = u.path().to_string();
        if let Some(q) = u.query() {
            target.push('?');
            target.push_str(q);
        }
        let authority = match u.port() {
            Some(p) => format!("{}:{p}", u.host_str().unwrap_or_default()),
            None => u.host_str().unwrap_or_default().to_string(),
        };
        let builder = Request::builder()
            .uri(target)
            .header("host", authority)
            .header(
                "user-agent",
                concat!("latchkey/", env!("CARGO_PKG_VERSION")),
            );
        let req = match body {
            Some(b) => builder
                .method("POST")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from(b))),
            None => builder.method("GET").body(Full::new(Bytes::new())),
        }
        .map_err(|e| e.to_string())?;
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| e.to_string())?;
        match u.scheme() {
            "https" => {
                let name =
                    rustls::pki_types::ServerName::try_from(host).map_err(|e| e.to_string())?;
                let tls = self
                    .tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| e.to_string())?;
                exchange(TokioIo::new(tls), req).await
            }
            "http" => exchange(TokioIo::new(tcp), req).await,
            other => Err(format!("unsupported scheme {other}")),
        }
    }
}

async fn exchange<I>(io: I, req: Request<Full<Bytes>>) -> Result<(u16, Bytes), String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = Limited::new(resp.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|_| format!("response larger than {MAX_RESPONSE} bytes or broken"))?
        .to_bytes();
    driver.abort();
    Ok((status, body))
}

/// A TLS client configuration for an outbound service (the directory, PostgreSQL) that
/// trusts `ca_pem` (PEM certificates, the setting's `ca_file`) or else the operating
/// system's store; `key` names the setting in errors. Certificates and host names are
/// always checked: rustls has no way to skip either, and Latchkey asks for none.
pub fn tls_client_config(ca_pem: Option<&[u8]>, key: &str) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            let certs = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{key}.ca_file: {e}"))?;
            if certs.is_empty() {
                return Err(format!("{key}.ca_file: no certificate in it"));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| format!("{key}.ca_file: {e}"))?;
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("{key}: TLS set-up: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
