//! Passkeys and security keys (WebAuthn, SPEC §10): registration on the account page and
//! sign-in without a username on the sign-in page.
//!
//! webauthn-rs runs each ceremony; Latchkey keeps its state in memory for five minutes,
//! bounded in number and bytes like every other state an unauthenticated request can
//! create, and takes it out on first use, so a response is never checked twice against
//! one challenge. The browser starts a ceremony with a small JSON request and ends it with
//! an ordinary form post, so the finishing step is a page like any other (redirect, cookies,
//! the error shown on the page).

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::{Value, json};
use webauthn_rs::prelude::{
    DiscoverableAuthentication, DiscoverableKey, Passkey, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, RequestChallengeResponse, SecurityKey, SecurityKeyAuthentication,
    SecurityKeyRegistration, Url, Webauthn, WebauthnBuilder,
};

use super::interaction::{Budget, Expiring};
use super::response::{self, Resp};
use super::{App, Req, SignedIn};
use crate::model::{PasskeyKind, PasskeyRecord, User};
use crate::oidc::params::Params;
use crate::signin::passkey::{self as rules, Use};
use crate::signin::throttle::Source;

/// A ceremony's state is kept this long; the browser's own timeout is shorter.
const CEREMONY_TTL: i64 = 300;

/// Ceremonies under way, whoever started them (the sign-in page, the account page, the
/// second-factor page): at most 10,000 and 16 MiB in all, 200 and 512 KiB from one
/// address (IPv6: one /64), and a reserve for browsers that signed in here before. A
/// ceremony's state is about a kilobyte.
const CEREMONIES: Budget = Budget {
    count: 10_000,
    bytes: 16 << 20,
    per_source: 200,
    per_source_bytes: 512 << 10,
    reserve_count: 2_000,
    reserve_bytes: 4 << 20,
};

/// Bytes one ceremony is counted as.
const CEREMONY_BYTES: usize = 1_024;

/// A ceremony under way. On a store several nodes share it is kept there (serialised:
/// webauthn-rs's `danger-allow-state-serialisation`, safe here because the state never
/// leaves the server), so a ceremony started on one node finishes on another.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub(super) enum Ceremony {
    /// Adding a passkey or security key for the signed-in user in the session with this
    /// hash.
    Register {
        user_id: String,
        session: String,
        state: Registration,
    },
    /// Signing in with a passkey the browser chooses.
    SignIn(DiscoverableAuthentication),
    /// A security key as the second factor of the pending sign-in with this id.
    SecondFactor {
        pending: String,
        user_id: String,
        state: SecurityKeyAuthentication,
    },
}

/// The state of a registration, by what is registered.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub(super) enum Registration {
    Passkey(PasskeyRegistration),
    SecurityKey(SecurityKeyRegistration),
}

/// WebAuthn for this issuer, and the ceremonies under way.
pub struct Passkeys {
    /// `None` when the issuer's host is an IP address: browsers accept passkeys only for
    /// a domain name (the RP ID).
    webauthn: Option<Webauthn>,
    /// Shared with the `Passkeys` a configuration reload builds.
    ceremonies: Arc<Expiring<Ceremony>>,
}

impl Passkeys {
    /// WebAuthn with the issuer's host as the RP ID and its origin as the only origin.
    pub fn new(
        issuer: &str,
        instance_name: &str,
        store: &Arc<dyn crate::store::Store>,
    ) -> Passkeys {
        Passkeys {
            webauthn: relying_party(issuer, instance_name),
            ceremonies: Arc::new(Expiring::in_store(CEREMONY_TTL, store, "passkey")),
        }
    }

    /// The same ceremonies for a reloaded configuration.
    pub fn reloaded(&self, issuer: &str, instance_name: &str) -> Passkeys {
        Passkeys {
            webauthn: relying_party(issuer, instance_name),
            ceremonies: self.ceremonies.clone(),
        }
    }

