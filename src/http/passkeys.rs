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
    CreationChallengeResponse, DiscoverableAuthentication, DiscoverableKey, Passkey,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse, Url, Uuid, Webauthn, WebauthnBuilder,
};

use super::interaction::{Budget, Expiring};
use super::response::{self, Resp};
use super::{App, Req, SignedIn};
use crate::model::{PasskeyKind, PasskeyRecord, User};
use crate::oidc::params::Params;
use crate::signin::passkey::{self as rules, Use};
use crate::signin::throttle::Source;

/// A ceremony's state is kept this long; the browser's own timeout is shorter.
pub(super) const CEREMONY_TTL: i64 = 300;

/// Ceremonies that anyone may start from the sign-in page: at most 10,000 and 16 MiB in
/// all, 200 and 512 KiB from one address (IPv6: one /64), and a reserve for browsers that
/// signed in here before. A ceremony's state is about a kilobyte.
pub(super) const CEREMONIES: Budget = Budget {
    count: 10_000,
    bytes: 16 << 20,
    per_source: 200,
    per_source_bytes: 512 << 10,
    reserve_count: 2_000,
    reserve_bytes: 4 << 20,
};

/// Bytes one ceremony is counted as.
const CEREMONY_BYTES: usize = 1_024;

/// A ceremony under way.
#[derive(Clone)]
pub(super) enum Ceremony {
    /// Adding a passkey for the signed-in user in the session with this hash.
    Register {
        user_id: String,
        session: String,
        state: PasskeyRegistration,
    },
    /// Signing in with a passkey the browser chooses.
    SignIn(DiscoverableAuthentication),
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
    pub fn new(issuer: &str, instance_name: &str) -> Passkeys {
        Passkeys {
            webauthn: relying_party(issuer, instance_name),
            ceremonies: Arc::new(Expiring::new(CEREMONY_TTL)),
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

    /// Ceremonies held and their bytes.
    pub fn usage(&self) -> (usize, usize) {
        self.ceremonies.usage()
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
    let built = WebauthnBuilder::new(host, &origin).and_then(|b| b.rp_name(instance_name).build());
    match built {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(issuer, error = %e, "passkeys are off: the issuer is not a WebAuthn origin");
            None
        }
    }
}

/// The WebAuthn user handle of a user: the 16 bytes of a Latchkey user id (random ids are
/// 16 bytes, base64url), or a name-based UUID for ids made otherwise.
pub(super) fn user_handle(user_id: &str) -> Uuid {
    use base64::Engine as _;
    match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(user_id) {
        Ok(b) if b.len() == 16 => Uuid::from_bytes(b.try_into().unwrap_or([0; 16])),
        _ => {
            let digest = crate::keys::token_hash(user_id);
            Uuid::from_u128(u128::from_str_radix(&digest[..32], 16).unwrap_or(0))
        }
    }
}

/// The user a user handle names (`None`: nobody).
fn user_by_handle(app: &App, handle: Uuid) -> Result<Option<User>, super::response::Fail> {
    use base64::Engine as _;
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(handle.as_bytes());
    if let Some(u) = app.store.user(&id)? {
        return Ok(Some(u));
    }
    // Ids that are not 16 random bytes: their handle is derived, so look for it.
    Ok(app
        .store
        .users()?
        .into_iter()
        .find(|u| user_handle(&u.id) == handle))
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn json_error(status: StatusCode, message: &str) -> Resp {
    response::json(status, &json!({ "error": message }))
}

/// `POST /account/passkeys/start`: the options for `navigator.credentials.create`, for
/// the signed-in user. The passkey is discoverable (it signs in without a username) and
/// verifies the user; the user's own keys are excluded.
pub(super) fn register_start(app: &Arc<App>, s: &SignedIn, now: i64) -> Resp {
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
    let exclude: Vec<_> = u
        .mfa
        .passkeys
        .iter()
        .filter_map(|p| rules::credential_id(&p.id))
        .collect();
    let started = w.start_passkey_registration(
        user_handle(&u.id),
        &u.username,
        &u.display_name(),
        Some(exclude),
    );
    let (options, state): (CreationChallengeResponse, PasskeyRegistration) = match started {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(error = %e, "passkey registration could not start");
            return json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "passkeys are not available",
            );
        }
    };
    let Ok(mut options) = serde_json::to_value(&options) else {
        return json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "passkeys are not available",
        );
    };
    rules::ask_for_discoverable(&mut options);
    // Registration is for a signed-in user; their number is bounded by the sign-ins.
    let id = app.passkeys.ceremonies.start(
        Ceremony::Register {
            user_id: u.id.clone(),
            session: s.hash.clone(),
            state,
        },
        now,
    );
    response::json(
        StatusCode::OK,
        &json!({ "ceremony": id, "options": options }),
    )
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
    let passkey: Passkey = w
        .finish_passkey_registration(&credential, &state)
        .map_err(|e| {
            tracing::info!(error = %e, "passkey registration refused");
            rules::registration_refusal(&e).to_string()
        })?;
    let id = b64(passkey.cred_id());
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
        kind: PasskeyKind::Passkey,
        created_at: now,
        last_used: 0,
        credential: serde_json::to_value(&passkey)
            .map_err(|_| "The passkey could not be saved. Try again.".to_string())?,
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

/// `POST /login/passkey/start`: the options for `navigator.credentials.get` without a
/// username: the browser offers the passkeys it holds for this site.
pub(super) fn signin_start(app: &Arc<App>, req: &Req, now: i64) -> Resp {
    let form = req.form();
    if !req.is_form() || !app.csrf_ok(req, &form) {
        return json_error(StatusCode::BAD_REQUEST, "the page expired; reload it");
    }
    let Some(w) = &app.passkeys.webauthn else {
        return json_error(
            StatusCode::NOT_FOUND,
            "passkeys need the issuer to be a host name",
        );
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
    let started = app.passkeys.ceremonies.try_start(
        Ceremony::SignIn(state),
        CEREMONY_BYTES,
        Source::from(req.peer),
        known,
        &CEREMONIES,
        now,
    );
    match started {
        Ok(id) => response::json(
            StatusCode::OK,
            &json!({ "ceremony": id, "options": options }),
        ),
        Err(_) => json_error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many sign-ins in progress; try again in a few minutes",
        ),
    }
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
    let cred_id = b64(cred_id);
    let user = user_by_handle(app, handle)
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
    let changed = updated.update_credential(&result).unwrap_or(false);
    let stored = serde_json::to_value(&updated).ok();
    super::signin::modify_user(app, &user.id, |u| {
        let Some(p) = u.mfa.passkeys.iter_mut().find(|p| p.id == cred_id) else {
            return false;
        };
        p.last_used = now;
        if changed && let Some(v) = &stored {
            p.credential = v.clone();
        }
        true
    })
    .map_err(|_| FAILED)?;
    Ok(Verified {
        used: Use {
            user_verified: result.user_verified(),
            backup_eligible: result.backup_eligible(),
        },
        user,
    })
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
