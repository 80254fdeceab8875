use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::parse;

/// A program folder of a test's own, removed when dropped.
struct Folder(PathBuf);

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn folder(files: &[(&str, &str)]) -> Folder {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let root = std::env::temp_dir().join(format!("tp-templates-{}-{n}", std::process::id()));
    let templates = root.join("templates");
    std::fs::create_dir_all(&templates).unwrap_or_else(|e| panic!("{e}"));
    for (name, text) in files {
        std::fs::write(templates.join(name), text).unwrap_or_else(|e| panic!("{e}"));
    }
    Folder(root)
}

const PROGRAM: &str = r#"
id = "p"
name = "Patient Support"
languages = ["en", "es"]

[[steps]]
id = "hello"
anchor = "enrolled"
template = "hello"
channels = [{ channel = "sms" }, { channel = "email" }, { channel = "fax" }]
"#;

fn program() -> Program {
    let ids = ["hello".to_owned()].into_iter().collect();
    parse("p.toml", PROGRAM, &ids).unwrap_or_else(|e| panic!("{e:?}"))
}

fn load(files: &[(&str, &str)]) -> Result<Templates, Vec<String>> {
    let folder = folder(files);
    Templates::load(&folder.0, &program(), "p.toml")
        .map_err(|errors| errors.iter().map(ToString::to_string).collect())
}

fn facts() -> MessageFacts {
    MessageFacts {
        first_name: "Ana".into(),
        last_name: "<Ruiz & Co>".into(),
        program_name: "Patient Support".into(),
        audience: Audience::Patient,
    }
}

/// What a caregiver receives for the test program's step.
const CAREGIVER: (&str, &str) = (
    "hello.caregiver.en.txt",
    "A message for you from {{ program_name }}. Reply or call us.",
);

const GOOD: [(&str, &str); 6] = [
    CAREGIVER,
    (
        "hello.en.txt",
        "Hi {{ first_name }}, from {{ program_name }}.",
    ),
    ("hello.es.sms.txt", "Hola {{ first_name }}."),
    (
        "hello.en.email.txt",
        "{% set subject = \"Welcome to \" ~ program_name %}Dear {{ first_name }} {{ last_name }},",
    ),
    (
        "hello.en.email.html",
        "<p>Dear {{ first_name }} {{ last_name }}</p>",
    ),
    (
        "hello.en.fax.txt",
        "Fax for {{ first_name }} {{ last_name }}",
    ),
];

#[test]
fn the_channels_own_text_wins_and_the_generic_one_serves_the_rest() -> Result<(), RenderError> {
    let templates = load(&GOOD).unwrap_or_else(|e| panic!("{e:?}"));
    let sms = templates.render("hello", Language::En, Channel::Sms, &facts())?;
    assert_eq!(sms.text, "Hi Ana, from Patient Support.");
    assert_eq!((sms.html, sms.subject, sms.fell_back), (None, None, false));
    let spanish = templates.render("hello", Language::Es, Channel::Sms, &facts())?;
    assert_eq!(spanish.text, "Hola Ana.");
    assert_eq!(spanish.language, Language::Es);
    Ok(())
}

#[test]
fn an_email_has_a_subject_a_text_and_an_escaped_html_part() -> Result<(), RenderError> {
    let templates = load(&GOOD).unwrap_or_else(|e| panic!("{e:?}"));
    let email = templates.render("hello", Language::En, Channel::Email, &facts())?;
    assert_eq!(email.subject.as_deref(), Some("Welcome to Patient Support"));
    assert_eq!(
        email.text, "Dear Ana <Ruiz & Co>,",
        "plain text is not escaped"
    );
    assert_eq!(
        email.html.as_deref(),
        Some("<p>Dear Ana &lt;Ruiz &amp; Co&gt;</p>"),
        "HTML is"
    );
    Ok(())
}

#[test]
fn a_missing_translation_falls_back_to_the_first_language_and_says_so() -> Result<(), RenderError> {
    let templates = load(&GOOD).unwrap_or_else(|e| panic!("{e:?}"));
    let fax = templates.render("hello", Language::Es, Channel::Fax, &facts())?;
    assert_eq!(fax.language, Language::En);
    assert!(fax.fell_back);
    assert_eq!(fax.text, "Fax for Ana <Ruiz & Co>");
    assert_eq!(
        templates.render("nope", Language::En, Channel::Sms, &facts()),
        Err(RenderError::Missing {
            template: "nope".into(),
            channel: "sms"
        })
    );
    Ok(())
}

