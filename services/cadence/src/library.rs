//! The programs cadence plans with, by version.
//!
//! The programs folder (a ConfigMap in a cluster) holds each program as it is
//! now. Whenever a program's file or template list changes and the whole
//! folder validates, the change is published as the program's next version:
//! its text is kept in `program_versions`, so an enrolment keeps the steps it
//! started on across edits and restarts, until a supervisor migrates it. New
//! enrolments start on the newest version. A folder that does not validate is
//! refused as a whole, logged by file and field, and the versions already
//! published keep serving.
//!
//! The folder is read again every `TOUCHPOINT_PROGRAMS_RELOAD_MS`; replicas
//! publish under an advisory lock, so each change becomes one version, and
//! each replica picks up what the others published on its next read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row as _};
use tokio_util::sync::CancellationToken;

use crate::program::{self, Catalogue, FolderError, Program, StateRules};

/// Who a version was published by when its file does not say.
pub const FOLDER: &str = "programs folder";
/// Serialises publishing across replicas (`pg_advisory_xact_lock`).
const PUBLISH_LOCK: i64 = 0x7470_7072_6f67; // "tpprog"

/// One published version, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The program.
    pub program_id: String,
    /// Its version, from 1.
    pub version: u32,
    /// When it was published.
    pub published_at: DateTime<Utc>,
    /// By whom.
    pub published_by: String,
    /// Its steps, in order.
    pub step_ids: Vec<String>,
}

/// The versions loaded at one moment: immutable, swapped whole on a reload.
#[derive(Debug, Default)]
pub struct Shelf {
    newest: Catalogue,
    newest_version: BTreeMap<String, u32>,
    versions: HashMap<(String, u32), Catalogue>,
    published: Vec<Published>,
    /// The stored versions it was read from (some may not have parsed).
    rows: usize,
}

impl Shelf {
    /// The shelf holding `programs`, each as its version 1 (tests).
    pub fn first(programs: Vec<Program>, rules: &StateRules) -> Self {
        let published = programs
            .into_iter()
            .map(|program| {
                let listed = Published {
                    program_id: program.id.clone(),
                    version: 1,
                    published_at: DateTime::<Utc>::default(),
                    published_by: FOLDER.into(),
                    step_ids: program.steps.iter().map(|s| s.id.clone()).collect(),
                };
                (listed, program)
            })
            .collect();
        Self::of(published, rules)
    }

    /// The shelf of `versions`, each with its program, under `rules`.
    fn of(versions: Vec<(Published, Program)>, rules: &StateRules) -> Self {
        let mut shelf = Self::default();
        let mut newest: BTreeMap<String, Program> = BTreeMap::new();
        for (listed, program) in versions {
            let key = (listed.program_id.clone(), listed.version);
            if shelf
                .newest_version
                .get(&listed.program_id)
                .is_none_or(|v| *v < listed.version)
            {
                shelf
                    .newest_version
                    .insert(listed.program_id.clone(), listed.version);
                newest.insert(listed.program_id.clone(), program.clone());
            }
            shelf.versions.insert(
                key,
                Catalogue::new(vec![program]).with_state_rules(rules.clone()),
            );
            shelf.published.push(listed);
        }
        shelf
            .published
            .sort_by(|a, b| (&a.program_id, a.version).cmp(&(&b.program_id, b.version)));
        shelf.newest =
            Catalogue::new(newest.into_values().collect()).with_state_rules(rules.clone());
        shelf
    }

    /// The newest version of every program.
    pub fn newest(&self) -> &Catalogue {
        &self.newest
    }

    /// The newest version of `program_id` (0: not loaded).
    pub fn newest_version(&self, program_id: &str) -> u32 {
        self.newest_version.get(program_id).copied().unwrap_or(0)
    }

    /// Version `version` of `program_id`, if loaded.
    pub fn at(&self, program_id: &str, version: u32) -> Option<&Catalogue> {
        self.versions.get(&(program_id.to_owned(), version))
    }

