//! Scopes (RFC 6749 §3.3) and which claims each standard scope releases (OIDC Core §5.4).

/// Scopes Latchkey understands, in the order they are listed in metadata and responses.
pub const SUPPORTED: &[&str] = &[
    "openid",
    "profile",
    "email",
    "phone",
    "address",
    "groups",
    "offline_access",
];

/// Registered for a client when `client add` names no scope.
pub const DEFAULT_CLIENT_SCOPES: &[&str] =
    &["openid", "profile", "email", "groups", "offline_access"];

/// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// Longest scope parameter accepted, in bytes, and most tokens in it.
pub const MAX_LEN: usize = 2048;
pub const MAX_TOKENS: usize = 64;

/// Splits a space-delimited scope string; order and repetition are irrelevant. Linear in
/// the input (duplicates found through a set), and bounded: over [`MAX_LEN`] bytes or
/// [`MAX_TOKENS`] distinct tokens is refused.
pub fn parse(s: &str) -> Result<Vec<String>, String> {
    if s.len() > MAX_LEN {
        return Err("scope is too long".into());
    }
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<String> = Vec::new();
    for tok in s.split(' ').filter(|t| !t.is_empty()) {
        if !valid_token(tok) {
            return Err("scope contains characters outside RFC 6749 scope-token".into());
        }
        if seen.insert(tok) {
            if out.len() == MAX_TOKENS {
                return Err("scope has too many values".into());
            }
            out.push(tok.to_string());
        }
    }
    Ok(out)
}

/// The scopes granted for a request: those requested that Latchkey supports and the
/// client is registered for, in canonical order. Unknown scopes are ignored, as RFC 6749
/// §3.3 lets the server grant less than was asked.
pub fn grant(requested: &[String], client_scopes: &[String]) -> Vec<String> {
    let both = |s: &str| requested.iter().any(|r| r == s) && client_scopes.iter().any(|c| c == s);
    // The standard scopes in their order, then the client's own (SPEC §14) in its order.
    SUPPORTED
        .iter()
        .filter(|s| both(s))
        .map(|s| s.to_string())
        .chain(
            client_scopes
                .iter()
                .filter(|c| !SUPPORTED.contains(&c.as_str()) && both(c))
                .cloned(),
        )
        .collect()
}

/// A client's own scope (SPEC §14: `minio`, `vault`): 1 to 64 letters, digits or `_.:-`,
/// starting with a letter.
pub fn valid_custom(s: &str) -> bool {
    s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c))
}

pub fn join(scopes: &[String]) -> String {
    scopes.join(" ")
}

pub fn contains(scopes: &[String], s: &str) -> bool {
    scopes.iter().any(|x| x == s)
}

/// Whether every scope in `wanted` is in `have`.
pub fn is_subset(wanted: &[String], have: &[String]) -> bool {
    wanted.iter().all(|w| have.contains(w))
}

/// Plain-language description of what a scope releases, for the consent page; a client's
/// own scope is named as it is.
pub fn describe(scope: &str) -> std::borrow::Cow<'static, str> {
    known(scope).map_or_else(
        || format!("Information the application calls \"{scope}\"").into(),
        Into::into,
    )
}

fn known(scope: &str) -> Option<&'static str> {
    Some(match scope {
        "openid" => "Know who you are (a stable identifier)",
        "profile" => "Your name and username",
        "email" => "Your email address",
        "phone" => "Your phone number",
        "address" => "Your postal address",
        "groups" => "The groups you belong to",
        "offline_access" => "Stay signed in to the application after you sign out here",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn order_and_repetition_do_not_matter() {
        assert_eq!(
            parse("email  openid email").unwrap(),
            v(&["email", "openid"])
        );
        let a = grant(&parse("email openid").unwrap(), &v(SUPPORTED));
        let b = grant(&parse("openid email").unwrap(), &v(SUPPORTED));
        assert_eq!(a, b);
        assert_eq!(a, v(&["openid", "email"]));
    }

    #[test]
    fn long_and_crowded_scopes_are_refused() {
        // 2,000 copies of one token: deduplicated, not compared pairwise.
        let repeated = vec!["openid"; 290].join(" ");
        assert_eq!(parse(&repeated).unwrap(), v(&["openid"]));
        let many: Vec<String> = (0..65).map(|i| format!("s{i}")).collect();
        assert_eq!(
            parse(&many.join(" ")).unwrap_err(),
            "scope has too many values"
        );
        assert!(parse(&many[..64].join(" ")).is_ok());
        assert_eq!(
            parse(&"a".repeat(MAX_LEN + 1)).unwrap_err(),
            "scope is too long"
        );
    }

    #[test]
    fn unregistered_and_unknown_scopes_are_dropped() {
        let g = grant(
            &v(&["openid", "phone", "frobnicate"]),
            &v(&["openid", "email"]),
        );
        assert_eq!(g, v(&["openid"]));
    }

    #[test]
    fn invalid_characters_are_refused() {
        assert!(parse("openid \"bad\"").is_err());
        assert!(parse("openid\\x").is_err());
    }

    #[test]
    fn every_supported_scope_is_described() {
        assert!(SUPPORTED.iter().all(|s| known(s).is_some()));
        assert!(describe("minio").contains("minio"));
        // A client's own scope is granted after the standard ones, when it asked.
        let client = v(&["openid", "minio", "email"]);
        assert_eq!(
            grant(&v(&["minio", "openid", "vault"]), &client),
            v(&["openid", "minio"])
        );
    }
}
