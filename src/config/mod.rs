//! Configuration: the TOML file (every field optional) plus environment overrides, turned
//! into a validated [`Config`] in two phases (`RawConfig` → `Config::validate`). Parsing is
//! pure; only [`load`] touches the file system and the environment.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::model::Client;
use crate::oidc::registration::{ClientSpec, build_client};

/// Where `serve` and the management commands look for the file when `--config` is absent.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/latchkey/latchkey.toml";

#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

pub mod ldap;
pub mod mail;
pub mod store;

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    issuer: Option<String>,
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    instance_name: Option<String>,
    /// An image shown on the sign-in page (PNG, JPEG or SVG, at most 256 KiB).
    logo: Option<PathBuf>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default)]
    tls: RawTls,
    #[serde(default)]
    tokens: RawTokens,
    #[serde(default)]
    session: RawSession,
    #[serde(default)]
    login: RawLogin,
    #[serde(default)]
    password: RawPassword,
    #[serde(default)]
    keys: RawKeys,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    mail: mail::RawMail,
    #[serde(default)]
    clients: Vec<RawClient>,
    #[serde(default)]
    groups: Vec<RawGroup>,
    #[serde(default)]
    ui: RawUi,
    #[serde(default)]
    ldap: ldap::RawLdap,
    #[serde(default)]
    store: store::RawStore,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUi {
    /// The language of pages and mails when the browser names none Latchkey has.
    default_language: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    require_second_factor: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    mode: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokens {
    code_ttl_secs: Option<i64>,
    access_token_ttl_secs: Option<i64>,
    id_token_ttl_secs: Option<i64>,
    refresh_token_idle_ttl_secs: Option<i64>,
    refresh_token_absolute_ttl_secs: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSession {
    idle_ttl_secs: Option<i64>,
    absolute_ttl_secs: Option<i64>,
    /// How long a password confirmation covers sensitive administrator actions.
    reauth_secs: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogin {
    ip_max_failures: Option<u32>,
    ip_window_secs: Option<i64>,
    ip_block_secs: Option<i64>,
    /// "Trust this browser" skips the second factor for this many days (0: offered never).
    trusted_device_days: Option<i64>,
    /// The sign-in page offers "Sign in with a passkey" above the password form.
    passkey_first: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    retention_secs: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    rotation_days: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPassword {
    memory_kib: Option<u32>,
    iterations: Option<u32>,
    parallelism: Option<u32>,
    pool_threads: Option<usize>,
    pool_queue: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    client_id: String,
    name: Option<String>,
    secret_hash: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    grant_types: Vec<String>,
    #[serde(default)]
    response_types: Vec<String>,
    token_endpoint_auth_method: Option<String>,
    policy: Option<String>,
    #[serde(default)]
    skip_consent: bool,
    id_token_alg: Option<String>,
    #[serde(default)]
    require_pkce: bool,
    backchannel_logout_uri: Option<String>,
    frontchannel_logout_uri: Option<String>,
    #[serde(default)]
    frontchannel_logout_session_required: bool,
    #[serde(default)]
    allowed_groups: Vec<String>,
    jwks_uri: Option<String>,
    /// A JWK Set document, for private_key_jwt.
    jwks: Option<String>,
    /// The shared secret of a client_secret_jwt client.
    jwt_secret: Option<String>,
    #[serde(default)]
    require_par: bool,
    #[serde(default)]
    refresh_requires_session: bool,
    #[serde(default)]
    refresh_grace_secs: i64,
    #[serde(default)]
    groups_filter: Vec<String>,
    #[serde(default)]
    claims: Vec<crate::model::ClaimRule>,
}

/// `[[groups]]`: attributes of a group declared in the file (SPEC §14); they win over
/// the same attributes set with the CLI or the admin pages.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: String,
    #[serde(default)]
    attributes: crate::model::Attributes,
}

/// How the listener speaks: its own self-signed certificate, the administrator's files, or
/// plain HTTP behind a TLS-terminating reverse proxy.
#[derive(Debug, Clone, PartialEq)]
pub enum TlsMode {
    SelfSigned,
    Files { cert: PathBuf, key: PathBuf },
    Off,
}

/// Lifetimes in seconds (SPEC §6 defaults); the grant rules read them.
pub use crate::oidc::grant::Lifetimes;

/// Per-source-address throttling (`[login]`; per-account and known-browser counters
/// follow fixed schedules in `http::throttle`).
#[derive(Debug, Clone, PartialEq)]
pub struct LoginLimits {
    /// Failures from one address (IPv6: one /64) before its delays begin.
    pub ip_max_failures: u32,
    /// Seconds after an address's delay ended that its count is forgotten.
    pub ip_window: i64,
    /// The longest delay for one address, in seconds (at most 900, SPEC §8).
    pub ip_block: i64,
}

/// argon2id parameters and the hashing pool, defined beside the hashing itself.
pub use crate::keys::password::PasswordParams;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// No trailing slash; `iss` of every token and the base of every endpoint URL.
    pub issuer: String,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub instance_name: String,
    /// The sign-in page's logo, read when the configuration is loaded.
    pub logo: Option<Logo>,
    /// Seconds a sign-in or password confirmation covers sensitive admin actions.
    pub reauth_window: i64,
    /// Days a browser may skip the second factor after "trust this browser"; 0 = off.
    pub trusted_device_days: i64,
    /// `[login] passkey_first`: the sign-in page puts the passkey button first.
    pub passkey_first: bool,
    /// Reverse proxies whose `X-Forwarded-For` names the real client address (for
    /// throttling and the audit log). Empty: the TCP peer is the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub tls: TlsMode,
    pub lifetimes: Lifetimes,
    pub login: LoginLimits,
    /// `[admin] require_second_factor`: the administrators' pages only for sessions that
    /// signed in with a second factor.
    pub admin_requires_second_factor: bool,
    pub password: PasswordParams,
    /// Automatic signing-key rotation period in seconds (`[keys] rotation_days`).
    pub key_rotation: Option<i64>,
    /// How long audit events are kept (`[audit] retention_secs`, default 180 days).
    pub audit_retention: i64,
    /// `/metrics` answers only loopback addresses, or anyone presenting this bearer token.
    pub metrics_token: Option<String>,
    /// Log lines as JSON objects instead of text.
    pub log_json: bool,
    /// `[[clients]]` from the file, keyed by client_id.
    pub declared_clients: HashMap<String, Client>,
    /// `[mail]`: without it, nothing is ever mailed (and the pages offer no mail).
    pub mail: Option<mail::MailSettings>,
    /// `[[groups]]`: attributes of groups, by group name (SPEC §14).
    pub declared_groups: HashMap<String, crate::model::Attributes>,
    /// `[ui] default_language` (SPEC §12): one of `pages::i18n::LANGUAGES`.
    pub default_language: &'static str,
    /// `[ldap]` (SPEC §11): directory users sign in with their directory password.
    pub ldap: Option<ldap::LdapSettings>,
    /// `[store]` (SPEC §13): where the records live.
    pub store: store::Backend,
}

/// An image file served at `/assets/logo`.
#[derive(Debug, Clone, PartialEq)]
pub struct Logo {
    pub content_type: &'static str,
    pub bytes: std::sync::Arc<Vec<u8>>,
}

const MAX_LOGO: u64 = 256 * 1024;

fn read_logo(path: &Path) -> Result<Logo, ConfigError> {
    let shown = path.display();
    let content_type = match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("png") => "image/png",
        Some(e) if e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg") => "image/jpeg",
        Some(e) if e.eq_ignore_ascii_case("svg") => "image/svg+xml",
        _ => return err(format!("logo: {shown}: use a .png, .jpg or .svg file")),
    };
    let meta = std::fs::metadata(path).map_err(|e| ConfigError(format!("logo: {shown}: {e}")))?;
    if !meta.is_file() || meta.len() > MAX_LOGO {
        return err(format!("logo: {shown}: must be a file of at most 256 KiB"));
    }
    let bytes = std::fs::read(path).map_err(|e| ConfigError(format!("logo: {shown}: {e}")))?;
    Ok(Logo {
        content_type,
        bytes: std::sync::Arc::new(bytes),
    })
}

/// What the environment contributes; a struct so tests need not touch the process env.
#[derive(Debug, Default, Clone)]
pub struct Env {
    pub issuer: Option<String>,
    pub listen: Option<String>,
    pub data_dir: Option<String>,
    /// systemd's `STATE_DIRECTORY`.
    pub state_directory: Option<String>,
    pub hostname: String,
    /// Whether `/var/lib/latchkey` can be used as the default data directory.
    pub var_lib_writable: bool,
    /// `LATCHKEY_LDAP_BIND_PASSWORD` (instead of `[ldap] bind_password_file`).
    pub ldap_bind_password: Option<String>,
}

impl Env {
    /// Reads the process environment and the host name.
    pub fn from_process() -> Env {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        Env {
            issuer: var("LATCHKEY_ISSUER"),
            listen: var("LATCHKEY_LISTEN"),
            data_dir: var("LATCHKEY_DATA_DIR"),
            state_directory: var("STATE_DIRECTORY"),
            hostname,
            var_lib_writable: dir_writable(Path::new("/var/lib/latchkey")),
            ldap_bind_password: var("LATCHKEY_LDAP_BIND_PASSWORD"),
        }
    }
}

fn dir_writable(p: &Path) -> bool {
    let probe = p.join(".latchkey-write-probe");
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            true
        }
        Err(_) => false,
    }
}

