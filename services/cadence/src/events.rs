//! What cadence reads from the other services' events: a `CaseOpened` enrols the
//! case; case changes, attempt outcomes and inbound contacts become [`Change`]s of
//! its enrolment; the rest is not cadence's business.
//!
//! Nothing here trusts the event: a field cadence needs that is missing or
//! invalid is an [`EventError`] naming the event type and field (never a value),
//! and the consumer sends that record to the DLQ.

use chrono::{DateTime, Utc};
use touchpoint_platform::envelope::instant;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    CaseStatus, Channel, ContactPoint, Envelope, Language, SuppressionReason, TherapyEventKind,
};
use uuid::Uuid;

use crate::enrolment::{Change, Destinations, NewEnrolment, PersonContacts, Point};

/// What an event means for cadence.
#[derive(Debug, Clone, PartialEq)]
pub enum Reaction {
    /// Enrol the case.
    Enrol(Box<NewEnrolment>),
    /// Change the case's enrolment, in order.
    Change(Vec<Change>),
    /// Nothing to do.
    Ignore,
}

/// An event lacks something cadence needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{event}: {field} is missing or invalid")]
pub struct EventError {
    /// The payload type.
    pub event: &'static str,
    /// The field.
    pub field: &'static str,
}

/// What `envelope` means for cadence.
pub fn reaction(envelope: &Envelope) -> Result<Reaction, EventError> {
    let Some(payload) = &envelope.payload else {
        return Ok(Reaction::Ignore); // a payload type newer than this build
    };
    let event = payload.type_name();
    let bad = |field| EventError { event, field };
    let at = |t: &Option<touchpoint_proto::Timestamp>, field| {
        t.as_ref().and_then(instant).ok_or(bad(field))
    };
    let change = |c: Change| Ok(Reaction::Change(vec![c]));
    match payload {
        Payload::CaseOpened(opened) => {
            if opened.program_id.trim().is_empty() {
                return Err(bad("program_id"));
            }
            let time_zone = opened.time_zone.parse().map_err(|_| bad("time_zone"))?;
            let language = Language::try_from(opened.language).map_err(|_| bad("language"))?;
            let enrolled_at: DateTime<Utc> = at(&opened.enrolled_at, "enrolled_at")
                .or_else(|_| at(&envelope.occurred_at, "occurred_at"))?;
            Ok(Reaction::Enrol(Box::new(NewEnrolment {
                program_id: opened.program_id.clone(),
                language,
                time_zone,
                enrolled_at,
                destinations: Destinations {
                    patient: PersonContacts::from_proto(
                        opened.patient.as_ref().and_then(|p| p.contact.as_ref()),
                    ),
                    caregiver: PersonContacts::from_proto(
                        opened.caregiver.as_ref().and_then(|p| p.contact.as_ref()),
                    ),
                    prescriber_fax: known(&opened.prescriber_fax_e164),
                    ..Destinations::default()
                },
            })))
        }
        Payload::ContactPointsUpdated(update) => {
            change(Change::ContactPoints(Box::new(Destinations {
                patient: PersonContacts::from_proto(update.patient.as_ref()),
                caregiver: PersonContacts::from_proto(update.caregiver.as_ref()),
                prescriber_fax: known(&update.prescriber_fax_e164),
                ..Destinations::default()
            })))
        }
        // A consent change for one number or address is that contact point's
        // opt-out or opt-in; for the whole channel, the case's.
        Payload::ConsentRecorded(consent) => {
            let channel = channel(consent.channel).ok_or(bad("channel"))?;
            change(match point(&consent.contact_point) {
                Some(point) => Change::DestinationOptedIn {
                    channel,
                    point: Point(point),
                },
                None => Change::ConsentGranted(channel),
            })
        }
        Payload::ConsentRevoked(consent) => {
            let channel = channel(consent.channel).ok_or(bad("channel"))?;
            change(match point(&consent.contact_point) {
                Some(point) => Change::DestinationOptedOut {
                    channel,
                    point: Point(point),
                },
                None => Change::ConsentRevoked(channel),
            })
        }
        Payload::TherapyEventRecorded(therapy) => {
            let when = at(&therapy.at, "at")?;
            match TherapyEventKind::try_from(therapy.kind) {
                Ok(TherapyEventKind::TherapyStart) => change(Change::TherapyStarted(when)),
                Ok(TherapyEventKind::Fill) if therapy.days_supply > 0 => change(Change::Filled {
                    at: when,
                    days_supply: therapy.days_supply,
                }),
                Ok(TherapyEventKind::Fill) => Err(bad("days_supply")),
                Ok(TherapyEventKind::TherapyStopped) => change(Change::TherapyStopped(when)),
                Ok(TherapyEventKind::Unspecified) | Err(_) => Err(bad("kind")),
            }
        }
        Payload::CaseStatusChanged(status) => match CaseStatus::try_from(status.status) {
            Ok(CaseStatus::Active) => change(Change::Resumed),
            Ok(CaseStatus::Paused) => change(Change::Paused {
                until: status.paused_until.as_ref().and_then(instant),
            }),
            Ok(CaseStatus::Closed) => change(Change::Closed),
            Ok(CaseStatus::Unspecified) | Err(_) => Err(bad("status")),
        },
        Payload::OptOutReceived(opt_out) => match point(&opt_out.contact_point) {
            Some(point) => change(Change::DestinationOptedOut {
                channel: channel(opt_out.channel).ok_or(bad("channel"))?,
                point: Point(point),
            }),
            None => Ok(Reaction::Change(match channel(opt_out.channel) {
                Some(channel) => vec![Change::OptedOut(channel)],
                // An opt-out that names no channel is honoured on every channel: a
                // lost STOP is the one mistake outreach must never make.
                None => Channel::ALL.into_iter().map(Change::OptedOut).collect(),
            })),
        },
        Payload::OptInReceived(opt_in) => match point(&opt_in.contact_point) {
            Some(point) => change(Change::DestinationOptedIn {
                channel: channel(opt_in.channel).ok_or(bad("channel"))?,
                point: Point(point),
            }),
            // START lifts the STOP in dispatch's checks; cadence's pending steps
            // were cancelled by the STOP and stay so until consent is recorded again.
            None => Ok(Reaction::Ignore),
        },
        Payload::InboundReceived(inbound) => change(Change::Responded {
            in_reply_to: Uuid::parse_str(&inbound.in_reply_to_attempt_id).ok(),
        }),
        Payload::AttemptFailed(failed) => {
            let attempt_id = attempt(&failed.attempt_id).ok_or(bad("attempt_id"))?;
            change(if failed.permanent {
                Change::ChannelFailed { attempt_id }
            } else {
                Change::AttemptFailed { attempt_id }
            })
        }
        Payload::AttemptSuppressed(suppressed) => {
            let attempt_id = attempt(&suppressed.attempt_id).ok_or(bad("attempt_id"))?;
            match SuppressionReason::try_from(suppressed.reason) {
                Ok(SuppressionReason::NoConsent | SuppressionReason::OptedOut) => {
                    change(Change::ChannelFailed { attempt_id })
                }
                Ok(
                    SuppressionReason::OutsideContactWindow
                    | SuppressionReason::FrequencyCap
                    | SuppressionReason::Expired,
                ) => change(Change::AttemptDeferred { attempt_id }),
                // The case's own status events say what to do about it.
                Ok(SuppressionReason::CaseNotActive | SuppressionReason::Unspecified) | Err(_) => {
                    Ok(Reaction::Ignore)
                }
            }
        }
        Payload::AdverseEventSuspected(flag) => change(Change::AdverseEventFlagged {
            review_task_id: flag.review_task_id.clone(),
        }),
        Payload::TaskCompleted(done) if done.kind == "adverse_event_review" => {
            change(Change::ReviewCompleted {
                task_id: done.task_id.clone(),
                by: done.coordinator_id.clone(),
            })
        }
        // A call task's outcome is its voice attempt's outcome.
        Payload::TaskCompleted(done) if !done.attempt_id.is_empty() => {
            let attempt_id = attempt(&done.attempt_id).ok_or(bad("attempt_id"))?;
            match done.outcome.as_str() {
                // Reached, even when the patient declined or asked not to be
                // called again (that opt-out arrives as its own event).
                "reached" | "refused" | "opted_out" => change(Change::Responded {
                    in_reply_to: Some(attempt_id),
                }),
                "no_answer" | "voicemail" => change(Change::AttemptFailed { attempt_id }),
                "wrong_number" => change(Change::ChannelFailed { attempt_id }),
                _ => Err(bad("outcome")),
            }
        }
        Payload::CallbackRequested(_) | Payload::TaskCompleted(_) => Ok(Reaction::Ignore),
        Payload::CoordinatorAssigned(_)
        | Payload::NoteAdded(_)
        | Payload::AdverseEventReported(_)
        | Payload::OutreachRequested(_)
        | Payload::OutreachHeld(_)
        | Payload::OutreachResumed(_)
        | Payload::OutreachExpired(_)
        | Payload::AttemptSent(_)
        | Payload::AttemptDelivered(_)
        // A letter on its way settles nothing yet.
        | Payload::AttemptInTransit(_)
        | Payload::CallTaskRequested(_)
        | Payload::ContactRouted(_)
        // A withdrawn call task follows a change cadence hears of itself.
        | Payload::TaskWithdrawn(_)
        // What became of a call: its InboundReceived already answered the step.
        | Payload::CallAnswered(_)
        | Payload::VoicemailLeft(_)
        | Payload::Probe(_) => Ok(Reaction::Ignore),
    }
}

