//! Worklists: call tasks from dispatch, routed inbound contacts, callbacks and
//! reviews. A task is a person's (member) or waits in a queue until claimed; a
//! member's open work counts against their capacity. Completing a task
//! publishes `TaskCompleted`; a call task's outcome is its voice attempt's.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row as _};
use touchpoint_platform::contact::ContactKey;
use touchpoint_platform::envelope::{NO_CASE, new_envelope, timestamp};
use touchpoint_platform::outbox::{self, OutgoingEvent};
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{CallbackRequested, Channel, Envelope, TaskCompleted};
use uuid::Uuid;

use crate::domain::keywords::Intent;
use crate::domain::opt_out_scope::{Holder, OptOutScope};
use crate::inbound::Word;
use crate::store::StoreError;

/// What a task asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Call the patient (a voice attempt).
    Call,
    /// Answer a routed contact.
    Inbound,
    /// Call back after hours.
    Callback,
    /// Review a possible adverse event.
    AdverseEventReview,
    /// Read a message that names a keyword among other words.
    KeywordReview,
}

impl Kind {
    /// The stored and published name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Call => "call",
            Kind::Inbound => "inbound",
            Kind::Callback => "callback",
            Kind::AdverseEventReview => "adverse_event_review",
            Kind::KeywordReview => "keyword_review",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [
            Kind::Call,
            Kind::Inbound,
            Kind::Callback,
            Kind::AdverseEventReview,
            Kind::KeywordReview,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The patient was reached.
    Reached,
    /// Nobody answered.
    NoAnswer,
    /// A voicemail was left.
    Voicemail,
    /// The number is not the patient's.
    WrongNumber,
    /// A task other than a call, dealt with.
    Resolved,
    /// A keyword review: the message was an opt-out.
    OptedOut,
    /// A call: the patient was reached and declined what was offered.
    Refused,
}

impl Outcome {
    /// The stored and published name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Reached => "reached",
            Outcome::NoAnswer => "no_answer",
            Outcome::Voicemail => "voicemail",
            Outcome::WrongNumber => "wrong_number",
            Outcome::Resolved => "resolved",
            Outcome::OptedOut => "opted_out",
            Outcome::Refused => "refused",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [
            Outcome::Reached,
            Outcome::NoAnswer,
            Outcome::Voicemail,
            Outcome::WrongNumber,
            Outcome::Resolved,
            Outcome::OptedOut,
            Outcome::Refused,
        ]
        .into_iter()
        .find(|o| o.as_str() == name)
    }
}

/// Priority of adverse-event reviews; everything else is 0.
pub const HIGH_PRIORITY: i32 = 10;

/// A task to add.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// Its id.
    pub task_id: Uuid,
    /// What it asks for.
    pub kind: Kind,
    /// The case ('' for a contact no case claims).
    pub case_id: String,
    /// The channel of the contact or call ('' when none).
    pub channel: String,
    /// Whose it is; None while it waits in `queue`.
    pub member_id: Option<String>,
    /// The queue it waits in.
    pub queue: Option<String>,
    /// Higher first.
    pub priority: i32,
    /// When it is due.
    pub due_at: Option<DateTime<Utc>>,
    /// The attempt it makes or answers.
    pub attempt_id: Option<String>,
    /// The inbound contact it came from.
    pub inbound_id: Option<Uuid>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// The story it belongs to.
    pub correlation_id: String,
    /// For a call task: when the patient may be called.
    pub callable: Option<Callable>,
    /// For a call task: the number it calls, as a contact key (patient data).
    pub contact_key: Option<String>,
}

/// When a call task may be worked: the patient's contact window on the day the
/// call was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Callable {
    /// From.
    pub from: DateTime<Utc>,
    /// Until (exclusive).
    pub until: DateTime<Utc>,
    /// The patient's zone, to show the window in the patient's time.
    pub time_zone: Tz,
}

impl Callable {
    /// Whether `at` is inside the window.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.from <= at && at < self.until
    }

    /// `at` in the patient's local time, RFC 3339 with the offset.
    pub fn local(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.time_zone).to_rfc3339()
    }
}

