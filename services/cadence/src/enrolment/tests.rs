use chrono::Timelike as _;
use proptest::prelude::*;
use touchpoint_proto::v1::contact_point::Value;

use super::*;
use crate::plan::DEFAULT_ANSWER_WAIT;
use crate::preview::simulate;
use touchpoint_programs::fixtures::{self, THREE_YEARS, ZONES, utc};

const PROGRAM: &str = r#"
id = "p"
name = "P"
languages = ["en", "es"]

[contact_window]
start = "09:00"
end = "20:00"

[frequency_cap]
per_day = 1
per_week = 3

[[steps]]
id = "welcome"
anchor = "enrolled"
offset = "1d"
template = "welcome"
exit_when = ["responded"]
channels = [
  { channel = "sms", attempts = 2, wait = "1d" },
  { channel = "email" },
]

[[steps]]
id = "check-in"
anchor = "after:welcome"
offset = "7d"
template = "check-in"
exit_when = ["responded", "opted_out"]
channels = [{ channel = "sms" }, { channel = "voice" }]

[[steps]]
id = "first-week"
anchor = "therapy_start"
offset = "7d"
template = "first-week"
exit_when = ["paused"]
channels = [{ channel = "email" }]

[[steps]]
id = "refill"
anchor = "refill_due"
offset = "-3d"
template = "refill"
exit_when = ["therapy_stopped"]
channels = [{ channel = "sms", attempts = 2, wait = "1d" }]
"#;

fn program() -> Program {
    fixtures::program(PROGRAM, &["welcome", "check-in", "first-week", "refill"])
}

const NEW_YORK: Tz = chrono_tz::America::New_York;
/// Monday 2026-04-06, 10:00 EDT.
const ENROLLED: &str = "2026-04-06T14:00:00Z";

fn destinations() -> Destinations {
    Destinations {
        patient: PersonContacts {
            mobile: Some("+12125550142".into()),
            landline: Some("+12125550100".into()),
            email: Some("ana@example.com".into()),
            region: None,
            address: None,
        },
        caregiver: PersonContacts::default(),
        prescriber_fax: None,
        ..Destinations::default()
    }
}

/// An enrolment with consent on `consented`, planned.
fn enrolled(consented: &[Channel], ids: &mut CountingIds) -> Enrolment {
    let program = program();
    let mut e = Enrolment::open(NewEnrolment {
        program_id: "p".into(),
        language: Language::Es,
        time_zone: NEW_YORK,
        enrolled_at: utc(ENROLLED),
        destinations: destinations(),
    });
    for channel in consented {
        e.apply(
            Some(&program),
            Change::ConsentGranted(*channel),
            utc(ENROLLED),
            ids,
        );
    }
    e
}

fn sends(requests: &[Request]) -> Vec<(&str, Channel, u32, DateTime<Utc>)> {
    requests
        .iter()
        .map(|r| (r.step_id.as_str(), r.channel, r.number, r.requested_at))
        .collect()
}

fn run<'a>(e: &'a Enrolment, step: &str) -> &'a StepRun {
    e.runs
        .get(step)
        .unwrap_or_else(|| panic!("no run of {step}"))
}

const SMS_EMAIL: [Channel; 2] = [Channel::Sms, Channel::Email];

#[test]
fn enrolment_plans_the_first_touchpoint_and_it_goes_out_when_due() {
    let program = program();
    let mut ids = CountingIds::default();
    let mut e = enrolled(&SMS_EMAIL, &mut ids);
    let due = utc("2026-04-07T14:00:00Z");
    assert_eq!(e.wake_at(), Some(due));
    assert_eq!(run(&e, "welcome").state, RunState::Scheduled);
    assert!(
        !e.runs.contains_key("first-week"),
        "therapy has not started"
    );

    assert!(
        e.wake(&program, due - TimeDelta::seconds(1), &mut ids)
            .is_empty()
    );
    let requests = e.wake(&program, due, &mut ids);
    assert_eq!(sends(&requests), vec![("welcome", Channel::Sms, 1, due)]);
    let request = &requests[0];
    assert_eq!(request.template, "welcome");
    assert_eq!(request.language, Language::Es);
    assert_eq!(
        request.destination.value,
        Some(Value::PhoneE164("+12125550142".into()))
    );
    assert_eq!(request.due_at, due);
    assert_eq!(
        request.not_after,
        utc("2026-04-08T00:00:00Z"),
        "20:00 EDT that day"
    );
    assert_eq!(run(&e, "welcome").state, RunState::Running);
    assert_eq!(e.wake_at(), Some(due + TimeDelta::days(1)), "the retry");
    assert!(
        e.wake(&program, due, &mut ids).is_empty(),
        "a second wake at the same instant sends nothing"
    );
}

#[test]
fn a_touchpoint_due_at_night_waits_for_the_window_in_the_patients_zone() {
    let program = program();
    let mut ids = CountingIds::default();
    let mut e = enrolled(&SMS_EMAIL, &mut ids);
    e.time_zone = chrono_tz::America::Los_Angeles;
    e.enrolled_at = utc("2026-04-06T05:00:00Z"); // 22:00 PDT Sunday
    e.runs.clear();
    e.replan(&program, e.enrolled_at, &mut ids);
    // Due 22:00 PDT Monday: next opening 09:00 PDT Tuesday = 16:00Z.
    assert_eq!(e.wake_at(), Some(utc("2026-04-07T16:00:00Z")));
    assert!(
        e.wake(&program, utc("2026-04-07T05:00:00Z"), &mut ids)
            .is_empty()
    );
}

