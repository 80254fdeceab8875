//! The binary refuses a bad configuration at start, naming the variable.

use std::process::Command;

#[test]
fn bad_config_value_fails_at_start_naming_the_variable() {
    for (var, value) in [
        ("TOUCHPOINT_GRPC_ADDR", "not-an-address"),
        ("KAFKA_BROKERS", "no-port-here"),
        ("TOUCHPOINT_OUTBOX_BATCH", "zero"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_touchpoint-cases"))
            .env(var, value)
            .output()
            .unwrap_or_else(|e| panic!("cannot run the binary: {e}"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{var}={value} was accepted");
        assert!(stderr.contains(var), "stderr does not name {var}: {stderr}");
        assert!(
            !stderr.contains(value),
            "stderr echoes the value of {var}: {stderr}"
        );
    }
}
