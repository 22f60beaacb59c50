//! Every sign-in rule at a fixed `NOW`.

use super::*;
use crate::model::TrustedDevice;

const NOW: i64 = 1_700_000_000;

fn user() -> User {
    User {
        id: "u1".into(),
        username: "alice".into(),
        ..User::default()
    }
}

fn enrolled() -> User {
    let mut u = user();
    u.mfa.totp_secret = Some("JBSWY3DPEHPK3PXP".into());
    u
}

#[test]
fn the_step_after_a_correct_password() {
    let session = |factors, trusted_browser| Next::Session {
        factors,
        trusted_browser,
    };
    let f = |must, enrolled, fresh, trusted| PasswordFacts {
        must_change_password: must,
        second_factor_enrolled: enrolled,
        fresh_requested: fresh,
        trusted_browser: trusted,
        ..PasswordFacts::default()
    };
    // (must change, enrolled, fresh requested, trusted browser) → next
    let table = [
        (f(true, true, false, true), Next::NewPassword),
        (f(true, false, false, false), Next::NewPassword),
        (f(false, false, false, false), session(PASSWORD, false)),
        (f(false, false, true, true), session(PASSWORD, false)),
        (
            f(false, true, false, false),
            Next::SecondFactor(Accepts::Any),
        ),
        (f(false, true, false, true), session(TRUSTED_BROWSER, true)),
        (f(false, true, true, true), Next::SecondFactor(Accepts::Any)),
    ];
    for (facts, next) in table {
        assert_eq!(after_password(&facts), next, "{facts:?}");
    }
    assert_eq!(PASSWORD.acr, ACR_ONE_FACTOR);
    assert_eq!(TRUSTED_BROWSER.acr, ACR_TWO_FACTOR);
}

#[test]
fn a_passkeys_only_password_needs_a_key_or_a_recovery_code_never_a_dead_end() {
    let only = |recovery, keys, admin, trusted| PasswordFacts {
        passkeys_only: true,
        second_factor_enrolled: recovery || keys,
        recovery_codes: recovery,
        security_keys: keys,
        from_administrator: admin,
        trusted_browser: trusted,
        ..PasswordFacts::default()
    };
    let second = Next::SecondFactor(Accepts::KeyOrRecovery);
    // A trusted browser stands in for an authenticator app, not for a passkey.
    assert_eq!(after_password(&only(true, false, false, true)), second);
    assert_eq!(after_password(&only(false, true, false, false)), second);
    assert_eq!(
        after_password(&only(false, false, false, true)),
        Next::PasskeyNeeded
    );
    // The administrator's reset link (or temporary password) is the way back in, to
    // add a passkey: with the second factor the person has, as for everyone...
    assert_eq!(
        after_password(&only(true, false, true, false)),
        Next::SecondFactor(Accepts::Any)
    );
    let app_only = PasswordFacts {
        second_factor_enrolled: true,
        ..only(false, false, true, false)
    };
    assert_eq!(after_password(&app_only), Next::SecondFactor(Accepts::Any));
    // ...or the new password alone for someone without one.
    assert_eq!(
        after_password(&only(false, false, true, false)),
        Next::Session {
            factors: PASSWORD,
            trusted_browser: false
        }
    );
    // A temporary password is replaced first, as for everyone.
    let must = PasswordFacts {
        must_change_password: true,
        ..only(false, false, false, false)
    };
    assert_eq!(after_password(&must), Next::NewPassword);
}

#[test]
fn a_step_waiting_from_before_passkeys_were_required_takes_no_app_code() {
    let mut u = enrolled();
    assert_eq!(Accepts::Any.now_for(&u), Accepts::Any);
    u.passkeys_only = true;
    assert_eq!(Accepts::Any.now_for(&u), Accepts::KeyOrRecovery);
    assert_eq!(Accepts::KeyOnly.now_for(&u), Accepts::KeyOnly);
}

fn with_key(mut u: User, kind: crate::model::PasskeyKind) -> User {
    u.mfa.passkeys.push(crate::model::PasskeyRecord {
        id: format!("k{}", u.mfa.passkeys.len()),
        name: "key".into(),
        kind,
        created_at: NOW,
        last_used: 0,
        credential: serde_json::Value::Null,
    });
    u
}

