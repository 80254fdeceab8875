//! Where an inbound contact goes, and which rule sent it there:
//!
//! 1. `coordinator`: the case's own coordinator, if on shift and available;
//! 2. `navigator`: else the case's navigator, if on shift and available;
//! 3. `skills`: else whoever works the program in the case's language, is on
//!    shift, available and under capacity, least recently given one first;
//! 4. `queue`: else the program's queue, while anyone of the program is on
//!    shift (a contact from an unknown number goes to the general queue);
//! 5. `callback`: outside every shift of the program, a callback due when the
//!    next shift starts plus the configured minutes, moved on when that falls
//!    outside the patient's contact window to the first instant inside both the
//!    window and someone's shift.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use touchpoint_programs::ContactWindow;
use touchpoint_proto::v1::Language;

use super::roster::{Member, Roster};

/// The queue of contacts no case claims.
pub const GENERAL_QUEUE: &str = "general";

/// The routing rule that matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The case's own coordinator.
    Coordinator,
    /// The case's navigator.
    Navigator,
    /// A coordinator with the program and language.
    Skills,
    /// The program's (or the general) queue.
    Queue,
    /// A callback after hours.
    Callback,
}

impl Rule {
    /// Its name in events and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Coordinator => "coordinator",
            Rule::Navigator => "navigator",
            Rule::Skills => "skills",
            Rule::Queue => "queue",
            Rule::Callback => "callback",
        }
    }

    /// The rule named `name`, as [`Rule::as_str`] writes it.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Rule::Coordinator,
            Rule::Navigator,
            Rule::Skills,
            Rule::Queue,
            Rule::Callback,
        ]
        .into_iter()
        .find(|r| r.as_str() == name)
    }
}

/// What routing knows of the case a contact belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseRouting {
    /// The case's program.
    pub program_id: String,
    /// The patient's language.
    pub language: Language,
    /// The assigned coordinator, if any.
    pub coordinator_id: Option<String>,
    /// The assigned navigator, if any.
    pub navigator_id: Option<String>,
}

/// Where a contact goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The rule that matched.
    pub rule: Rule,
    /// The person it goes to (rules coordinator, navigator, skills).
    pub member_id: Option<String>,
    /// The queue it waits in (rules queue and callback).
    pub queue: Option<String>,
    /// When the callback is due (rule callback).
    pub callback_due_at: Option<DateTime<Utc>>,
}

/// The queue of `program_id`.
pub fn program_queue(program_id: &str) -> String {
    format!("program:{program_id}")
}

/// Where a contact for `case` (`None`: no case matched) goes at `now`. A
/// callback is due `callback_after` past the next shift start, moved into
/// `patient_window` (the patient's zone and contact window: the program's as
/// the patient's state narrows it) when it is known.
pub fn decide(
    case: Option<&CaseRouting>,
    roster: &Roster,
    now: DateTime<Utc>,
    callback_after: TimeDelta,
    patient_window: Option<(Tz, &ContactWindow)>,
) -> Decision {
    let to = |rule, member: &Member| Decision {
        rule,
        member_id: Some(member.id.clone()),
        queue: None,
        callback_due_at: None,
    };
    let Some(case) = case else {
        return queue_or_callback(
            roster.members().iter(),
            GENERAL_QUEUE.into(),
            now,
            callback_after,
        );
    };
    let assigned = |id: &Option<String>| {
        id.as_deref()
            .and_then(|id| roster.get(id))
            .filter(|m| m.reachable(now))
    };
    if let Some(member) = assigned(&case.coordinator_id) {
        return to(Rule::Coordinator, member);
    }
    if let Some(member) = assigned(&case.navigator_id) {
        return to(Rule::Navigator, member);
    }
    let program = || {
        roster
            .members()
            .iter()
            .filter(|m| m.programs.contains(&case.program_id))
    };
    let skilled = program()
        .filter(|m| m.languages.contains(&case.language))
        .filter(|m| m.open_tasks < m.capacity && m.reachable(now))
        // Never given one sorts first (None < Some), then the longest ago.
        .min_by(|a, b| (a.last_assigned_at, &a.id).cmp(&(b.last_assigned_at, &b.id)));
    if let Some(member) = skilled {
        return to(Rule::Skills, member);
    }
    let mut decision = queue_or_callback(
        program(),
        program_queue(&case.program_id),
        now,
        callback_after,
    );
    if let (Some(due), Some((tz, window))) = (decision.callback_due_at, patient_window) {
        decision.callback_due_at = Some(inside_window_and_shift(program(), tz, window, due));
    }
    decision
}

