//! Enrolments in PostgreSQL: one row per case, its enrolment as JSONB and its
//! `wake_at`, the durable timer the due loop claims.
//!
//! Every change to an enrolment happens under its row lock: consumers and the API
//! lock the rows they change (in case id order, so two batches cannot deadlock),
//! and due loops claim due rows with `FOR UPDATE SKIP LOCKED`, so replicas never
//! wake the same case at once and never wait on a consumer.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{PgConnection, PgPool, Row as _};
use touchpoint_platform::grpc::storage_unavailable;

use crate::enrolment::Enrolment;

/// How soon an enrolment whose program is not loaded here is looked at again, to
/// plan it once a release brings the program.
pub const UNKNOWN_PROGRAM_RECHECK: TimeDelta = TimeDelta::hours(1);

/// The enrolment store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A stored enrolment cannot be read back.
    #[error("the stored enrolment of case {case_id} is unreadable")]
    Corrupt {
        /// The case.
        case_id: String,
    },
    /// The database failed.
    #[error("enrolment database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// A storage failure reaches a client as `UNAVAILABLE`, which it retries.
impl From<StoreError> for tonic::Status {
    fn from(error: StoreError) -> Self {
        storage_unavailable(&error, "try again")
    }
}

/// An enrolment to write, with its timer.
#[derive(Debug)]
pub struct Saved<'a> {
    /// The case.
    pub case_id: &'a str,
    /// Its enrolment.
    pub enrolment: &'a Enrolment,
    /// When the due loop must next look at it.
    pub wake_at: Option<DateTime<Utc>>,
}

/// When the due loop must next look at `enrolment`: its own wake time, or while
/// its program is not loaded here, a while from `now`.
pub fn timer(
    enrolment: &Enrolment,
    program_loaded: bool,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if program_loaded {
        enrolment.wake_at()
    } else {
        Some(now + UNKNOWN_PROGRAM_RECHECK)
    }
}

/// Locks and reads the enrolments of `case_ids` that exist.
pub async fn lock(
    tx: &mut PgConnection,
    case_ids: &[String],
) -> Result<BTreeMap<String, Enrolment>, StoreError> {
    let rows = sqlx::query(
        "SELECT case_id, state::text AS state FROM enrolments
         WHERE case_id = ANY($1) ORDER BY case_id FOR UPDATE",
    )
    .bind(case_ids)
    .fetch_all(&mut *tx)
    .await?;
    rows.iter().map(decode).collect()
}

/// Enrolments a due loop claimed.
#[derive(Debug, Default)]
pub struct Claimed {
    /// The due enrolments, by case.
    pub due: Vec<(String, Enrolment)>,
    /// Cases whose stored enrolment cannot be read back.
    pub unreadable: Vec<String>,
}