    /// Whether passkeys can be used with this issuer.
    pub fn available(&self) -> bool {
        self.webauthn.is_some()
    }
}

fn relying_party(issuer: &str, instance_name: &str) -> Option<Webauthn> {
    let url = Url::parse(issuer).ok()?;
    let Some(host) = url.domain() else {
        tracing::info!(
            issuer,
            "passkeys are off: browsers accept them only when the issuer's host is a name, not an IP address"
        );
        return None;
    };
    let origin = Url::parse(&url.origin().ascii_serialization()).ok()?;
    // Security keys without a PIN count as a second factor after the password only
    // (`Spent::SecurityKey`); passkeys still must verify the user.
    let built = WebauthnBuilder::new(host, &origin).and_then(|b| {
        b.rp_name(instance_name)
            .danger_set_user_presence_only_security_keys(true)
            .build()
    });
    match built {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(issuer, error = %e, "passkeys are off: the issuer is not a WebAuthn origin");
            None
        }
    }
}

/// An error for the page's script: `{"error": message}`.
pub(super) fn json_error(status: StatusCode, message: &str) -> Resp {
    response::json(status, &json!({ "error": message }))
}

/// `POST /account/passkeys/start`: the options for `navigator.credentials.create`, for
/// the signed-in user: a passkey (discoverable, verifying the user: it signs in on its
/// own) or, with `kind=security_key`, a security key (user presence is enough: a second
/// factor after the password). The user's own keys are excluded.
pub(super) fn register_start(
    app: &Arc<App>,
    req: &Req,
    s: &SignedIn,
    form: &Params,
    now: i64,
) -> Resp {
    let Some(w) = &app.passkeys.webauthn else {
        return json_error(
            StatusCode::NOT_FOUND,
            "passkeys need the issuer to be a host name",
        );
    };
    let u = &s.user;
    if u.mfa.passkeys.len() >= rules::MAX_PER_USER {
        return json_error(
            StatusCode::CONFLICT,
            "remove a passkey before adding another",
        );
    }
    let Some(handle) = rules::user_handle(&u.id) else {
        return json_error(
            StatusCode::CONFLICT,
            "this account's id predates passkeys; an administrator can recreate the account",
        );
    };
    let exclude: Vec<_> = u
        .mfa
        .passkeys
        .iter()
        .filter_map(|p| rules::credential_id(&p.id))
        .collect();
    let (name, display) = (&u.username, u.display_name());
    let begun = if form.get_lenient("kind") == Some("security_key") {
        w.start_securitykey_registration(handle, name, &display, Some(exclude), None, None)
            .map(|(o, st)| (serde_json::to_value(&o), Registration::SecurityKey(st)))
    } else {
        w.start_passkey_registration(handle, name, &display, Some(exclude))
            .map(|(o, st)| (serde_json::to_value(&o), Registration::Passkey(st)))
    };
    let (mut options, state) = match begun {
        Ok((Ok(options), state)) => (options, state),
        Ok((Err(e), _)) => {
            tracing::warn!(error = %e, "passkey options could not be encoded");
            return json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "passkeys are not available",
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "passkey registration could not start");
            return json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "passkeys are not available",
            );
        }
    };
    if matches!(state, Registration::Passkey(_)) {
        rules::ask_for_discoverable(&mut options);
    }
    let ceremony = Ceremony::Register {
        user_id: u.id.clone(),
        session: s.hash.clone(),
        state,
    };
    started(app, req, ceremony, &options, false, now)
}

/// Keeps a ceremony within [`CEREMONIES`], per address and in all, never pushing out
/// anyone else's (`reserved`: a browser that signed in here before may use the reserve);
/// answers with its id and the options for the browser.
fn started(
    app: &App,
    req: &Req,
    ceremony: Ceremony,
    options: &impl serde::Serialize,
    reserved: bool,
    now: i64,
) -> Resp {
    let kept = app.passkeys.ceremonies.try_start(
        ceremony,
        CEREMONY_BYTES,
        Source::from(req.peer),
        reserved,
        &CEREMONIES,
        now,
    );
    match kept {
        Ok(id) => response::json(
            StatusCode::OK,
            &json!({ "ceremony": id, "options": options }),
        ),
        Err(_) => json_error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many passkey requests from this address; try again in a few minutes",
        ),
    }
}

