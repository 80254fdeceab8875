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
//! cases that hold the number by the time it is read.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use touchpoint_platform::envelope::{NO_CASE, instant};
use touchpoint_platform::inbox::{Delivery, Handler, HandlerError};
use touchpoint_proto::v1::contact_point::Value;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{Channel, ContactPoint, Envelope};

use crate::domain::case::{Command, ConsentChange, Rejection};
use crate::domain::contact::ContactKey;
use crate::store::{
    CaseStore, Meta, StoreError, WORD_RECORDED_BY, append_many_to_timeline, cases_holding,
    consent_source, existing_cases, record_contact_word,
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
            self.contact_word(tx, delivery, true).await?;
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
            self.contact_word(tx, delivery, false).await?;
            let envelope = &delivery.envelope;
            for command in consent_commands(envelope) {
                self.carry_out(tx, &envelope.case_id, &command, envelope)
                    .await?;
            }
        }
        Ok(())
    }
}

impl TimelineRecorder {
    /// Keeps what an opt-out or opt-in says of its contact point; with
    /// `to_holders`, also carries it out on every case that holds the contact
    /// point now.
    async fn contact_word(
        &self,
        tx: &mut PgConnection,
        delivery: &Delivery,
        to_holders: bool,
    ) -> Result<(), HandlerError> {
        let envelope = &delivery.envelope;
        let Some(word) = ContactWord::of(envelope) else {
            return Ok(());
        };
        for channel in &word.channels {
            record_contact_word(
                tx,
                &word.key,
                *channel,
                word.opted_out,
                word.at,
                delivery.event_id,
            )
            .await
            .map_err(handler_error)?;
        }
        if to_holders {
            for case_id in cases_holding(tx, &word.key).await.map_err(handler_error)? {
                for command in consent_commands(envelope) {
                    self.carry_out(tx, &case_id, &command, envelope).await?;
                }
            }
        }
        Ok(())
    }

    async fn carry_out(
        &self,
        tx: &mut PgConnection,
        case_id: &str,
        command: &Command,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        match self
            .store
            .apply_command(tx, case_id, &Meta::default(), command, Some(cause))
            .await
        {
            // A closed case takes no new consent; its STOP is still kept.
            Ok(_) | Err(StoreError::Rejected(Rejection::Closed)) => Ok(()),
            Err(error) => Err(handler_error(error)),
        }
    }
}

/// An opt-out or opt-in of one contact point.
struct ContactWord {
    key: String,
    channels: Vec<Channel>,
    opted_out: bool,
    at: DateTime<Utc>,
}

impl ContactWord {
    fn of(envelope: &Envelope) -> Option<Self> {
        let (channel, point, received_at, opted_out) = match &envelope.payload {
            Some(Payload::OptOutReceived(o)) => (o.channel, &o.contact_point, o.received_at, true),
            Some(Payload::OptInReceived(o)) => (o.channel, &o.contact_point, o.received_at, false),
            _ => return None,
        };
        let raw = match point.as_ref()?.value.as_ref()? {
            Value::PhoneE164(v) | Value::Email(v) | Value::FaxE164(v) => v,
        };
        Some(Self {
            key: ContactKey::parse(raw, "contact_point").ok()?.index_key(),
            channels: channels(channel),
            opted_out,
            at: received_at
                .as_ref()
                .or(envelope.occurred_at.as_ref())
                .and_then(instant)?,
        })
    }
}

/// The channel an event names; every channel when it names none.
fn channels(channel: i32) -> Vec<Channel> {
    match Channel::try_from(channel) {
        Ok(Channel::Unspecified) | Err(_) => vec![
            Channel::Sms,
            Channel::Voice,
            Channel::Email,
            Channel::Fax,
            Channel::Mail,
        ],
        Ok(channel) => vec![channel],
    }
}

/// The consent changes an inbound opt-out or opt-in means for its case.
fn consent_commands(envelope: &Envelope) -> Vec<Command> {
    let (channel, point, received_at, revoke) = match &envelope.payload {
        Some(Payload::OptOutReceived(o)) => (o.channel, &o.contact_point, o.received_at, true),
        Some(Payload::OptInReceived(o)) => (o.channel, &o.contact_point, o.received_at, false),
        _ => return Vec::new(),
    };
    let effective_at = received_at
        .as_ref()
        .or(envelope.occurred_at.as_ref())
        .and_then(instant);
    channels(channel)
        .into_iter()
        .map(|channel| {
            let change = ConsentChange {
                channel,
                source: consent_source(channel),
                by: WORD_RECORDED_BY.to_owned(),
                point: point.clone().filter(has_value),
                effective_at,
            };
            if revoke {
                Command::RevokeConsent(change)
            } else {
                Command::RecordConsent(change)
            }
        })
        .collect()
}

fn has_value(point: &ContactPoint) -> bool {
    point.value.is_some()
}

fn handler_error(error: StoreError) -> HandlerError {
    match error {
        StoreError::Database(error) => HandlerError::Database(error),
        other => HandlerError::Permanent(other.to_string()),
    }
}
