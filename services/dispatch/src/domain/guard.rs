//! The last look before an attempt goes to a provider (or, for voice, becomes a
//! call task): is the case active, is there consent on this channel, has the
//! patient opted out, is it still inside the contact window in the patient's
//! zone, and is the patient under the frequency cap?
//!
//! Cadence checked the same when it requested the attempt, but time has passed
//! since: a STOP may have arrived, a provider queue may have held the request past
//! the evening. A failed check suppresses the attempt with its reason; it is
//! never sent. Dispatch keeps its own view of each case from the case and inbound
//! topics; while it has not seen the case yet, the attempt waits rather than
//! being suppressed on a view that is only late.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use touchpoint_programs::Program;
use touchpoint_proto::v1::{Channel, SuppressionReason};

/// The case's status as dispatch last heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseStatus {
    /// Outreach may go out.
    Active,
    /// Held, until `until` if set.
    Paused {
        /// When the pause ends by itself.
        until: Option<DateTime<Utc>>,
    },
    /// Nothing more goes out.
    Closed,
}

/// What dispatch knows of a case for its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseView {
    /// The case's status.
    pub status: CaseStatus,
    /// The patient's time zone.
    pub time_zone: Tz,
    /// Channels with consent recorded and not revoked.
    pub consented: BTreeSet<Channel>,
    /// Channels the patient opted out of.
    pub opted_out: BTreeSet<Channel>,
    /// The attempt's number or address opted out of its channel (on this case
    /// or any other) and has not opted back in.
    pub destination_opted_out: bool,
}

/// What to do with an attempt now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it over.
    Send,
    /// Never send it, for this reason.
    Suppress(SuppressionReason),
    /// Dispatch has not seen the case yet: look again shortly.
    WaitForCase,
}

