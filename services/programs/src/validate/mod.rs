//! Program validation: every problem in a program file, each with its file, step
//! and field, so a reviewer fixes them all in one pass.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::path::Path;

use chrono::{NaiveDate, NaiveTime, TimeDelta, Weekday};
use touchpoint_proto::v1::{Channel, Language};

use super::duration::parse_offset;
use super::raw::{RawChannel, RawProgram, RawStep, RawWindow};
use super::{
    Anchor, ChannelPlan, ContactWindow, Exemption, ExitRule, FrequencyCap, Program, Step,
    Templates, templates_in,
};

/// One problem in a program file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramError {
    /// The file.
    pub file: String,
    /// The step's id, when the problem is inside a step.
    pub step: Option<String>,
    /// The field.
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for ProgramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.step {
            Some(step) => write!(
                f,
                "{}: step {step}: {}: {}",
                self.file, self.field, self.problem
            ),
            None => write!(f, "{}: {}: {}", self.file, self.field, self.problem),
        }
    }
}

/// The TCPA's calling hours, in the called party's local time.
const TCPA_START: (u32, u32) = (8, 0);
const TCPA_END: (u32, u32) = (21, 0);
const MAX_ATTEMPTS: i64 = 10;

pub(crate) struct Errors<'a> {
    file: &'a str,
    list: Vec<ProgramError>,
}

impl Errors<'_> {
    pub(crate) fn add(&mut self, step: Option<&str>, field: &str, problem: impl Into<String>) {
        self.list.push(ProgramError {
            file: self.file.to_owned(),
            step: step.map(str::to_owned),
            field: field.to_owned(),
            problem: problem.into(),
        });
    }
}

/// Parses and validates one program file's text. `templates` are the template ids
/// the program's folder provides.
pub fn parse(
    file: &str,
    text: &str,
    templates: &BTreeSet<String>,
) -> Result<Program, Vec<ProgramError>> {
    let raw: RawProgram = toml::from_str(text).map_err(|e| {
        vec![ProgramError {
            file: file.to_owned(),
            step: None,
            field: "file".into(),
            problem: e.message().to_owned()
                + &e.span()
                    .map(|s| format!(" (at byte {})", s.start))
                    .unwrap_or_default(),
        }]
    })?;
    let mut errors = Errors {
        file,
        list: Vec::new(),
    };
    let program = check(&raw, templates, &mut errors);
    if errors.list.is_empty() {
        program.ok_or(errors.list)
    } else {
        Err(errors.list)
    }
}

/// Loads and checks every `DIR/<id>/program.toml` and its templates. Returns the
/// programs, or every error of every file.
pub fn load_dir(dir: &Path) -> Result<Vec<Program>, Vec<ProgramError>> {
    load_dir_with_templates(dir).map(|loaded| loaded.into_iter().map(|(p, _)| p).collect())
}

/// [`load_dir`], keeping each program's compiled templates.
pub fn load_dir_with_templates(dir: &Path) -> Result<Vec<(Program, Templates)>, Vec<ProgramError>> {
    let shown = dir.display().to_string();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        vec![ProgramError {
            file: shown.clone(),
            step: None,
            field: "directory".into(),
            problem: format!("cannot be read: {e}"),
        }]
    })?;
    let mut folders: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    let mut programs = Vec::new();
    let mut errors = Vec::new();
    for folder in folders {
        let path = folder.join("program.toml");
        let file = path.display().to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(_) if !path.exists() => continue, // not a program folder
            Err(e) => {
                errors.push(ProgramError {
                    file,
                    step: None,
                    field: "file".into(),
                    problem: format!("cannot be read: {e}"),
                });
                continue;
            }
        };
        match parse(&file, &text, &templates_in(&folder)) {
            Ok(program) => {
                let folder_name = folder.file_name().map(|n| n.to_string_lossy().into_owned());
                if folder_name.as_deref() != Some(program.id.as_str()) {
                    errors.push(ProgramError {
                        file,
                        step: None,
                        field: "id".into(),
                        problem: "must match the program's folder name".into(),
                    });
                } else {
                    match Templates::load(&folder, &program, &file) {
                        Ok(templates) => programs.push((program, templates)),
                        Err(mut found) => errors.append(&mut found),
                    }
                }
            }
            Err(mut found) => errors.append(&mut found),
        }
    }
    if errors.is_empty() {
        Ok(programs)
    } else {
        Err(errors)
    }
}

