//! `touchpoint programs validate` as a user runs it.

use std::path::PathBuf;
use std::process::Command;

fn touchpoint(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_touchpoint"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run touchpoint: {e}"));
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn the_shipped_programs_validate() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../programs");
    let (ok, text) = touchpoint(&["programs", "validate", dir]);
    assert!(ok, "{text}");
    assert!(text.contains("ok  adherence (3 steps)"), "{text}");
    assert!(text.contains("2 program(s) valid"), "{text}");
}

#[test]
fn a_broken_program_fails_with_every_problem_listed() {
    let dir = std::env::temp_dir().join(format!("touchpoint-programs-{}", std::process::id()));
    let program = dir.join("broken");
    std::fs::create_dir_all(program.join("templates")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(program.join("templates/hello.en.txt"), "Hello")
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        program.join("program.toml"),
        r#"
id = "broken"
name = "Broken"
languages = ["en"]
[contact_window]
start = "20:00"
end = "09:00"
[[steps]]
id = "hello"
anchor = "enrolled"
offset = "-1d"
template = "goodbye"
channels = [{ channel = "telegram" }]
"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (ok, text) = touchpoint(&["programs", "validate", &dir.to_string_lossy()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!ok, "a broken program was accepted: {text}");
    let file: PathBuf = program.join("program.toml");
    let file = file.display().to_string();
    for expected in [
        format!("{file}: contact_window: is empty"),
        format!("{file}: step hello: offset: is negative"),
        format!("{file}: step hello: template: unknown template \"goodbye\""),
        format!("{file}: step hello: channels[0].channel: unknown channel \"telegram\""),
    ] {
        assert!(text.contains(&expected), "missing {expected:?} in\n{text}");
    }
    assert!(text.contains("4 problem(s) found"), "{text}");
}
