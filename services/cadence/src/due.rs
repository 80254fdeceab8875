//! The due loop: turns touchpoints whose time has come into `OutreachRequested`
//! events.
//!
//! Each round, in one transaction: claim up to a batch of enrolments whose timer
//! has come (`FOR UPDATE SKIP LOCKED`, so replicas share the work and never wake
//! the same case), wake each one (window, cap and pauses decide what goes now and
//! what moves later), write them back with their next timers, and append the
//! requests to the outbox. A crash before the commit changes nothing: the rows
//! are claimed again. The relay publishes after the commit.
//!
//! A full batch means more may be due, so the next round starts at once;
//! otherwise the loop polls.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use touchpoint_platform::clock::SharedClock;
use touchpoint_platform::envelope::{new_envelope, timestamp};
use touchpoint_platform::outbox::{self, OutboxError, OutgoingEvent};
use touchpoint_platform::rounds;
use touchpoint_platform::trace_context::current_traceparent;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{OutreachExpired, OutreachPurpose, OutreachRequested};

use crate::enrolment::{Request, V7Ids};
use crate::library::Library;
use crate::store::{self, Saved, StoreError};

/// The `source` of every event this service emits.
pub const SOURCE: &str = "cadence";

/// A round failed; nothing of it was committed.
#[derive(Debug, thiserror::Error)]
pub enum DueError {
    /// The enrolment store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The outbox.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// The transaction.
    #[error("due loop database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Claims due enrolments and emits their outreach requests.
#[derive(Debug, Clone)]
pub struct DueLoop {
    pool: PgPool,
    library: Arc<Library>,
    clock: SharedClock,
    topic: String,
    batch: usize,
    poll: Duration,
}

impl DueLoop {
    /// A due loop over `pool`'s enrolments publishing to `topic`, claiming `batch`
    /// enrolments a round and polling every `poll` when idle.
    pub fn new(
        pool: PgPool,
        library: Arc<Library>,
        clock: SharedClock,
        topic: String,
        batch: usize,
        poll: Duration,
    ) -> Self {
        Self {
            pool,
            library,
            clock,
            topic,
            batch,
            poll,
        }
    }

    /// Runs until `shutdown`; the round in hand is finished (or rolled back) first.
    pub async fn run(self, shutdown: CancellationToken) {
        rounds::run("due loop", self.poll, self.batch, shutdown, || self.round()).await;
    }

    /// One round: returns how many enrolments it claimed.
    pub async fn round(&self) -> Result<usize, DueError> {
        let now = self.clock.now();
        let mut tx = self.pool.begin().await?;
        let store::Claimed {
            due: mut claimed,
            unreadable,
        } = store::claim_due(&mut tx, now, self.batch).await?;
        if claimed.is_empty() && unreadable.is_empty() {
            return Ok(0);
        }
        for case_id in &unreadable {
            tracing::error!(
                case_id,
                "stored enrolment is unreadable; its timer is stopped until repaired"
            );
        }
        store::park(&mut tx, &unreadable).await?;
        let mut events = Vec::new();
        let mut wakes = Vec::with_capacity(claimed.len());
        let shelf = self.library.shelf();
        for (case_id, enrolment) in &mut claimed {
            let program = enrolment.program(&shelf);
            if let Some(program) = program {
                // Plans what a program change added before waking.
                enrolment.replan(program, now, &mut V7Ids);
                let expired_before = enrolment.expired();
                for request in enrolment.wake(program, now, &mut V7Ids) {
                    events.push(self.outreach_requested(case_id, &enrolment.program_id, request));
                }
                // What expired in this wake goes on the timeline.
                for (step_id, at) in enrolment.expired() {
                    if !expired_before.iter().any(|(id, _)| *id == step_id) {
                        let payload = Payload::OutreachExpired(OutreachExpired {
                            step_id,
                            expired_at: Some(timestamp(at)),
                        });
                        let envelope = new_envelope(case_id, SOURCE, now, payload, None);
                        events.push(OutgoingEvent::new(self.topic.clone(), envelope));
                    }
                }
            }
            wakes.push(store::timer(enrolment, program.is_some(), now));
        }
        let rows: Vec<Saved<'_>> = claimed
            .iter()
            .zip(wakes)
            .map(|((case_id, enrolment), wake_at)| Saved {
                case_id,
                enrolment,
                wake_at,
            })
            .collect();
        store::save(&mut tx, &rows).await?;
        outbox::append(&mut tx, &events).await?;
        tx.commit().await?;
        if !events.is_empty() {
            tracing::debug!(
                claimed = rows.len(),
                requested = events.len(),
                "due touchpoints requested"
            );
        }
        Ok(rows.len() + unreadable.len())
    }

    /// The event for one request, in a trace of its own: one attempt is one trace
    /// from here through dispatch to the case timeline.
    fn outreach_requested(&self, case_id: &str, program_id: &str, r: Request) -> OutgoingEvent {
        let span = tracing::info_span!(
            parent: None,
            "cadence.outreach_requested",
            case_id,
            attempt_id = %r.attempt_id,
        );
        let traceparent = span.in_scope(current_traceparent);
        let payload = Payload::OutreachRequested(OutreachRequested {
            attempt_id: r.attempt_id.to_string(),
            program_id: program_id.to_owned(),
            step_id: r.step_id,
            channel: r.channel as i32,
            template_id: r.template,
            language: r.language as i32,
            destination: Some(r.destination),
            to_caregiver: r.to_caregiver,
            due_at: Some(timestamp(r.due_at)),
            not_after: Some(timestamp(r.not_after)),
            attempt_number: r.number,
            purpose: OutreachPurpose::Unspecified as i32,
        });
        let envelope = new_envelope(case_id, SOURCE, r.requested_at, payload, None);
        OutgoingEvent::new(self.topic.clone(), envelope).with_traceparent(traceparent)
    }
}
