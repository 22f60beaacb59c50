use super::*;
use crate::oidc::registration::{ClientSpec, build_client};

const CB: &str = "https://rp.example/cb";
const NOW: i64 = 1_700_000_000;

fn client() -> Client {
    build_client(
        "rp".into(),
        ClientSpec {
            name: "RP".into(),
            redirect_uris: vec![CB.into()],
            ..ClientSpec::default()
        },
        0,
    )
    .unwrap()
}

fn params(q: &str) -> Params {
    Params::parse(q.as_bytes())
}

fn base() -> String {
    format!(
        "client_id=rp&redirect_uri={}&response_type=code&scope=openid+email&state=s-._~1",
        urlenc(CB)
    )
}

fn urlenc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn parsed(extra: &str) -> Result<AuthRequest, RedirectError> {
    parse(&params(&format!("{}{extra}", base())), &client(), CB)
}

fn session(auth_time: i64) -> Option<SessionView> {
    Some(SessionView {
        user_id: "u1".into(),
        auth_time,
        user_groups: vec![],
        acr: "1".into(),
        second_factor: true,
        webauthn: false,
    })
}

fn consent(scopes: &[&str]) -> Consent {
    Consent {
        user_id: "u1".into(),
        client_id: "rp".into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        claims: vec![],
        granted_at: 0,
    }
}

#[test]
fn identify_errors_never_redirect() {
    assert!(identify(&params("redirect_uri=x")).is_err());
    assert!(identify(&params("client_id=a&client_id=b")).is_err());
    let c = client();
    for bad in [
        "https://rp.example/cb/xyz",
        "https://rp.example/cb?x=1",
        "https://RP.example/cb",
        "https://rp.example/cb#",
        "https://rp.example/c%62",
        "https://rp.example/cb/",
        "https://evil@rp.example/cb",
    ] {
        assert!(check_redirect_uri(&c, Some(bad)).is_err(), "{bad}");
    }
    assert!(check_redirect_uri(&c, None).is_err());
    assert_eq!(check_redirect_uri(&c, Some(CB)).unwrap(), CB);
}

#[test]
fn loopback_ports_float_only_for_public_clients() {
    let spec = ClientSpec {
        name: "CLI".into(),
        redirect_uris: vec![
            "http://127.0.0.1/callback".into(),
            "http://[::1]:8000/cb".into(),
        ],
        public: true,
        ..ClientSpec::default()
    };
    let public = build_client("cli".into(), spec.clone(), 0).unwrap();
    for ok in [
        "http://127.0.0.1:53121/callback",
        "http://127.0.0.1/callback",
        "http://[::1]:1/cb",
    ] {
        assert!(check_redirect_uri(&public, Some(ok)).is_ok(), "{ok}");
    }
    for bad in [
        "http://127.0.0.1:53121/callback/x",
        "http://127.0.0.1:53121/a/../callback",
        "http://127.0.0.1:53121@evil.example/callback",
        "http://127.0.0.1:5312199/callback",
        "http://localhost:53121/callback",
        "https://127.0.0.1:53121/callback",
    ] {
        assert!(check_redirect_uri(&public, Some(bad)).is_err(), "{bad}");
    }
    let confidential = build_client(
        "web".into(),
        ClientSpec {
            public: false,
            ..spec
        },
        0,
    )
    .unwrap();
    assert!(check_redirect_uri(&confidential, Some("http://127.0.0.1:53121/callback")).is_err());
}

#[test]
fn valid_request_parses_and_ignores_unknown_parameters() {
    let r = parsed(
        "&nonce=n-._~&extra=foobar&display=popup&ui_locales=se&claims_locales=se&acr_values=1+2",
    )
    .unwrap();
    assert_eq!(r.state.as_deref(), Some("s-._~1"));
    assert_eq!(r.nonce.as_deref(), Some("n-._~"));
    assert_eq!(r.response_mode, ResponseMode::Query);
    assert_eq!(r.scopes, vec!["openid", "email"]);
    assert_eq!(r.acr_values, vec!["1", "2"]);
}

