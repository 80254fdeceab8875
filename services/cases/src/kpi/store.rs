//! The projection's tables: loading the facts a batch needs, writing back what
//! it changed and the figures it added, in set-based statements; reading the
//! figures and the backlog for `GetKpis`.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgConnection, PgPool, Row as _};
use touchpoint_proto::v1::Envelope;
use touchpoint_proto::v1::envelope::Payload;

use super::fold::{AttemptFacts, CaseFacts, FlagChange, Fold, OpenItem, OpenKind};
use crate::store::StoreError;
use crate::timeline::Cursor;

/// What a batch loaded, to write back only what it changed.
#[derive(Debug, Default)]
pub struct Loaded {
    cases: HashMap<String, CaseFacts>,
    attempts: HashMap<String, AttemptFacts>,
}

/// The cursor, locked for this transaction (one projector pass at a time).
pub async fn lock_cursor(tx: &mut PgConnection) -> Result<Cursor, StoreError> {
    let (writer_xid, position): (i64, i64) =
        sqlx::query_as("SELECT writer_xid, position FROM kpi_cursor FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
    Ok(Cursor::new(writer_xid, position))
}

/// The cursor as it stands, without a lock.
pub async fn cursor<'e>(db: impl sqlx::PgExecutor<'e>) -> Result<Cursor, StoreError> {
    let (writer_xid, position): (i64, i64) =
        sqlx::query_as("SELECT writer_xid, position FROM kpi_cursor")
            .fetch_one(db)
            .await?;
    Ok(Cursor::new(writer_xid, position))
}

