//! The sign-in rules, pure: what follows a correct password, what a second-factor attempt
//! leads to, when a signed-in browser must step up, and when a trusted-browser cookie or a
//! reset link still counts. The pages (`http::signin`, `http::login`) gather the facts,
//! call these with `now`, and act on the answer; the throttles that slow wrong guesses are
//! in [`throttle`]. Nothing here reads the clock, draws randomness or stores
//! anything, so every rule is tested at a fixed time.

pub mod passkey;
pub mod throttle;

use crate::model::User;
use crate::oidc::authorize::{ACR_ONE_FACTOR, ACR_TWO_FACTOR};
use crate::oidc::discovery::paths;

/// A sign-in must finish its remaining steps within ten minutes.
pub const PENDING_TTL: i64 = 10 * 60;
/// Wrong codes allowed for one pending sign-in before it starts again at the password.
pub const MAX_CODE_ATTEMPTS: u32 = 5;

/// Where a finished sign-in continues.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Target {
    /// A pending authorization request.
    pub interaction: Option<String>,
    /// A local page (see [`safe_next`]).
    pub next: Option<String>,
}

impl Target {
    pub fn url(&self) -> String {
        match (&self.interaction, &self.next) {
            (Some(id), _) => format!("{}?interaction={id}", paths::AUTHORIZE_RESUME),
            (None, Some(n)) => n.clone(),
            (None, None) => "/account".to_string(),
        }
    }
}

/// Where a sign-in may continue besides an authorization request: Latchkey's own pages
/// only, so the parameter can never become an open redirect.
pub fn safe_next(next: &str) -> bool {
    let local = ["/device", "/account", "/admin"].iter().any(|p| {
        next == *p
            || next
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('?') || rest.starts_with('/'))
    });
    local
        && next.bytes().all(|b| b.is_ascii_graphic())
        && !next.contains('\\')
        && !next.contains("//")
        && !next.contains("..")
}

/// The step a pending sign-in waits at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Stage {
    NewPassword,
    SecondFactor,
}

impl Stage {
    /// The page of the step.
    pub fn page(self) -> &'static str {
        match self {
            Stage::NewPassword => "/login/password",
            Stage::SecondFactor => "/login/2fa",
        }
    }
}

/// A sign-in between its steps.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pending {
    pub user_id: String,
    pub stage: Stage,
    pub target: Target,
    pub attempts: u32,
    /// A step-up: the session (its hash) the second factor raises. The code then counts
    /// only while that session lives; without one, the password was just given.
    pub raises: Option<String>,
    /// The second factors this step takes.
    pub accepts: Accepts,
}

/// Which second factors a waiting sign-in takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Accepts {
    /// Whatever the user has: an authenticator app's code, a recovery code, a security key.
    #[default]
    Any,
    /// A passkeys-only account that gave its password: a security key, or a recovery
    /// code (the way back after losing every passkey).
    KeyOrRecovery,
    /// An application that requires a passkey or security key: a security key.
    KeyOnly,
}

impl Accepts {
    /// What a step waiting since before an administrator required passkeys of `user`
    /// takes now: never less strict than the user's rule.
    pub fn now_for(self, user: &User) -> Accepts {
        match self {
            Accepts::Any if user.passkeys_only => Accepts::KeyOrRecovery,
            other => other,
        }
    }

    pub fn takes(self, spent: Spent) -> bool {
        match self {
            Accepts::Any => true,
            Accepts::KeyOrRecovery => spent != Spent::Totp,
            Accepts::KeyOnly => spent == Spent::SecurityKey,
        }
    }

    /// What the second-factor page offers `user`: the factors this step takes that the
    /// user has.
    pub fn offer(self, user: &User) -> Offer {
        Offer {
            totp: self.takes(Spent::Totp) && user.mfa.enrolled(),
            recovery: self.takes(Spent::RecoveryCode) && !user.mfa.recovery_hashes.is_empty(),
            keys: self.takes(Spent::SecurityKey) && user.mfa.security_keys().next().is_some(),
        }
    }
}

/// The second factors a page offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offer {
    pub totp: bool,
    pub recovery: bool,
    pub keys: bool,
}

/// How a sign-in was completed: `amr` (RFC 8176) and `acr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Factors {
    pub amr: &'static [&'static str],
    pub acr: &'static str,
}

pub const PASSWORD: Factors = Factors {
    amr: &["pwd"],
    acr: ACR_ONE_FACTOR,
};
/// The password and a browser the user trusted after a second factor.
pub const TRUSTED_BROWSER: Factors = Factors {
    amr: &["pwd", "mfa"],
    acr: ACR_TWO_FACTOR,
};

