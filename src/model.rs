//! Plain data shared by every layer: users, clients, codes, sessions, consents, grants,
//! tokens and keys as they are stored. No behaviour beyond small accessors; the rules live
//! in `oidc/`, persistence in `store/`.

use serde::{Deserialize, Serialize};

/// A person who signs in. `id` is the stable, opaque `sub`; `username` may change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub username: String,
    pub email: String,
    #[serde(default)]
    pub email_verified: bool,
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub family_name: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub address: Option<Address>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// argon2id PHC string.
    pub password_hash: String,
    #[serde(default)]
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// Second factor and credentials other than the password.
    #[serde(default)]
    pub mfa: Mfa,
    /// Set by an administrator's password reset: the next sign-in must choose a new one.
    #[serde(default)]
    pub must_change_password: bool,
    /// Set by an administrator (SPEC §10): the password alone never signs this user in;
    /// a passkey does, or the password with a security key or a recovery code (the way
    /// back after losing every passkey).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub passkeys_only: bool,
    /// A one-time password reset link made by an administrator: SHA-256 of the token
    /// and its expiry.
    #[serde(default)]
    pub reset_link: Option<(String, i64)>,
    /// The reset link was mailed on request ("Forgot your password?"), not made by an
    /// administrator: it proves the mailbox, not the administrator's word.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reset_mailed: bool,
    /// An invitation not yet accepted (SPEC §12): SHA-256 of the link's token (empty
    /// until its mail is sent), when the invitation ends, and the address the link went
    /// to (accepting it proves that address). The account has no password until the
    /// person chooses one there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation: Option<(String, i64, String)>,
    /// A link proving the email address: SHA-256 of its token, its expiry and the
    /// address it proves (a changed address makes it worthless).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_check: Option<(String, i64, String)>,
    /// Custom attributes (SPEC §14) that clients' claim rules may release.
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    pub attributes: Attributes,
    /// Where the account comes from: `Some("ldap")` for the directory (SPEC §11), whose
    /// password is checked there and never stored here; `None` for a local account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Disabled by the directory (disabled or removed there), not by an administrator:
    /// the directory enabling the person again enables the account (SPEC §11).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub directory_disabled: bool,
}

/// What a queued mail is for. A mail in the outbox holds no secret: its link is made
/// when it is sent (the token's hash then goes on the user), so the store never keeps a
/// usable link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailKind {
    /// "Forgot your password?" (one hour).
    Reset,
    /// An administrator's invitation (seven days from the invitation).
    Invitation,
    /// Proves the address (one day).
    Verification,
}

impl MailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MailKind::Reset => "reset",
            MailKind::Invitation => "invitation",
            MailKind::Verification => "verification",
        }
    }
}

/// A mail waiting in the outbox, or one that failed for good (kept for the admin page).
/// One per user and kind: a new request replaces the waiting one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxMail {
    /// This request's identity: an outcome is recorded only on the mail it was for, never
    /// on a newer one that replaced it meanwhile.
    #[serde(default)]
    pub id: String,
    pub kind: MailKind,
    pub user_id: String,
    /// The address when it was queued; a mail whose user's address changed is dropped.
    pub to: String,
    pub created_at: i64,
    #[serde(default)]
    pub attempts: u32,
    pub next_attempt: i64,
    /// The last failure, as the SMTP client or server put it.
    #[serde(default)]
    pub last_error: String,
    /// Retried for a day without success: no more attempts.
    #[serde(default)]
    pub gave_up: bool,
    /// The language of the pages where it was asked for (SPEC §12).
    #[serde(default = "english")]
    pub lang: String,
}

fn english() -> String {
    "en".to_string()
}

impl OutboxMail {
    /// The outbox key: one mail per user and kind.
    pub fn key(&self) -> String {
        format!("{}:{}", self.user_id, self.kind.as_str())
    }
}