#[test]
fn step_up_asks_for_the_factor_or_its_enrolment() {
    use crate::model::PasskeyKind::{Passkey, SecurityKey};
    // Two factors.
    assert_eq!(step_up(&user(), false), StepUp::Enrol);
    assert_eq!(
        step_up(&enrolled(), false),
        StepUp::SecondFactor(Accepts::Any)
    );
    assert_eq!(
        step_up(&with_key(user(), SecurityKey), false),
        StepUp::SecondFactor(Accepts::Any)
    );
    // A user with a passkey alone signs in with it again.
    assert_eq!(step_up(&with_key(user(), Passkey), false), StepUp::Passkey);
    // A passkey required: a passkey first, else a security key, never the app's code.
    assert_eq!(step_up(&enrolled(), true), StepUp::EnrolPasskey);
    assert_eq!(
        step_up(&with_key(enrolled(), Passkey), true),
        StepUp::Passkey
    );
    assert_eq!(
        step_up(&with_key(enrolled(), SecurityKey), true),
        StepUp::SecondFactor(Accepts::KeyOnly)
    );
    // A passkeys-only user: a key or a recovery code, never the app's code alone.
    let mut only = enrolled();
    only.passkeys_only = true;
    assert_eq!(step_up(&only, false), StepUp::EnrolPasskey);
    only.mfa.recovery_hashes = vec!["h".into()];
    assert_eq!(
        step_up(&only, false),
        StepUp::SecondFactor(Accepts::KeyOrRecovery)
    );
}

#[test]
fn each_step_takes_only_its_factors_and_offers_what_the_user_has() {
    use Spent::{RecoveryCode, SecurityKey, Totp};
    let table = [
        (Accepts::Any, [true, true, true]),
        (Accepts::KeyOrRecovery, [false, true, true]),
        (Accepts::KeyOnly, [false, false, true]),
    ];
    for (accepts, takes) in table {
        let got = [Totp, RecoveryCode, SecurityKey].map(|s| accepts.takes(s));
        assert_eq!(got, takes, "{accepts:?}");
    }
    let mut u = with_key(enrolled(), crate::model::PasskeyKind::SecurityKey);
    u.mfa.recovery_hashes = vec!["h".into()];
    let all = Offer {
        totp: true,
        recovery: true,
        keys: true,
    };
    assert_eq!(Accepts::Any.offer(&u), all);
    assert_eq!(
        Accepts::KeyOnly.offer(&u),
        Offer {
            keys: true,
            ..Offer::default()
        }
    );
    assert_eq!(Accepts::KeyOrRecovery.offer(&enrolled()), Offer::default());
}

fn pending(raises: Option<&str>, attempts: u32) -> Pending {
    Pending {
        user_id: "u1".into(),
        stage: Stage::SecondFactor,
        target: Target::default(),
        attempts,
        raises: raises.map(str::to_string),
        accepts: Accepts::Any,
    }
}

#[test]
fn a_code_counts_only_for_a_live_user_and_a_live_raised_session() {
    let (u, disabled) = (
        enrolled(),
        User {
            disabled: true,
            ..enrolled()
        },
    );
    assert!(may_take_code(&pending(None, 0), Some(&u), None));
    assert!(!may_take_code(&pending(None, 0), None, None));
    assert!(!may_take_code(&pending(None, 0), Some(&disabled), None));
    let step_up = pending(Some("h"), 0);
    assert!(may_take_code(&step_up, Some(&u), Some("u1")));
    assert!(!may_take_code(&step_up, Some(&u), None), "session ended");
    assert!(
        !may_take_code(&step_up, Some(&u), Some("someone-else")),
        "the session now belongs to another user"
    );
}

#[test]
fn five_wrong_codes_restart_the_sign_in() {
    for before in 0..MAX_CODE_ATTEMPTS {
        let expected = CodeOutcome::Wrong {
            attempts: before + 1,
            restart: before + 1 == MAX_CODE_ATTEMPTS,
        };
        assert_eq!(code_outcome(&pending(None, before), None), expected);
    }
    assert_eq!(
        code_outcome(&pending(None, 4), Some(Spent::Totp)),
        CodeOutcome::Accepted(Spent::Totp),
        "a right code on the last attempt still counts"
    );
    assert_eq!(Spent::Totp.factors().amr, &["pwd", "otp", "mfa"]);
    assert_eq!(Spent::RecoveryCode.factors().amr, &["pwd", "mfa"]);
    assert_eq!(Spent::RecoveryCode.factors().acr, ACR_TWO_FACTOR);
}