    /// Every version, by program then version.
    pub fn published(&self) -> &[Published] {
        &self.published
    }
}

/// A programs folder that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    /// A program in it is invalid (every problem, one a line).
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// One program as its folder holds it now.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Folder {
    program_id: String,
    text: String,
    template_ids: Vec<String>,
    published_by: String,
}

/// Every program folder in `dir`, validated together.
fn read_folder(dir: &Path) -> Result<Vec<Folder>, LibraryError> {
    let catalogue = program::load_folder(dir, false).map_err(|e| LibraryError::Invalid(e.0))?;
    let mut found = Vec::new();
    for program in catalogue.iter() {
        let folder = dir.join(&program.id);
        let file = folder.join("program.toml");
        let text = std::fs::read_to_string(&file)
            .map_err(|e| LibraryError::Invalid(format!("{}: cannot be read: {e}", program.id)))?;
        let templates = program::templates_in(&folder);
        // What is kept is what was read here, checked again: the file may
        // have changed since the folder was validated.
        let read = program::parse(&file.display().to_string(), &text, &templates)
            .map_err(|e| LibraryError::Invalid(FolderError::of(&e).0))?;
        if read.id != program.id {
            return Err(LibraryError::Invalid(format!(
                "{}: id: changed while the folder was read",
                file.display()
            )));
        }
        found.push(Folder {
            program_id: program.id.clone(),
            text,
            template_ids: templates.into_iter().collect(),
            published_by: read.published_by.unwrap_or_else(|| FOLDER.into()),
        });
    }
    Ok(found)
}

/// The programs, by version, and the folder they come from.
#[derive(Debug)]
pub struct Library {
    pool: PgPool,
    dir: PathBuf,
    rules: StateRules,
    shelf: RwLock<Arc<Shelf>>,
    /// Why the folder's latest change was refused, while it is.
    refused: RwLock<Option<String>>,
    /// The folder as last published from.
    seen: Mutex<Option<Vec<Folder>>>,
    /// The cases on each version, and when they were counted.
    counts: Mutex<Option<(Instant, CaseCounts)>>,
}

/// Cases by (program, version).
pub type CaseCounts = Arc<HashMap<(String, u32), u64>>;

/// How long a count of cases by version is reused.
const COUNT_EVERY: Duration = Duration::from_secs(30);

impl Library {
    /// Publishes what changed in `dir` and loads every version. An invalid
    /// folder is an error here: a service does not start on one.
    pub async fn open(pool: PgPool, dir: PathBuf, rules: StateRules) -> Result<Self, LibraryError> {
        let library = Self {
            pool,
            dir,
            rules,
            shelf: RwLock::new(Arc::new(Shelf::default())),
            refused: RwLock::new(None),
            seen: Mutex::new(None),
            counts: Mutex::new(None),
        };
        library.reload().await?;
        Ok(library)
    }

