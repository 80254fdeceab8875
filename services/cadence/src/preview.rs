//! What a program would send a case, and when: the enrolment's own code run on a
//! simulated clock, jumping from one wake-up to the next. Every attempt is taken
//! to go out and go unanswered, except where a response is given. Nothing is
//! stored or emitted.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use touchpoint_proto::v1::{Channel, Language};

use crate::enrolment::{
    AttemptIds, Change, CountingIds, Destinations, Enrolment, NewEnrolment, Request,
};
use crate::program::Program;

/// How far a preview may look ahead.
pub const MAX_HORIZON: TimeDelta = TimeDelta::days(730);
/// How far a preview looks ahead when not told.
pub const DEFAULT_HORIZON: TimeDelta = TimeDelta::days(180);
/// Wake-ups and responses a preview simulates at most; far more than any
/// program's steps and attempts within the horizon.
const MAX_EVENTS: usize = 10_000;

/// The facts a preview assumes about a case.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewCase {
    /// The patient's time zone.
    pub time_zone: Tz,
    /// The preferred language.
    pub language: Language,
    /// When the case is enrolled; the simulation starts here.
    pub enrolled_at: DateTime<Utc>,
    /// When therapy starts, if known.
    pub therapy_start: Option<DateTime<Utc>>,
    /// The last fill and its days of supply, if known.
    pub last_fill: Option<(DateTime<Utc>, u32)>,
    /// Channels with consent; each is taken to have a contact point.
    pub consented: BTreeSet<Channel>,
}

/// The requests `program` would make for `case` up to `until`, in order, with the
/// patient answering at each instant of `responses`.
pub fn preview(
    program: &Program,
    case: &PreviewCase,
    responses: &[DateTime<Utc>],
    until: DateTime<Utc>,
) -> Vec<Request> {
    let mut ids = CountingIds::default();
    let start = case.enrolled_at;
    let mut enrolment = Enrolment::open(NewEnrolment {
        program_id: program.id.clone(),
        language: case.language,
        time_zone: case.time_zone,
        enrolled_at: start,
        destinations: Destinations::placeholders(),
    });
    let mut known = Vec::new();
    known.extend(case.consented.iter().map(|c| Change::ConsentGranted(*c)));
    known.extend(case.therapy_start.map(Change::TherapyStarted));
    known.extend(
        case.last_fill
            .map(|(at, days_supply)| Change::Filled { at, days_supply }),
    );
    for change in known {
        enrolment.apply(Some(program), change, start, &mut ids);
    }
    let answers = responses
        .iter()
        .map(|at| (*at, Change::Responded { in_reply_to: None }))
        .collect();
    simulate(program, &mut enrolment, answers, until, &mut ids)
}