/// A call that rang `member` and was not answered: a callback on their
/// worklist (in `queue` when nobody was rung), due `callback_after` from `now`,
/// moved to the first instant inside the patient's window while they (or,
/// without them, anyone in `members`) are on shift.
pub fn missed_call<'a>(
    member: Option<&'a Member>,
    members: impl Iterator<Item = &'a Member> + Clone,
    queue: String,
    now: DateTime<Utc>,
    (callback_after, patient_window): (TimeDelta, Option<(Tz, &ContactWindow)>),
) -> Decision {
    let due = now + callback_after;
    let due = match (member, patient_window) {
        (Some(member), Some((tz, window))) => {
            inside_window_and_shift(std::iter::once(member), tz, window, due)
        }
        (None, Some((tz, window))) => inside_window_and_shift(members, tz, window, due),
        (_, None) => due,
    };
    Decision {
        rule: Rule::Callback,
        member_id: member.map(|m| m.id.clone()),
        queue: member.is_none().then_some(queue),
        callback_due_at: Some(due),
    }
}

/// How many shift starts a callback is moved across to find one inside the
/// patient's window before it keeps its shift-based time.
const CALLBACK_SEARCH: usize = 21;

/// The first instant at or after `due` inside the patient's `window` (in `tz`)
/// while one of `members` is on shift; `due` itself when none is found within
/// three weeks of shifts (windows and shifts that never meet: a person sees it
/// on the worklist and decides).
fn inside_window_and_shift<'a>(
    members: impl Iterator<Item = &'a Member> + Clone,
    tz: Tz,
    window: &ContactWindow,
    due: DateTime<Utc>,
) -> DateTime<Utc> {
    let mut at = due;
    for _ in 0..CALLBACK_SEARCH {
        let Some(open) = window.next_open(tz, at) else {
            return due;
        };
        if members.clone().any(|m| m.on_shift(open)) {
            return open;
        }
        match members
            .clone()
            .filter_map(|m| m.next_shift_start(open))
            .min()
        {
            Some(start) if start > open => at = start,
            _ => return due,
        }
    }
    due
}