/// Claims up to `limit` enrolments due at `now`, soonest first, skipping rows
/// another transaction holds (another replica's due loop, or a consumer).
pub async fn claim_due(
    tx: &mut PgConnection,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Claimed, StoreError> {
    let rows = sqlx::query(
        "SELECT case_id, state::text AS state FROM enrolments
         WHERE wake_at <= $1 ORDER BY wake_at LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(now)
    .bind(limit as i64)
    .fetch_all(&mut *tx)
    .await?;
    let mut claimed = Claimed::default();
    for row in &rows {
        match decode(row) {
            Ok(due) => claimed.due.push(due),
            Err(StoreError::Corrupt { case_id }) => claimed.unreadable.push(case_id),
            Err(other) => return Err(other),
        }
    }
    Ok(claimed)
}

/// Stops the timers of `case_ids`, so a row that cannot be read back is set aside
/// for an operator instead of failing every round that claims it.
pub async fn park(tx: &mut PgConnection, case_ids: &[String]) -> Result<(), StoreError> {
    if !case_ids.is_empty() {
        sqlx::query("UPDATE enrolments SET wake_at = NULL WHERE case_id = ANY($1)")
            .bind(case_ids)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// The enrolment of `case_id`, if the case is enrolled.
/// Up to `limit` cases of `program_id` running on a version other than `to`.
pub async fn on_other_versions(
    tx: &mut PgConnection,
    program_id: &str,
    to: u32,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT case_id FROM enrolments WHERE program_id = $1 AND program_version <> $2
         ORDER BY case_id LIMIT $3",
    )
    .bind(program_id)
    .bind(i32::try_from(to).unwrap_or(i32::MAX))
    .bind(limit as i64)
    .fetch_all(&mut *tx)
    .await?)
}

/// The enrolment of `case_id`, if any.
pub async fn get(pool: &PgPool, case_id: &str) -> Result<Option<Enrolment>, StoreError> {
    let row =
        sqlx::query("SELECT case_id, state::text AS state FROM enrolments WHERE case_id = $1")
            .bind(case_id)
            .fetch_optional(pool)
            .await?;
    row.as_ref()
        .map(decode)
        .transpose()
        .map(|r| r.map(|(_, e)| e))
}

/// How many bytes of state one upsert statement carries, at most (a single
/// larger state goes alone). Each pooled connection keeps a write buffer as large
/// as the largest statement it ever sent, so the bound is in bytes: a state's
/// size follows its program (about 10 KiB for 24 steps) and grows with each
/// attempt made, and a bound in rows alone let each buffer reach a megabyte.
/// Under this bound a statement still carries a dozen or more rows.
const SAVE_CHUNK_BYTES: usize = 128 * 1024;
/// How many enrolments one upsert statement carries, at most.
const SAVE_CHUNK_ROWS: usize = 100;

/// Inserts or replaces `rows`, a statement per chunk of at most
/// [`SAVE_CHUNK_ROWS`] rows and [`SAVE_CHUNK_BYTES`] of state.
pub async fn save(tx: &mut PgConnection, rows: &[Saved<'_>]) -> Result<(), StoreError> {
    let mut chunk = Chunk::default();
    for row in rows {
        let state = serde_json::to_string(row.enrolment).map_err(|_| StoreError::Corrupt {
            case_id: row.case_id.to_owned(),
        })?;
        if !chunk.fits(state.len()) {
            chunk.save(tx).await?;
        }
        chunk.push(row, state);
    }
    chunk.save(tx).await
}

/// The columns of one upsert statement.
#[derive(Default)]
struct Chunk<'a> {
    case_ids: Vec<&'a str>,
    program_ids: Vec<&'a str>,
    versions: Vec<i32>,
    states: Vec<String>,
    wakes: Vec<Option<DateTime<Utc>>>,
    bytes: usize,
}

impl<'a> Chunk<'a> {
    /// Whether a state of `bytes` may join this chunk; an empty chunk takes any.
    fn fits(&self, bytes: usize) -> bool {
        self.states.is_empty()
            || (self.states.len() < SAVE_CHUNK_ROWS && self.bytes + bytes <= SAVE_CHUNK_BYTES)
    }

    fn push(&mut self, row: &Saved<'a>, state: String) {
        self.case_ids.push(row.case_id);
        self.program_ids.push(row.enrolment.program_id.as_str());
        self.versions
            .push(i32::try_from(row.enrolment.program_version).unwrap_or(i32::MAX));
        self.bytes += state.len();
        self.states.push(state);
        self.wakes.push(row.wake_at);
    }

    /// Writes the chunk's rows, if any, and empties it.
    async fn save(&mut self, tx: &mut PgConnection) -> Result<(), StoreError> {
        if self.states.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO enrolments (case_id, program_id, program_version, state, wake_at)
             SELECT case_id, program_id, program_version, state::jsonb, wake_at
             FROM UNNEST($1::text[], $2::text[], $5::int[], $3::text[], $4::timestamptz[])
                  AS u(case_id, program_id, program_version, state, wake_at)
             ON CONFLICT (case_id) DO UPDATE
             SET program_id = EXCLUDED.program_id, program_version = EXCLUDED.program_version,
                 state = EXCLUDED.state, wake_at = EXCLUDED.wake_at, updated_at = now()",
        )
        .bind(&self.case_ids)
        .bind(&self.program_ids)
        .bind(&self.states)
        .bind(&self.wakes)
        .bind(&self.versions)
        .execute(&mut *tx)
        .await?;
        *self = Chunk::default();
        Ok(())
    }
}

fn decode(row: &sqlx::postgres::PgRow) -> Result<(String, Enrolment), StoreError> {
    let case_id: String = row.try_get("case_id")?;
    let state: String = row.try_get("state")?;
    match serde_json::from_str(&state) {
        Ok(enrolment) => Ok((case_id, enrolment)),
        Err(_) => Err(StoreError::Corrupt { case_id }),
    }
}
