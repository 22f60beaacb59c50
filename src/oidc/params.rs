//! Request parameters as decoded from a query string or form body, with the RFC 6749 §3.1
//! rules: a parameter sent without a value is treated as omitted, and a parameter sent
//! more than once is an error.

/// Decoded `name=value` pairs in arrival order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params(pub Vec<(String, String)>);

/// A parameter that appeared more than once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate(pub String);

impl Params {
    /// Decodes `application/x-www-form-urlencoded` text (also used for query strings).
    pub fn parse(text: &[u8]) -> Params {
        Params(
            form_urlencoded::parse(text)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The single non-empty value of `name`, `None` when absent or empty.
    pub fn get(&self, name: &str) -> Result<Option<&str>, Duplicate> {
        let mut found: Option<&str> = None;
        for (k, v) in &self.0 {
            if k == name && !v.is_empty() {
                if found.is_some() {
                    return Err(Duplicate(name.to_string()));
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
        assert_eq!(p.get("c"), Err(Duplicate("c".into())));
        assert_eq!(p.get("d"), Ok(Some(" z w")));
        assert_eq!(p.get_lenient("c"), None);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let p = Params::parse(b"a=%ff%fe");
        assert!(p.get("a").unwrap().is_some());
    }
}
