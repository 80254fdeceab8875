//! What routing takes in from the topics, exactly once through the platform's
//! inbox: from `touchpoint.case.v1` each case's program, language, assigned
//! coordinator and navigator and the contact points that reach it; from
//! `touchpoint.attempt.v1` the latest attempt sent per case and channel (a reply
//! names it) and the call tasks dispatch asks for; the decisions on possible
//! adverse events, which complete their review tasks; from any of them and from
//! routing's own `touchpoint.inbound.v1`, what withdraws open work
//! ([`crate::withdrawal`]).
//!
//! A contact point that does not parse is left out of the index (it can reach
//! nobody); an event missing what routing needs goes to the DLQ.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sqlx::PgConnection;
use touchpoint_platform::contact::ContactKey;
use touchpoint_platform::envelope::instant;
use touchpoint_platform::inbox::{Delivery, Handler, HandlerError};
use touchpoint_platform::outbox;
use touchpoint_programs::{LiveCatalogue, Whereabouts};
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{CallTaskRequested, Channel, ContactPoints, Language};
use uuid::Uuid;

use crate::domain::decision::program_queue;
use crate::store::{StoreError, language_name};
use crate::tasks::{self, Callable, Kind, NewTask};
use crate::withdrawal::{withdraw, withdrawal};

/// The consumer group and inbox name.
pub const CONSUMER: &str = "routing";

/// Applies what routing takes in.
#[derive(Debug, Clone)]
pub struct Projector {
    /// Where `TaskWithdrawn` is published.
    pub topic: String,
    /// The programs' state rules, to place each patient.
    pub catalogue: Arc<LiveCatalogue>,
}

impl Projector {
    /// The state whose rule applies to a patient with `contact`, if any.
    fn us_state(&self, contact: Option<&ContactPoints>) -> Option<String> {
        self.catalogue
            .current()
            .state_of(Whereabouts::of(contact?))
            .map(|rule| rule.code.clone())
    }
}

impl From<StoreError> for HandlerError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Database(e) => HandlerError::Database(e),
            other => HandlerError::Transient(other.to_string()),
        }
    }
}

/// The index keys of the phones and emails in `points`.
fn keys(points: Option<&ContactPoints>) -> Vec<String> {
    let Some(points) = points else {
        return Vec::new();
    };
    [&points.mobile_e164, &points.landline_e164, &points.email]
        .into_iter()
        .filter(|raw| !raw.trim().is_empty())
        .filter_map(|raw| ContactKey::parse(raw, "contact").ok())
        .map(|key| key.index_key())
        .collect()
}

/// The index key of the prescriber's fax number, when it parses.
fn phone_key(raw: &str) -> Option<String> {
    ContactKey::parse(raw, "fax").ok().map(|k| k.index_key())
}

