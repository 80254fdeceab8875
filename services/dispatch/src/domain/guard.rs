//! The last look before an attempt goes to a provider (or, for voice, becomes a
//! call task): is the case active, is there consent on this channel, has the
//! patient opted out, is it still inside the contact window in the patient's
//! zone, and is the patient under the frequency cap? For a text or call the cap
//! counts what went to the case and what went to the same number from any case
//! (a caregiver shared by two patients is one person), and a deployment-wide cap
//! per number applies on top.
//!
//! Cadence checked the same when it requested the attempt, but time has passed
//! since: a STOP may have arrived, a provider queue may have held the request past
//! the evening. A failed check suppresses the attempt with its reason; it is
//! never sent. Dispatch keeps its own view of each case from the case and inbound
//! topics; while it has not seen the case yet, the attempt waits rather than
//! being suppressed on a view that is only late.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
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
    /// The state whose rule applies to the patient (USPS code), if any.
    pub us_state: Option<String>,
}

/// What went out before, for the caps.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sends<'a> {
    /// To the case, or to the attempt's destination from any case: each once.
    pub case_or_destination: &'a [DateTime<Utc>],
    /// To the attempt's destination, from any case and program.
    pub to_destination: &'a [DateTime<Utc>],
}

/// The deployment-wide cap: at most this many texts and calls to one phone
/// number in any 24 hours, whatever the case or program (default 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestinationCap(pub usize);

impl Default for DestinationCap {
    fn default() -> Self {
        Self(3)
    }
}

impl DestinationCap {
    /// Whether one more contact of a destination that had `sent` is allowed at
    /// `now`.
    pub fn allows(self, sent: &[DateTime<Utc>], now: DateTime<Utc>) -> bool {
        let day_ago = now - TimeDelta::hours(24);
        sent.iter()
            .filter(|at| **at > day_ago && **at <= now)
            .count()
            < self.0
    }
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
/// `sent` says when earlier messages went out; `cap` is the deployment's per
/// destination.
pub fn check(
    case: Option<&CaseView>,
    program: Option<&Program>,
    channel: Channel,
    not_after: DateTime<Utc>,
    sent: Sends<'_>,
    cap: DestinationCap,
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
        _ if !cap.allows(sent.to_destination, now) => Some(SuppressionReason::FrequencyCap),
        _ => program.and_then(|program| {
            if !program.window.allows(case.time_zone, now) {
                Some(SuppressionReason::OutsideContactWindow)
            } else if !program
                .cap
                .allows(case.time_zone, sent.case_or_destination, now)
            {
                Some(SuppressionReason::FrequencyCap)
            } else {
                None
            }
        }),
    };
    reason.map_or(Verdict::Send, Verdict::Suppress)
}

/// When a call task may be worked: the contact window of the day it is asked
/// for, in the patient's zone, ending no later than the attempt's `not_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallWindow {
    /// From.
    pub from: DateTime<Utc>,
    /// Until (exclusive).
    pub until: DateTime<Utc>,
}

