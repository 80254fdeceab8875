//! How a patient's message reads as a request about being contacted: a carrier
//! keyword (STOP, START, HELP and their Spanish counterparts), a plain-language
//! opt-out ("stop texting me", "ya no me escriban"), something a person must
//! read (an opt-out word or phrase among other words), or ordinary text.
//!
//! The carrier keywords are fixed and live here. The plain-language phrases and
//! the courtesy words that may surround a keyword ("Stop. Thank you", "ALTO por
//! favor") are a data file (`lexicon/opt-out.toml`) a compliance lead reviews,
//! like the adverse-event lexicon.
//!
//! Only a whole message opts out at once: "Stop please" is STOP, but "stop
//! sending the refill to my old address" is a sentence about something else,
//! so it goes to a person.

use serde::Deserialize;
use touchpoint_proto::v1::Language;

use super::text::fold;

/// The phrase file built into the service.
pub const BUILTIN: &str = include_str!("../../lexicon/opt-out.toml");

/// What a keyword asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Stop contact on the channel the message came on.
    OptOut,
    /// Contact may start again.
    OptIn,
    /// Send the program's help text.
    Help,
}

/// A keyword or phrase the message was, or held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyword {
    /// What it asks for.
    pub intent: Intent,
    /// The keyword as listed (upper case, no accents), e.g. `"ALTO"`, or a
    /// phrase of the phrase file in folded form, e.g. `"ya no me escriban"`.
    /// Never the patient's own words.
    pub word: String,
    /// Its language, when only one language uses it.
    pub language: Option<Language>,
}

/// How a message reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// The message is a keyword or a clear opt-out phrase.
    Keyword(Keyword),
    /// The message holds an opt-out word or phrase among other words, or an
    /// ambiguous phrase: a person decides.
    Unclear(Keyword),
    /// Ordinary text.
    Text,
}

const EN: Option<Language> = Some(Language::En);
const ES: Option<Language> = Some(Language::Es);

/// Every carrier keyword, folded as messages are. The opt-out words include
/// every word FCC 24-24 names (STOP, QUIT, END, REVOKE, OPT OUT, CANCEL,
/// UNSUBSCRIBE) and STOPALL.
const KEYWORDS: &[(&str, Intent, &str, Option<Language>)] = &[
    ("stop", Intent::OptOut, "STOP", EN),
    ("stopall", Intent::OptOut, "STOPALL", EN),
    ("stop all", Intent::OptOut, "STOPALL", EN),
    ("unsubscribe", Intent::OptOut, "UNSUBSCRIBE", EN),
    ("cancel", Intent::OptOut, "CANCEL", EN),
    ("end", Intent::OptOut, "END", EN),
    ("quit", Intent::OptOut, "QUIT", EN),
    ("revoke", Intent::OptOut, "REVOKE", EN),
    ("opt out", Intent::OptOut, "OPT OUT", EN),
    ("optout", Intent::OptOut, "OPT OUT", EN),
    ("alto", Intent::OptOut, "ALTO", ES),
    ("parar", Intent::OptOut, "PARAR", ES),
    ("pare", Intent::OptOut, "PARAR", ES),
    ("cancelar", Intent::OptOut, "CANCELAR", ES),
    ("baja", Intent::OptOut, "BAJA", ES),
    ("revocar", Intent::OptOut, "REVOCAR", ES),
    ("start", Intent::OptIn, "START", EN),
    ("unstop", Intent::OptIn, "UNSTOP", EN),
    ("opt in", Intent::OptIn, "OPT IN", EN),
    ("help", Intent::Help, "HELP", EN),
    ("info", Intent::Help, "INFO", None),
    ("ayuda", Intent::Help, "AYUDA", ES),
];

