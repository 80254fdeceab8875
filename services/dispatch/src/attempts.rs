//! Attempts in PostgreSQL: claiming the ready ones, with the case's view and its
//! recent sends, and settling what became of them, a whole round in one
//! statement.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row as _};
use touchpoint_proto::v1::{Channel, Language, SuppressionReason};
use uuid::Uuid;

use crate::domain::guard::{CaseStatus, CaseView};

/// Where an attempt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for its turn (or its next try).
    Queued,
    /// Handed to a provider, outcome not yet recorded.
    Sending,
    /// Accepted by the provider (or, for voice, put on a worklist).
    Sent,
    /// The provider confirmed delivery.
    Delivered,
    /// Given up on.
    Failed,
    /// Never sent, for a reason.
    Suppressed,
}

impl State {
    /// Its name in the table and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Sending => "sending",
            State::Sent => "sent",
            State::Delivered => "delivered",
            State::Failed => "failed",
            State::Suppressed => "suppressed",
        }
    }
}

/// A claimed attempt (its destination is patient data: `Debug` omits it).
#[derive(Clone)]
pub struct Attempt {
    /// Its id.
    pub attempt_id: Uuid,
    /// The case.
    pub case_id: String,
    /// The program.
    pub program_id: String,
    /// The step.
    pub step_id: String,
    /// The template.
    pub template_id: String,
    /// The channel.
    pub channel: Channel,
    /// The language asked for.
    pub language: Language,
    /// 1-based attempt number on the channel.
    pub attempt_number: u32,
    /// Where to send it.
    pub destination: String,
    /// When the program made it due.
    pub due_at: DateTime<Utc>,
    /// The latest hand-off.
    pub not_after: DateTime<Utc>,
    /// Where it stands.
    pub state: State,
    /// Hand-offs tried so far.
    pub tries: u32,
    /// The provider of the last try, if any.
    pub provider: Option<String>,
    /// The request it came from.
    pub request_event_id: Uuid,
    /// The story it belongs to.
    pub correlation_id: String,
    /// The trace it continues.
    pub traceparent: Option<String>,
    /// What dispatch knows of the case, once it has heard of it.
    pub view: Option<CaseView>,
    /// The case's coordinator, for call tasks.
    pub coordinator_id: String,
    /// An answer to an SMS keyword: the last-moment checks pass it.
    pub keyword_reply: bool,
    /// To the caregiver: written from the caregiver's text.
    pub to_caregiver: bool,
    /// The patient's names, for the message (patient data).
    pub first_name: String,
    /// The family name (patient data).
    pub last_name: String,
    /// A coordinator's own text, written instead of a template (patient data).
    pub body: Option<String>,
    /// A coordinator's email's subject.
    pub subject: Option<String>,
    /// Who asked for it, when a person did (a coordinator's message or call).
    pub sent_by: Option<String>,
    /// A person's call: the database's real time when it was asked for.
    pub asked_at: Option<DateTime<Utc>>,
    /// A person's call: the call task's attempt it makes.
    pub calls_for: Option<Uuid>,
    /// A person's call: the provider's word on who answered the patient's leg
    /// (`human`, `machine_start`, …).
    pub answered_by: Option<String>,
}

impl Attempt {
    /// For a person's call (click to call): whose client rings first. A voice
    /// attempt without one is a call task for the worklist.
    pub fn caller(&self) -> Option<&str> {
        match self.channel {
            Channel::Voice => self.sent_by.as_deref(),
            _ => None,
        }
    }

    /// The number its caps count across cases: a phone number is a person,
    /// whichever case reaches it. A fax number is a prescriber's office that
    /// serves many patients, and an email address is not counted so.
    pub fn counted_number(&self) -> Option<&str> {
        matches!(self.channel, Channel::Sms | Channel::Voice).then_some(self.destination.as_str())
    }
}

impl std::fmt::Debug for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attempt")
            .field("attempt_id", &self.attempt_id)
            .field("case_id", &self.case_id)
            .field("channel", &self.channel)
            .field("tries", &self.tries)
            .finish_non_exhaustive()
    }
}