/// A user's second factor: a TOTP secret (RFC 6238), single-use recovery codes and the
/// browsers trusted to skip the second factor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Mfa {
    /// Base32 TOTP secret of a confirmed enrolment. Stored as is: verifying a code needs
    /// the secret itself (like any TOTP server); the database file is 0600.
    #[serde(default)]
    pub totp_secret: Option<String>,
    /// A secret shown for enrolment and not yet confirmed with a code, and when it was
    /// made (a new one on every visit of the enrolment page; it expires).
    #[serde(default)]
    pub pending_secret: Option<String>,
    #[serde(default)]
    pub pending_since: i64,
    /// The session (its hash) the pending secret was shown to; only it may confirm it.
    #[serde(default)]
    pub pending_session: String,
    /// The last time step whose code was accepted: a code is accepted once.
    #[serde(default)]
    pub last_step: i64,
    /// SHA-256 of each unused recovery code.
    #[serde(default)]
    pub recovery_hashes: Vec<String>,
    #[serde(default)]
    pub devices: Vec<TrustedDevice>,
    /// Passkeys and security keys (WebAuthn), in the order they were added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passkeys: Vec<PasskeyRecord>,
}

impl Mfa {
    pub fn enrolled(&self) -> bool {
        self.totp_secret.is_some()
    }

    /// Whether a sign-in with the password must show a second factor: an authenticator
    /// app or a security key.
    pub fn has_second_factor(&self) -> bool {
        self.enrolled() || self.security_keys().next().is_some()
    }

    /// The security keys (second factor after the password).
    pub fn security_keys(&self) -> impl Iterator<Item = &PasskeyRecord> {
        self.passkeys
            .iter()
            .filter(|p| p.kind == PasskeyKind::SecurityKey)
    }

    /// Turns the authenticator-app second factor off: the TOTP secret, recovery codes and
    /// trusted browsers go; passkeys stay (they are removed one by one, or by an
    /// administrator).
    pub fn turn_off_codes(&mut self) {
        *self = Mfa {
            passkeys: std::mem::take(&mut self.passkeys),
            ..Mfa::default()
        };
    }
}

/// What a WebAuthn credential is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PasskeyKind {
    /// A discoverable credential with user verification: signs in on its own.
    Passkey,
    /// A security key checked for user presence only: a second factor after the password.
    SecurityKey,
}

/// A registered passkey or security key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PasskeyRecord {
    /// The credential id, base64url: how the browser names it.
    pub id: String,
    /// The name the user gave it.
    pub name: String,
    pub kind: PasskeyKind,
    pub created_at: i64,
    /// The last sign-in with it (0: never).
    #[serde(default)]
    pub last_used: i64,
    /// The credential as webauthn-rs keeps it (public key, counter, flags).
    pub credential: serde_json::Value,
}

/// A browser that may skip the second factor until `expires_at` (its cookie names `id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrustedDevice {
    pub id: String,
    /// What the browser said it is, shortened, to tell devices apart in the list.
    pub label: String,
    pub created_at: i64,
    pub expires_at: i64,
}

impl User {
    /// The `name` claim: given and family name, or the username when neither is set.
    pub fn display_name(&self) -> String {
        let parts: Vec<&str> = [self.given_name.as_deref(), self.family_name.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect();
        if parts.is_empty() {
            self.username.clone()
        } else {
            parts.join(" ")
        }
    }
}

/// OIDC Core §5.1.1 address claim.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Address {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

impl Address {
    pub fn is_empty(&self) -> bool {
        self == &Address::default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Custom attributes (SPEC §14) that clients' claim rules may release.
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    pub attributes: Attributes,
}

/// Custom attributes of a user or group (SPEC §14): a string, number, boolean or list
/// of those per name. Checked by `oidc::claims::check_attribute`.
pub type Attributes = std::collections::BTreeMap<String, serde_json::Value>;

/// How a client receives one custom claim (SPEC §14): its name, the scope that releases
/// it, where its value comes from (exactly one of a user attribute, a group attribute
/// merged over the user's groups, or a map from group to value merged likewise), and in
/// which tokens it appears (default: ID token, UserInfo and access token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRule {
    pub name: String,
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_attribute: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_attribute: Option<String>,
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    pub groups: Attributes,
    #[serde(default, rename = "in", skip_serializing_if = "Vec::is_empty")]
    pub places: Vec<String>,
}

/// Sign-in strength a client demands: a password, a password and a second factor, or a
/// passkey or security key (SPEC §10), which is two factors too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    #[default]
    OneFactor,
    TwoFactor,
    Passkey,
}

