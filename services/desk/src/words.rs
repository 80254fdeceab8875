//! What a timeline entry means, in plain words: each event becomes a phrase
//! (a key of the locale files and its values), rendered in the reader's
//! language. Values are ids, channel names and times; the only patient text a
//! phrase carries is a note's, which the case page shows to whoever may see
//! the case.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use touchpoint_proto::Timestamp;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    CaseStatus, Channel, ConsentSource, SuppressionReason, TherapyEventKind, TimelineEntry,
};

use crate::i18n::Catalog;
use crate::user::Language;

/// A value in a phrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// Shown as it is.
    Text(String),
    /// A key whose text is shown.
    Word(&'static str),
    /// An instant, shown in the patient's local time.
    At(DateTime<Utc>),
}

/// An event in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phrase {
    /// The locale key.
    pub key: &'static str,
    /// Its `{placeholders}`' values.
    pub args: Vec<(&'static str, Arg)>,
}

impl Phrase {
    fn new(key: &'static str) -> Self {
        Self {
            key,
            args: Vec::new(),
        }
    }

    fn with(mut self, name: &'static str, arg: Arg) -> Self {
        self.args.push((name, arg));
        self
    }

    /// The phrase in `language`, times in `zone`.
    pub fn render(&self, catalog: &Catalog, language: Language, zone: Tz) -> String {
        let args: Vec<(&str, String)> = self
            .args
            .iter()
            .map(|(name, arg)| {
                let value = match arg {
                    Arg::Text(text) => text.clone(),
                    Arg::Word(key) => catalog.text(language, key).to_owned(),
                    Arg::At(at) => local_time(*at, zone),
                };
                (*name, value)
            })
            .collect();
        catalog.fill(language, self.key, &args)
    }
}

/// `at` in `zone`, as a reader of any language reads it: `2026-04-07 09:30 EDT`.
pub fn local_time(at: DateTime<Utc>, zone: Tz) -> String {
    at.with_timezone(&zone)
        .format("%Y-%m-%d %H:%M %Z")
        .to_string()
}

/// A protobuf instant as UTC.
pub fn instant(ts: Option<&Timestamp>) -> Option<DateTime<Utc>> {
    ts.and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?))
}

/// The key naming a channel.
pub fn channel(channel: i32) -> &'static str {
    match Channel::try_from(channel) {
        Ok(Channel::Sms) => "channel.sms",
        Ok(Channel::Voice) => "channel.voice",
        Ok(Channel::Email) => "channel.email",
        Ok(Channel::Fax) => "channel.fax",
        Ok(Channel::Mail) => "channel.mail",
        _ => "channel.any",
    }
}

/// The key naming a stage of a letter's journey.
fn stage(stage: &str) -> &'static str {
    match stage {
        "mailed" => "stage.mailed",
        "in_transit" => "stage.in_transit",
        "in_local_area" => "stage.in_local_area",
        "processed_for_delivery" => "stage.processed_for_delivery",
        "re_routed" => "stage.re_routed",
        _ => "stage.other",
    }
}

/// The key naming where a consent came from.
pub fn consent_source(source: i32) -> &'static str {
    match ConsentSource::try_from(source) {
        Ok(ConsentSource::VerbalRecordedCall) => "source.verbal",
        Ok(ConsentSource::WrittenForm) => "source.written",
        Ok(ConsentSource::SmsKeyword) => "source.keyword",
        Ok(ConsentSource::Portal) => "source.portal",
        Ok(ConsentSource::PatientRequest) => "source.request",
        _ => "source.unknown",
    }
}

/// The key naming a case status.
pub fn case_status(status: i32) -> &'static str {
    match CaseStatus::try_from(status) {
        Ok(CaseStatus::Active) => "status.active",
        Ok(CaseStatus::Paused) => "status.paused",
        Ok(CaseStatus::Closed) => "status.closed",
        _ => "status.unknown",
    }
}

