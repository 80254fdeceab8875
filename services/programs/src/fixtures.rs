//! What tests of program time share (feature `fixtures`): the US time zones the
//! cadence issue names (two with daylight saving, two without), instants written
//! as RFC 3339, and the span of instants property tests draw from.

use std::ops::Range;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// New York and Los Angeles change clocks; Mexico City (since 2022) and Phoenix do not.
pub const ZONES: [Tz; 4] = [
    chrono_tz::America::New_York,
    chrono_tz::America::Mexico_City,
    chrono_tz::America::Los_Angeles,
    chrono_tz::America::Phoenix,
];

/// Unix seconds from 2026-01-01 to 2029-01-01: three years of DST changes.
pub const THREE_YEARS: Range<i64> = 1_767_225_600..1_861_920_000;

/// The program `text` (a `program.toml`) whose templates are `templates`;
/// one that does not validate fails the test with its problems.
pub fn program(text: &str, templates: &[&str]) -> crate::Program {
    let templates = templates.iter().map(|t| (*t).to_owned()).collect();
    crate::parse("p.toml", text, &templates).unwrap_or_else(|e| panic!("{e:?}"))
}

/// The shipped state rules (empty if the built-in file did not parse, which
/// its own test catches).
pub fn state_rules() -> crate::StateRules {
    crate::StateRules::builtin().unwrap_or_default()
}

/// An instant written as RFC 3339 (a malformed one is the epoch, so a test fails).
pub fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.to_utc())
        .unwrap_or_default()
}
