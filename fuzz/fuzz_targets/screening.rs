//! Any inbound text through the keyword reader and the adverse-event screen,
//! and any text as a lexicon or phrase file: a reading, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use touchpoint_routing::domain::keywords::Phrases;
use touchpoint_routing::domain::screening::Lexicon;

static BUILTIN: OnceLock<Option<Lexicon>> = OnceLock::new();
static PHRASES: OnceLock<Option<Phrases>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(phrases) = PHRASES.get_or_init(|| Phrases::builtin().ok()) {
        let _ = phrases.read(text);
    }
    if let Ok(phrases) = Phrases::parse(text) {
        let _ = phrases.read(text);
    }
    if let Some(lexicon) = BUILTIN.get_or_init(|| Lexicon::builtin().ok()) {
        let _ = lexicon.screen(text);
    }
    if let Ok(lexicon) = Lexicon::parse(text) {
        let _ = lexicon.screen(text);
    }
});
