use super::*;
use crate::program::parse;
use touchpoint_programs::fixtures::utc;

const PROGRAM: &str = r#"
id = "p"
name = "P"
languages = ["en"]

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
template = "t"
exit_when = ["responded"]
channels = [
  { channel = "voice", attempts = 1 },
  { channel = "sms", attempts = 2, wait = "1d" },
  { channel = "email" },
]

[[steps]]
id = "first-week"
anchor = "therapy_start"
offset = "7d"
template = "t"
channels = [{ channel = "sms" }]

[[steps]]
id = "refill"
anchor = "refill_due"
offset = "-5d"
template = "t"
channels = [{ channel = "sms" }]

[[steps]]
id = "follow-up"
anchor = "after:first-week"
offset = "3d"
template = "t"
exit_when = ["opted_out"]
channels = [{ channel = "email" }]
"#;

fn program() -> Program {
    let templates = ["t".to_owned()].into_iter().collect();
    match parse("p.toml", PROGRAM, &templates) {
        Ok(program) => program,
        Err(errors) => panic!("{errors:?}"),
    }
}

fn facts(reachable: &[Channel]) -> CaseFacts {
    CaseFacts {
        time_zone: chrono_tz::America::Chicago,
        enrolled_at: utc("2026-04-06T15:00:00Z"),
        therapy_start: None,
        refill_due: None,
        reachable: reachable.iter().copied().collect(),
    }
}

fn step<'a>(program: &'a Program, id: &str) -> &'a Step {
    program
        .steps
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no step {id}"))
}

const ALL: [Channel; 3] = [Channel::Voice, Channel::Sms, Channel::Email];

#[test]
fn due_times_come_from_each_anchor_once_it_is_known() {
    let program = program();
    let mut case = facts(&ALL);
    let none = BTreeMap::new();
    let due = |id: &str, case: &CaseFacts, done: &BTreeMap<String, DateTime<Utc>>| {
        first_attempt(step(&program, id), case, done).map(|a| a.due_at)
    };
    assert_eq!(
        due("welcome", &case, &none),
        Some(utc("2026-04-07T15:00:00Z")),
        "enrolled + 1d"
    );
    assert_eq!(
        due("first-week", &case, &none),
        None,
        "therapy has not started"
    );
    assert_eq!(due("refill", &case, &none), None, "no fill yet");
    case.therapy_start = Some(utc("2026-04-10T12:00:00Z"));
    case.refill_due = Some(utc("2026-05-10T12:00:00Z"));
    assert_eq!(
        due("first-week", &case, &none),
        Some(utc("2026-04-17T12:00:00Z"))
    );
    assert_eq!(
        due("refill", &case, &none),
        Some(utc("2026-05-05T12:00:00Z")),
        "5 days before"
    );
    assert_eq!(
        due("follow-up", &case, &none),
        None,
        "first-week not complete"
    );
    let done = BTreeMap::from([("first-week".to_owned(), utc("2026-04-18T16:00:00Z"))]);
    assert_eq!(
        due("follow-up", &case, &done),
        Some(utc("2026-04-21T16:00:00Z"))
    );
}

#[test]
fn a_failed_attempt_is_retried_then_falls_back_to_the_next_channel() {
    let program = program();
    let welcome = step(&program, "welcome");
    let case = facts(&ALL);
    let now = utc("2026-04-07T16:00:00Z");
    let call = first_attempt(welcome, &case, &BTreeMap::new())
        .unwrap_or_else(|| panic!("no first attempt"));
    assert_eq!((call.channel, call.number), (Channel::Voice, 1));
    let sms = next_attempt(welcome, &call, &case, now).unwrap_or_else(|| panic!("no fallback"));
    assert_eq!(
        (sms.channel, sms.number, sms.due_at),
        (Channel::Sms, 1, now),
        "voice had one attempt"
    );
    let sms_again = next_attempt(welcome, &sms, &case, now).unwrap_or_else(|| panic!("no retry"));
    assert_eq!((sms_again.channel, sms_again.number), (Channel::Sms, 2));
    assert_eq!(
        sms_again.due_at,
        now + TimeDelta::days(1),
        "after the channel's wait"
    );
    let email = next_attempt(welcome, &sms_again, &case, now).unwrap_or_else(|| panic!("no email"));
    assert_eq!((email.channel, email.number), (Channel::Email, 1));
    assert_eq!(
        next_attempt(welcome, &email, &case, now),
        None,
        "the step is exhausted"
    );
}

#[test]
fn channels_without_consent_are_skipped_and_an_opt_out_moves_on() {
    let program = program();
    let welcome = step(&program, "welcome");
    let no_voice = facts(&[Channel::Sms, Channel::Email]);
    let first = first_attempt(welcome, &no_voice, &BTreeMap::new()).map(|a| a.channel);
    assert_eq!(first, Some(Channel::Sms), "no consent for calls");

    let sms =
        first_attempt(welcome, &no_voice, &BTreeMap::new()).unwrap_or_else(|| panic!("no attempt"));
    let opted_out_of_sms = facts(&[Channel::Email]);
    let now = utc("2026-04-07T16:00:00Z");
    let next = next_attempt(welcome, &sms, &opted_out_of_sms, now).map(|a| (a.channel, a.number));
    assert_eq!(next, Some((Channel::Email, 1)), "no second SMS after STOP");

    let nothing = facts(&[]);
    assert_eq!(
        first_attempt(welcome, &nothing, &BTreeMap::new()),
        None,
        "no contact without consent"
    );
}