/// Finds the file: `--config`, then `LATCHKEY_CONFIG`, then the default path if it exists.
/// Returns `None` when no file is used (every field then has its default).
pub fn resolve_path(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_path_buf());
    }
    if let Ok(p) = std::env::var("LATCHKEY_CONFIG")
        && !p.is_empty()
    {
        return Some(PathBuf::from(p));
    }
    let default = Path::new(DEFAULT_CONFIG_PATH);
    default.exists().then(|| default.to_path_buf())
}

/// Reads and validates the configuration from the file (if any) and the environment.
pub fn load(flag: Option<&Path>) -> Result<Config, ConfigError> {
    let text = match resolve_path(flag) {
        Some(path) => Some(
            std::fs::read_to_string(&path)
                .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?,
        ),
        None => None,
    };
    parse(text.as_deref(), &Env::from_process())
}

/// Parses TOML text (or nothing) with the given environment into a validated [`Config`].
pub fn parse(text: Option<&str>, env: &Env) -> Result<Config, ConfigError> {
    let raw: RawConfig = match text {
        Some(t) => toml::from_str(t).map_err(|e| ConfigError(format!("config: {e}")))?,
        None => RawConfig::default(),
    };
    validate(raw, env)
}

fn validate(raw: RawConfig, env: &Env) -> Result<Config, ConfigError> {
    let listen_text = env
        .listen
        .clone()
        .or(raw.listen)
        .unwrap_or_else(|| "0.0.0.0:8443".to_string());
    let listen: SocketAddr = listen_text
        .parse()
        .map_err(|_| ConfigError(format!("listen: {listen_text:?} is not an address:port")))?;

    let tls = match raw.tls.mode.as_deref().unwrap_or("self-signed") {
        "self-signed" => TlsMode::SelfSigned,
        "off" => TlsMode::Off,
        "files" => match (raw.tls.cert, raw.tls.key) {
            (Some(cert), Some(key)) => TlsMode::Files { cert, key },
            _ => return err("tls: mode \"files\" needs both `cert` and `key`"),
        },
        other => {
            return err(format!(
                "tls.mode: {other:?} is not one of \"self-signed\", \"files\", \"off\""
            ));
        }
    };

    // SPEC §3: the default issuer is https even with tls.mode = "off", where a reverse
    // proxy terminates TLS in front of Latchkey.
    let issuer = match env.issuer.clone().or(raw.issuer) {
        Some(written) => validate_issuer(&written)?,
        // Derived from the host name and port, so written the canonical way here (a
        // lower-case host, no `:443`) rather than refused for how it was spelled.
        None => {
            let derived = format!("https://{}:{}", env.hostname, listen.port());
            let canonical = url::Url::parse(&derived)
                .map(|u| u.as_str().to_string())
                .unwrap_or(derived);
            validate_issuer(&canonical)?
        }
    };

    let data_dir = env
        .data_dir
        .as_ref()
        .map(PathBuf::from)
        .or(raw.data_dir)
        .or_else(|| env.state_directory.as_ref().map(PathBuf::from))
        .unwrap_or_else(|| {
            if env.var_lib_writable {
                PathBuf::from("/var/lib/latchkey")
            } else {
                PathBuf::from("./latchkey-data")
            }
        });

    let t = raw.tokens;
    let s = raw.session;
    let lifetimes = Lifetimes {
        code: positive("tokens.code_ttl_secs", t.code_ttl_secs, 60, 600)?,
        access_token: positive(
            "tokens.access_token_ttl_secs",
            t.access_token_ttl_secs,
            900,
            86_400,
        )?,
        id_token: positive("tokens.id_token_ttl_secs", t.id_token_ttl_secs, 900, 86_400)?,
        refresh_idle: positive(
            "tokens.refresh_token_idle_ttl_secs",
            t.refresh_token_idle_ttl_secs,
            14 * 86_400,
            365 * 86_400,
        )?,
        refresh_absolute: positive(
            "tokens.refresh_token_absolute_ttl_secs",
            t.refresh_token_absolute_ttl_secs,
            30 * 86_400,
            365 * 86_400,
        )?,
        session_idle: positive("session.idle_ttl_secs", s.idle_ttl_secs, 1800, 30 * 86_400)?,
        session_absolute: positive(
            "session.absolute_ttl_secs",
            s.absolute_ttl_secs,
            12 * 3600,
            90 * 86_400,
        )?,
    };

    let l = raw.login;
    let login = LoginLimits {
        ip_max_failures: l.ip_max_failures.unwrap_or(30).max(1),
        ip_window: positive("login.ip_window_secs", l.ip_window_secs, 3600, 86_400)?,
        ip_block: positive("login.ip_block_secs", l.ip_block_secs, 900, 900)?,
    };

    let trusted_device_days = match l.trusted_device_days {
        None => 0,
        Some(d) if (0..=365).contains(&d) => d,
        Some(_) => return err("login.trusted_device_days: must be between 0 and 365"),
    };
    let logo = raw.logo.as_deref().map(read_logo).transpose()?;
    let reauth_window = positive("session.reauth_secs", s.reauth_secs, 600, 86_400)?;

    let p = raw.password;
    let d = PasswordParams::default();
    let password = PasswordParams {
        memory_kib: p.memory_kib.unwrap_or(d.memory_kib),
        iterations: p.iterations.unwrap_or(d.iterations),
        parallelism: p.parallelism.unwrap_or(d.parallelism),
        pool_threads: p.pool_threads.unwrap_or(d.pool_threads).clamp(1, 64),
        pool_queue: p.pool_queue.unwrap_or(d.pool_queue).min(1024),
    };
    // SPEC §8 / OWASP floor: below m=19 MiB, t=2 the hashes are too cheap to crack offline.
    if password.memory_kib < 19_456 {
        return err("password.memory_kib: below the floor of 19456 KiB (19 MiB)");
    }
    if password.iterations < 2 {
        return err("password.iterations: below the floor of 2");
    }
    if !(1..=16).contains(&password.parallelism) {
        return err("password.parallelism: must be between 1 and 16");
    }

    let key_rotation = match raw.keys.rotation_days {
        None => None,
        Some(d) if (1..=3650).contains(&d) => Some(d * 86_400),
        Some(_) => return err("keys.rotation_days: must be between 1 and 3650"),
    };

    let audit_retention = positive(
        "audit.retention_secs",
        raw.audit.retention_secs,
        180 * 86_400,
        10 * 365 * 86_400,
    )?;

    let metrics_token = raw.metrics.token;
    if metrics_token.as_ref().is_some_and(|t| t.len() < 16) {
        return err("metrics.token: use at least 16 characters");
    }
    let log_json = match raw.log.format.as_deref() {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => return err(format!("log.format: {other:?} is not \"text\" or \"json\"")),
    };

    let mut trusted_proxies = Vec::new();
    for p in &raw.trusted_proxies {
        let ip = p
            .parse()
            .map_err(|_| ConfigError(format!("trusted_proxies: {p:?} is not an IP address")))?;
        trusted_proxies.push(ip);
    }

    let mut declared_clients = HashMap::new();
    for (i, rc) in raw.clients.into_iter().enumerate() {
        let id = rc.client_id.clone();
        let client =
            declared_client(rc).map_err(|e| ConfigError(format!("clients[{i}] ({id}): {e}")))?;
        if declared_clients.insert(id.clone(), client).is_some() {
            return err(format!("clients[{i}]: client_id {id:?} is declared twice"));
        }
    }

    let mut declared_groups = HashMap::new();
    for (i, g) in raw.groups.into_iter().enumerate() {
        if !crate::oidc::registration::valid_group_name(&g.name) {
            return err(format!("groups[{i}]: {:?} is not a group name", g.name));
        }
        if g.attributes.len() > crate::oidc::claims::MAX_ATTRIBUTES {
            return err(format!(
                "groups[{i}] ({}): at most {} attributes",
                g.name,
                crate::oidc::claims::MAX_ATTRIBUTES
            ));
        }
        for (k, v) in &g.attributes {
            crate::oidc::claims::check_attribute(k, v)
                .map_err(|e| ConfigError(format!("groups[{i}] ({}): {e}", g.name)))?;
        }
        if declared_groups
            .insert(g.name.clone(), g.attributes)
            .is_some()
        {
            return err(format!("groups[{i}]: {:?} is declared twice", g.name));
        }
    }
    let default_language = match raw.ui.default_language.as_deref() {
        None => "en",
        Some(l) => crate::pages::i18n::LANGUAGES
            .iter()
            .map(|(code, _)| *code)
            .find(|code| *code == l)
            .ok_or_else(|| {
                let all: Vec<&str> = crate::pages::i18n::LANGUAGES
                    .iter()
                    .map(|(c, _)| *c)
                    .collect();
                ConfigError(format!(
                    "ui.default_language: {l:?} is not one of {}",
                    all.join(", ")
                ))
            })?,
    };
    let store = store::settings(raw.store).map_err(ConfigError)?;
    let ldap = if raw.ldap.is_empty() {
        None
    } else {
        Some(ldap::settings(raw.ldap, env.ldap_bind_password.clone()).map_err(ConfigError)?)
    };
    let mail = if raw.mail.is_empty() {
        None
    } else {
        Some(mail::settings(raw.mail).map_err(ConfigError)?)
    };

    Ok(Config {
        issuer,
        listen,
        data_dir,
        instance_name: raw.instance_name.unwrap_or_else(|| "Latchkey".to_string()),
        logo,
        reauth_window,
        trusted_device_days,
        passkey_first: l.passkey_first.unwrap_or(false),
        trusted_proxies,
        tls,
        lifetimes,
        login,
        admin_requires_second_factor: raw.admin.require_second_factor.unwrap_or(false),
        password,
        key_rotation,
        audit_retention,
        metrics_token,
        log_json,
        declared_clients,
        mail,
        declared_groups,
        default_language,
        ldap,
        store,
    })
}

