//! What each event adds to the daily figures, given what is known of its case,
//! its attempt and the work still open on the case. Pure: the projector loads
//! the facts a batch needs, folds the batch, and writes facts and figures back.
//!
//! A figure lands on the day its event happened in the site's time zone, but
//! for `reached`, which lands on the day the attempt it answers was made, so a
//! day's contact rate is the share of that day's attempts that were answered.
//! Events of one case come in order; events of different streams may not (an
//! attempt's outcome may be recorded before the request that asked for it), so
//! every fact is order-tolerant.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use touchpoint_platform::envelope::instant;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{Channel, Envelope, SuppressionReason};

/// The names of the figures, as stored and as `GetKpis` returns them.
pub mod figure {
    /// Cases enrolled, on their enrolment day (channel "").
    pub const ENROLLED: &str = "enrolled";
    /// Touchpoints cadence asked for.
    pub const REQUESTED: &str = "requested";
    /// Attempts made: sent, failed at the provider, or a call task given.
    pub const ATTEMPTED: &str = "attempted";
    /// Attempts answered (a reply to the text or email, a call that reached
    /// the patient), on the day the attempt was made.
    pub const REACHED: &str = "reached";
    /// Cases first sent something that day (channel ""), and the seconds
    /// from their opening summed.
    pub const FIRST_SEND: &str = "first_send";
    /// See [`FIRST_SEND`].
    pub const FIRST_SEND_SECONDS: &str = "first_send_seconds";
    /// Cases first in contact that day (channel ""): their first answer,
    /// inbound contact or call that reached them; and the seconds from their
    /// opening summed.
    pub const FIRST_CONTACT: &str = "first_contact";
    /// See [`FIRST_CONTACT`].
    pub const FIRST_CONTACT_SECONDS: &str = "first_contact_seconds";
    /// Attempts suppressed, one figure per reason: `suppressed:<reason>`.
    pub const SUPPRESSED_PREFIX: &str = "suppressed:";
    /// Touchpoints that expired before they could be made (channel "").
    pub const EXPIRED: &str = "expired";
    /// Cases that opted out (the first time; channel "").
    pub const OPTED_OUT: &str = "opted_out";
    /// Inbound contacts.
    pub const INBOUND: &str = "inbound";
    /// Inbound contacts a person answered (a message, a finished task on the
    /// case), and the seconds it took summed, on the day of the answer.
    pub const RESPONDED: &str = "responded";
    /// See [`RESPONDED`].
    pub const RESPONSE_SECONDS: &str = "response_seconds";
    /// Callbacks promised (channel "").
    pub const CALLBACKS: &str = "callbacks";
    /// Callbacks done, and of those done by their due time.
    pub const CALLBACKS_DONE: &str = "callbacks_done";
    /// See [`CALLBACKS_DONE`].
    pub const CALLBACKS_IN_SLA: &str = "callbacks_in_sla";
    /// Possible adverse events flagged (channel "").
    pub const AE_FLAGS: &str = "ae_flags";
    /// Flags whose review was done, and of those within 24 hours of receipt.
    pub const AE_REVIEWED: &str = "ae_reviewed";
    /// See [`AE_REVIEWED`].
    pub const AE_REVIEWED_IN_24H: &str = "ae_reviewed_in_24h";
    /// Flags reported to the safety database, and of those within 24 hours
    /// of day zero (the message's first receipt), on the day of the report.
    pub const AE_REPORTED: &str = "ae_reported";
    /// See [`AE_REPORTED`].
    pub const AE_REPORTED_IN_24H: &str = "ae_reported_in_24h";
    /// Flags decided not to be adverse events.
    pub const AE_NOT_AE: &str = "ae_not_ae";
}

/// What the projection keeps of a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseFacts {
    /// Its program.
    pub program_id: String,
    /// When it was opened.
    pub opened_at: DateTime<Utc>,
    /// When it was first sent something.
    pub first_sent_at: Option<DateTime<Utc>>,
    /// When it was first in contact.
    pub first_contact_at: Option<DateTime<Utc>>,
    /// Whether it has opted out.
    pub opted_out: bool,
}

/// What the projection keeps of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptFacts {
    /// Its case.
    pub case_id: String,
    /// Its channel's key ([`channel_key`]).
    pub channel: String,
    /// When cadence asked for it and it fell due, if it did.
    pub due_at: Option<DateTime<Utc>>,
    /// The day it was made, if it was.
    pub attempted_on: Option<NaiveDate>,
    /// Made, suppressed or expired: no longer due.
    pub settled: bool,
    /// Answered.
    pub reached: bool,
}