    /// The versions as loaded now.
    pub fn shelf(&self) -> Arc<Shelf> {
        match self.shelf.read() {
            Ok(shelf) => shelf.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Why the folder's latest change was refused, if it was and still is.
    pub fn refused(&self) -> Option<String> {
        match self.refused.read() {
            Ok(refused) => refused.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_refused(&self, problems: Option<String>) {
        match self.refused.write() {
            Ok(mut refused) => *refused = problems,
            Err(poisoned) => *poisoned.into_inner() = problems,
        }
    }

    /// Reads the folder again: publishes each program whose text or templates
    /// changed as its next version, then loads every version. The programs
    /// newly published, as (program, version).
    pub async fn reload(&self) -> Result<Vec<(String, u32)>, LibraryError> {
        let folder = match read_folder(&self.dir) {
            Ok(folder) => folder,
            Err(LibraryError::Invalid(problems)) => {
                self.set_refused(Some(problems.clone()));
                return Err(LibraryError::Invalid(problems));
            }
            Err(other) => return Err(other),
        };
        self.set_refused(None);
        // An unchanged folder publishes nothing; the versions are read again
        // only when this replica or another published one.
        let changed = {
            let seen = match self.seen.lock() {
                Ok(seen) => seen.clone(),
                Err(poisoned) => poisoned.into_inner().clone(),
            };
            seen.as_ref() != Some(&folder)
        };
        let published = if changed {
            self.publish(&folder).await?
        } else {
            Vec::new()
        };
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM program_versions")
            .fetch_one(&self.pool)
            .await?;
        if changed || usize::try_from(stored).ok() != Some(self.shelf().rows) {
            let shelf = self.load().await?;
            match self.shelf.write() {
                Ok(mut current) => *current = Arc::new(shelf),
                Err(poisoned) => *poisoned.into_inner() = Arc::new(shelf),
            }
        }
        match self.seen.lock() {
            Ok(mut seen) => *seen = Some(folder),
            Err(poisoned) => *poisoned.into_inner() = Some(folder),
        }
        Ok(published)
    }

    /// Publishes each of `folder`'s programs that differs from its newest
    /// version.
    async fn publish(&self, folder: &[Folder]) -> Result<Vec<(String, u32)>, LibraryError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PUBLISH_LOCK)
            .execute(&mut *tx)
            .await?;
        let newest: HashMap<String, (i32, String, Vec<String>)> = sqlx::query(
            "SELECT DISTINCT ON (program_id) program_id, version, program_toml, template_ids
             FROM program_versions ORDER BY program_id, version DESC",
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get("program_id")?,
                (
                    row.try_get("version")?,
                    row.try_get("program_toml")?,
                    row.try_get("template_ids")?,
                ),
            ))
        })
        .collect::<Result<_, sqlx::Error>>()?;
        let mut published = Vec::new();
        for program in folder {
            let version = match newest.get(&program.program_id) {
                Some((_, text, templates))
                    if *text == program.text && *templates == program.template_ids =>
                {
                    continue;
                }
                Some((version, ..)) => version + 1,
                None => 1,
            };
            sqlx::query(
                "INSERT INTO program_versions (program_id, version, program_toml, template_ids,
                     published_at, published_by)
                 VALUES ($1, $2, $3, $4, now(), $5)",
            )
            .bind(&program.program_id)
            .bind(version)
            .bind(&program.text)
            .bind(&program.template_ids)
            .bind(&program.published_by)
            .execute(&mut *tx)
            .await?;
            tracing::info!(
                program = %program.program_id,
                version,
                by = %program.published_by,
                "program version published"
            );
            published.push((
                program.program_id.clone(),
                u32::try_from(version).unwrap_or(0),
            ));
        }
        tx.commit().await?;
        Ok(published)
    }

    /// Every published version, parsed.
    async fn load(&self) -> Result<Shelf, LibraryError> {
        let rows = sqlx::query(
            "SELECT program_id, version, program_toml, template_ids, published_at, published_by
             FROM program_versions ORDER BY program_id, version",
        )
        .fetch_all(&self.pool)
        .await?;
        let stored = rows.len();
        let mut versions = Vec::with_capacity(rows.len());
        for row in rows {
            let program_id: String = row.try_get("program_id")?;
            let version: i32 = row.try_get("version")?;
            let text: String = row.try_get("program_toml")?;
            let templates: Vec<String> = row.try_get("template_ids")?;
            let templates: BTreeSet<String> = templates.into_iter().collect();
            let file = format!("{program_id} version {version}");
            // Each was valid when published; one this build no longer reads
            // is left out (its enrolments wait, as for an unknown program).
            let program = match program::parse(&file, &text, &templates) {
                Ok(program) => program,
                Err(errors) => {
                    tracing::error!(problems = %FolderError::of(&errors), "a published program version no longer validates");
                    continue;
                }
            };
            let listed = Published {
                program_id,
                version: u32::try_from(version).unwrap_or(0),
                published_at: row.try_get("published_at")?,
                published_by: row.try_get("published_by")?,
                step_ids: program.steps.iter().map(|s| s.id.clone()).collect(),
            };
            versions.push((listed, program));
        }
        let mut shelf = Shelf::of(versions, &self.rules);
        shelf.rows = stored;
        Ok(shelf)
    }

    /// Reads the folder every `every` until `token` is cancelled. A folder
    /// that does not validate is refused: logged, and the versions loaded
    /// keep serving.
    pub async fn run(self: Arc<Self>, every: Duration, token: CancellationToken) {
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            match self.reload().await {
                Ok(published) if published.is_empty() => {}
                Ok(published) => {
                    tracing::info!(count = published.len(), "programs reloaded");
                }
                Err(LibraryError::Invalid(problems)) => {
                    tracing::warn!(%problems, "the programs folder changed but does not validate; the published versions keep serving");
                }
                Err(error) => tracing::warn!(%error, "the programs folder could not be reloaded"),
            }
        }
    }

    /// Forgets the counts of cases by version (cases were just moved).
    pub fn forget_counts(&self) {
        match self.counts.lock() {
            Ok(mut cached) => *cached = None,
            Err(poisoned) => *poisoned.into_inner() = None,
        }
    }

    /// How many cases run on each version, by (program, version): counted
    /// at most every [`COUNT_EVERY`] (a count reads every enrolment; the
    /// figure is for people, not for planning).
    pub async fn cases_by_version(&self) -> Result<CaseCounts, sqlx::Error> {
        let cached = match self.counts.lock() {
            Ok(counts) => counts.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if let Some((at, counts)) = cached
            && at.elapsed() < COUNT_EVERY
        {
            return Ok(counts);
        }
        let rows: Vec<(String, i32, i64)> = sqlx::query_as(
            "SELECT program_id, program_version, count(*) FROM enrolments GROUP BY 1, 2",
        )
        .fetch_all(&self.pool)
        .await?;
        let counts: CaseCounts = Arc::new(
            rows.into_iter()
                .map(|(p, v, n)| {
                    (
                        (p, u32::try_from(v).unwrap_or(0)),
                        u64::try_from(n).unwrap_or(0),
                    )
                })
                .collect(),
        );
        match self.counts.lock() {
            Ok(mut cached) => *cached = Some((Instant::now(), counts.clone())),
            Err(poisoned) => *poisoned.into_inner() = Some((Instant::now(), counts.clone())),
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use touchpoint_programs::fixtures;

    use super::*;

    const ONE_STEP: &str = r#"
id = "p"
name = "P"
languages = ["en"]

[[steps]]
id = "welcome"
anchor = "enrolled"
offset = "1d"
template = "t"
channels = [{ channel = "sms" }]
"#;

    #[test]
    fn the_newest_version_is_what_new_enrolments_get_and_each_stays_reachable() {
        let first = fixtures::program(ONE_STEP, &["t"]);
        let mut second = first.clone();
        second.steps[0].id = "hello".into();
        let at = |version| Published {
            program_id: "p".into(),
            version,
            published_at: DateTime::<Utc>::default(),
            published_by: FOLDER.into(),
            step_ids: Vec::new(),
        };
        let shelf = Shelf::of(
            vec![(at(2), second), (at(1), first)],
            &fixtures::state_rules(),
        );
        assert_eq!(shelf.newest_version("p"), 2);
        assert_eq!(shelf.newest_version("q"), 0);
        let step = |version| {
            shelf
                .at("p", version)
                .and_then(|c| c.get("p"))
                .map(|p| p.steps[0].id.clone())
        };
        assert_eq!(step(1).as_deref(), Some("welcome"));
        assert_eq!(step(2).as_deref(), Some("hello"));
        assert_eq!(step(3), None);
        assert_eq!(
            shelf.newest().get("p").map(|p| p.steps[0].id.as_str()),
            Some("hello")
        );
        let versions: Vec<u32> = shelf.published().iter().map(|p| p.version).collect();
        assert_eq!(versions, [1, 2]);
    }
}
