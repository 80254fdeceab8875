//! The consumer of the case, attempt and inbound topics: each event enrols a case
//! or changes its enrolment, exactly once through the platform's inbox, and in
//! order per case because a case's records share a partition.
//!
//! A batch locks the enrolments it touches, applies every event in record order,
//! and writes them back with their timers in one statement, with the
//! `OutreachHeld`/`OutreachResumed` of an adverse-event review hold. New touchpoints are
//! not sent from here: the due loop sends them when their timer comes, which may
//! be at once.

use std::collections::BTreeSet;
use std::sync::Arc;

use sqlx::PgConnection;
use touchpoint_platform::clock::SharedClock;
use touchpoint_platform::envelope::new_envelope;
use touchpoint_platform::inbox::{Delivery, Handler, HandlerError};
use touchpoint_platform::outbox::{self, OutboxError, OutgoingEvent};

use crate::enrolment::{Enrolment, V7Ids};
use crate::events::{Reaction, reaction};
use crate::holds::review_note;
use crate::library::Library;
use crate::store::{self, Saved, StoreError};

/// The consumer group and inbox name.
pub const CONSUMER: &str = "cadence";

/// Applies case changes and outcomes to enrolments.
#[derive(Debug, Clone)]
pub struct Reactions {
    library: Arc<Library>,
    clock: SharedClock,
    topic: String,
}

impl Reactions {
    /// Reactions planned with `library`'s programs at `clock`'s time; holds
    /// and their lifting are published to `topic`.
    pub fn new(library: Arc<Library>, clock: SharedClock, topic: String) -> Self {
        Self {
            library,
            clock,
            topic,
        }
    }
}

impl Handler for Reactions {
    async fn handle(&self, tx: &mut PgConnection, delivery: &Delivery) -> Result<(), HandlerError> {
        self.handle_batch(tx, std::slice::from_ref(delivery)).await
    }

    async fn handle_batch(
        &self,
        tx: &mut PgConnection,
        deliveries: &[Delivery],
    ) -> Result<(), HandlerError> {
        let mut reactions = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match reaction(&delivery.envelope) {
                Ok(Reaction::Ignore) => {}
                Ok(r) => {
                    reactions.push((delivery.envelope.case_id.as_str(), r, &delivery.envelope))
                }
                // Pinned to its record when the batch is replayed one by one.
                Err(error) => {
                    return Err(HandlerError::Permanent(format!(
                        "event {}: {error}",
                        delivery.event_id
                    )));
                }
            }
        }
        if reactions.is_empty() {
            return Ok(());
        }
        let case_ids: Vec<String> = reactions
            .iter()
            .map(|(case_id, ..)| (*case_id).to_owned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut enrolments = store::lock(tx, &case_ids).await.map_err(handler_error)?;
        let now = self.clock.now();
        let shelf = self.library.shelf();
        let mut changed = BTreeSet::new();
        let mut events = Vec::new();
        for (case_id, reaction, cause) in reactions {
            match reaction {
                Reaction::Enrol(new) => {
                    if enrolments.contains_key(case_id) {
                        continue; // enrolled already
                    }
                    let mut enrolment = Enrolment::open(*new);
                    // New enrolments start on the newest version.
                    let newest = shelf.newest_version(&enrolment.program_id);
                    if newest > 0 {
                        enrolment.program_version = newest;
                    }
                    match enrolment.program(&shelf) {
                        Some(program) => enrolment.replan(program, now, &mut V7Ids),
                        None => tracing::warn!(
                            case_id,
                            "case enrolled in a program not loaded here; planned once it is"
                        ),
                    }
                    enrolments.insert(case_id.to_owned(), enrolment);
                }
                Reaction::Change(changes) => {
                    let Some(enrolment) = enrolments.get_mut(case_id) else {
                        tracing::debug!(case_id, "event for a case not enrolled here; skipped");
                        continue;
                    };
                    for change in changes {
                        // A change of address may move the patient under another
                        // state's rule.
                        let program = enrolment.program(&shelf);
                        if let Some(note) = review_note(enrolment, &change) {
                            let envelope =
                                new_envelope(case_id, crate::SPEC.name, now, note, Some(cause));
                            events.push(OutgoingEvent::new(self.topic.clone(), envelope));
                        }
                        enrolment.apply(program, change, now, &mut V7Ids);
                    }
                }
                Reaction::Ignore => continue,
            }
            changed.insert(case_id);
        }
        let rows: Vec<Saved<'_>> = changed
            .iter()
            .filter_map(|case_id| {
                let enrolment = enrolments.get(*case_id)?;
                let loaded = enrolment.program(&shelf).is_some();
                Some(Saved {
                    case_id,
                    enrolment,
                    wake_at: store::timer(enrolment, loaded, now),
                })
            })
            .collect();
        store::save(tx, &rows).await.map_err(handler_error)?;
        outbox::append(tx, &events).await.map_err(|e| match e {
            OutboxError::Database(e) => HandlerError::Database(e),
            other => HandlerError::Permanent(other.to_string()),
        })
    }
}

fn handler_error(error: StoreError) -> HandlerError {
    match error {
        StoreError::Database(error) => HandlerError::Database(error),
        other => HandlerError::Permanent(other.to_string()),
    }
}