/// Work open on a case that a figure waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpenKind {
    /// A callback promised; key: its task.
    Callback,
    /// A possible adverse event; key: its review task (or inbound).
    AdverseEvent,
    /// An inbound contact nobody has answered yet; key: the inbound.
    Inbound,
}

impl OpenKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OpenKind::Callback => "callback",
            OpenKind::AdverseEvent => "adverse_event",
            OpenKind::Inbound => "inbound",
        }
    }

    /// The kind stored as `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            OpenKind::Callback,
            OpenKind::AdverseEvent,
            OpenKind::Inbound,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

/// An open item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenItem {
    /// Its case.
    pub case_id: String,
    /// The channel it came on (inbound), else "".
    pub channel: String,
    /// When it started (the message's receipt, the promise).
    pub since: DateTime<Utc>,
    /// When it is due by (callbacks, adverse events).
    pub due_at: Option<DateTime<Utc>>,
}

/// A daily figure's key: program, day, channel ("" for the case), figure.
pub type FigureKey = (String, NaiveDate, String, String);

/// What happened to a possible adverse event, for the reconciliation list
/// (`store::save_flags` keeps one row per case and flag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagChange {
    /// A case was flagged.
    Raised {
        /// The case.
        case_id: String,
        /// Its review task, or its message when it has none.
        key: String,
        /// The message.
        inbound_id: String,
        /// Day zero.
        received_at: DateTime<Utc>,
        /// When the report is due.
        due_at: DateTime<Utc>,
    },
    /// A person reported it, or decided it is not an adverse event.
    Decided {
        /// The case.
        case_id: String,
        /// See `Raised`.
        key: String,
        /// The message.
        inbound_id: String,
        /// Day zero, as the decision carries it.
        aware_at: DateTime<Utc>,
        /// "reported" or "not_adverse_event".
        decision: String,
        /// When.
        at: DateTime<Utc>,
        /// Who.
        by: String,
        /// The safety database's reference.
        safety_reference: String,
        /// Why it is not one.
        reason: String,
    },
    /// Its review task was completed (with or without a report).
    Reviewed {
        /// The task.
        key: String,
        /// When.
        at: DateTime<Utc>,
        /// Who.
        by: String,
    },
}

/// The facts a batch reads and changes, and the figures it adds.
#[derive(Debug, Default)]
pub struct Fold {
    /// Cases by id.
    pub cases: HashMap<String, CaseFacts>,
    /// Attempts by id.
    pub attempts: HashMap<String, AttemptFacts>,
    /// Open items by kind and key (`None`: closed in this batch).
    pub open: HashMap<(OpenKind, String), Option<OpenItem>>,
    /// What the batch adds to each figure.
    pub figures: BTreeMap<FigureKey, i64>,
    /// Events of a case the projection does not know, skipped.
    pub unknown_case: u64,
    /// What happened to possible adverse events, in order.
    pub flags: Vec<FlagChange>,
}

/// The key of `channel` in figures.
pub fn channel_key(channel: i32) -> &'static str {
    match Channel::try_from(channel) {
        Ok(Channel::Unspecified) | Err(_) => "other",
        Ok(channel) => channel.short_name(),
    }
}

/// The key of a suppression `reason` in figures.
pub fn reason_key(reason: i32) -> &'static str {
    match SuppressionReason::try_from(reason) {
        Ok(SuppressionReason::NoConsent) => "no_consent",
        Ok(SuppressionReason::OptedOut) => "opted_out",
        Ok(SuppressionReason::OutsideContactWindow) => "outside_contact_window",
        Ok(SuppressionReason::FrequencyCap) => "frequency_cap",
        Ok(SuppressionReason::Expired) => "expired",
        Ok(SuppressionReason::CaseNotActive) => "case_not_active",
        Ok(SuppressionReason::Unspecified) | Err(_) => "other",
    }
}

/// A review of a possible adverse event is due within this.
const AE_REPORT_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);

