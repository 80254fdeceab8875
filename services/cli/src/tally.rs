//! Counts and KPIs from case events: what the demo's live line, its closing
//! table and `touchpoint kpi` show. Pure: fed events, asked for figures.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeDelta, Utc};
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{Channel, Envelope, SuppressionReason};

/// Running counts over the events of the cases being watched.
#[derive(Debug, Default)]
pub struct Tally {
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
    /// Each attempt's channel, to credit replies to it.
    attempt_channels: HashMap<String, &'static str>,
    /// Attempts answered by a reply, by channel.
    reached: BTreeMap<&'static str, usize>,
    /// When each case was opened, and when it was first sent something.
    opened: HashMap<String, DateTime<Utc>>,
    first_sent: HashMap<String, DateTime<Utc>>,
    /// Each case's attempts (sent, failed or suppressed).
    attempts_per_case: HashMap<String, usize>,
    /// Callbacks not completed yet: task id to the time they are due by.
    open_callbacks: HashMap<String, Option<DateTime<Utc>>>,
    /// Callbacks completed after their due time.
    late_callbacks: usize,
    /// Adverse-event flags not reviewed yet: review task id (the inbound id
    /// for a flag that names none) to the time a report is due by.
    open_flags: HashMap<String, Option<DateTime<Utc>>>,
}

impl Tally {
    /// Counts `event`.
    pub fn add(&mut self, event: &Envelope) {
        let Some(payload) = &event.payload else {
            return;
        };
        let case = &event.case_id;
        let at = instant(event.occurred_at.as_ref());
        match payload {
            Payload::CaseOpened(_) => {
                if let Some(at) = at {
                    self.opened.insert(case.clone(), at);
                }
            }
            Payload::OutreachRequested(_) => self.requested += 1,
            Payload::AttemptSent(sent) => {
                let channel = channel_name(sent.channel);
                *self.sent.entry(channel).or_default() += 1;
                self.attempt_channels
                    .insert(sent.attempt_id.clone(), channel);
                *self.attempts_per_case.entry(case.clone()).or_default() += 1;
                if let Some(at) = at {
                    self.first_sent.entry(case.clone()).or_insert(at);
                }
            }
            Payload::AttemptDelivered(_) => self.delivered += 1,
            Payload::AttemptFailed(_) => {
                self.failed += 1;
                *self.attempts_per_case.entry(case.clone()).or_default() += 1;
            }
            Payload::AttemptSuppressed(suppressed) => {
                *self
                    .suppressed
                    .entry(reason_name(suppressed.reason))
                    .or_default() += 1;
            }
            Payload::CallTaskRequested(task) => {
                self.call_tasks += 1;
                self.attempt_channels
                    .insert(task.attempt_id.clone(), "voice");
                *self.attempts_per_case.entry(case.clone()).or_default() += 1;
            }
            Payload::InboundReceived(inbound) => {
                self.replies += 1;
                if let Some(channel) = self.attempt_channels.get(&inbound.in_reply_to_attempt_id) {
                    *self.reached.entry(channel).or_default() += 1;
                }
            }
            Payload::ContactRouted(_) => self.routed += 1,
            Payload::OptOutReceived(_) => self.opt_outs += 1,
            Payload::AdverseEventSuspected(flag) => {
                self.ae_flags += 1;
                let key = if flag.review_task_id.is_empty() {
                    &flag.inbound_id
                } else {
                    &flag.review_task_id
                };
                self.open_flags
                    .insert(key.clone(), instant(flag.report_due_at.as_ref()));
            }
            Payload::CallbackRequested(callback) => {
                self.callbacks += 1;
                self.open_callbacks
                    .insert(callback.task_id.clone(), instant(callback.due_at.as_ref()));
            }
            Payload::TaskCompleted(done) => {
                if let Some(due) = self.open_callbacks.remove(&done.task_id)
                    && matches!((at, due), (Some(at), Some(due)) if at > due)
                {
                    self.late_callbacks += 1;
                }
                self.open_flags.remove(&done.task_id);
            }
            _ => {}
        }
    }

    /// The cases opened among the events counted.
    pub fn cases(&self) -> usize {
        self.opened.len()
    }

    /// Attempts sent over every channel.
    pub fn sent_total(&self) -> usize {
        self.sent.values().sum()
    }

    /// Attempts suppressed for any reason.
    pub fn suppressed_total(&self) -> usize {
        self.suppressed.values().sum()
    }

