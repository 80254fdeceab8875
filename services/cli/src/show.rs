//! How a case's story and the KPI table are printed: event kinds, channels,
//! steps, rules and reasons, in the patient's local time. Never a name, a
//! number, an address or a message text.

use std::fmt::Write as _;

use chrono::DateTime;
use chrono_tz::Tz;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{Language, TimelineEntry};

use crate::tally::{channel_name, reason_name};

/// A case's timeline as a dated list of what happened, in time zone `zone`
/// (UTC when it is not a zone name).
pub fn timeline(zone: &str, entries: &[TimelineEntry]) -> String {
    let zone: Tz = zone.parse().unwrap_or(Tz::UTC);
    let mut out = String::new();
    for entry in entries {
        let Some(event) = &entry.event else { continue };
        let Some(payload) = &event.payload else {
            continue;
        };
        let when = event
            .occurred_at
            .as_ref()
            .and_then(|t| DateTime::from_timestamp(t.seconds, 0))
            .map(|at| at.with_timezone(&zone).format("%a %m-%d %H:%M").to_string())
            .unwrap_or_else(|| "?".into());
        let _ = writeln!(out, "  {when}  {}", describe(payload));
    }
    out.push('\n');
    out
}

/// One line about an event.
pub fn describe(payload: &Payload) -> String {
    match payload {
        Payload::CaseOpened(_) => "case opened".into(),
        Payload::ContactPointsUpdated(_) => "contact points updated".into(),
        Payload::ConsentRecorded(c) => format!("consent recorded: {}", channel_name(c.channel)),
        Payload::ConsentRevoked(c) => format!("consent revoked: {}", channel_name(c.channel)),
        Payload::CoordinatorAssigned(a) => format!("assigned to {}", a.coordinator_id),
        Payload::TherapyEventRecorded(_) => "therapy event recorded".into(),
        Payload::CaseStatusChanged(_) => "status changed".into(),
        Payload::NoteAdded(_) => "note added".into(),
        Payload::AdverseEventReported(r) if r.decision == "reported" => {
            "adverse event reported".into()
        }
        Payload::AdverseEventReported(_) => "adverse event ruled out".into(),
        Payload::OutreachRequested(o) if o.step_id == "keyword-reply" => {
            "keyword answer requested (sms)".into()
        }
        Payload::OutreachRequested(o) => format!(
            "outreach due: step {}, {} attempt {}",
            o.step_id,
            channel_name(o.channel),
            o.attempt_number
        ),
        Payload::AttemptSent(s) => {
            let language = match Language::try_from(s.language) {
                Ok(Language::Es) => "Spanish",
                _ => "English",
            };
            let fallback = if s.language_fell_back {
                ", language fell back"
            } else {
                ""
            };
            format!("sent: {} in {language}{fallback}", channel_name(s.channel))
        }
        Payload::AttemptDelivered(d) => format!("delivered: {}", channel_name(d.channel)),
        Payload::AttemptInTransit(t) => {
            format!("on its way: {} ({})", channel_name(t.channel), t.stage)
        }
        Payload::AttemptFailed(f) => {
            format!("failed: {} ({})", channel_name(f.channel), f.provider_code)
        }
        Payload::AttemptSuppressed(s) => format!(
            "suppressed: {} ({})",
            channel_name(s.channel),
            reason_name(s.reason)
        ),
        Payload::CallTaskRequested(t) => format!("call task for {}", t.coordinator_id),
        Payload::InboundReceived(i) => format!(
            "reply received: {}{}",
            channel_name(i.channel),
            if i.in_reply_to_attempt_id.is_empty() {
                ""
            } else {
                ", answers the last attempt"
            }
        ),
        Payload::ContactRouted(r) => {
            let to = if r.coordinator_id.is_empty() {
                r.queue.as_str()
            } else {
                r.coordinator_id.as_str()
            };
            format!("routed by the {} rule to {to}", r.rule)
        }
        Payload::OptOutReceived(o) => format!("opted out ({})", o.keyword),
        Payload::OptInReceived(o) => format!("opted back in ({})", o.keyword),
        Payload::AdverseEventSuspected(_) => {
            "POSSIBLE ADVERSE EVENT flagged, review due within 24 h".into()
        }
        Payload::CallbackRequested(_) => "callback promised".into(),
        Payload::TaskCompleted(_) => "task completed".into(),
        Payload::OutreachHeld(h) if h.reason == "adverse_event_review" => {
            "automated outreach held until the adverse-event review is done".into()
        }
        Payload::OutreachHeld(h) => format!("automated outreach paused by {}", h.by),
        Payload::OutreachResumed(r) if r.reason == "adverse_event_reviewed" => {
            format!("adverse-event review done by {}; outreach goes on", r.by)
        }
        Payload::OutreachResumed(r) => format!("automated outreach resumed by {}", r.by),
        Payload::OutreachExpired(x) => {
            format!("step {} expired: no longer true, nothing sent", x.step_id)
        }
        Payload::TaskWithdrawn(w) if w.claimed => format!(
            "{} task left with its coordinator, marked: {}",
            w.kind,
            w.reason.replace('_', " ")
        ),
        Payload::TaskWithdrawn(w) => {
            format!("{} task withdrawn: {}", w.kind, w.reason.replace('_', " "))
        }
        Payload::CallAnswered(c) => {
            format!("call answered by {}, {} s", c.answered_by, c.seconds)
        }
        Payload::VoicemailLeft(v) => format!("voicemail left, {} s", v.seconds),
        Payload::Probe(_) => "probe".into(),
    }
}