impl Fold {
    /// Adds `event` to the figures, in the site's time zone `zone`.
    pub fn add(&mut self, zone: Tz, event: &Envelope) {
        let Some(payload) = &event.payload else {
            return;
        };
        let Some(at) = event.occurred_at.as_ref().and_then(instant) else {
            return;
        };
        let case_id = event.case_id.as_str();
        if let Payload::CaseOpened(opened) = payload {
            let opened_at = opened.enrolled_at.as_ref().and_then(instant).unwrap_or(at);
            self.cases
                .entry(case_id.to_owned())
                .or_insert_with(|| CaseFacts {
                    program_id: opened.program_id.clone(),
                    opened_at,
                    first_sent_at: None,
                    first_contact_at: None,
                    opted_out: false,
                });
            self.count(case_id, zone, opened_at, "", figure::ENROLLED, 1);
            return;
        }
        if !self.cases.contains_key(case_id) {
            if counted(payload) {
                self.unknown_case += 1;
            }
            return;
        }
        match payload {
            Payload::OutreachRequested(requested) => {
                let channel = channel_key(requested.channel);
                let due_at = requested.due_at.as_ref().and_then(instant).unwrap_or(at);
                self.attempt(case_id, &requested.attempt_id, channel).due_at = Some(due_at);
                self.count(case_id, zone, at, channel, figure::REQUESTED, 1);
            }
            Payload::AttemptSent(sent) => {
                let at = sent.sent_at.as_ref().and_then(instant).unwrap_or(at);
                if sent.from_person {
                    self.answer_inbound(case_id, zone, at);
                } else {
                    self.attempted(case_id, zone, at, &sent.attempt_id, sent.channel);
                }
                self.first_send(case_id, zone, at);
            }
            Payload::CallTaskRequested(task) => {
                self.attempted(case_id, zone, at, &task.attempt_id, Channel::Voice as i32);
            }
            Payload::AttemptFailed(failed) => {
                self.attempted(case_id, zone, at, &failed.attempt_id, failed.channel);
            }
            Payload::AttemptSuppressed(suppressed) => {
                let channel = channel_key(suppressed.channel);
                self.attempt(case_id, &suppressed.attempt_id, channel)
                    .settled = true;
                let name = format!(
                    "{}{}",
                    figure::SUPPRESSED_PREFIX,
                    reason_key(suppressed.reason)
                );
                self.count(case_id, zone, at, channel, &name, 1);
            }
            Payload::OutreachExpired(_) => self.count(case_id, zone, at, "", figure::EXPIRED, 1),
            Payload::InboundReceived(inbound) => {
                let received = inbound.received_at.as_ref().and_then(instant).unwrap_or(at);
                let channel = channel_key(inbound.channel);
                self.count(case_id, zone, received, channel, figure::INBOUND, 1);
                self.open.insert(
                    (OpenKind::Inbound, inbound.inbound_id.clone()),
                    Some(OpenItem {
                        case_id: case_id.to_owned(),
                        channel: channel.to_owned(),
                        since: received,
                        due_at: None,
                    }),
                );
                if !inbound.in_reply_to_attempt_id.is_empty() {
                    self.reach(case_id, &inbound.in_reply_to_attempt_id);
                }
                self.first_contact(case_id, zone, received);
            }
            Payload::OptOutReceived(_) => {
                if let Some(case) = self.cases.get_mut(case_id)
                    && !case.opted_out
                {
                    case.opted_out = true;
                    self.count(case_id, zone, at, "", figure::OPTED_OUT, 1);
                }
            }
            Payload::AdverseEventSuspected(flag) => {
                let received = flag.received_at.as_ref().and_then(instant).unwrap_or(at);
                let key = flag.flag_key();
                self.open.insert(
                    (OpenKind::AdverseEvent, key.to_owned()),
                    Some(OpenItem {
                        case_id: case_id.to_owned(),
                        channel: String::new(),
                        since: received,
                        due_at: Some(
                            flag.report_due_at
                                .as_ref()
                                .and_then(instant)
                                .unwrap_or(received + AE_REPORT_WINDOW),
                        ),
                    }),
                );
                self.count(case_id, zone, received, "", figure::AE_FLAGS, 1);
                self.flags.push(FlagChange::Raised {
                    case_id: case_id.to_owned(),
                    key: key.to_owned(),
                    inbound_id: flag.inbound_id.clone(),
                    received_at: received,
                    due_at: flag
                        .report_due_at
                        .as_ref()
                        .and_then(instant)
                        .unwrap_or(received + AE_REPORT_WINDOW),
                });
            }
            Payload::AdverseEventReported(decided) => {
                let key = decided.flag_key();
                let aware_at = decided.aware_at.as_ref().and_then(instant).unwrap_or(at);
                self.review_done(case_id, zone, at, key);
                if decided.decision == "reported" {
                    self.count(case_id, zone, at, "", figure::AE_REPORTED, 1);
                    if at <= aware_at + AE_REPORT_WINDOW {
                        self.count(case_id, zone, at, "", figure::AE_REPORTED_IN_24H, 1);
                    }
                } else {
                    self.count(case_id, zone, at, "", figure::AE_NOT_AE, 1);
                }
                self.flags.push(FlagChange::Decided {
                    case_id: case_id.to_owned(),
                    key: key.to_owned(),
                    inbound_id: decided.inbound_id.clone(),
                    aware_at,
                    decision: decided.decision.clone(),
                    at,
                    by: decided.decided_by.clone(),
                    safety_reference: decided.safety_reference.clone(),
                    reason: decided.reason.clone(),
                });
            }
            Payload::CallbackRequested(callback) => {
                self.open.insert(
                    (OpenKind::Callback, callback.task_id.clone()),
                    Some(OpenItem {
                        case_id: case_id.to_owned(),
                        channel: String::new(),
                        since: at,
                        due_at: callback.due_at.as_ref().and_then(instant),
                    }),
                );
                self.count(case_id, zone, at, "", figure::CALLBACKS, 1);
            }
            Payload::TaskCompleted(done) => self.task_done(case_id, zone, at, done),
            Payload::TaskWithdrawn(withdrawn) => {
                for kind in [OpenKind::Callback, OpenKind::AdverseEvent] {
                    if let Some(item) = self.open.get_mut(&(kind, withdrawn.task_id.clone())) {
                        *item = None;
                    }
                }
            }
            _ => {}
        }
    }