#[test]
fn unanswered_attempts_are_retried_then_fall_back_and_the_after_step_follows() {
    let program = program();
    let mut ids = CountingIds::default();
    let mut e = enrolled(&SMS_EMAIL, &mut ids);
    let until = utc("2026-05-01T00:00:00Z");
    let requests = simulate(&program, &mut e, Vec::new(), until, &mut ids);
    assert_eq!(
        sends(&requests),
        vec![
            ("welcome", Channel::Sms, 1, utc("2026-04-07T14:00:00Z")),
            ("welcome", Channel::Sms, 2, utc("2026-04-08T14:00:00Z")),
            // SMS has no further attempt: email after a day unanswered
            ("welcome", Channel::Email, 1, utc("2026-04-09T14:00:00Z")),
            // check-in: seven days after welcome ended, the day after its email
            // went unanswered; no voice consent
            ("check-in", Channel::Sms, 1, utc("2026-04-17T14:00:00Z")),
        ]
    );
    assert_eq!(
        run(&e, "welcome").state,
        RunState::Exhausted {
            at: utc("2026-04-10T14:00:00Z")
        }
    );
}

#[test]
fn a_response_completes_the_step_it_answers_and_starts_the_next() {
    let program = program();
    let mut ids = CountingIds::default();
    let mut e = enrolled(&SMS_EMAIL, &mut ids);
    let first = e.wake(&program, utc("2026-04-07T14:00:00Z"), &mut ids);
    let answered_at = utc("2026-04-07T18:00:00Z");
    let reply = Change::Responded {
        in_reply_to: Some(first[0].attempt_id),
    };
    e.apply(Some(&program), reply, answered_at, &mut ids);
    assert_eq!(
        run(&e, "welcome").state,
        RunState::Completed { at: answered_at }
    );
    assert_eq!(run(&e, "welcome").pending, None, "no retry after an answer");
    assert_eq!(
        run(&e, "check-in")
            .pending
            .as_ref()
            .map(|p| p.attempt.due_at),
        Some(answered_at + TimeDelta::days(7))
    );
}

#[test]
fn the_last_attempt_waits_for_an_answer_before_the_step_ends() {
    let program = program();
    let mut ids = CountingIds::default();
    // Email consent only: welcome's one email is its last attempt.
    let mut e = enrolled(&[Channel::Email], &mut ids);
    let sent_at = utc("2026-04-07T14:00:00Z");
    assert_eq!(e.wake(&program, sent_at, &mut ids).len(), 1);
    assert_eq!(
        run(&e, "welcome").state,
        RunState::Running,
        "awaiting an answer"
    );
    assert_eq!(e.wake_at(), Some(sent_at + DEFAULT_ANSWER_WAIT));

    // Answered late, it is completed rather than exhausted.
    let mut answered = e.clone();
    let reply_at = sent_at + TimeDelta::hours(20);
    let reply = Change::Responded { in_reply_to: None };
    answered.apply(Some(&program), reply, reply_at, &mut ids);
    assert_eq!(
        run(&answered, "welcome").state,
        RunState::Completed { at: reply_at }
    );

    // Unanswered, it is exhausted when the wait ends, and check-in follows.
    let ended = sent_at + DEFAULT_ANSWER_WAIT;
    assert!(e.wake(&program, ended, &mut ids).is_empty());
    assert_eq!(run(&e, "welcome").state, RunState::Exhausted { at: ended });
    assert_eq!(
        run(&e, "check-in").anchor_at,
        ended,
        "check-in is measured from there"
    );
}

#[test]
fn a_channel_consented_while_the_last_attempt_waits_is_tried_next() {
    let program = program();
    let mut ids = CountingIds::default();
    let mut e = enrolled(&[Channel::Sms], &mut ids);
    let simulated = simulate(
        &program,
        &mut e,
        Vec::new(),
        utc("2026-04-08T15:00:00Z"),
        &mut ids,
    );
    assert_eq!(simulated.len(), 2, "both SMS attempts went out");
    let consent_at = utc("2026-04-08T16:00:00Z");
    e.apply(
        Some(&program),
        Change::ConsentGranted(Channel::Email),
        consent_at,
        &mut ids,
    );
    let after_wait = utc("2026-04-09T14:00:00Z");
    let requests = e.wake(&program, after_wait, &mut ids);
    assert_eq!(
        sends(&requests),
        vec![("welcome", Channel::Email, 1, after_wait)],
        "email follows the unanswered SMS"
    );
}