    /// The KPIs over `cases` cases, at `now` (for what is overdue).
    pub fn figures(&self, cases: usize, now: DateTime<Utc>) -> Figures {
        let overdue = |due: &Option<DateTime<Utc>>| due.is_some_and(|due| due < now);
        let attempts: usize = self.attempts_per_case.values().sum();
        let contact_rates = self
            .sent
            .iter()
            .map(|(channel, sent)| {
                let reached = self.reached.get(channel).copied().unwrap_or(0);
                (*channel, reached, *sent)
            })
            .collect();
        let waits: Vec<TimeDelta> = self
            .first_sent
            .iter()
            .filter_map(|(case, sent)| self.opened.get(case).map(|opened| *sent - *opened))
            .collect();
        let first_contact_hours = (!waits.is_empty()).then(|| {
            waits.iter().map(|w| w.num_minutes()).sum::<i64>() as f64 / 60.0 / waits.len() as f64
        });
        Figures {
            cases,
            attempts_per_case: ratio(attempts, cases),
            contact_rates,
            first_contact_hours,
            backlog: self
                .requested
                .saturating_sub(attempts + self.suppressed_total()),
            suppressed: self.suppressed.clone(),
            opt_outs: self.opt_outs,
            opt_out_rate: ratio(self.opt_outs, cases),
            callbacks: self.callbacks,
            callbacks_past_sla: self.late_callbacks
                + self.open_callbacks.values().filter(|d| overdue(d)).count(),
            ae_flags: self.ae_flags,
            ae_flags_open: self.open_flags.len(),
            ae_flags_overdue: self.open_flags.values().filter(|d| overdue(d)).count(),
        }
    }

    /// The KPI table's rows: name and value, for `cases` cases at `now`.
    pub fn kpis(&self, cases: usize, now: DateTime<Utc>) -> Vec<(String, String)> {
        let figures = self.figures(cases, now);
        let mut rows = vec![(
            "attempts per case".to_owned(),
            format!("{:.1}", figures.attempts_per_case),
        )];
        for (channel, reached, sent) in &figures.contact_rates {
            rows.push((
                format!("contact rate, {channel}"),
                format!(
                    "{:.0}% ({reached} of {sent})",
                    100.0 * ratio(*reached, *sent)
                ),
            ));
        }
        if let Some(hours) = figures.first_contact_hours {
            rows.push((
                "time to first contact (mean)".into(),
                format!("{:.1} days", hours / 24.0),
            ));
        }
        rows.push((
            "backlog (asked for, not yet attempted)".into(),
            figures.backlog.to_string(),
        ));
        for (reason, n) in &figures.suppressed {
            rows.push((format!("suppressed, {reason}"), n.to_string()));
        }
        rows.push((
            "opt-out rate".into(),
            format!(
                "{:.0}% ({} of {cases} cases)",
                100.0 * figures.opt_out_rate,
                figures.opt_outs
            ),
        ));
        rows.push(("callbacks promised".into(), figures.callbacks.to_string()));
        rows.push((
            "callbacks past their SLA".into(),
            figures.callbacks_past_sla.to_string(),
        ));
        rows.push(("AE flags raised".into(), figures.ae_flags.to_string()));
        rows.push(("AE flags open".into(), figures.ae_flags_open.to_string()));
        rows.push((
            "AE flags open past 24 h".into(),
            figures.ae_flags_overdue.to_string(),
        ));
        rows
    }
}

/// The KPIs, as numbers: what the table shows and the metrics export.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// Cases counted.
    pub cases: usize,
    /// Attempts (sent, failed or put to a coordinator as a call) per case.
    pub attempts_per_case: f64,
    /// Per channel: attempts answered by a reply, attempts sent.
    pub contact_rates: Vec<(&'static str, usize, usize)>,
    /// Mean hours from a case's opening to its first attempt sent.
    pub first_contact_hours: Option<f64>,
    /// Touchpoints asked for and not yet attempted or suppressed.
    pub backlog: usize,
    /// Suppressions by reason.
    pub suppressed: BTreeMap<&'static str, usize>,
    /// Opt-outs.
    pub opt_outs: usize,
    /// Opt-outs per case.
    pub opt_out_rate: f64,
    /// Callbacks promised.
    pub callbacks: usize,
    /// Callbacks completed after their due time, or still open past it.
    pub callbacks_past_sla: usize,
    /// Possible adverse events flagged.
    pub ae_flags: usize,
    /// Flags whose review task is not completed.
    pub ae_flags_open: usize,
    /// Open flags past their report due time (24 h after receipt).
    pub ae_flags_overdue: usize,
}

fn instant(t: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
}

