//! Command-line arguments (argh structs only; opens no files). `main.rs` turns them into
//! admin commands or a server run.

use std::path::PathBuf;

use argh::FromArgs;

#[derive(FromArgs)]
/// Latchkey: a single-binary OpenID Connect Provider.
pub struct Cli {
    #[argh(subcommand)]
    pub command: Cmd,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum Cmd {
    Serve(Serve),
    User(UserCmd),
    Client(ClientCmd),
    Keys(KeysCmd),
    Audit(Audit),
    Backup(Backup),
    Restore(Restore),
    Migrate(Migrate),
    CheckConfig(CheckConfig),
    Group(GroupCmd),
    Ldap(LdapCmd),
    Mail(MailCmd),
    Version(Version),
}

#[derive(FromArgs)]
/// The directory (SPEC §11).
#[argh(subcommand, name = "ldap")]
pub struct LdapCmd {
    #[argh(subcommand)]
    pub action: LdapAction,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum LdapAction {
    Test(LdapTest),
    Sync(LdapSync),
}

#[derive(FromArgs)]
/// Bring the directory's people and groups here now: created, updated, disabled when
/// removed or disabled there (their sign-ins and tokens end). Carried out by the running
/// server when there is one.
#[argh(subcommand, name = "sync")]
pub struct LdapSync {
    /// apply removals even when they are many (more than 5 and a quarter of the
    /// directory's accounts are held back otherwise, as a wrong base or filter looks so)
    #[argh(switch)]
    pub force: bool,
    /// configuration file
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

#[derive(FromArgs)]
/// Connect and bind as the service account, and find a person (their DN, attributes,
/// groups); prints what it found or the exact failure (connection, TLS, bind, search).
#[argh(subcommand, name = "test")]
pub struct LdapTest {
    /// a username to look up
    #[argh(option)]
    pub user: Option<String>,
    /// configuration file
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

#[derive(FromArgs)]
/// Groups: their custom attributes (SPEC §14).
#[argh(subcommand, name = "group")]
pub struct GroupCmd {
    #[argh(subcommand)]
    pub action: GroupAction,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum GroupAction {
    SetAttribute(GroupSetAttribute),
}

#[derive(FromArgs)]
/// Set a group's attribute (a string, or JSON: a number, true/false, a list), or remove
/// it when no value is given.
#[argh(subcommand, name = "set-attribute")]
pub struct GroupSetAttribute {
    /// group name
    #[argh(positional)]
    pub name: String,
    /// attribute name
    #[argh(positional)]
    pub key: String,
    /// the value (absent: remove the attribute)
    #[argh(positional)]
    pub value: Option<String>,
    /// configuration file
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

#[derive(FromArgs)]
/// Set a user's attribute (a string, or JSON: a number, true/false, a list), or remove it
/// when no value is given.
#[argh(subcommand, name = "set-attribute")]
pub struct UserSetAttribute {
    /// username
    #[argh(positional)]
    pub name: String,
    /// attribute name
    #[argh(positional)]
    pub key: String,
    /// the value (absent: remove the attribute)
    #[argh(positional)]
    pub value: Option<String>,
    /// configuration file
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

#[derive(FromArgs)]
/// Mail: send a test, see the outbox, retry it.
#[argh(subcommand, name = "mail")]
pub struct MailCmd {
    #[argh(subcommand)]
    pub action: MailAction,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum MailAction {
    Test(MailTest),
    Queue(MailQueue),
    Retry(MailRetry),
}

#[derive(FromArgs)]
/// Send a test mail through [mail] and print the server's answer or the exact failure.
#[argh(subcommand, name = "test")]
pub struct MailTest {
    /// the address to send to
    #[argh(option)]
    pub to: String,
    /// configuration file
    #[argh(option)]
    pub config: Option<PathBuf>,
}

#[derive(FromArgs)]
/// List the mail waiting to be sent or given up on (exit code 1 when some failed).
#[argh(subcommand, name = "queue")]
pub struct MailQueue {
    /// configuration file
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

#[derive(FromArgs)]
/// Try every waiting or failed mail again now.
#[argh(subcommand, name = "retry")]
pub struct MailRetry {
    /// configuration file
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

#[derive(FromArgs)]
/// Run the server.
#[argh(subcommand, name = "serve")]
pub struct Serve {
    /// configuration file (default: $LATCHKEY_CONFIG or /etc/latchkey/latchkey.toml)
    #[argh(option)]
    pub config: Option<PathBuf>,
}

#[derive(FromArgs)]
/// Validate the configuration without starting.
#[argh(subcommand, name = "check-config")]
pub struct CheckConfig {
    /// configuration file
    #[argh(option)]
    pub config: Option<PathBuf>,
}

#[derive(FromArgs)]
/// Copy the redb database of the data directory into an empty PostgreSQL database
/// (--to URL), or a PostgreSQL database into the data directory's redb file (--from URL).
/// No server may be running on the redb file.
#[argh(subcommand, name = "migrate")]
pub struct Migrate {
    /// the PostgreSQL database to copy into (postgres://user@host/db)
    #[argh(option)]
    pub to: Option<String>,
    /// the PostgreSQL database to copy from
    #[argh(option)]
    pub from: Option<String>,
    /// a file (0600) holding the database password
    #[argh(option)]
    pub password_file: Option<PathBuf>,
    /// the CA certificate (PEM) that signed the database server's certificate
    #[argh(option)]
    pub ca_file: Option<PathBuf>,
    /// configuration file
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

#[derive(FromArgs)]
/// Write a consistent copy of the database to FILE (0600), server running or not.
#[argh(subcommand, name = "backup")]
pub struct Backup {
    /// where to write the copy (must not exist)
    #[argh(positional)]
    pub file: PathBuf,
    /// configuration file
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

#[derive(FromArgs)]
/// Replace the database with a backup (server stopped); the old one is kept aside.
#[argh(subcommand, name = "restore")]
pub struct Restore {
    /// the backup file
    #[argh(positional)]
    pub file: PathBuf,
    /// configuration file
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

#[derive(FromArgs)]
/// Print the version.
#[argh(subcommand, name = "version")]
pub struct Version {}

#[derive(FromArgs)]
/// Manage users.
#[argh(subcommand, name = "user")]
pub struct UserCmd {
    #[argh(subcommand)]
    pub action: UserAction,
}

#[derive(FromArgs)]
#[argh(subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum UserAction {
    Add(UserAdd),
    Invite(UserInvite),
    Update(UserUpdate),
    SetAttribute(UserSetAttribute),
    List(UserList),
    Show(UserNamed<0>),
    Passwd(UserPasswd),
    Disable(UserNamed<1>),
    Enable(UserNamed<2>),
    Delete(UserNamed<3>),
    Reset2fa(UserNamed<4>),
    RemovePasskeys(UserNamed<5>),
    RequirePasskeys(UserNamed<6>),
    AllowPassword(UserNamed<7>),
    GroupAdd(UserGroup<0>),
    GroupDel(UserGroup<1>),
}

#[derive(FromArgs)]
/// Add a user.
#[argh(subcommand, name = "add")]
pub struct UserAdd {
    /// username
    #[argh(positional)]
    pub name: String,
    /// email address
    #[argh(option)]
    pub email: Option<String>,
    /// read the password from the first line of standard input
    #[argh(switch)]
    pub password_stdin: bool,
    /// given name
    #[argh(option)]
    pub given_name: Option<String>,
    /// family name
    #[argh(option)]
    pub family_name: Option<String>,
    /// phone number
    #[argh(option)]
    pub phone: Option<String>,
    /// street address
    #[argh(option)]
    pub street_address: Option<String>,
    /// city or locality
    #[argh(option)]
    pub locality: Option<String>,
    /// region or state
    #[argh(option)]
    pub region: Option<String>,
    /// postal code
    #[argh(option)]
    pub postal_code: Option<String>,
    /// country
    #[argh(option)]
    pub country: Option<String>,
    /// group (repeatable)
    #[argh(option)]
    pub group: Vec<String>,
    /// make the user an administrator (group "admin")
    #[argh(switch)]
    pub admin: bool,
    /// the email address is known to be the user's (email_verified)
    #[argh(switch)]
    pub email_verified: bool,
    /// configuration file
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

#[derive(FromArgs)]
/// Invite a user by mail: they choose their password at the link (7 days, single use).
/// Again with --resend, or withdraw it with --revoke.
#[argh(subcommand, name = "invite")]
pub struct UserInvite {
    /// username
    #[argh(positional)]
    pub name: String,
    /// email address (required for a new invitation)
    #[argh(option)]
    pub email: Option<String>,
    /// given name
    #[argh(option)]
    pub given_name: Option<String>,
    /// family name
    #[argh(option)]
    pub family_name: Option<String>,
    /// group (repeatable)
    #[argh(option)]
    pub group: Vec<String>,
    /// mail the pending invitation again (a new link, 7 days from now)
    #[argh(switch)]
    pub resend: bool,
    /// withdraw the pending invitation (its link stops working)
    #[argh(switch)]
    pub revoke: bool,
    /// configuration file
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

#[derive(FromArgs)]
/// Change a user's contact fields (the others stay as they are).
#[argh(subcommand, name = "update")]
pub struct UserUpdate {
    /// username
    #[argh(positional)]
    pub name: String,
    /// email address (a new one is unverified unless --email-verified is given too)
    #[argh(option)]
    pub email: Option<String>,
    /// given name
    #[argh(option)]
    pub given_name: Option<String>,
    /// family name
    #[argh(option)]
    pub family_name: Option<String>,
    /// phone number
    #[argh(option)]
    pub phone: Option<String>,
    /// the email address is known to be the user's
    #[argh(switch)]
    pub email_verified: bool,
    /// the email address is not verified
    #[argh(switch)]
    pub email_unverified: bool,
    /// configuration file
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

#[derive(FromArgs)]
/// List users.
#[argh(subcommand, name = "list")]
pub struct UserList {
    /// configuration file
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// A command on one user: show (0), disable (1), enable (2), delete (3).
pub struct UserNamed<const K: u8> {
    pub name: String,
    pub config: Option<PathBuf>,
    pub json: bool,
}

macro_rules! user_named {
    ($k:literal, $name:literal, $doc:literal) => {
        #[derive(FromArgs)]
        #[doc = $doc]
        #[argh(subcommand, name = $name)]
        struct Raw {
            /// username
            #[argh(positional)]
            name: String,
            /// configuration file
            #[argh(option)]
            config: Option<PathBuf>,
            /// print JSON
            #[argh(switch)]
            json: bool,
        }
        impl argh::SubCommand for UserNamed<$k> {
            const COMMAND: &'static argh::CommandInfo = Raw::COMMAND;
        }
        impl FromArgs for UserNamed<$k> {
            fn from_args(command_name: &[&str], args: &[&str]) -> Result<Self, argh::EarlyExit> {
                let r = Raw::from_args(command_name, args)?;
                Ok(UserNamed {
                    name: r.name,
                    config: r.config,
                    json: r.json,
                })
            }
        }
    };
}

mod named_show {
    use super::*;
    user_named!(0, "show", "Show a user.");
}
mod named_disable {
    use super::*;
    user_named!(1, "disable", "Disable a user (their sessions end at once).");
}
mod named_enable {
    use super::*;
    user_named!(2, "enable", "Enable a user.");
}
mod named_delete {
    use super::*;
    user_named!(3, "delete", "Delete a user.");
}
mod named_reset_2fa {
    use super::*;
    user_named!(
        4,
        "reset-2fa",
        "Remove a user's second factor (TOTP, recovery codes, trusted browsers)."
    );
}

mod named_require_passkeys {
    use super::*;
    user_named!(
        6,
        "require-passkeys",
        "Sign a user in with passkeys only: the password alone is refused (a security key or a recovery code may follow it; a reset link is the way back)."
    );
}

mod named_allow_password {
    use super::*;
    user_named!(
        7,
        "allow-password",
        "Let a user who had to use passkeys sign in with the password again."
    );
}

mod named_remove_passkeys {
    use super::*;
    user_named!(
        5,
        "remove-passkeys",
        "Remove all of a user's passkeys and security keys (lost devices)."
    );
}

#[derive(FromArgs)]
/// Set a user's password.
#[argh(subcommand, name = "passwd")]
pub struct UserPasswd {
    /// username
    #[argh(positional)]
    pub name: String,
    /// read the password from the first line of standard input
    #[argh(switch)]
    pub password_stdin: bool,
    /// a temporary password: the user must choose a new one at the next sign-in
    #[argh(switch)]
    pub temporary: bool,
    /// configuration file
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Add (0) or remove (1) a group membership.
pub struct UserGroup<const K: u8> {
    pub name: String,
    pub group: String,
    pub config: Option<PathBuf>,
    pub json: bool,
}

macro_rules! user_group {
    ($k:literal, $name:literal, $doc:literal) => {
        #[derive(FromArgs)]
        #[doc = $doc]
        #[argh(subcommand, name = $name)]
        struct Raw {
            /// username
            #[argh(positional)]
            name: String,
            /// group name
            #[argh(positional)]
            group: String,
            /// configuration file
            #[argh(option)]
            config: Option<PathBuf>,
            /// print JSON
            #[argh(switch)]
            json: bool,
        }
        impl argh::SubCommand for UserGroup<$k> {
            const COMMAND: &'static argh::CommandInfo = Raw::COMMAND;
        }
        impl FromArgs for UserGroup<$k> {
            fn from_args(command_name: &[&str], args: &[&str]) -> Result<Self, argh::EarlyExit> {
                let r = Raw::from_args(command_name, args)?;
                Ok(UserGroup {
                    name: r.name,
                    group: r.group,
                    config: r.config,
                    json: r.json,
                })
            }
        }
    };
}

mod group_add {
    use super::*;
    user_group!(0, "group-add", "Add a user to a group.");
}
mod group_del {
    use super::*;
    user_group!(1, "group-del", "Remove a user from a group.");
}

#[derive(FromArgs)]
/// Manage OpenID applications (clients).
#[argh(subcommand, name = "client")]
pub struct ClientCmd {
    #[argh(subcommand)]
    pub action: ClientAction,
}

#[derive(FromArgs)]
#[argh(subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum ClientAction {
    Add(ClientAdd),
    List(ClientList),
    Show(ClientOne<0>),
    Update(ClientUpdate),
    RotateSecret(ClientOne<1>),
    Delete(ClientOne<2>),
}

#[derive(FromArgs)]
/// Register an application; prints its client_id and (once) its secret.
#[argh(subcommand, name = "add")]
pub struct ClientAdd {
    /// start from an application's preset (grafana, portainer, proxmox, django, synapse,
    /// minio, vault, nextcloud, oauth2-proxy, immich, jellyfin); needs --url
    #[argh(option)]
    pub preset: Option<String>,
    /// the application's URL, for --preset (its redirect URI is made from it)
    #[argh(option)]
    pub url: Option<String>,
    /// display name
    #[argh(option)]
    pub name: Option<String>,
    /// redirect URI, matched exactly (repeatable)
    #[argh(option)]
    pub redirect_uri: Vec<String>,
    /// scope the client may receive (repeatable; default openid profile email groups offline_access)
    #[argh(option)]
    pub scope: Vec<String>,
    /// public client: no secret, PKCE required
    #[argh(switch)]
    pub public: bool,
    /// grant type (repeatable; default authorization_code refresh_token)
    #[argh(option)]
    pub grant_type: Vec<String>,
    /// post-logout redirect URI (repeatable)
    #[argh(option)]
    pub post_logout_redirect_uri: Vec<String>,
    /// one_factor, two_factor or passkey
    #[argh(option)]
    pub policy: Option<String>,
    /// do not ask users for consent (first-party applications)
    #[argh(switch)]
    pub skip_consent: bool,
    /// client_secret_basic, client_secret_post, client_secret_jwt, private_key_jwt or none
    #[argh(option)]
    pub token_endpoint_auth_method: Option<String>,
    /// response type (repeatable; default code)
    #[argh(option)]
    pub response_type: Vec<String>,
    /// RS256 or ES256
    #[argh(option)]
    pub id_token_alg: Option<String>,
    /// require PKCE (always on for public clients)
    #[argh(switch)]
    pub require_pkce: bool,
    /// back-channel logout URI
    #[argh(option)]
    pub backchannel_logout_uri: Option<String>,
    /// front-channel logout URI
    #[argh(option)]
    pub frontchannel_logout_uri: Option<String>,
    /// append iss and sid to the front-channel logout URI
    #[argh(switch)]
    pub frontchannel_logout_session_required: bool,
    /// group whose members may use the application (repeatable)
    #[argh(option)]
    pub allowed_group: Vec<String>,
    /// JWKS file for private_key_jwt
    #[argh(option)]
    pub jwks_file: Option<PathBuf>,
    /// JWKS URI for private_key_jwt
    #[argh(option)]
    pub jwks_uri: Option<String>,
    /// require pushed authorization requests
    #[argh(switch)]
    pub require_par: bool,
    /// deny refresh once the user's sign-in session has ended, even with offline_access
    #[argh(switch)]
    pub refresh_requires_session: bool,
    /// seconds (0-60) in which a refresh token used again by this client gets the same
    /// answer instead of ending the grant (clients refreshing from two processes)
    #[argh(option)]
    pub refresh_grace_secs: Option<i64>,
    /// a group the groups claim shows this client, or a prefix ending in * (repeatable;
    /// default: every group)
    #[argh(option)]
    pub groups_filter: Vec<String>,
    /// a custom claim as JSON, e.g. {"name":"policy","scope":"minio","groups":{"admins":"consoleAdmin"}}
    /// (repeatable; see docs/operations.md)
    #[argh(option)]
    pub claim: Vec<String>,
    /// configuration file
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

#[derive(FromArgs)]
/// List applications.
#[argh(subcommand, name = "list")]
pub struct ClientList {
    /// configuration file
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// A command on one client: show (0), rotate-secret (1), delete (2).
pub struct ClientOne<const K: u8> {
    pub client_id: String,
    pub config: Option<PathBuf>,
    pub json: bool,
}

macro_rules! client_one {
    ($k:literal, $name:literal, $doc:literal) => {
        #[derive(FromArgs)]
        #[doc = $doc]
        #[argh(subcommand, name = $name)]
        struct Raw {
            /// client_id
            #[argh(positional)]
            client_id: String,
            /// configuration file
            #[argh(option)]
            config: Option<PathBuf>,
            /// print JSON
            #[argh(switch)]
            json: bool,
        }
        impl argh::SubCommand for ClientOne<$k> {
            const COMMAND: &'static argh::CommandInfo = Raw::COMMAND;
        }
        impl FromArgs for ClientOne<$k> {
            fn from_args(command_name: &[&str], args: &[&str]) -> Result<Self, argh::EarlyExit> {
                let r = Raw::from_args(command_name, args)?;
                Ok(ClientOne {
                    client_id: r.client_id,
                    config: r.config,
                    json: r.json,
                })
            }
        }
    };
}

mod client_show {
    use super::*;
    client_one!(0, "show", "Show an application.");
}
mod client_rotate {
    use super::*;
    client_one!(
        1,
        "rotate-secret",
        "Issue a new client secret (printed once); the old one stops working."
    );
}
mod client_delete {
    use super::*;
    client_one!(
        2,
        "delete",
        "Delete an application with its consents and refresh tokens."
    );
}

#[derive(FromArgs)]
/// Change an application; options not given keep their value.
#[argh(subcommand, name = "update")]
pub struct ClientUpdate {
    /// client_id
    #[argh(positional)]
    pub client_id: String,
    /// display name
    #[argh(option)]
    pub name: Option<String>,
    /// redirect URIs (replace the list; repeatable)
    #[argh(option)]
    pub redirect_uri: Vec<String>,
    /// post-logout redirect URIs (replace the list; repeatable)
    #[argh(option)]
    pub post_logout_redirect_uri: Vec<String>,
    /// scopes (replace the list; repeatable)
    #[argh(option)]
    pub scope: Vec<String>,
    /// grant types (replace the list; repeatable)
    #[argh(option)]
    pub grant_type: Vec<String>,
    /// stop asking users for consent
    #[argh(switch)]
    pub skip_consent: bool,
    /// ask users for consent again
    #[argh(switch)]
    pub ask_consent: bool,
    /// require PKCE
    #[argh(switch)]
    pub require_pkce: bool,
    /// RS256 or ES256
    #[argh(option)]
    pub id_token_alg: Option<String>,
    /// allowed groups (replace the list; repeatable)
    #[argh(option)]
    pub allowed_group: Vec<String>,
    /// back-channel logout URI
    #[argh(option)]
    pub backchannel_logout_uri: Option<String>,
    /// front-channel logout URI
    #[argh(option)]
    pub frontchannel_logout_uri: Option<String>,
    /// allow every user again (clear the allowed groups)
    #[argh(switch)]
    pub any_group: bool,
    /// seconds (0-60) in which a refresh token used again gets the same answer
    #[argh(option)]
    pub refresh_grace_secs: Option<i64>,
    /// a group the groups claim shows, or a prefix ending in * (repeatable; replaces the
    /// list)
    #[argh(option)]
    pub groups_filter: Vec<String>,
    /// let the groups claim show every group again
    #[argh(switch)]
    pub all_groups: bool,
    /// a custom claim as JSON (repeatable; replaces the client's claims)
    #[argh(option)]
    pub claim: Vec<String>,
    /// remove every custom claim
    #[argh(switch)]
    pub no_claims: bool,
    /// configuration file
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

#[derive(FromArgs)]
/// Signing keys.
#[argh(subcommand, name = "keys")]
pub struct KeysCmd {
    #[argh(subcommand)]
    pub action: KeysAction,
}

#[derive(FromArgs)]
#[argh(subcommand)]
pub enum KeysAction {
    List(KeysList),
    Rotate(KeysRotate),
}

#[derive(FromArgs)]
/// Publish new signing keys and sign with them from now on; the old ones stay in the JWKS
/// until every token they signed has expired.
#[argh(subcommand, name = "rotate")]
pub struct KeysRotate {
    /// only this algorithm (RS256 or ES256); default both
    #[argh(option)]
    pub alg: Option<String>,
    /// configuration file
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

#[derive(FromArgs)]
/// List signing keys with their state and age.
#[argh(subcommand, name = "list")]
pub struct KeysList {
    /// configuration file
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

#[derive(FromArgs)]
/// Print the audit log, newest first.
#[argh(subcommand, name = "audit")]
pub struct Audit {
    /// only events newer than this: seconds since the epoch, or an age such as 30m, 24h, 7d
    #[argh(option)]
    pub since: Option<String>,
    /// only events of this user
    #[argh(option)]
    pub user: Option<String>,
    /// at most this many events (default 100)
    #[argh(option, default = "100")]
    pub limit: usize,
    /// configuration file
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}