#[test]
fn trusted_browser_cookies() {
    let mut u = enrolled();
    u.mfa.devices.push(TrustedDevice {
        id: "d1".into(),
        label: "Firefox".into(),
        created_at: NOW - 10,
        expires_at: NOW + 100,
    });
    let value = format!("u1.d1.{}.tag", NOW + 100);
    let (c, tag) = DeviceCookie::parse(&value).unwrap();
    assert_eq!(tag, "tag");
    assert_eq!(c.payload(), device_payload("u1", "d1", NOW + 100));
    assert!(trusted_device_ok(&u, &c, NOW));
    assert!(!trusted_device_ok(&u, &c, NOW + 100), "expired");
    let other = DeviceCookie {
        user_id: "u2",
        ..c.clone()
    };
    assert!(!trusted_device_ok(&u, &other, NOW));
    let forgotten = DeviceCookie {
        device_id: "d2",
        ..c.clone()
    };
    assert!(
        !trusted_device_ok(&u, &forgotten, NOW),
        "removed from the list"
    );
    u.mfa.devices[0].expires_at = NOW;
    assert!(!trusted_device_ok(&u, &c, NOW));
    for bad in ["", "u1.d1.x.tag", "u1.d1.5", "a.b.1.c.d"] {
        assert!(DeviceCookie::parse(bad).is_none(), "{bad}");
    }
}

#[test]
fn reset_links() {
    let mut u = user();
    assert!(!reset_link_ok(&u, "h", NOW));
    u.reset_link = Some(("h".into(), NOW + 3600));
    assert!(reset_link_ok(&u, "h", NOW));
    assert!(!reset_link_ok(&u, "other", NOW));
    assert!(!reset_link_ok(&u, "h", NOW + 3600), "expired");
    u.disabled = true;
    assert!(!reset_link_ok(&u, "h", NOW));
}

#[test]
fn only_latchkey_pages_are_places_to_continue_to() {
    for ok in [
        "/device",
        "/device?user_code=BCDF-GHJK",
        "/account",
        "/account/2fa",
        "/admin/clients?x=1",
    ] {
        assert!(safe_next(ok), "{ok}");
    }
    for bad in [
        "/",
        "//evil.example",
        "https://evil.example/device",
        "/device/../admin",
        "/devices",
        "/adminx",
        "/account//evil.example",
        "/device?x=\\\\evil",
        "/device? x",
    ] {
        assert!(!safe_next(bad), "{bad}");
    }
    let t = Target {
        interaction: Some("i".into()),
        next: Some("/account".into()),
    };
    assert_eq!(
        t.url(),
        format!("{}?interaction=i", paths::AUTHORIZE_RESUME)
    );
    assert_eq!(Target::default().url(), "/account");
}

#[test]
fn invitation_and_address_links_hold_only_while_they_should() {
    let hash = crate::keys::token_hash("secret");
    let mut u = user();
    u.email = "a@example.com".into();
    assert!(!invitation_ok(&u, &hash, NOW), "no invitation");
    // Queued but not yet mailed: no link works.
    u.invitation = Some((String::new(), NOW + 10, String::new()));
    assert!(!invitation_ok(&u, "", NOW));
    u.invitation = Some((hash.clone(), NOW + 10, u.email.clone()));
    assert!(invitation_ok(&u, &hash, NOW));
    assert!(!invitation_ok(&u, &crate::keys::token_hash("other"), NOW));
    assert!(!invitation_ok(&u, &hash, NOW + 10), "expired");
    u.email = "corrected@example.com".into();
    assert!(!invitation_ok(&u, &hash, NOW), "mailed to another address");
    u.email = "a@example.com".into();
    u.disabled = true;
    assert!(!invitation_ok(&u, &hash, NOW), "disabled");
    u.disabled = false;

    u.email_check = Some((hash.clone(), NOW + 10, u.email.clone()));
    assert!(email_check_ok(&u, &hash, NOW));
    assert!(!email_check_ok(&u, &hash, NOW + 10), "expired");
    assert!(!email_check_ok(&u, &crate::keys::token_hash("x"), NOW));
    u.email = "b@example.com".into();
    assert!(!email_check_ok(&u, &hash, NOW), "the address changed since");
}