    fn task_done(
        &mut self,
        case_id: &str,
        zone: Tz,
        at: DateTime<Utc>,
        done: &touchpoint_proto::v1::TaskCompleted,
    ) {
        let reached = matches!(done.outcome.as_str(), "reached" | "refused");
        if done.kind == "call" && reached && !done.attempt_id.is_empty() {
            self.reach(case_id, &done.attempt_id);
            self.first_contact(case_id, zone, at);
        }
        let key = done.task_id.clone();
        if let Some(slot) = self.open.get_mut(&(OpenKind::Callback, key.clone()))
            && let Some(item) = slot.take()
        {
            self.count(case_id, zone, at, "", figure::CALLBACKS_DONE, 1);
            if item.due_at.is_none_or(|due| at <= due) {
                self.count(case_id, zone, at, "", figure::CALLBACKS_IN_SLA, 1);
            }
            if reached {
                self.first_contact(case_id, zone, at);
            }
        }
        if done.kind == "adverse_event_review" {
            self.flags.push(FlagChange::Reviewed {
                key: key.clone(),
                at,
                by: done.coordinator_id.clone(),
            });
        }
        self.review_done(case_id, zone, at, &key);
        self.answer_inbound(case_id, zone, at);
    }

    /// The possible adverse event `key` was reviewed at `at`: counted once,
    /// by its report or its review task, whichever comes first.
    fn review_done(&mut self, case_id: &str, zone: Tz, at: DateTime<Utc>, key: &str) {
        if let Some(slot) = self.open.get_mut(&(OpenKind::AdverseEvent, key.to_owned()))
            && let Some(item) = slot.take()
        {
            self.count(case_id, zone, at, "", figure::AE_REVIEWED, 1);
            if at <= item.since + AE_REPORT_WINDOW {
                self.count(case_id, zone, at, "", figure::AE_REVIEWED_IN_24H, 1);
            }
        }
    }

    /// The attempt `attempt_id`, known from now on.
    fn attempt(&mut self, case_id: &str, attempt_id: &str, channel: &str) -> &mut AttemptFacts {
        self.attempts
            .entry(attempt_id.to_owned())
            .or_insert_with(|| AttemptFacts {
                case_id: case_id.to_owned(),
                channel: channel.to_owned(),
                due_at: None,
                attempted_on: None,
                settled: false,
                reached: false,
            })
    }