/// `POST /account/passkeys`: the browser's new credential. Stored under the name the user
/// gave it; the page says what went wrong otherwise.
pub(super) fn register_finish(
    app: &Arc<App>,
    s: &SignedIn,
    form: &Params,
    now: i64,
) -> Result<String, String> {
    let w = app
        .passkeys
        .webauthn
        .as_ref()
        .ok_or("Passkeys need the issuer to be a host name.")?;
    let ceremony = form.get_lenient("ceremony").unwrap_or("");
    let state = match app.passkeys.ceremonies.take(ceremony, now) {
        Some(Ceremony::Register {
            user_id,
            session,
            state,
        }) if user_id == s.user.id && session == s.hash => state,
        _ => return Err("The passkey request expired. Try again.".into()),
    };
    let name = rules::name(form.get_lenient("name").unwrap_or(""), now);
    let credential: RegisterPublicKeyCredential =
        serde_json::from_str(form.get_lenient("credential").unwrap_or(""))
            .map_err(|_| "The browser sent no usable passkey.".to_string())?;
    let refused = |e: webauthn_rs::prelude::WebauthnError| {
        tracing::info!(error = %e, "passkey registration refused");
        rules::registration_refusal(&e).to_string()
    };
    let saved = |_| "The passkey could not be saved. Try again.".to_string();
    let (id, kind, stored) = match &state {
        Registration::Passkey(st) => {
            let key: Passkey = w
                .finish_passkey_registration(&credential, st)
                .map_err(refused)?;
            let value = serde_json::to_value(&key).map_err(saved)?;
            (rules::encode_id(key.cred_id()), PasskeyKind::Passkey, value)
        }
        Registration::SecurityKey(st) => {
            let key: SecurityKey = w
                .finish_securitykey_registration(&credential, st)
                .map_err(refused)?;
            let value = serde_json::to_value(&key).map_err(saved)?;
            // A credential that can be synced is a passkey, not a key bound to a device
            // (`amr` says `hwk` for security keys).
            if value["cred"]["backup_eligible"] == true {
                return Err("This is a synced passkey: add it as a passkey instead.".into());
            }
            (
                rules::encode_id(key.cred_id()),
                PasskeyKind::SecurityKey,
                value,
            )
        }
    };
    // A credential id names one credential: never let it be registered twice.
    let taken = app
        .store
        .users()
        .map_err(|_| "The passkey could not be saved. Try again.".to_string())?
        .iter()
        .any(|u| u.mfa.passkeys.iter().any(|p| p.id == id));
    if taken {
        return Err("This passkey is already registered.".into());
    }
    let record = PasskeyRecord {
        id,
        name: name.clone(),
        kind,
        created_at: now,
        last_used: 0,
        credential: stored,
    };
    super::signin::modify_user(app, &s.user.id, |u| {
        if u.mfa.passkeys.len() >= rules::MAX_PER_USER {
            return false;
        }
        u.mfa.passkeys.push(record.clone());
        u.updated_at = now;
        true
    })
    .map_err(|_| "The passkey could not be saved. Try again.".to_string())?
    .ok_or_else(|| "Remove a passkey before adding another.".to_string())?;
    Ok(name)
}

/// The checks before a ceremony starts from a page: a form post with its CSRF token, and
/// WebAuthn available for this issuer.
#[allow(clippy::result_large_err)] // the error is the response itself, sent at once
fn starting<'a>(app: &'a App, req: &Req) -> Result<&'a Webauthn, Resp> {
    if !req.is_form() || !app.csrf_ok(req, &req.form()) {
        return Err(json_error(
            StatusCode::BAD_REQUEST,
            "the page expired; reload it",
        ));
    }
    app.passkeys.webauthn.as_ref().ok_or_else(|| {
        json_error(
            StatusCode::NOT_FOUND,
            "passkeys need the issuer to be a host name",
        )
    })
}

