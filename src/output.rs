//! Human-readable rendering of management command results (`--json` prints them as they
//! are). Pure: JSON in, text out.

use serde_json::Value;

/// Lists become one line per item; objects become `key: value` lines.
pub fn human(v: &Value) -> String {
    match v {
        Value::Array(items) if items.is_empty() => "(none)\n".to_string(),
        Value::Array(items) => items.iter().map(line).collect::<Vec<_>>().join("\n") + "\n",
        Value::Object(o) => {
            let mut s = String::new();
            for (k, val) in o {
                if val.is_null() || val.as_array().is_some_and(Vec::is_empty) {
                    continue;
                }
                s.push_str(&format!("{k}: {}\n", scalar(val)));
            }
            if o.contains_key("client_secret") {
                s.push_str("(the client secret is shown only now: store it in the application)\n");
            }
            s
        }
        other => format!("{}\n", scalar(other)),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => printable(s),
        Value::Array(a) => a.iter().map(scalar).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// Characters that would change how a terminal shows the text around them: controls
/// (escape sequences, new lines), invisible format characters and bidirectional
/// overrides, line and paragraph separators, and the backslash that starts an escape.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || c == '\\'
        || matches!(
            c,
            '\u{ad}'
                | '\u{61c}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        )
}

/// Text as a terminal shows it harmlessly: the characters above (in usernames or audit
/// details typed by anyone) become `\u{..}` escapes, so a value can neither forge a line
/// of output, reorder what is shown, nor drive the terminal.
fn printable(s: &str) -> String {
    if !s.chars().any(unsafe_char) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if unsafe_char(c) {
                format!("\\u{{{:x}}}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// One item of a list: the identifying fields first.
fn line(v: &Value) -> String {
    let keys = [
        "username",
        "client_id",
        "kid",
        "time",
        "name",
        "email",
        "alg",
        "state",
        "kind",
        "user",
        "client",
        "detail",
        "disabled",
        "age_days",
    ];
    keys.iter()
        .filter_map(|k| {
            v.get(*k)
                .filter(|x| !x.is_null())
                .map(|x| format!("{k}={}", scalar(x)))
        })
        .collect::<Vec<_>>()
        .join("  ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_lists_and_objects() {
        assert_eq!(human(&json!([])), "(none)\n");
        assert_eq!(
            human(&json!([{"username": "a", "email": "a@x"}])),
            "username=a  email=a@x\n"
        );
        let s =
            human(&json!({"client_id": "c", "client_secret": "s", "scopes": ["openid", "email"]}));
        assert!(s.contains("client_id: c\n"));
        assert!(s.contains("scopes: openid, email\n"));
        assert!(s.contains("shown only now"));
    }

    #[test]
    fn control_characters_are_escaped() {
        let s =
            human(&json!([{"user": "eve\u{1b}[2J\nkind=login.success", "detail": "a\rb\u{7f}"}]));
        assert_eq!(
            s,
            "user=eve\\u{1b}[2J\\u{a}kind=login.success  detail=a\\u{d}b\\u{7f}\n"
        );
        assert_eq!(
            human(&json!({"name": "Zoë Ünïcode"})),
            "name: Zoë Ünïcode\n"
        );
        assert_eq!(
            human(&json!({"name": "a\\u{a}b\u{202e}c\u{200b}"})),
            "name: a\\u{5c}u{a}b\\u{202e}c\\u{200b}\n",
            "a typed backslash cannot pass for an escape; bidi and invisible ones are shown"
        );
    }
}