    /// Attempt `attempt_id` was made at `at`: counted once, and its answer if
    /// that came first.
    fn attempted(
        &mut self,
        case_id: &str,
        zone: Tz,
        at: DateTime<Utc>,
        attempt_id: &str,
        channel: i32,
    ) {
        let channel = channel_key(channel);
        let day = day_of(zone, at);
        let attempt = self.attempt(case_id, attempt_id, channel);
        // An answer recorded first did not know the channel.
        channel.clone_into(&mut attempt.channel);
        attempt.settled = true;
        if attempt.attempted_on.is_some() {
            return;
        }
        attempt.attempted_on = Some(day);
        let reached = attempt.reached;
        self.count_on(case_id, day, channel, figure::ATTEMPTED, 1);
        if reached {
            self.count_on(case_id, day, channel, figure::REACHED, 1);
        }
    }

    /// Attempt `attempt_id` was answered: counted once, on the day it was made.
    fn reach(&mut self, case_id: &str, attempt_id: &str) {
        // An answer may be recorded before the attempt (they come on different
        // topics): the attempt credits it when it comes.
        let attempt = self.attempt(case_id, attempt_id, channel_key(0));
        if attempt.reached {
            return;
        }
        attempt.reached = true;
        if let Some(day) = attempt.attempted_on {
            let channel = attempt.channel.clone();
            self.count_on(case_id, day, &channel, figure::REACHED, 1);
        }
    }

    fn first_send(&mut self, case_id: &str, zone: Tz, at: DateTime<Utc>) {
        let Some(case) = self.cases.get_mut(case_id) else {
            return;
        };
        if case.first_sent_at.is_some() {
            return;
        }
        case.first_sent_at = Some(at);
        let seconds = (at - case.opened_at).num_seconds().max(0);
        self.count(case_id, zone, at, "", figure::FIRST_SEND, 1);
        self.count(case_id, zone, at, "", figure::FIRST_SEND_SECONDS, seconds);
    }

    fn first_contact(&mut self, case_id: &str, zone: Tz, at: DateTime<Utc>) {
        let Some(case) = self.cases.get_mut(case_id) else {
            return;
        };
        if case.first_contact_at.is_some() {
            return;
        }
        case.first_contact_at = Some(at);
        let seconds = (at - case.opened_at).num_seconds().max(0);
        self.count(case_id, zone, at, "", figure::FIRST_CONTACT, 1);
        self.count(
            case_id,
            zone,
            at,
            "",
            figure::FIRST_CONTACT_SECONDS,
            seconds,
        );
    }

    /// A person answered the case at `at`: every inbound contact of it still
    /// waiting is answered.
    fn answer_inbound(&mut self, case_id: &str, zone: Tz, at: DateTime<Utc>) {
        let mut answered = Vec::new();
        for ((kind, _), slot) in &mut self.open {
            if *kind == OpenKind::Inbound
                && let Some(item) = slot
                && item.case_id == case_id
                && item.since <= at
                && let Some(item) = slot.take()
            {
                answered.push(item);
            }
        }
        for item in answered {
            let seconds = (at - item.since).num_seconds().max(0);
            self.count(case_id, zone, at, &item.channel, figure::RESPONDED, 1);
            self.count(
                case_id,
                zone,
                at,
                &item.channel,
                figure::RESPONSE_SECONDS,
                seconds,
            );
        }
    }

    fn count(
        &mut self,
        case_id: &str,
        zone: Tz,
        at: DateTime<Utc>,
        channel: &str,
        name: &str,
        by: i64,
    ) {
        self.count_on(case_id, day_of(zone, at), channel, name, by);
    }

    fn count_on(&mut self, case_id: &str, day: NaiveDate, channel: &str, name: &str, by: i64) {
        let Some(case) = self.cases.get(case_id) else {
            return;
        };
        *self
            .figures
            .entry((
                case.program_id.clone(),
                day,
                channel.to_owned(),
                name.to_owned(),
            ))
            .or_default() += by;
    }
}

/// Whether a figure counts `payload` (the rest of a case's story does not).
fn counted(payload: &Payload) -> bool {
    matches!(
        payload,
        Payload::OutreachRequested(_)
            | Payload::AttemptSent(_)
            | Payload::CallTaskRequested(_)
            | Payload::AttemptFailed(_)
            | Payload::AttemptSuppressed(_)
            | Payload::OutreachExpired(_)
            | Payload::InboundReceived(_)
            | Payload::OptOutReceived(_)
            | Payload::AdverseEventSuspected(_)
            | Payload::AdverseEventReported(_)
            | Payload::CallbackRequested(_)
            | Payload::TaskCompleted(_)
            | Payload::TaskWithdrawn(_)
    )
}

