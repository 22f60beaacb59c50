//! Claim sets: the ID token (OIDC Core §2), the JWT access token (RFC 9068 §2.2) and the
//! UserInfo response (OIDC Core §5.3), with standard claims released per scope (§5.4).

use serde_json::{Map, Value, json};

use crate::model::User;

use super::scope;

/// Facts about one authentication that go into tokens.
#[derive(Debug, Clone)]
pub struct AuthFacts<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub user: &'a User,
    pub scopes: &'a [String],
    pub auth_time: i64,
    pub amr: &'a [String],
    pub acr: &'a str,
    pub sid: &'a str,
    pub now: i64,
    /// Claims the `claims` parameter asked for in the ID token.
    pub id_token_claims: &'a [String],
    /// The client's `groups_filter` (empty: every group).
    pub groups_filter: &'a [String],
}

/// The groups a client sees (SPEC §14): those matching one of `filter`'s names or
/// `prefix*` patterns; every group when the filter is empty.
pub fn visible_groups(groups: &[String], filter: &[String]) -> Vec<String> {
    if filter.is_empty() {
        return groups.to_vec();
    }
    let shown = |g: &String| {
        filter.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => g.starts_with(prefix),
            None => g == p,
        })
    };
    groups.iter().filter(|g| shown(g)).cloned().collect()
}

/// Narrows a `groups` claim in `m` to what the client sees.
fn filter_groups(m: &mut Map<String, Value>, user: &User, filter: &[String]) {
    if let Some(g) = m.get_mut("groups") {
        *g = json!(visible_groups(&user.groups, filter));
    }
}

/// The `claims` request parameter, as kept with codes and refresh tokens (a stored
/// `model` type; its rules are here).
pub use crate::model::ClaimsRequest;

/// Longest `claims` parameter accepted, and the limits on the values kept from it.
pub const MAX_LEN: usize = 4096;
const MAX_VALUE_LEN: usize = 256;
const MAX_VALUES: usize = 16;

impl ClaimsRequest {
    /// Parses the JSON parameter. Members other than `userinfo` and `id_token` are
    /// ignored; each claim's value may be null or an object (`essential`, `value`,
    /// `values`), which do not change what is released.
    pub fn parse(text: &str) -> Result<ClaimsRequest, String> {
        // SPEC §8: what a pending request keeps is bounded.
        if text.len() > MAX_LEN {
            return Err("claims is too long".into());
        }
        let v: Value =
            serde_json::from_str(text).map_err(|_| "claims is not valid JSON".to_string())?;
        let Value::Object(top) = v else {
            return Err("claims must be a JSON object".into());
        };
        let names = |member: &str| -> Result<Vec<String>, String> {
            match top.get(member) {
                None | Some(Value::Null) => Ok(vec![]),
                Some(Value::Object(m)) => {
                    if m.len() > MAX_VALUES * 2 {
                        return Err(format!("claims.{member} names too many claims"));
                    }
                    for spec in m.values() {
                        if !matches!(spec, Value::Null | Value::Object(_)) {
                            return Err(format!("claims.{member} entries must be null or objects"));
                        }
                    }
                    Ok(m.keys().cloned().collect())
                }
                Some(_) => Err(format!("claims.{member} must be an object")),
            }
        };
        let spec = |member: &str, claim: &str| top.get(member).and_then(|m| m.get(claim)).cloned();
        let sub = ["id_token", "userinfo"].iter().find_map(|m| {
            spec(m, "sub").and_then(|s| s.get("value").and_then(Value::as_str).map(str::to_string))
        });
        let essential_acr = match spec("id_token", "acr") {
            Some(acr) if acr.get("essential").and_then(Value::as_bool) == Some(true) => {
                let mut v: Vec<String> = acr
                    .get("values")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect();
                if let Some(one) = acr.get("value").and_then(Value::as_str) {
                    v.push(one.to_string());
                }
                v
            }
            _ => vec![],
        };
        if sub.as_ref().is_some_and(|s| s.len() > MAX_VALUE_LEN)
            || essential_acr.len() > MAX_VALUES
            || essential_acr.iter().any(|a| a.len() > MAX_VALUE_LEN)
        {
            return Err("claims has values that are too long".into());
        }
        Ok(ClaimsRequest {
            userinfo: names("userinfo")?,
            id_token: names("id_token")?,
            sub,
            essential_acr,
        })
    }

