//! Adverse-event screening: free text from a patient (an SMS, an email) is
//! matched against a lexicon of English and Spanish terms kept as a data file
//! (`lexicon/adverse-events.toml`). A match flags the message for a person; it
//! never decides.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::text::fold;

/// The lexicon built into the service.
pub const BUILTIN: &str = include_str!("../../lexicon/adverse-events.toml");

/// The lexicon file is not usable.
#[derive(Debug, thiserror::Error)]
pub enum LexiconError {
    /// It is not the expected TOML.
    #[error("the lexicon is not valid TOML of [[category]] tables: {0}")]
    Parse(String),
    /// A category or term is empty once folded.
    #[error("category {category:?} has an empty name or term")]
    Empty {
        /// The category.
        category: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    category: Vec<CategoryFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CategoryFile {
    name: String,
    #[serde(default)]
    en: Vec<String>,
    #[serde(default)]
    es: Vec<String>,
}

/// A term as matched: folded, with its category.
#[derive(Debug, Clone)]
struct Term {
    folded: String,
    category: String,
}

/// The terms to screen for.
#[derive(Debug, Clone)]
pub struct Lexicon {
    terms: Vec<Term>,
}

impl Lexicon {
    /// Reads a lexicon file.
    pub fn parse(text: &str) -> Result<Self, LexiconError> {
        let file: File = toml::from_str(text).map_err(|e| LexiconError::Parse(e.to_string()))?;
        let mut terms = Vec::new();
        for category in file.category {
            if category.name.trim().is_empty() {
                return Err(LexiconError::Empty {
                    category: category.name,
                });
            }
            for term in category.en.iter().chain(&category.es) {
                let folded = fold(term);
                if folded.is_empty() {
                    return Err(LexiconError::Empty {
                        category: category.name,
                    });
                }
                terms.push(Term {
                    folded,
                    category: category.name.clone(),
                });
            }
        }
        Ok(Self { terms })
    }

    /// The lexicon built into the service.
    pub fn builtin() -> Result<Self, LexiconError> {
        Self::parse(BUILTIN)
    }

    /// How many terms it holds.
    pub fn len(&self) -> usize {
        self.terms.len()
    }

    /// Whether it holds no terms.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The terms of the lexicon found in `text`, as whole words or phrases, in
    /// folded form and without repeats; empty when nothing matched.
    pub fn screen(&self, text: &str) -> Screening {
        let padded = format!(" {} ", fold(text));
        let mut terms = BTreeSet::new();
        let mut categories = BTreeSet::new();
        for term in &self.terms {
            if padded.contains(&format!(" {} ", term.folded)) {
                terms.insert(term.folded.clone());
                categories.insert(term.category.clone());
            }
        }
        Screening {
            terms: terms.into_iter().collect(),
            categories: categories.into_iter().collect(),
        }
    }
}

/// What screening found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Screening {
    /// The matched terms, folded, sorted.
    pub terms: Vec<String>,
    /// Their categories, sorted.
    pub categories: Vec<String>,
}

impl Screening {
    /// Whether the message needs a person's review.
    pub fn flagged(&self) -> bool {
        !self.terms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lexicon() -> Lexicon {
        Lexicon::builtin().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_builtin_lexicon_loads_in_both_languages() {
        let lexicon = lexicon();
        assert!(lexicon.len() > 100, "{}", lexicon.len());
    }

    #[test]
    fn english_symptoms_and_a_hospital_visit_are_flagged() {
        let found = lexicon().screen("I got a bad RASH and went to the Emergency Room last night");
        assert_eq!(found.terms, vec!["emergency room", "rash"]);
        assert_eq!(found.categories, vec!["hospital visit", "side effect"]);
    }

    #[test]
    fn spanish_with_or_without_accents_is_flagged() {
        let lexicon = lexicon();
        let found = lexicon.screen("Tengo náuseas y mareos desde ayer, ¿es normal?");
        assert_eq!(found.terms, vec!["mareos", "nauseas"]);
        assert_eq!(lexicon.screen("estoy EMBARAZADA").terms, vec!["embarazada"]);
        assert!(lexicon.screen("Me tomé doble dosis por error").flagged());
    }

    #[test]
    fn ordinary_messages_and_parts_of_words_are_not_flagged() {
        let lexicon = lexicon();
        assert!(!lexicon.screen("Thanks, see you Tuesday").flagged());
        assert!(!lexicon.screen("Gracias, todo bien").flagged());
        // "rash" inside "crash", "fever" inside "feverfew": not whole words.
        assert!(
            !lexicon
                .screen("my car had a crash; I drink feverfew tea")
                .flagged()
        );
    }

    #[test]
    fn a_broken_lexicon_is_a_clear_error() {
        assert!(matches!(
            Lexicon::parse("[[category]]\nname = 'x'\nen = ['  ']"),
            Err(LexiconError::Empty { .. })
        ));
        assert!(matches!(
            Lexicon::parse("category = 3"),
            Err(LexiconError::Parse(_))
        ));
    }

    proptest! {
        #[test]
        fn screening_any_text_never_panics(text in any::<String>()) {
            let _ = lexicon().screen(&text);
        }
    }
}