/// `POST /login/passkey/start`: the options for `navigator.credentials.get` without a
/// username: the browser offers the passkeys it holds for this site.
pub(super) fn signin_start(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    let w = match starting(app, req) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let (options, state): (RequestChallengeResponse, DiscoverableAuthentication) =
        match w.start_discoverable_authentication() {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "passkey sign-in could not start");
                return json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "passkeys are not available",
                );
            }
        };
    let known = super::known::any_valid(app, req, now);
    started(app, req, Ceremony::SignIn(state), &options, known, now)
}

/// A passkey sign-in that was verified: the user and what the key proved.
pub(super) struct Verified {
    pub user: User,
    pub used: Use,
}

/// Why a passkey sign-in failed, as the page says it.
pub(super) struct Refused(pub &'static str);

/// `POST /login/passkey`: checks the browser's assertion against the ceremony it
/// answers, then the user and the stored credential; saves the new counter and flags.
pub(super) fn signin_finish(app: &Arc<App>, form: &Params, now: i64) -> Result<Verified, Refused> {
    const EXPIRED: Refused = Refused("The passkey request expired. Try again.");
    const FAILED: Refused = Refused("That passkey could not sign you in.");
    let w = app.passkeys.webauthn.as_ref().ok_or(FAILED)?;
    let state = match app
        .passkeys
        .ceremonies
        .take(form.get_lenient("ceremony").unwrap_or(""), now)
    {
        Some(Ceremony::SignIn(state)) => state,
        _ => return Err(EXPIRED),
    };
    let credential: PublicKeyCredential =
        serde_json::from_str(form.get_lenient("credential").unwrap_or("")).map_err(|_| FAILED)?;
    let (handle, cred_id) = w
        .identify_discoverable_authentication(&credential)
        .map_err(|_| FAILED)?;
    let cred_id = rules::encode_id(cred_id);
    let user = app
        .store
        .user(&rules::encode_id(handle.as_bytes()))
        .map_err(|_| FAILED)?
        .filter(|u| !u.disabled)
        .ok_or(FAILED)?;
    let record = user
        .mfa
        .passkeys
        .iter()
        .find(|p| p.id == cred_id && p.kind == PasskeyKind::Passkey)
        .ok_or(FAILED)?;
    let passkey: Passkey = serde_json::from_value(record.credential.clone()).map_err(|_| FAILED)?;
    let result = w.finish_discoverable_authentication_v2(
        &credential,
        state,
        DiscoverableKey::from(&passkey),
    );
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            let kind = rules::assertion_refusal(&e);
            app.audit(
                kind.audit_kind(),
                Some(&user.username),
                None,
                None,
                &format!("passkey {}", rules::short(&cred_id)),
                now,
            );
            tracing::info!(error = %e, "passkey sign-in refused");
            return Err(FAILED);
        }
    };
    let mut updated = passkey.clone();
    let changed = updated.update_credential(&result) == Some(true);
    let stored = changed
        .then(|| serde_json::to_value(&updated).ok())
        .flatten();
    record_use(app, &user.id, &cred_id, stored, now).map_err(|_| FAILED)?;
    Ok(Verified {
        used: Use {
            user_verified: result.user_verified(),
            backup_eligible: result.backup_eligible(),
        },
        user,
    })
}

