//! Writes routed contacts in batches ([`Batcher`]): a burst of calls costs one
//! statement and one commit, not one each. A contact is answered only once
//! its batch has committed.
//!
//! A provider message id seen before (in the table or earlier in the batch)
//! is not written again; its caller is told so and answers with the first
//! routing.

use std::collections::HashSet;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use touchpoint_platform::outbox::{NOTIFY_RELAY, OutboxColumns, OutgoingEvent};
use uuid::Uuid;

use crate::batcher::Batcher;
use crate::store::StoreError;
use crate::tasks::NewTask;

/// The most contacts one statement writes.
const MAX_BATCH: usize = 256;

/// The batch statement ([`write`]), made once.
static WRITE_BATCH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH new AS (
                 INSERT INTO inbound (inbound_id, channel, provider_message_id, case_ids, rule,
                                      member_id, queue, received_at, sender)
                 SELECT i, ch, p,
                        CASE WHEN c = '' THEN '{{}}'::text[] ELSE string_to_array(c, E'\\x1f') END,
                        r, m, q, at, s
                 FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::text[], $7::text[], $8::timestamptz[], $31::text[])
                      AS x(i, ch, p, c, r, m, q, at, s)
                 ON CONFLICT (provider_message_id) DO NOTHING
                 RETURNING inbound_id),
             added AS (
                 INSERT INTO tasks (task_id, kind, case_id, channel, member_id, queue, priority,
                                    due_at, attempt_id, inbound_id, created_at, correlation_id)
                 SELECT * FROM UNNEST($9::uuid[], $10::text[], $11::text[], $12::text[],
                                      $13::text[], $14::text[], $15::int4[], $16::timestamptz[],
                                      $17::text[], $18::uuid[], $19::timestamptz[], $20::text[])
                      AS t(task_id, kind, case_id, channel, member_id, queue, priority, due_at,
                           attempt_id, inbound_id, created_at, correlation_id)
                 WHERE t.inbound_id IN (SELECT inbound_id FROM new)
                 ON CONFLICT (attempt_id) WHERE kind = 'call' DO NOTHING
                 RETURNING member_id),
             -- One update of each member (a row may change only once a statement):
             -- its new open tasks, and the skills rule's latest pick of it.
             touched AS (
                 UPDATE members m
                 SET open_tasks = m.open_tasks + x.tasks,
                     last_assigned_at = GREATEST(m.last_assigned_at, x.at)
                 FROM (SELECT id, max(at) AS at, sum(task)::int AS tasks
                       FROM (SELECT p.id, p.at, 0 AS task
                             FROM UNNEST($21::text[], $22::timestamptz[], $23::uuid[])
                                  AS p(id, at, inbound)
                             WHERE p.inbound IN (SELECT inbound_id FROM new)
                             UNION ALL
                             SELECT member_id, NULL, 1 FROM added WHERE member_id IS NOT NULL) AS u
                       GROUP BY id) AS x
                 WHERE m.member_id = x.id
                 RETURNING 1),
             appended AS (
                 INSERT INTO outbox (topic, record_key, event_id, event_type, payload, traceparent)
                 SELECT topic, record_key, event_id, event_type, payload, traceparent
                 FROM UNNEST($24::text[], $25::text[], $26::uuid[], $27::text[], $28::bytea[],
                             $29::text[], $30::uuid[])
                      WITH ORDINALITY AS e(topic, record_key, event_id, event_type, payload,
                                           traceparent, inbound, n)
                 WHERE e.inbound IN (SELECT inbound_id FROM new)
                 ORDER BY n
                 RETURNING 1)
             SELECT new.inbound_id
             FROM new, (SELECT count({NOTIFY_RELAY}) FROM (SELECT 1 FROM appended LIMIT 1) AS a) AS woke"
    )
});

