//! Records the other services' events on the case timeline: outreach requests,
//! attempt outcomes, inbound contacts, routing, opt-outs and adverse-event flags.
//!
//! Exactly once through the platform's inbox; in order per case because a case's
//! records share a partition. An event of a payload type this build does not know
//! is still kept (the timeline is the audit trail). An event for a case that does
//! not exist goes to the DLQ.
//!
//! An opt-out or opt-in that routing heard is also the case's own consent change
//! (`ConsentRevoked` / `ConsentRecorded` for the number or address it came from,
//! caused by the inbound event, counting from the message's receipt), in the same
//! transaction: `GetCase` says what the patient said. It is also kept by contact
//! point, so a case the number comes to later starts with it; one from a number
//! no case held (case id `NO_CASE`) is kept that way and carried out on the
//! cases that hold the number by the time it is read. An opt-out that names a
//! program (opt-outs scoped by program) is kept for that program's cases only.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use touchpoint_platform::envelope::{NO_CASE, instant};
use touchpoint_platform::inbox::{Delivery, Handler, HandlerError};
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{Channel, ContactPoint, Envelope};

use crate::domain::case::{Command, ConsentChange, Rejection};
use crate::domain::contact::ContactKey;
use crate::store::{
    CaseStore, ContactWordRecord, Meta, StoreError, WORD_RECORDED_BY, append_many_to_timeline,
    cases_holding, consent_source, existing_cases, record_contact_word,
};

/// The consumer group and inbox name.
pub const CONSUMER: &str = "cases-timeline";

/// Appends each delivered event to its case's timeline.
#[derive(Debug, Clone)]
pub struct TimelineRecorder {
    store: CaseStore,
}

impl TimelineRecorder {
    /// A recorder that carries out consent changes through `store`.
    pub fn new(store: CaseStore) -> Self {
        Self { store }
    }
}

impl Handler for TimelineRecorder {
    async fn handle(&self, tx: &mut PgConnection, delivery: &Delivery) -> Result<(), HandlerError> {
        self.handle_batch(tx, std::slice::from_ref(delivery)).await
    }

    async fn handle_batch(
        &self,
        tx: &mut PgConnection,
        deliveries: &[Delivery],
    ) -> Result<(), HandlerError> {
        // What a number or address no case held said is kept by contact point,
        // and honoured on whichever cases hold it now.
        let (about_no_case, deliveries): (Vec<&Delivery>, Vec<&Delivery>) = deliveries
            .iter()
            .partition(|d| d.envelope.case_id == NO_CASE);
        for delivery in about_no_case {
            self.about_no_case(tx, delivery).await?;
        }
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
            .map_err(handler_error)?;
        for delivery in deliveries {
            if let Some(word) = ContactWord::of(&delivery.envelope) {
                self.keep(tx, &word, delivery).await?;
                self.carry_out(tx, &delivery.envelope.case_id, &word, &delivery.envelope)
                    .await?;
            }
        }
        Ok(())
    }
}

impl TimelineRecorder {
    /// What a number or address no case held said: kept by contact point, and
    /// carried out on every case that holds it by now.
    async fn about_no_case(
        &self,
        tx: &mut PgConnection,
        delivery: &Delivery,
    ) -> Result<(), HandlerError> {
        let Some(word) = ContactWord::of(&delivery.envelope) else {
            return Ok(());
        };
        self.keep(tx, &word, delivery).await?;
        let Some(key) = &word.key else {
            return Ok(());
        };
        for case_id in cases_holding(tx, key).await.map_err(handler_error)? {
            self.carry_out(tx, &case_id, &word, &delivery.envelope)
                .await?;
        }
        Ok(())
    }

    /// Keeps what `word` says of its contact point, for cases it comes to later.
    async fn keep(
        &self,
        tx: &mut PgConnection,
        word: &ContactWord,
        delivery: &Delivery,
    ) -> Result<(), HandlerError> {
        let (Some(key), Some(at)) = (&word.key, word.at) else {
            return Ok(());
        };
        for channel in &word.channels {
            let record = ContactWordRecord {
                key,
                channel: *channel,
                opted_out: word.opted_out,
                at,
                program_id: &word.program_id,
                event_id: delivery.event_id,
            };
            record_contact_word(tx, &record)
                .await
                .map_err(handler_error)?;
        }
        Ok(())
    }

    /// Makes `word` the consent change of case `case_id`, caused by `cause`.
    async fn carry_out(
        &self,
        tx: &mut PgConnection,
        case_id: &str,
        word: &ContactWord,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        for command in word.commands() {
            match self
                .store
                .apply_command(tx, case_id, &Meta::default(), &command, Some(cause))
                .await
            {
                // A closed case takes no new consent; its STOP is still kept.
                Ok(_) | Err(StoreError::Rejected(Rejection::Closed)) => {}
                Err(error) => return Err(handler_error(error)),
            }
        }
        Ok(())
    }
}

/// An opt-out or opt-in routing heard, as cases records it.
struct ContactWord {
    /// The contact point it came from, when the event names one (an older one
    /// does not: it holds for the whole channel).
    point: Option<ContactPoint>,
    /// That contact point as the index keys it.
    key: Option<String>,
    /// The channel it names; every channel when it names none.
    channels: Vec<Channel>,
    opted_out: bool,
    /// When the message that said it arrived.
    at: Option<DateTime<Utc>>,
    /// The program whose messages an opt-out stops; "" for every program's
    /// (and always for an opt-in, which lifts what the number said of any).
    program_id: String,
}

impl ContactWord {
    fn of(envelope: &Envelope) -> Option<Self> {
        let (channel, point, received_at, opted_out, program_id) = match &envelope.payload {
            Some(Payload::OptOutReceived(o)) => (
                o.channel,
                &o.contact_point,
                o.received_at,
                true,
                o.program_id.clone(),
            ),
            Some(Payload::OptInReceived(o)) => (
                o.channel,
                &o.contact_point,
                o.received_at,
                false,
                String::new(),
            ),
            _ => return None,
        };
        let point = point.clone().filter(|p| p.text().is_some());
        Some(Self {
            key: point
                .as_ref()
                .and_then(ContactPoint::text)
                .and_then(|raw| ContactKey::parse(raw, "contact_point").ok())
                .map(|key| key.index_key()),
            point,
            channels: match Channel::try_from(channel) {
                Ok(Channel::Unspecified) | Err(_) => Channel::ALL.to_vec(),
                Ok(channel) => vec![channel],
            },
            opted_out,
            at: received_at
                .as_ref()
                .or(envelope.occurred_at.as_ref())
                .and_then(instant),
            program_id,
        })
    }

    /// The consent changes it means for a case that holds its contact point.
    fn commands(&self) -> Vec<Command> {
        self.channels
            .iter()
            .map(|channel| {
                let change = ConsentChange {
                    channel: *channel,
                    source: consent_source(*channel),
                    by: WORD_RECORDED_BY.to_owned(),
                    point: self.point.clone(),
                    effective_at: self.at,
                    only_program: Some(self.program_id.clone()).filter(|p| !p.is_empty()),
                };
                if self.opted_out {
                    Command::RevokeConsent(change)
                } else {
                    Command::RecordConsent(change)
                }
            })
            .collect()
    }
}

fn handler_error(error: StoreError) -> HandlerError {
    match error {
        StoreError::Database(error) => HandlerError::Database(error),
        other => HandlerError::Permanent(other.to_string()),
    }
}
