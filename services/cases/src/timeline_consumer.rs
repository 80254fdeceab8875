//! Records the other services' events on the case timeline: outreach requests,
//! attempt outcomes, inbound contacts, routing, opt-outs and adverse-event flags.
//!
//! Exactly once through the platform's inbox; in order per case because a case's
//! records share a partition. An event of a payload type this build does not know
//! is still kept (the timeline is the audit trail). An event for a case that does
//! not exist goes to the DLQ.

use sqlx::PgConnection;
use touchpoint_platform::inbox::{Delivery, Handler, HandlerError};

use crate::store::{StoreError, append_many_to_timeline, existing_cases};

/// The consumer group and inbox name.
pub const CONSUMER: &str = "cases-timeline";

/// Appends each delivered event to its case's timeline.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimelineRecorder;

impl Handler for TimelineRecorder {
    async fn handle(&self, tx: &mut PgConnection, delivery: &Delivery) -> Result<(), HandlerError> {
        self.handle_batch(tx, std::slice::from_ref(delivery)).await
    }

    async fn handle_batch(
        &self,
        tx: &mut PgConnection,
        deliveries: &[Delivery],
    ) -> Result<(), HandlerError> {
        let case_ids: Vec<&str> = deliveries
            .iter()
            .map(|d| d.envelope.case_id.as_str())
            .collect();
        let existing = existing_cases(tx, &case_ids).await.map_err(handler_error)?;
        if let Some(unknown) = deliveries
            .iter()
            .find(|d| !existing.contains(&d.envelope.case_id))
        {
            // Pinned to its record when the batch is replayed one by one.
            return Err(HandlerError::Permanent(format!(
                "case {} not found for event {}",
                unknown.envelope.case_id, unknown.event_id
            )));
        }
        let envelopes: Vec<_> = deliveries.iter().map(|d| &d.envelope).collect();
        append_many_to_timeline(tx, &envelopes)
            .await
            .map_err(handler_error)
    }
}

fn handler_error(error: StoreError) -> HandlerError {
    match error {
        StoreError::Database(error) => HandlerError::Database(error),
        other => HandlerError::Permanent(other.to_string()),
    }
}