/// Adds `task` (a call task for an attempt already tasked is ignored) and counts
/// it against its member's capacity; true when added.
pub async fn insert(tx: &mut PgConnection, task: &NewTask) -> Result<bool, StoreError> {
    let added = sqlx::query(
        "INSERT INTO tasks (task_id, kind, case_id, channel, member_id, queue, priority, due_at,
                            attempt_id, inbound_id, created_at, correlation_id,
                            callable_from, callable_until, time_zone, contact_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
         ON CONFLICT (attempt_id) WHERE kind = 'call' DO NOTHING",
    )
    .bind(task.task_id)
    .bind(task.kind.as_str())
    .bind(&task.case_id)
    .bind(&task.channel)
    .bind(&task.member_id)
    .bind(&task.queue)
    .bind(task.priority)
    .bind(task.due_at)
    .bind(&task.attempt_id)
    .bind(task.inbound_id)
    .bind(task.created_at)
    .bind(&task.correlation_id)
    .bind(task.callable.map(|c| c.from))
    .bind(task.callable.map(|c| c.until))
    .bind(task.callable.map(|c| c.time_zone.name()))
    .bind(&task.contact_key)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if added && let Some(member) = &task.member_id {
        take_capacity(tx, member).await?;
    }
    Ok(added)
}

/// One more task counts against `member`'s capacity.
async fn take_capacity(tx: &mut PgConnection, member: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE members SET open_tasks = open_tasks + 1 WHERE member_id = $1")
        .bind(member)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// A task of `member`'s is done or handed on: it no longer counts against them.
async fn release_capacity(tx: &mut PgConnection, member: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE members SET open_tasks = GREATEST(open_tasks - 1, 0) WHERE member_id = $1")
        .bind(member)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Locks and reads task `task_id` for the rest of `tx`.
async fn lock(tx: &mut PgConnection, task_id: Uuid) -> Result<Task, TaskError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM tasks WHERE task_id = $1 FOR UPDATE"
    ))
    .bind(task_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(TaskError::NotFound)?;
    Ok(task(&row)?)
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// Its id.
    pub task_id: Uuid,
    /// What it asks for.
    pub kind: Kind,
    /// The case.
    pub case_id: String,
    /// The channel.
    pub channel: String,
    /// Whose it is.
    pub member_id: Option<String>,
    /// The queue it waits in.
    pub queue: Option<String>,
    /// Higher first.
    pub priority: i32,
    /// 'open', 'claimed', 'done' or 'withdrawn'.
    pub status: String,
    /// Why its reason went away while someone worked it, or before.
    pub withdrawn_reason: Option<String>,
    /// How it ended.
    pub outcome: Option<Outcome>,
    /// When it is due.
    pub due_at: Option<DateTime<Utc>>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// The attempt it makes or answers.
    pub attempt_id: Option<String>,
    /// The inbound contact it came from.
    pub inbound_id: Option<Uuid>,
    /// For a call task: when the patient may be called.
    pub callable: Option<Callable>,
    correlation_id: String,
}

impl Task {
    /// Whether it may be worked at `now`: inside its window, or not a call.
    pub fn workable_at(&self, now: DateTime<Utc>) -> bool {
        self.callable.is_none_or(|c| c.contains(now))
    }
}

const COLUMNS: &str = "task_id, kind, case_id, channel, member_id, queue, priority, status,
     outcome, due_at, created_at, attempt_id, inbound_id, correlation_id, withdrawn_reason,
     callable_from, callable_until, time_zone";

fn task(row: &PgRow) -> Result<Task, StoreError> {
    let kind: String = row.try_get("kind")?;
    let outcome: Option<String> = row.try_get("outcome")?;
    let from: Option<DateTime<Utc>> = row.try_get("callable_from")?;
    let until: Option<DateTime<Utc>> = row.try_get("callable_until")?;
    let zone: Option<String> = row.try_get("time_zone")?;
    let callable = match (from, until) {
        (Some(from), Some(until)) => Some(Callable {
            from,
            until,
            time_zone: match zone {
                Some(zone) => zone.parse().map_err(|_| StoreError::Corrupt("time_zone"))?,
                None => Tz::UTC,
            },
        }),
        _ => None,
    };
    Ok(Task {
        callable,
        task_id: row.try_get("task_id")?,
        kind: Kind::from_name(&kind).ok_or(StoreError::Corrupt("kind"))?,
        case_id: row.try_get("case_id")?,
        channel: row.try_get("channel")?,
        member_id: row.try_get("member_id")?,
        queue: row.try_get("queue")?,
        priority: row.try_get("priority")?,
        status: row.try_get("status")?,
        withdrawn_reason: row.try_get("withdrawn_reason")?,
        outcome: outcome
            .map(|o| Outcome::from_name(&o).ok_or(StoreError::Corrupt("outcome")))
            .transpose()?,
        due_at: row.try_get("due_at")?,
        created_at: row.try_get("created_at")?,
        attempt_id: row.try_get("attempt_id")?,
        inbound_id: row.try_get("inbound_id")?,
        correlation_id: row.try_get("correlation_id")?,
    })
}