    /// Keeps only claims Latchkey knows whose scope the client is registered for.
    pub fn allowed(&self, client_scopes: &[String]) -> ClaimsRequest {
        ClaimsRequest {
            userinfo: allowed_claims(&self.userinfo, client_scopes),
            id_token: allowed_claims(&self.id_token, client_scopes),
            sub: self.sub.clone(),
            essential_acr: self.essential_acr.clone(),
        }
    }

    /// The scopes whose consent covers these claims.
    pub fn scopes(&self) -> Vec<String> {
        self.userinfo
            .iter()
            .chain(&self.id_token)
            .filter_map(|n| claim_scope(n))
            .map(str::to_string)
            .collect()
    }
}

/// The individually requested claims a client may still receive: those whose scope it is
/// registered for now (a client narrowed since the request loses the rest at once).
pub fn allowed_claims(names: &[String], client_scopes: &[String]) -> Vec<String> {
    names
        .iter()
        .filter(|n| claim_scope(n).is_some_and(|s| scope::contains(client_scopes, s)))
        .cloned()
        .collect()
}

/// The scope that releases a standard claim.
pub fn claim_scope(name: &str) -> Option<&'static str> {
    Some(match name {
        "name" | "given_name" | "family_name" | "preferred_username" | "updated_at" => "profile",
        "email" | "email_verified" => "email",
        "phone_number" | "phone_number_verified" => "phone",
        "address" => "address",
        "groups" => "groups",
        _ => return None,
    })
}

/// Individually requested claims the user has (a subset of what their scopes would give).
pub fn requested_claims(user: &User, names: &[String]) -> Map<String, Value> {
    if names.is_empty() {
        return Map::new();
    }
    let all: Vec<String> = scope::SUPPORTED.iter().map(|s| s.to_string()).collect();
    let mut every = scope_claims(user, &all);
    every.retain(|k, _| names.contains(k));
    every
}

/// Standard claims of the granted scopes (never `sub`, which callers add).
pub fn scope_claims(user: &User, scopes: &[String]) -> Map<String, Value> {
    let mut m = Map::new();
    if scope::contains(scopes, "profile") {
        m.insert("name".into(), json!(user.display_name()));
        if let Some(g) = &user.given_name {
            m.insert("given_name".into(), json!(g));
        }
        if let Some(f) = &user.family_name {
            m.insert("family_name".into(), json!(f));
        }
        m.insert("preferred_username".into(), json!(user.username));
        m.insert("updated_at".into(), json!(user.updated_at));
    }
    if scope::contains(scopes, "email") {
        m.insert("email".into(), json!(user.email));
        m.insert("email_verified".into(), json!(user.email_verified));
    }
    if scope::contains(scopes, "phone")
        && let Some(p) = &user.phone
    {
        m.insert("phone_number".into(), json!(p));
        m.insert("phone_number_verified".into(), json!(false));
    }
    if scope::contains(scopes, "address")
        && let Some(a) = user.address.as_ref().filter(|a| !a.is_empty())
    {
        let mut addr = serde_json::to_value(a).unwrap_or(Value::Null);
        if let Value::Object(o) = &mut addr {
            let formatted: Vec<&str> = [
                &a.street_address,
                &a.locality,
                &a.region,
                &a.postal_code,
                &a.country,
            ]
            .into_iter()
            .filter_map(|s| s.as_deref())
            .collect();
            o.insert("formatted".into(), json!(formatted.join("\n")));
        }
        m.insert("address".into(), addr);
    }
    if scope::contains(scopes, "groups") {
        m.insert("groups".into(), json!(user.groups));
    }
    m
}