impl Policy {
    pub fn parse(s: &str) -> Option<Policy> {
        match s {
            "one_factor" => Some(Policy::OneFactor),
            "two_factor" => Some(Policy::TwoFactor),
            "passkey" => Some(Policy::Passkey),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::OneFactor => "one_factor",
            Policy::TwoFactor => "two_factor",
            Policy::Passkey => "passkey",
        }
    }

    /// More than a password: a second factor, or a passkey.
    pub fn needs_two_factors(self) -> bool {
        self != Policy::OneFactor
    }

    /// Whether a sign-in with these `amr` values (RFC 8176) meets the policy's passkey
    /// part: a passkey or a security key (`hwk`/`swk`) was used.
    pub fn met_by_amr(self, amr: &[String]) -> bool {
        self != Policy::Passkey || used_webauthn(amr)
    }
}

/// A sign-in whose `amr` names a WebAuthn credential: a passkey (`hwk` or `swk`) or a
/// security key (`hwk`).
pub fn used_webauthn(amr: &[String]) -> bool {
    amr.iter().any(|a| a == "hwk" || a == "swk")
}

/// RFC 7591 §2 token_endpoint_auth_method values Latchkey implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    /// RFC 7523 assertion signed with one of the client's registered keys.
    PrivateKeyJwt,
    /// RFC 7523 assertion with HMAC-SHA256 under the client secret.
    ClientSecretJwt,
    None,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::ClientSecretJwt => "client_secret_jwt",
            AuthMethod::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client_secret_basic" => Some(AuthMethod::ClientSecretBasic),
            "client_secret_post" => Some(AuthMethod::ClientSecretPost),
            "private_key_jwt" => Some(AuthMethod::PrivateKeyJwt),
            "client_secret_jwt" => Some(AuthMethod::ClientSecretJwt),
            "none" => Some(AuthMethod::None),
            _ => None,
        }
    }
}

/// JWS algorithms Latchkey signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Alg {
    #[default]
    RS256,
    ES256,
}

impl Alg {
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::ES256 => "ES256",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RS256" => Some(Alg::RS256),
            "ES256" => Some(Alg::ES256),
            _ => None,
        }
    }
}

/// A registered relying party.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    /// `sha256:<hex>` of a generated secret, or an argon2id PHC string for declared clients.
    /// `None` for public clients.
    #[serde(default)]
    pub secret_hash: Option<String>,
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub token_endpoint_auth_method: AuthMethod,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub skip_consent: bool,
    #[serde(default)]
    pub id_token_alg: Alg,
    #[serde(default)]
    pub require_pkce: bool,
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
    #[serde(default)]
    pub frontchannel_logout_uri: Option<String>,
    /// OIDC Front-Channel Logout §2: append `iss` and `sid` to the logout URI.
    #[serde(default)]
    pub frontchannel_logout_session_required: bool,
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// The client's public keys (a JWK Set document) for private_key_jwt.
    #[serde(default)]
    pub jwks: Option<String>,
    /// Where to fetch them instead (only ever fetched for this client's assertions).
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// client_secret_jwt only: the shared secret itself, which HMAC verification needs
    /// (RFC 7523 §2.2 leaves no way around storing it). Every other secret is hashed.
    #[serde(default)]
    pub jwt_secret: Option<String>,
    #[serde(default)]
    pub require_par: bool,
    /// Deny refresh once the user's SSO session has ended, even with offline_access.
    #[serde(default)]
    pub refresh_requires_session: bool,
    /// Seconds (0-60) within which the same refresh token presented again by this client
    /// gets the same answer instead of counting as a replay (clients that refresh from
    /// two processes at once). 0: every reuse is a replay (RFC 9700 §4.14.2).
    #[serde(default)]
    pub refresh_grace_secs: i64,
    /// The groups the `groups` claim shows this client: names, or prefixes ending in `*`.
    /// Empty: every group of the user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups_filter: Vec<String>,
    /// Custom claims this client receives (SPEC §14).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<ClaimRule>,
    /// Declared in the configuration file: read-only for the CLI and admin pages.
    #[serde(default)]
    pub declared: bool,
    pub created_at: i64,
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.token_endpoint_auth_method == AuthMethod::None
    }

    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant)
    }

    /// Whether a member of `groups` may use this client (no allowed groups: everyone).
    pub fn admits(&self, groups: &[String]) -> bool {
        self.allowed_groups.is_empty() || self.allowed_groups.iter().any(|g| groups.contains(g))
    }
}