#[test]
fn a_response_does_not_end_a_step_that_does_not_list_it() {
    let program = program();
    let mut ids = CountingIds::default();
    let mut e = enrolled(&[Channel::Sms], &mut ids);
    let fill = Change::Filled {
        at: utc("2026-04-06T14:00:00Z"),
        days_supply: 10,
    };
    e.apply(Some(&program), fill, utc(ENROLLED), &mut ids);
    let requests = simulate(
        &program,
        &mut e,
        Vec::new(),
        utc("2026-04-13T15:00:00Z"),
        &mut ids,
    );
    assert!(sends(&requests).contains(&("refill", Channel::Sms, 1, utc("2026-04-13T14:00:00Z"))));
    e.apply(
        Some(&program),
        Change::Responded { in_reply_to: None },
        utc("2026-04-13T15:00:00Z"),
        &mut ids,
    );
    assert_eq!(
        run(&e, "refill").state,
        RunState::Running,
        "refill does not list responded"
    );
    assert!(
        run(&e, "refill").pending.is_some(),
        "its second attempt still waits"
    );
}

#[test]
fn stop_on_sms_moves_a_step_to_email_at_once_and_no_sms_ever_follows() {
    let program = program();
    let mut ids = CountingIds::default();
    let mut e = enrolled(&SMS_EMAIL, &mut ids);
    let stop_at = utc("2026-04-07T15:00:00Z");
    let changes = vec![(stop_at, Change::OptedOut(Channel::Sms))];
    let requests = simulate(
        &program,
        &mut e,
        changes,
        utc("2026-06-01T00:00:00Z"),
        &mut ids,
    );
    let after_stop: Vec<_> = requests
        .iter()
        .filter(|r| r.requested_at > stop_at)
        .collect();
    assert!(
        after_stop.iter().all(|r| r.channel != Channel::Sms),
        "{after_stop:?}"
    );
    // welcome does not list opted_out: email takes the place of the second SMS,
    // when that was due.
    assert_eq!(
        after_stop
            .first()
            .map(|r| (r.step_id.as_str(), r.channel, r.requested_at)),
        Some(("welcome", Channel::Email, utc("2026-04-08T14:00:00Z")))
    );
    // check-in had not started when the patient opted out; it starts after welcome,
    // blocked: SMS is opted out and voice has no consent.
    assert_eq!(run(&e, "check-in").state, RunState::Blocked);
}

#[test]
fn an_opt_out_ends_a_running_step_that_lists_it() {
    let program = program();
    let mut ids = CountingIds::default();
    let mut e = enrolled(&[Channel::Sms, Channel::Voice], &mut ids);
    let welcome_done = Change::Responded { in_reply_to: None };
    let first = e.wake(&program, utc("2026-04-07T14:00:00Z"), &mut ids);
    assert_eq!(first.len(), 1);
    e.apply(
        Some(&program),
        welcome_done,
        utc("2026-04-07T15:00:00Z"),
        &mut ids,
    );
    let check_in = e.wake(&program, utc("2026-04-14T15:00:00Z"), &mut ids);
    assert_eq!(
        sends(&check_in),
        vec![("check-in", Channel::Sms, 1, utc("2026-04-14T15:00:00Z"))]
    );
    let stop_at = utc("2026-04-14T16:00:00Z");
    e.apply(
        Some(&program),
        Change::OptedOut(Channel::Sms),
        stop_at,
        &mut ids,
    );
    assert_eq!(
        run(&e, "check-in").state,
        RunState::Cancelled {
            at: stop_at,
            reason: EndReason::OptedOut
        },
        "no call either: the step lists opted_out"
    );
}

#[test]
fn a_step_with_no_channel_left_after_stop_still_waits_for_an_answer_to_what_went_out() {
    let program = program();
    let mut ids = CountingIds::default();
    let mut e = enrolled(&[Channel::Sms], &mut ids);
    let sent_at = utc("2026-04-07T14:00:00Z");
    assert_eq!(e.wake(&program, sent_at, &mut ids).len(), 1);
    let stop_at = utc("2026-04-07T15:00:00Z");
    e.apply(
        Some(&program),
        Change::OptedOut(Channel::Sms),
        stop_at,
        &mut ids,
    );
    assert_eq!(run(&e, "welcome").pending, None, "no second SMS");
    assert_eq!(run(&e, "welcome").state, RunState::Running);
    // The SMS's wait (1 day) runs out unanswered: exhausted then, not at the STOP.
    let ended = sent_at + TimeDelta::days(1);
    assert!(e.wake(&program, ended, &mut ids).is_empty());
    assert_eq!(run(&e, "welcome").state, RunState::Exhausted { at: ended });
}

#[test]
fn a_revoked_consent_moves_pending_touchpoints_off_the_channel() {
    let program = program();
    let mut ids = CountingIds::default();
    let mut e = enrolled(&SMS_EMAIL, &mut ids);
    let now = utc("2026-04-06T15:00:00Z");
    e.apply(
        Some(&program),
        Change::ConsentRevoked(Channel::Sms),
        now,
        &mut ids,
    );
    let pending = run(&e, "welcome").pending.clone();
    assert_eq!(
        pending.as_ref().map(|p| p.attempt.channel),
        Some(Channel::Email)
    );
    e.apply(
        Some(&program),
        Change::ConsentRevoked(Channel::Email),
        now,
        &mut ids,
    );
    assert_eq!(run(&e, "welcome").state, RunState::Blocked);
    assert_eq!(e.wake_at(), None, "nothing may be sent");
    e.apply(
        Some(&program),
        Change::ConsentGranted(Channel::Email),
        now,
        &mut ids,
    );
    assert_eq!(run(&e, "welcome").state, RunState::Scheduled, "unblocked");
}

