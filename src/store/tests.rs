use super::kv::Engine;
use super::postgres::PgStore;
use super::redb::RedbStore;
use super::*;
use crate::model::*;
use crate::testutil::TempDir;

fn open() -> (TempDir, RedbStore) {
    let dir = TempDir::new("store");
    let s = RedbStore::open(&dir.path().join("db.redb")).unwrap();
    (dir, s)
}

fn user(id: &str, name: &str) -> User {
    User {
        id: id.into(),
        username: name.into(),
        email: format!("{name}@example.com"),
        email_verified: false,
        given_name: None,
        family_name: None,
        phone: None,
        address: None,
        groups: vec![],
        password_hash: "x".into(),
        disabled: false,
        created_at: 1,
        updated_at: 1,
        mfa: Default::default(),
        must_change_password: false,
        reset_link: None,
        passkeys_only: false,
        invitation: None,
        email_check: None,
        reset_mailed: false,
        attributes: Default::default(),
        source: None,
        directory_disabled: false,
    }
}

fn code(expires_at: i64) -> AuthCode {
    AuthCode {
        client_id: "c".into(),
        redirect_uri: "https://rp/cb".into(),
        user_id: "u".into(),
        scopes: vec!["openid".into()],
        nonce: None,
        code_challenge: None,
        grant_id: "g".into(),
        auth_time: 0,
        amr: vec![],
        acr: "1".into(),
        sid: "s".into(),
        session_hash: "h".into(),
        expires_at,
        used: false,
        claims: None,
    }
}

/// A session of user `u`, alive past every purge of these tests.
fn session() -> Session {
    Session {
        user_id: "u".into(),
        sid: "s".into(),
        auth_time: 1,
        amr: vec!["pwd".into()],
        acr: "1".into(),
        created_at: 1,
        last_seen: 1,
        expires_at: 1_000_000,
        clients: vec![],
        reauth_at: 0,
        label: String::new(),
        ip: String::new(),
    }
}

fn rt(expires_at: i64) -> RefreshToken {
    RefreshToken {
        grant_id: "g".into(),
        client_id: "c".into(),
        user_id: "u".into(),
        scopes: vec!["openid".into()],
        auth_time: 0,
        amr: vec![],
        acr: "1".into(),
        sid: "s".into(),
        session_hash: "h".into(),
        offline: true,
        nonce: None,
        issued_at: 0,
        expires_at,
        absolute_expires_at: expires_at,
        used: false,
        claims: None,
    }
}