/// The program of each of `case_ids` routing knows of.
pub async fn programs_of_cases(
    pool: &PgPool,
    case_ids: &[String],
) -> Result<std::collections::HashMap<String, String>, StoreError> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT case_id, program_id FROM case_views WHERE case_id = ANY($1)")
            .bind(case_ids)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().collect())
}

/// The program of the case `task_id` is for, if routing knows both.
pub async fn program_of_task(pool: &PgPool, task_id: Uuid) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT v.program_id FROM tasks t JOIN case_views v ON v.case_id = t.case_id
         WHERE t.task_id = $1",
    )
    .bind(task_id)
    .fetch_optional(pool)
    .await?)
}

/// Tasks waiting unassigned in `queues` (every queue: `None`).
pub async fn queued(pool: &PgPool, queues: Option<&[String]>) -> Result<u32, StoreError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM tasks
         WHERE status <> 'done' AND member_id IS NULL AND queue IS NOT NULL
           AND ($1::text[] IS NULL OR queue = ANY($1))",
    )
    .bind(queues)
    .fetch_one(pool)
    .await?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Open and claimed tasks for `member_id`: theirs and those waiting in `queues`;
/// what may be worked at `now` first (a call outside the patient's window
/// waits), then highest priority, earliest due, oldest.
pub async fn worklist(
    pool: &PgPool,
    member_id: &str,
    queues: &[String],
    limit: i64,
    now: DateTime<Utc>,
) -> Result<Vec<Task>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM tasks
         WHERE status <> 'done' AND status <> 'withdrawn'
           AND (member_id = $1 OR (member_id IS NULL AND queue = ANY($2)))
         ORDER BY (callable_from IS NULL
                   OR ($4 >= callable_from AND $4 < callable_until)) DESC,
                  priority DESC, due_at ASC NULLS LAST, created_at ASC
         LIMIT $3"
    ))
    .bind(member_id)
    .bind(queues)
    .bind(limit)
    .bind(now)
    .fetch_all(pool)
    .await?;
    rows.iter().map(task).collect()
}

/// Why a task could not be claimed or completed.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// No such task.
    #[error("no such task")]
    NotFound,
    /// Someone else holds it, or it is done.
    #[error("the task is {0}")]
    Unavailable(&'static str),
    /// A call outside the patient's contact window.
    #[error(
        "outside the patient's contact window: callable from {from} until {until}, the patient's local time"
    )]
    OutsideWindow {
        /// Local time it opens, RFC 3339.
        from: String,
        /// Local time it closes, RFC 3339.
        until: String,
    },
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a client sees each task error.
impl From<TaskError> for tonic::Status {
    fn from(error: TaskError) -> Self {
        match error {
            TaskError::NotFound => Self::not_found("task_id: no such task"),
            TaskError::Unavailable(why) => {
                Self::failed_precondition(format!("task_id: the task is {why}"))
            }
            window @ TaskError::OutsideWindow { .. } => {
                Self::failed_precondition(format!("task_id: {window}"))
            }
            TaskError::Store(error) => error.into(),
        }
    }
}

impl From<sqlx::Error> for TaskError {
    fn from(error: sqlx::Error) -> Self {
        TaskError::Store(error.into())
    }
}

/// `member_id` takes `task_id` at `now`: a queued task becomes theirs (counted
/// against their capacity); their own becomes claimed. Claiming twice is the
/// same. A call task outside the patient's contact window is refused.
pub async fn claim(
    pool: &PgPool,
    task_id: Uuid,
    member_id: &str,
    now: DateTime<Utc>,
) -> Result<Task, TaskError> {
    let mut tx = pool.begin().await?;
    let found = lock(&mut tx, task_id).await?;
    match found.status.as_str() {
        "done" => return Err(TaskError::Unavailable("done")),
        "withdrawn" => return Err(TaskError::Unavailable("withdrawn")),
        _ => {}
    }
    if let Some(window) = found.callable.filter(|w| !w.contains(now)) {
        return Err(TaskError::OutsideWindow {
            from: window.local(window.from),
            until: window.local(window.until),
        });
    }
    match found.member_id.as_deref() {
        Some(owner) if owner != member_id => return Err(TaskError::Unavailable("someone else's")),
        Some(_) => {}
        None => take_capacity(&mut tx, member_id).await?,
    }
    let row = sqlx::query(&format!(
        "UPDATE tasks SET member_id = $2, status = 'claimed' WHERE task_id = $1 RETURNING {COLUMNS}"
    ))
    .bind(task_id)
    .bind(member_id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(task(&row)?)
}

/// Where a task goes when it is handed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handover {
    /// To a member's worklist.
    Member(String),
    /// To wait in a queue.
    Queue(String),
}