#[test]
fn before_anything_is_sent_a_newly_consented_preferred_channel_takes_over() {
    let program = program();
    let mut ids = CountingIds::default();
    let mut e = enrolled(&[Channel::Email], &mut ids);
    let planned = |e: &Enrolment| {
        run(e, "welcome")
            .pending
            .as_ref()
            .map(|p| p.attempt.channel)
    };
    assert_eq!(planned(&e), Some(Channel::Email));
    let now = utc("2026-04-06T15:00:00Z");
    e.apply(
        Some(&program),
        Change::ConsentGranted(Channel::Sms),
        now,
        &mut ids,
    );
    assert_eq!(
        planned(&e),
        Some(Channel::Sms),
        "SMS comes first in the step"
    );
    let sent = e.wake(&program, utc("2026-04-07T14:00:00Z"), &mut ids);
    assert_eq!(sent.len(), 1);
    e.apply(
        Some(&program),
        Change::ConsentGranted(Channel::Voice),
        now,
        &mut ids,
    );
    assert_eq!(
        planned(&e),
        Some(Channel::Sms),
        "once running, the step keeps to its plan"
    );
}

/// A pause of four days holds the touchpoints; on resuming, a step that does
/// not expire goes out then, and one whose `expires` passed during the pause
/// never does (the next test covers a refill reminder, which expires at its
/// refill date).
#[test]
fn a_paused_case_holds_its_touchpoints_and_only_those_still_true_go_out_after_it_resumes() {
    let mut expiring = program();
    if let Some(welcome) = expiring.steps.iter_mut().find(|s| s.id == "welcome") {
        welcome.expires = Some(TimeDelta::days(2));
    }
    let mut ids = CountingIds::default();
    let mut e = enrolled(&SMS_EMAIL, &mut ids);
    e.apply(
        Some(&expiring),
        Change::Paused { until: None },
        utc("2026-04-06T20:00:00Z"),
        &mut ids,
    );
    let resumed_at = utc("2026-04-10T15:00:00Z");
    e.apply(Some(&expiring), Change::Resumed, resumed_at, &mut ids);
    let requests = e.wake(&expiring, resumed_at, &mut ids);
    assert!(
        requests.iter().all(|r| r.step_id != "welcome"),
        "due 04-07, true until 04-09: never sent on 04-10"
    );
    assert_eq!(
        run(&e, "welcome").state,
        RunState::Cancelled {
            at: resumed_at,
            reason: EndReason::Expired
        }
    );

    let program = program();
    let mut ids = CountingIds::default();
    let mut e = enrolled(&SMS_EMAIL, &mut ids);
    e.apply(
        Some(&program),
        Change::TherapyStarted(utc("2026-04-06T14:00:00Z")),
        utc(ENROLLED),
        &mut ids,
    );
    let paused_at = utc("2026-04-06T20:00:00Z");
    e.apply(
        Some(&program),
        Change::Paused { until: None },
        paused_at,
        &mut ids,
    );
    assert_eq!(
        run(&e, "first-week").state,
        RunState::Cancelled {
            at: paused_at,
            reason: EndReason::Paused
        },
        "first-week lists paused"
    );
    assert!(
        e.wake(&program, utc("2026-04-07T14:00:00Z"), &mut ids)
            .is_empty()
    );
    assert!(run(&e, "welcome").pending.as_ref().is_some_and(|p| p.held));
    assert_eq!(e.wake_at(), None, "held until resumed");

    let resumed_at = utc("2026-04-10T15:00:00Z");
    e.apply(Some(&program), Change::Resumed, resumed_at, &mut ids);
    let requests = e.wake(&program, resumed_at, &mut ids);
    assert_eq!(
        sends(&requests),
        vec![("welcome", Channel::Sms, 1, resumed_at)]
    );
}

#[test]
fn an_adverse_event_flag_holds_outreach_until_its_review_is_completed() {
    let program = program();
    let mut ids = CountingIds::default();
    let mut e = enrolled(&SMS_EMAIL, &mut ids);
    let flag = |id: &str| Change::AdverseEventFlagged {
        review_task_id: id.into(),
    };
    let done = |id: &str| Change::ReviewCompleted {
        task_id: id.into(),
        by: "pv-1".into(),
    };
    e.apply(Some(&program), flag("review-1"), utc(ENROLLED), &mut ids);
    e.apply(Some(&program), flag("review-2"), utc(ENROLLED), &mut ids);
    assert!(
        e.wake(&program, utc("2026-04-07T14:00:00Z"), &mut ids)
            .is_empty(),
        "nothing automated while a review is open"
    );
    assert_eq!(e.wake_at(), None, "held until reviewed");

    // One review of two done: still held.
    let first_done = utc("2026-04-08T15:00:00Z");
    e.apply(Some(&program), done("review-1"), first_done, &mut ids);
    assert!(e.wake(&program, first_done, &mut ids).is_empty());
    // A completion of some other task changes nothing.
    e.apply(Some(&program), done("not-a-review"), first_done, &mut ids);
    assert!(e.wake(&program, first_done, &mut ids).is_empty());

    let reviewed_at = utc("2026-04-10T15:00:00Z");
    e.apply(Some(&program), done("review-2"), reviewed_at, &mut ids);
    let requests = e.wake(&program, reviewed_at, &mut ids);
    assert_eq!(
        sends(&requests),
        vec![("welcome", Channel::Sms, 1, reviewed_at)]
    );
}