/// The verdict on an attempt on `channel` that must be handed over by
/// `not_after`, at `now`. `program` gives the window and cap (when loaded here);
/// `sent` lists when earlier messages to the patient went out.
pub fn check(
    case: Option<&CaseView>,
    program: Option<&Program>,
    channel: Channel,
    not_after: DateTime<Utc>,
    sent: &[DateTime<Utc>],
    now: DateTime<Utc>,
) -> Verdict {
    let Some(case) = case else {
        return Verdict::WaitForCase;
    };
    let reason = match case.status {
        CaseStatus::Closed => Some(SuppressionReason::CaseNotActive),
        CaseStatus::Paused { until } if until.is_none_or(|u| u > now) => {
            Some(SuppressionReason::CaseNotActive)
        }
        _ if !case.consented.contains(&channel) => Some(SuppressionReason::NoConsent),
        _ if case.opted_out.contains(&channel) || case.destination_opted_out => {
            Some(SuppressionReason::OptedOut)
        }
        _ if now > not_after => Some(SuppressionReason::Expired),
        _ => program.and_then(|program| {
            if !program.window.allows(case.time_zone, now) {
                Some(SuppressionReason::OutsideContactWindow)
            } else if !program.cap.allows(case.time_zone, sent, now) {
                Some(SuppressionReason::FrequencyCap)
            } else {
                None
            }
        }),
    };
    reason.map_or(Verdict::Send, Verdict::Suppress)
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use touchpoint_programs::fixtures::utc;

    use super::*;

    fn program() -> Program {
        let text = r#"
id = "p"
name = "P"
languages = ["en"]
[contact_window]
start = "09:00"
end = "20:00"
[[steps]]
id = "s"
anchor = "enrolled"
template = "t"
channels = [{ channel = "sms" }]
"#;
        let templates = ["t".to_owned()].into_iter().collect();
        touchpoint_programs::parse("p.toml", text, &templates).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn case() -> CaseView {
        CaseView {
            status: CaseStatus::Active,
            time_zone: chrono_tz::America::New_York,
            consented: [Channel::Sms, Channel::Email].into_iter().collect(),
            opted_out: BTreeSet::new(),
            destination_opted_out: false,
        }
    }

    /// 10:00 EDT on Tuesday 2026-04-07; the window closes at 20:00 EDT.
    const NOW: &str = "2026-04-07T14:00:00Z";
    const CLOSES: &str = "2026-04-08T00:00:00Z";

    fn verdict(case: &CaseView, channel: Channel, sent: &[DateTime<Utc>], now: &str) -> Verdict {
        check(
            Some(case),
            Some(&program()),
            channel,
            utc(CLOSES),
            sent,
            utc(now),
        )
    }

    #[test]
    fn a_consented_active_case_inside_the_window_and_under_the_cap_is_sent() {
        assert_eq!(verdict(&case(), Channel::Sms, &[], NOW), Verdict::Send);
    }

    #[test]
    fn each_failed_check_names_its_reason() {
        let mut closed = case();
        closed.status = CaseStatus::Closed;
        let mut stopped = case();
        stopped.opted_out.insert(Channel::Sms);
        let number_stopped = CaseView {
            destination_opted_out: true,
            ..case()
        };
        let yesterday = [utc("2026-04-06T14:00:00Z")];
        let this_morning = [utc("2026-04-07T13:30:00Z")];
        use SuppressionReason as R;
        let cases = [
            (verdict(&closed, Channel::Sms, &[], NOW), R::CaseNotActive),
            (verdict(&case(), Channel::Fax, &[], NOW), R::NoConsent),
            (verdict(&stopped, Channel::Sms, &[], NOW), R::OptedOut),
            (
                verdict(&number_stopped, Channel::Sms, &[], NOW),
                R::OptedOut,
            ),
            // 21:30 EDT: past the request's own deadline.
            (
                verdict(&case(), Channel::Sms, &[], "2026-04-08T01:30:00Z"),
                R::Expired,
            ),
            // 08:30 EDT: before the window opens (and before not_after).
            (
                verdict(&case(), Channel::Sms, &[], "2026-04-07T12:30:00Z"),
                R::OutsideContactWindow,
            ),
            (
                verdict(&case(), Channel::Sms, &this_morning, NOW),
                R::FrequencyCap,
            ),
        ];
        for (got, reason) in cases {
            assert_eq!(got, Verdict::Suppress(reason), "{reason:?}");
        }
        assert_eq!(
            verdict(&case(), Channel::Sms, &yesterday, NOW),
            Verdict::Send,
            "yesterday's message counts only toward the week"
        );
    }

    #[test]
    fn a_pause_holds_until_it_ends() {
        let mut paused = case();
        paused.status = CaseStatus::Paused {
            until: Some(utc(NOW) + TimeDelta::hours(1)),
        };
        assert_eq!(
            verdict(&paused, Channel::Sms, &[], NOW),
            Verdict::Suppress(SuppressionReason::CaseNotActive)
        );
        assert_eq!(
            verdict(&paused, Channel::Sms, &[], "2026-04-07T15:30:00Z"),
            Verdict::Send,
            "the pause has ended"
        );
    }

    #[test]
    fn an_unseen_case_waits_and_an_unloaded_program_still_gets_the_case_checks() {
        let none = check(
            None,
            Some(&program()),
            Channel::Sms,
            utc(CLOSES),
            &[],
            utc(NOW),
        );
        assert_eq!(none, Verdict::WaitForCase);
        let mut stopped = case();
        stopped.opted_out.insert(Channel::Sms);
        let no_program = check(
            Some(&stopped),
            None,
            Channel::Sms,
            utc(CLOSES),
            &[],
            utc(NOW),
        );
        assert_eq!(no_program, Verdict::Suppress(SuppressionReason::OptedOut));
        let late = check(
            Some(&case()),
            None,
            Channel::Sms,
            utc(CLOSES),
            &[],
            utc("2026-04-08T01:30:00Z"),
        );
        assert_eq!(late, Verdict::Suppress(SuppressionReason::Expired));
    }
}
