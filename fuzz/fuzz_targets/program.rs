//! Any text as a program file: a program or a list of problems, never a panic.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let templates: BTreeSet<String> = ["welcome", "check-in", "refill"]
        .into_iter()
        .map(String::from)
        .collect();
    let _ = touchpoint_programs::parse("fuzz/program.toml", text, &templates);
    let _ = touchpoint_programs::parse_offset(text);
});