fn check(
    raw: &RawProgram,
    templates: &BTreeSet<String>,
    errors: &mut Errors<'_>,
) -> Option<Program> {
    if !is_slug(&raw.id) {
        errors.add(None, "id", "must be lower-case letters, digits and '-'");
    }
    if raw.name.trim().is_empty() {
        errors.add(None, "name", "must not be empty");
    }
    let languages = check_languages(&raw.languages, errors);
    let window = check_window(&raw.contact_window, errors);
    let cap = match &raw.frequency_cap {
        None => Some(FrequencyCap {
            per_day: 1,
            per_week: 3,
            per_24_hours: None,
        }),
        Some(cap) => {
            let ok = (1..=24).contains(&cap.per_day)
                && cap.per_week >= cap.per_day
                && cap.per_week <= 100;
            if !ok {
                errors.add(
                    None,
                    "frequency_cap",
                    "per_day must be 1 to 24 and per_week from per_day to 100",
                );
            }
            ok.then_some(FrequencyCap {
                per_day: cap.per_day as u32,
                per_week: cap.per_week as u32,
                per_24_hours: None,
            })
        }
    };
    if raw.steps.is_empty() {
        errors.add(None, "steps", "a program needs at least one step");
    }
    let steps = check_steps(&raw.steps, templates, errors);
    let exemption = match raw.exemption.as_deref() {
        None => Some(None),
        Some("healthcare") => Some(Some(Exemption::Healthcare)),
        Some(_) => {
            errors.add(None, "exemption", "unknown exemption: use healthcare");
            None
        }
    };
    if let (Some(Some(Exemption::Healthcare)), Some(cap)) = (exemption, &cap)
        && (cap.per_day > 1 || cap.per_week > 3)
    {
        errors.add(
            None,
            "frequency_cap",
            "the healthcare-message exemption allows at most 1 a day and 3 a week",
        );
    }
    let targets = crate::targets::check(raw.targets.as_ref(), errors);
    Some(Program {
        id: raw.id.clone(),
        name: raw.name.trim().to_owned(),
        languages: languages?,
        window: window?,
        cap: cap?,
        exemption: exemption?,
        steps: steps?,
        targets: targets?,
        published_by: raw
            .published_by
            .as_deref()
            .map(str::trim)
            .filter(|by| !by.is_empty())
            .map(|by| by.chars().take(200).collect()),
    })
}

fn check_languages(raw: &[String], errors: &mut Errors<'_>) -> Option<Vec<Language>> {
    let mut languages = Vec::new();
    for name in raw {
        match name.as_str() {
            "en" => languages.push(Language::En),
            "es" => languages.push(Language::Es),
            _ => errors.add(
                None,
                "languages",
                format!("unknown language {name:?}: use en or es"),
            ),
        }
    }
    let distinct: BTreeSet<i32> = languages.iter().map(|l| *l as i32).collect();
    if languages.is_empty() {
        errors.add(None, "languages", "at least one language is required");
        return None;
    }
    if distinct.len() != languages.len() {
        errors.add(None, "languages", "a language is listed twice");
        return None;
    }
    (languages.len() == raw.len()).then_some(languages)
}

