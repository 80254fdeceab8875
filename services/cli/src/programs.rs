//! `touchpoint programs validate DIR`: the cadence service's own validation, run
//! before a program goes live.

use std::path::Path;

use touchpoint_programs::load_dir;

/// Validates every program under `dir`; prints each problem and fails if any.
pub fn validate(dir: &str) -> anyhow::Result<()> {
    match load_dir(Path::new(dir)) {
        Ok(programs) => {
            for program in &programs {
                println!("ok  {} ({} steps)", program.id, program.steps.len());
            }
            println!("{} program(s) valid", programs.len());
            Ok(())
        }
        Err(errors) => {
            for error in &errors {
                println!("{error}");
            }
            anyhow::bail!("{} problem(s) found", errors.len())
        }
    }
}