fn users_round_trip_with_unique_case_insensitive_names<S: Store + Engine>(s: &S) {
    s.create_user(&user("1", "Alice")).unwrap();
    assert!(matches!(
        s.create_user(&user("2", "alice")),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.user_by_name("ALICE").unwrap().unwrap().id, "1");
    s.create_user(&user("2", "bob")).unwrap();
    let mut renamed = user("2", "alice");
    assert!(matches!(
        s.update_user(&renamed),
        Err(StoreError::Conflict(_))
    ));
    renamed.username = "robert".into();
    s.update_user(&renamed).unwrap();
    assert!(s.user_by_name("bob").unwrap().is_none());
    assert_eq!(s.user_by_name("robert").unwrap().unwrap().id, "2");
    assert_eq!(s.users().unwrap().len(), 2);
    assert!(s.delete_user("2").unwrap());
    assert!(!s.delete_user("2").unwrap());
    assert!(s.user_by_name("robert").unwrap().is_none());
}

fn grant() -> Grant {
    Grant {
        grant_id: "g".into(),
        client_id: "c".into(),
        user_id: "u".into(),
        created_at: 0,
        revoked: false,
        session_hash: "h".into(),
        offline: false,
        userinfo_claims: vec![],
        tokens_until: 0,
        keep_until: 0,
    }
}

/// Stores a code and redeems it, starting grant `g` (its access tokens expire at
/// `expires`) with refresh token `rt_hash`.
fn issue<S: Store>(s: &S, code_hash: &str, rt_hash: &str, expires: i64) {
    s.put_session("h", &session()).unwrap();
    s.put_code(code_hash, &code(expires)).unwrap();
    let g = Grant {
        tokens_until: expires,
        ..grant()
    };
    let r = rt(expires);
    let issued = Issued {
        grant: &g,
        refresh: Some((rt_hash, &r)),
    };
    assert!(matches!(
        s.redeem_code(code_hash, &issued).unwrap(),
        Consumed::Fresh(_)
    ));
}

fn a_code_is_redeemed_exactly_once_and_a_replay_stores_nothing<S: Store + Engine>(s: &S) {
    issue(s, "h1", "r1", 100);
    assert!(s.refresh_token("r1").unwrap().is_some());
    let spent = s.code("h1").unwrap().unwrap();
    assert!(spent.used);
    assert_eq!(
        (spent.grant_id.as_str(), spent.client_id.as_str()),
        ("g", "c"),
        "enough to revoke the grant on a replay"
    );
    assert!(
        spent.redirect_uri.is_empty() && spent.scopes.is_empty() && spent.sid.is_empty(),
        "and nothing more"
    );
    let g = grant();
    let r = rt(100);
    let again = Issued {
        grant: &g,
        refresh: Some(("r2", &r)),
    };
    assert!(matches!(
        s.redeem_code("h1", &again).unwrap(),
        Consumed::Replayed(_)
    ));
    assert!(s.refresh_token("r2").unwrap().is_none());
    assert_eq!(s.redeem_code("nope", &again).unwrap(), Consumed::Missing);
}

fn refresh_rotation_is_single_use<S: Store + Engine>(s: &S) {
    issue(s, "h", "r1", 100);
    let fresh = s
        .rotate_refresh_token("r1", "r2", &rt(100), 500, &["email".to_string()])
        .unwrap();
    assert!(matches!(fresh, Consumed::Fresh(_)));
    let spent = s.refresh_token("r1").unwrap().unwrap();
    assert!(spent.used && spent.scopes.is_empty() && spent.session_hash.is_empty());
    assert_eq!((spent.grant_id.as_str(), spent.expires_at), ("g", 100));
    assert_eq!(
        s.grant("g").unwrap().unwrap().tokens_until,
        500,
        "the grant outlives its newest access token"
    );
    assert_eq!(
        s.grant("g").unwrap().unwrap().userinfo_claims,
        vec!["email".to_string()],
        "the claims narrowed at this refresh"
    );
    let replay = s
        .rotate_refresh_token("r1", "r3", &rt(100), 900, &[])
        .unwrap();
    assert!(matches!(replay, Consumed::Replayed(_)));
    assert!(s.refresh_token("r3").unwrap().is_none());
    assert!(s.refresh_token("r2").unwrap().is_some());
    assert_eq!(s.grant("g").unwrap().unwrap().tokens_until, 500);
    s.revoke_grant("g", "c", "u", 5).unwrap();
    assert!(s.grant("g").unwrap().unwrap().revoked);
    assert_eq!(
        s.rotate_refresh_token("r2", "r4", &rt(100), 900, &[])
            .unwrap(),
        Consumed::Missing,
        "a grant revoked since the caller looked yields nothing"
    );
    assert!(s.refresh_token("r4").unwrap().is_none());
    assert!(!s.refresh_token("r2").unwrap().unwrap().used);
    s.revoke_grant("other", "c", "u", 5).unwrap();
    assert!(s.grant("other").unwrap().unwrap().revoked);
}

fn revoking_a_users_grants_touches_no_one_else<S: Store + Engine>(s: &S) {
    issue(s, "h", "r", 100);
    let other = Grant {
        grant_id: "g2".into(),
        user_id: "someone".into(),
        ..grant()
    };
    s.put_code("h2", &code(100)).unwrap();
    let r = rt(100);
    s.redeem_code(
        "h2",
        &Issued {
            grant: &other,
            refresh: Some(("r2", &r)),
        },
    )
    .unwrap();
    assert_eq!(s.revoke_user_grants("u").unwrap(), 1);
    assert!(s.grant("g").unwrap().unwrap().revoked);
    assert!(!s.grant("g2").unwrap().unwrap().revoked);
    assert_eq!(s.revoke_user_grants("u").unwrap(), 0, "already revoked");
}

fn logout_revokes_the_sessions_grants_but_not_offline_ones<S: Store + Engine>(s: &S) {
    let mk = |id: &str, session: &str, offline: bool, code: &str| {
        let g = Grant {
            grant_id: id.into(),
            session_hash: session.into(),
            offline,
            ..grant()
        };
        s.put_session(session, &self::session()).unwrap();
        // The grant takes its session from the code, as the token endpoint builds it.
        let c = AuthCode {
            session_hash: session.into(),
            ..self::code(100)
        };
        s.put_code(code, &c).unwrap();
        let r = rt(100);
        s.redeem_code(
            code,
            &Issued {
                grant: &g,
                refresh: Some((code, &r)),
            },
        )
        .unwrap();
    };
    mk("online", "s1", false, "c1");
    mk("offline", "s1", true, "c2");
    mk("elsewhere", "s2", false, "c3");
    assert_eq!(s.revoke_session_grants("s1").unwrap(), 1);
    assert!(s.grant("online").unwrap().unwrap().revoked);
    assert!(!s.grant("offline").unwrap().unwrap().revoked);
    assert!(!s.grant("elsewhere").unwrap().unwrap().revoked);
}

fn purge_removes_only_expired_records<S: Store + Engine>(s: &S) {
    s.put_code("new", &code(10_000)).unwrap();
    // Grant g: code "old" (expires at 10, recognised as replayed until 310) and refresh
    // token "r" (expires at 10).
    issue(s, "old", "r", 10);
    assert_eq!(s.purge_expired(200).unwrap(), 1, "the refresh token only");
    assert!(s.refresh_token("r").unwrap().is_none());
    assert!(
        s.code("old").unwrap().is_some(),
        "a replay is still recognised"
    );
    assert!(
        s.grant("g").unwrap().is_some(),
        "the used code still refers to its grant: a replay revokes it"
    );
    assert_eq!(
        s.purge_expired(1000).unwrap(),
        2,
        "the used code and its grant"
    );
    assert!(s.code("old").unwrap().is_none());
    assert!(s.grant("g").unwrap().is_none());
    assert!(s.code("new").unwrap().is_some());
    assert_eq!(s.purge_expired(20_000).unwrap(), 1, "the unused code");
}

fn a_rotated_refresh_token_keeps_its_grant_until_it_expires<S: Store + Engine>(s: &S) {
    issue(s, "c1", "r1", 10);
    // The successor lives until 5,000; the grant's access tokens only until 600.
    s.rotate_refresh_token("r1", "r2", &rt(5_000), 600, &[])
        .unwrap();
    s.purge_expired(4_000).unwrap();
    assert!(s.grant("g").unwrap().is_some());
    assert!(s.refresh_token("r2").unwrap().is_some());
    s.purge_expired(5_001).unwrap();
    assert!(s.grant("g").unwrap().is_none());
    assert!(s.refresh_token("r2").unwrap().is_none());
}

#[test]
fn everything_survives_reopening_and_schema_is_checked() {
    let dir = TempDir::new("store-reopen");
    let path = dir.path().join("db.redb");
    {
        let s = RedbStore::open(&path).unwrap();
        s.create_user(&user("1", "alice")).unwrap();
        s.put_consent(&Consent {
            user_id: "1".into(),
            client_id: "c".into(),
            scopes: vec!["openid".into()],
            claims: vec![],
            granted_at: 1,
        })
        .unwrap();
        s.put_meta("schema_version", "999").unwrap();
    }
    assert!(matches!(RedbStore::open(&path), Err(StoreError::Schema(_))));
    {
        // Put the right version back through a raw open and check the data is intact.
        let db = ::redb::Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx
                .open_table(::redb::TableDefinition::<&str, &[u8]>::new("meta"))
                .unwrap();
            t.insert("schema_version", SCHEMA_VERSION.to_string().as_bytes())
                .unwrap();
        }
        tx.commit().unwrap();
    }
    let s = RedbStore::open(&path).unwrap();
    assert_eq!(s.user("1").unwrap().unwrap().username, "alice");
    assert!(s.consent("1", "c").unwrap().is_some());
}

