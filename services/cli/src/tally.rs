//! Running counts of case events: the demo's live line, and what the
//! end-to-end test checks the story against. Pure: fed events, read counts.
//! The KPIs themselves come from the cases service's projection
//! (`kpi_summary`).

use std::collections::BTreeMap;

use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{Channel, Envelope, SuppressionReason};

/// Running counts over the events of the cases being watched.
#[derive(Debug, Default)]
pub struct Tally {
    /// Cases opened.
    cases: usize,
    /// Touchpoints cadence asked for (`OutreachRequested`).
    pub requested: usize,
    /// Attempts sent, by channel.
    pub sent: BTreeMap<&'static str, usize>,
    /// Attempts delivered.
    pub delivered: usize,
    /// Attempts failed.
    pub failed: usize,
    /// Attempts suppressed, by reason.
    pub suppressed: BTreeMap<&'static str, usize>,
    /// Call tasks put on a coordinator's worklist.
    pub call_tasks: usize,
    /// Inbound contacts.
    pub replies: usize,
    /// Inbound contacts routed to someone or a queue.
    pub routed: usize,
    /// Opt-outs.
    pub opt_outs: usize,
    /// Possible adverse events flagged.
    pub ae_flags: usize,
    /// Callbacks promised.
    pub callbacks: usize,
}

impl Tally {
    /// Counts `event`.
    pub fn add(&mut self, event: &Envelope) {
        let Some(payload) = &event.payload else {
            return;
        };
        match payload {
            Payload::CaseOpened(_) => self.cases += 1,
            Payload::OutreachRequested(_) => self.requested += 1,
            Payload::AttemptSent(sent) => {
                *self.sent.entry(channel_name(sent.channel)).or_default() += 1;
            }
            Payload::AttemptDelivered(_) => self.delivered += 1,
            Payload::AttemptFailed(_) => self.failed += 1,
            Payload::AttemptSuppressed(suppressed) => {
                *self
                    .suppressed
                    .entry(reason_name(suppressed.reason))
                    .or_default() += 1;
            }
            Payload::CallTaskRequested(_) => self.call_tasks += 1,
            Payload::InboundReceived(_) => self.replies += 1,
            Payload::ContactRouted(_) => self.routed += 1,
            Payload::OptOutReceived(_) => self.opt_outs += 1,
            Payload::AdverseEventSuspected(_) => self.ae_flags += 1,
            Payload::CallbackRequested(_) => self.callbacks += 1,
            _ => {}
        }
    }

    /// The cases opened among the events counted.
    pub fn cases(&self) -> usize {
        self.cases
    }

    /// Attempts sent over every channel.
    pub fn sent_total(&self) -> usize {
        self.sent.values().sum()
    }

    /// Attempts suppressed for any reason.
    pub fn suppressed_total(&self) -> usize {
        self.suppressed.values().sum()
    }
}

/// A channel's short name.
pub fn channel_name(channel: i32) -> &'static str {
    match Channel::try_from(channel) {
        Ok(Channel::Mail | Channel::Unspecified) | Err(_) => "other",
        Ok(channel) => channel.short_name(),
    }
}

/// A suppression reason's short name.
pub fn reason_name(reason: i32) -> &'static str {
    match SuppressionReason::try_from(reason) {
        Ok(SuppressionReason::NoConsent) => "no consent",
        Ok(SuppressionReason::OptedOut) => "opted out",
        Ok(SuppressionReason::OutsideContactWindow) => "outside contact window",
        Ok(SuppressionReason::FrequencyCap) => "frequency cap",
        Ok(SuppressionReason::Expired) => "expired",
        Ok(SuppressionReason::CaseNotActive) => "case not active",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use touchpoint_proto::v1::{AttemptSent, AttemptSuppressed, CaseOpened, InboundReceived};

    use super::*;

    fn event(case: &str, payload: Payload) -> Envelope {
        Envelope {
            case_id: case.into(),
            payload: Some(payload),
            ..Envelope::default()
        }
    }

    #[test]
    fn each_event_counts_once_under_its_kind() {
        let mut tally = Tally::default();
        tally.add(&event("a", Payload::CaseOpened(CaseOpened::default())));
        for channel in [Channel::Sms, Channel::Sms, Channel::Email] {
            tally.add(&event(
                "a",
                Payload::AttemptSent(AttemptSent {
                    channel: channel as i32,
                    ..AttemptSent::default()
                }),
            ));
        }
        tally.add(&event(
            "a",
            Payload::AttemptSuppressed(AttemptSuppressed {
                reason: SuppressionReason::OptedOut as i32,
                ..AttemptSuppressed::default()
            }),
        ));
        tally.add(&event(
            "a",
            Payload::InboundReceived(InboundReceived::default()),
        ));
        tally.add(&Envelope::default());
        assert_eq!(tally.cases(), 1);
        assert_eq!((tally.sent.get("sms"), tally.sent_total()), (Some(&2), 3));
        assert_eq!(tally.suppressed.get("opted out"), Some(&1));
        assert_eq!(tally.replies, 1);
    }
}
