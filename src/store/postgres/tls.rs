//! TLS for PostgreSQL connections: tokio-postgres's connector traits over tokio-rustls,
//! so the database speaks the same TLS stack (rustls on aws-lc-rs) as everything else.
//! Certificates and host names are always checked (`sslmode=verify-full`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

#[derive(Clone)]
pub(super) struct Rustls(pub Arc<rustls::ClientConfig>);

pub(super) struct Connect {
    config: Arc<rustls::ClientConfig>,
    name: rustls::pki_types::ServerName<'static>,
}

pub(super) struct Stream<S>(tokio_rustls::client::TlsStream<S>);

type Error = Box<dyn std::error::Error + Send + Sync>;

impl<S> MakeTlsConnect<S> for Rustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type TlsConnect = Connect;
    type Error = Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Connect, Error> {
        let name = rustls::pki_types::ServerName::try_from(domain.to_string())?;
        Ok(Connect {
            config: self.0.clone(),
            name,
        })
    }
}

impl<S> TlsConnect<S> for Connect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Stream<S>, Error>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move {
            let tls = connector.connect(self.name, stream).await?;
            Ok(Stream(tls))
        })
    }
}

impl<S> tokio_postgres::tls::TlsStream for Stream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// SCRAM's `tls-server-end-point` binding (RFC 5929 §4.1): the server certificate
    /// hashed with its signature's hash, SHA-256 for MD5 and SHA-1.
    fn channel_binding(&self) -> ChannelBinding {
        let Some(cert) = self
            .0
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
        else {
            return ChannelBinding::none();
        };
        let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
            return ChannelBinding::none();
        };
        let oid = parsed.signature_algorithm.algorithm.to_id_string();
        let algorithm = match oid.as_str() {
            // sha384WithRSAEncryption, ecdsa-with-SHA384
            "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => &aws_lc_rs::digest::SHA384,
            // sha512WithRSAEncryption, ecdsa-with-SHA512
            "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => &aws_lc_rs::digest::SHA512,
            // Ed25519 has no hash of its own: RFC 5929 leaves it undefined.
            "1.3.101.112" => return ChannelBinding::none(),
            _ => &aws_lc_rs::digest::SHA256,
        };
        let hash = aws_lc_rs::digest::digest(algorithm, cert.as_ref());
        ChannelBinding::tls_server_end_point(hash.as_ref().to_vec())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
