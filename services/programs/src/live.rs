//! The programs folder as a service keeps it loaded: validated as a whole at
//! start, and read again while the service runs, so a changed folder (or
//! ConfigMap) takes effect without a restart. A change that does not validate
//! is refused as a whole and logged by file and field; the catalogue loaded
//! before keeps serving. State rules are read at start only.
//!
//! Cadence keeps every version of each program's steps itself (its
//! `library`); dispatch and routing, which write messages and keep windows,
//! serve the folder as it is now.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::{Catalogue, StateRules, load_dir, load_dir_with_templates};

/// How often a service reads its programs folder again by default
/// (`TOUCHPOINT_PROGRAMS_RELOAD_MS`).
pub const DEFAULT_RELOAD_MS: u64 = 5_000;

/// Every problem of a programs folder, one a line (`file: step: field: problem`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FolderError(pub String);

impl FolderError {
    /// `errors`, one a line.
    pub fn of(errors: &[crate::ProgramError]) -> Self {
        Self(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    }
}

/// The programs in `dir` (with their templates when `with_templates`), under
/// the folder's state rules.
pub fn load_folder(dir: &Path, with_templates: bool) -> Result<Catalogue, FolderError> {
    let rules = StateRules::for_programs(dir).map_err(|e| FolderError(e.to_string()))?;
    catalogue(dir, with_templates, rules)
}

fn catalogue(
    dir: &Path,
    with_templates: bool,
    rules: StateRules,
) -> Result<Catalogue, FolderError> {
    let catalogue = if with_templates {
        Catalogue::with_templates(load_dir_with_templates(dir).map_err(|e| FolderError::of(&e))?)
    } else {
        Catalogue::new(load_dir(dir).map_err(|e| FolderError::of(&e))?)
    };
    Ok(catalogue.with_state_rules(rules))
}

/// A catalogue reloaded from its folder while the service runs.
#[derive(Debug)]
pub struct LiveCatalogue {
    dir: PathBuf,
    with_templates: bool,
    rules: StateRules,
    current: RwLock<Arc<Catalogue>>,
}

impl LiveCatalogue {
    /// The programs in `dir`, validated (a service does not start on an
    /// invalid folder).
    pub fn load(dir: &Path, with_templates: bool) -> Result<Self, FolderError> {
        let rules = StateRules::for_programs(dir).map_err(|e| FolderError(e.to_string()))?;
        let loaded = catalogue(dir, with_templates, rules.clone())?;
        Ok(Self {
            dir: dir.to_owned(),
            with_templates,
            rules,
            current: RwLock::new(Arc::new(loaded)),
        })
    }

    /// A catalogue that is never reloaded (tests).
    pub fn fixed(catalogue: Catalogue) -> Self {
        Self {
            dir: PathBuf::new(),
            with_templates: false,
            rules: StateRules::default(),
            current: RwLock::new(Arc::new(catalogue)),
        }
    }

    /// The folder's state rules, as read at start.
    pub fn rules(&self) -> &StateRules {
        &self.rules
    }

    /// The programs as loaded now.
    pub fn current(&self) -> Arc<Catalogue> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the folder again; on a problem keeps what was loaded.
    pub fn reload(&self) -> Result<(), FolderError> {
        let loaded = Arc::new(catalogue(
            &self.dir,
            self.with_templates,
            self.rules.clone(),
        )?);
        match self.current.write() {
            Ok(mut current) => *current = loaded,
            Err(poisoned) => *poisoned.into_inner() = loaded,
        }
        Ok(())
    }

    /// Reloads every `every` until `token` is cancelled.
    pub async fn run(self: Arc<Self>, every: Duration, token: CancellationToken) {
        let mut refused = None;
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            match self.reload() {
                Ok(()) => refused = None,
                // Said once per refused change, not on every read.
                Err(problems) if refused.as_ref() != Some(&problems) => {
                    tracing::warn!(%problems, "the programs folder changed but does not validate; the programs loaded before keep serving");
                    refused = Some(problems);
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_that_stops_validating_leaves_the_loaded_programs_serving() {
        let dir = std::env::temp_dir().join(format!("tp-live-{}", std::process::id()));
        let folder = dir.join("p");
        std::fs::create_dir_all(folder.join("templates")).unwrap_or_else(|e| panic!("{e}"));
        for file in ["t.en.txt", "t.caregiver.en.txt"] {
            std::fs::write(folder.join("templates").join(file), "Hello")
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let program = |offset: &str| {
            format!(
                "id = \"p\"\nname = \"P\"\nlanguages = [\"en\"]\n\n[[steps]]\nid = \"s\"\nanchor = \"enrolled\"\noffset = \"{offset}\"\ntemplate = \"t\"\nchannels = [{{ channel = \"sms\" }}]\n"
            )
        };
        let offset = |live: &LiveCatalogue| {
            live.current()
                .get("p")
                .map(|p| p.steps[0].offset.num_hours())
        };
        std::fs::write(folder.join("program.toml"), program("1d"))
            .unwrap_or_else(|e| panic!("{e}"));
        let live = LiveCatalogue::load(&dir, true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(offset(&live), Some(24));
        std::fs::write(folder.join("program.toml"), program("2d"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(live.reload(), Ok(()));
        assert_eq!(offset(&live), Some(48));
        std::fs::write(folder.join("program.toml"), program("soon"))
            .unwrap_or_else(|e| panic!("{e}"));
        let refused = live.reload().err().map(|e| e.0).unwrap_or_default();
        assert!(refused.contains("offset"), "{refused}");
        assert_eq!(offset(&live), Some(48));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
