//! SMS keywords: a message that is, once folded (case, accents, punctuation), one
//! of the carrier keywords. The CTIA opt-out words and their Spanish
//! counterparts stop every text; START and UNSTOP undo that; HELP and AYUDA ask
//! for the program's help text.
//!
//! Only the whole message counts: "Stop please" is not a STOP (it may be a
//! sentence about something else), but it names one, so it is flagged for a
//! person to read.

use touchpoint_proto::v1::Language;

use super::text::fold;

/// What a keyword asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Stop every text.
    OptOut,
    /// Texts may start again.
    OptIn,
    /// Send the program's help text.
    Help,
}

/// A keyword the message was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyword {
    /// What it asks for.
    pub intent: Intent,
    /// The keyword as listed (upper case, no accents), e.g. `"ALTO"`.
    pub word: &'static str,
    /// The keyword's language, when only one language uses it.
    pub language: Option<Language>,
}

/// How a message reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// The message is a keyword.
    Keyword(Keyword),
    /// The message names a keyword among other words: a person decides.
    Unclear(Keyword),
    /// Ordinary text.
    Text,
}

const EN: Option<Language> = Some(Language::En);
const ES: Option<Language> = Some(Language::Es);

/// Every keyword, folded to lower case as messages are.
const KEYWORDS: &[(&str, Keyword)] = &[
    ("stop", kw(Intent::OptOut, "STOP", EN)),
    ("stopall", kw(Intent::OptOut, "STOPALL", EN)),
    ("unsubscribe", kw(Intent::OptOut, "UNSUBSCRIBE", EN)),
    ("cancel", kw(Intent::OptOut, "CANCEL", EN)),
    ("end", kw(Intent::OptOut, "END", EN)),
    ("quit", kw(Intent::OptOut, "QUIT", EN)),
    ("alto", kw(Intent::OptOut, "ALTO", ES)),
    ("parar", kw(Intent::OptOut, "PARAR", ES)),
    ("cancelar", kw(Intent::OptOut, "CANCELAR", ES)),
    ("baja", kw(Intent::OptOut, "BAJA", ES)),
    ("start", kw(Intent::OptIn, "START", EN)),
    ("unstop", kw(Intent::OptIn, "UNSTOP", EN)),
    ("help", kw(Intent::Help, "HELP", EN)),
    ("info", kw(Intent::Help, "INFO", None)),
    ("ayuda", kw(Intent::Help, "AYUDA", ES)),
];

const fn kw(intent: Intent, word: &'static str, language: Option<Language>) -> Keyword {
    Keyword {
        intent,
        word,
        language,
    }
}

fn lookup(word: &str) -> Option<Keyword> {
    KEYWORDS
        .iter()
        .find(|(folded, _)| *folded == word)
        .map(|(_, keyword)| *keyword)
}

/// How `body` reads.
pub fn read(body: &str) -> Reading {
    let folded = fold(body);
    if let Some(keyword) = lookup(&folded) {
        return Reading::Keyword(keyword);
    }
    // An opt-out word inside a longer message is what matters to review; a
    // "help" in passing is ordinary text.
    folded
        .split(' ')
        .filter_map(lookup)
        .find(|k| k.intent == Intent::OptOut)
        .map_or(Reading::Text, Reading::Unclear)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn intent(body: &str) -> Option<Intent> {
        match read(body) {
            Reading::Keyword(k) => Some(k.intent),
            _ => None,
        }
    }

    #[test]
    fn every_ctia_and_spanish_opt_out_word_stops() {
        for word in [
            "STOP",
            "STOPALL",
            "UNSUBSCRIBE",
            "CANCEL",
            "END",
            "QUIT",
            "ALTO",
            "PARAR",
            "CANCELAR",
            "BAJA",
        ] {
            assert_eq!(intent(word), Some(Intent::OptOut), "{word}");
        }
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
    fn opt_in_and_help() {
        assert_eq!(intent("Start"), Some(Intent::OptIn));
        assert_eq!(intent("UNSTOP"), Some(Intent::OptIn));
        assert_eq!(intent("help?"), Some(Intent::Help));
        let Reading::Keyword(ayuda) = read("Ayuda") else {
            panic!("AYUDA is a keyword");
        };
        assert_eq!((ayuda.intent, ayuda.language), (Intent::Help, ES));
    }

    #[test]
    fn a_keyword_in_a_sentence_is_not_a_keyword_but_is_flagged() {
        let Reading::Unclear(k) = read("Stop please") else {
            panic!("flagged for review");
        };
        assert_eq!(k.word, "STOP");
        assert!(matches!(
            read("Por favor, ALTO a los mensajes"),
            Reading::Unclear(_)
        ));
        assert_eq!(read("I need help with my refill"), Reading::Text);
        assert_eq!(read("stopping by the pharmacy"), Reading::Text);
        assert_eq!(read("S T O P"), Reading::Text);
    }

    proptest! {
        #[test]
        fn any_text_reads_without_panicking(body in any::<String>()) {
            let _ = read(&body);
        }
    }
}
