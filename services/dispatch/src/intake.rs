//! What dispatch takes in from the topics: the case changes it needs for its
//! last-moment checks and its messages (`touchpoint.case.v1`), opt-outs
//! (`touchpoint.inbound.v1`), and the attempts cadence asks for
//! (`touchpoint.outreach.v1`). Exactly once through the platform's inbox.
//!
//! An attempt is recorded `queued` once per attempt id; the sender takes it from
//! there. A field dispatch needs that is missing or invalid is an error naming the
//! event type and the field, and the record goes to the DLQ.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use touchpoint_platform::clock::SharedClock;
use touchpoint_platform::contact::Address;
use touchpoint_platform::envelope::instant;
use touchpoint_platform::inbox::{Delivery, Handler, HandlerError};
use touchpoint_programs::{StateRules, Whereabouts};
use touchpoint_proto::Timestamp;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    CaseStatus, Channel, ContactPoint, ContactPoints, Envelope, Language, OutreachPurpose,
};
use uuid::Uuid;

/// The consumer group and inbox name.
pub const CONSUMER: &str = "dispatch";

/// What one event means for dispatch.
#[derive(Clone, PartialEq)]
pub enum Intake {
    /// A new case.
    Opened {
        /// Its program.
        program_id: String,
        /// The patient's IANA zone.
        time_zone: String,
        /// Given name (patient data).
        first_name: String,
        /// Family name (patient data).
        last_name: String,
        /// The state whose rule applies to the patient, if any (USPS code).
        us_state: Option<String>,
    },
    /// The patient's contact points changed: the state whose rule applies now.
    Moved {
        /// USPS code, or None for no state rule.
        us_state: Option<String>,
    },
    /// Consent recorded on a channel (a new consent also lifts the case's own
    /// opt-out there; a number's opt-out is lifted only by consent naming it).
    Consented(Channel),
    /// Consent revoked on a channel.
    Revoked(Channel),
    /// The patient opted out on these channels (an opt-out that names no
    /// number or address: the whole case).
    OptedOut(Vec<Channel>),
    /// The patient opted back in on a channel (START after a STOP).
    OptedIn(Channel),
    /// A number or address opted out of a channel at an instant, for every
    /// case that holds it (of its programs).
    DestinationOptedOut(Destination),
    /// A number or address opted back in (START, or a case's written consent
    /// naming it, which lifts its opt-out for the case's program only).
    DestinationOptedIn(Destination),
    /// A coordinator was assigned.
    Coordinator(String),
    /// The case's status changed.
    Status {
        /// 'active', 'paused' or 'closed'.
        status: &'static str,
        /// When a pause ends by itself.
        paused_until: Option<DateTime<Utc>>,
    },
    /// Cadence asks for an attempt.
    Requested(Box<Request>),
    /// Routing promised work by a time: watched for an SLA alert.
    Watch {
        /// `callback` or `adverse_event`.
        kind: &'static str,
        /// Its task (or inbound contact).
        key: String,
        /// When it is late.
        due_at: DateTime<Utc>,
    },
    /// A task was done or withdrawn: nothing of it is late any more.
    Unwatch {
        /// The task.
        key: String,
    },
}

/// A number or address on a channel, and when it said so.
#[derive(Clone, PartialEq)]
pub struct Destination {
    /// The channel.
    pub channel: Channel,
    /// The number or address (patient data).
    pub value: String,
    /// When it was said.
    pub at: DateTime<Utc>,
    /// Whose messages it is about.
    pub programs: Programs,
}

/// Which programs' messages a number's or address's word is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Programs {
    /// Every program's (an opt-out unless the deployment scopes them by
    /// program; START).
    Every,
    /// One program's (an opt-out scoped by program).
    Only(String),
    /// The program of the case whose event it is (a written consent).
    TheCases,
}

impl Programs {
    /// `program_id` as an event carries it: empty for every program.
    fn named(program_id: &str) -> Self {
        if program_id.is_empty() {
            Programs::Every
        } else {
            Programs::Only(program_id.to_owned())
        }
    }