/// `POST /login/2fa/key`: the options for `navigator.credentials.get` with the security
/// keys of the user whose sign-in waits for its second factor.
pub(super) fn second_factor_start(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    let w = match starting(app, req) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let expired = || {
        json_error(
            StatusCode::BAD_REQUEST,
            "this sign-in has expired; sign in again",
        )
    };
    let Some((pending, p)) =
        super::signin::pending(app, req, super::signin::Stage::SecondFactor, now)
    else {
        return expired();
    };
    let user = match app.store.user(&p.user_id) {
        Ok(Some(u)) if !u.disabled => u,
        Ok(_) => return expired(),
        Err(_) => return json_error(StatusCode::SERVICE_UNAVAILABLE, "try again in a moment"),
    };
    let keys: Vec<SecurityKey> = user
        .mfa
        .security_keys()
        .filter_map(|k| serde_json::from_value(k.credential.clone()).ok())
        .collect();
    if keys.is_empty() {
        return json_error(StatusCode::NOT_FOUND, "no security key is registered");
    }
    let (options, state) = match w.start_securitykey_authentication(&keys) {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(error = %e, "security key check could not start");
            return json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "security keys are not available",
            );
        }
    };
    let ceremony = Ceremony::SecondFactor {
        pending,
        user_id: user.id,
        state,
    };
    started(app, req, ceremony, &options, false, now)
}

/// The answer of a security key for the pending sign-in `pending` of `user`: `true` when
/// it verifies (its counter and last use are saved).
pub(super) fn second_factor_check(
    app: &Arc<App>,
    form: &Params,
    pending: &str,
    user: &User,
    now: i64,
) -> bool {
    let Some(w) = &app.passkeys.webauthn else {
        return false;
    };
    let state = match app
        .passkeys
        .ceremonies
        .take(form.get_lenient("ceremony").unwrap_or(""), now)
    {
        Some(Ceremony::SecondFactor {
            pending: p,
            user_id,
            state,
        }) if p == pending && user_id == user.id => state,
        _ => return false,
    };
    let Ok(credential) =
        serde_json::from_str::<PublicKeyCredential>(form.get_lenient("credential").unwrap_or(""))
    else {
        return false;
    };
    let result = match w.finish_securitykey_authentication(&credential, &state) {
        Ok(r) => r,
        Err(e) => {
            let kind = rules::assertion_refusal(&e);
            if kind != rules::Refusal::Other {
                let who = Some(user.username.as_str());
                app.audit(kind.audit_kind(), who, None, None, "security key", now);
            }
            tracing::info!(error = %e, "security key refused");
            return false;
        }
    };
    let cred_id = rules::encode_id(result.cred_id());
    let stored = user
        .mfa
        .security_keys()
        .find(|k| k.id == cred_id)
        .and_then(|k| serde_json::from_value::<SecurityKey>(k.credential.clone()).ok())
        .and_then(|mut key| {
            let changed = key.update_credential(&result) == Some(true);
            changed.then(|| serde_json::to_value(&key).ok()).flatten()
        });
    matches!(record_use(app, &user.id, &cred_id, stored, now), Ok(true))
}

/// Saves a credential's last use and, when its counter or flags moved, the credential as
/// it is now. `Ok(false)` when the user no longer holds it.
fn record_use(
    app: &App,
    user_id: &str,
    cred_id: &str,
    updated: Option<Value>,
    now: i64,
) -> Result<bool, super::response::Fail> {
    let saved = super::signin::modify_user(app, user_id, |u| {
        let Some(p) = u.mfa.passkeys.iter_mut().find(|p| p.id == cred_id) else {
            return false;
        };
        p.last_used = now;
        if let Some(v) = &updated
            && rules::may_replace(&p.credential, v)
        {
            p.credential = v.clone();
        }
        true
    })?;
    Ok(saved.is_some())
}

/// The passkeys of a user as the account and admin pages list them.
pub(super) fn listed(user: &User) -> Vec<Value> {
    user.mfa
        .passkeys
        .iter()
        .map(|p| {
            json!({
                "id": p.id,
                "name": p.name,
                "kind": match p.kind {
                    PasskeyKind::Passkey => "passkey",
                    PasskeyKind::SecurityKey => "security key",
                },
                "added": super::account::when(p.created_at),
                "last_used": (p.last_used > 0).then(|| super::account::when(p.last_used)),
            })
        })
        .collect()
}
