//! Latchkey's entry point: arguments → configuration → a server run or one management
//! command. Errors become exit codes here: 2 for bad input, 1 for everything else.

use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;

use argh::FromArgs;

use latchkey::admin::{self, AdminError, ClientPatch, Command, NewUser};
use latchkey::cli::{self, ClientAction, Cmd, KeysAction, UserAction};
use latchkey::model::Address;
use latchkey::oidc::registration::ClientSpec;
use latchkey::{clock, config, output, server};

fn main() -> ExitCode {
    latchkey::panic::install_hook();
    let args: Vec<String> = std::env::args().collect();
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let cli = match cli::Cli::from_args(&strs[..1], &strs[1..]) {
        Ok(c) => c,
        Err(early) => {
            return match early.status {
                Ok(()) => {
                    println!("{}", early.output);
                    ExitCode::SUCCESS
                }
                Err(()) => {
                    eprintln!("{}", early.output.trim_end());
                    ExitCode::from(2)
                }
            };
        }
    };
    match cli.command {
        Cmd::Serve(s) => serve(s.config.as_deref()),
        Cmd::CheckConfig(c) => match config::load(c.config.as_deref()) {
            Ok(cfg) => {
                println!(
                    "configuration is valid: issuer {}, listen {}, data_dir {}, {} declared client(s)",
                    cfg.issuer,
                    cfg.listen,
                    cfg.data_dir.display(),
                    cfg.declared_clients.len()
                );
                if let Some(l) = &cfg.ldap {
                    println!(
                        "directory: {} ({}), {}",
                        l.url,
                        l.preset,
                        match l.sync_interval_secs {
                            0 => "no periodic sync: people removed from the directory keep access here until `latchkey ldap sync`".to_string(),
                            n => format!("synced every {n} s"),
                        }
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(2, &e.to_string()),
        },
        Cmd::Group(g) => match g.action {
            cli::GroupAction::SetAttribute(a) => manage(
                a.config.as_deref(),
                a.json,
                Command::GroupSetAttribute {
                    name: a.name,
                    key: a.key,
                    value: a.value.as_deref().map(attribute_value),
                },
            ),
        },
        Cmd::Ldap(l) => match l.action {
            cli::LdapAction::Test(t) => ldap_test(t),
            cli::LdapAction::Sync(s) => manage(
                s.config.as_deref(),
                s.json,
                Command::LdapSync { force: s.force },
            ),
        },
        Cmd::Mail(m) => match m.action {
            cli::MailAction::Test(t) => mail_test(t),
            cli::MailAction::Queue(q) => manage(q.config.as_deref(), q.json, Command::MailQueue),
            cli::MailAction::Retry(r) => manage(r.config.as_deref(), r.json, Command::MailRetry),
        },
        Cmd::Version(_) => {
            println!("latchkey {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Cmd::User(u) => user(u.action),
        Cmd::Backup(b) => backup(b),
        Cmd::Restore(r) => restore(r),
        Cmd::Migrate(m) => migrate(m),
        Cmd::Client(c) => client(c.action),
        Cmd::Keys(k) => match k.action {
            KeysAction::List(l) => manage(l.config.as_deref(), l.json, Command::KeysList),
            KeysAction::Rotate(r) => manage(
                r.config.as_deref(),
                r.json,
                Command::KeysRotate { alg: r.alg },
            ),
        },
        Cmd::Audit(a) => {
            let since = match a.since.as_deref().map(parse_since) {
                None => 0,
                Some(Ok(s)) => s,
                Some(Err(e)) => return fail(2, &e),
            };
            manage(
                a.config.as_deref(),
                a.json,
                Command::Audit {
                    since,
                    user: a.user,
                    limit: a.limit,
                },
            )
        }
    }
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("latchkey: {message}");
    ExitCode::from(code)
}

fn serve(config_path: Option<&Path>) -> ExitCode {
    let config = match config::load(config_path) {
        Ok(c) => c,
        Err(e) => return fail(2, &e.to_string()),
    };
    let level = match std::env::var("LATCHKEY_LOG").as_deref() {
        Ok("debug") => tracing::Level::DEBUG,
        Ok("warn") => tracing::Level::WARN,
        _ => tracing::Level::INFO,
    };
    // Colours only on a terminal: the journal and files get plain text (or JSON).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // rustls warns per connection about what clients send (an IP address as SNI, which
    // wrk and some libraries do): noise on a busy server, shown only at debug level.
    let rustls = if level == tracing::Level::DEBUG {
        tracing::Level::DEBUG
    } else {
        tracing::Level::ERROR
    };
    let targets = tracing_subscriber::filter::Targets::new()
        .with_default(level)
        .with_target("rustls", rustls);
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr);
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        if config.log_json {
            builder.json().finish().with(targets).init();
        } else {
            builder.with_ansi(ansi).finish().with(targets).init();
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(1, &format!("runtime: {e}")),
    };
    match runtime.block_on(server::run(config, config_path.map(Path::to_path_buf))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(1, &e),
    }
}

/// `--since`: Unix seconds, or an age like `30m`, `24h`, `7d`.
fn parse_since(s: &str) -> Result<i64, String> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("since: {s:?} is not seconds or an age such as 24h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("since: {s:?} is not seconds or an age such as 24h")),
    };
    Ok(clock::now() - secs)
}

fn read_password(stdin_flag: bool) -> Result<String, String> {
    if !stdin_flag {
        return Err(
            "password: pass --password-stdin and write the password on standard input".into(),
        );
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("password: {e}"))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

fn user(action: UserAction) -> ExitCode {
    let (config, json, cmd) = match action {
        UserAction::Add(a) => {
            let password = match read_password(a.password_stdin) {
                Ok(p) => p,
                Err(e) => return fail(2, &e),
            };
            let Some(email) = a.email else {
                return fail(2, "email: --email is required");
            };
            let user = NewUser {
                username: a.name,
                email,
                given_name: a.given_name,
                family_name: a.family_name,
                phone: a.phone,
                address: Address {
                    street_address: a.street_address,
                    locality: a.locality,
                    region: a.region,
                    postal_code: a.postal_code,
                    country: a.country,
                },
                groups: a.group,
                must_change_password: false,
                email_verified: a.email_verified,
                attributes: None,
            };
            (
                a.config,
                a.json,
                Command::UserAdd {
                    user,
                    password,
                    admin: a.admin,
                    temporary: false,
                },
            )
        }
        UserAction::Invite(i) => {
            let cmd = match (i.resend, i.revoke, i.email) {
                (true, true, _) => return fail(2, "--resend and --revoke: choose one"),
                (true, false, _) => Command::UserInviteResend { username: i.name },
                (false, true, _) => Command::UserInviteRevoke { username: i.name },
                (false, false, None) => return fail(2, "email: --email is required"),
                (false, false, Some(email)) => Command::UserInvite {
                    user: NewUser {
                        username: i.name,
                        email,
                        given_name: i.given_name,
                        family_name: i.family_name,
                        groups: i.group,
                        ..NewUser::default()
                    },
                },
            };
            (i.config, i.json, cmd)
        }
        UserAction::Update(u) => {
            let email_verified = match (u.email_verified, u.email_unverified) {
                (true, true) => {
                    return fail(2, "--email-verified and --email-unverified: choose one");
                }
                (true, false) => Some(true),
                (false, true) => Some(false),
                (false, false) => None,
            };
            (
                u.config,
                u.json,
                Command::UserEdit {
                    username: u.name,
                    email: u.email,
                    given_name: u.given_name,
                    family_name: u.family_name,
                    phone: u.phone,
                    email_verified,
                },
            )
        }
        UserAction::SetAttribute(a) => (
            a.config,
            a.json,
            Command::UserSetAttribute {
                username: a.name,
                key: a.key,
                value: a.value.as_deref().map(attribute_value),
            },
        ),
        UserAction::List(l) => (l.config, l.json, Command::UserList),
        UserAction::Show(n) => (n.config, n.json, Command::UserShow { username: n.name }),
        UserAction::Disable(n) => (n.config, n.json, Command::UserDisable { username: n.name }),
        UserAction::Enable(n) => (n.config, n.json, Command::UserEnable { username: n.name }),
        UserAction::Delete(n) => (n.config, n.json, Command::UserDelete { username: n.name }),
        UserAction::Reset2fa(n) => (n.config, n.json, Command::UserResetMfa { username: n.name }),
        UserAction::RemovePasskeys(n) => (
            n.config,
            n.json,
            Command::UserRemovePasskeys {
                username: n.name,
                id: None,
            },
        ),
        UserAction::RequirePasskeys(n) => (
            n.config,
            n.json,
            Command::UserPasskeysOnly {
                username: n.name,
                on: true,
            },
        ),
        UserAction::AllowPassword(n) => (
            n.config,
            n.json,
            Command::UserPasskeysOnly {
                username: n.name,
                on: false,
            },
        ),
        UserAction::Passwd(p) => {
            let password = match read_password(p.password_stdin) {
                Ok(p) => p,
                Err(e) => return fail(2, &e),
            };
            (
                p.config,
                p.json,
                Command::UserPasswd {
                    username: p.name,
                    password,
                    temporary: p.temporary,
                },
            )
        }
        UserAction::GroupAdd(g) => (
            g.config,
            g.json,
            Command::UserGroupAdd {
                username: g.name,
                group: g.group,
            },
        ),
        UserAction::GroupDel(g) => (
            g.config,
            g.json,
            Command::UserGroupDel {
                username: g.name,
                group: g.group,
            },
        ),
    };
    manage(config.as_deref(), json, cmd)
}

fn client(action: ClientAction) -> ExitCode {
    let (config, json, cmd) = match action {
        ClientAction::Add(a) => {
            let preset = match (a.preset, a.url) {
                (Some(p), Some(u)) => Some((p, u)),
                (None, None) => None,
                _ => return fail(2, "preset: --preset and --url go together"),
            };
            let name = match (a.name, &preset) {
                (Some(n), _) => n,
                // The preset names the application.
                (None, Some(_)) => String::new(),
                (None, None) => return fail(2, "name: --name is required"),
            };
            let jwks = match &a.jwks_file {
                None => None,
                Some(p) => match std::fs::read_to_string(p) {
                    Ok(s) => Some(s),
                    Err(e) => return fail(2, &format!("jwks_file: {}: {e}", p.display())),
                },
            };
            let spec = ClientSpec {
                name,
                redirect_uris: a.redirect_uri,
                post_logout_redirect_uris: a.post_logout_redirect_uri,
                scopes: a.scope,
                grant_types: a.grant_type,
                response_types: a.response_type,
                public: a.public,
                token_endpoint_auth_method: a.token_endpoint_auth_method,
                policy: a.policy,
                skip_consent: a.skip_consent,
                id_token_alg: a.id_token_alg,
                require_pkce: a.require_pkce,
                backchannel_logout_uri: a.backchannel_logout_uri,
                frontchannel_logout_uri: a.frontchannel_logout_uri,
                frontchannel_logout_session_required: a.frontchannel_logout_session_required,
                allowed_groups: a.allowed_group,
                jwks,
                jwks_uri: a.jwks_uri,
                require_par: a.require_par,
                refresh_requires_session: a.refresh_requires_session,
                refresh_grace_secs: a.refresh_grace_secs.unwrap_or(0),
                groups_filter: a.groups_filter,
                claims: match claim_rules(&a.claim) {
                    Ok(c) => c,
                    Err(e) => return fail(2, &e),
                },
            };
            (a.config, a.json, Command::ClientAdd { spec, preset })
        }
        ClientAction::List(l) => (l.config, l.json, Command::ClientList),
        ClientAction::Show(o) => (
            o.config,
            o.json,
            Command::ClientShow {
                client_id: o.client_id,
            },
        ),
        ClientAction::RotateSecret(o) => (
            o.config,
            o.json,
            Command::ClientRotateSecret {
                client_id: o.client_id,
            },
        ),
        ClientAction::Delete(o) => (
            o.config,
            o.json,
            Command::ClientDelete {
                client_id: o.client_id,
            },
        ),
        ClientAction::Update(u) => {
            if u.skip_consent && u.ask_consent {
                return fail(
                    2,
                    "skip_consent: --skip-consent and --ask-consent contradict each other",
                );
            }
            if u.any_group && !u.allowed_group.is_empty() {
                return fail(
                    2,
                    "allowed_group: --any-group and --allowed-group contradict each other",
                );
            }
            let patch = ClientPatch {
                name: u.name,
                redirect_uris: u.redirect_uri,
                post_logout_redirect_uris: u.post_logout_redirect_uri,
                scopes: u.scope,
                grant_types: u.grant_type,
                response_types: vec![],
                skip_consent: if u.skip_consent {
                    Some(true)
                } else if u.ask_consent {
                    Some(false)
                } else {
                    None
                },
                require_pkce: u.require_pkce.then_some(true),
                id_token_alg: u.id_token_alg,
                policy: None,
                backchannel_logout_uri: u.backchannel_logout_uri,
                frontchannel_logout_uri: u.frontchannel_logout_uri,
                refresh_requires_session: None,
                refresh_grace_secs: u.refresh_grace_secs,
                claims: match (u.no_claims, claim_rules(&u.claim)) {
                    (true, _) => Some(vec![]),
                    (false, Err(e)) => return fail(2, &e),
                    (false, Ok(c)) if c.is_empty() => None,
                    (false, Ok(c)) => Some(c),
                },
                groups_filter: if u.all_groups {
                    Some(vec![])
                } else if u.groups_filter.is_empty() {
                    None
                } else {
                    Some(u.groups_filter)
                },
                allowed_groups: if u.any_group {
                    Some(vec![])
                } else if u.allowed_group.is_empty() {
                    None
                } else {
                    Some(u.allowed_group)
                },
            };
            (
                u.config,
                u.json,
                Command::ClientUpdate {
                    client_id: u.client_id,
                    patch,
                },
            )
        }
    };
    manage(config.as_deref(), json, cmd)
}

fn print_result(json: bool, result: Result<serde_json::Value, AdminError>) -> ExitCode {
    match result {
        Ok(v) => {
            if json {
                println!("{v}");
            } else {
                print!("{}", output::human(&v));
            }
            // A command whose mail was not sent did its work, but says so (SPEC §12:
            // never reported as sent): exit code 1 and the reason on stderr.
            if let Some(e) = v.get("mail_error").and_then(|e| e.as_str()) {
                eprintln!("mail: {e}");
                return ExitCode::from(1);
            }
            // `mail queue`: mail given up on is a failure to look at.
            if v.as_array()
                .is_some_and(|a| a.iter().any(|m| m["failed"] == true))
            {
                eprintln!("mail: some mail could not be sent (see last_error)");
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.exit_code.clamp(1, 2) as u8, &e.message),
    }
}

/// `latchkey ldap test [--user NAME]`: what the directory answers, or where it failed.
fn ldap_test(t: cli::LdapTest) -> ExitCode {
    let config = match config::load(t.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(2, &e.to_string()),
    };
    let Some(settings) = &config.ldap else {
        return fail(2, "ldap: not configured (add an [ldap] section)");
    };
    let dir = match latchkey::ldap::Directory::new(settings) {
        Ok(d) => d,
        Err(e) => return fail(2, &e),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(1, &format!("runtime: {e}")),
    };
    match runtime.block_on(dir.report(t.user.as_deref())) {
        Ok(v) => {
            if t.json {
                println!("{v}");
            } else {
                print!("{}", output::human(&v));
            }
            if t.user.is_some() && v["user"].is_null() {
                eprintln!("ldap: no such person (or one without a unique id)");
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, &format!("ldap: {e}")),
    }
}

/// An attribute's value from the command line: JSON when it reads as a number, a boolean
/// or a list, else the text itself.
fn attribute_value(text: &str) -> serde_json::Value {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(
            v @ (serde_json::Value::Number(_)
            | serde_json::Value::Bool(_)
            | serde_json::Value::Array(_)),
        ) => v,
        _ => serde_json::Value::String(text.to_string()),
    }
}

/// `--claim JSON` options as claim rules; `Err` names the bad one.
fn claim_rules(texts: &[String]) -> Result<Vec<latchkey::model::ClaimRule>, String> {
    texts
        .iter()
        .map(|t| serde_json::from_str(t).map_err(|e| format!("claim: {t:?}: {e}")))
        .collect()
}

/// `latchkey mail test --to ADDRESS`: one message through `[mail]`, at once; prints the
/// server's answer, or the stage that failed (DNS, connection, TLS, authentication,
/// refusal) with the detail.
fn mail_test(t: cli::MailTest) -> ExitCode {
    let config = match config::load(t.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(2, &e.to_string()),
    };
    let mailer = match admin::mailer(&config) {
        None => return fail(2, "mail: not configured (add a [mail] section)"),
        Some(Err(e)) => return fail(2, &e),
        Some(Ok(m)) => m,
    };
    let letter = latchkey::mail::compose::compose(
        latchkey::mail::compose::Letter::Test,
        config.default_language,
        &config.instance_name,
        "",
        "",
    );
    match mailer.send(&t.to, &letter) {
        Ok(answer) => {
            println!("sent to {}: the server answered {answer}", t.to);
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, &format!("mail not sent: {e}")),
    }
}

fn backup(b: cli::Backup) -> ExitCode {
    let config = match config::load(b.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(2, &e.to_string()),
    };
    if b.file.exists() {
        return fail(2, &format!("file: {} already exists", b.file.display()));
    }
    let result = match admin::socket::call_backup(&config.data_dir, &b.file) {
        Ok(r) => r,
        Err(admin::socket::CallError::NotRunning) => {
            let io = |m: String| AdminError {
                message: m,
                exit_code: 1,
            };
            latchkey::datadir::open_store(&config)
                .map_err(io)
                .and_then(|store| admin::backup_direct(store.as_ref(), &b.file))
        }
        Err(admin::socket::CallError::Broken(e)) => return fail(1, &format!("backup failed: {e}")),
    };
    print_result(b.json, result)
}

fn restore(r: cli::Restore) -> ExitCode {
    let config = match config::load(r.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(2, &e.to_string()),
    };
    if let config::store::Backend::Postgres { .. } = config.store {
        return fail(
            2,
            "restore: the store is PostgreSQL; restore it with pg_restore or psql (docs/cluster.md)",
        );
    }
    if !r.file.is_file() {
        return fail(2, &format!("file: {} is not a file", r.file.display()));
    }
    if let Err(e) = latchkey::datadir::ensure_data_dir(&config.data_dir) {
        return fail(1, &e);
    }
    print_result(
        r.json,
        admin::restore(&config.data_dir, &r.file, clock::now()),
    )
}

/// `latchkey migrate`: redb file ⇄ PostgreSQL, into an empty target, checked by counts.
fn migrate(m: cli::Migrate) -> ExitCode {
    use latchkey::store::postgres::PgStore;
    use latchkey::store::redb::RedbStore;
    let config = match config::load(m.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(2, &e.to_string()),
    };
    let (url, to_postgres) = match (m.to, m.from) {
        (Some(u), None) => (u, true),
        (None, Some(u)) => (u, false),
        _ => return fail(2, "migrate: give either --to URL or --from URL"),
    };
    let raw = config::store::RawStore {
        backend: Some("postgres".into()),
        url: Some(url),
        password_file: m.password_file,
        ca_file: m.ca_file,
        pool_size: Some(2),
    };
    let settings = match config::store::settings(raw) {
        Ok(config::store::Backend::Postgres { settings, .. }) => settings,
        Ok(config::store::Backend::Redb) => return fail(2, "migrate: not a PostgreSQL URL"),
        Err(e) => return fail(2, &e.replacen("store.", "", 1)),
    };
    if let Err(e) = latchkey::datadir::ensure_data_dir(&config.data_dir) {
        return fail(1, &e);
    }
    let file = match latchkey::datadir::open_redb(&config.data_dir) {
        Ok(f) => f,
        Err(e) => return fail(1, &e),
    };
    let pg = match PgStore::open(&settings) {
        Ok(p) => p,
        Err(e) => return fail(1, &format!("PostgreSQL: {e}")),
    };
    // A copy from a database nodes still use could pair an old record with newer ones:
    // the nodes must be stopped (their maintenance lease, renewed every minute, says).
    if !to_postgres
        && let Ok(Some(lease)) = latchkey::store::Upkeep::meta(&pg, "lease:maintenance")
        && lease
            .split_once(' ')
            .and_then(|(until, _)| until.parse::<i64>().ok())
            .is_some_and(|until| until > clock::now())
    {
        return fail(
            1,
            "migrate: Latchkey nodes are using this database (their maintenance lease is \
             live); stop them first (a stopped node's lease runs out within 150 seconds)",
        );
    }
    let copied = if to_postgres {
        latchkey::store::migrate::copy(&file, &pg)
    } else {
        latchkey::store::migrate::copy(&pg, &file)
    };
    let _: &RedbStore = &file;
    match copied {
        Ok(c) => {
            let tables: serde_json::Map<String, serde_json::Value> = c
                .tables
                .iter()
                .map(|(t, n)| (t.to_string(), serde_json::json!(n)))
                .collect();
            print_result(
                m.json,
                Ok(serde_json::json!({
                    "copied": tables,
                    "audit_events": c.audit_events,
                    "to": if to_postgres { "postgres" } else { "redb" },
                })),
            )
        }
        Err(e) => fail(1, &format!("migrate: {e}")),
    }
}

/// Runs a management command through the running server's admin socket, or on the
/// database directly when no server runs; prints the result.
fn manage(config_path: Option<&Path>, json: bool, cmd: Command) -> ExitCode {
    let config = match config::load(config_path) {
        Ok(c) => c,
        Err(e) => return fail(2, &e.to_string()),
    };
    let result = match admin::socket::call(&config.data_dir, &cmd) {
        Ok(r) => r,
        Err(admin::socket::CallError::NotRunning) => direct(&config, cmd),
        Err(admin::socket::CallError::Broken(e)) => {
            return fail(
                1,
                &format!("the running server did not answer the command: {e}"),
            );
        }
    };
    print_result(json, result)
}

fn direct(config: &config::Config, cmd: Command) -> Result<serde_json::Value, AdminError> {
    let io = |m: String| AdminError {
        message: m,
        exit_code: 1,
    };
    latchkey::datadir::ensure_data_dir(&config.data_dir).map_err(io)?;
    let store = latchkey::datadir::open_store(config).map_err(io)?;
    if let Command::LdapSync { force } = cmd {
        // Multi-threaded, as the server's: its blocking threads call the store directly
        // (PostgreSQL's connections enter runtimes of their own, which a thread of a
        // single-threaded runtime cannot).
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| io(format!("runtime: {e}")))?;
        return runtime.block_on(admin::sync_directory(store, config, force, clock::now()));
    }
    admin::execute(store.as_ref(), config, cmd, "cli", clock::now())
}