    /// The row it is kept in ("" for every program); None for the case's,
    /// which the statement reads from the case's view.
    fn row(&self) -> Option<String> {
        match self {
            Programs::Every => Some(String::new()),
            Programs::Only(program_id) => Some(program_id.clone()),
            Programs::TheCases => None,
        }
    }
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The number or address is patient data.
        f.debug_struct("Destination")
            .field("channel", &self.channel)
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

/// An attempt cadence asks for, as dispatch records it.
#[derive(Clone, PartialEq)]
pub struct Request {
    /// Its id: the idempotency key everywhere downstream.
    pub attempt_id: Uuid,
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
    /// Where to send it (patient data).
    pub destination: String,
    /// When the program made it due.
    pub due_at: DateTime<Utc>,
    /// The latest hand-off.
    pub not_after: DateTime<Utc>,
    /// An answer to an SMS keyword, sent whatever the checks say.
    pub keyword_reply: bool,
    /// The destination is the caregiver's: the caregiver's text goes.
    pub to_caregiver: bool,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("attempt_id", &self.attempt_id)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names and destinations are patient data: show only what kind of change.
        let kind = match self {
            Intake::Opened { .. } => "Opened",
            Intake::Moved { .. } => "Moved",
            Intake::Consented(_) => "Consented",
            Intake::Revoked(_) => "Revoked",
            Intake::OptedOut(_) => "OptedOut",
            Intake::OptedIn(_) => "OptedIn",
            Intake::DestinationOptedOut(_) => "DestinationOptedOut",
            Intake::DestinationOptedIn(_) => "DestinationOptedIn",
            Intake::Coordinator(_) => "Coordinator",
            Intake::Status { .. } => "Status",
            Intake::Requested(_) => "Requested",
            Intake::Watch { .. } => "Watch",
            Intake::Unwatch { .. } => "Unwatch",
        };
        f.write_str(kind)
    }
}

/// An event lacks something dispatch needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{event}: {field} is missing or invalid")]
pub struct IntakeError {
    /// The payload type.
    pub event: &'static str,
    /// The field.
    pub field: &'static str,
}

