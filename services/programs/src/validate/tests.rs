use super::*;

const GOOD: &str = r#"
id = "refill-reminder"
name = "Refill reminder"
languages = ["en", "es"]

[contact_window]
start = "09:00"
end = "20:00"
no_contact_days = ["sunday"]
no_contact_dates = ["2026-12-25"]

[frequency_cap]
per_day = 1
per_week = 3

[[steps]]
id = "remind"
anchor = "refill_due"
offset = "-5d"
template = "refill-remind"
exit_when = ["responded", "paused"]
channels = [
  { channel = "sms", attempts = 2, wait = "1d" },
  { channel = "email" },
]

[[steps]]
id = "call"
anchor = "after:remind"
offset = "3d"
template = "refill-call"
channels = [{ channel = "voice" }]
"#;

fn templates() -> BTreeSet<String> {
    ["refill-remind", "refill-call"]
        .iter()
        .map(|t| (*t).to_owned())
        .collect()
}

fn problems(text: &str) -> Vec<String> {
    match parse("p.toml", text, &templates()) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn a_full_program_parses() -> Result<(), Vec<ProgramError>> {
    let program = parse("p.toml", GOOD, &templates())?;
    assert_eq!(program.languages, vec![Language::En, Language::Es]);
    assert_eq!(
        program.window.start,
        NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default()
    );
    assert!(program.window.rests_on(Weekday::Sun));
    assert_eq!(
        program.cap,
        FrequencyCap {
            per_day: 1,
            per_week: 3,
            per_24_hours: None,
        }
    );
    assert_eq!(program.steps.len(), 2);
    let remind = &program.steps[0];
    assert_eq!(remind.anchor, Anchor::RefillDue);
    assert_eq!(remind.offset, TimeDelta::days(-5));
    assert_eq!(remind.channels[0].attempts, 2);
    assert_eq!(remind.channels[1].channel, Channel::Email);
    assert!(
        remind.exit_when.contains(&ExitRule::Closed),
        "closing always ends a step"
    );
    assert!(
        !remind.exit_when.contains(&ExitRule::OptedOut),
        "an opt-out ends a step only when listed"
    );
    assert_eq!(program.steps[1].anchor, Anchor::AfterStep("remind".into()));
    Ok(())
}

#[test]
fn defaults_are_the_tcpa_window_and_a_healthcare_exemption_cap() -> Result<(), Vec<ProgramError>> {
    let minimal = r#"
id = "p"
name = "P"
languages = ["en"]
[[steps]]
id = "s"
anchor = "enrolled"
template = "refill-call"
channels = [{ channel = "sms" }]
"#;
    let program = parse("p.toml", minimal, &templates())?;
    assert_eq!(
        program.window.start,
        NaiveTime::from_hms_opt(8, 0, 0).unwrap_or_default()
    );
    assert_eq!(
        program.window.end,
        NaiveTime::from_hms_opt(21, 0, 0).unwrap_or_default()
    );
    assert_eq!(
        program.cap,
        FrequencyCap {
            per_day: 1,
            per_week: 3,
            per_24_hours: None,
        }
    );
    Ok(())
}

#[test]
fn every_error_is_listed_with_file_step_and_field() {
    let bad = r#"
id = "Bad Id"
name = ""
languages = ["en", "fr"]

[contact_window]
start = "21:00"
end = "08:00"

[[steps]]
id = "first"
anchor = "enrolled"
offset = "-2d"
template = "no-such-template"
channels = [{ channel = "pigeon" }, { channel = "sms", attempts = 3 }]

[[steps]]
id = "second"
anchor = "after:later"
template = "refill-call"
channels = [{ channel = "sms" }]

[[steps]]
id = "third"
anchor = "next_full_moon"
template = "refill-call"
exit_when = ["bored"]
channels = []
"#;
    let found = problems(bad);
    let expected = [
        "p.toml: id: must be lower-case letters",
        "p.toml: name: must not be empty",
        "p.toml: languages: unknown language \"fr\"",
        "p.toml: contact_window: is empty",
        "p.toml: step first: offset: is negative on a forward anchor",
        "p.toml: step first: template: unknown template \"no-such-template\"",
        "p.toml: step first: channels[0].channel: unknown channel \"pigeon\"",
        "p.toml: step first: channels[1].wait: is required",
        "p.toml: step second: anchor: after: must name an earlier step",
        "p.toml: step third: anchor: unknown anchor",
        "p.toml: step third: exit_when: unknown rule \"bored\"",
        "p.toml: step third: channels: a step needs at least one channel",
    ];
    for line in expected {
        assert!(
            found.iter().any(|f| f.starts_with(line)),
            "missing {line:?} in {found:#?}"
        );
    }
}

#[test]
fn an_after_step_cannot_come_before_the_step_it_follows() {
    let text = GOOD.replace("offset = \"3d\"", "offset = \"-1d\"");
    assert_eq!(
        problems(&text),
        vec![
            "p.toml: step call: offset: is negative on a forward anchor (enrolled, therapy_start, after:)"
        ]
    );
}

#[test]
fn windows_outside_tcpa_hours_or_with_no_day_left_are_refused() {
    let early = GOOD.replace("start = \"09:00\"", "start = \"07:30\"");
    assert!(
        problems(&early).iter().any(|p| p.contains("TCPA hours")),
        "{:?}",
        problems(&early)
    );
    let never = GOOD.replace(
        "no_contact_days = [\"sunday\"]",
        "no_contact_days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]",
    );
    assert!(
        problems(&never)
            .iter()
            .any(|p| p.contains("every day of the week")),
        "{:?}",
        problems(&never)
    );
}

#[test]
fn a_malformed_file_is_one_error_naming_the_file() {
    let found = problems("id = \"x\"\nname = ");
    assert_eq!(found.len(), 1);
    assert!(found[0].starts_with("p.toml: file:"), "{found:?}");
    let unknown_field = problems(&GOOD.replace(
        "template = \"refill-call\"",
        "template = \"refill-call\"\ncolour = \"red\"",
    ));
    assert!(
        unknown_field.iter().any(|p| p.contains("colour")),
        "{unknown_field:?}"
    );
}

#[test]
fn the_shipped_programs_are_valid() -> Result<(), Vec<ProgramError>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../programs");
    let programs = load_dir(&dir)?;
    let ids: Vec<&str> = programs.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, vec!["adherence", "refill-reminder"]);
    assert_eq!(programs[0].languages, vec![Language::En, Language::Es]);
    Ok(())
}