/// What became of an attempt in a round.
#[derive(Debug, Clone)]
pub struct Settled {
    /// The attempt.
    pub attempt_id: Uuid,
    /// Its new state.
    pub state: State,
    /// When to look again (queued only).
    pub next_try_at: Option<DateTime<Utc>>,
    /// Whether this round made a hand-off try.
    pub tried: bool,
    /// The provider that took (or refused) it.
    pub provider: Option<String>,
    /// The provider's id for the message.
    pub provider_message_id: Option<String>,
    /// Why it failed.
    pub failure_code: Option<String>,
    /// Why it was suppressed.
    pub suppression: Option<SuppressionReason>,
    /// When it went out.
    pub sent_at: Option<DateTime<Utc>>,
}

impl Settled {
    /// `attempt_id` moves to `state`, nothing else known.
    pub fn to(attempt_id: Uuid, state: State) -> Self {
        Self {
            attempt_id,
            state,
            next_try_at: None,
            tried: false,
            provider: None,
            provider_message_id: None,
            failure_code: None,
            suppression: None,
            sent_at: None,
        }
    }
}

/// The attempts store failed.
#[derive(Debug, thiserror::Error)]
pub enum AttemptsError {
    /// A stored value is not one dispatch writes.
    #[error("stored attempt {attempt_id} has an unreadable {field}")]
    Corrupt {
        /// The attempt.
        attempt_id: Uuid,
        /// The column.
        field: &'static str,
    },
    /// The database failed.
    #[error("attempts database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// A storage failure reaches a client as `UNAVAILABLE`, which it retries.
impl From<AttemptsError> for tonic::Status {
    fn from(error: AttemptsError) -> Self {
        touchpoint_platform::grpc::storage_unavailable(&error, "try again")
    }
}

const COLUMNS: &str = "a.attempt_id, a.case_id, a.program_id, a.step_id, a.template_id,
    a.channel, a.language, a.attempt_number, a.destination, a.due_at, a.not_after, a.state, a.tries,
    a.provider, a.request_event_id, a.correlation_id, a.traceparent, a.keyword_reply,
    a.to_caregiver, a.body, a.subject, a.sent_by, a.asked_at, a.calls_for, a.answered_by,
    v.case_id AS view_case, v.time_zone, v.status, v.paused_until, v.consented, v.opted_out,
    v.coordinator_id, v.first_name, v.last_name, v.us_state,
    COALESCE((SELECT max(o.opted_out_at) > max(o.opted_in_at) FROM opted_out_destinations o
              WHERE o.channel = a.channel
                AND o.destination = CASE WHEN a.channel = 'CHANNEL_EMAIL'
                                         THEN lower(a.destination) ELSE a.destination END
                AND o.program_id IN ('', a.program_id)), false) AS destination_opted_out";

/// Claims up to `limit` queued attempts whose turn has come at `now`, oldest
/// first, skipping rows another sender holds.
pub async fn claim_ready(
    tx: &mut PgConnection,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<Attempt>, AttemptsError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM attempts a LEFT JOIN case_views v USING (case_id)
         WHERE a.state = 'queued' AND a.next_try_at <= $1
         ORDER BY a.next_try_at LIMIT $2 FOR UPDATE OF a SKIP LOCKED"
    ))
    .bind(now)
    .bind(limit as i64)
    .fetch_all(&mut *tx)
    .await?;
    rows.iter().map(attempt).collect()
}

/// Locks and reads attempt `attempt_id`, if dispatch was asked for it.
pub async fn lock(
    tx: &mut PgConnection,
    attempt_id: Uuid,
) -> Result<Option<Attempt>, AttemptsError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM attempts a LEFT JOIN case_views v USING (case_id)
         WHERE a.attempt_id = $1 FOR UPDATE OF a"
    ))
    .bind(attempt_id)
    .fetch_optional(&mut *tx)
    .await?;
    row.as_ref().map(attempt).transpose()
}