fn check_window(raw: &RawWindow, errors: &mut Errors<'_>) -> Option<ContactWindow> {
    let time = |value: &Option<String>,
                field: &str,
                default: (u32, u32),
                errors: &mut Errors<'_>| match value {
        None => NaiveTime::from_hms_opt(default.0, default.1, 0),
        Some(text) => {
            let parsed = NaiveTime::parse_from_str(text, "%H:%M").ok();
            if parsed.is_none() {
                errors.add(None, field, "must be a local time such as 08:00");
            }
            parsed
        }
    };
    let start = time(&raw.start, "contact_window.start", TCPA_START, errors);
    let end = time(&raw.end, "contact_window.end", TCPA_END, errors);
    let mut days = BTreeSet::new();
    for day in &raw.no_contact_days {
        match day.parse::<Weekday>() {
            Ok(day) => {
                days.insert(day.num_days_from_monday() as u8);
            }
            Err(_) => errors.add(
                None,
                "contact_window.no_contact_days",
                format!("unknown day {day:?}"),
            ),
        }
    }
    let mut dates = BTreeSet::new();
    for date in &raw.no_contact_dates {
        match NaiveDate::parse_from_str(date, "%Y-%m-%d") {
            Ok(date) => {
                dates.insert(date);
            }
            Err(_) => errors.add(
                None,
                "contact_window.no_contact_dates",
                format!("{date:?} is not a YYYY-MM-DD date"),
            ),
        }
    }
    let (start, end) = (start?, end?);
    let tcpa_start = NaiveTime::from_hms_opt(TCPA_START.0, TCPA_START.1, 0)?;
    let tcpa_end = NaiveTime::from_hms_opt(TCPA_END.0, TCPA_END.1, 0)?;
    let mut usable = true;
    if start >= end {
        errors.add(None, "contact_window", "is empty: start must be before end");
        usable = false;
    }
    if start < tcpa_start || end > tcpa_end {
        errors.add(
            None,
            "contact_window",
            "must stay within the TCPA hours 08:00-21:00",
        );
        usable = false;
    }
    if days.len() == 7 {
        errors.add(
            None,
            "contact_window.no_contact_days",
            "is empty: every day of the week is excluded",
        );
        usable = false;
    }
    usable.then_some(ContactWindow {
        start,
        end,
        no_contact_days: days,
        no_contact_dates: dates,
    })
}

fn check_steps(
    raw: &[RawStep],
    templates: &BTreeSet<String>,
    errors: &mut Errors<'_>,
) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut all_ok = true;
    for (index, step) in raw.iter().enumerate() {
        let label = if step.id.trim().is_empty() {
            format!("#{}", index + 1)
        } else {
            step.id.clone()
        };
        let at = Some(label.as_str());
        if !is_slug(&step.id) {
            errors.add(at, "id", "must be lower-case letters, digits and '-'");
        }
        let earlier_steps = seen.clone();
        if !seen.insert(step.id.as_str()) {
            errors.add(at, "id", "is used by an earlier step");
        }
        let offset = match parse_offset(step.offset.as_deref().unwrap_or("0d")) {
            Ok(offset) => Some(offset),
            Err(problem) => {
                errors.add(at, "offset", problem);
                None
            }
        };
        let anchor = match step.anchor.as_str() {
            "enrolled" => Some(Anchor::Enrolled),
            "therapy_start" => Some(Anchor::TherapyStart),
            "refill_due" => Some(Anchor::RefillDue),
            other => {
                match other.strip_prefix("after:") {
                    Some(earlier) if earlier_steps.contains(earlier) => {
                        Some(Anchor::AfterStep(earlier.to_owned()))
                    }
                    Some(_) => {
                        errors.add(at, "anchor", "after: must name an earlier step");
                        None
                    }
                    None => {
                        errors.add(at, "anchor", "unknown anchor: use enrolled, therapy_start, refill_due or after:<step>");
                        None
                    }
                }
            }
        };
        // Enrolment, therapy start and an earlier step's completion are only known
        // once they have happened: a step cannot come before them. A refill due date
        // is known ahead, so a reminder may come days before it.
        let forward = matches!(
            anchor,
            Some(Anchor::Enrolled | Anchor::TherapyStart | Anchor::AfterStep(_))
        );
        if forward && offset.is_some_and(|o| o < TimeDelta::zero()) {
            errors.add(
                at,
                "offset",
                "is negative on a forward anchor (enrolled, therapy_start, after:)",
            );
        }
        let expires = match step.expires.as_deref().map(parse_offset) {
            None => Some(None),
            Some(Ok(after)) if after > TimeDelta::zero() => Some(Some(after)),
            Some(Ok(_)) => {
                errors.add(
                    at,
                    "expires",
                    "must be a positive duration after the due time",
                );
                None
            }
            Some(Err(problem)) => {
                errors.add(at, "expires", problem);
                None
            }
        };
        if !templates.contains(&step.template) {
            errors.add(
                at,
                "template",
                format!(
                    "unknown template {:?}: no file templates/{}.*",
                    step.template, step.template
                ),
            );
        }
        let channels = check_channels(&step.channels, at, errors);
        let mut exit_when = BTreeSet::new();
        for rule in &step.exit_when {
            match rule.as_str() {
                "responded" => exit_when.insert(ExitRule::Responded),
                "opted_out" => exit_when.insert(ExitRule::OptedOut),
                "paused" => exit_when.insert(ExitRule::Paused),
                "closed" => exit_when.insert(ExitRule::Closed),
                "therapy_stopped" => exit_when.insert(ExitRule::TherapyStopped),
                other => {
                    errors.add(at, "exit_when", format!("unknown rule {other:?}"));
                    false
                }
            };
        }
        // Closing always ends a step, whatever the file says. An opt-out always
        // cancels what is pending on its channel; it ends the step only when listed,
        // else the step falls back to another consented channel.
        exit_when.insert(ExitRule::Closed);
        match (anchor, offset, channels, expires) {
            (Some(anchor), Some(offset), Some(channels), Some(expires)) => steps.push(Step {
                id: step.id.clone(),
                anchor,
                offset,
                expires,
                channels,
                template: step.template.clone(),
                exit_when,
            }),
            _ => all_ok = false,
        }
    }
    all_ok.then_some(steps)
}