#[test]
fn a_second_open_reports_locked() {
    let (dir, _s) = open();
    assert_eq!(
        RedbStore::open(&dir.path().join("db.redb")).err(),
        Some(StoreError::Locked)
    );
}

fn audit_is_newest_first<S: Store + Engine>(s: &S) {
    for t in 1..=5 {
        s.append_audit(&AuditEvent {
            time: t,
            kind: format!("k{t}"),
            user: None,
            client: None,
            ip: None,
            detail: String::new(),
        })
        .unwrap();
    }
    let a = s.audit(3, 10, None).unwrap();
    assert_eq!(a.iter().map(|e| e.time).collect::<Vec<_>>(), vec![5, 4, 3]);
    assert_eq!(s.audit(0, 2, None).unwrap().len(), 2);
}

fn audit_retention_removes_only_older_events<S: Store + Engine>(s: &S) {
    let event = |time| AuditEvent {
        time,
        kind: "k".into(),
        user: None,
        client: None,
        ip: None,
        detail: String::new(),
    };
    for t in 1..=5 {
        s.append_audit(&event(t * 100)).unwrap();
    }
    assert_eq!(s.purge_audit(300).unwrap(), 2);
    let left: Vec<i64> = s
        .audit(0, 10, None)
        .unwrap()
        .iter()
        .map(|e| e.time)
        .collect();
    assert_eq!(left, vec![500, 400, 300]);
    assert_eq!(s.purge_audit(300).unwrap(), 0);
    // More than one batch's worth, all older: every one goes, the newer ones stay.
    for i in 0..700 {
        s.append_audit(&event(1_000 + i)).unwrap();
    }
    assert_eq!(s.purge_audit(1_650).unwrap(), 3 + 650);
    assert_eq!(s.audit(0, 1_000, None).unwrap().len(), 50);
}

fn used_records_are_stored_slim_and_read_back<S: Store + Engine>(s: &S) {
    let spent = code(10).spent();
    let bytes = serde_json::to_vec(&spent).unwrap();
    assert!(bytes.len() < 120, "{}", String::from_utf8_lossy(&bytes));
    s.put_code("h", &spent).unwrap();
    assert_eq!(s.code("h").unwrap(), Some(spent));
    let spent = rt(10).spent();
    let bytes = serde_json::to_vec(&spent).unwrap();
    assert!(bytes.len() < 200, "{}", String::from_utf8_lossy(&bytes));
    let full = rt(10);
    issue(s, "c", "r1", 10);
    s.rotate_refresh_token("r1", "r2", &full, 10, &[]).unwrap();
    assert_eq!(s.refresh_token("r1").unwrap(), Some(rt(10).spent()));
    assert_eq!(s.refresh_token("r2").unwrap(), Some(full));
}

fn a_code_of_a_revoked_grant_yields_nothing<S: Store + Engine>(s: &S) {
    s.put_code("h", &code(100)).unwrap();
    s.revoke_grant("g", "c", "u", 1).unwrap();
    let g = grant();
    let r = rt(100);
    let issued = Issued {
        grant: &g,
        refresh: Some(("r", &r)),
    };
    assert_eq!(s.redeem_code("h", &issued).unwrap(), Consumed::Missing);
    assert!(s.grant("g").unwrap().unwrap().revoked);
    assert!(s.refresh_token("r").unwrap().is_none());
    assert!(s.code("h").unwrap().unwrap().used, "the code is spent");
}

fn a_code_whose_session_ended_or_user_was_disabled_meanwhile_yields_nothing<S: Store + Engine>(
    s: &S,
) {
    let r = rt(100);
    let redeem = |hash: &str, g: &Grant| {
        s.put_code(hash, &code(100)).unwrap();
        let issued = Issued {
            grant: g,
            refresh: Some((hash, &r)),
        };
        s.redeem_code(hash, &issued).unwrap()
    };
    let grant_named = |id: &str| Grant {
        grant_id: id.into(),
        ..grant()
    };
    // Logged out (session h gone) after the token endpoint read the code.
    assert_eq!(redeem("c1", &grant_named("g1")), Consumed::Missing);
    assert!(s.code("c1").unwrap().unwrap().used, "the code is spent");
    assert!(s.grant("g1").unwrap().is_none());
    // With offline access the code outlives its session.
    let offline = Grant {
        offline: true,
        ..grant_named("g2")
    };
    assert!(matches!(redeem("c2", &offline), Consumed::Fresh(_)));
    // A session moved by a sign-in again meanwhile: the code follows it (codes exist
    // for the clients the session took part in).
    let with_client = Session {
        clients: vec!["c".into()],
        ..session()
    };
    s.put_session("h", &with_client).unwrap();
    s.create_user(&user("u", "alice")).unwrap();
    s.put_code("c3", &code(100)).unwrap();
    s.move_session("h", "h-new", &|_| {}).unwrap().unwrap();
    let g3 = grant_named("g3");
    let issued = Issued {
        grant: &g3,
        refresh: Some(("c3", &r)),
    };
    let got = s.redeem_code("c3", &issued).unwrap();
    assert!(matches!(got, Consumed::Fresh(_)), "{got:?}");
    assert_eq!(s.grant("g3").unwrap().unwrap().session_hash, "h-new");
    // The user disabled meanwhile.
    s.put_session("h", &session()).unwrap();
    let disabled = User {
        disabled: true,
        ..user("u", "alice")
    };
    s.update_user(&disabled).unwrap();
    assert_eq!(redeem("c4", &grant_named("g4")), Consumed::Missing);
    assert!(s.grant("g4").unwrap().is_none());
}