/// The phrase file is not usable.
#[derive(Debug, thiserror::Error)]
pub enum PhrasesError {
    /// It is not the expected TOML.
    #[error(
        "the opt-out phrase file is not valid TOML of courtesy, clear and ambiguous tables: {0}"
    )]
    Parse(String),
    /// A phrase is empty once folded.
    #[error("the opt-out phrase file has an empty phrase in [{table}]")]
    Empty {
        /// The table holding it.
        table: &'static str,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    courtesy: ByLanguage,
    clear: ByLanguage,
    ambiguous: ByLanguage,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ByLanguage {
    #[serde(default)]
    en: Vec<String>,
    #[serde(default)]
    es: Vec<String>,
}

impl ByLanguage {
    /// Every phrase folded, with its language.
    fn folded(&self, table: &'static str) -> Result<Vec<(String, Language)>, PhrasesError> {
        let en = self.en.iter().map(|p| (p, Language::En));
        let es = self.es.iter().map(|p| (p, Language::Es));
        en.chain(es)
            .map(|(phrase, language)| {
                let folded = fold(phrase);
                if folded.is_empty() {
                    Err(PhrasesError::Empty { table })
                } else {
                    Ok((folded, language))
                }
            })
            .collect()
    }
}

/// The plain-language phrases and courtesy words messages are read with.
#[derive(Debug, Clone)]
pub struct Phrases {
    /// Folded, longest first, so "thank you very much" goes before "thank you".
    courtesy: Vec<String>,
    clear: Vec<(String, Language)>,
    ambiguous: Vec<(String, Language)>,
}

impl Phrases {
    /// Reads a phrase file.
    pub fn parse(text: &str) -> Result<Self, PhrasesError> {
        let file: File = toml::from_str(text).map_err(|e| PhrasesError::Parse(e.to_string()))?;
        let mut courtesy: Vec<String> = file
            .courtesy
            .folded("courtesy")?
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        courtesy.sort_by_key(|p| std::cmp::Reverse(p.len()));
        Ok(Self {
            courtesy,
            clear: file.clear.folded("clear")?,
            ambiguous: file.ambiguous.folded("ambiguous")?,
        })
    }

    /// The phrase file built into the service.
    pub fn builtin() -> Result<Self, PhrasesError> {
        Self::parse(BUILTIN)
    }

    /// How `body` reads.
    pub fn read(&self, body: &str) -> Reading {
        let folded = fold(body);
        let core = self.without_courtesy(&folded);
        if let Some(keyword) = keyword(core) {
            return Reading::Keyword(keyword);
        }
        if let Some((phrase, language)) = self.clear.iter().find(|(p, _)| p == core) {
            return Reading::Keyword(opt_out(phrase, *language));
        }
        // An opt-out inside a longer message is what matters to review; a "help"
        // in passing is ordinary text.
        let padded = format!(" {folded} ");
        let holds = |phrase: &str| padded.contains(&format!(" {phrase} "));
        let opt_out_word = KEYWORDS
            .iter()
            .find(|(word, intent, ..)| *intent == Intent::OptOut && holds(word))
            .map(|(word, ..)| keyword(word));
        if let Some(Some(found)) = opt_out_word {
            return Reading::Unclear(found);
        }
        self.clear
            .iter()
            .chain(&self.ambiguous)
            .find(|(phrase, _)| holds(phrase))
            .map_or(Reading::Text, |(phrase, language)| {
                Reading::Unclear(opt_out(phrase, *language))
            })
    }

    /// `folded` without the courtesy words before and after it.
    fn without_courtesy<'a>(&self, folded: &'a str) -> &'a str {
        let mut core = folded;
        loop {
            let before = core;
            for word in &self.courtesy {
                if let Some(rest) = core.strip_prefix(word.as_str())
                    && (rest.is_empty() || rest.starts_with(' '))
                {
                    core = rest.trim_start();
                }
                if let Some(rest) = core.strip_suffix(word.as_str())
                    && (rest.is_empty() || rest.ends_with(' '))
                {
                    core = rest.trim_end();
                }
            }
            if core == before {
                return core;
            }
        }
    }
}

/// The carrier keyword `folded` is, if any.
fn keyword(folded: &str) -> Option<Keyword> {
    KEYWORDS
        .iter()
        .find(|(word, ..)| *word == folded)
        .map(|(_, intent, word, language)| Keyword {
            intent: *intent,
            word: (*word).to_owned(),
            language: *language,
        })
}

