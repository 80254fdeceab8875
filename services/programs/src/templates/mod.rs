//! A program's message templates, checked when the program is loaded and
//! rendered by dispatch.
//!
//! Files are `templates/<template>[.caregiver].<language>[.<channel>].<ext>`:
//! `welcome.en.txt` is the text for every channel without a file of its own,
//! `welcome.es.sms.txt` the Spanish SMS, `welcome.en.email.html` the HTML part of
//! the English email, `welcome.caregiver.en.txt` what a caregiver receives,
//! `welcome.es.call.txt` the script a coordinator reads on the step's call
//! (a call has a script only from a `.call.` file of its own).
//! An email's subject is set in its text with `{% set subject = "..." %}`. A
//! template may use `first_name`, `last_name` and `program_name`; an SMS only
//! `first_name` and `program_name`, the minimum necessary for a message that
//! sits on a lock screen and in carrier logs. HTML is escaped; an unknown
//! variable is an error, never an empty string.
//!
//! Every channel a step sends on (SMS, email, fax, mail) needs a text in the program's
//! first language. A missing translation falls back to it, and the rendered
//! message says so.
//!
//! A caregiver gets the minimum necessary (HIPAA): a step sent by SMS or email
//! may reach the caregiver's number or address when the patient has none, so
//! it needs a caregiver text, which may use only `program_name`: never the
//! patient's name. Naming the patient's condition or therapy is for the
//! program's reviewers to keep out of it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use minijinja::{Environment, UndefinedBehavior, context};
use touchpoint_proto::v1::{Channel, Language};

use crate::{Program, ProgramError};

/// The variables a template may use.
pub const VARIABLES: [&str; 3] = ["first_name", "last_name", "program_name"];
/// The variables an SMS may use.
pub const SMS_VARIABLES: [&str; 2] = ["first_name", "program_name"];
/// The most characters of a first name an SMS carries: a longer one is cut, so
/// a program can know how long its texts can get.
pub const SMS_FIRST_NAME_CHARS: usize = 20;
/// The variables a caregiver's text may use.
pub const CAREGIVER_VARIABLES: [&str; 1] = ["program_name"];
/// Channels whose messages may reach a caregiver.
const TO_CAREGIVERS: [Channel; 2] = [Channel::Sms, Channel::Email];
/// Channels whose messages are written from templates (voice is a call task for
/// a coordinator).
const WRITTEN: [Channel; 4] = [Channel::Sms, Channel::Email, Channel::Fax, Channel::Mail];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    Text,
    Html,
}

/// Who a message is written for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Audience {
    /// The patient.
    #[default]
    Patient,
    /// The patient's caregiver: the minimum necessary, no patient name.
    Caregiver,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    template: String,
    audience: Audience,
    language: Language,
    channel: Option<Channel>,
    part: Part,
}

/// What a message may be written with (patient data: `Debug` shows none of it).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MessageFacts {
    /// The patient's given name.
    pub first_name: String,
    /// The patient's family name.
    pub last_name: String,
    /// The program's display name.
    pub program_name: String,
    /// Who it is for: a caregiver's message is written from the caregiver's
    /// text, without the names above.
    pub audience: Audience,
}

/// A rendered message (patient data: `Debug` shows only its shape).
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// The text: the SMS body, the email's plain part, the fax body.
    pub text: String,
    /// An email's HTML part, when the template has one.
    pub html: Option<String>,
    /// The subject the template set, if any.
    pub subject: Option<String>,
    /// The language it is written in.
    pub language: Language,
    /// The language asked for had no translation; this is the program's first.
    pub fell_back: bool,
}

/// A message could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// Neither the language asked for nor the program's first has a text.
    #[error("template {template} has no text for {channel} in any usable language")]
    Missing {
        /// The template id.
        template: String,
        /// The channel's name.
        channel: &'static str,
    },
    /// The template failed while rendering (its kind only; never a value).
    #[error("template {name} failed to render: {kind}")]
    Failed {
        /// The file.
        name: String,
        /// What went wrong.
        kind: String,
    },
}

/// A program's templates, compiled.
#[derive(Debug, Clone)]
pub struct Templates {
    env: Environment<'static>,
    files: BTreeMap<Key, String>,
    default_language: Language,
}