fn a_device_answer_is_never_undone_by_a_poll<S: Store + Engine>(s: &S) {
    let d = DeviceGrant {
        client_id: "c".into(),
        scopes: vec![],
        user_code: "BCDFGHJK".into(),
        expires_at: 100,
        interval: 5,
        last_poll: None,
        status: DeviceStatus::Pending,
        used: false,
    };
    s.put_device("h", &d).unwrap();
    assert!(
        matches!(s.put_device("h2", &d), Err(StoreError::Conflict(_))),
        "user codes are unique"
    );
    s.record_device_poll("h", 10, true).unwrap();
    assert_eq!(s.device("h").unwrap().unwrap().interval, 10);
    assert!(s.answer_device("h", &DeviceStatus::Denied, 11).unwrap());
    // A poll that read "pending" before the answer changes nothing afterwards.
    s.record_device_poll("h", 12, false).unwrap();
    let now = s.device("h").unwrap().unwrap();
    assert_eq!(now.status, DeviceStatus::Denied);
    assert_eq!(now.last_poll, Some(10));
    assert!(
        !s.answer_device("h", &DeviceStatus::Pending, 13).unwrap(),
        "answered once"
    );
    assert_eq!(s.device_by_user_code("BCDFGHJK").unwrap().unwrap().0, "h");
}

#[test]
fn a_backup_is_a_complete_readable_copy() {
    let (dir, s) = open();
    s.create_user(&user("1", "alice")).unwrap();
    issue(&s, "h", "r", 100);
    s.append_audit(&AuditEvent {
        time: 1,
        kind: "k".into(),
        user: None,
        client: None,
        ip: None,
        detail: String::new(),
    })
    .unwrap();
    let copy = dir.path().join("backup.redb");
    s.backup_to(&copy).unwrap();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&copy).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert!(s.backup_to(&copy).is_err(), "never overwrites");
    drop(s);
    let restored = RedbStore::open(&copy).unwrap();
    assert_eq!(restored.user_by_name("alice").unwrap().unwrap().id, "1");
    assert!(restored.refresh_token("r").unwrap().is_some());
    assert_eq!(restored.audit(0, 10, None).unwrap().len(), 1);
}