/// The window for a call task asked for at `now` (inside the contact window, as
/// [`check`] found). Without the program, from now until `not_after`.
pub fn call_window(
    case: &CaseView,
    program: Option<&Program>,
    not_after: DateTime<Utc>,
    now: DateTime<Utc>,
) -> CallWindow {
    let window = program.map(|p| &p.window);
    let opens = window.and_then(|w| w.opens_on(case.time_zone, now));
    let closes = window.and_then(|w| w.closes_on(case.time_zone, now));
    CallWindow {
        from: opens.map_or(now, |o| o.min(now)),
        until: closes.map_or(not_after, |c| c.min(not_after)),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
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
        touchpoint_programs::fixtures::program(text, &["t"])
    }

    fn case() -> CaseView {
        CaseView {
            status: CaseStatus::Active,
            time_zone: chrono_tz::America::New_York,
            consented: [Channel::Sms, Channel::Email].into_iter().collect(),
            opted_out: BTreeSet::new(),
            destination_opted_out: false,
            us_state: None,
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
            Sends {
                case_or_destination: sent,
                to_destination: &[],
            },
            DestinationCap::default(),
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
            us_state: None,
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
            Sends::default(),
            DestinationCap::default(),
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
            Sends::default(),
            DestinationCap::default(),
            utc(NOW),
        );
        assert_eq!(no_program, Verdict::Suppress(SuppressionReason::OptedOut));
        let late = check(
            Some(&case()),
            None,
            Channel::Sms,
            utc(CLOSES),
            Sends::default(),
            DestinationCap::default(),
            utc("2026-04-08T01:30:00Z"),
        );
        assert_eq!(late, Verdict::Suppress(SuppressionReason::Expired));
    }

    #[test]
    fn a_number_reached_three_times_in_a_day_from_other_cases_is_not_reached_again() {
        let elsewhere = [
            utc("2026-04-06T15:00:00Z"), // 23 hours ago
            utc("2026-04-07T09:00:00Z"),
            utc("2026-04-07T12:00:00Z"),
        ];
        let check_with = |to_destination: &[DateTime<Utc>], cap| {
            check(
                Some(&case()),
                Some(&program()),
                Channel::Sms,
                utc(CLOSES),
                Sends {
                    case_or_destination: &[],
                    to_destination,
                },
                DestinationCap(cap),
                utc(NOW),
            )
        };
        assert_eq!(
            check_with(&elsewhere, 3),
            Verdict::Suppress(SuppressionReason::FrequencyCap)
        );
        assert_eq!(check_with(&elsewhere, 4), Verdict::Send);
        assert_eq!(
            check_with(&elsewhere[1..], 3),
            Verdict::Send,
            "25 hours ago is outside the day"
        );
    }

    /// A program that allows everything the TCPA does: 08:00-21:00, five a day.
    fn wide_program() -> Program {
        let text = r#"
id = "p"
name = "P"
languages = ["en"]
[contact_window]
start = "08:00"
end = "21:00"
[frequency_cap]
per_day = 5
per_week = 20
[[steps]]
id = "s"
anchor = "enrolled"
template = "t"
channels = [{ channel = "sms" }]
"#;
        touchpoint_programs::fixtures::program(text, &["t"])
    }

    #[test]
    fn an_oklahoma_patient_is_not_texted_at_half_past_eight_in_the_evening() {
        let rules = touchpoint_programs::fixtures::state_rules();
        let catalogue =
            touchpoint_programs::Catalogue::new(vec![wide_program()]).with_state_rules(rules);
        let mut case = case();
        case.time_zone = chrono_tz::America::Chicago;
        // 20:30 CDT on Tuesday 2026-04-07.
        let evening = utc("2026-04-08T01:30:00Z");
        let verdict = |state: Option<&str>| {
            check(
                Some(&case),
                catalogue.in_state("p", state),
                Channel::Sms,
                evening + TimeDelta::minutes(30),
                Sends::default(),
                DestinationCap::default(),
                evening,
            )
        };
        assert_eq!(verdict(None), Verdict::Send, "the TCPA allows until 21:00");
        assert_eq!(
            verdict(Some("OK")),
            Verdict::Suppress(SuppressionReason::OutsideContactWindow)
        );
    }

    proptest! {
        #[test]
        fn nothing_is_sent_outside_the_strictest_window_or_over_a_state_or_number_cap(
            state in proptest::option::of(0usize..5),
            minutes in 0i64..(7 * 24 * 60),
            earlier in proptest::collection::vec(0i64..(7 * 24 * 60), 0..8),
            cap in 1usize..5,
        ) {
            let rules = touchpoint_programs::fixtures::state_rules();
            let rule = state.and_then(|i| rules.iter().nth(i)).cloned();
            let catalogue = touchpoint_programs::Catalogue::new(vec![wide_program()])
                .with_state_rules(rules);
            let program = catalogue.in_state("p", rule.as_ref().map(|r| r.code.as_str()));
            let start = utc("2026-04-06T04:00:00Z");
            let now = start + TimeDelta::minutes(minutes);
            let sent: Vec<DateTime<Utc>> = earlier
                .iter()
                .map(|m| start + TimeDelta::minutes(*m))
                .filter(|at| *at <= now)
                .collect();
            let verdict = check(
                Some(&case()),
                program,
                Channel::Sms,
                now + TimeDelta::hours(1),
                Sends { case_or_destination: &sent, to_destination: &sent },
                DestinationCap(cap),
                now,
            );
            if verdict == Verdict::Send {
                let local = now.with_timezone(&chrono_tz::America::New_York).time();
                let day = sent.iter().filter(|at| **at > now - TimeDelta::hours(24)).count();
                prop_assert!(day < cap, "over the number's cap");
                let tcpa = (chrono::NaiveTime::from_hms_opt(8, 0, 0), chrono::NaiveTime::from_hms_opt(21, 0, 0));
                prop_assert!(tcpa.0.is_some_and(|t| local >= t) && tcpa.1.is_some_and(|t| local < t));
                if let Some(rule) = &rule {
                    prop_assert!(local >= rule.start && local < rule.end, "outside {}'s hours", rule.code);
                    prop_assert!(rule.per_24_hours.is_none_or(|n| day < n as usize), "over {}'s cap", rule.code);
                }
            }
        }

        #[test]
        fn nothing_is_sent_outside_the_window_or_over_either_cap(
            minutes in 0i64..(14 * 24 * 60),
            earlier in proptest::collection::vec(0i64..(14 * 24 * 60), 0..8),
            cap in 1usize..5,
        ) {
            let start = utc("2026-04-06T04:00:00Z");
            let now = start + TimeDelta::minutes(minutes);
            let sent: Vec<DateTime<Utc>> = earlier
                .iter()
                .map(|m| start + TimeDelta::minutes(*m))
                .filter(|at| *at <= now)
                .collect();
            let program = program();
            let verdict = check(
                Some(&case()),
                Some(&program),
                Channel::Sms,
                now + TimeDelta::hours(1),
                Sends { case_or_destination: &sent, to_destination: &sent },
                DestinationCap(cap),
                now,
            );
            if verdict == Verdict::Send {
                let tz = chrono_tz::America::New_York;
                prop_assert!(program.window.allows(tz, now));
                prop_assert!(program.cap.allows(tz, &sent, now));
                let day = sent.iter().filter(|at| **at > now - TimeDelta::hours(24)).count();
                prop_assert!(day < cap);
            }
        }
    }
}