impl Templates {
    /// Loads and checks the templates in `program_dir/templates` for `program`
    /// (whose file is `program_file`); every problem is listed.
    pub fn load(
        program_dir: &Path,
        program: &Program,
        program_file: &str,
    ) -> Result<Self, Vec<ProgramError>> {
        let mut errors = Vec::new();
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let mut files = BTreeMap::new();
        let mut variables: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let folder = program_dir.join("templates");
        let mut names: Vec<String> = std::fs::read_dir(&folder)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.path().is_file())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        for name in names {
            let shown = folder.join(&name).display().to_string();
            let problem = |field: &str, problem: String| ProgramError {
                file: shown.clone(),
                step: None,
                field: field.to_owned(),
                problem,
            };
            let key = match parse_name(&name) {
                Ok(key) => key,
                Err(why) => {
                    errors.push(problem("name", why));
                    continue;
                }
            };
            if !program.languages.contains(&key.language) {
                errors.push(problem(
                    "name",
                    "is in a language the program does not list".into(),
                ));
                continue;
            }
            let source = match std::fs::read_to_string(folder.join(&name)) {
                Ok(source) => source,
                Err(e) => {
                    errors.push(problem("file", format!("cannot be read: {e}")));
                    continue;
                }
            };
            if let Err(e) = env.add_template_owned(name.clone(), source) {
                errors.push(problem("syntax", e.to_string()));
                continue;
            }
            let used = env
                .get_template(&name)
                .map(|t| t.undeclared_variables(false))
                .unwrap_or_default();
            let allowed: &[&str] = match key.audience {
                Audience::Patient => &VARIABLES,
                Audience::Caregiver => &CAREGIVER_VARIABLES,
            };
            let unknown: Vec<&String> = used
                .iter()
                .filter(|v| !allowed.contains(&v.as_str()))
                .collect();
            if !unknown.is_empty() {
                let why = match key.audience {
                    Audience::Patient => "unknown",
                    Audience::Caregiver => "a caregiver's text may not use",
                };
                errors.push(problem(
                    "variables",
                    format!("{why} {unknown:?}: use {}", allowed.join(", ")),
                ));
            }
            variables.insert(name.clone(), used.into_iter().collect());
            files.insert(key, name);
        }
        let templates = Self {
            env,
            files,
            default_language: program.languages.first().copied().unwrap_or(Language::En),
        };
        templates.check_steps(program, program_file, &variables, &mut errors);
        templates.check_exemption(program, program_file, &mut errors);
        if errors.is_empty() {
            Ok(templates)
        } else {
            Err(errors)
        }
    }

    /// Each step's written channels have a text in the first language, and what
    /// an SMS would use carries no more than the minimum necessary.
    fn check_steps(
        &self,
        program: &Program,
        program_file: &str,
        variables: &BTreeMap<String, BTreeSet<String>>,
        errors: &mut Vec<ProgramError>,
    ) {
        let mut checked = BTreeSet::new();
        for step in &program.steps {
            for channel in step.channels.iter().map(|c| c.channel) {
                if !WRITTEN.contains(&channel) || !checked.insert((&step.template, channel)) {
                    continue;
                }
                let name = channel.short_name();
                let lang = language_code(self.default_language);
                if TO_CAREGIVERS.contains(&channel)
                    && self
                        .file_for(
                            &step.template,
                            Audience::Caregiver,
                            self.default_language,
                            channel,
                            Part::Text,
                        )
                        .is_none()
                {
                    errors.push(ProgramError {
                        file: program_file.to_owned(),
                        step: Some(step.id.clone()),
                        field: "template".into(),
                        problem: format!(
                            "no {lang} caregiver text for {name}: a caregiver may receive this step; add templates/{t}.caregiver.{lang}.txt",
                            t = step.template,
                        ),
                    });
                }
                if self
                    .file(&step.template, self.default_language, channel, Part::Text)
                    .is_none()
                {
                    errors.push(ProgramError {
                        file: program_file.to_owned(),
                        step: Some(step.id.clone()),
                        field: "template".into(),
                        problem: format!(
                            "no {lang} text for {name}: add templates/{t}.{lang}.txt or templates/{t}.{lang}.{name}.txt",
                            lang = language_code(self.default_language),
                            t = step.template,
                        ),
                    });
                }
                if channel != Channel::Sms {
                    continue;
                }
                for language in &program.languages {
                    let Some(file) = self.file(&step.template, *language, channel, Part::Text)
                    else {
                        continue;
                    };
                    let extra: Vec<&String> = variables
                        .get(file)
                        .into_iter()
                        .flatten()
                        .filter(|v| !SMS_VARIABLES.contains(&v.as_str()))
                        .collect();
                    if !extra.is_empty() {
                        errors.push(ProgramError {
                            file: program_file.to_owned(),
                            step: Some(step.id.clone()),
                            field: "template".into(),
                            problem: format!(
                                "{file} is sent by SMS and uses {extra:?}: an SMS may carry only {}",
                                SMS_VARIABLES.join(", ")
                            ),
                        });
                    }
                }
            }
        }
    }

    /// For a program that relies on the healthcare-message exemption, every text
    /// an SMS step may send, rendered with the longest values allowed, is at
    /// most 160 characters.
    fn check_exemption(
        &self,
        program: &Program,
        program_file: &str,
        errors: &mut Vec<ProgramError>,
    ) {
        if program.exemption != Some(crate::Exemption::Healthcare) {
            return;
        }
        let longest = MessageFacts {
            first_name: "W".repeat(SMS_FIRST_NAME_CHARS),
            last_name: String::new(),
            program_name: program.name.clone(),
            audience: Audience::Patient,
        };
        let mut checked = BTreeSet::new();
        for step in &program.steps {
            if !step.channels.iter().any(|c| c.channel == Channel::Sms)
                || !checked.insert(&step.template)
            {
                continue;
            }
            for audience in [Audience::Patient, Audience::Caregiver] {
                for language in &program.languages {
                    let Some(file) = self.file_for(
                        &step.template,
                        audience,
                        *language,
                        Channel::Sms,
                        Part::Text,
                    ) else {
                        continue;
                    };
                    let facts = MessageFacts {
                        audience,
                        ..longest.clone()
                    };
                    let Ok(message) = self.render(&step.template, *language, Channel::Sms, &facts)
                    else {
                        continue; // a broken template is reported where it is loaded
                    };
                    let chars = message.text.chars().count();
                    if chars > crate::Exemption::MAX_TEXT_CHARS {
                        errors.push(ProgramError {
                            file: program_file.to_owned(),
                            step: Some(step.id.clone()),
                            field: "template".into(),
                            problem: format!(
                                "{file} is {chars} characters with a {SMS_FIRST_NAME_CHARS}-character first name: the healthcare-message exemption allows {max}",
                                max = crate::Exemption::MAX_TEXT_CHARS
                            ),
                        });
                    }
                }
            }
        }
    }

    /// The patient's file for `template` in `language` on `channel`.
    fn file(
        &self,
        template: &str,
        language: Language,
        channel: Channel,
        part: Part,
    ) -> Option<&String> {
        self.file_for(template, Audience::Patient, language, channel, part)
    }

    /// The file for `template` for `audience` in `language` on `channel`: the
    /// channel's own, else the generic one.
    fn file_for(
        &self,
        template: &str,
        audience: Audience,
        language: Language,
        channel: Channel,
        part: Part,
    ) -> Option<&String> {
        // A call script is never a text written for another channel.
        let generic = (channel != Channel::Voice).then_some(None);
        [Some(Some(channel)), generic]
            .into_iter()
            .flatten()
            .find_map(|channel| {
                self.files.get(&Key {
                    template: template.to_owned(),
                    audience,
                    language,
                    channel,
                    part,
                })
            })
    }

    /// Renders `template` for `channel` in `language`, or in the program's first
    /// language when it has no translation, for `facts.audience`: a caregiver's
    /// message comes only from a caregiver text, never from the patient's.
    pub fn render(
        &self,
        template: &str,
        language: Language,
        channel: Channel,
        facts: &MessageFacts,
    ) -> Result<Message, RenderError> {
        let audience = facts.audience;
        let (language, text_file, fell_back) =
            match self.file_for(template, audience, language, channel, Part::Text) {
                Some(file) => (language, file, false),
                None => {
                    let fallback = self.default_language;
                    let file = self
                        .file_for(template, audience, fallback, channel, Part::Text)
                        .ok_or_else(|| RenderError::Missing {
                            template: template.to_owned(),
                            channel: channel.short_name(),
                        })?;
                    (fallback, file, true)
                }
            };
        // An SMS carries at most the first characters of a first name.
        let first_name: String = match channel {
            Channel::Sms => facts
                .first_name
                .chars()
                .take(SMS_FIRST_NAME_CHARS)
                .collect(),
            _ => facts.first_name.clone(),
        };
        let ctx = match audience {
            Audience::Patient => context! {
                first_name => first_name,
                last_name => facts.last_name,
                program_name => facts.program_name,
            },
            Audience::Caregiver => context! {
                program_name => facts.program_name,
            },
        };
        let failed = |name: &str, e: minijinja::Error| RenderError::Failed {
            name: name.to_owned(),
            kind: format!("{:?}", e.kind()),
        };
        let tmpl = self
            .env
            .get_template(text_file)
            .map_err(|e| failed(text_file, e))?;
        let rendered = tmpl
            .render_captured(&ctx)
            .map_err(|e| failed(text_file, e))?;
        let subject = rendered
            .state()
            .lookup("subject")
            .and_then(|v| v.as_str().map(|s| s.trim().to_owned()))
            .filter(|s| !s.is_empty());
        let text = rendered.into_output();
        let html = match (
            channel,
            self.file_for(template, audience, language, channel, Part::Html),
        ) {
            (Channel::Email, Some(file)) => Some(
                self.env
                    .get_template(file)
                    .and_then(|t| t.render(&ctx))
                    .map_err(|e| failed(file, e))?,
            ),
            _ => None,
        };
        Ok(Message {
            text: text.trim().to_owned(),
            html,
            subject,
            language,
            fell_back,
        })
    }
}