#[test]
fn a_pause_or_hold_with_an_end_moves_touchpoints_to_that_end() {
    let program = program();
    let mut ids = CountingIds::default();
    let mut e = enrolled(&SMS_EMAIL, &mut ids);
    let until = utc("2026-04-09T15:00:00Z");
    e.apply(
        Some(&program),
        Change::Hold { until: Some(until) },
        utc(ENROLLED),
        &mut ids,
    );
    assert!(
        e.wake(&program, utc("2026-04-07T14:00:00Z"), &mut ids)
            .is_empty()
    );
    assert_eq!(e.wake_at(), Some(until));
    let requests = e.wake(&program, until, &mut ids);
    assert_eq!(sends(&requests), vec![("welcome", Channel::Sms, 1, until)]);
}

#[test]
fn a_closed_case_sends_nothing_more() {
    let program = program();
    let mut ids = CountingIds::default();
    let mut e = enrolled(&SMS_EMAIL, &mut ids);
    let closed_at = utc("2026-04-06T15:00:00Z");
    e.apply(Some(&program), Change::Closed, closed_at, &mut ids);
    assert_eq!(e.wake_at(), None);
    assert!(e.runs.values().all(|r| matches!(
        r.state,
        RunState::Cancelled {
            reason: EndReason::Closed,
            ..
        }
    )));
    e.apply(
        Some(&program),
        Change::TherapyStarted(closed_at),
        closed_at,
        &mut ids,
    );
    assert!(!e.runs.contains_key("first-week"), "nothing new starts");
    let later = simulate(
        &program,
        &mut e,
        Vec::new(),
        utc("2026-06-01T00:00:00Z"),
        &mut ids,
    );
    assert!(later.is_empty());
}

#[test]
fn a_refill_reminder_whose_date_passed_during_a_pause_is_never_sent_and_ends_expired() {
    let program = program();
    let mut ids = CountingIds::default();
    let mut e = enrolled(&[Channel::Sms], &mut ids);
    // Refill due 2026-05-06 14:00 UTC; its reminder 3 days before.
    e.apply(
        Some(&program),
        Change::Filled {
            at: utc("2026-04-06T14:00:00Z"),
            days_supply: 30,
        },
        utc(ENROLLED),
        &mut ids,
    );
    let paused_at = utc("2026-05-01T14:00:00Z");
    e.apply(
        Some(&program),
        Change::Paused { until: None },
        paused_at,
        &mut ids,
    );
    assert!(
        e.wake(&program, utc("2026-05-03T14:00:00Z"), &mut ids)
            .iter()
            .all(|r| r.step_id != "refill"),
        "held while paused"
    );
    let resumed_at = utc("2026-05-08T14:00:00Z");
    e.apply(Some(&program), Change::Resumed, resumed_at, &mut ids);
    let requests = e.wake(&program, resumed_at, &mut ids);
    assert!(
        requests.iter().all(|r| r.step_id != "refill"),
        "a reminder for a refill date that passed is never sent"
    );
    assert_eq!(
        run(&e, "refill").state,
        RunState::Cancelled {
            at: resumed_at,
            reason: EndReason::Expired
        }
    );
    assert_eq!(e.expired(), vec![("refill".to_owned(), resumed_at)]);
}

#[test]
fn a_refill_reminders_retry_stops_at_the_refill_date() {
    let program = program();
    let mut ids = CountingIds::default();
    let mut e = enrolled(&[Channel::Sms], &mut ids);
    e.apply(
        Some(&program),
        Change::Filled {
            at: utc("2026-04-06T14:00:00Z"),
            days_supply: 30,
        },
        utc(ENROLLED),
        &mut ids,
    );
    // Held until the day before the refill: the first reminder goes then, and
    // its second try would fall on the refill date itself.
    let pause = (
        utc("2026-05-01T14:00:00Z"),
        Change::Paused {
            until: Some(utc("2026-05-05T14:00:00Z")),
        },
    );
    let sent = simulate(
        &program,
        &mut e,
        vec![pause],
        utc("2026-05-20T00:00:00Z"),
        &mut ids,
    );
    let reminders: Vec<DateTime<Utc>> = sent
        .iter()
        .filter(|r| r.step_id == "refill")
        .map(|r| r.requested_at)
        .collect();
    assert_eq!(reminders, vec![utc("2026-05-05T14:00:00Z")]);
    assert!(matches!(
        run(&e, "refill").state,
        RunState::Cancelled {
            reason: EndReason::Expired,
            ..
        }
    ));
}