/// ID token claims. `at_hash` is passed in when an access token is issued alongside.
pub fn id_token(
    f: &AuthFacts<'_>,
    ttl: i64,
    nonce: Option<&str>,
    at_hash: Option<&str>,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("iss".into(), json!(f.issuer));
    m.insert("sub".into(), json!(f.user.id));
    m.insert("aud".into(), json!(f.client_id));
    m.insert("exp".into(), json!(f.now + ttl));
    m.insert("iat".into(), json!(f.now));
    m.insert("auth_time".into(), json!(f.auth_time));
    if let Some(n) = nonce {
        m.insert("nonce".into(), json!(n));
    }
    m.insert("azp".into(), json!(f.client_id));
    if let Some(h) = at_hash {
        m.insert("at_hash".into(), json!(h));
    }
    m.insert("sid".into(), json!(f.sid));
    m.insert("amr".into(), json!(f.amr));
    m.insert("acr".into(), json!(f.acr));
    // SPEC §6: the ID token also carries the claims of the granted scopes, because several
    // common relying parties read them only from the ID token.
    for (k, v) in scope_claims(f.user, f.scopes) {
        m.insert(k, v);
    }
    for (k, v) in requested_claims(f.user, f.id_token_claims) {
        m.insert(k, v);
    }
    filter_groups(&mut m, f.user, f.groups_filter);
    m
}

/// RFC 9068 §2.2 access token claims for a user. The audience is the issuer itself: the
/// only protected resource Latchkey serves is its own UserInfo endpoint.
pub fn access_token(f: &AuthFacts<'_>, ttl: i64, jti: &str) -> Map<String, Value> {
    let mut m = access_token_base(f.issuer, f.client_id, &f.user.id, f.scopes, f.now, ttl, jti);
    m.insert("auth_time".into(), json!(f.auth_time));
    m.insert("acr".into(), json!(f.acr));
    m.insert("amr".into(), json!(f.amr));
    m.insert("sid".into(), json!(f.sid));
    m
}

/// RFC 9068 §2.2 access token claims for client_credentials (RFC 6749 §4.4): the client is
/// its own subject, and no authentication of a person is described.
pub fn client_access_token(
    issuer: &str,
    client_id: &str,
    scopes: &[String],
    now: i64,
    ttl: i64,
    jti: &str,
) -> Map<String, Value> {
    access_token_base(issuer, client_id, client_id, scopes, now, ttl, jti)
}

/// The claims every access token carries.
fn access_token_base(
    issuer: &str,
    client_id: &str,
    sub: &str,
    scopes: &[String],
    now: i64,
    ttl: i64,
    jti: &str,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("iss".into(), json!(issuer));
    m.insert("sub".into(), json!(sub));
    m.insert("aud".into(), json!(issuer));
    m.insert("exp".into(), json!(now + ttl));
    m.insert("iat".into(), json!(now));
    m.insert("jti".into(), json!(jti));
    m.insert("client_id".into(), json!(client_id));
    m.insert("scope".into(), json!(scope::join(scopes)));
    m
}

/// OIDC Core §5.3.2 UserInfo response: the claims of the granted scopes plus those asked
/// for individually with the `claims` parameter.
/// `groups_filter` is the client's (empty: every group).
pub fn userinfo(
    user: &User,
    scopes: &[String],
    requested: &[String],
    groups_filter: &[String],
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("sub".into(), json!(user.id));
    for (k, v) in scope_claims(user, scopes) {
        m.insert(k, v);
    }
    for (k, v) in requested_claims(user, requested) {
        m.insert(k, v);
    }
    filter_groups(&mut m, user, groups_filter);
    m
}

/// Every claim Latchkey can return (`claims_supported`).
pub const SUPPORTED: &[&str] = &[
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "azp",
    "at_hash",
    "sid",
    "amr",
    "acr",
    "name",
    "given_name",
    "family_name",
    "preferred_username",
    "updated_at",
    "email",
    "email_verified",
    "phone_number",
    "phone_number_verified",
    "address",
    "groups",
];

// ---------------------------------------------------------------------------------------
// Custom claims (SPEC §14)

/// Claims no rule may set: those of JWTs and of OIDC, and every claim Latchkey releases
/// itself.
const RESERVED: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "at_hash",
    "c_hash",
    "s_hash",
    "sid",
    "client_id",
    "scope",
    "cnf",
    "act",
    "may_act",
    "events",
    "typ",
    "email_verified",
    "phone_number_verified",
];