#[test]
fn schema_2_access_token_revocations_survive_the_migration() {
    let dir = TempDir::new("schema-v2");
    let path = dir.path().join("v2.redb");
    {
        let db = ::redb::Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut meta = tx
                .open_table(::redb::TableDefinition::<&str, &[u8]>::new("meta"))
                .unwrap();
            meta.insert("schema_version", b"2".as_slice()).unwrap();
            let mut at = tx
                .open_table(::redb::TableDefinition::<&str, &[u8]>::new("access_tokens"))
                .unwrap();
            for (jti, revoked) in [("old-revoked", true), ("old-live", false)] {
                let record = serde_json::json!({
                    "grant_id": "g", "client_id": "c", "user_id": "", "scopes": [],
                    "expires_at": 500, "revoked": revoked,
                });
                at.insert(jti, serde_json::to_vec(&record).unwrap().as_slice())
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let s = RedbStore::open(&path).unwrap();
    assert!(
        s.access_token_context("old-revoked", None, "c", "c")
            .unwrap()
            .revoked
    );
    assert!(
        !s.access_token_context("old-live", None, "c", "c")
            .unwrap()
            .revoked
    );
    drop(s);
    // The old table is gone, and a second open changes nothing.
    let s = RedbStore::open(&path).unwrap();
    assert!(
        s.access_token_context("old-revoked", None, "c", "c")
            .unwrap()
            .revoked
    );
}

#[test]
fn schema_3_grants_learn_how_long_they_are_kept() {
    let dir = TempDir::new("schema-v3");
    let path = dir.path().join("v3.redb");
    {
        let db = ::redb::Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let table = |name| ::redb::TableDefinition::<&str, &[u8]>::new(name);
            tx.open_table(table("meta"))
                .unwrap()
                .insert("schema_version", b"3".as_slice())
                .unwrap();
            // Grants as schema 3 wrote them: no keep_until.
            let mut grants = tx.open_table(table("grants")).unwrap();
            for (id, tokens_until) in [("by-refresh", 50), ("by-code", 50), ("alone", 70)] {
                let g = serde_json::json!({
                    "grant_id": id, "client_id": "c", "user_id": "u", "created_at": 0,
                    "tokens_until": tokens_until,
                });
                grants
                    .insert(id, serde_json::to_vec(&g).unwrap().as_slice())
                    .unwrap();
            }
            let mut refresh = tx.open_table(table("refresh_tokens")).unwrap();
            let r = RefreshToken {
                grant_id: "by-refresh".into(),
                ..rt(9_000)
            };
            refresh
                .insert("r", serde_json::to_vec(&r).unwrap().as_slice())
                .unwrap();
            let mut codes = tx.open_table(table("codes")).unwrap();
            let c = AuthCode {
                grant_id: "by-code".into(),
                used: true,
                ..code(1_000)
            };
            codes
                .insert("c", serde_json::to_vec(&c).unwrap().as_slice())
                .unwrap();
        }
        tx.commit().unwrap();
    }
    let s = RedbStore::open(&path).unwrap();
    let kept = |id| s.grant(id).unwrap().map(|g| g.keep_until);
    assert_eq!(kept("by-refresh"), Some(9_000));
    assert_eq!(kept("by-code"), Some(1_000 + 300));
    assert_eq!(kept("alone"), Some(70));
    // So the purge keeps what is still referred to, and only that.
    s.purge_expired(100).unwrap();
    assert!(s.grant("alone").unwrap().is_none());
    assert!(s.grant("by-code").unwrap().is_some());
    assert!(s.refresh_token("r").unwrap().is_some());
    s.purge_expired(2_000).unwrap();
    assert!(s.grant("by-code").unwrap().is_none());
    assert!(s.grant("by-refresh").unwrap().is_some());
}

#[test]
fn an_older_schema_is_migrated_and_a_newer_one_refused() {
    let dir = TempDir::new("schema-v1");
    let path = dir.path().join("v1.redb");
    {
        // The first layout: no device, user-code or assertion tables; version 1.
        let db = ::redb::Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut meta = tx
                .open_table(::redb::TableDefinition::<&str, &[u8]>::new("meta"))
                .unwrap();
            meta.insert("schema_version", b"1".as_slice()).unwrap();
            let mut users = tx
                .open_table(::redb::TableDefinition::<&str, &[u8]>::new("users"))
                .unwrap();
            users
                .insert(
                    "1",
                    serde_json::to_vec(&user("1", "alice")).unwrap().as_slice(),
                )
                .unwrap();
            let mut names = tx
                .open_table(::redb::TableDefinition::<&str, &[u8]>::new("usernames"))
                .unwrap();
            names
                .insert("alice", serde_json::to_vec("1").unwrap().as_slice())
                .unwrap();
        }
        tx.commit().unwrap();
    }
    let s = RedbStore::open(&path).unwrap();
    assert_eq!(
        s.meta("schema_version").unwrap().as_deref(),
        Some(SCHEMA_VERSION.to_string().as_str())
    );
    assert_eq!(s.user_by_name("alice").unwrap().unwrap().id, "1");
    assert!(
        s.device_by_user_code("BCDFGHJK").unwrap().is_none(),
        "new tables exist"
    );
    s.put_meta("schema_version", &(SCHEMA_VERSION + 1).to_string())
        .unwrap();
    drop(s);
    match RedbStore::open(&path) {
        Err(StoreError::Schema(m)) => assert!(m.contains("newer Latchkey"), "{m}"),
        other => panic!("expected a schema error, got {:?}", other.err()),
    }
}

#[test]
fn queued_audit_events_are_read_back_and_survive_closing() {
    let dir = TempDir::new("store-audit");
    let path = dir.path().join("db.redb");
    let event = |t| AuditEvent {
        time: t,
        kind: "login.success".into(),
        user: Some("alice".into()),
        client: None,
        ip: None,
        detail: String::new(),
    };
    {
        let s = RedbStore::open(&path).unwrap();
        s.append_audit(&event(1)).unwrap();
        assert_eq!(
            s.audit(0, 10, None).unwrap().len(),
            1,
            "a read writes the queue first"
        );
        s.append_audit(&event(2)).unwrap();
        // Closed with one event still queued.
    }
    let s = RedbStore::open(&path).unwrap();
    let times: Vec<i64> = s
        .audit(0, 10, None)
        .unwrap()
        .iter()
        .map(|e| e.time)
        .collect();
    assert_eq!(times, vec![2, 1]);
}

fn an_access_tokens_context_is_read_together<S: Store + Engine>(s: &S) {
    let ctx = s.access_token_context("g.j", Some("g"), "c", "u").unwrap();
    assert!(ctx.grant.is_none() && !ctx.revoked);
    issue(s, "h", "r", 100);
    let ctx = s.access_token_context("g.j", Some("g"), "c", "u").unwrap();
    assert_eq!(ctx.grant.map(|g| g.revoked), Some(false));
    assert!(ctx.user.is_none(), "user u was never created");
    assert!(ctx.client.is_none(), "client c was never created");
    s.create_user(&user("u", "alice")).unwrap();
    s.create_user(&user("v", "bob")).unwrap();
    let client: Client = serde_json::from_value(serde_json::json!({
        "client_id": "c", "name": "RP", "redirect_uris": ["https://rp/cb"],
        "scopes": ["openid"], "grant_types": ["authorization_code"],
        "response_types": ["code"], "token_endpoint_auth_method": "none", "created_at": 0,
    }))
    .unwrap();
    s.create_client(&client).unwrap();
    s.revoke_grant("g", "c", "u", 1).unwrap();
    let ctx = s.access_token_context("g.j", Some("g"), "c", "u").unwrap();
    assert_eq!(ctx.user.map(|u| u.username), Some("alice".to_string()));
    assert_eq!(ctx.grant.map(|g| g.revoked), Some(true));
    assert_eq!(ctx.client.map(|c| c.name), Some("RP".to_string()));
    // A subject other than the grant's user finds no user.
    let ctx = s.access_token_context("g.j", Some("g"), "c", "v").unwrap();
    assert!(ctx.user.is_none() && ctx.grant.is_some());
    // A client's own token: no grant, and the revocation list alone.
    assert!(
        s.access_token_context("k", None, "c", "c")
            .unwrap()
            .grant
            .is_none()
    );
    s.revoke_access_token("k", 50).unwrap();
    assert!(s.access_token_context("k", None, "c", "c").unwrap().revoked);
    assert!(
        !s.access_token_context("k2", None, "c", "c")
            .unwrap()
            .revoked
    );
}