/// What follows a correct password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The password is temporary: choose one first.
    NewPassword,
    SecondFactor(Accepts),
    /// A passkeys-only account with nothing that may follow its password: sign in with a
    /// passkey, or ask an administrator for a reset link.
    PasskeyNeeded,
    /// Signed in; `trusted_browser` when a trusted browser stood in for the second factor.
    Session {
        factors: Factors,
        trusted_browser: bool,
    },
}

/// What the page found out about the person who just gave a correct password.
#[derive(Debug, Clone, Copy, Default)]
pub struct PasswordFacts {
    pub must_change_password: bool,
    pub second_factor_enrolled: bool,
    /// The application asked for a fresh sign-in (`prompt=login`, `max_age`): a trusted
    /// browser does not stand in for the second factor then.
    pub fresh_requested: bool,
    /// This browser carries a valid trusted-browser cookie of this user.
    pub trusted_browser: bool,
    /// An administrator requires passkeys for this user (SPEC §10).
    pub passkeys_only: bool,
    /// The user holds unused recovery codes.
    pub recovery_codes: bool,
    /// The user holds security keys.
    pub security_keys: bool,
    /// The password was just chosen on an administrator's reset link or after an
    /// administrator's temporary password: for a passkeys-only user who lost every
    /// passkey, the way back in to register one.
    pub from_administrator: bool,
}

/// After a correct password (and again after a temporary one was replaced, with
/// `must_change_password` false): the next step, or the session.
pub fn after_password(f: &PasswordFacts) -> Next {
    if f.must_change_password {
        return Next::NewPassword;
    }
    if f.passkeys_only {
        // The administrator's link is the way back to adding a passkey; whatever second
        // factor the person has still counts then, as it does for everyone.
        if f.from_administrator {
            if f.second_factor_enrolled {
                return Next::SecondFactor(Accepts::Any);
            }
            return Next::Session {
                factors: PASSWORD,
                trusted_browser: false,
            };
        }
        // A trusted browser stood in for an authenticator app, which does not count here.
        if f.security_keys || f.recovery_codes {
            return Next::SecondFactor(Accepts::KeyOrRecovery);
        }
        return Next::PasskeyNeeded;
    }
    if !f.second_factor_enrolled {
        return Next::Session {
            factors: PASSWORD,
            trusted_browser: false,
        };
    }
    if f.trusted_browser && !f.fresh_requested {
        return Next::Session {
            factors: TRUSTED_BROWSER,
            trusted_browser: true,
        };
    }
    Next::SecondFactor(Accepts::Any)
}

/// A signed-in browser whose session is weaker than a client demands: one factor where
/// two are needed, or no passkey where one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepUp {
    /// Ask for a second factor, raising the session.
    SecondFactor(Accepts),
    /// Sign in again with a passkey.
    Passkey,
    /// The person has no second factor: send them to set one up.
    Enrol,
    /// The person has no passkey or security key (or, passkeys-only, nothing that
    /// counts): send them to add a passkey.
    EnrolPasskey,
}

/// What raises the session of `user` for a client that needs two factors, or a passkey
/// (`passkey`).
pub fn step_up(user: &User, passkey: bool) -> StepUp {
    let passkeys = user
        .mfa
        .passkeys
        .iter()
        .any(|p| p.kind == crate::model::PasskeyKind::Passkey);
    let accepts = if passkey {
        Accepts::KeyOnly
    } else if user.passkeys_only {
        Accepts::KeyOrRecovery
    } else {
        Accepts::Any
    };
    let offer = accepts.offer(user);
    // A passkey sign-in is the stronger answer: it replaces the session (passkeys first,
    // as they need nothing typed).
    if passkey && passkeys {
        return StepUp::Passkey;
    }
    if offer.totp || offer.recovery || offer.keys {
        return StepUp::SecondFactor(accepts);
    }
    match (passkeys, passkey || user.passkeys_only) {
        (true, _) => StepUp::Passkey,
        (false, true) => StepUp::EnrolPasskey,
        (false, false) => StepUp::Enrol,
    }
}

/// A code that was right, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    Totp,
    RecoveryCode,
    /// A registered security key answered (user presence at least).
    SecurityKey,
}

impl Spent {
    pub fn factors(self) -> Factors {
        match self {
            Spent::Totp => Factors {
                amr: &["pwd", "otp", "mfa"],
                acr: ACR_TWO_FACTOR,
            },
            Spent::RecoveryCode => Factors {
                amr: &["pwd", "mfa"],
                acr: ACR_TWO_FACTOR,
            },
            // RFC 8176: a hardware-secured key and a user-presence test.
            Spent::SecurityKey => Factors {
                amr: &["pwd", "hwk", "user", "mfa"],
                acr: ACR_TWO_FACTOR,
            },
        }
    }