#[test]
fn errors_redirect_with_the_right_code() {
    let cases = [
        ("&response_type=code", ErrorCode::InvalidRequest),
        ("&request=eyJ", ErrorCode::RequestNotSupported),
        ("&request_uri=https://x", ErrorCode::RequestUriNotSupported),
        ("&prompt=none+login", ErrorCode::InvalidRequest),
        ("&prompt=bogus", ErrorCode::InvalidRequest),
        ("&max_age=-1", ErrorCode::InvalidRequest),
        ("&max_age=abc", ErrorCode::InvalidRequest),
        (
            "&code_challenge=abc&code_challenge_method=plain",
            ErrorCode::InvalidRequest,
        ),
        ("&response_mode=jwt", ErrorCode::InvalidRequest),
    ];
    for (extra, code) in cases {
        let e = parsed(extra).unwrap_err();
        assert_eq!(e.error.code, code, "{extra}");
        assert_eq!(e.state.as_deref(), Some("s-._~1"), "{extra}");
        assert_eq!(e.redirect_uri, CB);
    }
    let no_rt = format!(
        "client_id=rp&redirect_uri={}&scope=openid&state=x",
        urlenc(CB)
    );
    let e = parse(&params(&no_rt), &client(), CB).unwrap_err();
    assert_eq!(e.error.code, ErrorCode::InvalidRequest);
    let token = format!(
        "client_id=rp&redirect_uri={}&scope=openid&response_type=token",
        urlenc(CB)
    );
    assert_eq!(
        parse(&params(&token), &client(), CB)
            .unwrap_err()
            .error
            .code,
        ErrorCode::UnsupportedResponseType
    );
    let no_openid = format!(
        "client_id=rp&redirect_uri={}&scope=email&response_type=code",
        urlenc(CB)
    );
    assert_eq!(
        parse(&params(&no_openid), &client(), CB)
            .unwrap_err()
            .error
            .code,
        ErrorCode::InvalidScope
    );
}

#[test]
fn form_post_mode_is_used_for_errors_too() {
    let e = parsed("&response_mode=form_post&prompt=bogus").unwrap_err();
    assert_eq!(e.response_mode, ResponseMode::FormPost);
}

#[test]
fn public_clients_must_use_pkce() {
    let public = build_client(
        "pub".into(),
        ClientSpec {
            name: "P".into(),
            redirect_uris: vec![CB.into()],
            public: true,
            ..ClientSpec::default()
        },
        0,
    )
    .unwrap();
    let q = format!(
        "client_id=pub&redirect_uri={}&response_type=code&scope=openid",
        urlenc(CB)
    );
    assert_eq!(
        parse(&params(&q), &public, CB).unwrap_err().error.code,
        ErrorCode::InvalidRequest
    );
    let ok = format!(
        "{q}&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256"
    );
    assert!(
        parse(&params(&ok), &public, CB)
            .unwrap()
            .code_challenge
            .is_some()
    );
}

#[test]
fn no_session_means_login_or_login_required() {
    let c = client();
    let r = parsed("").unwrap();
    let ctx = Context {
        now: NOW,
        ..Context::default()
    };
    assert_eq!(decide(&r, &c, &ctx), Decision::Login);
    let r = parsed("&prompt=none").unwrap();
    match decide(&r, &c, &ctx) {
        Decision::Error(e) => assert_eq!(e.code, ErrorCode::LoginRequired),
        d => panic!("{d:?}"),
    }
}

#[test]
fn session_with_consent_issues_silently() {
    let c = client();
    let cons = consent(&["openid", "email"]);
    let ctx = Context {
        now: NOW,
        session: session(NOW - 100),
        consent: Some(&cons),
        ..Context::default()
    };
    for extra in ["", "&prompt=none", "&max_age=10000"] {
        let r = parsed(extra).unwrap();
        assert_eq!(
            decide(&r, &c, &ctx),
            Decision::Issue {
                scopes: vec!["openid".into(), "email".into()]
            },
            "{extra}"
        );
    }
}

/// A claim rule added under a scope already consented to is asked about before it is
/// released; once consented, the same request issues silently again.
#[test]
fn a_new_custom_claim_asks_consent_again() {
    let mut c = client();
    c.claims = vec![crate::model::ClaimRule {
        name: "department".into(),
        scope: "email".into(),
        user_attribute: Some("department".into()),
        group_attribute: None,
        groups: Default::default(),
        places: vec![],
    }];
    let mut cons = consent(&["openid", "email"]);
    fn ctx(cons: &Consent) -> Context<'_> {
        Context {
            now: NOW,
            session: session(NOW - 100),
            consent: Some(cons),
            ..Context::default()
        }
    }
    let r = parsed("").unwrap();
    assert!(matches!(
        decide(&r, &c, &ctx(&cons)),
        Decision::Consent { .. }
    ));
    assert!(matches!(
        decide(&parsed("&prompt=none").unwrap(), &c, &ctx(&cons)),
        Decision::Error(_)
    ));
    cons.claims = consent_claims(&cons.scopes, &c);
    assert_eq!(cons.claims, ["department"]);
    assert!(matches!(
        decide(&r, &c, &ctx(&cons)),
        Decision::Issue { .. }
    ));
    // A rule under a scope not asked for changes nothing.
    c.claims[0].scope = "profile".into();
    assert!(consent_claims(&cons.scopes, &c).is_empty());
}