/// One routed contact, ready to write (its sender and events are patient
/// data: `Debug` shows neither).
pub struct Record {
    /// Its id.
    pub inbound_id: Uuid,
    /// Its channel's name.
    pub channel: &'static str,
    /// The provider's id for it.
    pub provider_message_id: Option<String>,
    /// The cases it reaches.
    pub case_ids: Vec<String>,
    /// The rule that routed it ('keyword' for a keyword).
    pub rule: &'static str,
    /// Who it went to.
    pub member_id: Option<String>,
    /// Where it waits.
    pub queue: Option<String>,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// Who sent it, as a contact key (patient data): kept only for a message a
    /// person reviews as a possible opt-out, which the review may carry out.
    pub sender: Option<String>,
    /// Its tasks.
    pub tasks: Vec<NewTask>,
    /// The member the skills rule picked, whose last assignment moves on.
    pub skills_pick: Option<String>,
    /// Its events.
    pub events: Vec<OutgoingEvent>,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("inbound_id", &self.inbound_id)
            .field("channel", &self.channel)
            .field("cases", &self.case_ids.len())
            .field("rule", &self.rule)
            .field("tasks", &self.tasks.len())
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

/// The writer: each record answers true once written, false when its provider
/// message id had been written before.
pub type Recorder = Batcher<Record, bool>;

/// Starts the writer on a connection of its own to `pool`'s database.
pub fn start(pool: &PgPool) -> Recorder {
    Batcher::start(pool, "inbound writes", MAX_BATCH, |connection, records| {
        Box::pin(write(connection, records))
    })
}

/// Writes `records` in one statement, so one round trip and one commit: the
/// contacts not seen before, their tasks, their members' open work and last
/// assignment, and their events with the relay's wake-up. For each record,
/// whether it was new.
async fn write(connection: &mut PgConnection, records: &[Record]) -> Result<Vec<bool>, StoreError> {
    let text = |f: &dyn Fn(&Record) -> Option<String>| -> Vec<Option<String>> {
        records.iter().map(f).collect()
    };
    let ids: Vec<Uuid> = records.iter().map(|r| r.inbound_id).collect();
    // Arrays of arrays must be rectangular: case ids travel as one text each.
    let case_ids: Vec<String> = records.iter().map(|r| r.case_ids.join("\u{1f}")).collect();
    let received: Vec<DateTime<Utc>> = records.iter().map(|r| r.received_at).collect();
    let tasks = TaskColumns::of(records);
    let picks: Vec<(&str, DateTime<Utc>, Uuid)> = records
        .iter()
        .filter_map(|r| {
            r.skills_pick
                .as_deref()
                .map(|m| (m, r.received_at, r.inbound_id))
        })
        .collect();
    // Each event travels with the id of the contact it belongs to: only a new
    // contact's events are appended.
    let outbox = OutboxColumns::of(records.iter().flat_map(|r| &r.events))?;
    let event_owners: Vec<Uuid> = records
        .iter()
        .flat_map(|r| r.events.iter().map(|_| r.inbound_id))
        .collect();
    let inserted: Vec<Uuid> = sqlx::query_scalar(&WRITE_BATCH)
        .bind(&ids)
        .bind(text(&|r| Some(r.channel.to_owned())))
        .bind(text(&|r| r.provider_message_id.clone()))
        .bind(&case_ids)
        .bind(text(&|r| Some(r.rule.to_owned())))
        .bind(text(&|r| r.member_id.clone()))
        .bind(text(&|r| r.queue.clone()))
        .bind(&received)
        .bind(&tasks.task_ids)
        .bind(&tasks.kinds)
        .bind(&tasks.case_ids)
        .bind(&tasks.channels)
        .bind(&tasks.member_ids)
        .bind(&tasks.queues)
        .bind(&tasks.priorities)
        .bind(&tasks.due_ats)
        .bind(&tasks.attempt_ids)
        .bind(&tasks.inbound_ids)
        .bind(&tasks.created_ats)
        .bind(&tasks.correlation_ids)
        .bind(picks.iter().map(|(m, _, _)| *m).collect::<Vec<_>>())
        .bind(picks.iter().map(|(_, at, _)| *at).collect::<Vec<_>>())
        .bind(picks.iter().map(|(_, _, id)| *id).collect::<Vec<_>>())
        .bind(&outbox.topics)
        .bind(&outbox.keys)
        .bind(&outbox.ids)
        .bind(&outbox.types)
        .bind(&outbox.payloads)
        .bind(&outbox.traces)
        .bind(&event_owners)
        .bind(text(&|r| r.sender.clone()))
        .fetch_all(connection)
        .await?;
    let inserted: HashSet<Uuid> = inserted.into_iter().collect();
    Ok(records
        .iter()
        .map(|r| inserted.contains(&r.inbound_id))
        .collect())
}

/// The batch's tasks as columns, one array each.
#[derive(Default)]
struct TaskColumns {
    task_ids: Vec<Uuid>,
    kinds: Vec<&'static str>,
    case_ids: Vec<String>,
    channels: Vec<String>,
    member_ids: Vec<Option<String>>,
    queues: Vec<Option<String>>,
    priorities: Vec<i32>,
    due_ats: Vec<Option<DateTime<Utc>>>,
    attempt_ids: Vec<Option<String>>,
    inbound_ids: Vec<Uuid>,
    created_ats: Vec<DateTime<Utc>>,
    correlation_ids: Vec<String>,
}

impl TaskColumns {
    /// Every record's tasks; each belongs to its record's contact.
    fn of(records: &[Record]) -> Self {
        let mut columns = Self::default();
        for record in records {
            for task in &record.tasks {
                columns.task_ids.push(task.task_id);
                columns.kinds.push(task.kind.as_str());
                columns.case_ids.push(task.case_id.clone());
                columns.channels.push(task.channel.clone());
                columns.member_ids.push(task.member_id.clone());
                columns.queues.push(task.queue.clone());
                columns.priorities.push(task.priority);
                columns.due_ats.push(task.due_at);
                columns.attempt_ids.push(task.attempt_id.clone());
                columns.inbound_ids.push(record.inbound_id);
                columns.created_ats.push(task.created_at);
                columns.correlation_ids.push(task.correlation_id.clone());
            }
        }
        columns
    }
}
