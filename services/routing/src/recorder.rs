//! Writes routed contacts in batches: every contact that arrives while a
//! transaction is being written waits for the next one, so a burst of calls
//! costs one commit, one insert of inbound rows and one outbox append instead
//! of one each. A contact is answered only once its batch has committed.
//!
//! A provider message id seen before (in the table or earlier in the batch)
//! is not written again; its caller is told so and answers with the first
//! routing.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use touchpoint_platform::outbox::{self, OutgoingEvent};
use uuid::Uuid;

use crate::store::StoreError;
use crate::tasks::{self, NewTask};

/// The most contacts one transaction writes.
const MAX_BATCH: usize = 256;
/// Contacts waiting for a batch before callers wait to queue.
const QUEUE: usize = 4096;

/// One routed contact, ready to write.
#[derive(Debug)]
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
    /// Its tasks.
    pub tasks: Vec<NewTask>,
    /// The member the skills rule picked, whose last assignment moves on.
    pub skills_pick: Option<String>,
    /// Its events.
    pub events: Vec<OutgoingEvent>,
}

/// Whether a record was written, or was a repeat of one written before.
pub type Written = Result<bool, String>;

type Job = (Record, oneshot::Sender<Written>);

/// The handle callers write through.
#[derive(Debug, Clone)]
pub struct Recorder {
    jobs: mpsc::Sender<Job>,
}

impl Recorder {
    /// Starts the writer on `pool`; it stops when every handle is dropped.
    pub fn start(pool: PgPool) -> Self {
        let (jobs, mut queue) = mpsc::channel::<Job>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let (records, replies): (Vec<Record>, Vec<_>) = batch.drain(..).unzip();
                match write(&pool, &records).await {
                    Ok(written) => {
                        for (reply, written) in replies.into_iter().zip(written) {
                            let _ = reply.send(Ok(written));
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, contacts = records.len(), "inbound batch not written");
                        for reply in replies {
                            let _ = reply.send(Err(error.to_string()));
                        }
                    }
                }
            }
        });
        Self { jobs }
    }

    /// Writes `record` with the next batch; true once written, false when its
    /// provider message id had been written before.
    pub async fn write(&self, record: Record) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send((record, reply))
            .await
            .map_err(|_| StoreError::Stopped)?;
        answer
            .await
            .map_err(|_| StoreError::Stopped)?
            .map_err(StoreError::Batch)
    }
}

/// Writes `records` in one transaction; for each, whether it was new.
async fn write(pool: &PgPool, records: &[Record]) -> Result<Vec<bool>, StoreError> {
    let mut tx = pool.begin().await?;
    let column = |f: &dyn Fn(&Record) -> Option<String>| -> Vec<Option<String>> {
        records.iter().map(f).collect()
    };
    let ids: Vec<Uuid> = records.iter().map(|r| r.inbound_id).collect();
    // Arrays of arrays must be rectangular: case ids travel as one text each.
    let case_ids: Vec<String> = records.iter().map(|r| r.case_ids.join("\u{1f}")).collect();
    let received: Vec<DateTime<Utc>> = records.iter().map(|r| r.received_at).collect();
    let inserted: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO inbound (inbound_id, channel, provider_message_id, case_ids, rule,
                              member_id, queue, received_at)
         SELECT i, ch, p, CASE WHEN c = '' THEN '{}'::text[] ELSE string_to_array(c, E'\\x1f') END,
                r, m, q, at
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::timestamptz[]) AS x(i, ch, p, c, r, m, q, at)
         ON CONFLICT (provider_message_id) DO NOTHING
         RETURNING inbound_id",
    )
    .bind(&ids)
    .bind(column(&|r| Some(r.channel.to_owned())))
    .bind(column(&|r| r.provider_message_id.clone()))
    .bind(&case_ids)
    .bind(column(&|r| Some(r.rule.to_owned())))
    .bind(column(&|r| r.member_id.clone()))
    .bind(column(&|r| r.queue.clone()))
    .bind(&received)
    .fetch_all(&mut *tx)
    .await?;
    let inserted: HashSet<Uuid> = inserted.into_iter().collect();
    let new: Vec<&Record> = records
        .iter()
        .filter(|r| inserted.contains(&r.inbound_id))
        .collect();
    for task in new.iter().flat_map(|r| &r.tasks) {
        tasks::insert(&mut tx, task).await?;
    }
    let picks: Vec<(&str, DateTime<Utc>)> = new
        .iter()
        .filter_map(|r| r.skills_pick.as_deref().map(|m| (m, r.received_at)))
        .collect();
    if !picks.is_empty() {
        sqlx::query(
            "UPDATE members m SET last_assigned_at = GREATEST(m.last_assigned_at, x.at)
             FROM (SELECT id, max(at) AS at FROM UNNEST($1::text[], $2::timestamptz[]) AS u(id, at)
                   GROUP BY id) AS x
             WHERE m.member_id = x.id",
        )
        .bind(picks.iter().map(|(m, _)| *m).collect::<Vec<_>>())
        .bind(picks.iter().map(|(_, at)| *at).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    }
    let events: Vec<OutgoingEvent> = new.iter().flat_map(|r| r.events.iter().cloned()).collect();
    outbox::append(&mut tx, &events).await?;
    tx.commit().await?;
    Ok(records
        .iter()
        .map(|r| inserted.contains(&r.inbound_id))
        .collect())
}
