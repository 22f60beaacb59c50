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
    }
}

fn at(expires_at: i64) -> AccessTokenRecord {
    AccessTokenRecord {
        grant_id: "g".into(),
        client_id: "c".into(),
        user_id: "u".into(),
        scopes: vec![],
        expires_at,
        revoked: false,
    }
}

#[test]
fn users_round_trip_with_unique_case_insensitive_names() {
    let (_d, s) = open();
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

#[test]
fn a_code_is_consumed_exactly_once() {
    let (_d, s) = open();
    s.put_code("h1", &code(100)).unwrap();
    assert!(matches!(s.consume_code("h1").unwrap(), Consumed::Fresh(_)));
    assert!(matches!(
        s.consume_code("h1").unwrap(),
        Consumed::Replayed(_)
    ));
    assert_eq!(s.consume_code("nope").unwrap(), Consumed::Missing);
}

#[test]
fn refresh_rotation_is_single_use() {
    let (_d, s) = open();
    let g = Grant {
        grant_id: "g".into(),
        client_id: "c".into(),
        user_id: "u".into(),
        created_at: 0,
        revoked: false,
    };
    s.put_tokens(&Issued {
        grant: &g,
        access_jti: "j1",
        access: &at(10),
        refresh: Some(("r1", &rt(100))),
    })
    .unwrap();
    assert!(matches!(
        s.rotate_refresh_token("r1", "r2", &rt(100), "j2", &at(10))
            .unwrap(),
        Consumed::Fresh(_)
    ));
    assert!(matches!(
        s.rotate_refresh_token("r1", "r3", &rt(100), "j3", &at(10))
            .unwrap(),
        Consumed::Replayed(_)
    ));
    assert!(s.refresh_token("r3").unwrap().is_none());
    assert!(s.refresh_token("r2").unwrap().is_some());
    s.revoke_grant("g", "c", "u", 5).unwrap();
    assert!(s.grant("g").unwrap().unwrap().revoked);
    s.revoke_grant("other", "c", "u", 5).unwrap();
    assert!(s.grant("other").unwrap().unwrap().revoked);
}

#[test]
fn a_revoked_grant_is_never_revived_by_a_late_issue() {
    let (_d, s) = open();
    // A replay revoked the grant between the winner's redemption and its token write.
    s.revoke_grant("g", "c", "u", 1).unwrap();
    let g = Grant {
        grant_id: "g".into(),
        client_id: "c".into(),
        user_id: "u".into(),
        created_at: 2,
        revoked: false,
    };
    let r = s.put_tokens(&Issued {
        grant: &g,
        access_jti: "j",
        access: &at(50),
        refresh: Some(("r", &rt(50))),
    });
    assert!(matches!(r, Err(StoreError::Conflict(_))));
    assert!(s.grant("g").unwrap().unwrap().revoked);
    assert!(s.access_token("j").unwrap().is_none());
    assert!(s.refresh_token("r").unwrap().is_none());
}

#[test]
fn purge_removes_only_expired_records() {
    let (_d, s) = open();
    s.put_code("old", &code(10)).unwrap();
    s.put_code("new", &code(10_000)).unwrap();
    let g = Grant {
        grant_id: "g".into(),
        client_id: "c".into(),
        user_id: "u".into(),
        created_at: 0,
        revoked: false,
    };
    s.put_tokens(&Issued {
        grant: &g,
        access_jti: "j",
        access: &at(50),
        refresh: Some(("r", &rt(50))),
    })
    .unwrap();
    let n = s.purge_expired(1000).unwrap();
    assert_eq!(n, 3);
    assert!(s.code("old").unwrap().is_none());
    assert!(s.code("new").unwrap().is_some());
    assert!(s.access_token("j").unwrap().is_none());
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

#[test]
fn audit_is_newest_first() {
    let (_d, s) = open();
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
    let a = s.audit(3, 10).unwrap();
    assert_eq!(a.iter().map(|e| e.time).collect::<Vec<_>>(), vec![5, 4, 3]);
    assert_eq!(s.audit(0, 2).unwrap().len(), 2);
}
