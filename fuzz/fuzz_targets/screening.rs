//! Any inbound text through the keyword reader and the adverse-event screen,
//! and any text as a lexicon file: a reading, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use touchpoint_routing::domain::keywords;
use touchpoint_routing::domain::screening::Lexicon;

static BUILTIN: OnceLock<Option<Lexicon>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = keywords::read(text);
    if let Some(lexicon) = BUILTIN.get_or_init(|| Lexicon::builtin().ok()) {
        let _ = lexicon.screen(text);
    }
    if let Ok(lexicon) = Lexicon::parse(text) {
        let _ = lexicon.screen(text);
    }
});