#[test]
fn a_new_fill_starts_a_new_refill_cycle_and_therapy_stop_ends_it() {
    let program = program();
    let mut ids = CountingIds::default();
    let mut e = enrolled(&[Channel::Sms], &mut ids);
    let fill = |at: &str| Change::Filled {
        at: utc(at),
        days_supply: 30,
    };
    e.apply(
        Some(&program),
        fill("2026-04-06T14:00:00Z"),
        utc(ENROLLED),
        &mut ids,
    );
    assert_eq!(
        run(&e, "refill").pending.as_ref().map(|p| p.attempt.due_at),
        Some(utc("2026-05-03T14:00:00Z")),
        "30 days supply, 3 days before"
    );
    let until = utc("2026-05-04T00:00:00Z");
    let first_cycle = simulate(&program, &mut e, Vec::new(), until, &mut ids);
    assert!(first_cycle.iter().any(|r| r.step_id == "refill"));
    e.apply(
        Some(&program),
        fill("2026-05-05T14:00:00Z"),
        until,
        &mut ids,
    );
    assert_eq!(run(&e, "refill").state, RunState::Scheduled, "a new cycle");
    assert_eq!(
        run(&e, "refill").pending.as_ref().map(|p| p.attempt.due_at),
        Some(utc("2026-06-01T14:00:00Z"))
    );
    let stopped = utc("2026-05-10T14:00:00Z");
    e.apply(
        Some(&program),
        Change::TherapyStopped(stopped),
        stopped,
        &mut ids,
    );
    assert!(matches!(
        run(&e, "refill").state,
        RunState::Cancelled {
            reason: EndReason::TherapyStopped,
            ..
        }
    ));
    e.apply(
        Some(&program),
        fill("2026-05-20T14:00:00Z"),
        stopped,
        &mut ids,
    );
    assert!(
        !run(&e, "refill").is_live(),
        "no reminders after therapy stopped"
    );
}

#[test]
fn a_therapy_start_moves_a_step_not_yet_sent() {
    let program = program();
    let mut ids = CountingIds::default();
    let mut e = enrolled(&SMS_EMAIL, &mut ids);
    let now = utc(ENROLLED);
    e.apply(
        Some(&program),
        Change::TherapyStarted(utc("2026-04-08T14:00:00Z")),
        now,
        &mut ids,
    );
    e.apply(
        Some(&program),
        Change::TherapyStarted(utc("2026-04-10T14:00:00Z")),
        now,
        &mut ids,
    );
    assert_eq!(
        run(&e, "first-week")
            .pending
            .as_ref()
            .map(|p| p.attempt.due_at),
        Some(utc("2026-04-17T14:00:00Z"))
    );
}

#[test]
fn failures_move_on_by_the_plan_and_a_permanent_one_leaves_the_channel() {
    let program = program();
    let mut ids = CountingIds::default();
    let mut e = enrolled(&SMS_EMAIL, &mut ids);
    let due = utc("2026-04-07T14:00:00Z");
    let first = e.wake(&program, due, &mut ids);
    let failed_at = utc("2026-04-07T14:05:00Z");
    let failed = Change::AttemptFailed {
        attempt_id: first[0].attempt_id,
    };
    e.apply(Some(&program), failed, failed_at, &mut ids);
    let retry = run(&e, "welcome").pending.clone();
    assert_eq!(
        retry
            .as_ref()
            .map(|p| (p.attempt.channel, p.attempt.number, p.attempt.due_at)),
        Some((Channel::Sms, 2, failed_at + TimeDelta::days(1)))
    );
    // An outcome of an attempt the run has moved past changes nothing.
    let stale = Change::ChannelFailed {
        attempt_id: Uuid::from_u128(999),
    };
    e.apply(Some(&program), stale, failed_at, &mut ids);
    assert_eq!(run(&e, "welcome").pending, retry);

    let second = e.wake(&program, failed_at + TimeDelta::days(1), &mut ids);
    let wrong_number = Change::ChannelFailed {
        attempt_id: second[0].attempt_id,
    };
    let at = utc("2026-04-08T14:10:00Z");
    e.apply(Some(&program), wrong_number, at, &mut ids);
    assert_eq!(
        run(&e, "welcome")
            .pending
            .as_ref()
            .map(|p| (p.attempt.channel, p.attempt.due_at)),
        Some((Channel::Email, at))
    );
}

#[test]
fn a_deferred_attempt_is_tried_again_later_under_a_new_id() {
    let program = program();
    let mut ids = CountingIds::default();
    let mut e = enrolled(&SMS_EMAIL, &mut ids);
    let due = utc("2026-04-07T14:00:00Z");
    let first = e.wake(&program, due, &mut ids);
    let deferred_at = utc("2026-04-07T14:01:00Z");
    let deferred = Change::AttemptDeferred {
        attempt_id: first[0].attempt_id,
    };
    e.apply(Some(&program), deferred, deferred_at, &mut ids);
    let again = run(&e, "welcome").pending.clone();
    assert_eq!(
        again
            .as_ref()
            .map(|p| (p.attempt.channel, p.attempt.number, p.send_at)),
        Some((Channel::Sms, 1, deferred_at + DEFERRED_RETRY_AFTER)),
        "the same attempt; it never went out, so today's cap is free"
    );
    assert_ne!(again.map(|p| p.attempt_id), Some(first[0].attempt_id));
}

