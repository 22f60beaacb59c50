//! Request parameters as decoded from a query string or form body, with the RFC 6749 §3.1
//! rules: a parameter sent without a value is treated as omitted, and a parameter sent
//! more than once is an error.

/// Decoded `name=value` pairs in arrival order, and the names whose name or value was
/// not UTF-8 after percent-decoding (kept lossily decoded for error messages only).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params(pub Vec<(String, String)>, Vec<String>);

/// A parameter that cannot be used: sent more than once (RFC 6749 §3.1), or not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate(pub String, Problem);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    Repeated,
    NotUtf8,
}

impl std::fmt::Display for Duplicate {
    /// The parameter is named (cut to 64 characters: it may be anything a client sent).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name: String = self.0.chars().take(64).collect();
        match self.1 {
            Problem::Repeated => write!(f, "{name} was sent more than once"),
            Problem::NotUtf8 => write!(f, "{name} is not valid UTF-8"),
        }
    }
}

impl Params {
    /// Decodes `application/x-www-form-urlencoded` text (also used for query strings).
    /// Bytes that are not UTF-8 are replaced and the parameter remembered as invalid.
    pub fn parse(text: &[u8]) -> Params {
        let mut pairs = Vec::new();
        let mut bad = Vec::new();
        let mut seen_bad = std::collections::HashSet::new();
        for part in text.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let (k, v) = match part.iter().position(|&b| b == b'=') {
                Some(i) => (&part[..i], &part[i + 1..]),
                None => (part, &part[part.len()..]),
            };
            let (k, k_ok) = decode(k);
            let (v, v_ok) = decode(v);
            if !(k_ok && v_ok) && seen_bad.insert(k.clone()) {
                bad.push(k.clone());
            }
            pairs.push((k, v));
        }
        Params(pairs, bad)
    }

    /// The same parameters less those `drop` names.
    pub fn without(self, drop: &[&str]) -> Params {
        let keep = |k: &String| !drop.contains(&k.as_str());
        Params(
            self.0.into_iter().filter(|(k, _)| keep(k)).collect(),
            self.1.into_iter().filter(keep).collect(),
        )
    }

    /// Adds a parameter.
    pub fn push(&mut self, name: &str, value: &str) {
        self.0.push((name.to_string(), value.to_string()));
    }

    /// The first parameter that was not UTF-8, if any: protocol endpoints refuse the
    /// request as `invalid_request` (SPEC §8).
    pub fn not_utf8(&self) -> Option<Duplicate> {
        self.1
            .first()
            .map(|n| Duplicate(n.clone(), Problem::NotUtf8))
    }

    /// The single non-empty value of `name`, `None` when absent or empty.
    pub fn get(&self, name: &str) -> Result<Option<&str>, Duplicate> {
        if self.1.iter().any(|n| n == name) {
            return Err(Duplicate(name.to_string(), Problem::NotUtf8));
        }
        let mut found: Option<&str> = None;
        for (k, v) in &self.0 {
            if k == name && !v.is_empty() {
                if found.is_some() {
                    return Err(Duplicate(name.to_string(), Problem::Repeated));
                }
                found = Some(v);
            }
        }
        Ok(found)
    }

    /// Like [`Params::get`], but a duplicate is reported as absent. Only for reading values
    /// that are echoed in an error response (state), never for decisions.
    pub fn get_lenient(&self, name: &str) -> Option<&str> {
        self.get(name).ok().flatten()
    }

    /// Every non-empty value of a parameter that forms may repeat (checkbox groups, rows).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim())
            .collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|(k, v)| k == name && !v.is_empty())
    }
}

/// One name or value: `+` is a space, then percent-decoding; `false` when the bytes are
/// not UTF-8 (the text is then lossily decoded).
fn decode(raw: &[u8]) -> (String, bool) {
    let plus: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    let decoded = percent_encoding::percent_decode(&plus);
    match decoded.decode_utf8() {
        Ok(s) => (s.into_owned(), true),
        Err(_) => (
            percent_encoding::percent_decode(&plus)
                .decode_utf8_lossy()
                .into_owned(),
            false,
        ),
    }
}

/// Percent-encodes a value for a query string.
pub fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_form_fields_are_collected_without_blanks() {
        let p = Params::parse(b"r=a&r=&r=+b+&x=1");
        assert_eq!(p.all("r"), vec!["a", "b"]);
        assert!(p.all("missing").is_empty());
        assert_eq!(encode("/a b?c=d&e"), "%2Fa+b%3Fc%3Dd%26e");
    }

    #[test]
    fn empty_values_count_as_absent_and_duplicates_are_errors() {
        let p = Params::parse(b"a=1&b=&c=x&c=y&d=%20z+w");
        assert_eq!(p.get("a"), Ok(Some("1")));
        assert_eq!(p.get("b"), Ok(None));
        assert_eq!(p.get("missing"), Ok(None));
        assert_eq!(p.get("c"), Err(Duplicate("c".into(), Problem::Repeated)));
        assert_eq!(p.get("d"), Ok(Some(" z w")));
        assert_eq!(p.get_lenient("c"), None);
    }

    #[test]
    fn invalid_utf8_is_named_and_refused_when_read() {
        let p = Params::parse(b"a=%ff%fe&b=ok&c%ff=1&d=caf%C3%A9+x%2");
        assert_eq!(p.get("a").unwrap_err().to_string(), "a is not valid UTF-8");
        assert_eq!(p.get("b"), Ok(Some("ok")));
        assert_eq!(p.get("d"), Ok(Some("café x%2")));
        assert_eq!(p.not_utf8().unwrap().to_string(), "a is not valid UTF-8");
        assert!(Params::parse(b"x=%e2%82%ac").not_utf8().is_none());
        assert_eq!(
            Params::parse(b"x=1&x=2").get("x").unwrap_err().to_string(),
            "x was sent more than once"
        );
    }

    #[test]
    fn decoding_matches_the_form_urlencoded_crate_on_utf8() {
        for text in [
            "a=b+c&d=%41%zz&=x&e",
            "%%41=%2",
            "k=v=w&&k2",
            "a=%f0%9f%98%80",
        ] {
            let ours = Params::parse(text.as_bytes()).0;
            let theirs: Vec<(String, String)> = form_urlencoded::parse(text.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            assert_eq!(ours, theirs, "{text}");
        }
    }
}
