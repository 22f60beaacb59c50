//! Every grant rule at a fixed `NOW`, over facts built by hand.

use super::*;
use crate::model::{AuthCode, DeviceGrant, DeviceStatus, Grant, Policy, RefreshToken, User};
use crate::oidc::ErrorCode;
use crate::oidc::params::Params;
use crate::oidc::registration::{ClientSpec, build_client};

const NOW: i64 = 1_700_000_000;
const CB: &str = "https://rp/cb";
/// RFC 7636 Appendix B.
const V: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn l() -> Lifetimes {
    Lifetimes {
        code: 60,
        access_token: 900,
        id_token: 300,
        refresh_idle: 100,
        refresh_absolute: 1000,
        session_idle: 3600,
        session_absolute: 36000,
    }
}

fn draws() -> Draws {
    Draws {
        grant_id: "new-grant".into(),
        jti: "jti-1".into(),
        sid: "new-sid".into(),
        refresh_token: "rt-1".into(),
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn client_with(f: impl FnOnce(&mut ClientSpec)) -> Client {
    let mut spec = ClientSpec {
        name: "RP".into(),
        redirect_uris: vec![CB.into()],
        scopes: s(&["openid", "email", "profile", "offline_access"]),
        grant_types: s(&[
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "password",
            crate::oidc::registration::DEVICE_CODE,
        ]),
        ..ClientSpec::default()
    };
    f(&mut spec);
    build_client("rp".into(), spec, 0).unwrap()
}

fn client() -> Client {
    client_with(|_| {})
}

fn user() -> User {
    User {
        id: "u".into(),
        username: "alice".into(),
        email: "alice@example.com".into(),
        groups: vec!["staff".into()],
        ..User::default()
    }
}

fn code() -> AuthCode {
    AuthCode {
        client_id: "rp".into(),
        redirect_uri: CB.into(),
        user_id: "u".into(),
        scopes: s(&["openid", "email"]),
        nonce: Some("n".into()),
        code_challenge: Some(CHALLENGE.into()),
        grant_id: "g".into(),
        auth_time: NOW - 10,
        amr: s(&["pwd"]),
        acr: "1".into(),
        sid: "sid".into(),
        session_hash: "h".into(),
        expires_at: NOW + 60,
        used: false,
        claims: None,
    }
}

fn code_req<'a>(redirect_uri: Option<&'a str>, verifier: Option<&'a str>) -> CodeRequest<'a> {
    CodeRequest {
        code: "c",
        redirect_uri,
        verifier,
    }
}

fn code_error(d: Decision<'_>) -> ErrorCode {
    match d {
        Err(Refusal::Invalid(e)) => e.code,
        other => panic!("expected a plain refusal, got {other:?}"),
    }
}

#[test]
fn a_code_is_exchanged_once_by_its_client_with_its_redirect_uri_and_verifier() {
    let (cl, u, c) = (client(), user(), code());
    let good = code_req(Some(CB), Some(V));
    let facts = |req, code, user, alive| CodeFacts {
        client: &cl,
        request: req,
        code,
        user,
        session_alive: alive,
    };
    let plan = decide_code(&facts(&good, Some(&c), Some(&u), true), NOW).unwrap();
    assert_eq!(plan.grant_id, "g", "tokens join the code's grant");
    assert_eq!(
        plan.new_grant,
        Some(false),
        "no offline_access: ends with the session"
    );
    assert_eq!(plan.refresh, Refresh::New);
    assert_eq!(plan.scopes, s(&["openid", "email"]));

    let other = CodeRequest {
        code: "c",
        redirect_uri: Some("https://rp/cb/"),
        verifier: Some(V),
    };
    let wrong_verifier = "x".repeat(43);
    let table: Vec<(&str, CodeRequest<'_>, Option<&AuthCode>, i64)> = vec![
        ("unknown code", code_req(Some(CB), Some(V)), None, NOW),
        ("expired", code_req(Some(CB), Some(V)), Some(&c), NOW + 60),
        ("other redirect_uri", other, Some(&c), NOW),
        ("no redirect_uri", code_req(None, Some(V)), Some(&c), NOW),
        ("no verifier", code_req(Some(CB), None), Some(&c), NOW),
        (
            "wrong verifier",
            code_req(Some(CB), Some(&wrong_verifier)),
            Some(&c),
            NOW,
        ),
    ];
    for (what, req, code, now) in &table {
        assert_eq!(
            code_error(decide_code(&facts(req, *code, Some(&u), true), *now)),
            ErrorCode::InvalidGrant,
            "{what}"
        );
    }
    // One second before expiry still works.
    assert!(decide_code(&facts(&good, Some(&c), Some(&u), true), NOW + 59).is_ok());
}

#[test]
fn a_used_code_is_a_replay_for_its_own_client_only() {
    let (cl, u) = (client(), user());
    let used = AuthCode {
        used: true,
        ..code()
    };
    let req = code_req(Some(CB), Some(V));
    let f = CodeFacts {
        client: &cl,
        request: &req,
        code: Some(&used),
        user: Some(&u),
        session_alive: true,
    };
    match decide_code(&f, NOW) {
        Err(Refusal::Replay(r)) => {
            assert_eq!((r.grant_id.as_str(), r.kind), ("g", "token.code_replayed"));
            assert_eq!(r.error.code, ErrorCode::InvalidGrant);
        }
        other => panic!("{other:?}"),
    }
    // Another client presenting it learns nothing and revokes nothing.
    let stranger = AuthCode {
        client_id: "other".into(),
        ..used.clone()
    };
    let f = CodeFacts {
        code: Some(&stranger),
        ..f
    };
    assert_eq!(code_error(decide_code(&f, NOW)), ErrorCode::InvalidGrant);
}

#[test]
fn pkce_is_all_or_nothing() {
    let (cl, u) = (client(), user());
    let plain = AuthCode {
        code_challenge: None,
        ..code()
    };
    for (verifier, ok) in [(None, true), (Some(V), false)] {
        let req = code_req(Some(CB), verifier);
        let f = CodeFacts {
            client: &cl,
            request: &req,
            code: Some(&plain),
            user: Some(&u),
            session_alive: true,
        };
        assert_eq!(decide_code(&f, NOW).is_ok(), ok, "verifier {verifier:?}");
    }
}

#[test]
fn a_code_outlives_its_session_only_with_offline_access() {
    let (cl, u) = (client(), user());
    let req = code_req(Some(CB), Some(V));
    let online = code();
    let offline = AuthCode {
        scopes: s(&["openid", "offline_access"]),
        ..code()
    };
    let f = |c, alive| CodeFacts {
        client: &cl,
        request: &req,
        code: Some(c),
        user: Some(&u),
        session_alive: alive,
    };
    assert_eq!(
        code_error(decide_code(&f(&online, false), NOW)),
        ErrorCode::InvalidGrant
    );
    let plan = decide_code(&f(&offline, false), NOW).unwrap();
    assert_eq!(plan.new_grant, Some(true));
}

#[test]
fn a_code_follows_the_user_and_the_client_as_they_are_now() {
    let u = user();
    let req = code_req(Some(CB), Some(V));
    let c = AuthCode {
        scopes: s(&["openid", "email", "profile"]),
        ..code()
    };
    // The client lost `profile` since the code was issued; it is not released.
    let narrowed = client_with(|s| s.scopes = vec!["openid".into(), "email".into()]);
    let f = CodeFacts {
        client: &narrowed,
        request: &req,
        code: Some(&c),
        user: Some(&u),
        session_alive: true,
    };
    assert_eq!(
        decide_code(&f, NOW).unwrap().scopes,
        s(&["openid", "email"])
    );
    // Disabled, deleted, or no longer in an allowed group: no tokens.
    let disabled = User {
        disabled: true,
        ..user()
    };
    let grouped = client_with(|s| s.allowed_groups = vec!["admins".into()]);
    // Switched to two factors or a passkey since the (password) code was issued.
    let two = client_with(|s| s.policy = Some("two_factor".into()));
    let passkey = client_with(|s| s.policy = Some("passkey".into()));
    for (cl, user) in [
        (&narrowed, Some(&disabled)),
        (&narrowed, None),
        (&grouped, Some(&u)),
        (&two, Some(&u)),
        (&passkey, Some(&u)),
    ] {
        let f = CodeFacts {
            client: cl,
            request: &req,
            code: Some(&c),
            user,
            session_alive: true,
        };
        assert_eq!(code_error(decide_code(&f, NOW)), ErrorCode::InvalidGrant);
    }
}

#[test]
fn no_refresh_token_for_a_client_not_registered_for_it() {
    let cl = client_with(|s| s.grant_types = vec!["authorization_code".into()]);
    let (u, c) = (user(), code());
    let req = code_req(Some(CB), Some(V));
    let f = CodeFacts {
        client: &cl,
        request: &req,
        code: Some(&c),
        user: Some(&u),
        session_alive: true,
    };
    let plan = decide_code(&f, NOW).unwrap();
    assert_eq!(plan.refresh, Refresh::None);
    assert!(plan.records(&l(), &draws(), NOW).refresh.is_none());
}

fn rt(offline: bool) -> RefreshToken {
    RefreshToken {
        grant_id: "g".into(),
        client_id: "rp".into(),
        user_id: "u".into(),
        scopes: s(&["openid", "email", "offline_access"]),
        auth_time: NOW - 500,
        amr: s(&["pwd"]),
        acr: "1".into(),
        sid: "s".into(),
        session_hash: "h".into(),
        offline,
        nonce: None,
        issued_at: NOW - 50,
        expires_at: NOW + 100,
        absolute_expires_at: NOW + 150,
        used: false,
        claims: None,
    }
}

fn grant() -> Grant {
    Grant {
        grant_id: "g".into(),
        client_id: "rp".into(),
        user_id: "u".into(),
        created_at: NOW - 500,
        revoked: false,
        session_hash: "h".into(),
        offline: true,
        userinfo_claims: vec![],
        tokens_until: NOW + 900,
        keep_until: 0,
    }
}

struct R {
    client: Client,
    token: Option<RefreshToken>,
    grant: Option<Grant>,
    alive: bool,
    user: Option<User>,
    req: RefreshRequest<'static>,
}

impl R {
    fn new() -> R {
        R {
            client: client(),
            token: Some(rt(true)),
            grant: Some(grant()),
            alive: true,
            user: Some(user()),
            req: RefreshRequest {
                token: "t",
                scope: None,
            },
        }
    }

    fn decide(&self, now: i64) -> Result<Plan<'_>, Refusal> {
        let f = RefreshFacts {
            client: &self.client,
            request: &self.req,
            token: self.token.as_ref(),
            grant: self.grant.as_ref(),
            session_alive: self.alive,
            user: self.user.as_ref(),
        };
        decide_refresh(&f, &l(), now)
    }
}

#[test]
fn a_refresh_rotates_within_its_grant_and_family_limits() {
    let r = R::new();
    let plan = r.decide(NOW).unwrap();
    assert_eq!(plan.new_grant, None, "a refresh continues its grant");
    let Refresh::Rotate(next) = &plan.refresh else {
        panic!("{:?}", plan.refresh)
    };
    // Idle expiry starts again, capped by the absolute one.
    assert_eq!(next.expires_at, NOW + 100);
    assert_eq!(next.issued_at, NOW);
    assert!(!next.used);
    let late = r.decide(NOW + 99).unwrap();
    let Refresh::Rotate(next) = &late.refresh else {
        panic!()
    };
    assert_eq!(next.expires_at, NOW + 150, "never past the absolute expiry");
    let records = plan.records(&l(), &draws(), NOW);
    assert!(records.grant.is_none());
    let (token, hash, _) = records.refresh.unwrap();
    assert_eq!(token, "rt-1");
    assert_eq!(hash, crate::keys::token_hash("rt-1"));
}

#[test]
fn refresh_refusals() {
    let expect = |what: &str, r: R, now: i64, code: ErrorCode| {
        assert_eq!(code_error(r.decide(now)), code, "{what}");
    };
    expect("idle expiry", R::new(), NOW + 100, ErrorCode::InvalidGrant);
    let mut r = R::new();
    r.token.as_mut().unwrap().absolute_expires_at = NOW;
    expect("absolute expiry", r, NOW, ErrorCode::InvalidGrant);
    expect(
        "unknown token",
        R {
            token: None,
            ..R::new()
        },
        NOW,
        ErrorCode::InvalidGrant,
    );
    let mut r = R::new();
    r.token.as_mut().unwrap().client_id = "other".into();
    expect("another client's token", r, NOW, ErrorCode::InvalidGrant);
    let mut r = R::new();
    r.grant.as_mut().unwrap().revoked = true;
    expect("revoked grant", r, NOW, ErrorCode::InvalidGrant);
    expect(
        "grant gone",
        R {
            grant: None,
            ..R::new()
        },
        NOW,
        ErrorCode::InvalidGrant,
    );
    expect(
        "user gone",
        R {
            user: None,
            ..R::new()
        },
        NOW,
        ErrorCode::InvalidGrant,
    );
    expect(
        "wider scope",
        R {
            req: RefreshRequest {
                token: "t",
                scope: Some("openid phone"),
            },
            ..R::new()
        },
        NOW,
        ErrorCode::InvalidScope,
    );
    expect(
        "malformed scope",
        R {
            req: RefreshRequest {
                token: "t",
                scope: Some("openid \"x"),
            },
            ..R::new()
        },
        NOW,
        ErrorCode::InvalidScope,
    );
}

#[test]
fn a_narrower_refresh_scope_narrows_these_tokens_only() {
    let r = R {
        req: RefreshRequest {
            token: "t",
            scope: Some("email openid"),
        },
        ..R::new()
    };
    let plan = r.decide(NOW).unwrap();
    assert_eq!(plan.scopes, s(&["openid", "email"]), "canonical order");
    let Refresh::Rotate(next) = &plan.refresh else {
        panic!()
    };
    assert_eq!(next.scopes, s(&["openid", "email", "offline_access"]));
}

#[test]
fn a_used_refresh_token_revokes_its_family() {
    let mut r = R::new();
    r.token.as_mut().unwrap().used = true;
    match r.decide(NOW) {
        Err(Refusal::Replay(p)) => assert_eq!(p.kind, "token.refresh_replayed"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_session_rule_of_refresh() {
    // Offline: outlives the session, unless the client binds it.
    let r = R {
        alive: false,
        ..R::new()
    };
    assert!(r.decide(NOW).is_ok());
    let mut bound = R {
        alive: false,
        ..R::new()
    };
    bound.client.refresh_requires_session = true;
    assert_eq!(code_error(bound.decide(NOW)), ErrorCode::InvalidGrant);
    // Online: ends with the session.
    let online = R {
        token: Some(rt(false)),
        alive: false,
        ..R::new()
    };
    assert_eq!(code_error(online.decide(NOW)), ErrorCode::InvalidGrant);
    let online = R {
        token: Some(rt(false)),
        ..R::new()
    };
    assert!(online.decide(NOW).is_ok());
}

#[test]
fn a_two_factor_client_refreshes_only_two_factor_grants() {
    let mut r = R::new();
    r.client.policy = Policy::TwoFactor;
    assert_eq!(code_error(r.decide(NOW)), ErrorCode::InvalidGrant);
    r.token.as_mut().unwrap().acr = crate::oidc::authorize::ACR_TWO_FACTOR.into();
    assert!(r.decide(NOW).is_ok());
}

#[test]
fn a_passkey_client_refreshes_only_grants_signed_in_with_one() {
    let mut r = R::new();
    r.client.policy = Policy::Passkey;
    let t = r.token.as_mut().unwrap();
    t.acr = crate::oidc::authorize::ACR_TWO_FACTOR.into();
    t.amr = s(&["pwd", "otp", "mfa"]);
    assert_eq!(code_error(r.decide(NOW)), ErrorCode::InvalidGrant);
    r.token.as_mut().unwrap().amr = s(&["hwk", "user", "mfa"]);
    assert!(r.decide(NOW).is_ok());
}

#[test]
fn a_client_narrowed_since_the_grant_loses_those_scopes() {
    let mut r = R::new();
    r.client.scopes = s(&["openid", "offline_access"]);
    assert_eq!(
        r.decide(NOW).unwrap().scopes,
        s(&["openid", "offline_access"])
    );
}

#[test]
fn client_credentials_scopes() {
    let cl =
        client_with(|s| s.scopes = vec!["openid".into(), "groups".into(), "offline_access".into()]);
    let plan = decide_client_credentials(&cl, None).unwrap();
    assert!(plan.scopes.is_empty(), "nothing asked, nothing granted");
    assert_eq!(plan.subject, Subject::Client);
    assert_eq!(plan.grant_id, "", "a client's own token has no grant");
    let plan = decide_client_credentials(&cl, Some(s(&["groups"]))).unwrap();
    assert_eq!(plan.scopes, s(&["groups"]));
    for bad in [&["openid"][..], &["offline_access"], &["email"]] {
        assert_eq!(
            code_error(decide_client_credentials(&cl, Some(s(bad)))),
            ErrorCode::InvalidScope,
            "{bad:?}"
        );
    }
    // The client is its own subject; nothing about a person, no refresh, no ID token.
    let at = plan.access_claims("https://op", &l(), &draws(), NOW);
    assert_eq!(at["sub"], "rp");
    assert_eq!(at["exp"], NOW + 900);
    assert!(!at.contains_key("auth_time"));
    assert!(
        plan.id_claims("https://op", &l(), NOW, None, None)
            .is_none()
    );
    assert_eq!(at["jti"], "jti-1", "no grant to name");
    assert_eq!(jti_grant("jti-1"), None);
    let rec = plan.records(&l(), &draws(), NOW);
    assert!(rec.refresh.is_none());
    assert!(rec.grant.is_none(), "issuing one stores nothing");
}

fn form(q: &str) -> Params {
    Params::parse(q.as_bytes())
}

#[test]
fn password_requests() {
    let cl = client();
    let p = form("username=+alice+&password=pw&scope=openid+phone");
    let r = password_request(&p, &cl).unwrap();
    assert_eq!(r.username, "alice");
    assert_eq!(r.scopes, s(&["openid"]), "unavailable scopes are dropped");
    let long = format!("username=a&password={}", "x".repeat(MAX_PASSWORD_LEN + 1));
    assert_eq!(password_request(&form(&long), &cl).unwrap().password, None);
    for (q, code) in [
        ("username=a", ErrorCode::InvalidRequest),
        ("username=a&password=b&scope=phone", ErrorCode::InvalidScope),
        (
            "username=a&password=b&scope=a&scope=b",
            ErrorCode::InvalidRequest,
        ),
    ] {
        assert_eq!(
            password_request(&form(q), &cl).unwrap_err().code,
            code,
            "{q}"
        );
    }
    for policy in ["two_factor", "passkey"] {
        let strict = client_with(|s| s.policy = Some(policy.into()));
        assert_eq!(
            password_request(&form("username=a&password=b"), &strict)
                .unwrap_err()
                .code,
            ErrorCode::UnauthorizedClient,
            "{policy}"
        );
    }
}

#[test]
fn password_decisions() {
    let cl = client();
    let p = form("username=alice&password=pw");
    let r = password_request(&p, &cl).unwrap();
    let u = user();
    let plan = decide_password(&cl, &r, Some(&u), true, &draws(), NOW).unwrap();
    assert_eq!(plan.new_grant, Some(true), "no session, so offline");
    let Subject::User { authn, .. } = &plan.subject else {
        panic!()
    };
    assert_eq!((authn.auth_time, authn.sid.as_str()), (NOW, "new-sid"));
    assert_eq!(authn.amr, s(&["pwd"]));
    let failed = |d: Decision<'_>| match d {
        Err(Refusal::SignInFailed { counts, .. }) => counts,
        other => panic!("{other:?}"),
    };
    assert!(failed(decide_password(
        &cl,
        &r,
        Some(&u),
        false,
        &draws(),
        NOW
    )));
    assert!(failed(decide_password(&cl, &r, None, true, &draws(), NOW)));
    let disabled = User {
        disabled: true,
        ..user()
    };
    assert!(failed(decide_password(
        &cl,
        &r,
        Some(&disabled),
        true,
        &draws(),
        NOW
    )));
    // The right password for an account that needs a browser: not counted as a guess.
    let mut mfa = user();
    mfa.must_change_password = true;
    assert!(!failed(decide_password(
        &cl,
        &r,
        Some(&mfa),
        true,
        &draws(),
        NOW
    )));
    // A security key is a second factor the grant cannot ask for either.
    let mut keyed = user();
    keyed.mfa.passkeys.push(crate::model::PasskeyRecord {
        id: "cred".into(),
        name: "Blue key".into(),
        kind: crate::model::PasskeyKind::SecurityKey,
        created_at: NOW,
        last_used: 0,
        credential: serde_json::json!({}),
    });
    assert!(!failed(decide_password(
        &cl,
        &r,
        Some(&keyed),
        true,
        &draws(),
        NOW
    )));
    // Nor can a passkeys-only account use its password here.
    let only = User {
        passkeys_only: true,
        ..user()
    };
    assert!(!failed(decide_password(
        &cl,
        &r,
        Some(&only),
        true,
        &draws(),
        NOW
    )));
}

fn device(status: DeviceStatus) -> DeviceGrant {
    DeviceGrant {
        client_id: "rp".into(),
        scopes: s(&["openid"]),
        user_code: "BCDFGHJK".into(),
        expires_at: NOW + 600,
        interval: 5,
        last_poll: None,
        status,
        used: false,
    }
}

fn approved() -> DeviceStatus {
    DeviceStatus::Approved {
        user_id: "u".into(),
        auth_time: NOW - 5,
        amr: s(&["pwd", "otp"]),
        acr: "2".into(),
        sid: "dsid".into(),
    }
}

#[test]
fn device_decisions() {
    let (cl, u) = (client(), user());
    let ok = device(approved());
    assert_eq!(device_approver(&ok), Some("u"));
    let plan = decide_device(&cl, Some(&ok), Some(&u), &draws(), NOW).unwrap();
    assert_eq!(
        (plan.grant_id.as_str(), plan.new_grant),
        ("new-grant", Some(true))
    );
    let pending = device(DeviceStatus::Pending);
    assert_eq!(device_approver(&pending), None);
    match decide_device(&cl, Some(&pending), None, &draws(), NOW) {
        Err(Refusal::Wait { error, slow_down }) => {
            assert_eq!(
                (error.code, slow_down),
                (ErrorCode::AuthorizationPending, false)
            );
        }
        other => panic!("{other:?}"),
    }
    let polled = DeviceGrant {
        last_poll: Some(NOW - 1),
        ..device(DeviceStatus::Pending)
    };
    assert!(matches!(
        decide_device(&cl, Some(&polled), None, &draws(), NOW),
        Err(Refusal::Wait {
            slow_down: true,
            ..
        })
    ));
    let codes = [
        (None, Some(&u), NOW, ErrorCode::InvalidGrant),
        (
            Some(device(DeviceStatus::Denied)),
            None,
            NOW,
            ErrorCode::AccessDenied,
        ),
        (
            Some(device(approved())),
            Some(&u),
            NOW + 600,
            ErrorCode::ExpiredToken,
        ),
        (Some(device(approved())), None, NOW, ErrorCode::InvalidGrant),
        (
            Some(DeviceGrant {
                used: true,
                ..device(approved())
            }),
            Some(&u),
            NOW,
            ErrorCode::InvalidGrant,
        ),
    ];
    for (g, user, now, code) in codes {
        assert_eq!(
            code_error(decide_device(&cl, g.as_ref(), user, &draws(), now)),
            code,
            "{g:?}"
        );
    }
}

#[test]
fn grant_types_the_client_may_use() {
    let cl = client_with(|s| s.grant_types = vec!["authorization_code".into()]);
    assert_eq!(
        grant_type(&form("grant_type=authorization_code"), &cl),
        Ok("authorization_code")
    );
    for (q, code) in [
        ("grant_type=refresh_token", ErrorCode::UnauthorizedClient),
        ("grant_type=magic", ErrorCode::UnsupportedGrantType),
        ("", ErrorCode::InvalidRequest),
        (
            "grant_type=authorization_code&grant_type=authorization_code",
            ErrorCode::InvalidRequest,
        ),
    ] {
        assert_eq!(grant_type(&form(q), &cl).unwrap_err().code, code, "{q}");
    }
}

#[test]
fn a_plan_for_a_person_makes_matching_tokens_and_records() {
    let (cl, u) = (client(), user());
    let c = AuthCode {
        scopes: s(&["openid", "email", "offline_access"]),
        claims: Some(crate::model::ClaimsRequest {
            userinfo: s(&["email"]),
            id_token: s(&["email"]),
            ..Default::default()
        }),
        ..code()
    };
    let req = code_req(Some(CB), Some(V));
    let f = CodeFacts {
        client: &cl,
        request: &req,
        code: Some(&c),
        user: Some(&u),
        session_alive: true,
    };
    let plan = decide_code(&f, NOW).unwrap();
    let at = plan.access_claims("https://op", &l(), &draws(), NOW);
    assert_eq!(
        (at["sub"].as_str(), at["jti"].as_str()),
        (Some("u"), Some("g.jti-1"))
    );
    assert_eq!(at["sid"], "sid");
    let id = plan
        .id_claims("https://op", &l(), NOW, Some("ah"), Some("ch"))
        .unwrap();
    assert_eq!(id["nonce"], "n");
    assert_eq!(id["at_hash"], "ah");
    assert_eq!(id["c_hash"], "ch");
    assert_eq!(id["exp"], NOW + 300);
    assert_eq!(id["email"], "alice@example.com");
    let rec = plan.records(&l(), &draws(), NOW);
    let grant = rec.grant.unwrap();
    assert_eq!((grant.grant_id.as_str(), grant.offline), ("g", true));
    assert_eq!(grant.tokens_until, NOW + 900);
    assert_eq!(rec.tokens_until, NOW + 900);
    assert_eq!(grant.userinfo_claims, s(&["email"]));
    let (_, _, refresh) = rec.refresh.unwrap();
    assert_eq!(refresh.expires_at, NOW + 100);
    assert_eq!(refresh.absolute_expires_at, NOW + 1000);
    assert!(refresh.offline);
    assert_eq!(refresh.nonce.as_deref(), Some("n"));
}

#[test]
fn an_access_token_stands_while_its_grant_user_and_client_do() {
    let (g, u) = (grant(), user());
    let facts = AccessFacts {
        client_id: "rp",
        sub: "u",
        grant_id: jti_grant("g.x"),
        revoked: false,
        client_exists: true,
        grant: Some(&g),
        user: Some(&u),
    };
    assert_eq!(access_standing(&facts), Ok(Some(&u)));
    let revoked_grant = Grant {
        revoked: true,
        ..grant()
    };
    let other_client = Grant {
        client_id: "other".into(),
        ..grant()
    };
    let disabled = User {
        disabled: true,
        ..user()
    };
    let refused = [
        AccessFacts {
            revoked: true,
            ..facts
        },
        AccessFacts {
            client_exists: false,
            ..facts
        },
        AccessFacts {
            grant: None,
            ..facts
        },
        AccessFacts {
            grant: Some(&revoked_grant),
            ..facts
        },
        AccessFacts {
            grant: Some(&other_client),
            ..facts
        },
        AccessFacts {
            sub: "someone-else",
            ..facts
        },
        AccessFacts {
            user: None,
            ..facts
        },
        AccessFacts {
            user: Some(&disabled),
            ..facts
        },
    ];
    for f in refused {
        assert!(access_standing(&f).is_err(), "{f:?}");
    }
    // A client's own token: the client is its subject, and nothing else is needed.
    let own = AccessFacts {
        sub: "rp",
        grant_id: None,
        grant: None,
        user: None,
        ..facts
    };
    assert_eq!(access_standing(&own), Ok(None));
    assert!(access_standing(&AccessFacts { sub: "u", ..own }).is_err());
    assert!(
        access_standing(&AccessFacts {
            revoked: true,
            ..own
        })
        .is_err()
    );
    assert!(
        access_standing(&AccessFacts {
            client_exists: false,
            ..own
        })
        .is_err()
    );
}