/// Where a custom claim can appear.
pub const PLACES: &[&str] = &["id_token", "userinfo", "access_token"];
/// Most claim rules per client, attributes per user or group, and values in a list.
pub const MAX_RULES: usize = 32;
pub const MAX_ATTRIBUTES: usize = 64;
const MAX_LIST: usize = 64;
const MAX_TEXT: usize = 1024;

/// A claim or attribute name: 1 to 64 letters, digits or `_.:-`, starting with a letter.
pub fn valid_name(n: &str) -> bool {
    n.len() <= 64
        && n.starts_with(|c: char| c.is_ascii_alphabetic())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c))
}

/// Reserved whatever the case (some relying parties compare claim names without it).
pub fn reserved(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    RESERVED.contains(&lower.as_str()) || SUPPORTED.contains(&lower.as_str())
}

/// Most bytes of custom claims in one token (their JSON): rules beyond it are left out.
pub const MAX_CUSTOM_BYTES: usize = 8 * 1024;

/// Whether `v` may be an attribute's value (or a group map's): a string, number or
/// boolean, or a list of those.
fn valid_value(v: &Value) -> bool {
    let scalar = |v: &Value| match v {
        Value::String(s) => s.len() <= MAX_TEXT,
        Value::Number(_) | Value::Bool(_) => true,
        _ => false,
    };
    match v {
        Value::Array(items) => items.len() <= MAX_LIST && items.iter().all(scalar),
        other => scalar(other),
    }
}

/// Checks one attribute, naming what is wrong.
pub fn check_attribute(name: &str, value: &Value) -> Result<(), String> {
    if !valid_name(name) {
        return Err(format!(
            "attribute: {name:?} is not a name (letters, digits, _.:- ; at most 64)"
        ));
    }
    if !valid_value(value) {
        return Err(format!(
            "attribute {name}: a string, number, boolean or a list of those (at most {MAX_LIST})"
        ));
    }
    Ok(())
}

/// Checks a client's claim rules against its scopes, naming the first problem.
pub fn check_rules(rules: &[crate::model::ClaimRule], scopes: &[String]) -> Result<(), String> {
    if rules.len() > MAX_RULES {
        return Err(format!("claims: at most {MAX_RULES} rules"));
    }
    let mut seen = std::collections::HashSet::new();
    for r in rules {
        let n = &r.name;
        if !valid_name(n) {
            return Err(format!("claims: {n:?} is not a claim name"));
        }
        if reserved(n) {
            return Err(format!(
                "claims: {n:?} is reserved (a standard claim Latchkey sets itself)"
            ));
        }
        if !seen.insert(n.as_str()) {
            return Err(format!("claims: {n:?} is mapped twice"));
        }
        if !scope::contains(scopes, &r.scope) {
            return Err(format!(
                "claims: {n}: its scope {:?} is not one of the client's scopes",
                r.scope
            ));
        }
        if r.scope == "openid" || r.scope == "offline_access" {
            return Err(format!(
                "claims: {n}: scope {:?} cannot release claims",
                r.scope
            ));
        }
        let sources = usize::from(r.user_attribute.is_some())
            + usize::from(r.group_attribute.is_some())
            + usize::from(!r.groups.is_empty());
        if sources != 1 {
            return Err(format!(
                "claims: {n}: give exactly one of user_attribute, group_attribute, groups"
            ));
        }
        for a in r.user_attribute.iter().chain(&r.group_attribute) {
            if !valid_name(a) {
                return Err(format!("claims: {n}: {a:?} is not an attribute name"));
            }
        }
        if r.groups.len() > MAX_LIST {
            return Err(format!("claims: {n}: at most {MAX_LIST} groups in its map"));
        }
        for (g, v) in &r.groups {
            if !crate::oidc::registration::valid_group_name(g) || !valid_value(v) {
                return Err(format!(
                    "claims: {n}: group {g:?} needs a valid name and a string, number, boolean or list"
                ));
            }
        }
        if let Some(p) = r.places.iter().find(|p| !PLACES.contains(&p.as_str())) {
            return Err(format!(
                "claims: {n}: {p:?} is not one of {}",
                PLACES.join(", ")
            ));
        }
    }
    Ok(())
}

