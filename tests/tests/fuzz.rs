//! The short fuzz run: every cargo-fuzz target (the envelope decoder, the
//! program-file parser, the inbound webhooks, the keyword and adverse-event
//! screening) for a few seconds from its seed corpus. It fails if any input
//! makes one panic, and names the artifact. `fuzz/run.sh SECONDS [TARGET...]`
//! is the long run (docs/testing.md, Fuzzing).

use std::path::PathBuf;
use std::process::Command;

/// Seconds each target is fuzzed here.
const SECONDS: &str = "15";

#[test]
fn no_fuzz_target_panics_in_a_short_run() {
    let script = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/run.sh"));
    let output = Command::new("bash")
        .arg(&script)
        .arg(SECONDS)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    for target in ["envelope", "program", "webhooks", "screening"] {
        assert!(
            stdout.contains(&format!("fuzz: {target} for {SECONDS}s")),
            "{target} was not fuzzed:\n{stdout}"
        );
    }
    let executed: Vec<u64> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    assert_eq!(executed.len(), 4, "{stdout}");
    assert!(
        executed.iter().all(|&n| n > 1_000),
        "a target ran almost nothing: {executed:?}"
    );
}
