//! The SMTP client: lettre's blocking transport over rustls (aws-lc-rs) with the system's
//! trust store or `ca_file`. Every call has a deadline; callers run it on a blocking
//! thread. Failures are sorted into what an administrator can act on: DNS, connection,
//! TLS, authentication, refusal.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Message, SmtpTransport, Transport};

use super::compose::Composed;
use crate::config::mail::{MailSettings, Security};

/// Connecting, each command and the whole message each wait at most this long.
const TIMEOUT: Duration = Duration::from_secs(20);

/// Why a mail was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailError {
    /// What failed: `DNS`, `connection`, `TLS`, `authentication`, `refused`, `address`,
    /// `timeout`, `SMTP`.
    pub stage: &'static str,
    pub detail: String,
}

impl std::fmt::Display for MailError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.stage, self.detail)
    }
}

impl MailError {
    pub fn new(stage: &'static str, detail: impl Into<String>) -> MailError {
        MailError {
            stage,
            detail: detail.into(),
        }
    }
}

/// An SMTP server to send through, from `[mail]`.
pub struct Mailer {
    transport: SmtpTransport,
    from: Mailbox,
    /// The issuer's host: the EHLO name and the right side of Message-IDs.
    host: String,
}

impl Mailer {
    /// Prepares the client (no connection yet). `issuer_host` names this server to the
    /// SMTP server.
    pub fn new(s: &MailSettings, issuer_host: &str) -> Result<Mailer, String> {
        let mut tls = TlsParameters::builder(s.host.clone());
        if let Some(pem) = &s.ca_pem {
            let ca = Certificate::from_pem(pem).map_err(|e| format!("mail.ca_file: {e}"))?;
            tls = tls
                .certificate_store(CertificateStore::None)
                .add_root_certificate(ca);
        }
        let tls = tls
            .build_rustls()
            .map_err(|e| format!("mail: TLS set-up failed: {e}"))?;
        let mut b = SmtpTransport::builder_dangerous(s.host.clone())
            .port(s.port)
            .timeout(Some(TIMEOUT))
            .hello_name(ClientId::Domain(issuer_host.to_string()))
            .tls(match s.security {
                Security::Implicit => Tls::Wrapper(tls),
                Security::StartTls => Tls::Required(tls),
                Security::LoopbackPlain => Tls::Opportunistic(tls),
            });
        if let (Some(user), Some(pw)) = (&s.username, &s.password) {
            b = b.credentials(Credentials::new(user.clone(), pw.expose().to_string()));
        }
        let from = s.from.parse().map_err(|e| format!("mail.from: {e}"))?;
        Ok(Mailer {
            transport: b.build(),
            from,
            host: issuer_host.to_string(),
        })
    }

    /// Sends one message and returns the server's answer (`250 …`). Blocks.
    pub fn send(&self, to: &str, mail: &Composed) -> Result<String, MailError> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| MailError::new("address", format!("{to:?}: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .message_id(Some(format!(
                "<{}@{}>",
                crate::clock::random_id(),
                self.host
            )))
            .multipart(MultiPart::alternative_plain_html(
                mail.text.clone(),
                mail.html.clone(),
            ))
            .map_err(|e| MailError::new("SMTP", format!("the message could not be built: {e}")))?;
        match self.transport.send(&message) {
            Ok(answer) => Ok(format!(
                "{} {}",
                answer.code(),
                answer.message().collect::<Vec<_>>().join(" ")
            )),
            Err(e) => Err(classify(&e)),
        }
    }
}

/// Sorts a lettre error into the stage an administrator can act on.
fn classify(e: &lettre::transport::smtp::Error) -> MailError {
    use std::error::Error as _;
    let mut detail = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    let lower = detail.to_lowercase();
    let stage = if let Some(code) = e.status() {
        // RFC 4954 §6: 530, 534, 535, 538 are about authentication.
        if matches!(code.to_string().as_str(), "530" | "534" | "535" | "538") {
            "authentication"
        } else {
            "refused"
        }
    } else if e.is_tls() {
        "TLS"
    } else if e.is_timeout() {
        "timeout"
    } else if lower.contains("lookup")
        || lower.contains("resolve")
        || lower.contains("name or service")
    {
        "DNS"
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        "TLS"
    } else if lower.contains("auth") {
        "authentication"
    } else if e.is_client() || e.is_response() {
        "SMTP"
    } else {
        "connection"
    };
    MailError { stage, detail }
}