fn the_contexts_of_codes_sessions_and_refresh_tokens_are_read_together<S: Store + Engine>(s: &S) {
    assert!(s.code_context("nope").unwrap().is_none());
    assert!(s.session_context("h", Some("c")).unwrap().is_none());
    s.put_code("k", &code(100)).unwrap();
    let ctx = s.code_context("k").unwrap().unwrap();
    assert_eq!(ctx.code.grant_id, "g");
    assert!(ctx.user.is_none() && ctx.session.is_none());
    s.create_user(&user("u", "alice")).unwrap();
    s.put_session("h", &session()).unwrap();
    let ctx = s.code_context("k").unwrap().unwrap();
    assert_eq!(ctx.user.map(|u| u.username).as_deref(), Some("alice"));
    assert_eq!(ctx.session.map(|s| s.sid).as_deref(), Some("s"));

    let ctx = s.session_context("h", Some("c")).unwrap().unwrap();
    assert_eq!(ctx.session.sid, "s");
    assert_eq!(ctx.user.map(|u| u.id).as_deref(), Some("u"));
    assert!(ctx.consent.is_none());
    let consent = Consent {
        user_id: "u".into(),
        client_id: "c".into(),
        scopes: vec!["openid".into()],
        claims: vec![],
        granted_at: 1,
    };
    s.put_consent(&consent).unwrap();
    let with = s.session_context("h", Some("c")).unwrap().unwrap();
    assert_eq!(with.consent, Some(consent));
    let other = s.session_context("h", Some("d")).unwrap().unwrap();
    assert!(other.consent.is_none(), "another client's consent");
    let without = s.session_context("h", None).unwrap().unwrap();
    assert!(without.consent.is_none() && without.user.is_some());
    // The code's redemption starts grant g (session h) with refresh token r.
    issue(s, "k2", "r", 100);
    let ctx = s.refresh_context("r").unwrap().unwrap();
    assert_eq!(ctx.token.grant_id, "g");
    assert_eq!(ctx.grant.map(|g| g.session_hash).as_deref(), Some("h"));
    assert_eq!(ctx.user.map(|u| u.id).as_deref(), Some("u"));
    assert_eq!(ctx.session.map(|s| s.sid).as_deref(), Some("s"));
    assert!(s.refresh_context("nope").unwrap().is_none());

    s.delete_session("h").unwrap();
    assert!(s.code_context("k").unwrap().unwrap().session.is_none());
    assert!(s.refresh_context("r").unwrap().unwrap().session.is_none());
}

fn records_read_together_come_in_order_after_earlier_writes<S: Store + Engine>(s: &S) {
    use super::kv::META;
    let got = s
        .write(false, |tx| {
            tx.put(META, "a", b"1")?;
            tx.put(META, "b", b"2")?;
            tx.get_many(&[(META, "b"), (META, "missing"), (META, "a")])
        })
        .unwrap();
    assert_eq!(got, vec![Some(b"2".to_vec()), None, Some(b"1".to_vec())]);
    let got = s
        .get_many(&[(META, "a"), (META, "a"), (META, "b")])
        .unwrap();
    assert_eq!(
        got,
        vec![
            Some(b"1".to_vec()),
            Some(b"1".to_vec()),
            Some(b"2".to_vec())
        ]
    );
    assert!(s.get_many(&[]).unwrap().is_empty());
    // The connection is left in a usable state: a later write and read see each other.
    s.write(true, |tx| tx.put(META, "a", b"3")).unwrap();
    assert_eq!(
        s.get_many(&[(META, "a")]).unwrap(),
        vec![Some(b"3".to_vec())]
    );
}

fn puts_in_one_transaction_land_together_and_are_seen_by_it<S: Store + Engine>(s: &S) {
    use super::kv::{META, USERNAMES};
    s.write(false, |tx| {
        tx.put(META, "x", b"1")?;
        tx.put(USERNAMES, "x", b"a")?;
        tx.put(META, "x", b"2")?;
        tx.put(META, "y", b"3")
    })
    .unwrap();
    let got = s
        .get_many(&[(META, "x"), (USERNAMES, "x"), (META, "y")])
        .unwrap();
    let v = |b: &[u8]| Some(b.to_vec());
    assert_eq!(
        got,
        vec![v(b"2"), v(b"a"), v(b"3")],
        "the last value put wins"
    );
    let (removed, seen) = s
        .write(false, |tx| {
            tx.put(META, "z", b"4")?;
            let removed = tx.remove(META, "z")?;
            tx.put(META, "w", b"5")?;
            let mut seen = Vec::new();
            tx.scan(META, None, &mut |k, v| {
                seen.push((k.to_string(), v.to_vec()));
                Ok(true)
            })?;
            Ok((removed, seen))
        })
        .unwrap();
    assert!(
        removed,
        "a record put earlier in the transaction is removed"
    );
    assert!(seen.contains(&("w".to_string(), b"5".to_vec())));
    assert!(!seen.iter().any(|(k, _)| k == "z"));
    // A transaction that fails leaves nothing of what it put.
    let failed = s.write(false, |tx| -> Result<()> {
        tx.put(META, "v", b"6")?;
        Err(StoreError::Conflict("no".into()))
    });
    assert!(failed.is_err());
    assert_eq!(
        s.get_many(&[(META, "v"), (META, "z")]).unwrap(),
        vec![None, None]
    );
}