/// OIDC Discovery §3: the issuer is an https URL (http allowed here for a reverse proxy
/// set-up and tests) with a host, no query and no fragment. A trailing slash is removed.
fn validate_issuer(issuer: &str) -> Result<String, ConfigError> {
    let url =
        url::Url::parse(issuer).map_err(|e| ConfigError(format!("issuer: {issuer:?}: {e}")))?;
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    if !scheme_ok || url.host_str().is_none_or(str::is_empty) {
        // OIDC Discovery §3: issuers are https URLs; plain http only for local trials.
        return err(format!(
            "issuer: {issuer:?} must be an https URL with a host (http only for localhost)"
        ));
    }
    if url.path() != "/" {
        return err(format!(
            "issuer: {issuer:?} must not have a path: serve Latchkey at the root of its own host name"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return err(format!(
            "issuer: {issuer:?} must not have a query, fragment or user info"
        ));
    }
    // Relying parties compare the issuer as a string (OIDC Core §3.1.3.7), so it must be
    // written the way a URL parser writes it back: `https:host`, `HTTPS://Host` or
    // `https://host:443` would each be read as another URL than the text says.
    let canonical = url.as_str().trim_end_matches('/');
    if canonical != issuer.trim_end_matches('/') {
        return err(format!(
            "issuer: {issuer:?} is not written in canonical form; write {canonical:?}"
        ));
    }
    Ok(canonical.to_string())
}

fn positive(field: &str, v: Option<i64>, default: i64, max: i64) -> Result<i64, ConfigError> {
    let v = v.unwrap_or(default);
    if v <= 0 || v > max {
        return err(format!("{field}: must be between 1 and {max} seconds"));
    }
    Ok(v)
}

fn declared_client(rc: RawClient) -> Result<Client, String> {
    if let Some(h) = &rc.secret_hash
        && !(h.starts_with("$argon2id$") || crate::keys::is_sha256_secret_hash(h))
    {
        return Err("secret_hash: must be an argon2id PHC string or sha256:<64 hex digits>".into());
    }
    let spec = ClientSpec {
        name: rc.name.unwrap_or_else(|| rc.client_id.clone()),
        redirect_uris: rc.redirect_uris,
        post_logout_redirect_uris: rc.post_logout_redirect_uris,
        scopes: rc.scopes,
        grant_types: rc.grant_types,
        response_types: rc.response_types,
        // No secret and no assertion method: a public client.
        public: rc.secret_hash.is_none()
            && !matches!(
                rc.token_endpoint_auth_method.as_deref(),
                Some("private_key_jwt" | "client_secret_jwt")
            ),
        token_endpoint_auth_method: rc.token_endpoint_auth_method,
        policy: rc.policy,
        skip_consent: rc.skip_consent,
        id_token_alg: rc.id_token_alg,
        require_pkce: rc.require_pkce,
        backchannel_logout_uri: rc.backchannel_logout_uri,
        frontchannel_logout_uri: rc.frontchannel_logout_uri,
        frontchannel_logout_session_required: rc.frontchannel_logout_session_required,
        allowed_groups: rc.allowed_groups,
        jwks: rc.jwks,
        jwks_uri: rc.jwks_uri,
        require_par: rc.require_par,
        refresh_requires_session: rc.refresh_requires_session,
        refresh_grace_secs: rc.refresh_grace_secs,
        groups_filter: rc.groups_filter,
        claims: rc.claims,
    };
    let mut client = build_client(rc.client_id, spec, 0)?;
    match (client.token_endpoint_auth_method, rc.jwt_secret) {
        (crate::model::AuthMethod::ClientSecretJwt, Some(s)) if s.len() >= 32 => {
            client.jwt_secret = Some(s)
        }
        (crate::model::AuthMethod::ClientSecretJwt, _) => {
            return Err(
                "jwt_secret: client_secret_jwt needs a shared secret of at least 32 characters"
                    .into(),
            );
        }
        (_, Some(_)) => {
            return Err(
                "jwt_secret: only for token_endpoint_auth_method = \"client_secret_jwt\"".into(),
            );
        }
        (_, None) => {}
    }
    client.secret_hash = rc.secret_hash;
    client.declared = true;
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env {
            hostname: "op.example".into(),
            ..Env::default()
        }
    }

    #[test]
    fn empty_file_gives_working_defaults() {
        let c = parse(None, &env()).unwrap();
        assert_eq!(c.issuer, "https://op.example:8443");
        assert_eq!(c.listen.port(), 8443);
        assert_eq!(c.data_dir, PathBuf::from("./latchkey-data"));
        assert_eq!(c.tls, TlsMode::SelfSigned);
        assert_eq!(c.lifetimes.code, 60);
        assert_eq!(c.lifetimes.access_token, 900);
        assert_eq!(c.lifetimes.refresh_idle, 14 * 86_400);
        assert_eq!(c.password.memory_kib, 65_536);
    }

    #[test]
    fn the_shipped_example_is_valid_and_all_commented_keys_are_known() {
        let text = include_str!("../../packaging/latchkey.toml");
        parse(Some(text), &env()).unwrap();
        // Uncomment every `#key = value` line: the result must still be accepted.
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.contains(" = ") && !rest.starts_with(' ') => rest,
                Some(rest) if rest.starts_with("[[") => rest,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let uncommented =
            uncommented.replace("\"sha256:...\"", &format!("\"sha256:{}\"", "0".repeat(64)));
        // The logo is read when the configuration is: point it at a file that exists.
        let logo = std::env::temp_dir().join(format!("latchkey-logo-{}.png", std::process::id()));
        std::fs::write(&logo, b"\x89PNG").unwrap();
        let uncommented =
            uncommented.replace("/etc/latchkey/logo.png", &logo.display().to_string());
        // So are the directory's password and CA files.
        let secret = std::env::temp_dir().join(format!("latchkey-ldap-{}", std::process::id()));
        std::fs::write(&secret, "s3cret\n").unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        // And the database's CA (a certificate, parsed when the configuration is loaded).
        let ca = std::env::temp_dir().join(format!("latchkey-db-ca-{}.pem", std::process::id()));
        let cert = rcgen::generate_simple_self_signed(vec!["db.example.lan".into()]).unwrap();
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        let uncommented = uncommented
            .replace("/etc/latchkey/ldap-password", &secret.display().to_string())
            .replace("/etc/latchkey/db-password", &secret.display().to_string())
            .replace("/etc/latchkey/db-ca.pem", &ca.display().to_string())
            .replace("/etc/latchkey/corp-ca.pem", &logo.display().to_string());
        let parsed = parse(Some(&uncommented), &env());
        let _ = std::fs::remove_file(&logo);
        let _ = std::fs::remove_file(&secret);
        let _ = std::fs::remove_file(&ca);
        let parsed = parsed.unwrap();
        assert_eq!(parsed.logo.unwrap().content_type, "image/png");
        assert_eq!(parsed.ldap.unwrap().preset, "active-directory");
        assert!(matches!(parsed.store, store::Backend::Postgres { .. }));
    }

    #[test]
    fn groups_and_client_claims_can_be_declared() {
        let text = r#"
[[groups]]
name = "storage-admins"
attributes = { minio_policy = "consoleAdmin", tier = 2 }

[[clients]]
client_id = "minio"
name = "MinIO"
secret_hash = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
redirect_uris = ["https://minio.example.lan/oauth_callback"]
scopes = ["openid", "minio"]
claims = [{ name = "policy", scope = "minio", group_attribute = "minio_policy" }]
"#;
        let c = parse(Some(text), &env()).unwrap();
        assert_eq!(c.declared_groups["storage-admins"]["tier"], 2);
        assert_eq!(c.declared_clients["minio"].claims[0].name, "policy");
        let reserved = text.replace("name = \"policy\"", "name = \"sub\"");
        let e = parse(Some(&reserved), &env()).unwrap_err();
        assert!(e.0.contains("reserved"), "{e}");
        let bad = text.replace("tier = 2", "tier = { a = 1 }");
        assert!(
            parse(Some(&bad), &env())
                .unwrap_err()
                .0
                .contains("groups[0]")
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = parse(Some("isser = \"https://x\"\n"), &env()).unwrap_err();
        assert!(e.0.contains("isser"), "{e}");
        let e = parse(Some("[tls]\nmod = \"off\"\n"), &env()).unwrap_err();
        assert!(e.0.contains("mod"), "{e}");
    }

    #[test]
    fn environment_overrides_file() {
        let mut env = env();
        env.issuer = Some("https://id.example/".into());
        env.listen = Some("127.0.0.1:9000".into());
        let c = parse(
            Some("issuer = \"https://other\"\nlisten = \"0.0.0.0:1\"\n"),
            &env,
        )
        .unwrap();
        assert_eq!(c.issuer, "https://id.example");
        assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
    }

    #[test]
    fn trusted_proxies_are_ip_addresses() {
        let c = parse(Some("trusted_proxies = [\"127.0.0.1\", \"::1\"]\n"), &env()).unwrap();
        assert_eq!(c.trusted_proxies.len(), 2);
        let e = parse(Some("trusted_proxies = [\"proxy.lan\"]\n"), &env()).unwrap_err();
        assert!(e.0.contains("trusted_proxies"));
    }

    #[test]
    fn argon2_floor_is_enforced() {
        let e = parse(Some("[password]\nmemory_kib = 1024\n"), &env()).unwrap_err();
        assert!(e.0.contains("memory_kib"));
        let e = parse(Some("[password]\niterations = 1\n"), &env()).unwrap_err();
        assert!(e.0.contains("iterations"));
    }

    #[test]
    fn issuer_with_query_is_refused() {
        assert!(parse(Some("issuer = \"https://x/?a=b\"\n"), &env()).is_err());
        assert!(parse(Some("issuer = \"ftp://x\"\n"), &env()).is_err());
        assert!(parse(Some("issuer = \"https://x/idp\"\n"), &env()).is_err());
        assert!(parse(Some("issuer = \"https://x/\"\n"), &env()).is_ok());
        assert!(parse(Some("issuer = \"http://id.example\"\n"), &env()).is_err());
        assert!(parse(Some("issuer = \"http://127.0.0.1:8080\"\n"), &env()).is_ok());
        assert!(parse(Some("issuer = \"http://[::1]:8080\"\n"), &env()).is_ok());
        // A derived default is made canonical instead of refused.
        let upper = Env {
            hostname: "ID.Example".into(),
            ..env()
        };
        let c = parse(Some("listen = \"0.0.0.0:443\"\n"), &upper).unwrap();
        assert_eq!(c.issuer, "https://id.example");
        // Found by the config fuzz target: the URL parser accepts these, but they are not
        // the string a relying party will compare with.
        for odd in [
            "https:id.example",
            "HTTPS://id.example",
            "https://ID.example",
            "https://id.example:443",
            "https:/id.example",
        ] {
            let e = parse(Some(&format!("issuer = \"{odd}\"\n")), &env()).unwrap_err();
            assert!(e.0.contains("canonical"), "{odd}: {}", e.0);
        }
    }

    #[test]
    fn tls_files_needs_both_paths() {
        assert!(parse(Some("[tls]\nmode = \"files\"\ncert = \"/c\"\n"), &env()).is_err());
        let c = parse(Some("[tls]\nmode = \"off\"\n"), &env()).unwrap();
        assert_eq!(
            c.issuer, "https://op.example:8443",
            "behind a proxy the issuer stays https"
        );
    }

    #[test]
    fn declared_clients_are_validated() {
        let good = r#"
[[clients]]
client_id = "grafana"
name = "Grafana"
secret_hash = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
redirect_uris = ["https://grafana.example/login/generic_oauth"]
"#;
        let c = parse(Some(good), &env()).unwrap();
        let g = &c.declared_clients["grafana"];
        assert!(g.declared);
        assert!(!g.is_public());
        let bad = good.replace("https://grafana.example/login/generic_oauth", "not a url");
        let e = parse(Some(&bad), &env()).unwrap_err();
        assert!(e.0.contains("redirect_uri"), "{e}");
        let bad = good.replace("sha256:0000", "plain");
        assert!(
            parse(Some(&bad), &env())
                .unwrap_err()
                .0
                .contains("secret_hash")
        );
    }
}