    /// As the audit log names it.
    pub fn label(self) -> &'static str {
        match self {
            Spent::Totp => "totp",
            Spent::RecoveryCode => "recovery code",
            Spent::SecurityKey => "security key",
        }
    }
}

/// Whether a pending second-factor step may take a code at all: its user still exists
/// and is enabled, and a step-up's session still lives for that user (after a sign-out,
/// or when an administrator ended it, the code alone is no sign-in). `raised_session` is
/// the user id of the live session a step-up raises, `None` when it is gone.
pub fn may_take_code(pending: &Pending, user: Option<&User>, raised_session: Option<&str>) -> bool {
    let Some(user) = user.filter(|u| !u.disabled) else {
        return false;
    };
    match &pending.raises {
        None => true,
        Some(_) => raised_session == Some(user.id.as_str()),
    }
}

/// What a submitted code leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeOutcome {
    Accepted(Spent),
    /// Wrong; `restart` once the pending sign-in has had [`MAX_CODE_ATTEMPTS`] wrong
    /// codes (the sign-in then begins again at the password).
    Wrong {
        attempts: u32,
        restart: bool,
    },
}

pub fn code_outcome(pending: &Pending, spent: Option<Spent>) -> CodeOutcome {
    match spent {
        Some(s) => CodeOutcome::Accepted(s),
        None => {
            let attempts = pending.attempts + 1;
            CodeOutcome::Wrong {
                attempts,
                restart: attempts >= MAX_CODE_ATTEMPTS,
            }
        }
    }
}

/// A trusted-browser cookie as presented (its MAC already verified by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCookie<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub expires: i64,
}

impl<'a> DeviceCookie<'a> {
    /// `<user id>.<device id>.<expiry>.<tag>`: the parts, and the payload the tag signs.
    pub fn parse(value: &'a str) -> Option<(DeviceCookie<'a>, &'a str)> {
        let parts: Vec<&str> = value.split('.').collect();
        let [user_id, device_id, exp, tag] = parts.as_slice() else {
            return None;
        };
        let expires = exp.parse().ok()?;
        Some((
            DeviceCookie {
                user_id,
                device_id,
                expires,
            },
            tag,
        ))
    }

    /// What the cookie's tag signs.
    pub fn payload(&self) -> String {
        device_payload(self.user_id, self.device_id, self.expires)
    }
}

pub fn device_payload(user_id: &str, device_id: &str, expires: i64) -> String {
    format!("device|{user_id}|{device_id}|{expires}")
}

/// Whether a verified trusted-browser cookie still stands for `user` at `now`: it is
/// theirs, unexpired, and the browser is still on their list (a password change or the
/// account page removes it).
pub fn trusted_device_ok(user: &User, c: &DeviceCookie<'_>, now: i64) -> bool {
    c.user_id == user.id
        && c.expires > now
        && user
            .mfa
            .devices
            .iter()
            .any(|d| d.id == c.device_id && d.expires_at > now)
}

/// Whether an administrator's reset link (its secret already hashed) is this user's
/// current one, unexpired, for an enabled account.
pub fn reset_link_ok(user: &User, secret_hash: &str, now: i64) -> bool {
    !user.disabled
        && user.reset_link.as_ref().is_some_and(|(hash, expires)| {
            *expires > now && crate::keys::ct_eq(secret_hash.as_bytes(), hash.as_bytes())
        })
}

/// Whether an invitation link's token (its SHA-256, `secret_hash`) is the one last mailed
/// to `user` and the invitation still stands (SPEC §12).
pub fn invitation_ok(user: &User, secret_hash: &str, now: i64) -> bool {
    !user.disabled
        && user
            .invitation
            .as_ref()
            .is_some_and(|(hash, expires, address)| {
                !hash.is_empty()
                    && *expires > now
                    && *address == user.email
                    && crate::keys::ct_eq(secret_hash.as_bytes(), hash.as_bytes())
            })
}

/// Whether an address-check link's token proves the address `user` has now.
pub fn email_check_ok(user: &User, secret_hash: &str, now: i64) -> bool {
    !user.disabled
        && user
            .email_check
            .as_ref()
            .is_some_and(|(hash, expires, address)| {
                *expires > now
                    && *address == user.email
                    && crate::keys::ct_eq(secret_hash.as_bytes(), hash.as_bytes())
            })
}

#[cfg(test)]
mod tests;