/// An authorization code (stored under the SHA-256 of the code itself). Fields a used
/// code no longer needs ([`AuthCode::spent`]) are left out of the record when empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthCode {
    pub client_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub redirect_uri: String,
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge: Option<String>,
    /// The grant every token issued from this code belongs to.
    pub grant_id: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub auth_time: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub acr: String,
    /// Public session id (`sid` claim) and the stored hash of the SSO session.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub session_hash: String,
    pub expires_at: i64,
    /// Individually requested claims (the `claims` parameter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<ClaimsRequest>,
    /// Set on first redemption; a second redemption revokes the grant.
    #[serde(default)]
    pub used: bool,
}

/// A server-side SSO session (stored under the SHA-256 of the cookie value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub user_id: String,
    /// Public identifier used as the `sid` claim; never the cookie value.
    pub sid: String,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub acr: String,
    pub created_at: i64,
    pub last_seen: i64,
    /// The earlier of the idle and the absolute expiry.
    pub expires_at: i64,
    /// Clients that received a code in this session: the ones told about its logout.
    #[serde(default)]
    pub clients: Vec<String>,
    /// Last time the user confirmed their password in this session (sensitive admin
    /// actions need a recent one).
    #[serde(default)]
    pub reauth_at: i64,
    /// The browser that opened the session, shortened (for the session lists).
    #[serde(default)]
    pub label: String,
    /// Source address at sign-in.
    #[serde(default)]
    pub ip: String,
}

impl Session {
    /// Whether the session has not expired at `now`.
    pub fn alive(&self, now: i64) -> bool {
        self.expires_at > now
    }
}

/// Remembered consent for (user, client).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consent {
    pub user_id: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    /// The custom claims (SPEC §14: the client's claim rules, by name) released under
    /// those scopes when the person agreed: a rule added later is asked about again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<String>,
    pub granted_at: i64,
}

/// One authorization: the tokens of a code exchange and all their refresh descendants.
/// Revoking it revokes every access and refresh token issued under it: access tokens
/// name their grant in their `jti` and are checked against it (see `store` for the
/// design), so no record is kept per access token.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Grant {
    pub grant_id: String,
    pub client_id: String,
    pub user_id: String,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub revoked: bool,
    /// The SSO session the grant came from; logging out of it revokes the grant unless
    /// it is `offline` (offline_access was granted).
    #[serde(default)]
    pub session_hash: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub offline: bool,
    /// Claims asked for individually for UserInfo (the `claims` parameter).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub userinfo_claims: Vec<String>,
    /// When the last access token issued under the grant expires: the grant is kept at
    /// least until then, even with nothing else referring to it.
    #[serde(default)]
    pub tokens_until: i64,
    /// Until when the store keeps the record: the latest of `tokens_until` and the
    /// expiry of every code (with its replay window) and refresh token that refers to
    /// the grant. Maintained by the store, which alone sees all of them.
    #[serde(default)]
    pub keep_until: i64,
}

/// A refresh token (stored under its SHA-256). As for codes, the fields a used token
/// no longer needs ([`RefreshToken::spent`]) are left out of the record when empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshToken {
    pub grant_id: String,
    pub client_id: String,
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub auth_time: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub acr: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sid: String,
    /// Hash of the SSO session; tokens without `offline_access` end with it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub session_hash: String,
    pub offline: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub issued_at: i64,
    /// Idle expiry: renewed on each rotation, never past `absolute_expires_at`.
    pub expires_at: i64,
    pub absolute_expires_at: i64,
    #[serde(default)]
    pub used: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<ClaimsRequest>,
}

