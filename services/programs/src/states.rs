//! State rules stricter than the TCPA: a narrower contact window and at most so
//! many contacts in any 24 hours, for a patient living in the state. The rules
//! are a reviewed data file beside the programs (`programs/rules/us-states.toml`),
//! each naming its source; a programs folder without one gets the copy built
//! into the services.
//!
//! A patient's state is the region of a US postal address, else the area code
//! of the patient's phone number.

use std::collections::BTreeMap;

use chrono::NaiveTime;
use serde::Deserialize;
use touchpoint_proto::v1::{ContactPoints, PostalAddress};

/// The rules file built into the services.
pub const BUILTIN: &str = include_str!("../../../programs/rules/us-states.toml");

/// One state's rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRule {
    /// USPS code, e.g. `OK`.
    pub code: String,
    /// The state's name, e.g. `Oklahoma`.
    pub name: String,
    /// First allowed local time.
    pub start: NaiveTime,
    /// End of the allowed time (exclusive).
    pub end: NaiveTime,
    /// Most contacts in any 24 hours on one subject (one case's program).
    pub per_24_hours: Option<u32>,
    /// The statute it comes from.
    pub source: String,
}

/// Where a patient is, as far as the state rules ask: the region of a US postal
/// address and the patient's phone number (E.164). Patient data: no `Debug`.
#[derive(Clone, Copy, Default)]
pub struct Whereabouts<'a> {
    /// The postal address's region (`OK`, `Oklahoma`), when the address is in
    /// the US.
    pub region: Option<&'a str>,
    /// The patient's phone number, E.164.
    pub phone: Option<&'a str>,
}

impl<'a> Whereabouts<'a> {
    /// Where the person with `contact` is: the region of a US postal address,
    /// and the mobile, else the landline.
    pub fn of(contact: &'a ContactPoints) -> Self {
        let known = |s: &'a str| Some(s.trim()).filter(|s| !s.is_empty());
        Self {
            region: us_region(contact.postal_address.as_ref()),
            phone: known(&contact.mobile_e164).or_else(|| known(&contact.landline_e164)),
        }
    }
}

/// The region of `address` when it is in the US (an address that names no
/// country is taken as one), trimmed; None when it names none.
pub fn us_region(address: Option<&PostalAddress>) -> Option<&str> {
    address
        .filter(|a| a.country.trim().is_empty() || a.country.eq_ignore_ascii_case("US"))
        .map(|a| a.region.trim())
        .filter(|region| !region.is_empty())
}

impl std::fmt::Debug for Whereabouts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Where a patient lives is patient data: say only what is known.
        f.debug_struct("Whereabouts")
            .field("region", &self.region.is_some())
            .field("phone", &self.phone.is_some())
            .finish()
    }
}

/// The rules file is unusable; names the entry and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state rules: {entry}: {problem}")]
pub struct StateRulesError {
    /// The state code, or `file`.
    pub entry: String,
    /// What is wrong.
    pub problem: String,
}

/// Every state's rule, and which state each area code belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateRules {
    states: BTreeMap<String, StateRule>,
    area_codes: BTreeMap<u16, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    state: Vec<RawState>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    code: String,
    name: String,
    start: String,
    end: String,
    per_24_hours: Option<u32>,
    source: String,
    #[serde(default)]
    area_codes: Vec<u16>,
}

/// The TCPA's calling hours: a state rule can only narrow them.
const TCPA: (u32, u32) = (8, 21);

/// Where the rules live in a programs folder.
pub const FILE: &str = "rules/us-states.toml";

impl StateRules {
    /// The rules built into the services.
    pub fn builtin() -> Result<Self, StateRulesError> {
        Self::parse(BUILTIN)
    }

    /// The rules of the programs folder `dir` (`rules/us-states.toml`), else
    /// the built-in ones.
    pub fn for_programs(dir: &std::path::Path) -> Result<Self, StateRulesError> {
        match std::fs::read_to_string(dir.join(FILE)) {
            Ok(text) => Self::parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::builtin(),
            Err(e) => Err(StateRulesError {
                entry: "file".into(),
                problem: format!("{FILE} cannot be read: {e}"),
            }),
        }
    }

