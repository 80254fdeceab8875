//! Program definitions: the cadence of a patient support program, written as a
//! reviewed file and validated before it goes live. The cadence service plans
//! from them, dispatch writes with their templates and re-checks their contact
//! window and cap, and the CLI validates them.
//!
//! A program is a folder `programs/<id>/` with `program.toml` and a `templates/`
//! folder (`<template>.<language>[.<channel>].<ext>`, rendered by dispatch). See
//! docs/programs.md for the format with a full example.

mod cap;
mod duration;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
mod live;
mod raw;
mod states;
mod targets;
mod templates;
mod validate;
mod window;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc, Weekday};
use touchpoint_proto::v1::{Channel, Language};

pub use duration::parse_offset;
pub use live::{DEFAULT_RELOAD_MS, FolderError, LiveCatalogue, load_folder};
pub use states::{StateRule, StateRules, StateRulesError, Whereabouts, us_region};
pub use targets::Targets;
pub use templates::{
    Audience, CAREGIVER_VARIABLES, Message, MessageFacts, RenderError, SMS_FIRST_NAME_CHARS,
    SMS_VARIABLES, Templates, VARIABLES,
};
pub use validate::{ProgramError, load_dir, load_dir_with_templates, parse};

/// A validated program.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    /// Stable id, the folder's name.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Languages it writes in; the first is the default (fallback) language.
    pub languages: Vec<Language>,
    /// When patients may be contacted, in their local time.
    pub window: ContactWindow,
    /// Most messages per patient per day and per week.
    pub cap: FrequencyCap,
    /// The TCPA exemption the program relies on, if any (`exemption`).
    pub exemption: Option<Exemption>,
    /// The touchpoints, in order.
    pub steps: Vec<Step>,
    /// What a site leader holds it to.
    pub targets: Targets,
    /// Who publishes this version of it (`published_by`), when the file says.
    pub published_by: Option<String>,
}

impl Program {
    /// The program as it applies to a patient in a state with `rule`: the
    /// narrower of the two windows and the lower of the two caps.
    pub fn under(&self, rule: &StateRule) -> Program {
        let mut program = self.clone();
        program.window.start = program.window.start.max(rule.start);
        program.window.end = program.window.end.min(rule.end);
        program.cap.per_24_hours = match (program.cap.per_24_hours, rule.per_24_hours) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        program
    }
}

/// A TCPA exemption a program relies on, and so must keep to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exemption {
    /// The healthcare-message exemption: at most one message a day and three a
    /// week, each at most 160 characters.
    Healthcare,
}

impl Exemption {
    /// The longest text the exemption allows, in characters.
    pub const MAX_TEXT_CHARS: usize = 160;
}

/// Hours of the day (patient's local time) and days when contact is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactWindow {
    /// First allowed local time.
    pub start: NaiveTime,
    /// End of the window (exclusive).
    pub end: NaiveTime,
    /// Weekdays with no contact.
    pub no_contact_days: BTreeSet<u8>,
    /// Dates with no contact (holidays).
    pub no_contact_dates: BTreeSet<NaiveDate>,
}

impl ContactWindow {
    /// Whether `day` is a no-contact weekday.
    pub fn rests_on(&self, day: Weekday) -> bool {
        self.no_contact_days
            .contains(&(day.num_days_from_monday() as u8))
    }
}

/// Messages per patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrequencyCap {
    /// Per local day.
    pub per_day: u32,
    /// Per 7 days.
    pub per_week: u32,
    /// Per any 24 hours, when the patient's state limits it (a program file
    /// does not set it; a state rule does).
    pub per_24_hours: Option<u32>,
}

/// What a step's due time is measured from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchor {
    /// The case's enrolment.
    Enrolled,
    /// The therapy start.
    TherapyStart,
    /// The next refill due date (last fill + days supply).
    RefillDue,
    /// The completion of an earlier step.
    AfterStep(String),
}

/// One channel of a step, tried `attempts` times `wait` apart before the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPlan {
    /// The channel.
    pub channel: Channel,
    /// Tries on this channel.
    pub attempts: u32,
    /// Wait between tries.
    pub wait: TimeDelta,
}

/// What ends a step (and stops its remaining attempts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitRule {
    /// The patient answered.
    Responded,
    /// The patient opted out.
    OptedOut,
    /// The case was paused.
    Paused,
    /// The case was closed.
    Closed,
    /// Therapy stopped.
    TherapyStopped,
}