async fn index_contacts(
    tx: &mut PgConnection,
    case_id: &str,
    keys: Vec<String>,
) -> Result<(), HandlerError> {
    sqlx::query("DELETE FROM case_contacts WHERE case_id = $1")
        .bind(case_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO case_contacts (contact_key, case_id)
         SELECT DISTINCT unnest($2::text[]), $1 ON CONFLICT DO NOTHING",
    )
    .bind(case_id)
    .bind(keys)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

fn bad(delivery: &Delivery, field: &str) -> HandlerError {
    HandlerError::Permanent(format!(
        "event {} ({}): {field} is missing or invalid",
        delivery.event_id,
        delivery
            .envelope
            .payload
            .as_ref()
            .map_or("unknown", |p| p.type_name())
    ))
}

impl Handler for Projector {
    async fn handle(&self, tx: &mut PgConnection, delivery: &Delivery) -> Result<(), HandlerError> {
        let envelope = &delivery.envelope;
        let case_id = envelope.case_id.as_str();
        let Some(payload) = &envelope.payload else {
            return Ok(()); // a payload type newer than this build
        };
        if let Some(withdrawal) = withdrawal(payload) {
            let at = envelope
                .occurred_at
                .as_ref()
                .and_then(instant)
                .unwrap_or_else(Utc::now);
            let events = withdraw(tx, withdrawal, envelope, at, &self.topic).await?;
            outbox::append(tx, &events)
                .await
                .map_err(StoreError::from)?;
        }
        match payload {
            Payload::CaseOpened(opened) => {
                if opened.program_id.trim().is_empty() {
                    return Err(bad(delivery, "program_id"));
                }
                let language = Language::try_from(opened.language).unwrap_or(Language::En);
                let patient = opened.patient.as_ref().and_then(|p| p.contact.as_ref());
                sqlx::query(
                    "INSERT INTO case_views (case_id, program_id, language, time_zone, us_state)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (case_id) DO NOTHING",
                )
                .bind(case_id)
                .bind(&opened.program_id)
                .bind(language_name(language))
                .bind(Some(opened.time_zone.as_str()).filter(|z| !z.trim().is_empty()))
                .bind(self.us_state(patient))
                .execute(&mut *tx)
                .await?;
                let mut all = keys(opened.patient.as_ref().and_then(|p| p.contact.as_ref()));
                all.extend(keys(
                    opened.caregiver.as_ref().and_then(|p| p.contact.as_ref()),
                ));
                all.extend(phone_key(&opened.prescriber_fax_e164));
                index_contacts(tx, case_id, all).await?;
            }
            Payload::ContactPointsUpdated(updated) => {
                sqlx::query(
                    "UPDATE case_views SET us_state = $2, updated_at = now() WHERE case_id = $1",
                )
                .bind(case_id)
                .bind(self.us_state(updated.patient.as_ref()))
                .execute(&mut *tx)
                .await?;
                let mut all = keys(updated.patient.as_ref());
                all.extend(keys(updated.caregiver.as_ref()));
                all.extend(phone_key(&updated.prescriber_fax_e164));
                index_contacts(tx, case_id, all).await?;
            }
            Payload::CoordinatorAssigned(assigned) => {
                sqlx::query(
                    "UPDATE case_views SET coordinator_id = $2, navigator_id = $3, updated_at = now()
                     WHERE case_id = $1",
                )
                .bind(case_id)
                .bind(&assigned.coordinator_id)
                .bind(&assigned.navigator_id)
                .execute(&mut *tx)
                .await?;
            }
            Payload::AttemptSent(sent) => {
                let channel =
                    Channel::try_from(sent.channel).map_err(|_| bad(delivery, "channel"))?;
                let sent_at: DateTime<Utc> = sent
                    .sent_at
                    .as_ref()
                    .and_then(instant)
                    .ok_or_else(|| bad(delivery, "sent_at"))?;
                sqlx::query(
                    "INSERT INTO last_attempts (case_id, channel, attempt_id, sent_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (case_id, channel) DO UPDATE
                         SET attempt_id = $3, sent_at = $4 WHERE last_attempts.sent_at <= $4",
                )
                .bind(case_id)
                .bind(channel.as_str_name())
                .bind(&sent.attempt_id)
                .bind(sent_at)
                .execute(&mut *tx)
                .await?;
            }
            Payload::CallTaskRequested(call) => {
                if Uuid::parse_str(&call.attempt_id).is_err() {
                    return Err(bad(delivery, "attempt_id"));
                }
                let member = Some(call.coordinator_id.clone()).filter(|c| !c.is_empty());
                let queue = member.is_none().then(|| program_queue(&call.program_id));
                tasks::insert(
                    tx,
                    &NewTask {
                        task_id: Uuid::now_v7(),
                        kind: Kind::Call,
                        case_id: case_id.to_owned(),
                        channel: Channel::Voice.as_str_name().to_owned(),
                        member_id: member,
                        queue,
                        priority: 0,
                        due_at: call.due_at.as_ref().and_then(instant),
                        attempt_id: Some(call.attempt_id.clone()),
                        inbound_id: None,
                        created_at: envelope
                            .occurred_at
                            .as_ref()
                            .and_then(instant)
                            .unwrap_or_else(Utc::now),
                        correlation_id: envelope.correlation_id.clone(),
                        callable: callable(call),
                        contact_key: call
                            .destination
                            .as_ref()
                            .and_then(|d| d.text())
                            .and_then(|number| ContactKey::parse(number, "destination").ok())
                            .map(|key| key.index_key()),
                    },
                )
                .await?;
            }
            Payload::AdverseEventReported(decided) => {
                // A flag without a review task has nothing to complete here.
                let Ok(task_id) = Uuid::parse_str(&decided.review_task_id) else {
                    return Ok(());
                };
                let at = envelope
                    .occurred_at
                    .as_ref()
                    .and_then(instant)
                    .unwrap_or_else(Utc::now);
                let completed =
                    tasks::complete_review(tx, task_id, &decided.decided_by, at, &self.topic)
                        .await
                        .map_err(|e| match e {
                            tasks::TaskError::Store(store) => HandlerError::from(store),
                            other => HandlerError::Transient(other.to_string()),
                        })?;
                outbox::append(tx, &completed.into_iter().collect::<Vec<_>>())
                    .await
                    .map_err(StoreError::from)?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// When the call `call` asks for may be made: from `callable_from` (else its
/// due time) until `not_after`, shown in the patient's zone (UTC when the event
/// names none or one this build does not know). None without a deadline.
fn callable(call: &CallTaskRequested) -> Option<Callable> {
    let until = call.not_after.as_ref().and_then(instant)?;
    let from = call
        .callable_from
        .as_ref()
        .or(call.due_at.as_ref())
        .and_then(instant)
        .unwrap_or(until);
    Some(Callable {
        from,
        until,
        time_zone: call.time_zone.parse().unwrap_or(Tz::UTC),
    })
}