#[test]
fn a_step_expires_after_its_due_time_and_a_refill_reminder_at_the_refill_date() {
    let text = r#"
id = "p"
name = "P"
languages = ["en"]
[[steps]]
id = "soon"
anchor = "refill_due"
offset = "-5d"
template = "t"
channels = [{ channel = "sms" }]
[[steps]]
id = "late"
anchor = "refill_due"
offset = "2d"
template = "t"
channels = [{ channel = "sms" }]
[[steps]]
id = "hello"
anchor = "enrolled"
offset = "1d"
expires = "2d"
template = "t"
channels = [{ channel = "sms" }]
"#;
    let templates = ["t".to_owned()].into_iter().collect();
    let program = crate::parse("p.toml", text, &templates).unwrap_or_else(|e| panic!("{e:?}"));
    let anchor = crate::fixtures::utc("2026-05-06T14:00:00Z");
    let expiry = |id: &str| {
        program
            .steps
            .iter()
            .find(|s| s.id == id)
            .and_then(|s| s.expires_at(anchor))
    };
    assert_eq!(expiry("soon"), Some(anchor), "at the refill date");
    assert_eq!(expiry("late"), None, "after the date: only if it says so");
    assert_eq!(
        expiry("hello"),
        Some(crate::fixtures::utc("2026-05-09T14:00:00Z")),
        "due a day after its anchor, true for two more"
    );
    for bad in ["-1d", "0d", "soon"] {
        let broken = text.replace(r#"expires = "2d""#, &format!("expires = {bad:?}"));
        let errors = crate::parse("p.toml", &broken, &templates)
            .err()
            .unwrap_or_default();
        assert!(
            errors.iter().any(|e| e.field == "expires"),
            "{bad}: {errors:?}"
        );
    }
}

#[test]
fn the_healthcare_exemption_holds_a_program_to_one_a_day_and_three_a_week() {
    let text = r#"
id = "p"
name = "P"
languages = ["en"]
exemption = "healthcare"
[frequency_cap]
per_day = 2
per_week = 3
[[steps]]
id = "hello"
anchor = "enrolled"
template = "t"
channels = [{ channel = "sms" }]
"#;
    let templates = ["t".to_owned()].into_iter().collect();
    let errors = crate::parse("p.toml", text, &templates)
        .err()
        .unwrap_or_default();
    assert!(
        errors
            .iter()
            .any(|e| e.field == "frequency_cap" && e.problem.contains("healthcare")),
        "{errors:?}"
    );
    let within = text.replace("per_day = 2", "per_day = 1");
    assert!(crate::parse("p.toml", &within, &templates).is_ok());
    let unknown = within.replace(r#""healthcare""#, r#""marketing""#);
    let errors = crate::parse("p.toml", &unknown, &templates)
        .err()
        .unwrap_or_default();
    assert!(errors.iter().any(|e| e.field == "exemption"), "{errors:?}");
}

#[test]
fn targets_are_read_and_an_impossible_one_is_refused_by_field() -> Result<(), Vec<ProgramError>> {
    let with = |targets: &str| format!("{GOOD}\n[targets]\n{targets}\n");
    let program = parse(
        "p.toml",
        &with("contact_rate = 0.35\nbacklog_hours = 24"),
        &templates(),
    )?;
    assert_eq!(program.targets.contact_rate, Some(0.35));
    assert_eq!(program.targets.backlog_hours, Some(24.0));
    assert_eq!(program.targets.first_contact_hours, None);
    assert_eq!(
        problems(&with("contact_rate = 35\nfirst_contact_hours = 0")),
        [
            "p.toml: targets.contact_rate: must be a share from 0 to 1, e.g. 0.35",
            "p.toml: targets.first_contact_hours: must be hours above 0 and at most 8760",
        ]
    );
    assert_eq!(problems(&with("speed = 1")).len(), 1, "an unknown target");
    Ok(())
}