#[test]
fn the_cap_spreads_steps_due_the_same_day() {
    let program = program();
    let mut ids = CountingIds::default();
    let mut e = enrolled(&SMS_EMAIL, &mut ids);
    // first-week falls due on the same day as welcome.
    e.apply(
        Some(&program),
        Change::TherapyStarted(utc("2026-03-31T14:00:00Z")),
        utc(ENROLLED),
        &mut ids,
    );
    let due = utc("2026-04-07T14:00:00Z");
    let requests = e.wake(&program, due, &mut ids);
    assert_eq!(
        sends(&requests),
        vec![("welcome", Channel::Sms, 1, due)],
        "one a day, program order first"
    );
    assert_eq!(
        run(&e, "first-week").pending.as_ref().map(|p| p.send_at),
        Some(utc("2026-04-08T13:00:00Z")),
        "09:00 EDT the next day"
    );
}

#[test]
fn an_enrolment_survives_a_round_trip_through_its_stored_form() -> Result<(), serde_json::Error> {
    let program = program();
    let mut ids = CountingIds::default();
    let mut e = enrolled(&SMS_EMAIL, &mut ids);
    e.wake(&program, utc("2026-04-07T14:00:00Z"), &mut ids);
    e.apply(
        Some(&program),
        Change::Paused { until: None },
        utc("2026-04-07T15:00:00Z"),
        &mut ids,
    );
    let stored = serde_json::to_string(&e)?;
    assert!(stored.contains("CHANNEL_SMS") && stored.contains("America/New_York"));
    let back: Enrolment = serde_json::from_str(&stored)?;
    assert_eq!(back, e);
    assert!(serde_json::from_str::<Enrolment>("{\"program_id\": 1}").is_err());
    Ok(())
}

#[test]
fn a_request_shows_no_destination_when_debugged() {
    let program = program();
    let mut ids = CountingIds::default();
    let mut e = enrolled(&SMS_EMAIL, &mut ids);
    let requests = e.wake(&program, utc("2026-04-07T14:00:00Z"), &mut ids);
    let shown = format!("{requests:?} {e:?}");
    assert!(!shown.contains("2125550142"), "{shown}");
    assert!(!shown.contains("ana@example.com"), "{shown}");
}

/// Five texts a day apart by two hours, in a program that allows five a day
/// 08:00-21:00: a state's narrower hours and its three in 24 hours bind.
const BUSY: &str = r#"
id = "busy"
name = "Busy"
languages = ["en"]
[contact_window]
start = "08:00"
end = "21:00"
[frequency_cap]
per_day = 5
per_week = 20
[[steps]]
id = "a"
anchor = "enrolled"
offset = "1d"
template = "t"
channels = [{ channel = "sms" }]
[[steps]]
id = "b"
anchor = "enrolled"
offset = "1d2h"
template = "t"
channels = [{ channel = "sms" }]
[[steps]]
id = "c"
anchor = "enrolled"
offset = "1d4h"
template = "t"
channels = [{ channel = "sms" }]
[[steps]]
id = "d"
anchor = "enrolled"
offset = "1d6h"
template = "t"
channels = [{ channel = "sms" }]
[[steps]]
id = "e"
anchor = "enrolled"
offset = "1d8h"
template = "t"
channels = [{ channel = "sms" }]
"#;

/// `BUSY` under the shipped state rules, as its first version.
fn busy_catalogue() -> Shelf {
    Shelf::first(
        vec![fixtures::program(BUSY, &["t"])],
        &fixtures::state_rules(),
    )
}

#[test]
fn an_oklahoma_patient_due_at_half_past_eight_in_the_evening_is_texted_at_eight_next_morning() {
    let catalogue = busy_catalogue();
    let mut ids = CountingIds::default();
    let mut destinations = destinations();
    destinations.patient.mobile = Some("+19185550142".into());
    // Enrolled 20:30 CST on Sunday 2026-11-22: the first step is due at 20:30 the
    // next day.
    let mut e = Enrolment::open(NewEnrolment {
        program_id: "busy".into(),
        language: Language::En,
        time_zone: chrono_tz::America::Chicago,
        enrolled_at: utc("2026-11-23T02:30:00Z"),
        destinations,
    });
    let Some(program) = e.program(&catalogue) else {
        panic!("the program is loaded");
    };
    e.apply(
        Some(program),
        Change::ConsentGranted(Channel::Sms),
        utc("2026-11-23T02:30:00Z"),
        &mut ids,
    );
    assert_eq!(
        run(&e, "a").pending.as_ref().map(|p| p.send_at),
        Some(utc("2026-11-24T14:00:00Z")),
        "08:00 CST on the 24th, not 20:30 on the 23rd"
    );
}