/// Claims up to `limit` attempts left `sending` for longer than `timeout` (their
/// sender died between the hand-off and recording it).
pub async fn claim_stale_sending(
    tx: &mut PgConnection,
    timeout: std::time::Duration,
    limit: usize,
) -> Result<Vec<Attempt>, AttemptsError> {
    // Real time on the database's clock, not the service's: a hand-off takes
    // real seconds whatever clock the program runs on (a demo's runs faster).
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM attempts a LEFT JOIN case_views v USING (case_id)
         WHERE a.state = 'sending' AND a.updated_at < now() - make_interval(secs => $1)
         ORDER BY a.updated_at LIMIT $2 FOR UPDATE OF a SKIP LOCKED"
    ))
    .bind(timeout.as_secs_f64())
    .bind(limit as i64)
    .fetch_all(&mut *tx)
    .await?;
    rows.iter().map(attempt).collect()
}

/// What went out before, for the caps: by case and by destination.
#[derive(Debug, Default)]
pub struct RecentSends {
    /// Each case's sends: attempt id and when.
    pub by_case: BTreeMap<String, Vec<(Uuid, DateTime<Utc>)>>,
    /// Each destination's sends, from any case (patient data in the keys).
    pub by_destination: BTreeMap<String, Vec<(Uuid, DateTime<Utc>)>>,
}

impl RecentSends {
    /// When messages went to `case_id` or to `destination` (when it counts),
    /// each once, but for `same_contact` (the call task a person's call makes).
    pub fn for_attempt(
        &self,
        case_id: &str,
        destination: Option<&str>,
        same_contact: Option<Uuid>,
    ) -> Vec<DateTime<Utc>> {
        let mut seen = BTreeSet::from_iter(same_contact);
        self.by_case
            .get(case_id)
            .into_iter()
            .chain(destination.and_then(|d| self.by_destination.get(d)))
            .flatten()
            .filter(|(id, _)| seen.insert(*id))
            .map(|(_, at)| *at)
            .collect()
    }

    /// When messages went to `destination` (when it counts), from any case,
    /// but for `same_contact`.
    pub fn to_destination(
        &self,
        destination: Option<&str>,
        same_contact: Option<Uuid>,
    ) -> Vec<DateTime<Utc>> {
        destination
            .and_then(|d| self.by_destination.get(d))
            .into_iter()
            .flatten()
            .filter(|(id, _)| Some(*id) != same_contact)
            .map(|(_, at)| *at)
            .collect()
    }

    /// Counts a send made now, to `case_id` and to `number` when it counts.
    pub fn record(
        &mut self,
        attempt_id: Uuid,
        case_id: &str,
        number: Option<&str>,
        at: DateTime<Utc>,
    ) {
        self.by_case
            .entry(case_id.to_owned())
            .or_default()
            .push((attempt_id, at));
        if let Some(number) = number {
            self.by_destination
                .entry(number.to_owned())
                .or_default()
                .push((attempt_id, at));
        }
    }
}

/// When messages went out in the week before `now` to each of `case_ids` and to
/// each of `destinations` (from any case), for the caps. A keyword's answer
/// (the STOP confirmation) is the carriers' rule, not outreach: it does not
/// count.
pub async fn recent_sends(
    tx: &mut PgConnection,
    case_ids: &BTreeSet<String>,
    destinations: &BTreeSet<String>,
    now: DateTime<Utc>,
) -> Result<RecentSends, AttemptsError> {
    let ids: Vec<&str> = case_ids.iter().map(String::as_str).collect();
    let to: Vec<&str> = destinations.iter().map(String::as_str).collect();
    let rows: Vec<(Uuid, String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT attempt_id, case_id, destination, sent_at FROM attempts
         WHERE case_id = ANY($1) AND sent_at > $3 AND NOT keyword_reply
         UNION
         SELECT attempt_id, case_id, destination, sent_at FROM attempts
         WHERE destination = ANY($2) AND sent_at > $3 AND NOT keyword_reply",
    )
    .bind(&ids)
    .bind(&to)
    .bind(now - TimeDelta::days(8))
    .fetch_all(&mut *tx)
    .await?;
    let mut sends = RecentSends::default();
    for (attempt_id, case_id, destination, at) in rows {
        if case_ids.contains(&case_id) {
            sends
                .by_case
                .entry(case_id)
                .or_default()
                .push((attempt_id, at));
        }
        if destinations.contains(&destination) {
            sends
                .by_destination
                .entry(destination)
                .or_default()
                .push((attempt_id, at));
        }
    }
    Ok(sends)
}