#[test]
fn every_problem_is_listed_by_file_and_field() {
    let errors = load(&[
        ("hello.en.txt", "Hi {{ first_name }} {{ ssn }}"),
        ("hello.fr.txt", "Bonjour"),
        ("hello.en.voice.txt", "Call"),
        ("hello.en.sms.html", "<b>no</b>"),
        ("hello.en.email.txt", "{% if %}"),
        ("hello.en.md", "nope"),
    ])
    .err()
    .unwrap_or_default();
    let expect = [
        "hello.en.txt: variables: unknown [\"ssn\"]",
        "hello.fr.txt: name: has an unknown language",
        "hello.en.voice.txt: name: has an unknown channel",
        "hello.en.sms.html: name: only an email may have an .html part",
        "hello.en.email.txt: syntax:",
        "hello.en.md: name: must end in .txt or .html",
    ];
    for expected in expect {
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{expected:?} not in {errors:#?}"
        );
    }
}

#[test]
fn an_sms_may_carry_no_more_than_the_first_name() {
    let errors = load(&[("hello.en.txt", "Hi {{ first_name }} {{ last_name }}")])
        .err()
        .unwrap_or_default();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("p.toml: step hello: template: hello.en.txt is sent by SMS")),
        "{errors:#?}"
    );
    // With an SMS text of its own, the generic text may carry the full name.
    let ok = load(&[
        ("hello.en.txt", "Dear {{ first_name }} {{ last_name }}"),
        ("hello.en.sms.txt", "Hi {{ first_name }}"),
        CAREGIVER,
    ]);
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn each_channel_of_a_step_needs_a_text_in_the_first_language() {
    let errors = load(&[
        ("hello.en.sms.txt", "Hi"),
        ("hello.es.txt", "Hola"),
        CAREGIVER,
    ])
    .err()
    .unwrap_or_default();
    for channel in ["email", "fax"] {
        assert!(
            errors
                .iter()
                .any(|e| e.contains(&format!("step hello: template: no en text for {channel}"))),
            "{channel}: {errors:#?}"
        );
    }
    assert_eq!(errors.len(), 2, "{errors:#?}");
}

#[test]
fn a_caregivers_text_holds_no_patient_name() -> Result<(), RenderError> {
    let templates = load(&GOOD).unwrap_or_else(|e| panic!("{e:?}"));
    let to_caregiver = MessageFacts {
        audience: Audience::Caregiver,
        ..facts()
    };
    for channel in [Channel::Sms, Channel::Email] {
        let message = templates.render("hello", Language::Es, channel, &to_caregiver)?;
        assert_eq!(
            message.text,
            "A message for you from Patient Support. Reply or call us."
        );
        assert!(!message.text.contains("Ana") && !message.text.contains("Ruiz"));
        assert_eq!(message.html, None, "never the patient's HTML part");
        assert!(message.fell_back, "the first language's caregiver text");
    }
    Ok(())
}

#[test]
fn a_program_whose_steps_can_reach_a_caregiver_needs_caregiver_texts_without_names() {
    let without = load(&GOOD[1..]).err().unwrap_or_default();
    for channel in ["sms", "email"] {
        assert!(
            without.iter().any(|e| e.contains(&format!(
                "step hello: template: no en caregiver text for {channel}"
            ))),
            "{channel}: {without:#?}"
        );
    }
    assert!(
        !without.iter().any(|e| e.contains("caregiver text for fax")),
        "a fax goes to the prescriber: {without:#?}"
    );
    let mut named = GOOD;
    named[0] = ("hello.caregiver.en.txt", "About {{ first_name }}'s therapy");
    let errors = load(&named).err().unwrap_or_default();
    assert!(
        errors.iter().any(|e| e.contains(
            "hello.caregiver.en.txt: variables: a caregiver's text may not use [\"first_name\"]"
        )),
        "{errors:#?}"
    );
}

