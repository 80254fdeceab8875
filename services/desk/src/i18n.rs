//! The desk's words in English and Spanish, from `locales/<language>.toml`.
//!
//! Keys are `section.name`; a text may hold `{placeholders}` that [`Catalog::fill`]
//! replaces. Both files must hold the same keys (a test checks it), so no
//! screen shows half its words in the other language.

use std::collections::BTreeMap;

use minijinja::Value;

use crate::user::Language;

const EN: &str = include_str!("../locales/en.toml");
const ES: &str = include_str!("../locales/es.toml");

type Table = BTreeMap<String, String>;

/// Both languages' words.
#[derive(Debug)]
pub struct Catalog {
    en: Table,
    es: Table,
    en_tree: Value,
    es_tree: Value,
}

fn flatten(source: &str, file: &str) -> Result<(Table, Value), String> {
    let parsed: toml::Table = toml::from_str(source).map_err(|e| format!("{file}: {e}"))?;
    let mut flat = Table::new();
    let mut tree: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (section, entries) in &parsed {
        let toml::Value::Table(entries) = entries else {
            return Err(format!("{file}: [{section}] must be a table"));
        };
        for (name, text) in entries {
            let toml::Value::String(text) = text else {
                return Err(format!("{file}: {section}.{name} must be text"));
            };
            flat.insert(format!("{section}.{name}"), text.clone());
            tree.entry(section.clone())
                .or_default()
                .insert(name.clone(), text.clone());
        }
    }
    Ok((flat, Value::from_serialize(&tree)))
}

impl Catalog {
    /// Reads both files.
    pub fn load() -> Result<Self, String> {
        let (en, en_tree) = flatten(EN, "locales/en.toml")?;
        let (es, es_tree) = flatten(ES, "locales/es.toml")?;
        Ok(Self {
            en,
            es,
            en_tree,
            es_tree,
        })
    }

    fn table(&self, language: Language) -> &Table {
        match language {
            Language::En => &self.en,
            Language::Es => &self.es,
        }
    }

    /// The text of `key` in `language` (the key itself if missing, which a
    /// test keeps from happening).
    pub fn text<'a>(&'a self, language: Language, key: &'a str) -> &'a str {
        self.table(language).get(key).map_or(key, String::as_str)
    }

    /// `key`'s text with each `{name}` replaced by its value.
    pub fn fill(&self, language: Language, key: &str, args: &[(&str, String)]) -> String {
        let mut text = self.text(language, key).to_owned();
        for (name, value) in args {
            text = text.replace(&format!("{{{name}}}"), value);
        }
        text
    }

    /// Every text of `language` as `section.name`, for templates.
    pub fn tree(&self, language: Language) -> Value {
        match language {
            Language::En => self.en_tree.clone(),
            Language::Es => self.es_tree.clone(),
        }
    }

    /// Keys one language has and the other lacks.
    pub fn differences(&self) -> Vec<String> {
        let only = |a: &Table, b: &Table, lang: &str| -> Vec<String> {
            a.keys()
                .filter(|k| !b.contains_key(*k))
                .map(|k| format!("{k} only in {lang}"))
                .collect()
        };
        let mut found = only(&self.en, &self.es, "en");
        found.extend(only(&self.es, &self.en, "es"));
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_languages_have_every_text() {
        let catalog = Catalog::load().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(catalog.differences(), Vec::<String>::new());
        assert_eq!(catalog.text(Language::Es, "nav.work"), "Mi trabajo");
        assert_eq!(
            catalog.fill(
                Language::En,
                "timeline.attempt_sent",
                &[("channel", "Text message".into())]
            ),
            "Text message sent"
        );
    }
}