/// `member_id` hands `task_id` on: it leaves their worklist (and their
/// capacity, true when it counted) and waits open where `to` says.
pub async fn transfer(
    pool: &PgPool,
    task_id: Uuid,
    member_id: &str,
    to: &Handover,
) -> Result<(Task, bool), TaskError> {
    let mut tx = pool.begin().await?;
    let found = lock(&mut tx, task_id).await?;
    match found.status.as_str() {
        "done" => return Err(TaskError::Unavailable("done")),
        "withdrawn" => return Err(TaskError::Unavailable("withdrawn")),
        _ => {}
    }
    if found
        .member_id
        .as_deref()
        .is_some_and(|owner| owner != member_id)
    {
        return Err(TaskError::Unavailable("someone else's"));
    }
    let released = found.member_id.is_some();
    if released {
        release_capacity(&mut tx, member_id).await?;
    }
    let row = match to {
        Handover::Member(other) => {
            take_capacity(&mut tx, other).await?;
            sqlx::query(&format!(
                "UPDATE tasks SET member_id = $2, status = 'open' WHERE task_id = $1
                 RETURNING {COLUMNS}"
            ))
            .bind(task_id)
            .bind(other)
            .fetch_one(&mut *tx)
            .await?
        }
        Handover::Queue(queue) => {
            sqlx::query(&format!(
                "UPDATE tasks SET member_id = NULL, queue = $2, status = 'open' WHERE task_id = $1
                 RETURNING {COLUMNS}"
            ))
            .bind(task_id)
            .bind(queue)
            .fetch_one(&mut *tx)
            .await?
        }
    };
    tx.commit().await?;
    Ok((task(&row)?, released))
}

/// A callback `member_id` promised the patient of `case_id`, due at `due_at`:
/// a callback task on their worklist and `CallbackRequested` on `topic`.
pub async fn schedule_callback(
    pool: &PgPool,
    case_id: &str,
    member_id: &str,
    due_at: DateTime<Utc>,
    now: DateTime<Utc>,
    topic: &str,
) -> Result<Task, TaskError> {
    let task_id = Uuid::now_v7();
    let mut tx = pool.begin().await?;
    insert(
        &mut tx,
        &NewTask {
            task_id,
            kind: Kind::Callback,
            case_id: case_id.to_owned(),
            channel: Channel::Voice.as_str_name().to_owned(),
            member_id: Some(member_id.to_owned()),
            queue: None,
            priority: 0,
            due_at: Some(due_at),
            attempt_id: None,
            inbound_id: None,
            created_at: now,
            correlation_id: task_id.to_string(),
            callable: None,
            contact_key: None,
        },
    )
    .await?;
    let envelope = new_envelope(
        case_id,
        crate::SPEC.name,
        now,
        Payload::CallbackRequested(CallbackRequested {
            inbound_id: String::new(),
            task_id: task_id.to_string(),
            queue: String::new(),
            due_at: Some(timestamp(due_at)),
        }),
        None,
    );
    outbox::append(&mut tx, &[OutgoingEvent::new(topic, envelope)])
        .await
        .map_err(|e| TaskError::Store(e.into()))?;
    let added = lock(&mut tx, task_id).await?;
    tx.commit().await?;
    Ok(added)
}

/// The program, zone and state rule of `case_id`, as routing knows it.
pub async fn case_window(
    pool: &PgPool,
    case_id: &str,
) -> Result<Option<(String, Option<String>, Option<String>)>, StoreError> {
    Ok(
        sqlx::query_as("SELECT program_id, time_zone, us_state FROM case_views WHERE case_id = $1")
            .bind(case_id)
            .fetch_optional(pool)
            .await?,
    )
}