/// What `envelope` means for dispatch; None for what is not its business.
/// `rules` say which patients are under a state's rule.
pub fn intake(envelope: &Envelope, rules: &StateRules) -> Result<Option<Intake>, IntakeError> {
    let Some(payload) = &envelope.payload else {
        return Ok(None); // a payload type newer than this build
    };
    let event = payload.type_name();
    let bad = |field| IntakeError { event, field };
    let channel = |raw: i32| {
        Channel::try_from(raw)
            .ok()
            .filter(|c| *c != Channel::Unspecified)
    };
    // A number's or address's word on a channel, as of `at` (else the event's
    // time).
    let destination =
        |raw_channel: i32, value: String, at: Option<&Timestamp>, field, programs: Programs| {
            let channel = channel(raw_channel).ok_or(bad("channel"))?;
            Ok(Destination {
                channel,
                // An address is one mailbox however it was typed.
                value: if channel == Channel::Email {
                    touchpoint_platform::contact::mailbox(&value)
                } else {
                    value
                },
                at: at
                    .or(envelope.occurred_at.as_ref())
                    .and_then(instant)
                    .ok_or(bad(field))?,
                programs,
            })
        };
    let found = match payload {
        Payload::CaseOpened(opened) => {
            if opened.time_zone.parse::<chrono_tz::Tz>().is_err() {
                return Err(bad("time_zone"));
            }
            if opened.program_id.trim().is_empty() {
                return Err(bad("program_id"));
            }
            let name = opened
                .patient
                .as_ref()
                .and_then(|p| p.name.clone())
                .unwrap_or_default();
            let contact = opened.patient.as_ref().and_then(|p| p.contact.as_ref());
            Intake::Opened {
                program_id: opened.program_id.clone(),
                time_zone: opened.time_zone.clone(),
                first_name: name.given_name,
                last_name: name.family_name,
                us_state: state_of(rules, contact),
            }
        }
        Payload::ContactPointsUpdated(updated) => Intake::Moved {
            us_state: state_of(rules, updated.patient.as_ref()),
        },
        Payload::ConsentRecorded(c) => match point(&c.contact_point) {
            Some(value) => Intake::DestinationOptedIn(destination(
                c.channel,
                value,
                c.recorded_at.as_ref(),
                "recorded_at",
                Programs::TheCases,
            )?),
            None => Intake::Consented(channel(c.channel).ok_or(bad("channel"))?),
        },
        Payload::ConsentRevoked(c) => match point(&c.contact_point) {
            Some(value) => Intake::DestinationOptedOut(destination(
                c.channel,
                value,
                c.revoked_at.as_ref(),
                "revoked_at",
                Programs::named(&c.program_id),
            )?),
            None => Intake::Revoked(channel(c.channel).ok_or(bad("channel"))?),
        },
        Payload::OptOutReceived(o) => match point(&o.contact_point) {
            Some(value) => Intake::DestinationOptedOut(destination(
                o.channel,
                value,
                o.received_at.as_ref(),
                "received_at",
                Programs::named(&o.program_id),
            )?),
            None => Intake::OptedOut(match channel(o.channel) {
                Some(c) => vec![c],
                // No channel named: honoured on every channel.
                None => Channel::ALL.to_vec(),
            }),
        },
        Payload::OptInReceived(o) => match point(&o.contact_point) {
            Some(value) => Intake::DestinationOptedIn(destination(
                o.channel,
                value,
                o.received_at.as_ref(),
                "received_at",
                Programs::Every,
            )?),
            None => Intake::OptedIn(channel(o.channel).ok_or(bad("channel"))?),
        },
        Payload::CoordinatorAssigned(a) => Intake::Coordinator(a.coordinator_id.clone()),
        Payload::CaseStatusChanged(s) => Intake::Status {
            status: match CaseStatus::try_from(s.status) {
                Ok(CaseStatus::Active) => "active",
                Ok(CaseStatus::Paused) => "paused",
                Ok(CaseStatus::Closed) => "closed",
                _ => return Err(bad("status")),
            },
            paused_until: s.paused_until.as_ref().and_then(instant),
        },
        Payload::OutreachRequested(r) => {
            let channel = channel(r.channel).ok_or(bad("channel"))?;
            // A letter's destination is its postal address, kept as JSON.
            let destination = if channel == Channel::Mail {
                r.destination
                    .as_ref()
                    .and_then(ContactPoint::postal)
                    .and_then(|a| Address::from_proto(Some(a)))
                    .map(|a| a.to_json())
            } else {
                point(&r.destination)
            }
            .ok_or(bad("destination"))?;
            Intake::Requested(Box::new(Request {
                attempt_id: Uuid::parse_str(&r.attempt_id).map_err(|_| bad("attempt_id"))?,
                program_id: r.program_id.clone(),
                step_id: r.step_id.clone(),
                template_id: r.template_id.clone(),
                channel,
                language: Language::try_from(r.language).map_err(|_| bad("language"))?,
                attempt_number: r.attempt_number,
                destination,
                due_at: r.due_at.as_ref().and_then(instant).ok_or(bad("due_at"))?,
                not_after: r
                    .not_after
                    .as_ref()
                    .and_then(instant)
                    .ok_or(bad("not_after"))?,
                keyword_reply: r.purpose == OutreachPurpose::KeywordReply as i32,
                to_caregiver: r.to_caregiver,
            }))
        }
        Payload::CallbackRequested(c) => match c.due_at.as_ref().and_then(instant) {
            Some(due_at) if !c.task_id.is_empty() => Intake::Watch {
                kind: "callback",
                key: c.task_id.clone(),
                due_at,
            },
            _ => return Ok(None),
        },
        Payload::AdverseEventSuspected(flag) => {
            let received = flag
                .received_at
                .as_ref()
                .or(envelope.occurred_at.as_ref())
                .and_then(instant)
                .ok_or(bad("received_at"))?;
            Intake::Watch {
                kind: "adverse_event",
                key: flag.flag_key().to_owned(),
                due_at: flag
                    .report_due_at
                    .as_ref()
                    .and_then(instant)
                    .unwrap_or(received + chrono::TimeDelta::hours(24)),
            }
        }
        Payload::TaskCompleted(done) => Intake::Unwatch {
            key: done.task_id.clone(),
        },
        Payload::TaskWithdrawn(withdrawn) => Intake::Unwatch {
            key: withdrawn.task_id.clone(),
        },
        _ => return Ok(None),
    };
    Ok(Some(found))
}

/// The code of the state whose rule applies to a patient with `contact`.
fn state_of(rules: &StateRules, contact: Option<&ContactPoints>) -> Option<String> {
    rules
        .locate(Whereabouts::of(contact?))
        .map(|rule| rule.code.clone())
}

/// The number or address a contact point holds, if any.
fn point(point: &Option<ContactPoint>) -> Option<String> {
    point.as_ref()?.text().map(str::to_owned)
}

/// Applies what dispatch takes in.
#[derive(Debug, Clone)]
pub struct Intaker {
    clock: SharedClock,
    rules: StateRules,
}