/// The KPI table.
pub fn kpi_table(rows: &[(String, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::from("KPIs\n");
    for (name, value) in rows {
        let _ = writeln!(out, "  {name:<width$}  {value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use touchpoint_proto::v1::{
        AdverseEventSuspected, Channel, Envelope, InboundReceived, OptOutReceived,
    };

    use super::*;
    use crate::demo::cast::PATIENTS;

    fn entry(payload: Payload) -> TimelineEntry {
        TimelineEntry {
            event: Some(Envelope {
                case_id: "case-1".into(),
                occurred_at: Some(prost_types::Timestamp {
                    seconds: 1_799_157_600, // 2027-01-05T14:00:00Z
                    nanos: 0,
                }),
                payload: Some(payload),
                ..Envelope::default()
            }),
            ..TimelineEntry::default()
        }
    }

    #[test]
    fn a_timeline_shows_local_times_and_what_happened_but_no_patient_data() {
        let patient = &PATIENTS[2];
        let shown = timeline(
            patient.zone,
            &[
                entry(Payload::InboundReceived(InboundReceived {
                    channel: Channel::Sms as i32,
                    in_reply_to_attempt_id: "a-1".into(),
                    ..InboundReceived::default()
                })),
                entry(Payload::AdverseEventSuspected(AdverseEventSuspected {
                    matched_terms: vec!["mareos".into()],
                    ..AdverseEventSuspected::default()
                })),
                entry(Payload::OptOutReceived(OptOutReceived {
                    keyword: "ALTO".into(),
                    ..OptOutReceived::default()
                })),
            ],
        );
        // 14:00 UTC is 06:00 in Los Angeles.
        assert!(shown.contains("Tue 01-05 06:00  reply received: sms, answers the last attempt"));
        assert!(shown.contains("POSSIBLE ADVERSE EVENT"));
        assert!(shown.contains("opted out (ALTO)"));
        for secret in [
            patient.name.0,
            patient.name.1,
            patient.mobile,
            patient.email,
            "mareos",
        ] {
            assert!(!shown.contains(secret), "{secret} shown");
        }
    }

    #[test]
    fn the_kpi_table_aligns_its_values() {
        let table = kpi_table(&[("a".into(), "1".into()), ("longer".into(), "2".into())]);
        assert_eq!(table, "KPIs\n  a       1\n  longer  2\n");
    }
}