/// The queue while any of `members` is on shift; else a callback at the next
/// shift start among them. With no shifts at all, the queue.
fn queue_or_callback<'a>(
    members: impl Iterator<Item = &'a Member> + Clone,
    queue: String,
    now: DateTime<Utc>,
    callback_after: TimeDelta,
) -> Decision {
    // The next shift start is only worked out when nobody is on shift now.
    let next_start = if members.clone().any(|m| m.on_shift(now)) {
        None
    } else {
        members.filter_map(|m| m.next_shift_start(now)).min()
    };
    match next_start {
        Some(start) => Decision {
            rule: Rule::Callback,
            member_id: None,
            queue: Some(queue),
            callback_due_at: Some(start + callback_after),
        },
        _ => Decision {
            rule: Rule::Queue,
            member_id: None,
            queue: Some(queue),
            callback_due_at: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::{NaiveTime, Weekday};
    use chrono_tz::Tz;

    use touchpoint_platform::testkit::utc as at;

    use super::*;
    use crate::domain::roster::{DialTarget, Presence, Role, Shift};

    const PROGRAM: &str = "adherence";

    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap_or_default()
    }

    /// Works weekdays 9:00 to 17:00 in `zone`, English and Spanish.
    fn member(id: &str, zone: Tz) -> Member {
        Member {
            id: id.into(),
            role: Role::Coordinator,
            time_zone: zone,
            programs: BTreeSet::from([PROGRAM.to_owned()]),
            languages: BTreeSet::from([Language::En, Language::Es]),
            skills: BTreeSet::new(),
            capacity: 5,
            open_tasks: 0,
            presence: Presence::Available,
            shifts: [
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
            ]
            .into_iter()
            .map(|day| Shift {
                day,
                start: hm(9, 0),
                end: hm(17, 0),
            })
            .collect(),
            last_assigned_at: None,
            updated_by: String::new(),
            dial_to: DialTarget::Client,
        }
    }

    fn case() -> CaseRouting {
        CaseRouting {
            program_id: PROGRAM.into(),
            language: Language::Es,
            coordinator_id: Some("carla".into()),
            navigator_id: Some("nico".into()),
        }
    }

    fn decide_at(roster: &Roster, now: &str) -> Decision {
        decide(Some(&case()), roster, at(now), TimeDelta::minutes(30), None)
    }

    // Tuesday 2026-11-24, 15:00 UTC: 10:00 in New York, 07:00 in Los Angeles.
    const TUESDAY_MORNING: &str = "2026-11-24T15:00:00Z";

    #[test]
    fn the_cases_own_coordinator_first() {
        let roster = Roster::new([
            member("carla", chrono_tz::America::New_York),
            member("nico", chrono_tz::America::New_York),
        ]);
        let d = decide_at(&roster, TUESDAY_MORNING);
        assert_eq!(
            (d.rule, d.member_id.as_deref()),
            (Rule::Coordinator, Some("carla"))
        );
    }

    #[test]
    fn an_offline_coordinator_passes_to_the_navigator() {
        let mut carla = member("carla", chrono_tz::America::New_York);
        carla.presence = Presence::Offline;
        let roster = Roster::new([carla, member("nico", chrono_tz::America::Chicago)]);
        let d = decide_at(&roster, TUESDAY_MORNING);
        assert_eq!(
            (d.rule, d.member_id.as_deref()),
            (Rule::Navigator, Some("nico"))
        );
    }

    #[test]
    fn a_coordinator_off_shift_in_their_own_zone_passes_on() {
        // 07:00 in Los Angeles: Carla's shift there has not begun.
        let roster = Roster::new([
            member("carla", chrono_tz::America::Los_Angeles),
            member("nico", chrono_tz::America::New_York),
        ]);
        let d = decide_at(&roster, TUESDAY_MORNING);
        assert_eq!(d.rule, Rule::Navigator);
    }

    #[test]
    fn then_the_least_recently_assigned_with_the_program_and_language() {
        let mut carla = member("carla", chrono_tz::America::New_York);
        carla.presence = Presence::Busy;
        let mut nico = member("nico", chrono_tz::America::New_York);
        nico.presence = Presence::Away;
        let mut english_only = member("ed", chrono_tz::America::New_York);
        english_only.languages = BTreeSet::from([Language::En]);
        let mut recent = member("rosa", chrono_tz::America::New_York);
        recent.last_assigned_at = Some(at("2026-11-24T14:50:00Z"));
        let mut earlier = member("sol", chrono_tz::America::New_York);
        earlier.last_assigned_at = Some(at("2026-11-24T14:00:00Z"));
        let mut full = member("ana", chrono_tz::America::New_York);
        full.open_tasks = full.capacity;
        let roster = Roster::new([carla, nico, english_only, recent, earlier, full]);
        let d = decide_at(&roster, TUESDAY_MORNING);
        assert_eq!(
            (d.rule, d.member_id.as_deref()),
            (Rule::Skills, Some("sol"))
        );
    }

    #[test]
    fn then_the_program_queue_while_anyone_is_on_shift() {
        let mut carla = member("carla", chrono_tz::America::New_York);
        carla.presence = Presence::Busy;
        let roster = Roster::new([carla]);
        let d = decide_at(&roster, TUESDAY_MORNING);
        assert_eq!(d.rule, Rule::Queue);
        assert_eq!(d.queue.as_deref(), Some("program:adherence"));
    }

    #[test]
    fn after_hours_a_callback_due_at_the_next_shift_start_plus_the_sla() {
        // Friday 2026-11-27 23:30 UTC: 18:30 in New York, 15:30 in Los Angeles is
        // still on shift, but Los Angeles does not work this program.
        let mut other = member("lou", chrono_tz::America::Los_Angeles);
        other.programs = BTreeSet::from(["oncology".to_owned()]);
        let roster = Roster::new([member("carla", chrono_tz::America::New_York), other]);
        let d = decide_at(&roster, "2026-11-27T23:30:00Z");
        assert_eq!(d.rule, Rule::Callback);
        assert_eq!(d.queue.as_deref(), Some("program:adherence"));
        // Monday 09:00 in New York is 14:00 UTC; 30 minutes on.
        assert_eq!(d.callback_due_at, Some(at("2026-11-30T14:30:00Z")));
    }

    #[test]
    fn a_callback_falls_inside_the_patients_window_and_a_shift() {
        // Friday evening; carla works weekdays 09:00-17:00 in New York. The
        // patient is in Los Angeles and may be called 10:00-20:00 there.
        let roster = Roster::new([member("carla", chrono_tz::America::New_York)]);
        let window = ContactWindow {
            start: hm(10, 0),
            end: hm(20, 0),
            no_contact_days: BTreeSet::new(),
            no_contact_dates: BTreeSet::new(),
        };
        let los_angeles = chrono_tz::America::Los_Angeles;
        // The plain callback would be Monday 09:30 in New York, 06:30 in Los
        // Angeles: too early for the patient. 10:00 there is 13:00 in New York,
        // inside carla's shift.
        let d = decide(
            Some(&case()),
            &roster,
            at("2026-11-27T23:30:00Z"),
            TimeDelta::minutes(30),
            Some((los_angeles, &window)),
        );
        assert_eq!(d.rule, Rule::Callback);
        assert_eq!(d.callback_due_at, Some(at("2026-11-30T18:00:00Z")));

        // A patient whose window never meets a shift keeps the shift-based time.
        let late = ContactWindow {
            start: hm(18, 0),
            end: hm(20, 0),
            ..window
        };
        let d = decide(
            Some(&case()),
            &roster,
            at("2026-11-27T23:30:00Z"),
            TimeDelta::minutes(30),
            Some((los_angeles, &late)),
        );
        assert_eq!(d.callback_due_at, Some(at("2026-11-30T14:30:00Z")));
    }

    #[test]
    fn an_unknown_number_goes_to_the_general_queue() {
        let roster = Roster::new([member("carla", chrono_tz::America::New_York)]);
        let d = decide(
            None,
            &roster,
            at(TUESDAY_MORNING),
            TimeDelta::minutes(30),
            None,
        );
        assert_eq!(
            (d.rule, d.queue.as_deref()),
            (Rule::Queue, Some(GENERAL_QUEUE))
        );
        let night = decide(
            None,
            &roster,
            at("2026-11-25T04:00:00Z"),
            TimeDelta::minutes(30),
            None,
        );
        assert_eq!(night.rule, Rule::Callback);
        assert_eq!(night.callback_due_at, Some(at("2026-11-25T14:30:00Z")));
    }

    #[test]
    fn an_overnight_shift_covers_the_small_hours_of_the_next_day() {
        let mut owl = member("carla", chrono_tz::America::Chicago);
        owl.shifts = vec![Shift {
            day: Weekday::Tue,
            start: hm(22, 0),
            end: hm(6, 0),
        }];
        // Wednesday 03:00 in Chicago.
        assert!(owl.on_shift(at("2026-11-25T09:00:00Z")));
        // Wednesday 07:00 in Chicago.
        assert!(!owl.on_shift(at("2026-11-25T13:00:00Z")));
    }

    #[test]
    fn the_next_shift_start_honours_daylight_saving() {
        // Sunday 2026-03-08 is the spring change in the US; Monday 09:00 in New
        // York is then 13:00 UTC, not 14:00.
        let carla = member("carla", chrono_tz::America::New_York);
        assert_eq!(
            carla.next_shift_start(at("2026-03-07T12:00:00Z")),
            Some(at("2026-03-09T13:00:00Z"))
        );
    }

    #[test]
    fn a_roster_without_shifts_queues() {
        let mut carla = member("carla", chrono_tz::America::New_York);
        carla.shifts.clear();
        let d = decide_at(&Roster::new([carla]), TUESDAY_MORNING);
        assert_eq!(d.rule, Rule::Queue);
    }
}