impl Intaker {
    /// An intake that makes new attempts ready at `clock`'s now, the clock the
    /// sender claims by, and places patients under `rules`.
    pub fn new(clock: SharedClock, rules: StateRules) -> Self {
        Self { clock, rules }
    }
}

impl Handler for Intaker {
    async fn handle(&self, tx: &mut PgConnection, delivery: &Delivery) -> Result<(), HandlerError> {
        self.handle_batch(tx, std::slice::from_ref(delivery)).await
    }

    async fn handle_batch(
        &self,
        tx: &mut PgConnection,
        deliveries: &[Delivery],
    ) -> Result<(), HandlerError> {
        let mut requests = Vec::new();
        for delivery in deliveries {
            let found = intake(&delivery.envelope, &self.rules).map_err(|error| {
                // Pinned to its record when the batch is replayed one by one.
                HandlerError::Permanent(format!("event {}: {error}", delivery.event_id))
            })?;
            let case_id = delivery.envelope.case_id.as_str();
            match found {
                None => {}
                Some(Intake::Requested(request)) => requests.push((delivery, request)),
                Some(change) => apply_to_view(tx, case_id, change).await?,
            }
        }
        record_requests(tx, &requests, self.clock.now()).await
    }
}

async fn apply_to_view(
    tx: &mut PgConnection,
    case_id: &str,
    change: Intake,
) -> Result<(), HandlerError> {
    let query = match change {
        Intake::Opened {
            program_id,
            time_zone,
            first_name,
            last_name,
            us_state,
        } => sqlx::query(
            "INSERT INTO case_views
                 (case_id, program_id, time_zone, first_name, last_name, us_state)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (case_id) DO NOTHING",
        )
        .bind(case_id)
        .bind(program_id)
        .bind(time_zone)
        .bind(first_name)
        .bind(last_name)
        .bind(us_state),
        Intake::Moved { us_state } => sqlx::query(
            "UPDATE case_views SET us_state = $2, updated_at = now() WHERE case_id = $1",
        )
        .bind(case_id)
        .bind(us_state),
        Intake::Consented(channel) => sqlx::query(
            "UPDATE case_views SET
                 consented = array_append(array_remove(consented, $2), $2),
                 opted_out = array_remove(opted_out, $2), updated_at = now()
             WHERE case_id = $1",
        )
        .bind(case_id)
        .bind(channel.as_str_name()),
        // The row of the programs it is about: '' for every program's, none
        // when it is the case's and the case is unknown.
        Intake::DestinationOptedOut(d) => sqlx::query(
            "INSERT INTO opted_out_destinations (channel, destination, program_id, opted_out_at)
             SELECT $1, $2, p, $3 FROM (SELECT COALESCE($4,
                 (SELECT program_id FROM case_views WHERE case_id = $5)) AS p) x
             WHERE p IS NOT NULL
             ON CONFLICT (channel, destination, program_id) DO UPDATE
             SET opted_out_at = GREATEST(opted_out_destinations.opted_out_at, $3)",
        )
        .bind(d.channel.as_str_name())
        .bind(d.value)
        .bind(d.at)
        .bind(d.programs.row())
        .bind(case_id),
        Intake::DestinationOptedIn(d) => sqlx::query(
            "INSERT INTO opted_out_destinations (channel, destination, program_id, opted_in_at)
             SELECT $1, $2, p, $3 FROM (SELECT COALESCE($4,
                 (SELECT program_id FROM case_views WHERE case_id = $5)) AS p) x
             WHERE p IS NOT NULL
             ON CONFLICT (channel, destination, program_id) DO UPDATE
             SET opted_in_at = GREATEST(opted_out_destinations.opted_in_at, $3)",
        )
        .bind(d.channel.as_str_name())
        .bind(d.value)
        .bind(d.at)
        .bind(d.programs.row())
        .bind(case_id),
        Intake::Revoked(channel) => sqlx::query(
            "UPDATE case_views SET consented = array_remove(consented, $2), updated_at = now()
             WHERE case_id = $1",
        )
        .bind(case_id)
        .bind(channel.as_str_name()),
        Intake::OptedOut(channels) => sqlx::query(
            "UPDATE case_views SET
                 opted_out = ARRAY(SELECT DISTINCT unnest(opted_out || $2::text[])),
                 updated_at = now()
             WHERE case_id = $1",
        )
        .bind(case_id)
        .bind(channels.iter().map(|c| c.as_str_name()).collect::<Vec<_>>()),
        Intake::OptedIn(channel) => sqlx::query(
            "UPDATE case_views SET opted_out = array_remove(opted_out, $2), updated_at = now()
             WHERE case_id = $1",
        )
        .bind(case_id)
        .bind(channel.as_str_name()),
        Intake::Coordinator(coordinator_id) => sqlx::query(
            "UPDATE case_views SET coordinator_id = $2, updated_at = now() WHERE case_id = $1",
        )
        .bind(case_id)
        .bind(coordinator_id),
        Intake::Status {
            status,
            paused_until,
        } => sqlx::query(
            "UPDATE case_views SET status = $2, paused_until = $3, updated_at = now()
             WHERE case_id = $1",
        )
        .bind(case_id)
        .bind(status)
        .bind(paused_until),
        // The program is the case's, as dispatch knows it; a case it has not
        // heard of yet is the general queue's ("").
        Intake::Watch { kind, key, due_at } => sqlx::query(
            "INSERT INTO sla_watch (kind, key, case_id, program_id, due_at)
             VALUES ($2, $3, $1,
                     COALESCE((SELECT program_id FROM case_views WHERE case_id = $1), ''), $4)
             ON CONFLICT (key, kind) DO NOTHING",
        )
        .bind(case_id)
        .bind(kind)
        .bind(key)
        .bind(due_at),
        Intake::Unwatch { key } => sqlx::query(
            "UPDATE sla_watch SET state = 'closed' WHERE key = $1 AND state = 'watching'",
        )
        .bind(key),
        Intake::Requested(_) => return Ok(()),
    };
    query.execute(&mut *tx).await?;
    Ok(())
}

