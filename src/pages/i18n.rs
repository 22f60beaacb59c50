//! Languages (SPEC §12): one catalogue per language in `assets/i18n/<lang>.toml`, read
//! with the `toml` crate, mapping each English text of the pages and mails to its
//! translation (`en.toml` lists every text once). Templates write `_("English text")`,
//! with `{name}` placeholders filled from keyword arguments, and pass texts that come from
//! the code through the `t` filter. The language of a request is chosen by [`choose`].

use std::collections::HashMap;

/// The languages offered, with their own names (for the switcher).
pub const LANGUAGES: &[(&str, &str)] = &[
    ("en", "English"),
    ("de", "Deutsch"),
    ("fr", "Français"),
    ("es", "Español"),
    ("it", "Italiano"),
    ("nl", "Nederlands"),
    ("pl", "Polski"),
    ("pt", "Português"),
];

const FILES: &[(&str, &str)] = &[
    ("en", include_str!("../../assets/i18n/en.toml")),
    ("de", include_str!("../../assets/i18n/de.toml")),
    ("fr", include_str!("../../assets/i18n/fr.toml")),
    ("es", include_str!("../../assets/i18n/es.toml")),
    ("it", include_str!("../../assets/i18n/it.toml")),
    ("nl", include_str!("../../assets/i18n/nl.toml")),
    ("pl", include_str!("../../assets/i18n/pl.toml")),
    ("pt", include_str!("../../assets/i18n/pt.toml")),
];

/// Every catalogue, parsed once.
pub struct Catalogue(HashMap<&'static str, HashMap<String, String>>);

/// The catalogues, loaded at first use (they are part of the binary; a broken one is
/// caught by the tests, and leaves English).
pub fn catalogue() -> std::sync::Arc<Catalogue> {
    static ONCE: std::sync::OnceLock<std::sync::Arc<Catalogue>> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        std::sync::Arc::new(Catalogue::load().unwrap_or_else(|e| {
            tracing::error!(error = %e, "translations unreadable; pages stay in English");
            Catalogue(HashMap::new())
        }))
    })
    .clone()
}

impl Catalogue {
    pub fn load() -> Result<Catalogue, String> {
        let mut all = HashMap::new();
        for (lang, text) in FILES {
            let map: HashMap<String, String> =
                toml::from_str(text).map_err(|e| format!("assets/i18n/{lang}.toml: {e}"))?;
            all.insert(*lang, map);
        }
        Ok(Catalogue(all))
    }

    /// `english` in `lang`; the English text itself when the catalogue lacks it (a
    /// message built with values, a text not yet translated).
    pub fn text<'a>(&'a self, lang: &str, english: &'a str) -> &'a str {
        self.0
            .get(lang)
            .and_then(|m| m.get(english))
            .map_or(english, String::as_str)
    }

    /// The texts of `lang`'s catalogue (for the completeness test).
    pub fn keys(&self, lang: &str) -> Vec<&str> {
        let mut k: Vec<&str> = self
            .0
            .get(lang)
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        k.sort();
        k
    }
}

/// Adds `_("text", name=value…)` and the `t` filter to `env`, both in the language the
/// template context names (`lang`; English without one).
pub fn install(env: &mut minijinja::Environment<'static>, catalogue: std::sync::Arc<Catalogue>) {
    use minijinja::value::{Kwargs, Value};
    use minijinja::{Error, State};
    fn lang_of(state: &State) -> String {
        state
            .lookup("lang")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "en".to_string())
    }
    let c = catalogue.clone();
    env.add_function(
        "_",
        move |state: &State, text: String, kwargs: Kwargs| -> Result<String, Error> {
            let lang = lang_of(state);
            let mut values = Vec::new();
            for name in kwargs.args() {
                let v: Value = kwargs.get(name)?;
                let shown = match v.as_str() {
                    Some(s) => s.to_string(),
                    None => v.to_string(),
                };
                values.push((name, shown));
            }
            kwargs.assert_all_used()?;
            Ok(fill(c.text(&lang, &text), &values))
        },
    );
    env.add_filter("t", move |state: &State, text: Value| -> String {
        let lang = lang_of(state);
        match text.as_str() {
            Some(s) => catalogue.text(&lang, s).to_string(),
            None if text.is_undefined() || text.is_none() => String::new(),
            None => text.to_string(),
        }
    });
}