/// Records what became of each attempt, in one statement.
pub async fn settle(tx: &mut PgConnection, settled: &[Settled]) -> Result<(), AttemptsError> {
    if settled.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = settled.iter().map(|s| s.attempt_id).collect();
    let states: Vec<&str> = settled.iter().map(|s| s.state.as_str()).collect();
    let next: Vec<Option<DateTime<Utc>>> = settled.iter().map(|s| s.next_try_at).collect();
    let tried: Vec<i32> = settled.iter().map(|s| i32::from(s.tried)).collect();
    let providers: Vec<Option<String>> = settled.iter().map(|s| s.provider.clone()).collect();
    let message_ids: Vec<Option<String>> = settled
        .iter()
        .map(|s| s.provider_message_id.clone())
        .collect();
    let codes: Vec<Option<String>> = settled.iter().map(|s| s.failure_code.clone()).collect();
    let suppressions: Vec<Option<&str>> = settled
        .iter()
        .map(|s| s.suppression.map(|r| r.as_str_name()))
        .collect();
    let sent: Vec<Option<DateTime<Utc>>> = settled.iter().map(|s| s.sent_at).collect();
    sqlx::query(
        "UPDATE attempts a SET
             state = u.state,
             next_try_at = coalesce(u.next_try_at, a.next_try_at),
             tries = a.tries + u.tried,
             provider = coalesce(u.provider, a.provider),
             provider_message_id = coalesce(u.message_id, a.provider_message_id),
             failure_code = coalesce(u.code, a.failure_code),
             suppression = coalesce(u.suppression, a.suppression),
             sent_at = coalesce(u.sent_at, a.sent_at),
             updated_at = now()
         FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::int[], $5::text[],
                     $6::text[], $7::text[], $8::text[], $9::timestamptz[])
              AS u(attempt_id, state, next_try_at, tried, provider, message_id, code,
                   suppression, sent_at)
         WHERE a.attempt_id = u.attempt_id",
    )
    .bind(&ids)
    .bind(&states)
    .bind(&next)
    .bind(&tried)
    .bind(&providers)
    .bind(&message_ids)
    .bind(&codes)
    .bind(&suppressions)
    .bind(&sent)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// One attempt as the API shows it (no patient data).
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Its id.
    pub attempt_id: Uuid,
    /// The case.
    pub case_id: String,
    /// The channel's stored name.
    pub channel: String,
    /// Where it stands.
    pub state: String,
    /// The program.
    pub program_id: String,
    /// The step.
    pub step_id: String,
    /// 1-based attempt number on the channel.
    pub attempt_number: i32,
    /// The provider of the last try.
    pub provider: Option<String>,
    /// The provider's id for the message.
    pub provider_message_id: Option<String>,
    /// Why it failed.
    pub failure_code: Option<String>,
    /// Why it was suppressed.
    pub suppression: Option<String>,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
    /// When it went out.
    pub sent_at: Option<DateTime<Utc>>,
    /// Hand-offs tried.
    pub tries: i32,
}

const SUMMARY: &str = "SELECT attempt_id, case_id, channel, state, program_id, step_id,
    attempt_number, provider, provider_message_id, failure_code, suppression, requested_at,
    sent_at, tries FROM attempts";