/// `member_id` completes `task_id` with `outcome`; `TaskCompleted` is published
/// on `topic`, with an opt-out it decides reaching what `scope` says.
/// Completing a done task again changes nothing (false).
pub async fn complete(
    pool: &PgPool,
    task_id: Uuid,
    member_id: &str,
    outcome: Outcome,
    now: DateTime<Utc>,
    topic: &str,
    scope: OptOutScope,
) -> Result<(Task, bool), TaskError> {
    let mut tx = pool.begin().await?;
    let found = lock(&mut tx, task_id).await?;
    if found.status == "done" {
        return Ok((found, false));
    }
    if found.status == "withdrawn" {
        return Err(TaskError::Unavailable("withdrawn"));
    }
    if found
        .member_id
        .as_deref()
        .is_some_and(|owner| owner != member_id)
    {
        return Err(TaskError::Unavailable("someone else's"));
    }
    let fits = match (found.kind, outcome) {
        (Kind::Call, Outcome::Resolved) => false,
        (Kind::Call, _) | (_, Outcome::Resolved) => true,
        (Kind::KeywordReview, Outcome::OptedOut) => true,
        _ => false,
    };
    if !fits {
        return Err(TaskError::Unavailable("not completed that way"));
    }
    let (done, completed) = mark_done(&mut tx, &found, member_id, outcome, now, topic).await?;
    let mut events = Vec::new();
    if outcome == Outcome::OptedOut {
        events = match done.kind {
            Kind::Call => asked_not_to_be_called(&mut tx, &done, scope, now, topic).await?,
            _ => reviewed_opt_out(&mut tx, &done, scope, now, topic).await?,
        };
    }
    events.splice(0..0, completed);
    outbox::append(&mut tx, &events)
        .await
        .map_err(|e| TaskError::Store(e.into()))?;
    tx.commit().await?;
    // Only a task that was someone's counted against them.
    Ok((done, found.member_id.is_some()))
}

/// Marks `found` (locked) done by `member_id` with `outcome` and gives its
/// holder's capacity back: the done task, and its `TaskCompleted` for `topic`
/// (none for a task about no case).
async fn mark_done(
    tx: &mut PgConnection,
    found: &Task,
    member_id: &str,
    outcome: Outcome,
    now: DateTime<Utc>,
    topic: &str,
) -> Result<(Task, Option<OutgoingEvent>), TaskError> {
    let row = sqlx::query(&format!(
        "UPDATE tasks SET member_id = $2, status = 'done', outcome = $3, completed_at = $4
         WHERE task_id = $1 RETURNING {COLUMNS}"
    ))
    .bind(found.task_id)
    .bind(member_id)
    .bind(outcome.as_str())
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let done = task(&row)?;
    if let Some(holder) = found.member_id.as_deref() {
        release_capacity(tx, holder).await?;
    }
    if done.case_id.is_empty() {
        return Ok((done, None));
    }
    let story = Envelope {
        correlation_id: done.correlation_id.clone(),
        ..Envelope::default()
    };
    let envelope = new_envelope(
        &done.case_id,
        crate::SPEC.name,
        now,
        Payload::TaskCompleted(TaskCompleted {
            task_id: done.task_id.to_string(),
            kind: done.kind.as_str().into(),
            outcome: outcome.as_str().into(),
            attempt_id: done.attempt_id.clone().unwrap_or_default(),
            coordinator_id: member_id.to_owned(),
        }),
        Some(&story).filter(|s| !s.correlation_id.is_empty()),
    );
    Ok((done, Some(OutgoingEvent::new(topic, envelope))))
}

/// A decision on a possible adverse event (`AdverseEventReported`) was
/// recorded by `by`: its review task is done, whoever held it. The
/// `TaskCompleted` to publish; nothing for a task already done, withdrawn or
/// unknown here.
pub async fn complete_review(
    tx: &mut PgConnection,
    task_id: Uuid,
    by: &str,
    now: DateTime<Utc>,
    topic: &str,
) -> Result<Option<OutgoingEvent>, TaskError> {
    let found = match lock(tx, task_id).await {
        Ok(found) => found,
        Err(TaskError::NotFound) => return Ok(None),
        Err(other) => return Err(other),
    };
    if found.kind != Kind::AdverseEventReview
        || matches!(found.status.as_str(), "done" | "withdrawn")
    {
        return Ok(None);
    }
    let member = if by.trim().is_empty() {
        found.member_id.clone().unwrap_or_default()
    } else {
        by.to_owned()
    };
    Ok(
        mark_done(tx, &found, &member, Outcome::Resolved, now, topic)
            .await?
            .1,
    )
}