/// The day `at` falls on in `zone`.
pub fn day_of(zone: Tz, at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&zone).date_naive()
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use touchpoint_platform::envelope::timestamp;
    use touchpoint_proto::v1::{
        AdverseEventSuspected, AttemptSent, CallbackRequested, CaseOpened, InboundReceived,
        TaskCompleted,
    };

    use super::*;

    const ZONE: Tz = chrono_tz::America::New_York;

    /// Noon in New York on day `n` of January 2027.
    fn day(n: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_798_822_800, 0).unwrap_or_default() + TimeDelta::days(n - 1)
    }

    fn event(case: &str, at: DateTime<Utc>, payload: Payload) -> Envelope {
        Envelope {
            case_id: case.into(),
            occurred_at: Some(timestamp(at)),
            payload: Some(payload),
            ..Envelope::default()
        }
    }

    fn opened(fold: &mut Fold, case: &str) {
        fold.add(
            ZONE,
            &event(
                case,
                day(1),
                Payload::CaseOpened(CaseOpened {
                    program_id: "adherence".into(),
                    ..CaseOpened::default()
                }),
            ),
        );
    }

    fn done(case: &str, at: DateTime<Utc>, task: &str, kind: &str) -> Envelope {
        event(
            case,
            at,
            Payload::TaskCompleted(TaskCompleted {
                task_id: task.into(),
                kind: kind.into(),
                outcome: "resolved".into(),
                ..TaskCompleted::default()
            }),
        )
    }

    fn total(fold: &Fold, name: &str) -> i64 {
        fold.figures
            .iter()
            .filter(|((.., figure), _)| figure == name)
            .map(|(_, v)| v)
            .sum()
    }

    #[test]
    fn the_first_day_of_january_at_noon_in_new_york() {
        assert_eq!(
            day(1).with_timezone(&ZONE).to_string(),
            "2027-01-01 12:00:00 EST"
        );
    }

    #[test]
    fn an_answer_recorded_before_its_attempt_is_credited_once_to_the_attempts_day() {
        let mut fold = Fold::default();
        opened(&mut fold, "a");
        let reply = event(
            "a",
            day(4),
            Payload::InboundReceived(InboundReceived {
                inbound_id: "in-1".into(),
                channel: Channel::Sms as i32,
                in_reply_to_attempt_id: "a-1".into(),
                ..InboundReceived::default()
            }),
        );
        let sent = event(
            "a",
            day(2),
            Payload::AttemptSent(AttemptSent {
                attempt_id: "a-1".into(),
                channel: Channel::Sms as i32,
                ..AttemptSent::default()
            }),
        );
        fold.add(ZONE, &reply);
        fold.add(ZONE, &sent);
        fold.add(ZONE, &sent);
        let jan = |d| NaiveDate::from_ymd_opt(2027, 1, d).unwrap_or_default();
        let key = |d, name: &str| {
            (
                "adherence".to_owned(),
                jan(d),
                "sms".to_owned(),
                name.to_owned(),
            )
        };
        assert_eq!(fold.figures.get(&key(2, figure::ATTEMPTED)), Some(&1));
        assert_eq!(fold.figures.get(&key(2, figure::REACHED)), Some(&1));
        assert_eq!(fold.figures.get(&key(4, figure::INBOUND)), Some(&1));
        // First contact three days after opening, whatever was sent first.
        assert_eq!(total(&fold, figure::FIRST_CONTACT_SECONDS), 3 * 86_400);
        assert_eq!(total(&fold, figure::FIRST_SEND_SECONDS), 86_400);
    }

    #[test]
    fn a_callback_is_within_its_sla_only_when_done_by_its_due_time() {
        let mut fold = Fold::default();
        opened(&mut fold, "a");
        for (task, due) in [("on-time", 3), ("late", 3), ("open", 9)] {
            fold.add(
                ZONE,
                &event(
                    "a",
                    day(2),
                    Payload::CallbackRequested(CallbackRequested {
                        task_id: task.into(),
                        due_at: Some(timestamp(day(due))),
                        ..CallbackRequested::default()
                    }),
                ),
            );
        }
        fold.add(ZONE, &done("a", day(3), "on-time", "callback"));
        fold.add(ZONE, &done("a", day(4), "late", "callback"));
        assert_eq!(total(&fold, figure::CALLBACKS), 3);
        assert_eq!(total(&fold, figure::CALLBACKS_DONE), 2);
        assert_eq!(total(&fold, figure::CALLBACKS_IN_SLA), 1);
        let open: Vec<&String> = fold
            .open
            .iter()
            .filter(|(_, item)| item.is_some())
            .map(|((_, key), _)| key)
            .collect();
        assert_eq!(open, ["open"]);
    }

    #[test]
    fn one_review_closes_the_flag_a_caregivers_text_raised_on_two_cases() {
        let mut fold = Fold::default();
        for case in ["a", "b"] {
            opened(&mut fold, case);
            fold.add(
                ZONE,
                &event(
                    case,
                    day(2),
                    Payload::AdverseEventSuspected(AdverseEventSuspected {
                        inbound_id: "in-1".into(),
                        received_at: Some(timestamp(day(2))),
                        review_task_id: "review-1".into(),
                        ..AdverseEventSuspected::default()
                    }),
                ),
            );
        }
        // Reviewed 25 hours after receipt: done, but not within 24 hours.
        let late = day(3) + TimeDelta::hours(1);
        fold.add(ZONE, &done("a", late, "review-1", "adverse_event_review"));
        assert_eq!(total(&fold, figure::AE_FLAGS), 2);
        assert_eq!(total(&fold, figure::AE_REVIEWED), 1);
        assert_eq!(total(&fold, figure::AE_REVIEWED_IN_24H), 0);
        assert!(fold.open.values().all(Option::is_none), "{:?}", fold.open);
    }

    #[test]
    fn an_event_without_a_time_or_of_an_unknown_case_is_skipped_not_a_panic() {
        let mut fold = Fold::default();
        fold.add(ZONE, &Envelope::default());
        fold.add(
            ZONE,
            &event(
                "nobody",
                day(1),
                Payload::AttemptSent(AttemptSent::default()),
            ),
        );
        assert!(fold.figures.is_empty());
        assert_eq!(fold.unknown_case, 1);
    }

    #[test]
    fn a_report_within_24_hours_closes_the_flag_once_and_is_counted_as_reported() {
        let mut fold = Fold::default();
        opened(&mut fold, "a");
        for (key, on) in [("review-1", 2), ("review-2", 2)] {
            fold.add(
                ZONE,
                &event(
                    "a",
                    day(on),
                    Payload::AdverseEventSuspected(AdverseEventSuspected {
                        inbound_id: format!("in-{key}"),
                        received_at: Some(timestamp(day(on))),
                        review_task_id: key.into(),
                        ..AdverseEventSuspected::default()
                    }),
                ),
            );
        }
        let decided = |key: &str, at, decision: &str| {
            event(
                "a",
                at,
                Payload::AdverseEventReported(touchpoint_proto::v1::AdverseEventReported {
                    review_task_id: key.into(),
                    aware_at: Some(timestamp(day(2))),
                    decision: decision.into(),
                    decided_by: "paula".into(),
                    ..touchpoint_proto::v1::AdverseEventReported::default()
                }),
            )
        };
        // Reported 20 hours after receipt; routing then completes the task.
        let reported_at = day(2) + TimeDelta::hours(20);
        fold.add(ZONE, &decided("review-1", reported_at, "reported"));
        fold.add(
            ZONE,
            &done("a", reported_at, "review-1", "adverse_event_review"),
        );
        // Ruled out two days later.
        fold.add(ZONE, &decided("review-2", day(4), "not_adverse_event"));
        assert_eq!(total(&fold, figure::AE_FLAGS), 2);
        assert_eq!(total(&fold, figure::AE_REVIEWED), 2);
        assert_eq!(total(&fold, figure::AE_REVIEWED_IN_24H), 1);
        assert_eq!(total(&fold, figure::AE_REPORTED), 1);
        assert_eq!(total(&fold, figure::AE_REPORTED_IN_24H), 1);
        assert_eq!(total(&fold, figure::AE_NOT_AE), 1);
        assert!(fold.open.values().all(Option::is_none));
        let decisions: Vec<(&str, &str)> = fold
            .flags
            .iter()
            .filter_map(|change| match change {
                FlagChange::Decided { key, decision, .. } => {
                    Some((key.as_str(), decision.as_str()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            decisions,
            [("review-1", "reported"), ("review-2", "not_adverse_event")]
        );
    }
}