fn check_channels(
    raw: &[RawChannel],
    at: Option<&str>,
    errors: &mut Errors<'_>,
) -> Option<Vec<ChannelPlan>> {
    if raw.is_empty() {
        errors.add(at, "channels", "a step needs at least one channel");
        return None;
    }
    let mut plans = Vec::new();
    for (index, plan) in raw.iter().enumerate() {
        let field = format!("channels[{index}]");
        let channel = match plan.channel.as_str() {
            "sms" => Some(Channel::Sms),
            "voice" => Some(Channel::Voice),
            "email" => Some(Channel::Email),
            "fax" => Some(Channel::Fax),
            "mail" => Some(Channel::Mail),
            other => {
                errors.add(
                    at,
                    &format!("{field}.channel"),
                    format!("unknown channel {other:?}"),
                );
                None
            }
        };
        let attempts = plan.attempts.unwrap_or(1);
        if !(1..=MAX_ATTEMPTS).contains(&attempts) {
            errors.add(at, &format!("{field}.attempts"), "must be 1 to 10");
        }
        let wait = match plan.wait.as_deref() {
            None if attempts > 1 => {
                errors.add(
                    at,
                    &format!("{field}.wait"),
                    "is required when attempts is above 1",
                );
                None
            }
            None => Some(TimeDelta::zero()),
            Some(text) => match parse_offset(text) {
                Ok(wait) if wait > TimeDelta::zero() => Some(wait),
                Ok(_) => {
                    errors.add(at, &format!("{field}.wait"), "must be positive");
                    None
                }
                Err(problem) => {
                    errors.add(at, &format!("{field}.wait"), problem);
                    None
                }
            },
        };
        if let (Some(channel), Some(wait), true) =
            (channel, wait, (1..=MAX_ATTEMPTS).contains(&attempts))
        {
            plans.push(ChannelPlan {
                channel,
                attempts: attempts as u32,
                wait,
            });
        }
    }
    (plans.len() == raw.len()).then_some(plans)
}

fn is_slug(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests;