#[test]
fn exit_rules_end_steps_closing_always_does_and_opt_out_only_when_listed() {
    let program = program();
    assert!(ends_step(step(&program, "welcome"), ExitRule::Responded));
    assert!(!ends_step(
        step(&program, "welcome"),
        ExitRule::TherapyStopped
    ));
    assert!(
        !ends_step(step(&program, "refill"), ExitRule::Responded),
        "not listed for refill"
    );
    for id in ["welcome", "first-week", "refill", "follow-up"] {
        assert!(ends_step(step(&program, id), ExitRule::Closed), "{id}");
    }
    assert!(ends_step(step(&program, "follow-up"), ExitRule::OptedOut));
    assert!(
        !ends_step(step(&program, "welcome"), ExitRule::OptedOut),
        "welcome falls back to another channel instead"
    );
}

#[test]
fn an_unanswered_attempt_is_followed_up_after_its_wait_or_the_answer_wait() {
    let program = program();
    let welcome = step(&program, "welcome");
    let case = facts(&ALL);
    let at = utc("2026-04-07T15:00:00Z");
    let call = first_attempt(welcome, &case, &BTreeMap::new())
        .unwrap_or_else(|| panic!("no first attempt"));
    // Voice has one attempt and no wait: SMS once a day has passed unanswered.
    let sms = follow_up(welcome, &call, &case, at).unwrap_or_else(|| panic!("no SMS"));
    assert_eq!(
        (sms.channel, sms.number, sms.due_at),
        (Channel::Sms, 1, at + DEFAULT_ANSWER_WAIT)
    );
    // SMS has two attempts a day apart.
    let again = follow_up(welcome, &sms, &case, at).unwrap_or_else(|| panic!("no retry"));
    assert_eq!(
        (again.channel, again.number, again.due_at),
        (Channel::Sms, 2, at + TimeDelta::days(1))
    );
    let email = follow_up(welcome, &again, &case, at).unwrap_or_else(|| panic!("no email"));
    assert_eq!((email.channel, email.number), (Channel::Email, 1));
    assert_eq!(follow_up(welcome, &email, &case, at), None, "nothing after");
    // Without SMS consent the voice call is followed by email.
    let no_sms = facts(&[Channel::Voice, Channel::Email]);
    let next = follow_up(welcome, &call, &no_sms, at).map(|a| a.channel);
    assert_eq!(next, Some(Channel::Email));
}

#[test]
fn a_channel_that_cannot_be_used_moves_the_step_to_the_next_one_at_once() {
    let program = program();
    let welcome = step(&program, "welcome");
    let case = facts(&ALL);
    let now = utc("2026-04-07T16:00:00Z");
    let sms = Attempt {
        channel_index: 1,
        channel: Channel::Sms,
        number: 1,
        due_at: now,
    };
    let next = next_channel(welcome, &sms, &case, now).map(|a| (a.channel, a.number, a.due_at));
    assert_eq!(next, Some((Channel::Email, 1, now)), "no second SMS");
}

#[test]
fn a_message_waits_for_the_window_in_the_patients_zone() {
    let program = program();
    let tz = chrono_tz::America::Chicago;
    // 21:30 CDT is after the 20:00 close: 09:00 CDT next day is 14:00Z.
    let at = deliverable_at(&program, tz, &[], utc("2026-04-08T02:30:00Z"));
    assert_eq!(at, Some(utc("2026-04-08T14:00:00Z")));
}

#[test]
fn the_frequency_cap_moves_a_message_to_the_next_allowed_day() {
    let program = program(); // one a day, three a week
    let tz = chrono_tz::America::Chicago;
    // Already one message today at 10:00 CDT: a 14:00 CDT message waits for tomorrow 09:00.
    let sent = [utc("2026-04-08T15:00:00Z")];
    assert_eq!(
        deliverable_at(&program, tz, &sent, utc("2026-04-08T19:00:00Z")),
        Some(utc("2026-04-09T14:00:00Z"))
    );
    // Three this week (Mon, Tue, Wed at 10:00 CDT): Thursday waits until Monday's
    // message is seven days old, next Monday 10:00 CDT.
    let week = [
        utc("2026-04-06T15:00:00Z"),
        utc("2026-04-07T15:00:00Z"),
        utc("2026-04-08T15:00:00Z"),
    ];
    assert_eq!(
        deliverable_at(&program, tz, &week, utc("2026-04-09T15:00:00Z")),
        Some(utc("2026-04-13T15:00:00Z"))
    );
}

mod properties {
    use proptest::prelude::*;

    use super::*;
    use touchpoint_programs::fixtures::{THREE_YEARS, ZONES};

    proptest! {
        /// No message is ever placed outside the window in the patient's local time,
        /// before it is due, or past the daily and weekly caps.
        #[test]
        fn a_deliverable_instant_is_in_the_window_and_under_the_cap(
            due_seconds in THREE_YEARS,
            zone in 0..ZONES.len(),
            history in proptest::collection::vec(0_i64..(10 * 86_400), 0..6),
        ) {
            let program = program();
            let tz = ZONES[zone];
            let due = DateTime::from_timestamp(due_seconds, 0).unwrap_or_default();
            let sent: Vec<DateTime<Utc>> = history.iter().map(|back| due - TimeDelta::seconds(*back)).collect();
            let at = deliverable_at(&program, tz, &sent, due);
            prop_assert!(at.is_some());
            let at = at.unwrap_or_default();
            prop_assert!(at >= due);
            prop_assert!(program.window.allows(tz, at), "{at} outside the window in {tz}");
            let day = at.with_timezone(&tz).date_naive();
            let same_day = sent.iter().filter(|s| s.with_timezone(&tz).date_naive() == day).count();
            prop_assert!(same_day < program.cap.per_day as usize, "daily cap broken at {at}");
            let in_week = sent.iter().filter(|s| **s > at - TimeDelta::days(7) && **s <= at).count();
            prop_assert!(in_week < program.cap.per_week as usize, "weekly cap broken at {at}");
        }
    }
}