/// One touchpoint of the program.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Unique within the program.
    pub id: String,
    /// What the due time is measured from.
    pub anchor: Anchor,
    /// Offset from the anchor (negative: before it).
    pub offset: TimeDelta,
    /// How long after its due time the step still makes sense (`expires`).
    pub expires: Option<TimeDelta>,
    /// Channels in order of preference.
    pub channels: Vec<ChannelPlan>,
    /// Template id, rendered by dispatch per language and channel.
    pub template: String,
    /// What ends the step.
    pub exit_when: BTreeSet<ExitRule>,
}

impl Step {
    /// When the step stops being true, for a run whose anchor was at
    /// `anchor_at`: its due time plus `expires`; for a reminder before a refill
    /// date that says nothing, the refill date itself; otherwise never. Past it,
    /// nothing of the step is sent.
    pub fn expires_at(&self, anchor_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match (self.expires, &self.anchor) {
            (Some(after), _) => Some(anchor_at + self.offset + after),
            (None, Anchor::RefillDue) if self.offset < TimeDelta::zero() => Some(anchor_at),
            (None, _) => None,
        }
    }
}

/// The programs a service runs, by id, with their templates when it writes
/// messages.
///
/// With state rules, it also holds each program as it applies in each state
/// with a rule, so a lookup for a patient costs a map lookup, not a copy.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    programs: BTreeMap<String, Program>,
    templates: BTreeMap<String, Templates>,
    rules: StateRules,
    /// By program id, then state code.
    in_states: BTreeMap<String, BTreeMap<String, Program>>,
}

impl Catalogue {
    /// A catalogue of `programs` (ids are unique: each is its folder's name).
    pub fn new(programs: Vec<Program>) -> Self {
        Self {
            programs: programs.into_iter().map(|p| (p.id.clone(), p)).collect(),
            ..Self::default()
        }
    }

    /// The catalogue with `rules` applied to patients in their states.
    pub fn with_state_rules(mut self, rules: StateRules) -> Self {
        self.in_states = self
            .programs
            .iter()
            .map(|(id, program)| {
                let by_state = rules
                    .iter()
                    .map(|rule| (rule.code.clone(), program.under(rule)))
                    .collect();
                (id.clone(), by_state)
            })
            .collect();
        self.rules = rules;
        self
    }

    /// The state rule that applies to a patient at `whereabouts`, if any.
    pub fn state_of(&self, whereabouts: Whereabouts<'_>) -> Option<&StateRule> {
        self.rules.locate(whereabouts)
    }

    /// The program `id` as it applies in the state with code `state` (as
    /// [`Catalogue::state_of`] found it); as written where the state has no rule.
    pub fn in_state(&self, id: &str, state: Option<&str>) -> Option<&Program> {
        state
            .and_then(|code| self.in_states.get(id)?.get(code))
            .or_else(|| self.programs.get(id))
    }

    /// The program `id` as it applies to a patient at `whereabouts`.
    pub fn for_patient(&self, id: &str, whereabouts: Whereabouts<'_>) -> Option<&Program> {
        self.in_state(id, self.state_of(whereabouts).map(|r| r.code.as_str()))
    }

    /// A catalogue of programs with their templates, as
    /// [`load_dir_with_templates`] returns them.
    pub fn with_templates(loaded: Vec<(Program, Templates)>) -> Self {
        let mut catalogue = Self::default();
        for (program, templates) in loaded {
            catalogue.templates.insert(program.id.clone(), templates);
            catalogue.programs.insert(program.id.clone(), program);
        }
        catalogue
    }

    /// The program `id`, if loaded.
    pub fn get(&self, id: &str) -> Option<&Program> {
        self.programs.get(id)
    }

    /// The templates of program `id`, if loaded with them.
    pub fn templates(&self, id: &str) -> Option<&Templates> {
        self.templates.get(id)
    }

    /// Every program, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Program> {
        self.programs.values()
    }
}

/// Template ids found in a program folder's `templates/` (`<id>.<rest>`).
pub fn templates_in(program_dir: &Path) -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(program_dir.join("templates")) else {
        return BTreeSet::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.split('.')
                .next()
                .filter(|id| !id.is_empty())
                .map(str::to_owned)
        })
        .collect()
}