/// The attempt `attempt_id`, if dispatch was asked for it.
pub async fn get(pool: &PgPool, attempt_id: Uuid) -> Result<Option<Summary>, AttemptsError> {
    let row = sqlx::query(&format!("{SUMMARY} WHERE attempt_id = $1"))
        .bind(attempt_id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(summary).transpose()
}

/// The attempts of `case_id`, newest first.
pub async fn of_case(pool: &PgPool, case_id: &str) -> Result<Vec<Summary>, AttemptsError> {
    let rows = sqlx::query(&format!(
        "{SUMMARY} WHERE case_id = $1 ORDER BY requested_at DESC, attempt_id DESC LIMIT 1000"
    ))
    .bind(case_id)
    .fetch_all(pool)
    .await?;
    rows.iter().map(summary).collect()
}

fn summary(row: &PgRow) -> Result<Summary, AttemptsError> {
    Ok(Summary {
        attempt_id: row.try_get("attempt_id")?,
        case_id: row.try_get("case_id")?,
        channel: row.try_get("channel")?,
        state: row.try_get("state")?,
        program_id: row.try_get("program_id")?,
        step_id: row.try_get("step_id")?,
        attempt_number: row.try_get("attempt_number")?,
        provider: row.try_get("provider")?,
        provider_message_id: row.try_get("provider_message_id")?,
        failure_code: row.try_get("failure_code")?,
        suppression: row.try_get("suppression")?,
        requested_at: row.try_get("requested_at")?,
        sent_at: row.try_get("sent_at")?,
        tries: row.try_get("tries")?,
    })
}

fn attempt(row: &PgRow) -> Result<Attempt, AttemptsError> {
    let attempt_id: Uuid = row.try_get("attempt_id")?;
    let corrupt = |field| AttemptsError::Corrupt { attempt_id, field };
    let channel: String = row.try_get("channel")?;
    let language: String = row.try_get("language")?;
    let view_case: Option<String> = row.try_get("view_case")?;
    let view = match view_case {
        None => None,
        Some(_) => {
            let zone: String = row.try_get("time_zone")?;
            let status: String = row.try_get("status")?;
            let names = |column: &str| -> Result<BTreeSet<Channel>, AttemptsError> {
                let names: Vec<String> = row.try_get(column)?;
                Ok(names
                    .iter()
                    .filter_map(|n| Channel::from_str_name(n))
                    .collect())
            };
            Some(CaseView {
                status: match status.as_str() {
                    "active" => CaseStatus::Active,
                    "paused" => CaseStatus::Paused {
                        until: row.try_get("paused_until")?,
                    },
                    "closed" => CaseStatus::Closed,
                    _ => return Err(corrupt("status")),
                },
                time_zone: zone.parse().map_err(|_| corrupt("time_zone"))?,
                consented: names("consented")?,
                opted_out: names("opted_out")?,
                destination_opted_out: row.try_get("destination_opted_out")?,
                us_state: row.try_get("us_state")?,
            })
        }
    };
    Ok(Attempt {
        attempt_id,
        case_id: row.try_get("case_id")?,
        program_id: row.try_get("program_id")?,
        step_id: row.try_get("step_id")?,
        template_id: row.try_get("template_id")?,
        channel: Channel::from_str_name(&channel).ok_or_else(|| corrupt("channel"))?,
        language: Language::from_str_name(&language).ok_or_else(|| corrupt("language"))?,
        attempt_number: u32::try_from(row.try_get::<i32, _>("attempt_number")?)
            .map_err(|_| corrupt("attempt_number"))?,
        destination: row.try_get("destination")?,
        due_at: row.try_get("due_at")?,
        not_after: row.try_get("not_after")?,
        state: match row.try_get::<String, _>("state")?.as_str() {
            "queued" => State::Queued,
            "sending" => State::Sending,
            "sent" => State::Sent,
            "delivered" => State::Delivered,
            "failed" => State::Failed,
            "suppressed" => State::Suppressed,
            _ => return Err(corrupt("state")),
        },
        tries: u32::try_from(row.try_get::<i32, _>("tries")?).map_err(|_| corrupt("tries"))?,
        provider: row.try_get("provider")?,
        request_event_id: row.try_get("request_event_id")?,
        correlation_id: row.try_get("correlation_id")?,
        traceparent: row.try_get("traceparent")?,
        view,
        coordinator_id: row
            .try_get::<Option<String>, _>("coordinator_id")?
            .unwrap_or_default(),
        keyword_reply: row.try_get("keyword_reply")?,
        to_caregiver: row.try_get("to_caregiver")?,
        first_name: row
            .try_get::<Option<String>, _>("first_name")?
            .unwrap_or_default(),
        last_name: row
            .try_get::<Option<String>, _>("last_name")?
            .unwrap_or_default(),
        body: row.try_get("body")?,
        subject: row.try_get("subject")?,
        sent_by: row.try_get("sent_by")?,
        asked_at: row.try_get("asked_at")?,
        calls_for: row.try_get("calls_for")?,
        answered_by: row.try_get("answered_by")?,
    })
}

/// A coordinator's own message, as SendMessage records it.
#[derive(Clone)]
pub struct OwnMessage {
    /// Its id, derived from the caller's request id: a retry is the same attempt.
    pub attempt_id: Uuid,
    /// The case.
    pub case_id: String,
    /// SMS or email.
    pub channel: Channel,
    /// Where to (patient data).
    pub destination: String,
    /// What (patient data).
    pub body: String,
    /// An email's subject.
    pub subject: Option<String>,
    /// Who wrote it.
    pub sent_by: String,
    /// When it was asked for.
    pub at: DateTime<Utc>,
    /// It goes out by then or not at all.
    pub not_after: DateTime<Utc>,
}

impl std::fmt::Debug for OwnMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnMessage")
            .field("attempt_id", &self.attempt_id)
            .field("case_id", &self.case_id)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

/// The program of `case_id`, if dispatch has heard of the case.
pub async fn program_of_case(
    pool: &PgPool,
    case_id: &str,
) -> Result<Option<String>, AttemptsError> {
    Ok(
        sqlx::query_scalar("SELECT program_id FROM case_views WHERE case_id = $1")
            .bind(case_id)
            .fetch_optional(pool)
            .await?,
    )
}

/// Records `message` `queued` for the sender under `program_id`; a message
/// recorded before is left as it is.
pub async fn record_own_message(
    pool: &PgPool,
    message: &OwnMessage,
    program_id: &str,
) -> Result<(), AttemptsError> {
    sqlx::query(
        "INSERT INTO attempts (attempt_id, case_id, program_id, step_id, template_id, channel,
             language, attempt_number, destination, due_at, not_after, next_try_at,
             request_event_id, correlation_id, requested_at, keyword_reply, to_caregiver,
             body, subject, sent_by)
         VALUES ($1, $2, $3, '', '', $4, 'LANGUAGE_UNSPECIFIED', 1, $5, $6, $7, $6,
                 $1, $1::text, $6, false, false, $8, $9, $10)
         ON CONFLICT (attempt_id) DO NOTHING",
    )
    .bind(message.attempt_id)
    .bind(&message.case_id)
    .bind(program_id)
    .bind(message.channel.as_str_name())
    .bind(&message.destination)
    .bind(message.at)
    .bind(message.not_after)
    .bind(&message.body)
    .bind(&message.subject)
    .bind(&message.sent_by)
    .execute(pool)
    .await?;
    Ok(())
}