/// Records requested attempts `queued`, in one statement; a request seen before
/// (the same attempt id) is ignored.
async fn record_requests(
    tx: &mut PgConnection,
    requests: &[(&Delivery, Box<Request>)],
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    if requests.is_empty() {
        return Ok(());
    }
    let column = |f: &dyn Fn(&Delivery, &Request) -> String| -> Vec<String> {
        requests.iter().map(|(d, r)| f(d, r)).collect()
    };
    let ids: Vec<Uuid> = requests.iter().map(|(_, r)| r.attempt_id).collect();
    let event_ids: Vec<Uuid> = requests.iter().map(|(d, _)| d.event_id).collect();
    let numbers: Vec<i32> = requests
        .iter()
        .map(|(_, r)| r.attempt_number as i32)
        .collect();
    let due: Vec<DateTime<Utc>> = requests.iter().map(|(_, r)| r.due_at).collect();
    let not_after: Vec<DateTime<Utc>> = requests.iter().map(|(_, r)| r.not_after).collect();
    let requested: Vec<DateTime<Utc>> = requests
        .iter()
        .map(|(d, _)| {
            d.envelope
                .occurred_at
                .as_ref()
                .and_then(instant)
                .unwrap_or_else(Utc::now)
        })
        .collect();
    let traces: Vec<Option<String>> = requests
        .iter()
        .map(|(d, _)| d.traceparent.clone())
        .collect();
    sqlx::query(
        "INSERT INTO attempts (attempt_id, case_id, program_id, step_id, template_id, channel,
             language, attempt_number, destination, due_at, not_after, next_try_at,
             request_event_id, correlation_id, traceparent, requested_at, keyword_reply,
             to_caregiver)
         SELECT a, c, p, s, t, ch, l, n, d, due, na, $16, e, co, tr, rq, kr, cg
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::int[], $9::text[], $10::timestamptz[], $11::timestamptz[],
                     $12::uuid[], $13::text[], $14::text[], $15::timestamptz[], $17::bool[],
                     $18::bool[])
              AS r(a, c, p, s, t, ch, l, n, d, due, na, e, co, tr, rq, kr, cg)
         ON CONFLICT (attempt_id) DO NOTHING",
    )
    .bind(&ids)
    .bind(column(&|d, _| d.envelope.case_id.clone()))
    .bind(column(&|_, r| r.program_id.clone()))
    .bind(column(&|_, r| r.step_id.clone()))
    .bind(column(&|_, r| r.template_id.clone()))
    .bind(column(&|_, r| r.channel.as_str_name().to_owned()))
    .bind(column(&|_, r| r.language.as_str_name().to_owned()))
    .bind(&numbers)
    .bind(column(&|_, r| r.destination.clone()))
    .bind(&due)
    .bind(&not_after)
    .bind(&event_ids)
    .bind(column(&|d, _| d.envelope.correlation_id.clone()))
    .bind(&traces)
    .bind(&requested)
    .bind(now)
    .bind(
        requests
            .iter()
            .map(|(_, r)| r.keyword_reply)
            .collect::<Vec<bool>>(),
    )
    .bind(
        requests
            .iter()
            .map(|(_, r)| r.to_caregiver)
            .collect::<Vec<bool>>(),
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use touchpoint_platform::envelope::{new_envelope, timestamp};
    use touchpoint_proto::v1::contact_point::Value;
    use touchpoint_proto::v1::{CaseOpened, ContactPoint, OutreachRequested};

    use super::*;

    fn envelope(payload: Payload) -> Envelope {
        new_envelope("case-1", "test", Utc::now(), payload, None)
    }

    fn request() -> OutreachRequested {
        OutreachRequested {
            attempt_id: Uuid::now_v7().to_string(),
            program_id: "adherence".into(),
            step_id: "welcome".into(),
            channel: Channel::Sms as i32,
            template_id: "welcome".into(),
            language: Language::Es as i32,
            destination: Some(ContactPoint {
                value: Some(Value::PhoneE164("+13125550142".into())),
            }),
            due_at: Some(timestamp(Utc::now())),
            not_after: Some(timestamp(Utc::now())),
            attempt_number: 1,
            ..OutreachRequested::default()
        }
    }

    #[test]
    fn a_request_is_recorded_with_what_sending_needs() {
        let found = intake(
            &envelope(Payload::OutreachRequested(request())),
            &StateRules::default(),
        );
        match found {
            Ok(Some(Intake::Requested(r))) => {
                assert_eq!(r.channel, Channel::Sms);
                assert_eq!(r.destination, "+13125550142");
                assert_eq!(r.language, Language::Es);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_letter_is_recorded_with_its_address_and_needs_one() {
        let address = touchpoint_proto::v1::PostalAddress {
            line1: "12 Elm Street".into(),
            city: "Tulsa".into(),
            region: "OK".into(),
            postal_code: "74103".into(),
            country: "US".into(),
            ..Default::default()
        };
        let mut letter = request();
        letter.channel = Channel::Mail as i32;
        letter.destination = Some(ContactPoint {
            value: Some(Value::PostalAddress(address.clone())),
        });
        let found = intake(
            &envelope(Payload::OutreachRequested(letter.clone())),
            &StateRules::default(),
        );
        match found {
            Ok(Some(Intake::Requested(r))) => {
                let kept = Address::from_json(&r.destination).map(|a| a.to_proto());
                assert_eq!(kept, Some(address));
            }
            other => panic!("{other:?}"),
        }
        // A letter to a phone number is no letter.
        letter.destination = request().destination;
        let error = intake(
            &envelope(Payload::OutreachRequested(letter)),
            &StateRules::default(),
        );
        assert_eq!(error.err().map(|e| e.field), Some("destination"));
    }

    #[test]
    fn missing_fields_are_named_and_values_never_shown() {
        let mut no_destination = request();
        no_destination.destination = None;
        let mut bad_id = request();
        bad_id.attempt_id = "+13125550142".into();
        let mut no_deadline = request();
        no_deadline.not_after = None;
        let bad_zone = CaseOpened {
            program_id: "p".into(),
            time_zone: "Ana Ruiz".into(),
            ..CaseOpened::default()
        };
        for (payload, field) in [
            (Payload::OutreachRequested(no_destination), "destination"),
            (Payload::OutreachRequested(bad_id), "attempt_id"),
            (Payload::OutreachRequested(no_deadline), "not_after"),
            (Payload::CaseOpened(bad_zone), "time_zone"),
        ] {
            let error = intake(&envelope(payload), &StateRules::default()).err();
            assert_eq!(error.as_ref().map(|e| e.field), Some(field));
            let shown = error.map(|e| e.to_string()).unwrap_or_default();
            assert!(
                !shown.contains("3125550142") && !shown.contains("Ana"),
                "{shown}"
            );
        }
    }

    #[test]
    fn debug_shows_the_kind_of_change_only() {
        let found = intake(
            &envelope(Payload::OutreachRequested(request())),
            &StateRules::default(),
        );
        let shown = format!("{found:?}");
        assert!(!shown.contains("3125550142"), "{shown}");
        assert!(shown.contains("Requested"), "{shown}");
    }
}