fn revocation_list_entries_and_grants_live_as_long_as_their_tokens<S: Store + Engine>(s: &S) {
    s.revoke_access_token("k", 50).unwrap();
    // A grant with no code or refresh token left, whose access tokens live until 500.
    issue(s, "h", "r", 10);
    s.rotate_refresh_token("r", "r2", &rt(10), 500, &[])
        .unwrap();
    s.purge_expired(49).unwrap();
    assert!(s.access_token_context("k", None, "c", "c").unwrap().revoked);
    s.purge_expired(169).unwrap();
    assert!(
        s.access_token_context("k", None, "c", "c").unwrap().revoked,
        "kept two minutes past expiry, against a clock stepped back"
    );
    s.purge_expired(171).unwrap();
    assert!(
        !s.access_token_context("k", None, "c", "c").unwrap().revoked,
        "expired: gone"
    );
    assert!(s.refresh_token("r2").unwrap().is_none());
    assert!(
        s.grant("g").unwrap().is_some(),
        "its access token still lives"
    );
    s.purge_expired(100_000).unwrap();
    assert!(s.grant("g").unwrap().is_none());
}

fn purge_works_through_more_than_one_batch<S: Store + Engine>(s: &S) {
    for i in 0..2_500 {
        s.put_code(&format!("old-{i:05}"), &code(10)).unwrap();
    }
    for i in 0..10 {
        s.put_code(&format!("new-{i}"), &code(1_000_000)).unwrap();
    }
    assert_eq!(s.purge_expired(1000).unwrap(), 2_500);
    assert_eq!(
        s.list::<AuthCode>(crate::store::kv::CODES).unwrap().len(),
        10
    );
}

fn short_lived_records_expire_and_are_taken_once<S: Store + Engine>(s: &S) {
    s.put_ephemeral("k/1", b"one", 100).unwrap();
    assert_eq!(
        s.ephemeral("k/1", 99).unwrap().as_deref(),
        Some(&b"one"[..])
    );
    assert_eq!(s.ephemeral("k/1", 100).unwrap(), None, "expired");
    assert!(
        s.update_ephemeral("k/1", 50, &|v| Some([v, b"+"].concat()))
            .unwrap()
    );
    assert_eq!(
        s.ephemeral("k/1", 50).unwrap().as_deref(),
        Some(&b"one+"[..])
    );
    assert_eq!(
        s.take_ephemeral("k/1", 50).unwrap().as_deref(),
        Some(&b"one+"[..])
    );
    assert_eq!(s.take_ephemeral("k/1", 50).unwrap(), None, "single use");
    assert!(!s.update_ephemeral("k/1", 50, &|_| Some(vec![])).unwrap());
    let count = |old: Option<&[u8]>| vec![old.map_or(0, |b| b[0]) + 1];
    for _ in 0..3 {
        s.merge_ephemeral("k/n", 10, 100, &count).unwrap();
    }
    assert_eq!(s.ephemeral("k/n", 10).unwrap(), Some(vec![3]));
    assert_eq!(
        s.merge_ephemeral("k/n", 200, 300, &count).unwrap(),
        vec![1],
        "an expired record starts again"
    );
    s.put_ephemeral("k/old", b"x", 10).unwrap();
    s.purge_expired(500).unwrap();
    assert!(s.take_ephemeral("k/old", 0).unwrap().is_none(), "purged");
    assert!(!s.delete_ephemeral("k/n").unwrap(), "purged too");
    s.put_ephemeral("k/m", b"y", 10_000).unwrap();
    assert!(s.delete_ephemeral("k/m").unwrap());
    assert!(s.ephemeral("k/m", 0).unwrap().is_none());
}

fn a_lease_has_one_holder_until_it_runs_out<S: Store + Engine>(s: &S) {
    assert_eq!(s.put_meta_if_absent("secret", "first").unwrap(), "first");
    assert_eq!(s.put_meta_if_absent("secret", "second").unwrap(), "first");
    assert!(s.lease("work", "a", 100, 60).unwrap());
    if !Engine::shared(s) {
        assert!(
            s.lease("work", "b", 130, 60).unwrap(),
            "nobody else opens a redb file: this process holds every lease"
        );
        return;
    }
    assert!(!s.lease("work", "b", 130, 60).unwrap(), "a holds it");
    assert!(s.lease("work", "a", 150, 60).unwrap(), "renewed");
    assert!(!s.lease("work", "b", 200, 60).unwrap());
    assert!(s.lease("work", "b", 211, 60).unwrap(), "ran out");
    assert!(
        s.lease("other", "a", 211, 60).unwrap(),
        "leases are separate"
    );
    assert_eq!(s.put_meta_if_absent("secret", "first").unwrap(), "first");
    assert_eq!(s.put_meta_if_absent("secret", "second").unwrap(), "first");
}

/// Runs each test above on a fresh redb file and on a fresh PostgreSQL database: one
/// behaviour, two backends.
macro_rules! on_both_backends {
    ($($name:ident,)*) => {
        mod on_redb {
            $(
                #[test]
                fn $name() {
                    let (_d, s) = super::open();
                    super::$name(&s);
                }
            )*
        }
        mod on_postgres {
            $(
                #[test]
                fn $name() {
                    let s = super::open_postgres();
                    super::$name(&s);
                }
            )*
        }
    };
}