/// A person's call, as PlaceCall records it.
#[derive(Clone)]
pub struct OwnCall {
    /// Its id, derived from the caller's request id: a retry is the same attempt.
    pub attempt_id: Uuid,
    /// The case.
    pub case_id: String,
    /// The number to call (patient data).
    pub destination: String,
    /// Who is rung first: their roster id, their client's identity.
    pub caller: String,
    /// The call task's attempt it makes, if any.
    pub calls_for: Option<Uuid>,
    /// When it was asked for.
    pub at: DateTime<Utc>,
    /// It is placed by then or not at all.
    pub not_after: DateTime<Utc>,
}

impl std::fmt::Debug for OwnCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnCall")
            .field("attempt_id", &self.attempt_id)
            .field("case_id", &self.case_id)
            .finish_non_exhaustive()
    }
}

/// Why a person's call was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum CallRefused {
    /// Another call of theirs is still being placed.
    #[error("another call of yours is still being placed; try again when it rings")]
    Busy,
    /// The store.
    #[error(transparent)]
    Store(#[from] AttemptsError),
}

/// Records `call` for `program_id`, once per attempt id. A second call of the
/// same person while one is queued or being placed is refused.
pub async fn record_own_call(
    pool: &PgPool,
    call: &OwnCall,
    program_id: &str,
) -> Result<(), CallRefused> {
    let inserted = sqlx::query(
        "INSERT INTO attempts (attempt_id, case_id, program_id, step_id, template_id, channel,
             language, attempt_number, destination, due_at, not_after, next_try_at,
             request_event_id, correlation_id, requested_at, keyword_reply, to_caregiver,
             sent_by, asked_at, calls_for)
         VALUES ($1, $2, $3, '', '', 'CHANNEL_VOICE', 'LANGUAGE_UNSPECIFIED', 1, $4, $5, $6,
                 $5, $1, $1::text, $5, false, false, $7, now(), $8)
         ON CONFLICT (attempt_id) DO NOTHING",
    )
    .bind(call.attempt_id)
    .bind(&call.case_id)
    .bind(program_id)
    .bind(&call.destination)
    .bind(call.at)
    .bind(call.not_after)
    .bind(&call.caller)
    .bind(call.calls_for)
    .execute(pool)
    .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(CallRefused::Busy),
        Err(e) => Err(CallRefused::Store(e.into())),
    }
}

