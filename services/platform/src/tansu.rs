//! Where the Tansu broker binary is, for local runs and tests.
//!
//! Tansu is the Kafka-protocol broker used where no Kafka distribution can be had;
//! `deploy/setup.sh` installs it with `cargo install`.

/// The Tansu binary: `TANSU_BIN`, else `tansu` in cargo's bin directory, else on PATH.
pub fn binary() -> String {
    if let Ok(path) = std::env::var("TANSU_BIN") {
        return path;
    }
    let home = std::env::var("CARGO_HOME")
        .ok()
        .or_else(|| std::env::var("HOME").ok().map(|h| format!("{h}/.cargo")));
    if let Some(home) = home {
        let candidate = format!("{home}/bin/tansu");
        if std::path::Path::new(&candidate).exists() {
            return candidate;
        }
    }
    "tansu".to_owned()
}