fn suppression(reason: i32) -> &'static str {
    match SuppressionReason::try_from(reason) {
        Ok(SuppressionReason::NoConsent) => "suppressed.no_consent",
        Ok(SuppressionReason::OptedOut) => "suppressed.opted_out",
        Ok(SuppressionReason::OutsideContactWindow) => "suppressed.outside_window",
        Ok(SuppressionReason::FrequencyCap) => "suppressed.frequency_cap",
        Ok(SuppressionReason::Expired) => "suppressed.expired",
        Ok(SuppressionReason::CaseNotActive) => "suppressed.case_not_active",
        _ => "suppressed.unknown",
    }
}

/// The key naming a suppression reason by its proto name
/// (`SUPPRESSION_REASON_OPTED_OUT`).
pub fn suppression_by_name(name: &str) -> &'static str {
    SuppressionReason::from_str_name(name).map_or("suppressed.unknown", |r| suppression(r as i32))
}

/// The key naming a task outcome as routing records it ("reached", ...).
pub fn outcome(name: &str) -> &'static str {
    match name {
        "reached" => "outcome.reached",
        "refused" => "outcome.refused",
        "no_answer" => "outcome.no_answer",
        "voicemail" => "outcome.voicemail",
        "wrong_number" => "outcome.wrong_number",
        "opted_out" => "outcome.opted_out",
        "resolved" => "outcome.resolved",
        _ => "outcome.other",
    }
}

/// The key naming a task kind as routing's events say it ("call", ...).
pub fn task_kind(name: &str) -> &'static str {
    match name {
        "call" => "kind.call",
        "inbound" => "kind.inbound",
        "callback" => "kind.callback",
        "adverse_event_review" => "kind.adverse_event_review",
        "keyword_review" => "kind.keyword_review",
        _ => "kind.other",
    }
}