#[test]
fn prompt_login_and_max_age_force_reauthentication_once() {
    let c = client();
    let cons = consent(&["openid", "email"]);
    let mut ctx = Context {
        now: NOW,
        session: session(NOW - 100),
        consent: Some(&cons),
        ..Context::default()
    };
    for extra in [
        "&prompt=login",
        "&max_age=1",
        "&max_age=0",
        "&prompt=select_account",
    ] {
        let r = parsed(extra).unwrap();
        assert_eq!(decide(&r, &c, &ctx), Decision::Login, "{extra}");
    }
    // Back from the login page: the session was authenticated after the interaction began.
    ctx.interaction_started = Some(NOW - 5);
    ctx.session = session(NOW - 3);
    for extra in ["&prompt=login", "&max_age=1", "&max_age=0"] {
        let r = parsed(extra).unwrap();
        assert!(
            matches!(decide(&r, &c, &ctx), Decision::Issue { .. }),
            "{extra}"
        );
    }
}

#[test]
fn consent_rules() {
    let c = client();
    let partial = consent(&["openid"]);
    let ctx = Context {
        now: NOW,
        session: session(NOW),
        consent: Some(&partial),
        ..Context::default()
    };
    let r = parsed("").unwrap();
    assert!(matches!(decide(&r, &c, &ctx), Decision::Consent { .. }));
    let r = parsed("&prompt=none").unwrap();
    match decide(&r, &c, &ctx) {
        Decision::Error(e) => assert_eq!(e.code, ErrorCode::ConsentRequired),
        d => panic!("{d:?}"),
    }
    let full = consent(&["openid", "email", "profile"]);
    let ctx = Context {
        consent: Some(&full),
        ..ctx
    };
    let r = parsed("&prompt=consent").unwrap();
    assert!(matches!(decide(&r, &c, &ctx), Decision::Consent { .. }));
    let ctx = Context {
        consent_given: true,
        ..ctx
    };
    assert!(matches!(decide(&r, &c, &ctx), Decision::Issue { .. }));
}

#[test]
fn id_token_hint_for_another_user_forces_login() {
    let c = client();
    let cons = consent(&["openid", "email"]);
    let ctx = Context {
        now: NOW,
        session: session(NOW),
        consent: Some(&cons),
        hint_subject: Some("someone-else".into()),
        ..Context::default()
    };
    let r = parsed("&prompt=none").unwrap();
    assert!(
        matches!(decide(&r, &c, &ctx), Decision::Error(e) if e.code == ErrorCode::LoginRequired)
    );
}