/// A client's custom claims for one user, by where they appear.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Custom {
    pub id_token: Map<String, Value>,
    pub userinfo: Map<String, Value>,
    pub access_token: Map<String, Value>,
}

/// Values from the user's groups, in the user's order of groups, lists flattened,
/// repeats removed (at most [`MAX_LIST`]): one value as it is, several as a list
/// (SPEC §14: merged lists when several groups set one claim); `None` when no group gives
/// one.
fn merged<'a>(values: impl Iterator<Item = &'a Value>) -> Option<Value> {
    let mut out: Vec<Value> = Vec::new();
    for v in values {
        let items = match v {
            Value::Array(a) => a.clone(),
            other => vec![other.clone()],
        };
        for i in items {
            if !out.contains(&i) && out.len() < MAX_LIST {
                out.push(i);
            }
        }
    }
    match out.len() {
        0 => None,
        1 => out.pop(),
        _ => Some(Value::Array(out)),
    }
}

/// The custom claims `rules` release for `user` under the granted `scopes` (SPEC §14).
/// `groups` are the records of the user's groups (their attributes). A claim whose source
/// gives no value is left out.
pub fn custom_claims(
    user: &User,
    groups: &[crate::model::Group],
    rules: &[crate::model::ClaimRule],
    scopes: &[String],
) -> Custom {
    let mut c = Custom::default();
    let of_user_groups = || {
        user.groups
            .iter()
            .filter_map(|name| groups.iter().find(|g| &g.name == name))
    };
    let mut bytes = 0;
    for r in rules.iter().filter(|r| scope::contains(scopes, &r.scope)) {
        let value = if let Some(a) = &r.user_attribute {
            user.attributes.get(a).cloned()
        } else if let Some(a) = &r.group_attribute {
            merged(of_user_groups().filter_map(|g| g.attributes.get(a)))
        } else {
            merged(user.groups.iter().filter_map(|g| r.groups.get(g)))
        };
        let Some(value) = value else { continue };
        // A token stays small whatever the attributes hold.
        bytes += r.name.len() + value.to_string().len();
        if bytes > MAX_CUSTOM_BYTES {
            tracing::warn!(claim = %r.name, "custom claims over 8 KiB: the rest are left out");
            break;
        }
        let everywhere = r.places.is_empty();
        let wanted = |p: &str| everywhere || r.places.iter().any(|x| x == p);
        for (place, map) in [
            ("id_token", &mut c.id_token),
            ("userinfo", &mut c.userinfo),
            ("access_token", &mut c.access_token),
        ] {
            if wanted(place) {
                map.insert(r.name.clone(), value.clone());
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Address;

    fn user() -> User {
        User {
            id: "sub-1".into(),
            username: "alice".into(),
            email: "alice@example.com".into(),
            email_verified: true,
            given_name: Some("Alice".into()),
            family_name: Some("Liddell".into()),
            phone: Some("+44 1".into()),
            address: Some(Address {
                locality: Some("Oxford".into()),
                country: Some("UK".into()),
                ..Address::default()
            }),
            groups: vec!["staff".into()],
            password_hash: String::new(),
            disabled: false,
            created_at: 1,
            updated_at: 2,
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

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn claims_parameter_parsing_and_release() {
        let c = ClaimsRequest::parse(r#"{"userinfo":{"name":{"essential":true},"email":null,"bogus":null},"id_token":{"auth_time":{"essential":true}},"other":1}"#).unwrap();
        assert_eq!(c.userinfo.len(), 3);
        let allowed = c.allowed(&s(&["openid", "profile"]));
        assert_eq!(
            allowed.userinfo,
            vec!["name"],
            "unknown and unregistered claims are dropped"
        );
        assert_eq!(allowed.scopes(), vec!["profile"]);
        let m = userinfo(&user(), &s(&["openid"]), &allowed.userinfo, &[]);
        assert_eq!(m["name"], "Alice Liddell");
        assert!(m.get("email").is_none());
        for bad in [
            "[]",
            "nope",
            r#"{"userinfo":[]}"#,
            r#"{"userinfo":{"name":true}}"#,
        ] {
            assert!(ClaimsRequest::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn requested_sub_and_essential_acr_are_kept() {
        let c = ClaimsRequest::parse(
            r#"{"id_token":{"sub":{"value":"u-1"},"acr":{"essential":true,"values":["2","3"]}}}"#,
        )
        .unwrap();
        let a = c.allowed(&s(&["openid"]));
        assert_eq!(a.sub.as_deref(), Some("u-1"));
        assert_eq!(a.essential_acr, vec!["2", "3"]);
        let voluntary = ClaimsRequest::parse(r#"{"id_token":{"acr":{"values":["2"]}}}"#).unwrap();
        assert!(voluntary.essential_acr.is_empty());
    }

    #[test]
    fn openid_alone_releases_nothing_but_sub() {
        let m = userinfo(&user(), &s(&["openid"]), &[], &[]);
        assert_eq!(m.len(), 1);
        assert_eq!(m["sub"], "sub-1");
    }

    #[test]
    fn a_client_sees_only_the_groups_of_its_filter() {
        let groups = s(&["grafana-admin", "grafana-viewer", "staff", "vpn"]);
        assert_eq!(
            visible_groups(&groups, &[]),
            groups,
            "no filter: every group"
        );
        assert_eq!(
            visible_groups(&groups, &s(&["grafana-*", "vpn"])),
            s(&["grafana-admin", "grafana-viewer", "vpn"])
        );
        assert!(visible_groups(&groups, &s(&["nothing"])).is_empty());
        let mut u = user();
        u.groups = groups.clone();
        let m = userinfo(&u, &s(&["openid", "groups"]), &[], &s(&["staff"]));
        assert_eq!(m["groups"], json!(["staff"]));
        // Asked for individually with the claims parameter: filtered the same way.
        let m = userinfo(&u, &s(&["openid"]), &s(&["groups"]), &s(&["vpn"]));
        assert_eq!(m["groups"], json!(["vpn"]));
    }

    #[test]
    fn each_scope_releases_its_claims() {
        let m = userinfo(
            &user(),
            &s(&["openid", "profile", "email", "phone", "address", "groups"]),
            &[],
            &[],
        );
        assert_eq!(m["name"], "Alice Liddell");
        assert_eq!(m["preferred_username"], "alice");
        assert_eq!(m["email"], "alice@example.com");
        assert_eq!(m["email_verified"], true);
        assert_eq!(m["phone_number"], "+44 1");
        assert_eq!(m["address"]["locality"], "Oxford");
        assert_eq!(m["address"]["formatted"], "Oxford\nUK");
        assert_eq!(m["groups"][0], "staff");
        assert!(m.keys().all(|k| SUPPORTED.contains(&k.as_str())));
    }

    #[test]
    fn a_narrowed_client_loses_individually_requested_claims_at_once() {
        let asked = s(&["email", "phone_number", "nonsense"]);
        assert_eq!(
            allowed_claims(&asked, &s(&["openid", "email", "phone"])),
            s(&["email", "phone_number"])
        );
        assert_eq!(
            allowed_claims(&asked, &s(&["openid", "phone"])),
            s(&["phone_number"])
        );
        assert!(allowed_claims(&asked, &s(&["openid"])).is_empty());
    }

    #[test]
    fn id_token_has_the_required_claims() {
        let u = user();
        let scopes = s(&["openid"]);
        let amr = s(&["pwd"]);
        let f = AuthFacts {
            issuer: "https://op",
            client_id: "rp",
            user: &u,
            scopes: &scopes,
            auth_time: 10,
            amr: &amr,
            acr: "1",
            sid: "sid",
            now: 100,
            id_token_claims: &[],
            groups_filter: &[],
        };
        let m = id_token(&f, 900, Some("n"), Some("h"));
        for k in [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "azp",
            "at_hash",
            "sid",
            "amr",
            "acr",
        ] {
            assert!(m.contains_key(k), "{k}");
        }
        assert_eq!(m["exp"], 1000);
        assert!(!m.contains_key("email"));
        let at = access_token(&f, 900, "j");
        assert_eq!(at["client_id"], "rp");
        assert_eq!(at["jti"], "j");
    }

    fn rule(json: serde_json::Value) -> crate::model::ClaimRule {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn custom_claims_follow_their_rules_scopes_and_places() {
        use crate::model::Group;
        let mut u = user();
        u.groups = s(&["minio-admins", "minio-users", "staff"]);
        u.attributes.insert("employee_id".into(), json!(42));
        let admins = Group {
            name: "minio-admins".into(),
            description: String::new(),
            attributes: [("role".to_string(), json!("admin"))].into_iter().collect(),
        };
        let users = Group {
            name: "minio-users".into(),
            description: String::new(),
            attributes: [("role".to_string(), json!(["user", "admin"]))]
                .into_iter()
                .collect(),
        };
        let rules = vec![
            rule(json!({"name": "policy", "scope": "minio",
                        "groups": {"minio-admins": "consoleAdmin", "minio-users": ["readwrite", "diagnostics"]}})),
            rule(
                json!({"name": "role", "scope": "minio", "group_attribute": "role", "in": ["userinfo"]}),
            ),
            rule(
                json!({"name": "employee", "scope": "profile", "user_attribute": "employee_id", "in": ["id_token"]}),
            ),
            rule(json!({"name": "none", "scope": "minio", "user_attribute": "missing"})),
        ];
        let scopes = s(&["openid", "profile", "minio"]);
        check_rules(&rules, &scopes).unwrap();
        let c = custom_claims(&u, &[admins, users], &rules, &scopes);
        // Merged over the groups, in the user's order, without repeats.
        assert_eq!(
            c.id_token["policy"],
            json!(["consoleAdmin", "readwrite", "diagnostics"])
        );
        assert_eq!(c.access_token["policy"], c.id_token["policy"]);
        assert_eq!(c.userinfo["role"], json!(["admin", "user"]));
        // One group, one value: the value itself.
        u.groups = s(&["minio-admins"]);
        let one = custom_claims(&u, &[], &rules, &scopes);
        assert_eq!(one.id_token["policy"], json!("consoleAdmin"));
        u.groups = s(&["minio-admins", "minio-users", "staff"]);
        assert!(!c.id_token.contains_key("role"), "userinfo only");
        assert_eq!(c.id_token["employee"], json!(42));
        assert!(!c.userinfo.contains_key("employee"));
        assert!(!c.userinfo.contains_key("none"), "no value, no claim");
        // Without its scope, nothing.
        let c = custom_claims(&u, &[], &rules, &s(&["openid"]));
        assert_eq!(c, Custom::default());
    }

    #[test]
    fn bad_rules_and_attributes_are_refused_by_name() {
        let scopes = s(&["openid", "email", "minio"]);
        for (r, says) in [
            (
                json!({"name": "email", "scope": "minio", "user_attribute": "a"}),
                "reserved",
            ),
            (
                json!({"name": "sub", "scope": "minio", "user_attribute": "a"}),
                "reserved",
            ),
            (
                json!({"name": "x", "scope": "vault", "user_attribute": "a"}),
                "not one of the client's scopes",
            ),
            (json!({"name": "x", "scope": "minio"}), "exactly one"),
            (
                json!({"name": "x", "scope": "minio", "user_attribute": "a", "group_attribute": "b"}),
                "exactly one",
            ),
            (
                json!({"name": "x", "scope": "minio", "user_attribute": "a", "in": ["cookie"]}),
                "not one of",
            ),
            (
                json!({"name": "1x", "scope": "minio", "user_attribute": "a"}),
                "not a claim name",
            ),
            (
                json!({"name": "x", "scope": "openid", "user_attribute": "a"}),
                "cannot release",
            ),
        ] {
            let e = check_rules(&[rule(r.clone())], &scopes).unwrap_err();
            assert!(e.contains(says), "{r}: {e}");
        }
        let twice = vec![
            rule(json!({"name": "x", "scope": "minio", "user_attribute": "a"})),
            rule(json!({"name": "x", "scope": "minio", "user_attribute": "b"})),
        ];
        assert!(check_rules(&twice, &scopes).unwrap_err().contains("twice"));
        assert!(check_attribute("policy", &json!(["a", 1, true])).is_ok());
        assert!(check_attribute("policy", &json!({"nested": 1})).is_err());
        assert!(check_attribute("bad name", &json!("x")).is_err());
    }
}