    /// Parses and checks a rules file.
    pub fn parse(text: &str) -> Result<Self, StateRulesError> {
        let fail = |entry: &str, problem: String| StateRulesError {
            entry: entry.to_owned(),
            problem,
        };
        let raw: RawFile =
            toml::from_str(text).map_err(|e| fail("file", e.message().to_owned()))?;
        let tcpa_start = NaiveTime::from_hms_opt(TCPA.0, 0, 0).unwrap_or_default();
        let tcpa_end = NaiveTime::from_hms_opt(TCPA.1, 0, 0).unwrap_or_default();
        let mut rules = Self::default();
        for state in raw.state {
            let code = state.code.trim().to_owned();
            if code.len() != 2 || !code.chars().all(|c| c.is_ascii_uppercase()) {
                return Err(fail(&code, "code must be two capital letters".into()));
            }
            let time = |text: &str, field: &str| {
                NaiveTime::parse_from_str(text, "%H:%M")
                    .map_err(|_| fail(&code, format!("{field} must be a time such as 08:00")))
            };
            let (start, end) = (time(&state.start, "start")?, time(&state.end, "end")?);
            if start < tcpa_start || end > tcpa_end || start >= end {
                return Err(fail(
                    &code,
                    "start and end must lie within 08:00-21:00, start first".into(),
                ));
            }
            if state.per_24_hours == Some(0) {
                return Err(fail(&code, "per_24_hours must be at least 1".into()));
            }
            if state.name.trim().is_empty() || state.source.trim().is_empty() {
                return Err(fail(&code, "name and source must not be empty".into()));
            }
            for area in state.area_codes {
                if !(200..=999).contains(&area) {
                    return Err(fail(&code, format!("{area} is not an area code")));
                }
                if let Some(other) = rules.area_codes.insert(area, code.clone()) {
                    return Err(fail(&code, format!("area code {area} is also {other}'s")));
                }
            }
            let rule = StateRule {
                code: code.clone(),
                name: state.name.trim().to_owned(),
                start,
                end,
                per_24_hours: state.per_24_hours,
                source: state.source.trim().to_owned(),
            };
            if rules.states.insert(code.clone(), rule).is_some() {
                return Err(fail(&code, "listed twice".into()));
            }
        }
        Ok(rules)
    }

    /// The rule of the state a patient is in, if that state has one: the postal
    /// region's state when it is known, else the phone number's area code.
    pub fn locate(&self, at: Whereabouts<'_>) -> Option<&StateRule> {
        if let Some(region) = at.region.map(str::trim).filter(|r| !r.is_empty()) {
            return self.states.values().find(|rule| {
                rule.code.eq_ignore_ascii_case(region) || rule.name.eq_ignore_ascii_case(region)
            });
        }
        let area: u16 = at.phone?.strip_prefix("+1")?.get(..3)?.parse().ok()?;
        self.states.get(self.area_codes.get(&area)?)
    }