#[test]
fn a_fresh_sign_in_as_someone_else_gets_no_code() {
    // Issue 12: the hint's user, or the requested sub, must be who signs in, also when
    // the sign-in happens during this request.
    let c = client();
    let cons = consent(&["openid", "email"]);
    let fresh = |hint: Option<&str>| Context {
        now: NOW,
        session: session(NOW),
        consent: Some(&cons),
        interaction_started: Some(NOW - 10),
        hint_subject: hint.map(str::to_string),
        ..Context::default()
    };
    let denied = |d: Decision| matches!(d, Decision::Error(e) if e.code == ErrorCode::AccessDenied);
    assert!(denied(decide(
        &parsed("").unwrap(),
        &c,
        &fresh(Some("someone-else"))
    )));
    let by_claims = parsed(&format!(
        "&claims={}",
        urlenc(r#"{"id_token":{"sub":{"value":"someone-else"}}}"#)
    ))
    .unwrap();
    assert!(denied(decide(&by_claims, &c, &fresh(None))));
    // The right user goes through.
    assert!(matches!(
        decide(&parsed("").unwrap(), &c, &fresh(Some("u1"))),
        Decision::Issue { .. }
    ));
    let mine = parsed(&format!(
        "&claims={}",
        urlenc(r#"{"id_token":{"sub":{"value":"u1"}}}"#)
    ))
    .unwrap();
    assert!(matches!(
        decide(&mine, &c, &fresh(None)),
        Decision::Issue { .. }
    ));
}

#[test]
fn stored_parameters_are_bounded() {
    let c = client();
    let too_long = |extra: String| {
        let e = parsed(&extra).unwrap_err().error;
        assert_eq!(e.code, ErrorCode::InvalidRequest, "{extra:.60}");
    };
    too_long(format!("&acr_values={}", vec!["x"; 17].join("+")));
    too_long(format!("&acr_values={}", "a".repeat(513)));
    too_long(format!("&login_hint={}", "a".repeat(257)));
    too_long(format!("&ui_locales={}", vec!["en"; 17].join("+")));
    too_long(format!("&id_token_hint={}", "a".repeat(8193)));
    too_long(format!(
        "&claims={}",
        urlenc(&format!(
            r#"{{"id_token":{{"sub":{{"value":"{}"}}}}}}"#,
            "s".repeat(300)
        ))
    ));
    too_long(format!(
        "&claims={}",
        urlenc(&format!(r#"{{"x":"{}"}}"#, "s".repeat(5000)))
    ));
    let names: Vec<String> = (0..33).map(|i| format!(r#""c{i}":null"#)).collect();
    too_long(format!(
        "&claims={}",
        urlenc(&format!(r#"{{"userinfo":{{{}}}}}"#, names.join(",")))
    ));
    too_long("&nonce=%ff".to_string());
    too_long("&unknown=%C3%28".to_string());
    let q = base().replace(
        "scope=openid+email",
        &format!("scope={}", vec!["openid"; 100].join("+")),
    );
    assert!(
        parse(&params(&q), &c, CB).is_ok(),
        "repeated scope values are fine"
    );
    let many: Vec<String> = (0..70).map(|i| format!("s{i}")).collect();
    let q = base().replace(
        "scope=openid+email",
        &format!("scope=openid+{}", many.join("+")),
    );
    let e = parse(&params(&q), &c, CB).unwrap_err();
    assert_eq!(e.error.code, ErrorCode::InvalidScope);
    let q = base().replace("response_type=code", "response_type=code+code");
    let dup = parse(&params(&q), &c, CB).unwrap_err();
    assert_eq!(dup.error.code, ErrorCode::UnsupportedResponseType);
}

#[test]
fn allowed_groups_are_enforced() {
    let mut c = client();
    c.allowed_groups = vec!["staff".into()];
    let cons = consent(&["openid", "email"]);
    let ctx = Context {
        now: NOW,
        session: session(NOW),
        consent: Some(&cons),
        ..Context::default()
    };
    assert_eq!(decide(&parsed("").unwrap(), &c, &ctx), Decision::Forbidden);
    match decide(&parsed("&prompt=none").unwrap(), &c, &ctx) {
        Decision::Error(e) => assert_eq!(e.code, ErrorCode::AccessDenied),
        d => panic!("prompt=none must not show a page: {d:?}"),
    }
    let member = Context {
        session: Some(SessionView {
            user_id: "u1".into(),
            auth_time: NOW,
            user_groups: vec!["staff".into()],
            acr: "1".into(),
            second_factor: false,
            webauthn: false,
        }),
        ..ctx
    };
    assert!(matches!(
        decide(&parsed("").unwrap(), &c, &member),
        Decision::Issue { .. }
    ));
}

#[test]
fn prompt_consent_asks_even_first_party_clients() {
    let mut c = client();
    c.skip_consent = true;
    let ctx = Context {
        now: NOW,
        session: session(NOW),
        ..Context::default()
    };
    assert!(matches!(
        decide(&parsed("").unwrap(), &c, &ctx),
        Decision::Issue { .. }
    ));
    assert!(matches!(
        decide(&parsed("&prompt=consent").unwrap(), &c, &ctx),
        Decision::Consent { .. }
    ));
}

#[test]
fn delivery_keeps_registered_query_and_encodes() {
    let p = success_params("abc", Some("a b&c"), "https://op");
    assert_eq!(
        deliver("https://rp/cb?x=1", ResponseMode::Query, p.clone()),
        Delivery::Redirect("https://rp/cb?x=1&code=abc&state=a+b%26c&iss=https%3A%2F%2Fop".into())
    );
    assert_eq!(
        deliver("https://rp/cb", ResponseMode::Fragment, p.clone()),
        Delivery::Redirect("https://rp/cb#code=abc&state=a+b%26c&iss=https%3A%2F%2Fop".into())
    );
    assert!(matches!(
        deliver("https://rp/cb", ResponseMode::FormPost, p),
        Delivery::FormPost { .. }
    ));
}

fn implicit_client() -> Client {
    build_client(
        "spa".into(),
        ClientSpec {
            name: "SPA".into(),
            redirect_uris: vec![CB.into()],
            grant_types: vec!["authorization_code".into(), "implicit".into()],
            ..ClientSpec::default()
        },
        0,
    )
    .unwrap()
}

fn implicit(q: &str) -> Result<AuthRequest, RedirectError> {
    let base = format!(
        "client_id=spa&redirect_uri={}&scope=openid&state=s1{q}",
        urlenc(CB)
    );
    parse(&params(&base), &implicit_client(), CB)
}

#[test]
fn implicit_and_hybrid_default_to_the_fragment_and_need_a_nonce() {
    for rt in [
        "id_token",
        "id_token+token",
        "token+id_token",
        "code+id_token",
        "code+token",
        "code+id_token+token",
    ] {
        let r = implicit(&format!("&response_type={rt}&nonce=n")).unwrap();
        assert_eq!(r.response_mode, ResponseMode::Fragment, "{rt}");
    }
    assert_eq!(
        implicit("&response_type=token+id_token&nonce=n")
            .unwrap()
            .response_type,
        "id_token token"
    );
    let e = implicit("&response_type=id_token").unwrap_err();
    assert_eq!(e.error.code, ErrorCode::InvalidRequest);
    assert_eq!(e.response_mode, ResponseMode::Fragment);
    // code token needs no nonce (no ID token from the authorization endpoint).
    assert!(implicit("&response_type=code+token").is_ok());
    let e = implicit("&response_type=id_token+token&nonce=n&response_mode=query").unwrap_err();
    assert_eq!(e.error.code, ErrorCode::InvalidRequest);
    assert_eq!(
        e.response_mode,
        ResponseMode::Fragment,
        "never in the query"
    );
    assert_eq!(
        implicit("&response_type=id_token&nonce=n&response_mode=form_post")
            .unwrap()
            .response_mode,
        ResponseMode::FormPost
    );
}

#[test]
fn implicit_is_only_for_clients_that_opted_in() {
    let q = format!(
        "client_id=rp&redirect_uri={}&scope=openid&response_type=id_token&nonce=n",
        urlenc(CB)
    );
    let e = parse(&params(&q), &client(), CB).unwrap_err();
    assert_eq!(e.error.code, ErrorCode::UnauthorizedClient);
    assert_eq!(e.response_mode, ResponseMode::Fragment);
}

#[test]
fn response_params_carry_tokens_in_order() {
    let i = Issued {
        code: Some("c".into()),
        access_token: Some(("a".into(), 900)),
        id_token: Some("i".into()),
    };
    let p = response_params(&i, Some("s"), "https://op");
    let keys: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "code",
            "access_token",
            "token_type",
            "expires_in",
            "id_token",
            "state",
            "iss"
        ]
    );
    assert_eq!(p[2].1, "Bearer");
}

#[test]
fn claims_sub_and_essential_acr_constrain_the_response() {
    let c = client();
    let cons = consent(&["openid", "email"]);
    let ctx = Context {
        now: NOW,
        session: session(NOW),
        consent: Some(&cons),
        ..Context::default()
    };
    let q = |claims: &str| format!("&prompt=none&claims={}", urlenc(claims));
    let other = parsed(&q(r#"{"id_token":{"sub":{"value":"someone-else"}}}"#)).unwrap();
    assert!(
        matches!(decide(&other, &c, &ctx), Decision::Error(e) if e.code == ErrorCode::LoginRequired)
    );
    let same = parsed(&q(r#"{"id_token":{"sub":{"value":"u1"}}}"#)).unwrap();
    assert!(matches!(decide(&same, &c, &ctx), Decision::Issue { .. }));
    let acr2 = parsed(&q(
        r#"{"id_token":{"acr":{"essential":true,"values":["2"]}}}"#,
    ))
    .unwrap();
    assert!(
        matches!(decide(&acr2, &c, &ctx), Decision::Error(e) if e.code == ErrorCode::LoginRequired),
        "a second factor would meet it, but prompt=none shows no page"
    );
    let acr3 = parsed(&q(
        r#"{"id_token":{"acr":{"essential":true,"values":["3"]}}}"#,
    ))
    .unwrap();
    assert!(
        matches!(decide(&acr3, &c, &ctx), Decision::Error(e) if e.code == ErrorCode::AccessDenied)
    );
    let acr1 = parsed(&q(
        r#"{"id_token":{"acr":{"essential":true,"values":["1","2"]}}}"#,
    ))
    .unwrap();
    assert!(matches!(decide(&acr1, &c, &ctx), Decision::Issue { .. }));
}

#[test]
fn passkey_clients_take_only_sessions_that_began_with_one() {
    let mut c = client();
    c.policy = crate::model::Policy::Passkey;
    let cons = consent(&["openid", "email"]);
    // Two factors without a passkey (an authenticator app) are not enough.
    let mut two = session(NOW);
    if let Some(s) = two.as_mut() {
        s.acr = ACR_TWO_FACTOR.into();
    }
    let ctx = Context {
        now: NOW,
        session: two.clone(),
        consent: Some(&cons),
        ..Context::default()
    };
    assert_eq!(
        decide(&parsed("").unwrap(), &c, &ctx),
        Decision::StepUp { passkey: true }
    );
    assert!(matches!(
        decide(&parsed("&prompt=none").unwrap(), &c, &ctx),
        Decision::Error(e) if e.code == ErrorCode::LoginRequired
    ));
    // Group membership is still checked first.
    c.allowed_groups = vec!["staff".into()];
    assert_eq!(decide(&parsed("").unwrap(), &c, &ctx), Decision::Forbidden);
    c.allowed_groups.clear();
    let mut keyed = two;
    if let Some(s) = keyed.as_mut() {
        s.webauthn = true;
    }
    let ctx = Context {
        session: keyed,
        ..ctx
    };
    assert!(matches!(
        decide(&parsed("&prompt=none").unwrap(), &c, &ctx),
        Decision::Issue { .. }
    ));
}

#[test]
fn two_factor_clients_step_up_one_factor_sessions() {
    let mut c = client();
    c.policy = crate::model::Policy::TwoFactor;
    let cons = consent(&["openid", "email"]);
    let ctx = Context {
        now: NOW,
        session: session(NOW),
        consent: Some(&cons),
        ..Context::default()
    };
    assert_eq!(
        decide(&parsed("").unwrap(), &c, &ctx),
        Decision::StepUp { passkey: false }
    );
    assert!(matches!(
        decide(&parsed("&prompt=none").unwrap(), &c, &ctx),
        Decision::Error(e) if e.code == ErrorCode::LoginRequired
    ));
    let mut two = session(NOW);
    if let Some(s) = two.as_mut() {
        s.acr = ACR_TWO_FACTOR.into();
    }
    let ctx2 = Context {
        session: two,
        ..ctx.clone()
    };
    assert!(matches!(
        decide(&parsed("").unwrap(), &c, &ctx2),
        Decision::Issue { .. }
    ));
    // Group membership is checked before a second factor is asked for.
    c.allowed_groups = vec!["staff".into()];
    assert_eq!(decide(&parsed("").unwrap(), &c, &ctx), Decision::Forbidden);
    // An essential acr of "2" steps up a one-factor client's session too.
    let one = client();
    let q = format!(
        "&claims={}",
        urlenc(r#"{"id_token":{"acr":{"essential":true,"values":["2"]}}}"#)
    );
    assert_eq!(
        decide(&parsed(&q).unwrap(), &one, &ctx),
        Decision::StepUp { passkey: false }
    );
    // acr_values=2 is a wish: a second factor when a page may be shown.
    assert_eq!(
        decide(&parsed("&acr_values=2").unwrap(), &one, &ctx),
        Decision::StepUp { passkey: false }
    );
    assert!(matches!(
        decide(&parsed("&acr_values=2&prompt=none").unwrap(), &one, &ctx),
        Decision::Issue { .. }
    ));
    assert!(matches!(
        decide(&parsed("&acr_values=1%202").unwrap(), &one, &ctx),
        Decision::Issue { .. }
    ));
    // A user without a second factor is not stopped by a wish for one.
    let mut none = session(NOW);
    if let Some(s) = none.as_mut() {
        s.second_factor = false;
    }
    let ctx_none = Context {
        session: none,
        ..ctx.clone()
    };
    assert!(matches!(
        decide(&parsed("&acr_values=2").unwrap(), &one, &ctx_none),
        Decision::Issue { .. }
    ));
}