/// `part / whole`, 0 when there is no whole.
pub fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// A channel's short name.
pub fn channel_name(channel: i32) -> &'static str {
    match Channel::try_from(channel) {
        Ok(Channel::Sms) => "sms",
        Ok(Channel::Email) => "email",
        Ok(Channel::Voice) => "voice",
        Ok(Channel::Fax) => "fax",
        _ => "other",
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
    use prost_types::Timestamp;
    use touchpoint_proto::v1::{
        AdverseEventSuspected, AttemptSent, AttemptSuppressed, CallbackRequested, CaseOpened,
        InboundReceived, OptOutReceived, TaskCompleted,
    };

    use super::*;

    const DAY_ZERO: i64 = 1_790_000_000;

    fn day(n: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(DAY_ZERO + n * 86_400, 0).unwrap_or_default()
    }

    fn stamp(at: DateTime<Utc>) -> Timestamp {
        Timestamp {
            seconds: at.timestamp(),
            nanos: 0,
        }
    }

    fn event(case: &str, n: i64, payload: Payload) -> Envelope {
        Envelope {
            case_id: case.into(),
            occurred_at: Some(stamp(day(n))),
            payload: Some(payload),
            ..Envelope::default()
        }
    }

    fn completed(case: &str, n: i64, task: &str) -> Envelope {
        event(
            case,
            n,
            Payload::TaskCompleted(TaskCompleted {
                task_id: task.into(),
                outcome: "resolved".into(),
                ..TaskCompleted::default()
            }),
        )
    }

    #[test]
    fn callbacks_are_late_when_completed_after_their_due_time_or_open_past_it() {
        let mut tally = Tally::default();
        for (task, due) in [
            ("on-time", 2),
            ("late", 2),
            ("open-overdue", 3),
            ("open", 9),
        ] {
            tally.add(&event(
                "a",
                1,
                Payload::CallbackRequested(CallbackRequested {
                    task_id: task.into(),
                    due_at: Some(stamp(day(due))),
                    ..CallbackRequested::default()
                }),
            ));
        }
        tally.add(&completed("a", 1, "on-time"));
        tally.add(&completed("a", 4, "late"));
        let figures = tally.figures(1, day(5));
        assert_eq!(figures.callbacks, 4);
        assert_eq!(figures.callbacks_past_sla, 2, "late and open-overdue");
    }

    #[test]
    fn an_adverse_event_flag_stays_open_until_its_review_task_is_completed() {
        let mut tally = Tally::default();
        // A caregiver's text flags both patients' cases; one review covers it.
        for case in ["a", "b"] {
            tally.add(&event(
                case,
                1,
                Payload::AdverseEventSuspected(AdverseEventSuspected {
                    inbound_id: "in-1".into(),
                    report_due_at: Some(stamp(day(2))),
                    review_task_id: "review-1".into(),
                    ..AdverseEventSuspected::default()
                }),
            ));
        }
        tally.add(&event(
            "c",
            3,
            Payload::AdverseEventSuspected(AdverseEventSuspected {
                inbound_id: "in-2".into(),
                report_due_at: Some(stamp(day(4))),
                review_task_id: "review-2".into(),
                ..AdverseEventSuspected::default()
            }),
        ));
        let at_day_3 = tally.figures(3, day(3));
        assert_eq!(
            (
                at_day_3.ae_flags,
                at_day_3.ae_flags_open,
                at_day_3.ae_flags_overdue
            ),
            (3, 2, 1)
        );
        tally.add(&completed("a", 3, "review-1"));
        let kpis: HashMap<String, String> = tally.kpis(3, day(3)).into_iter().collect();
        assert_eq!(kpis["AE flags open"], "1");
        assert_eq!(kpis["AE flags open past 24 h"], "0");
        assert_eq!(kpis["AE flags raised"], "3");
    }

    fn sent(case: &str, day: i64, attempt: &str, channel: Channel) -> Envelope {
        event(
            case,
            day,
            Payload::AttemptSent(AttemptSent {
                attempt_id: attempt.into(),
                channel: channel as i32,
                ..AttemptSent::default()
            }),
        )
    }

    #[test]
    fn replies_count_towards_the_channel_of_the_attempt_they_answer() {
        let mut tally = Tally::default();
        for case in ["a", "b"] {
            tally.add(&event(case, 0, Payload::CaseOpened(CaseOpened::default())));
        }
        tally.add(&sent("a", 1, "a-1", Channel::Sms));
        tally.add(&sent("b", 3, "b-1", Channel::Sms));
        tally.add(&sent("b", 4, "b-2", Channel::Email));
        tally.add(&event(
            "a",
            1,
            Payload::InboundReceived(InboundReceived {
                in_reply_to_attempt_id: "a-1".into(),
                ..InboundReceived::default()
            }),
        ));
        tally.add(&event(
            "b",
            5,
            Payload::OptOutReceived(OptOutReceived::default()),
        ));
        tally.add(&event(
            "b",
            6,
            Payload::AttemptSuppressed(AttemptSuppressed {
                reason: SuppressionReason::OptedOut as i32,
                ..AttemptSuppressed::default()
            }),
        ));

        assert_eq!(tally.sent_total(), 3);
        assert_eq!(tally.replies, 1);
        let kpis: HashMap<String, String> = tally.kpis(2, day(7)).into_iter().collect();
        assert_eq!(kpis["contact rate, sms"], "50% (1 of 2)");
        assert_eq!(kpis["contact rate, email"], "0% (0 of 1)");
        assert_eq!(kpis["attempts per case"], "1.5");
        assert_eq!(kpis["time to first contact (mean)"], "2.0 days");
        assert_eq!(kpis["suppressed, opted out"], "1");
        assert_eq!(kpis["opt-out rate"], "50% (1 of 2 cases)");
    }

    #[test]
    fn an_event_without_a_payload_or_time_is_skipped_not_a_panic() {
        let mut tally = Tally::default();
        tally.add(&Envelope::default());
        tally.add(&Envelope {
            payload: Some(Payload::AttemptSent(AttemptSent::default())),
            ..Envelope::default()
        });
        assert_eq!(tally.sent_total(), 1);
        assert!(
            tally
                .kpis(0, day(0))
                .iter()
                .all(|(_, v)| !v.contains("NaN"))
        );
    }
}