fn opt_out(phrase: &str, language: Language) -> Keyword {
    Keyword {
        intent: Intent::OptOut,
        word: phrase.to_owned(),
        language: Some(language),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn phrases() -> Phrases {
        Phrases::builtin().unwrap_or_else(|e| panic!("{e}"))
    }

    fn intent(body: &str) -> Option<Intent> {
        match phrases().read(body) {
            Reading::Keyword(k) => Some(k.intent),
            _ => None,
        }
    }

    fn word(body: &str) -> Option<String> {
        match phrases().read(body) {
            Reading::Keyword(k) => Some(k.word),
            _ => None,
        }
    }

    #[test]
    fn every_word_the_fcc_names_and_the_spanish_ones_stop() {
        for word in [
            "STOP",
            "QUIT",
            "END",
            "REVOKE",
            "OPT OUT",
            "CANCEL",
            "UNSUBSCRIBE",
            "STOPALL",
            "ALTO",
            "PARAR",
            "CANCELAR",
            "BAJA",
        ] {
            assert_eq!(intent(word), Some(Intent::OptOut), "{word}");
        }
        assert_eq!(word("Opt-out").as_deref(), Some("OPT OUT"));
        assert_eq!(word("revoke").as_deref(), Some("REVOKE"));
    }

    #[test]
    fn case_accents_punctuation_and_spaces_do_not_matter() {
        for body in [
            "stop", " Stop. ", "STOP!!", "¡Alto!", "ÁLTO", "bája", "\"quit\"",
        ] {
            assert_eq!(intent(body), Some(Intent::OptOut), "{body}");
        }
    }

    #[test]
    fn courtesy_words_around_a_keyword_leave_the_keyword() {
        assert_eq!(word("Stop. Thank you").as_deref(), Some("STOP"));
        assert_eq!(word("ALTO por favor").as_deref(), Some("ALTO"));
        assert_eq!(word("please STOP, thanks!").as_deref(), Some("STOP"));
        assert_eq!(
            word("Hola, baja por favor. Gracias").as_deref(),
            Some("BAJA")
        );
        assert_eq!(word("Start please").as_deref(), Some("START"));
    }

    #[test]
    fn plain_language_requests_in_both_languages_opt_out() {
        for (body, language) in [
            ("Stop texting me", Language::En),
            ("Please don't text me anymore.", Language::En),
            ("Remove me from this list", Language::En),
            ("No más mensajes", Language::Es),
            ("ya no me escriban por favor", Language::Es),
            ("No me manden más", Language::Es),
        ] {
            let Reading::Keyword(k) = phrases().read(body) else {
                panic!("{body} opts out");
            };
            assert_eq!((k.intent, k.language), (Intent::OptOut, Some(language)));
        }
    }

    #[test]
    fn an_ambiguous_phrase_or_an_opt_out_among_other_words_goes_to_a_person() {
        let phrases = phrases();
        for body in [
            "Stop sending the refill to my old address",
            "Por favor, ALTO a los mensajes de la farmacia",
            "I want to opt out of the survey but keep the reminders",
            "Not interested",
            "No más",
            "stop texting me about the copay, call instead",
        ] {
            assert!(
                matches!(phrases.read(body), Reading::Unclear(_)),
                "{body} is for review"
            );
        }
        let Reading::Unclear(k) = phrases.read("Stop please, wait, I mean the other one") else {
            panic!("flagged for review");
        };
        assert_eq!(k.word, "STOP");
    }

    #[test]
    fn ordinary_messages_read_as_text() {
        let phrases = phrases();
        for body in [
            "I need help with my refill",
            "stopping by the pharmacy",
            "S T O P",
            "Thanks, see you Tuesday",
            "Gracias, todo bien",
            "",
        ] {
            assert_eq!(phrases.read(body), Reading::Text, "{body}");
        }
    }

    #[test]
    fn opt_in_and_help() {
        assert_eq!(intent("Start"), Some(Intent::OptIn));
        assert_eq!(intent("UNSTOP"), Some(Intent::OptIn));
        assert_eq!(intent("help?"), Some(Intent::Help));
        let Reading::Keyword(ayuda) = phrases().read("Ayuda") else {
            panic!("AYUDA is a keyword");
        };
        assert_eq!((ayuda.intent, ayuda.language), (Intent::Help, ES));
    }

    #[test]
    fn a_broken_phrase_file_is_a_clear_error() {
        assert!(matches!(
            Phrases::parse("[courtesy]\n[clear]\nen = ['...']\n[ambiguous]"),
            Err(PhrasesError::Empty { table: "clear" })
        ));
        assert!(matches!(
            Phrases::parse("clear = 3"),
            Err(PhrasesError::Parse(_))
        ));
    }

    proptest! {
        #[test]
        fn any_text_reads_without_panicking(body in any::<String>()) {
            let _ = phrases().read(&body);
        }
    }
}