    /// Every rule, by state code.
    pub fn iter(&self) -> impl Iterator<Item = &StateRule> {
        self.states.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fixtures::state_rules as rules;

    #[test]
    fn the_shipped_file_holds_florida_oklahoma_and_maryland_at_eight_to_eight_and_three_a_day() {
        let rules = StateRules::builtin();
        assert!(rules.is_ok(), "{rules:?}");
        let rules = rules.unwrap_or_default();
        for code in ["FL", "OK", "MD"] {
            let rule = rules.iter().find(|r| r.code == code);
            let Some(rule) = rule else {
                panic!("{code} missing");
            };
            assert_eq!(rule.start.to_string(), "08:00:00");
            assert_eq!(rule.end.to_string(), "20:00:00");
            assert_eq!(rule.per_24_hours, Some(3));
            assert!(!rule.source.is_empty());
        }
    }

    #[test]
    fn the_postal_region_decides_before_the_area_code() {
        let rules = rules();
        let tulsa_number = Some("+19185550100");
        let code = |at| rules.locate(at).map(|r| r.code.as_str());
        assert_eq!(
            code(Whereabouts {
                region: None,
                phone: tulsa_number
            }),
            Some("OK")
        );
        assert_eq!(
            code(Whereabouts {
                region: Some("oklahoma"),
                phone: None
            }),
            Some("OK")
        );
        assert_eq!(
            code(Whereabouts {
                region: Some(" md "),
                phone: tulsa_number
            }),
            Some("MD")
        );
        // Moved to Texas with an Oklahoma number: Texas has no rule here.
        assert_eq!(
            code(Whereabouts {
                region: Some("TX"),
                phone: tulsa_number
            }),
            None
        );
        // Not a US number, or none at all.
        assert_eq!(
            code(Whereabouts {
                region: None,
                phone: Some("+442071838750")
            }),
            None
        );
        assert_eq!(code(Whereabouts::default()), None);
    }

    #[test]
    fn a_patients_whereabouts_are_a_us_address_region_and_the_mobile_else_the_landline() {
        let rules = rules();
        let code = |contact: &ContactPoints| {
            rules
                .locate(Whereabouts::of(contact))
                .map(|r| r.code.clone())
        };
        let address = |country: &str, region: &str| PostalAddress {
            region: region.into(),
            country: country.into(),
            ..PostalAddress::default()
        };
        let mut contact = ContactPoints {
            landline_e164: "+19185550100".into(),
            ..ContactPoints::default()
        };
        assert_eq!(
            code(&contact).as_deref(),
            Some("OK"),
            "the landline's area code"
        );
        contact.postal_address = Some(address("", " md "));
        assert_eq!(
            code(&contact).as_deref(),
            Some("MD"),
            "no country is the US"
        );
        contact.postal_address = Some(address("MX", "MD"));
        assert_eq!(code(&contact).as_deref(), Some("OK"), "not a US region");
        contact.mobile_e164 = "+12065550100".into();
        assert_eq!(code(&contact).as_deref(), Some("WA"), "the mobile first");
    }

    #[test]
    fn a_program_under_a_state_rule_keeps_the_narrower_hours_and_the_lower_cap() {
        let text = r#"
id = "p"
name = "P"
languages = ["en"]
[contact_window]
start = "09:00"
end = "21:00"
[frequency_cap]
per_day = 4
per_week = 10
[[steps]]
id = "s"
anchor = "enrolled"
template = "t"
channels = [{ channel = "sms" }]
"#;
        let program = crate::fixtures::program(text, &["t"]);
        let rules = rules();
        let oklahoma = rules.iter().find(|r| r.code == "OK");
        let Some(oklahoma) = oklahoma else {
            panic!("OK missing");
        };
        let narrowed = program.under(oklahoma);
        let hm = |t: NaiveTime| t.format("%H:%M").to_string();
        assert_eq!(
            hm(narrowed.window.start),
            "09:00",
            "the program's later start"
        );
        assert_eq!(hm(narrowed.window.end), "20:00", "the state's earlier end");
        assert_eq!(narrowed.cap.per_day, 4);
        assert_eq!(narrowed.cap.per_24_hours, Some(3));
        let catalogue = crate::Catalogue::new(vec![program.clone()]).with_state_rules(rules);
        let tulsa = Whereabouts {
            region: None,
            phone: Some("+19185550100"),
        };
        assert_eq!(catalogue.for_patient("p", tulsa), Some(&narrowed));
        assert_eq!(
            catalogue.for_patient("p", Whereabouts::default()),
            Some(&program)
        );
        assert_eq!(catalogue.in_state("p", Some("TX")), Some(&program));
    }

    #[test]
    fn a_programs_folder_without_rules_gets_the_built_in_ones_and_its_own_otherwise() {
        let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../../programs");
        assert_eq!(
            StateRules::for_programs(std::path::Path::new(shipped)),
            StateRules::builtin(),
            "the shipped folder holds the built-in file"
        );
        let empty = std::env::temp_dir().join(format!("no-rules-{}", std::process::id()));
        assert_eq!(StateRules::for_programs(&empty), StateRules::builtin());
    }

    #[test]
    fn a_rule_wider_than_the_tcpa_or_an_area_code_in_two_states_is_refused() {
        let wide = r#"
[[state]]
code = "ZZ"
name = "Nowhere"
start = "07:00"
end = "20:00"
source = "none"
"#;
        assert!(StateRules::parse(wide).is_err());
        let twice = r#"
[[state]]
code = "AA"
name = "A"
start = "08:00"
end = "20:00"
source = "a"
area_codes = [405]
[[state]]
code = "BB"
name = "B"
start = "08:00"
end = "20:00"
source = "b"
area_codes = [405]
"#;
        let err = StateRules::parse(twice).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("state rules: BB: area code 405 is also AA's")
        );
        assert!(StateRules::parse("state = 3").is_err());
    }
}