/// Runs `enrolment` from its enrolment to `until`: every wake-up in turn, and each
/// of `changes` at its instant (before a wake-up at the same instant). Returns the
/// requests in the order they were made.
pub fn simulate(
    program: &Program,
    enrolment: &mut Enrolment,
    mut changes: Vec<(DateTime<Utc>, Change)>,
    until: DateTime<Utc>,
    ids: &mut impl AttemptIds,
) -> Vec<Request> {
    let start = enrolment.enrolled_at;
    enrolment.replan(program, start, ids);
    changes.retain(|(at, _)| *at >= start && *at <= until);
    changes.sort_by_key(|(at, _)| *at);
    let mut changes = changes.into_iter().peekable();
    let mut sent = Vec::new();
    for _ in 0..MAX_EVENTS {
        let wake = enrolment.wake_at().filter(|w| *w <= until);
        let next_change = changes.peek().map(|(at, _)| *at);
        match (wake, next_change) {
            (wake, Some(at)) if wake.is_none_or(|w| at <= w) => {
                if let Some((at, change)) = changes.next() {
                    enrolment.apply(Some(program), change, at, ids);
                }
            }
            (Some(wake), _) => sent.extend(enrolment.wake(program, wake, ids)),
            (None, _) => break,
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::DEFAULT_ANSWER_WAIT;
    use crate::program::load_dir;
    use touchpoint_programs::fixtures::utc;

    fn shipped(id: &str) -> Program {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../programs");
        load_dir(&dir)
            .unwrap_or_else(|e| panic!("{e:?}"))
            .into_iter()
            .find(|p| p.id == id)
            .unwrap_or_else(|| panic!("no program {id}"))
    }

    fn case(consented: &[Channel]) -> PreviewCase {
        PreviewCase {
            time_zone: chrono_tz::America::Los_Angeles,
            language: Language::Es,
            // Monday 2026-04-06, 10:00 PDT.
            enrolled_at: utc("2026-04-06T17:00:00Z"),
            therapy_start: Some(utc("2026-04-08T16:00:00Z")),
            last_fill: None,
            consented: consented.iter().copied().collect(),
        }
    }

    fn sends(requests: &[Request]) -> Vec<(String, Channel, u32, DateTime<Utc>)> {
        requests
            .iter()
            .map(|r| (r.step_id.clone(), r.channel, r.number, r.requested_at))
            .collect()
    }

    #[test]
    fn the_adherence_program_unanswered_runs_every_attempt_in_order() {
        let program = shipped("adherence");
        let until = utc("2026-06-30T00:00:00Z");
        let all = [Channel::Voice, Channel::Sms, Channel::Email];
        let requests = preview(&program, &case(&all), &[], until);
        let welcome = sends(&requests)
            .into_iter()
            .filter(|s| s.0 == "welcome")
            .collect::<Vec<_>>();
        assert_eq!(
            welcome,
            vec![
                // enrolled + 1d, inside 09:00-20:00 PDT
                (
                    "welcome".into(),
                    Channel::Voice,
                    1,
                    utc("2026-04-07T17:00:00Z")
                ),
                // a day later, unanswered
                (
                    "welcome".into(),
                    Channel::Voice,
                    2,
                    utc("2026-04-08T17:00:00Z")
                ),
                // the last call's wait passes unanswered: SMS
                (
                    "welcome".into(),
                    Channel::Sms,
                    1,
                    utc("2026-04-09T17:00:00Z")
                ),
                // email is due a day later, but three went out this week: it waits
                // until Tuesday's call is seven days old
                (
                    "welcome".into(),
                    Channel::Email,
                    1,
                    utc("2026-04-14T17:00:00Z")
                ),
            ]
        );
        assert!(requests.iter().all(|r| r.language == Language::Es));
        // month-one follows first-week's end by 21 days: its last attempt, a call,
        // went unanswered for a day.
        let first_week_last = requests
            .iter()
            .filter(|r| r.step_id == "first-week")
            .map(|r| r.requested_at)
            .max()
            .unwrap_or_default();
        let month_one = requests
            .iter()
            .find(|r| r.step_id == "month-one")
            .map(|r| r.due_at);
        assert_eq!(
            month_one,
            Some(first_week_last + DEFAULT_ANSWER_WAIT + TimeDelta::days(21))
        );
    }

    #[test]
    fn a_response_completes_the_running_step_and_nothing_more_of_it_goes_out() {
        let program = shipped("adherence");
        let until = utc("2026-04-20T00:00:00Z");
        // The patient answers the first call the same afternoon.
        let answered = [utc("2026-04-07T20:00:00Z")];
        let requests = preview(&program, &case(&[Channel::Voice]), &answered, until);
        let welcome: Vec<_> = sends(&requests)
            .into_iter()
            .filter(|s| s.0 == "welcome")
            .collect();
        assert_eq!(welcome.len(), 1, "{welcome:?}");
    }

    #[test]
    fn refill_reminders_come_before_the_refill_and_without_consent_nothing_does() {
        let program = shipped("refill-reminder");
        let mut facts = case(&[Channel::Sms]);
        facts.language = Language::Es; // not written in Spanish: falls back to English
        facts.last_fill = Some((utc("2026-04-06T17:00:00Z"), 30)); // due 2026-05-06
        let until = utc("2026-05-10T00:00:00Z");
        let requests = preview(&program, &facts, &[], until);
        let first = requests
            .first()
            .map(|r| (r.step_id.as_str(), r.requested_at));
        assert_eq!(
            first,
            Some(("five-days-before", utc("2026-05-01T17:00:00Z"))),
            "five days before the refill"
        );
        assert!(requests.iter().all(|r| r.language == Language::En));
        facts.consented.clear();
        assert!(preview(&program, &facts, &[], until).is_empty());
    }
}