/// `<template>[.caregiver].<language>[.<channel>].<txt|html>`.
fn parse_name(name: &str) -> Result<Key, String> {
    let mut parts: Vec<&str> = name.split('.').collect();
    let audience = if parts.get(1) == Some(&"caregiver") {
        parts.remove(1);
        Audience::Caregiver
    } else {
        Audience::Patient
    };
    let (template, language, channel, ext) = match parts.as_slice() {
        [t, l, e] => (*t, *l, None, *e),
        [t, l, c, e] => (*t, *l, Some(*c), *e),
        _ => {
            return Err(
                "must be <template>[.caregiver].<language>[.<channel>].txt or .html".into(),
            );
        }
    };
    let language = match language {
        "en" => Language::En,
        "es" => Language::Es,
        _ => return Err("has an unknown language: use en or es".into()),
    };
    let channel = match channel {
        None => None,
        Some("sms") => Some(Channel::Sms),
        Some("email") => Some(Channel::Email),
        Some("fax") => Some(Channel::Fax),
        // A letter's body.
        Some("mail") => Some(Channel::Mail),
        // A call script: what the coordinator reads when making the step's call.
        Some("call") if audience == Audience::Patient => Some(Channel::Voice),
        Some("call") => return Err("a call script is read to the patient: no .caregiver.".into()),
        Some(_) => return Err("has an unknown channel: use sms, email, fax, mail or call".into()),
    };
    let part = match (ext, channel) {
        ("txt", _) => Part::Text,
        ("html", Some(Channel::Email)) => Part::Html,
        ("html", _) => return Err("only an email may have an .html part (.email.html)".into()),
        _ => return Err("must end in .txt or .html".into()),
    };
    if template.is_empty() {
        return Err("has no template id".into());
    }
    Ok(Key {
        template: template.to_owned(),
        audience,
        language,
        channel,
        part,
    })
}

fn language_code(language: Language) -> &'static str {
    match language {
        Language::Es => "es",
        _ => "en",
    }
}

impl fmt::Debug for MessageFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageFacts").finish_non_exhaustive()
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("text_chars", &self.text.chars().count())
            .field("html", &self.html.is_some())
            .field("subject", &self.subject.is_some())
            .field("language", &self.language)
            .field("fell_back", &self.fell_back)
            .finish()
    }
}

#[cfg(test)]
mod tests;