/// The opt-outs a keyword review decided: one `OptOutReceived` for each case
/// that holds the message's sender now (or one about no case), for the
/// message's channel, as of its receipt.
async fn reviewed_opt_out(
    tx: &mut PgConnection,
    task: &Task,
    scope: OptOutScope,
    now: DateTime<Utc>,
    topic: &str,
) -> Result<Vec<OutgoingEvent>, TaskError> {
    let inbound_id = task
        .inbound_id
        .ok_or(TaskError::Unavailable("not from a message"))?;
    let row = sqlx::query("SELECT channel, sender, received_at FROM inbound WHERE inbound_id = $1")
        .bind(inbound_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(TaskError::Unavailable("not from a message"))?;
    let sender: Option<String> = row.try_get("sender")?;
    let channel: String = row.try_get("channel")?;
    let received_at: DateTime<Utc> = row.try_get("received_at")?;
    let channel = Channel::from_str_name(&channel)
        .ok_or(TaskError::Store(StoreError::Corrupt("inbound channel")))?;
    // An unknown sender (not a number or address) cannot be opted out.
    let Some(key) = sender.and_then(|s| ContactKey::parse_index_key(&s)) else {
        return Err(TaskError::Unavailable("from no number or address"));
    };
    let word = Word {
        intent: Intent::OptOut,
        inbound_id,
        channel,
        keyword: REVIEWED.into(),
        received_at,
    };
    opt_out_everywhere(tx, &key, &word, task, scope, now, topic).await
}

/// The opt-out a call's disposition decided ("asked not to be called"): one
/// `OptOutReceived` on voice for each case that holds the called number, as of
/// now, carrying the task's id as its `inbound_id` (the call is the contact).
async fn asked_not_to_be_called(
    tx: &mut PgConnection,
    task: &Task,
    scope: OptOutScope,
    now: DateTime<Utc>,
    topic: &str,
) -> Result<Vec<OutgoingEvent>, TaskError> {
    let key: Option<String> =
        sqlx::query_scalar("SELECT contact_key FROM tasks WHERE task_id = $1")
            .bind(task.task_id)
            .fetch_one(&mut *tx)
            .await?;
    let Some(key) = key.and_then(|k| ContactKey::parse_index_key(&k)) else {
        return Err(TaskError::Unavailable("a call to no known number"));
    };
    let word = Word {
        intent: Intent::OptOut,
        inbound_id: task.task_id,
        channel: Channel::Voice,
        keyword: CALL_DISPOSITION.into(),
        received_at: now,
    };
    opt_out_everywhere(tx, &key, &word, task, scope, now, topic).await
}

/// `word` (an opt-out made on `task`) for every case that holds `key` now
/// whose program it stops under `scope`, or once about no case when none
/// holds it.
async fn opt_out_everywhere(
    tx: &mut PgConnection,
    key: &ContactKey,
    word: &Word,
    task: &Task,
    scope: OptOutScope,
    now: DateTime<Utc>,
    topic: &str,
) -> Result<Vec<OutgoingEvent>, TaskError> {
    let rows = sqlx::query(
        "SELECT c.case_id, COALESCE(v.program_id, '') AS program_id
         FROM case_contacts c LEFT JOIN case_views v USING (case_id)
         WHERE c.contact_key = $1 ORDER BY c.case_id",
    )
    .bind(key.index_key())
    .fetch_all(&mut *tx)
    .await?;
    let mut holders = Vec::with_capacity(rows.len());
    for row in &rows {
        let case_id: String = row.try_get("case_id")?;
        let program_id: String = row.try_get("program_id")?;
        holders.push((case_id, program_id));
    }
    // It answers the task's case.
    let reach = scope.reach(holders.iter().map(|(case_id, program_id)| Holder {
        program_id,
        answered: *case_id == task.case_id,
    }));
    if holders.is_empty() {
        holders.push((NO_CASE.to_owned(), String::new()));
    }
    Ok(holders
        .iter()
        .filter_map(|(case_id, program_id)| {
            let payload = word.payload(Some(key), reach.for_case(program_id)?)?;
            let envelope = new_envelope(case_id, crate::SPEC.name, now, payload, None);
            Some(OutgoingEvent::new(topic, envelope))
        })
        .collect())
}

/// The `keyword` of an opt-out a person decided on review.
pub const REVIEWED: &str = "REVIEWED";

/// The `keyword` of an opt-out said during a call ("asked not to be called").
pub const CALL_DISPOSITION: &str = "CALL_DISPOSITION";