impl AuthCode {
    /// What a used code keeps until it is purged: enough to recognise a replay and
    /// revoke its grant (and when to forget it), nothing of the sign-in it carried.
    pub fn spent(&self) -> AuthCode {
        AuthCode {
            client_id: self.client_id.clone(),
            redirect_uri: String::new(),
            user_id: self.user_id.clone(),
            scopes: Vec::new(),
            nonce: None,
            code_challenge: None,
            grant_id: self.grant_id.clone(),
            auth_time: 0,
            amr: Vec::new(),
            acr: String::new(),
            sid: String::new(),
            session_hash: String::new(),
            expires_at: self.expires_at,
            claims: None,
            used: true,
        }
    }
}

impl RefreshToken {
    /// What a used refresh token keeps until it expires: enough to recognise a replay and
    /// revoke its family (RFC 9700 §4.14.2), nothing of the grant it carried.
    pub fn spent(&self) -> RefreshToken {
        RefreshToken {
            grant_id: self.grant_id.clone(),
            client_id: self.client_id.clone(),
            user_id: self.user_id.clone(),
            scopes: Vec::new(),
            auth_time: 0,
            amr: Vec::new(),
            acr: String::new(),
            sid: String::new(),
            session_hash: String::new(),
            offline: self.offline,
            nonce: None,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            absolute_expires_at: self.absolute_expires_at,
            used: true,
            claims: None,
        }
    }
}

/// Where a device authorization (RFC 8628) stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum DeviceStatus {
    Pending,
    Denied,
    /// Approved by this user in a browser.
    Approved {
        user_id: String,
        auth_time: i64,
        amr: Vec<String>,
        acr: String,
        sid: String,
    },
}

/// A device authorization request (stored under the SHA-256 of its device_code).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceGrant {
    pub client_id: String,
    pub scopes: Vec<String>,
    /// Normalised: eight letters, no dash.
    pub user_code: String,
    pub expires_at: i64,
    /// Seconds the device must wait between polls; grows on slow_down.
    pub interval: i64,
    #[serde(default)]
    pub last_poll: Option<i64>,
    pub status: DeviceStatus,
    #[serde(default)]
    pub used: bool,
}

/// Lifecycle of a signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    Active,
    Retired,
}

/// A signing key pair as stored (private part as PKCS#8 DER, base64).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub kid: String,
    pub alg: Alg,
    pub pkcs8_b64: String,
    pub created_at: i64,
    pub state: KeyState,
    #[serde(default)]
    pub retired_at: Option<i64>,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub time: i64,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Usernames: 1-64 characters of letters, digits and `.-_@`, starting with a letter or
/// digit (safe in URLs, logs and every relying party's user table).
pub fn valid_username(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'@'))
}

/// A plausible email address: one `@`, something on both sides, a dot in the domain, no
/// white space, at most 254 characters. Delivery is not checked.
pub fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["alice", "a", "bob.smith", "x_y-z", "j@corp"] {
            assert!(valid_username(ok), "{ok}");
        }
        for bad in ["", ".alice", "a b", "ålice", "<script>", &"a".repeat(65)] {
            assert!(!valid_username(bad), "{bad}");
        }
    }

    #[test]
    fn emails() {
        assert!(valid_email("alice@example.com"));
        for bad in [
            "alice",
            "@example.com",
            "a@b",
            "a@.b.c",
            "a b@c.d",
            "a@b@c.d",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
    }
}

/// The `claims` request parameter (OIDC Core §5.5), reduced to what Latchkey acts on:
/// the names of the individual claims wanted in UserInfo and in the ID token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClaimsRequest {
    #[serde(default)]
    pub userinfo: Vec<String>,
    #[serde(default)]
    pub id_token: Vec<String>,
    /// §5.5.1: a requested `sub` value; only that user may receive a response.
    #[serde(default)]
    pub sub: Option<String>,
    /// §5.5.1.1: acr values asked for as essential; one must be met.
    #[serde(default)]
    pub essential_acr: Vec<String>,
}

/// For `skip_serializing_if`: a zero timestamp is an absent one.
fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// For `skip_serializing_if`: a flag that is off is not written.
fn is_false(v: &bool) -> bool {
    !*v
}