/// Moves the cursor past `cursor`, the last entry folded, recorded at `through`.
pub async fn advance(
    tx: &mut PgConnection,
    cursor: Cursor,
    through: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (writer_xid, position) = cursor.parts();
    sqlx::query("UPDATE kpi_cursor SET writer_xid = $1, position = $2, through = $3")
        .bind(writer_xid)
        .bind(position)
        .bind(through)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Empties the projection and moves its cursor to the start.
pub async fn reset(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    // The cursor first: a pass under way finishes before the tables empty.
    sqlx::query(
        "UPDATE kpi_cursor SET writer_xid = 0, position = 0, generation = generation + 1,
             through = 'epoch'",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "TRUNCATE kpi_daily, kpi_daily_all, kpi_programs, kpi_cases, kpi_attempts, kpi_open,
             ae_flags",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Forgets attempts made before `before` (their day in UTC); returns how
/// many. Their figures stay; only a very late answer goes uncredited.
pub async fn prune_attempts(pool: &PgPool, before: DateTime<Utc>) -> Result<u64, StoreError> {
    Ok(
        sqlx::query("DELETE FROM kpi_attempts WHERE settled AND attempted_on < $1")
            .bind(before.date_naive())
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

/// The facts `events` read: their cases, the attempts they name, the work
/// open on their cases.
pub async fn load(
    tx: &mut PgConnection,
    events: &[&Envelope],
) -> Result<(Fold, Loaded), StoreError> {
    let case_ids: Vec<String> = events
        .iter()
        .map(|e| e.case_id.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let attempt_ids: Vec<String> = events
        .iter()
        .filter_map(|e| attempt_named(e.payload.as_ref()?))
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut fold = Fold::default();
    for row in sqlx::query(
        "SELECT case_id, program_id, opened_at, first_sent_at, first_contact_at, opted_out
         FROM kpi_cases WHERE case_id = ANY($1)",
    )
    .bind(&case_ids)
    .fetch_all(&mut *tx)
    .await?
    {
        fold.cases.insert(
            row.try_get("case_id")?,
            CaseFacts {
                program_id: row.try_get("program_id")?,
                opened_at: row.try_get("opened_at")?,
                first_sent_at: row.try_get("first_sent_at")?,
                first_contact_at: row.try_get("first_contact_at")?,
                opted_out: row.try_get("opted_out")?,
            },
        );
    }
    for row in sqlx::query(
        "SELECT attempt_id, case_id, channel, due_at, attempted_on, settled, reached
         FROM kpi_attempts WHERE attempt_id = ANY($1)",
    )
    .bind(&attempt_ids)
    .fetch_all(&mut *tx)
    .await?
    {
        fold.attempts.insert(
            row.try_get("attempt_id")?,
            AttemptFacts {
                case_id: row.try_get("case_id")?,
                channel: row.try_get("channel")?,
                due_at: row.try_get("due_at")?,
                attempted_on: row.try_get("attempted_on")?,
                settled: row.try_get("settled")?,
                reached: row.try_get("reached")?,
            },
        );
    }
    // A review task may cover the flags of several cases (a caregiver's text
    // about two patients): open work is found by its task as well.
    let task_ids: Vec<&str> = events
        .iter()
        .filter_map(|e| match e.payload.as_ref()? {
            Payload::TaskCompleted(done) => Some(done.task_id.as_str()),
            Payload::TaskWithdrawn(withdrawn) => Some(withdrawn.task_id.as_str()),
            Payload::AdverseEventReported(decided) => Some(decided.flag_key()),
            _ => None,
        })
        .collect();
    for row in sqlx::query(
        "SELECT kind, key, case_id, channel, since, due_at FROM kpi_open
         WHERE case_id = ANY($1) OR key = ANY($2)",
    )
    .bind(&case_ids)
    .bind(&task_ids)
    .fetch_all(&mut *tx)
    .await?
    {
        let kind: String = row.try_get("kind")?;
        let Some(kind) = OpenKind::from_name(&kind) else {
            return Err(StoreError::Corrupt);
        };
        fold.open.insert(
            (kind, row.try_get("key")?),
            Some(OpenItem {
                case_id: row.try_get("case_id")?,
                channel: row.try_get("channel")?,
                since: row.try_get("since")?,
                due_at: row.try_get("due_at")?,
            }),
        );
    }
    let loaded = Loaded {
        cases: fold.cases.clone(),
        attempts: fold.attempts.clone(),
    };
    Ok((fold, loaded))
}

/// The attempt an event names, if any.
fn attempt_named(payload: &Payload) -> Option<&str> {
    Some(match payload {
        Payload::OutreachRequested(p) => &p.attempt_id,
        Payload::AttemptSent(p) => &p.attempt_id,
        Payload::AttemptFailed(p) => &p.attempt_id,
        Payload::AttemptSuppressed(p) => &p.attempt_id,
        Payload::CallTaskRequested(p) => &p.attempt_id,
        Payload::InboundReceived(p) => &p.in_reply_to_attempt_id,
        Payload::TaskCompleted(p) => &p.attempt_id,
        _ => return None,
    })
}

/// Writes back what `fold` changed of `loaded`, and adds its figures.
pub async fn save(tx: &mut PgConnection, fold: &Fold, loaded: &Loaded) -> Result<(), StoreError> {
    save_cases(tx, fold, loaded).await?;
    save_attempts(tx, fold, loaded).await?;
    save_open(tx, fold).await?;
    save_flags(tx, fold).await?;
    add_figures(tx, fold).await
}

/// Records what happened to possible adverse events, in order. A decision
/// replaces a bare review; a review never replaces a decision; the first
/// decision stands.
async fn save_flags(tx: &mut PgConnection, fold: &Fold) -> Result<(), StoreError> {
    let program_of = |case_id: &str| {
        fold.cases
            .get(case_id)
            .map_or("", |c| c.program_id.as_str())
            .to_owned()
    };
    // Flags are rare: a statement each.
    for change in &fold.flags {
        match change {
            FlagChange::Raised {
                case_id,
                key,
                inbound_id,
                received_at,
                due_at,
            } => {
                sqlx::query(
                    "INSERT INTO ae_flags (case_id, key, program_id, inbound_id, received_at,
                         due_at)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                )
                .bind(case_id)
                .bind(key)
                .bind(program_of(case_id))
                .bind(inbound_id)
                .bind(received_at)
                .bind(due_at)
                .execute(&mut *tx)
                .await?;
            }
            FlagChange::Decided {
                case_id,
                key,
                inbound_id,
                aware_at,
                decision,
                at,
                by,
                safety_reference,
                reason,
            } => {
                sqlx::query(
                    "INSERT INTO ae_flags AS f (case_id, key, program_id, inbound_id,
                         received_at, due_at, decision, decided_at, decided_by,
                         safety_reference, reason)
                     VALUES ($1, $2, $3, $4, $5, $5 + interval '24 hours', $6, $7, $8, $9, $10)
                     ON CONFLICT (case_id, key) DO UPDATE SET decision = EXCLUDED.decision,
                         decided_at = EXCLUDED.decided_at, decided_by = EXCLUDED.decided_by,
                         safety_reference = EXCLUDED.safety_reference,
                         reason = EXCLUDED.reason
                     WHERE f.decision IS NULL OR f.decision = 'reviewed'",
                )
                .bind(case_id)
                .bind(key)
                .bind(program_of(case_id))
                .bind(inbound_id)
                .bind(aware_at)
                .bind(decision)
                .bind(at)
                .bind(by)
                .bind(safety_reference)
                .bind(reason)
                .execute(&mut *tx)
                .await?;
            }
            FlagChange::Reviewed { key, at, by } => {
                sqlx::query(
                    "UPDATE ae_flags SET decision = 'reviewed', decided_at = $2, decided_by = $3
                     WHERE key = $1 AND decision IS NULL",
                )
                .bind(key)
                .bind(at)
                .bind(by)
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    Ok(())
}

async fn save_cases(tx: &mut PgConnection, fold: &Fold, loaded: &Loaded) -> Result<(), StoreError> {
    let changed: Vec<(&String, &CaseFacts)> = fold
        .cases
        .iter()
        .filter(|(id, facts)| loaded.cases.get(*id) != Some(*facts))
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = changed.iter().map(|(id, _)| id.as_str()).collect();
    let programs: Vec<&str> = changed.iter().map(|(_, c)| c.program_id.as_str()).collect();
    let opened: Vec<DateTime<Utc>> = changed.iter().map(|(_, c)| c.opened_at).collect();
    let first_sent: Vec<Option<DateTime<Utc>>> =
        changed.iter().map(|(_, c)| c.first_sent_at).collect();
    let first_contact: Vec<Option<DateTime<Utc>>> =
        changed.iter().map(|(_, c)| c.first_contact_at).collect();
    let opted_out: Vec<bool> = changed.iter().map(|(_, c)| c.opted_out).collect();
    sqlx::query(
        "INSERT INTO kpi_cases (case_id, program_id, opened_at, first_sent_at, first_contact_at,
             opted_out)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[],
             $5::timestamptz[], $6::bool[])
         ON CONFLICT (case_id) DO UPDATE SET first_sent_at = EXCLUDED.first_sent_at,
             first_contact_at = EXCLUDED.first_contact_at, opted_out = EXCLUDED.opted_out",
    )
    .bind(&ids)
    .bind(&programs)
    .bind(&opened)
    .bind(&first_sent)
    .bind(&first_contact)
    .bind(&opted_out)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO kpi_programs (program_id) SELECT DISTINCT p FROM UNNEST($1::text[]) AS p
         ON CONFLICT DO NOTHING",
    )
    .bind(&programs)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn save_attempts(
    tx: &mut PgConnection,
    fold: &Fold,
    loaded: &Loaded,
) -> Result<(), StoreError> {
    let changed: Vec<(&String, &AttemptFacts)> = fold
        .attempts
        .iter()
        .filter(|(id, facts)| loaded.attempts.get(*id) != Some(*facts))
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    let program_of = |case_id: &str| {
        fold.cases
            .get(case_id)
            .map_or("", |c| c.program_id.as_str())
    };
    let ids: Vec<&str> = changed.iter().map(|(id, _)| id.as_str()).collect();
    let cases: Vec<&str> = changed.iter().map(|(_, a)| a.case_id.as_str()).collect();
    let programs: Vec<&str> = changed
        .iter()
        .map(|(_, a)| program_of(&a.case_id))
        .collect();
    let channels: Vec<&str> = changed.iter().map(|(_, a)| a.channel.as_str()).collect();
    let due: Vec<Option<DateTime<Utc>>> = changed.iter().map(|(_, a)| a.due_at).collect();
    let attempted: Vec<Option<NaiveDate>> = changed.iter().map(|(_, a)| a.attempted_on).collect();
    let settled: Vec<bool> = changed.iter().map(|(_, a)| a.settled).collect();
    let reached: Vec<bool> = changed.iter().map(|(_, a)| a.reached).collect();
    sqlx::query(
        "INSERT INTO kpi_attempts (attempt_id, case_id, program_id, channel, due_at,
             attempted_on, settled, reached)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[],
             $5::timestamptz[], $6::date[], $7::bool[], $8::bool[])
         ON CONFLICT (attempt_id) DO UPDATE SET due_at = EXCLUDED.due_at,
             attempted_on = EXCLUDED.attempted_on, settled = EXCLUDED.settled,
             reached = EXCLUDED.reached",
    )
    .bind(&ids)
    .bind(&cases)
    .bind(&programs)
    .bind(&channels)
    .bind(&due)
    .bind(&attempted)
    .bind(&settled)
    .bind(&reached)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn save_open(tx: &mut PgConnection, fold: &Fold) -> Result<(), StoreError> {
    let mut closed_kinds = Vec::new();
    let mut closed_keys = Vec::new();
    let mut kinds = Vec::new();
    let mut keys = Vec::new();
    let mut cases = Vec::new();
    let mut programs = Vec::new();
    let mut channels = Vec::new();
    let mut since = Vec::new();
    let mut due = Vec::new();
    for ((kind, key), item) in &fold.open {
        match item {
            None => {
                closed_kinds.push(kind.as_str());
                closed_keys.push(key.as_str());
            }
            Some(item) => {
                kinds.push(kind.as_str());
                keys.push(key.as_str());
                cases.push(item.case_id.as_str());
                programs.push(
                    fold.cases
                        .get(&item.case_id)
                        .map_or("", |c| c.program_id.as_str()),
                );
                channels.push(item.channel.as_str());
                since.push(item.since);
                due.push(item.due_at);
            }
        }
    }
    if !closed_keys.is_empty() {
        sqlx::query(
            "DELETE FROM kpi_open o USING UNNEST($1::text[], $2::text[]) AS c(kind, key)
             WHERE o.kind = c.kind AND o.key = c.key",
        )
        .bind(&closed_kinds)
        .bind(&closed_keys)
        .execute(&mut *tx)
        .await?;
    }
    if !keys.is_empty() {
        sqlx::query(
            "INSERT INTO kpi_open (kind, key, case_id, program_id, channel, since, due_at)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                 $6::timestamptz[], $7::timestamptz[])
             ON CONFLICT (kind, key) DO NOTHING",
        )
        .bind(&kinds)
        .bind(&keys)
        .bind(&cases)
        .bind(&programs)
        .bind(&channels)
        .bind(&since)
        .bind(&due)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

async fn add_figures(tx: &mut PgConnection, fold: &Fold) -> Result<(), StoreError> {
    if fold.figures.is_empty() {
        return Ok(());
    }
    let mut programs = Vec::with_capacity(fold.figures.len());
    let mut days = Vec::with_capacity(fold.figures.len());
    let mut channels = Vec::with_capacity(fold.figures.len());
    let mut names = Vec::with_capacity(fold.figures.len());
    let mut values = Vec::with_capacity(fold.figures.len());
    for ((program, day, channel, name), value) in &fold.figures {
        programs.push(program.as_str());
        days.push(*day);
        channels.push(channel.as_str());
        names.push(name.as_str());
        values.push(*value);
    }
    sqlx::query(
        "INSERT INTO kpi_daily (program_id, day, channel, figure, value)
         SELECT * FROM UNNEST($1::text[], $2::date[], $3::text[], $4::text[], $5::int8[])
         ON CONFLICT (program_id, day, channel, figure)
         DO UPDATE SET value = kpi_daily.value + EXCLUDED.value",
    )
    .bind(&programs)
    .bind(&days)
    .bind(&channels)
    .bind(&names)
    .bind(&values)
    .execute(&mut *tx)
    .await?;
    // And over every program.
    sqlx::query(
        "INSERT INTO kpi_daily_all (day, channel, figure, value)
         SELECT day, channel, figure, sum(value)
         FROM UNNEST($1::date[], $2::text[], $3::text[], $4::int8[])
              AS f(day, channel, figure, value)
         GROUP BY 1, 2, 3
         ON CONFLICT (day, figure, channel)
         DO UPDATE SET value = kpi_daily_all.value + EXCLUDED.value",
    )
    .bind(&days)
    .bind(&channels)
    .bind(&names)
    .bind(&values)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// One stored daily figure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FigureRow {
    /// The program.
    pub program_id: String,
    /// The day.
    pub day: NaiveDate,
    /// The channel ("" for a case's figures).
    pub channel: String,
    /// The figure's name.
    pub figure: String,
    /// Its value.
    pub value: i64,
}

/// What `figures` reads.
#[derive(Debug, Clone, Copy)]
pub struct Selection<'a> {
    /// Only these programs; `None`: every program.
    pub programs: Option<&'a [String]>,
    /// Only these channels (a case's figures always); `None`: every channel.
    pub channels: Option<&'a [String]>,
    /// Only these figures; `None`: every one.
    pub figures: Option<&'a [String]>,
    /// First and last day.
    pub from: NaiveDate,
    /// See `from`.
    pub to: NaiveDate,
    /// Summed over the programs (program id "").
    pub sum_programs: bool,
    /// Summed over the channels (channel "").
    pub sum_channels: bool,
}

/// The figures `selection` names.
pub async fn figures(
    pool: &PgPool,
    selection: Selection<'_>,
) -> Result<Vec<FigureRow>, StoreError> {
    let program = if selection.sum_programs {
        "''::text"
    } else {
        "program_id"
    };
    let channel = if selection.sum_channels {
        "''::text"
    } else {
        "channel"
    };
    // Summed over programs that are every program the projection has seen:
    // the totals kept for that.
    let every_program =
        selection.sum_programs
            && match selection.programs {
                None => true,
                Some(programs) => sqlx::query_scalar::<_, bool>(
                    "SELECT NOT EXISTS (SELECT 1 FROM kpi_programs WHERE program_id <> ALL($1))",
                )
                .bind(programs)
                .fetch_one(pool)
                .await?,
            };
    // The sums over every program, or the rows of the programs asked for.
    let (table, program, programs) = if every_program {
        ("kpi_daily_all", "''::text", "")
    } else {
        (
            "kpi_daily",
            program,
            "AND ($5::text[] IS NULL OR program_id = ANY($5))",
        )
    };
    let sql = format!(
        "SELECT {program} AS program_id, day, {channel} AS channel, figure,
             sum(value)::int8 AS value
         FROM {table}
         WHERE day BETWEEN $1 AND $2
           AND ($3::text[] IS NULL OR channel = '' OR channel = ANY($3))
           AND ($4::text[] IS NULL OR figure = ANY($4)) {programs}
         GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
    );
    let mut query = sqlx::query(&sql)
        .bind(selection.from)
        .bind(selection.to)
        .bind(selection.channels)
        .bind(selection.figures);
    if !every_program {
        query = query.bind(selection.programs);
    }
    let rows = query.fetch_all(pool).await?;
    rows.iter().map(figure_row).collect()
}

fn figure_row(row: &sqlx::postgres::PgRow) -> Result<FigureRow, StoreError> {
    Ok(FigureRow {
        program_id: row.try_get("program_id")?,
        day: row.try_get("day")?,
        channel: row.try_get("channel")?,
        figure: row.try_get("figure")?,
        value: row.try_get("value")?,
    })
}

/// The backlog at `now`: touchpoints due and not attempted, by program,
/// channel and age ("under_1h", "1h_to_24h", "over_24h").
pub async fn backlog(
    pool: &PgPool,
    programs: Option<&[String]>,
    now: DateTime<Utc>,
) -> Result<Vec<(String, String, String, i64)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT program_id, channel,
             CASE WHEN due_at > $1 - interval '1 hour' THEN 'under_1h'
                  WHEN due_at > $1 - interval '24 hours' THEN '1h_to_24h'
                  ELSE 'over_24h' END AS age,
             count(*)
         FROM kpi_attempts
         WHERE NOT settled AND due_at <= $1 AND ($2::text[] IS NULL OR program_id = ANY($2))
         GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    )
    .bind(now)
    .bind(programs)
    .fetch_all(pool)
    .await?)
}

/// Work open at `now` by program and kind: how much, how much is past due,
/// and how much falls due within `soon`.
pub async fn open_work(
    pool: &PgPool,
    programs: Option<&[String]>,
    now: DateTime<Utc>,
    soon: chrono::TimeDelta,
) -> Result<Vec<(String, String, i64, i64, i64)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT program_id, kind, count(*), count(*) FILTER (WHERE due_at < $1),
             count(*) FILTER (WHERE due_at >= $1 AND due_at < $3)
         FROM kpi_open WHERE ($2::text[] IS NULL OR program_id = ANY($2))
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(now)
    .bind(programs)
    .bind(now + soon)
    .fetch_all(pool)
    .await?)
}

/// When the last folded entry was recorded, and how many entries (up to
/// `cap`) are recorded past the cursor.
pub async fn position(pool: &PgPool, cap: i64) -> Result<(Option<DateTime<Utc>>, i64), StoreError> {
    let (writer_xid, position, through): (i64, i64, DateTime<Utc>) =
        sqlx::query_as("SELECT writer_xid, position, through FROM kpi_cursor")
            .fetch_one(pool)
            .await?;
    let behind: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM timeline
             WHERE (writer_xid, position) > ($1, $2) LIMIT $3) AS t",
    )
    .bind(writer_xid)
    .bind(position)
    .bind(cap)
    .fetch_one(pool)
    .await?;
    Ok((Some(through).filter(|t| t.timestamp() > 0), behind))
}