fn channel(raw: i32) -> Option<Channel> {
    Channel::try_from(raw)
        .ok()
        .filter(|c| *c != Channel::Unspecified)
}

fn attempt(raw: &str) -> Option<Uuid> {
    Uuid::parse_str(raw).ok()
}

fn known(raw: &str) -> Option<String> {
    (!raw.trim().is_empty()).then(|| raw.to_owned())
}

/// The number or address a contact point holds, if any.
fn point(point: &Option<ContactPoint>) -> Option<String> {
    point.as_ref()?.text().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use touchpoint_platform::envelope::{new_envelope, timestamp};
    use touchpoint_proto::v1::{
        AttemptFailed, AttemptSuppressed, CaseOpened, CaseStatusChanged, ConsentRecorded,
        InboundReceived, OptOutReceived, TherapyEventRecorded,
    };

    use super::*;

    fn envelope(payload: Payload) -> Envelope {
        new_envelope("case-1", "cases", Utc::now(), payload, None)
    }

    fn opened() -> CaseOpened {
        CaseOpened {
            program_id: "adherence".into(),
            language: Language::Es as i32,
            time_zone: "America/Phoenix".into(),
            enrolled_at: Some(timestamp(Utc::now())),
            ..CaseOpened::default()
        }
    }

    #[test]
    fn a_case_opened_enrols_the_case_in_its_program() {
        let reaction = reaction(&envelope(Payload::CaseOpened(opened())));
        match reaction {
            Ok(Reaction::Enrol(new)) => {
                assert_eq!(new.program_id, "adherence");
                assert_eq!(new.time_zone, chrono_tz::America::Phoenix);
                assert_eq!(new.language, Language::Es);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_or_invalid_fields_are_named_errors() {
        let mut bad_zone = opened();
        bad_zone.time_zone = "Mars/Olympus_Mons".into();
        let mut no_program = opened();
        no_program.program_id = " ".into();
        let cases = [
            (Payload::CaseOpened(bad_zone), "time_zone"),
            (Payload::CaseOpened(no_program), "program_id"),
            (
                Payload::ConsentRecorded(ConsentRecorded {
                    channel: 42,
                    ..ConsentRecorded::default()
                }),
                "channel",
            ),
            (
                Payload::TherapyEventRecorded(TherapyEventRecorded {
                    kind: TherapyEventKind::Fill as i32,
                    at: Some(timestamp(Utc::now())),
                    days_supply: 0,
                }),
                "days_supply",
            ),
            (
                Payload::CaseStatusChanged(CaseStatusChanged::default()),
                "status",
            ),
            (
                Payload::AttemptFailed(AttemptFailed {
                    attempt_id: "not-a-uuid".into(),
                    ..AttemptFailed::default()
                }),
                "attempt_id",
            ),
        ];
        for (payload, field) in cases {
            let error = reaction(&envelope(payload)).err();
            assert_eq!(error.map(|e| e.field), Some(field));
        }
    }

    #[test]
    fn outcomes_map_to_what_the_step_does_next() {
        let id = Uuid::now_v7();
        let suppressed = |reason: SuppressionReason| {
            reaction(&envelope(Payload::AttemptSuppressed(AttemptSuppressed {
                attempt_id: id.to_string(),
                channel: Channel::Sms as i32,
                reason: reason as i32,
            })))
        };
        assert_eq!(
            suppressed(SuppressionReason::OptedOut),
            Ok(Reaction::Change(vec![Change::ChannelFailed {
                attempt_id: id
            }]))
        );
        assert_eq!(
            suppressed(SuppressionReason::FrequencyCap),
            Ok(Reaction::Change(vec![Change::AttemptDeferred {
                attempt_id: id
            }]))
        );
        assert_eq!(
            suppressed(SuppressionReason::CaseNotActive),
            Ok(Reaction::Ignore)
        );
        let reply = reaction(&envelope(Payload::InboundReceived(InboundReceived {
            in_reply_to_attempt_id: id.to_string(),
            ..InboundReceived::default()
        })));
        assert_eq!(
            reply,
            Ok(Reaction::Change(vec![Change::Responded {
                in_reply_to: Some(id)
            }]))
        );
    }

    #[test]
    fn an_opt_out_without_a_channel_is_honoured_everywhere() {
        let stop = reaction(&envelope(
            Payload::OptOutReceived(OptOutReceived::default()),
        ));
        match stop {
            Ok(Reaction::Change(changes)) => {
                assert!(changes.contains(&Change::OptedOut(Channel::Sms)));
                assert!(changes.contains(&Change::OptedOut(Channel::Email)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unknown_payload_is_ignored() {
        let mut e = envelope(Payload::OptOutReceived(OptOutReceived::default()));
        e.payload = None;
        assert_eq!(reaction(&e), Ok(Reaction::Ignore));
    }
}