/// `entry` in words, or `None` for an entry that means nothing to a person.
pub fn describe(entry: &TimelineEntry) -> Option<Phrase> {
    let payload = entry.event.as_ref()?.payload.as_ref()?;
    let text = |s: &str| Arg::Text(s.to_owned());
    Some(match payload {
        Payload::CaseOpened(opened) => {
            Phrase::new("timeline.case_opened").with("program", text(&opened.program_id))
        }
        Payload::ContactPointsUpdated(_) => Phrase::new("timeline.contact_points_updated"),
        Payload::ConsentRecorded(c) => Phrase::new("timeline.consent_recorded")
            .with("channel", Arg::Word(channel(c.channel)))
            .with("source", Arg::Word(consent_source(c.source)))
            .with("by", text(&c.recorded_by)),
        Payload::ConsentRevoked(c) => Phrase::new("timeline.consent_revoked")
            .with("channel", Arg::Word(channel(c.channel)))
            .with("source", Arg::Word(consent_source(c.source)))
            .with("by", text(&c.recorded_by)),
        Payload::CoordinatorAssigned(a) if a.navigator_id.is_empty() => {
            Phrase::new("timeline.coordinator_only").with("coordinator", text(&a.coordinator_id))
        }
        Payload::CoordinatorAssigned(a) => Phrase::new("timeline.coordinator_assigned")
            .with("coordinator", text(&a.coordinator_id))
            .with("navigator", text(&a.navigator_id)),
        Payload::TherapyEventRecorded(t) => Phrase::new(match TherapyEventKind::try_from(t.kind) {
            Ok(TherapyEventKind::TherapyStart) => "timeline.therapy_start",
            Ok(TherapyEventKind::Fill) => "timeline.fill",
            Ok(TherapyEventKind::TherapyStopped) => "timeline.therapy_stopped",
            _ => "timeline.therapy_event",
        })
        .with("days", text(&t.days_supply.to_string())),
        Payload::CaseStatusChanged(s) => Phrase::new("timeline.status_changed")
            .with("status", Arg::Word(case_status(s.status)))
            .with("reason", text(&s.reason)),
        Payload::NoteAdded(note) => Phrase::new("timeline.note_added")
            .with("author", text(&note.author))
            .with("text", text(&note.text)),
        Payload::AdverseEventReported(r) if r.decision == "reported" => {
            Phrase::new("timeline.adverse_event_reported")
                .with("by", text(&r.decided_by))
                .with("reference", text(&r.safety_reference))
        }
        Payload::AdverseEventReported(r) => {
            Phrase::new("timeline.adverse_event_ruled_out").with("by", text(&r.decided_by))
        }
        Payload::OutreachRequested(o) => Phrase::new("timeline.outreach_requested")
            .with("step", text(&o.step_id))
            .with("channel", Arg::Word(channel(o.channel)))
            .with("number", text(&o.attempt_number.to_string())),
        Payload::OutreachHeld(h) => Phrase::new("timeline.outreach_held").with("by", text(&h.by)),
        Payload::OutreachResumed(r) => {
            Phrase::new("timeline.outreach_resumed").with("by", text(&r.by))
        }
        Payload::OutreachExpired(e) => {
            Phrase::new("timeline.outreach_expired").with("step", text(&e.step_id))
        }
        // A person's call: placed, answered (for so long) or not.
        Payload::AttemptSent(a) if a.channel == Channel::Voice as i32 => {
            Phrase::new("timeline.call_placed")
        }
        Payload::AttemptDelivered(a) if a.channel == Channel::Voice as i32 => {
            Phrase::new("timeline.call_answered").with("seconds", text(&a.call_seconds.to_string()))
        }
        Payload::AttemptFailed(a) if a.channel == Channel::Voice as i32 => {
            Phrase::new("timeline.call_not_answered").with("code", text(&a.provider_code))
        }
        // A letter: sent to print, on its way, returned or refused.
        Payload::AttemptSent(a) if a.channel == Channel::Mail as i32 => {
            Phrase::new("timeline.letter_sent")
        }
        Payload::AttemptInTransit(a) => {
            Phrase::new("timeline.letter_in_transit").with("stage", Arg::Word(stage(&a.stage)))
        }
        Payload::AttemptFailed(a)
            if a.channel == Channel::Mail as i32 && a.provider_code == "returned_to_sender" =>
        {
            Phrase::new("timeline.letter_returned")
        }
        Payload::AttemptFailed(a)
            if a.channel == Channel::Mail as i32
                && a.provider_code == "failed_deliverability_strictness" =>
        {
            Phrase::new("timeline.letter_undeliverable")
        }
        Payload::AttemptSent(a) => {
            Phrase::new("timeline.attempt_sent").with("channel", Arg::Word(channel(a.channel)))
        }
        Payload::AttemptDelivered(a) => {
            Phrase::new("timeline.attempt_delivered").with("channel", Arg::Word(channel(a.channel)))
        }
        Payload::AttemptFailed(a) => Phrase::new("timeline.attempt_failed")
            .with("channel", Arg::Word(channel(a.channel)))
            .with("code", text(&a.provider_code)),
        Payload::AttemptSuppressed(a) => Phrase::new("timeline.attempt_suppressed")
            .with("channel", Arg::Word(channel(a.channel)))
            .with("reason", Arg::Word(suppression(a.reason))),
        Payload::CallTaskRequested(c) => {
            Phrase::new("timeline.call_task_requested").with("step", text(&c.step_id))
        }
        Payload::InboundReceived(i) => {
            Phrase::new("timeline.inbound_received").with("channel", Arg::Word(channel(i.channel)))
        }
        Payload::ContactRouted(r) => {
            let to = if r.coordinator_id.is_empty() {
                &r.queue
            } else {
                &r.coordinator_id
            };
            Phrase::new("timeline.contact_routed").with("to", text(to))
        }
        Payload::OptOutReceived(o) => Phrase::new("timeline.opt_out")
            .with("channel", Arg::Word(channel(o.channel)))
            .with("keyword", text(&o.keyword)),
        Payload::OptInReceived(o) => {
            Phrase::new("timeline.opt_in").with("channel", Arg::Word(channel(o.channel)))
        }
        Payload::AdverseEventSuspected(ae) => {
            let due = instant(ae.report_due_at.as_ref());
            Phrase::new("timeline.adverse_event")
                .with("due", due.map_or_else(|| Arg::Text(String::new()), Arg::At))
        }
        Payload::CallbackRequested(c) => {
            let due = instant(c.due_at.as_ref());
            Phrase::new("timeline.callback_requested")
                .with("due", due.map_or_else(|| Arg::Text(String::new()), Arg::At))
        }
        Payload::TaskCompleted(done) => Phrase::new("timeline.task_completed")
            .with("kind", Arg::Word(task_kind(&done.kind)))
            .with("by", text(&done.coordinator_id))
            .with("outcome", Arg::Word(outcome(&done.outcome))),
        Payload::TaskWithdrawn(w) => {
            Phrase::new("timeline.task_withdrawn").with("kind", Arg::Word(task_kind(&w.kind)))
        }
        Payload::CallAnswered(c) => Phrase::new("timeline.call_answered_by")
            .with("by", text(&c.answered_by))
            .with("seconds", text(&c.seconds.to_string())),
        Payload::VoicemailLeft(v) => {
            Phrase::new("timeline.voicemail_left").with("seconds", text(&v.seconds.to_string()))
        }
        Payload::Probe(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use touchpoint_proto::v1::{
        AttemptFailed, AttemptInTransit, AttemptSuppressed, Envelope, TaskCompleted,
    };

    fn entry(payload: Payload) -> TimelineEntry {
        TimelineEntry {
            event: Some(Envelope {
                payload: Some(payload),
                ..Envelope::default()
            }),
            ..TimelineEntry::default()
        }
    }

    #[test]
    fn events_read_as_plain_words_in_either_language() {
        let catalog = Catalog::load().unwrap_or_else(|e| panic!("{e}"));
        let done = entry(Payload::TaskCompleted(TaskCompleted {
            kind: "call".into(),
            outcome: "reached".into(),
            coordinator_id: "carla".into(),
            ..TaskCompleted::default()
        }));
        let phrase = describe(&done).unwrap_or_else(|| panic!("no words"));
        assert_eq!(
            phrase.render(&catalog, Language::En, Tz::UTC),
            "Call completed by carla: reached"
        );
        assert_eq!(
            phrase.render(&catalog, Language::Es, Tz::UTC),
            "Llamada completada por carla: contactado"
        );
        let held = entry(Payload::AttemptSuppressed(AttemptSuppressed {
            channel: Channel::Sms as i32,
            reason: SuppressionReason::OptedOut as i32,
            ..AttemptSuppressed::default()
        }));
        let phrase = describe(&held).unwrap_or_else(|| panic!("no words"));
        assert_eq!(
            phrase.render(&catalog, Language::En, Tz::UTC),
            "Text message not sent: the patient opted out"
        );
    }

    #[test]
    fn a_letter_s_journey_and_its_return_read_as_a_letter_s() {
        let catalog = Catalog::load().unwrap_or_else(|e| panic!("{e}"));
        let said = |payload: Payload, language: Language| {
            describe(&entry(payload))
                .unwrap_or_else(|| panic!("no words"))
                .render(&catalog, language, Tz::UTC)
        };
        let on_its_way = Payload::AttemptInTransit(AttemptInTransit {
            channel: Channel::Mail as i32,
            stage: "in_transit".into(),
            ..AttemptInTransit::default()
        });
        assert_eq!(said(on_its_way.clone(), Language::En), "Letter in transit");
        assert_eq!(said(on_its_way, Language::Es), "Carta en tránsito");
        let failed = |code: &str| {
            Payload::AttemptFailed(AttemptFailed {
                channel: Channel::Mail as i32,
                permanent: true,
                provider_code: code.into(),
                ..AttemptFailed::default()
            })
        };
        assert_eq!(
            said(failed("returned_to_sender"), Language::En),
            "Letter returned to sender"
        );
        assert_eq!(
            said(failed("failed_deliverability_strictness"), Language::En),
            "Letter not sent: the address cannot be delivered to"
        );
    }
}