#[test]
fn a_language_the_program_does_not_list_is_refused() {
    let text = PROGRAM.replace(r#"languages = ["en", "es"]"#, r#"languages = ["en"]"#);
    let ids = ["hello".to_owned()].into_iter().collect();
    let program = parse("p.toml", &text, &ids).unwrap_or_else(|e| panic!("{e:?}"));
    let folder = folder(&[("hello.en.txt", "Hi"), ("hello.es.txt", "Hola"), CAREGIVER]);
    let errors = Templates::load(&folder.0, &program, "p.toml")
        .err()
        .unwrap_or_default();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "name");
}

#[test]
fn the_shipped_programs_templates_load() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../programs");
    let loaded = crate::load_dir_with_templates(&dir).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(loaded.len(), 2);
}

#[test]
fn debug_output_carries_no_patient_data() -> Result<(), RenderError> {
    let templates = load(&GOOD).unwrap_or_else(|e| panic!("{e:?}"));
    let message = templates.render("hello", Language::En, Channel::Sms, &facts())?;
    let shown = format!("{message:?} {:?}", facts());
    assert!(!shown.contains("Ana"), "{shown}");
    assert!(!shown.contains("Ruiz"), "{shown}");
    Ok(())
}

#[test]
fn an_exempt_programs_texts_fit_in_160_characters_with_the_longest_first_name() {
    let text = PROGRAM.replace(
        r#"languages = ["en", "es"]"#,
        "languages = [\"en\", \"es\"]\nexemption = \"healthcare\"",
    );
    let ids = ["hello".to_owned()].into_iter().collect();
    let program = parse("p.toml", &text, &ids).unwrap_or_else(|e| panic!("{e:?}"));
    // 141 characters of its own, and a first name that may be 20.
    let long = format!("Hi {{{{ first_name }}}}! {}", "x".repeat(136));
    let folder = folder(&[
        (
            "hello.en.txt",
            "Hi {{ first_name }}, from {{ program_name }}.",
        ),
        ("hello.es.sms.txt", long.as_str()),
        ("hello.en.email.txt", "Dear {{ first_name }}"),
        CAREGIVER,
    ]);
    let errors = Templates::load(&folder.0, &program, "p.toml")
        .err()
        .unwrap_or_default();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .problem
            .contains("hello.es.sms.txt is 161 characters with a 20-character first name"),
        "{errors:?}"
    );
    // A longer name is cut to 20 characters in an SMS, and only there.
    let short = folder_with_ok(&program);
    let named = MessageFacts {
        first_name: "Maximiliana-Guadalupe Fernanda".into(),
        ..facts()
    };
    let sms = short
        .render("hello", Language::En, Channel::Sms, &named)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sms.text, "Hi Maximiliana-Guadalup, from Patient Support.");
}

fn folder_with_ok(program: &Program) -> Templates {
    let folder = folder(&[
        (
            "hello.en.txt",
            "Hi {{ first_name }}, from {{ program_name }}.",
        ),
        CAREGIVER,
    ]);
    Templates::load(&folder.0, program, "p.toml").unwrap_or_else(|e| panic!("{e:?}"))
}

#[test]
fn a_call_has_a_script_only_from_a_call_file_of_its_own() -> Result<(), RenderError> {
    let without = load(&GOOD).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(matches!(
        without.render("hello", Language::En, Channel::Voice, &facts()),
        Err(RenderError::Missing { .. })
    ));
    let mut files = GOOD.to_vec();
    files.push((
        "hello.es.call.txt",
        "Hola, ¿hablo con {{ first_name }} {{ last_name }}?",
    ));
    files.push(("hello.en.call.txt", "Hello, is this {{ first_name }}?"));
    let with = load(&files).unwrap_or_else(|e| panic!("{e:?}"));
    let script = with.render("hello", Language::Es, Channel::Voice, &facts())?;
    assert_eq!(script.text, "Hola, ¿hablo con Ana <Ruiz & Co>?");
    assert_eq!(script.language, Language::Es);
    let mut caregiver = GOOD.to_vec();
    caregiver.push(("hello.caregiver.en.call.txt", "Hello"));
    assert!(load(&caregiver).is_err(), "a caregiver has no call script");
    Ok(())
}
