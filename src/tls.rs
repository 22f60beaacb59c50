//! TLS: the self-signed certificate of first start (SPEC §4: P-256 key, SANs for the
//! issuer host, localhost, 127.0.0.1 and ::1, valid from yesterday for 397 days), or the
//! administrator's own files, turned into a rustls `ServerConfig` (TLS 1.2 and 1.3 only,
//! aws-lc-rs provider).

use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{Config, TlsMode};

/// Where the generated certificate and key live.
pub fn self_signed_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("tls");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// The rustls configuration for the listener, or `None` with `tls.mode = "off"`.
pub fn server_config(
    config: &Config,
    now: i64,
) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    let (cert, key) = match &config.tls {
        TlsMode::Off => return Ok(None),
        TlsMode::Files { cert, key } => (cert.clone(), key.clone()),
        TlsMode::SelfSigned => {
            let (cert, key) = self_signed_paths(&config.data_dir);
            if !cert.exists() || !key.exists() {
                generate(&config.issuer, &cert, &key, now)?;
                tracing::info!(cert = %cert.display(), "generated a self-signed TLS certificate");
            }
            (cert, key)
        }
    };
    Ok(Some(Arc::new(load(&cert, &key)?)))
}

/// The expiry (Unix time) of the first certificate in a PEM file, for metrics.
pub fn certificate_expiry(cert: &Path) -> Option<i64> {
    let der = CertificateDer::pem_file_iter(cert).ok()?.next()?.ok()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some(parsed.validity().not_after.timestamp())
}

/// The certificate file in use, if Latchkey terminates TLS.
pub fn certificate_path(config: &Config) -> Option<PathBuf> {
    match &config.tls {
        TlsMode::Off => None,
        TlsMode::Files { cert, .. } => Some(cert.clone()),
        TlsMode::SelfSigned => Some(self_signed_paths(&config.data_dir).0),
    }
}

fn load(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("TLS certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "TLS certificate {}: no certificate in the file",
            cert.display()
        ));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("TLS key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| {
            format!(
                "TLS certificate {} / key {}: {e}",
                cert.display(),
                key.display()
            )
        })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

fn generate(issuer: &str, cert_path: &Path, key_path: &Path, now: i64) -> Result<(), String> {
    use rcgen::{
        CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256, SanType,
        SerialNumber,
    };
    let host = url::Url::parse(issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "localhost".into());
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let mut names: Vec<String> = vec![
        host.clone(),
        "localhost".into(),
        "127.0.0.1".into(),
        "::1".into(),
    ];
    names.dedup();
    let mut sans = Vec::new();
    for n in &names {
        let san = match n.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                n.clone()
                    .try_into()
                    .map_err(|e| format!("certificate name {n:?}: {e}"))?,
            ),
        };
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, host);
    dn.push(DnType::OrganizationName, "Latchkey self-signed");
    params.distinguished_name = dn;
    let day = time::Duration::days(1);
    let start = time::OffsetDateTime::from_unix_timestamp(now).map_err(|e| e.to_string())? - day;
    params.not_before = start;
    params.not_after = start + time::Duration::days(398);
    // Clients that check the purpose of a server certificate find TLS server auth.
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.serial_number = Some(SerialNumber::from_slice(&crate::clock::random_bytes::<16>()));
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("TLS key generation: {e}"))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("TLS certificate generation: {e}"))?;
    if let Some(dir) = cert_path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    write_private(key_path, key.serialize_pem().as_bytes())?;
    write_private(cert_path, cert.pem().as_bytes())
}

/// Writes a file created with mode 0600 from the start (no window with wider rights).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(bytes)
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn generated_certificate_loads_and_is_private() {
        let dir = TempDir::new("tls");
        let (cert, key) = self_signed_paths(dir.path());
        generate("https://op.example:8443", &cert, &key, 1_700_000_000).unwrap();
        assert!(load(&cert, &key).is_ok());
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn expiry_is_read_from_the_certificate() {
        let dir = TempDir::new("tls-expiry");
        let (cert, key) = self_signed_paths(dir.path());
        generate("https://op.example", &cert, &key, 1_700_000_000).unwrap();
        assert_eq!(
            certificate_expiry(&cert),
            Some(1_700_000_000 - 86_400 + 398 * 86_400)
        );
    }

    #[test]
    fn missing_files_are_named() {
        let e = load(
            Path::new("/nonexistent/c.pem"),
            Path::new("/nonexistent/k.pem"),
        )
        .unwrap_err();
        assert!(e.contains("/nonexistent/c.pem"), "{e}");
    }
}