/// Whether `attempt_id` is a call task of `case_id` handed to the worklist:
/// one a person's call may make.
pub async fn is_call_task(
    pool: &PgPool,
    attempt_id: Uuid,
    case_id: &str,
) -> Result<bool, AttemptsError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM attempts WHERE attempt_id = $1 AND case_id = $2
             AND channel = 'CHANNEL_VOICE' AND sent_by IS NULL AND state = 'sent')",
    )
    .bind(attempt_id)
    .bind(case_id)
    .fetch_one(pool)
    .await?)
}

/// Records that a letter out for `attempt_id` reached `stage` of its journey;
/// false when it was already recorded (a repeated webhook) or the attempt is
/// not out.
pub async fn record_stage(
    tx: &mut PgConnection,
    attempt_id: Uuid,
    stage: &str,
) -> Result<bool, AttemptsError> {
    let updated = sqlx::query(
        "UPDATE attempts SET stages = array_append(stages, $2)
         WHERE attempt_id = $1 AND state IN ('sending', 'sent') AND NOT ($2 = ANY (stages))",
    )
    .bind(attempt_id)
    .bind(stage)
    .execute(&mut *tx)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Records who the provider says answered the patient's leg of a person's call.
pub async fn record_answered_by(
    pool: &PgPool,
    attempt_id: Uuid,
    answered_by: &str,
) -> Result<(), AttemptsError> {
    sqlx::query(
        "UPDATE attempts SET answered_by = $2 WHERE attempt_id = $1 AND channel = 'CHANNEL_VOICE'",
    )
    .bind(attempt_id)
    .bind(answered_by)
    .execute(pool)
    .await?;
    Ok(())
}

/// The provider's answering-machine verdict on `attempt_id`'s patient leg.
pub async fn get_answered_by(
    pool: &PgPool,
    attempt_id: Uuid,
) -> Result<Option<String>, AttemptsError> {
    Ok(
        sqlx::query_scalar("SELECT answered_by FROM attempts WHERE attempt_id = $1")
            .bind(attempt_id)
            .fetch_optional(pool)
            .await?
            .flatten(),
    )
}

/// The number a person's call `attempt_id` connects to, and where the attempt
/// stands; None if it is no person's call.
pub async fn call_to_connect(
    pool: &PgPool,
    attempt_id: Uuid,
) -> Result<Option<(String, String)>, AttemptsError> {
    Ok(sqlx::query_as(
        "SELECT destination, state FROM attempts
         WHERE attempt_id = $1 AND channel = 'CHANNEL_VOICE' AND sent_by IS NOT NULL",
    )
    .bind(attempt_id)
    .fetch_optional(pool)
    .await?)
}