proptest! {
    /// Whatever the state, zone and enrolment instant: every text falls inside
    /// the strictest of the program's, the state's and the TCPA's hours, and
    /// no 24 hours hold more than the state allows.
    #[test]
    fn requests_keep_to_the_strictest_of_program_state_and_tcpa(
        state in proptest::option::of(0usize..5),
        enrolled_at in THREE_YEARS,
        zone in 0..ZONES.len(),
    ) {
        let rule = state.and_then(|i| fixtures::state_rules().iter().nth(i).cloned());
        let catalogue = busy_catalogue();
        let mut destinations = destinations();
        destinations.patient.region = rule.as_ref().map(|r| r.name.clone());
        let tz = ZONES[zone];
        let start = DateTime::from_timestamp(enrolled_at, 0).unwrap_or_default();
        let mut ids = CountingIds::default();
        let mut e = Enrolment::open(NewEnrolment {
            program_id: "busy".into(),
            language: Language::En,
            time_zone: tz,
            enrolled_at: start,
            destinations,
        });
        let program = e
            .program(&catalogue)
            .cloned()
            .ok_or_else(|| TestCaseError::fail("the program is loaded"))?;
        e.apply(Some(&program), Change::ConsentGranted(Channel::Sms), start, &mut ids);
        let requests = simulate(&program, &mut e, Vec::new(), start + TimeDelta::days(10), &mut ids);
        prop_assert_eq!(requests.len(), 5, "every step goes out in the end");
        let mut sent: Vec<DateTime<Utc>> = Vec::new();
        for r in &requests {
            let at = r.requested_at;
            let local = at.with_timezone(&tz).time();
            prop_assert!(local.hour() >= 8 && local.hour() < 21, "{at} outside the TCPA's hours in {tz}");
            if let Some(rule) = &rule {
                prop_assert!(local >= rule.start && local < rule.end, "{at} outside {}'s hours in {tz}", rule.code);
                let day = sent.iter().filter(|s| **s > at - TimeDelta::hours(24)).count();
                prop_assert!(rule.per_24_hours.is_none_or(|n| day < n as usize), "over {}'s cap at {at}", rule.code);
            }
            sent.push(at);
        }
    }

    /// Whatever the zone, the enrolment instant, the consents, the answers and an
    /// opt-out: every request falls inside the contact window in the patient's
    /// local time, not before it is due, under the daily and weekly caps, on a
    /// consented channel, and never on SMS after the patient opted out of it.
    #[test]
    fn requests_stay_in_the_window_under_the_cap_and_honour_consent_and_stop(
        enrolled_at in THREE_YEARS,
        zone in 0..ZONES.len(),
        consent_mask in 0_u8..8,
        therapy_after_hours in proptest::option::of(0_i64..2_000),
        fill_after_hours in proptest::option::of(0_i64..2_000),
        answers in proptest::collection::vec(0_i64..4_000, 0..4),
        stop_after_hours in proptest::option::of(0_i64..4_000),
    ) {
        let program = program();
        let mut ids = CountingIds::default();
        let start = DateTime::from_timestamp(enrolled_at, 0).unwrap_or_default();
        let tz = ZONES[zone];
        let mut e = Enrolment::open(NewEnrolment {
            program_id: "p".into(),
            language: Language::En,
            time_zone: tz,
            enrolled_at: start,
            destinations: destinations(),
        });
        let consented: Vec<Channel> = [Channel::Sms, Channel::Email, Channel::Voice]
            .into_iter()
            .enumerate()
            .filter(|(i, _)| consent_mask & (1 << i) != 0)
            .map(|(_, c)| c)
            .collect();
        for channel in &consented {
            e.apply(Some(&program), Change::ConsentGranted(*channel), start, &mut ids);
        }
        let hours = |h: i64| start + TimeDelta::hours(h);
        let mut changes: Vec<(DateTime<Utc>, Change)> = answers
            .iter()
            .map(|h| (hours(*h), Change::Responded { in_reply_to: None }))
            .collect();
        changes.extend(therapy_after_hours.map(|h| (hours(h), Change::TherapyStarted(hours(h)))));
        changes.extend(fill_after_hours.map(|h| (hours(h), Change::Filled { at: hours(h), days_supply: 30 })));
        let stop_at = stop_after_hours.map(hours);
        changes.extend(stop_at.map(|at| (at, Change::OptedOut(Channel::Sms))));
        let requests = simulate(&program, &mut e, changes, hours(4_500), &mut ids);

        let mut sent: Vec<DateTime<Utc>> = Vec::new();
        for r in &requests {
            let at = r.requested_at;
            prop_assert!(program.window.allows(tz, at), "{at} outside the window in {tz}");
            prop_assert!(at >= r.due_at, "sent before due");
            prop_assert!(r.not_after >= at);
            prop_assert!(consented.contains(&r.channel), "no consent for {:?}", r.channel);
            prop_assert!(!(r.channel == Channel::Sms && stop_at.is_some_and(|s| at >= s)), "SMS after STOP");
            let day = at.with_timezone(&tz).date_naive();
            let same_day = sent.iter().filter(|s| s.with_timezone(&tz).date_naive() == day).count();
            prop_assert!(same_day < program.cap.per_day as usize, "daily cap broken at {at}");
            let in_week = sent.iter().filter(|s| **s > at - TimeDelta::days(7)).count();
            prop_assert!(in_week < program.cap.per_week as usize, "weekly cap broken at {at}");
            sent.push(at);
        }
        let ids: BTreeSet<Uuid> = requests.iter().map(|r| r.attempt_id).collect();
        prop_assert_eq!(ids.len(), requests.len(), "an attempt id was requested twice");
    }
}