on_both_backends! {
            users_round_trip_with_unique_case_insensitive_names,
            a_code_is_redeemed_exactly_once_and_a_replay_stores_nothing,
            refresh_rotation_is_single_use,
            revoking_a_users_grants_touches_no_one_else,
            logout_revokes_the_sessions_grants_but_not_offline_ones,
            purge_removes_only_expired_records,
            a_rotated_refresh_token_keeps_its_grant_until_it_expires,
            audit_is_newest_first,
            audit_retention_removes_only_older_events,
            used_records_are_stored_slim_and_read_back,
            a_code_of_a_revoked_grant_yields_nothing,
            a_code_whose_session_ended_or_user_was_disabled_meanwhile_yields_nothing,
            a_device_answer_is_never_undone_by_a_poll,
            an_access_tokens_context_is_read_together,
            the_contexts_of_codes_sessions_and_refresh_tokens_are_read_together,
            records_read_together_come_in_order_after_earlier_writes,
            puts_in_one_transaction_land_together_and_are_seen_by_it,
            revocation_list_entries_and_grants_live_as_long_as_their_tokens,
            purge_works_through_more_than_one_batch,
    short_lived_records_expire_and_are_taken_once,
    a_lease_has_one_holder_until_it_runs_out,
}

/// A store on a new database of the test process's PostgreSQL server.
fn open_postgres() -> PgStore {
    postgres_node(&crate::testutil::postgres::server().database())
}

/// One more node on the database at `url`.
fn postgres_node(url: &str) -> PgStore {
    let settings = super::postgres::PgSettings {
        config: url.parse().unwrap(),
        tls: None,
        pool_size: 8,
    };
    PgStore::open(&settings).unwrap()
}

/// Two nodes on one database, eight threads racing over them: a code is redeemed once, a
/// refresh token rotated once, a username taken once, whichever node each request reaches.
#[test]
fn two_postgres_nodes_let_exactly_one_racer_win() {
    let url = crate::testutil::postgres::server().database();
    let nodes = [postgres_node(&url), postgres_node(&url)];
    for round in 0..5 {
        let hash = format!("code-{round}");
        nodes[0].put_session("h", &session()).unwrap();
        nodes[0].put_code(&hash, &code(10_000)).unwrap();
        let won = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for i in 0..8 {
                let (node, hash, won) = (&nodes[i % 2], &hash, &won);
                scope.spawn(move || {
                    let g = Grant {
                        grant_id: format!("g-{round}-{i}"),
                        ..grant()
                    };
                    let r = rt(10_000);
                    let rt_hash = format!("r-{round}-{i}");
                    let issued = Issued {
                        grant: &g,
                        refresh: Some((&rt_hash, &r)),
                    };
                    if let Consumed::Fresh(_) = node.redeem_code(hash, &issued).unwrap() {
                        won.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(won.into_inner(), 1, "one redemption of {hash}");
        let stored = (0..8)
            .filter(|i| {
                nodes[1]
                    .refresh_token(&format!("r-{round}-{i}"))
                    .unwrap()
                    .is_some()
            })
            .count();
        assert_eq!(stored, 1, "one refresh token issued for {hash}");
    }
    issue(&nodes[0], "c", "r0", 10_000);
    let won = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for i in 0..8 {
            let (node, won) = (&nodes[i % 2], &won);
            scope.spawn(move || {
                let next = format!("r0-next-{i}");
                if let Consumed::Fresh(_) = node
                    .rotate_refresh_token("r0", &next, &rt(10_000), 500, &[])
                    .unwrap()
                {
                    won.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(won.into_inner(), 1, "one rotation");
    let taken = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for i in 0..8 {
            let (node, taken) = (&nodes[i % 2], &taken);
            scope.spawn(
                move || match node.create_user(&user(&format!("u{i}"), "Same")) {
                    Ok(()) => {
                        taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Err(StoreError::Conflict(_)) => {}
                    Err(e) => panic!("{e}"),
                },
            );
        }
    });
    assert_eq!(taken.into_inner(), 1, "one user named Same");
    assert_eq!(nodes[1].users().unwrap().len(), 1);
}

#[test]
fn a_newer_postgres_schema_is_refused() {
    let server = crate::testutil::postgres::server();
    let url = server.database();
    drop(postgres_node(&url));
    let db = url.rsplit('/').next().unwrap();
    server.psql(db, "UPDATE latchkey_schema SET version = version + 1");
    let settings = super::postgres::PgSettings {
        config: url.parse().unwrap(),
        tls: None,
        pool_size: 1,
    };
    match PgStore::open(&settings) {
        Err(StoreError::Schema(m)) => assert!(m.contains("newer Latchkey"), "{m}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a newer schema was accepted"),
    }
}

/// A connection the server closed while it sat idle in the pool is noticed when taken out
/// and replaced, so the next request does not fail; and the store works from inside a
/// single-threaded runtime too (as command-line tools and tests call it), where its
/// connections' own runtimes cannot be entered directly.
#[test]
fn postgres_connections_closed_while_idle_are_replaced() {
    use super::kv::META;
    let server = crate::testutil::postgres::server();
    let url = server.database();
    let db = url.rsplit('/').next().unwrap().to_string();
    let s = postgres_node(&url);
    s.write(false, |tx| tx.put(META, "k", b"v")).unwrap();
    let found = vec![Some(b"v".to_vec())];
    assert_eq!(s.get_many(&[(META, "k")]).unwrap(), found);
    server.psql(
        &db,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(s.get_many(&[(META, "k")]).unwrap(), found);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let inside = rt.block_on(async {
        s.write(true, |tx| tx.put(META, "k", b"w"))?;
        s.get_many(&[(META, "k")])
    });
    assert_eq!(inside.unwrap(), vec![Some(b"w".to_vec())]);
}