/// `text` with each `{name}` replaced by its value.
pub fn fill(text: &str, values: &[(&str, String)]) -> String {
    let mut out = text.to_string();
    for (k, v) in values {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

fn supported(tag: &str) -> Option<&'static str> {
    let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
    LANGUAGES.iter().map(|(l, _)| *l).find(|l| *l == primary)
}

/// The language of a request: the first supported one of `ui_locales` (OIDC Core
/// §3.1.2.1, space-separated, in order of preference), then the one chosen on the page
/// (`chosen`: the switcher's parameter or cookie), then `Accept-Language` by quality
/// (RFC 9110 §12.5.4), then `default`.
pub fn choose(
    ui_locales: Option<&str>,
    chosen: Option<&str>,
    accept_language: Option<&str>,
    default: &'static str,
) -> &'static str {
    if let Some(l) = ui_locales.and_then(|u| u.split(' ').find_map(supported)) {
        return l;
    }
    if let Some(l) = chosen.and_then(supported) {
        return l;
    }
    let mut offered: Vec<(f32, usize, &'static str)> = Vec::new();
    for (i, part) in accept_language
        .unwrap_or("")
        .split(',')
        .take(32)
        .enumerate()
    {
        let mut bits = part.split(';');
        let tag = bits.next().unwrap_or("");
        let q = bits
            .find_map(|b| b.trim().strip_prefix("q="))
            .and_then(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        if q > 0.0
            && let Some(l) = supported(tag)
        {
            offered.push((q, i, l));
        }
    }
    // Highest quality first; equal ones in the order given.
    offered.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    offered.first().map_or(default, |o| o.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_follows_ui_locales_then_the_choice_then_accept_language() {
        assert_eq!(choose(Some("fr-CA en"), Some("de"), Some("nl"), "en"), "fr");
        assert_eq!(choose(Some("ja zz"), Some("de"), Some("nl"), "en"), "de");
        assert_eq!(
            choose(None, None, Some("ja, de-CH;q=0.8, fr;q=0.9"), "en"),
            "fr"
        );
        assert_eq!(choose(None, None, Some("es;q=0, it"), "en"), "it");
        assert_eq!(choose(None, None, Some("pt-BR"), "en"), "pt");
        assert_eq!(choose(None, None, Some("*"), "pl"), "pl");
        assert_eq!(choose(None, Some("xx"), None, "nl"), "nl");
    }

    /// Every language has exactly the texts of the English catalogue: a missing or
    /// stray translation fails here.
    #[test]
    fn every_catalogue_has_every_text() {
        let c = Catalogue::load().unwrap();
        let english = c.keys("en");
        assert!(!english.is_empty());
        for (lang, _) in LANGUAGES {
            let keys = c.keys(lang);
            let missing: Vec<&&str> = english.iter().filter(|k| !keys.contains(k)).collect();
            let extra: Vec<&&str> = keys.iter().filter(|k| !english.contains(k)).collect();
            assert!(missing.is_empty(), "{lang} lacks {missing:?}");
            assert!(
                extra.is_empty(),
                "{lang} has texts English lacks: {extra:?}"
            );
            for k in &english {
                let t = c.text(lang, k);
                assert!(!t.trim().is_empty(), "{lang}: {k:?} is empty");
                // Placeholders survive translation.
                for p in k.split('{').skip(1).filter_map(|s| s.split('}').next()) {
                    assert!(
                        t.contains(&format!("{{{p}}}")),
                        "{lang}: {k:?} loses {{{p}}}"
                    );
                }
            }
        }
    }

    /// Every `_("…")` text of the templates and mails is in the English catalogue.
    #[test]
    fn every_marked_text_is_in_the_catalogue() {
        let c = Catalogue::load().unwrap();
        let english = c.keys("en");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        let mut files = vec![];
        for sub in ["templates", "mail"] {
            for e in std::fs::read_dir(dir.join(sub)).unwrap() {
                files.push(e.unwrap().path());
            }
        }
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for piece in text.split("_(\"").skip(1) {
                let Some(end) = piece.find("\")").or_else(|| piece.find("\",")) else {
                    continue;
                };
                let key = piece[..end].replace("\\\"", "\"");
                assert!(
                    english.contains(&key.as_str()),
                    "{}: {key:?} is not in en.toml",
                    f.display()
                );
            }
        }
    }
}
