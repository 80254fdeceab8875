//! When a patient may be contacted: the program's contact window in the patient's
//! own time zone, across daylight-saving changes, rest days and holidays.

use chrono::offset::LocalResult;
use chrono::{DateTime, Datelike as _, NaiveDate, NaiveDateTime, TimeDelta, TimeZone as _, Utc};
use chrono_tz::Tz;

use super::ContactWindow;

/// How far ahead to look for an open day; a valid program always has one within a
/// week, holidays aside.
const SEARCH_DAYS: usize = 400;

impl ContactWindow {
    /// Whether contact is allowed at `at` for a patient in `tz`.
    pub fn allows(&self, tz: Tz, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&tz);
        let time = local.time();
        self.open_on(local.date_naive()) && time >= self.start && time < self.end
    }

    /// The earliest instant at or after `at` when contact is allowed in `tz`, or
    /// None if there is none within a year (every day closed).
    pub fn next_open(&self, tz: Tz, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.allows(tz, at) {
            return Some(at);
        }
        let local = at.with_timezone(&tz);
        let mut date = local.date_naive();
        if local.time() >= self.start {
            date = date.succ_opt()?; // Today's window has begun (or passed) without us.
        }
        for _ in 0..SEARCH_DAYS {
            if self.open_on(date)
                && let Some(opens) = local_instant(tz, date.and_time(self.start))
                && opens >= at
                && self.allows(tz, opens)
            {
                return Some(opens);
            }
            date = date.succ_opt()?;
        }
        None
    }

    /// When the window closes on the patient's local day of `at`: the latest instant
    /// a message requested at `at` may be handed to a provider.
    pub fn closes_on(&self, tz: Tz, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        local_instant(tz, at.with_timezone(&tz).date_naive().and_time(self.end))
    }

    /// When the window opens on the patient's local day of `at`.
    pub fn opens_on(&self, tz: Tz, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        local_instant(tz, at.with_timezone(&tz).date_naive().and_time(self.start))
    }

    fn open_on(&self, date: NaiveDate) -> bool {
        !self.rests_on(date.weekday()) && !self.no_contact_dates.contains(&date)
    }
}

/// The instant a local wall-clock time happens in `tz`. A time repeated when clocks
/// go back is its first occurrence; a time skipped when clocks go forward becomes
/// the first instant after the gap.
pub(crate) fn local_instant(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.to_utc()),
        LocalResult::Ambiguous(first, _) => Some(first.to_utc()),
        LocalResult::None => (1..=180)
            .find_map(|minutes| {
                tz.from_local_datetime(&(local + TimeDelta::minutes(minutes)))
                    .earliest()
            })
            .map(|t| t.to_utc()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::{NaiveTime, Timelike as _};
    use proptest::prelude::*;

    use super::*;
    use crate::fixtures::{THREE_YEARS, ZONES, utc};

    fn window(start: u32, end: u32, rest_days: &[u8]) -> ContactWindow {
        ContactWindow {
            start: NaiveTime::from_hms_opt(start, 0, 0).unwrap_or_default(),
            end: NaiveTime::from_hms_opt(end, 0, 0).unwrap_or_default(),
            no_contact_days: rest_days.iter().copied().collect(),
            no_contact_dates: BTreeSet::new(),
        }
    }

    const TCPA: (u32, u32) = (8, 21);

    #[test]
    fn new_york_on_the_spring_forward_day_opens_at_eight_daylight_time() {
        let w = window(TCPA.0, TCPA.1, &[]);
        // 01:30 EST on 2026-03-08; clocks jump 02:00 -> 03:00; 08:00 EDT is 12:00Z.
        let next = w.next_open(chrono_tz::America::New_York, utc("2026-03-08T06:30:00Z"));
        assert_eq!(next, Some(utc("2026-03-08T12:00:00Z")));
    }

    #[test]
    fn new_york_on_the_fall_back_day_opens_at_eight_standard_time() {
        let w = window(TCPA.0, TCPA.1, &[]);
        // 01:00 EDT on 2026-11-01; at 02:00 clocks go back; 08:00 EST is 13:00Z.
        let next = w.next_open(chrono_tz::America::New_York, utc("2026-11-01T05:00:00Z"));
        assert_eq!(next, Some(utc("2026-11-01T13:00:00Z")));
    }

    #[test]
    fn los_angeles_inside_the_skipped_hour_waits_for_the_window() {
        let w = window(TCPA.0, TCPA.1, &[]);
        // 10:00Z is 03:00 PDT, just after the gap; 08:00 PDT is 15:00Z.
        let next = w.next_open(chrono_tz::America::Los_Angeles, utc("2026-03-08T10:00:00Z"));
        assert_eq!(next, Some(utc("2026-03-08T15:00:00Z")));
    }

    #[test]
    fn mexico_city_and_phoenix_keep_one_offset_all_year() {
        let w = window(TCPA.0, TCPA.1, &[]);
        // Mexico City has had no daylight saving since 2022: UTC-6 in March and July.
        for (at, opens) in [
            ("2026-03-08T06:00:00Z", "2026-03-08T14:00:00Z"),
            ("2026-07-08T06:00:00Z", "2026-07-08T14:00:00Z"),
        ] {
            assert_eq!(
                w.next_open(chrono_tz::America::Mexico_City, utc(at)),
                Some(utc(opens))
            );
        }
        // Phoenix is UTC-7 all year: 06:00Z is 23:00 the day before.
        for (at, opens) in [
            ("2026-03-08T06:00:00Z", "2026-03-08T15:00:00Z"),
            ("2026-11-01T06:00:00Z", "2026-11-01T15:00:00Z"),
        ] {
            assert_eq!(
                w.next_open(chrono_tz::America::Phoenix, utc(at)),
                Some(utc(opens))
            );
        }
    }

    #[test]
    fn inside_the_window_is_now_and_after_it_is_tomorrow_morning() {
        let w = window(9, 20, &[]);
        let ny = chrono_tz::America::New_York;
        assert_eq!(
            w.next_open(ny, utc("2026-06-10T15:00:00Z")),
            Some(utc("2026-06-10T15:00:00Z"))
        );
        // 20:30 EDT: closed until 09:00 EDT tomorrow.
        assert_eq!(
            w.next_open(ny, utc("2026-06-11T00:30:00Z")),
            Some(utc("2026-06-11T13:00:00Z"))
        );
    }

    #[test]
    fn rest_days_and_holidays_are_skipped() {
        let mut w = window(TCPA.0, TCPA.1, &[5, 6]); // no contact Saturday or Sunday
        w.no_contact_dates
            .insert(NaiveDate::from_ymd_opt(2026, 12, 28).unwrap_or_default());
        // Friday 2026-12-25 22:00 EST -> Saturday, Sunday rest, Monday the 28th a holiday.
        let next = w.next_open(chrono_tz::America::New_York, utc("2026-12-26T03:00:00Z"));
        assert_eq!(next, Some(utc("2026-12-29T13:00:00Z")));
    }

    #[test]
    fn the_window_closes_at_its_end_on_the_patients_local_day() {
        let w = window(9, 20, &[]);
        // 22:30Z on 2026-03-07 is 17:30 EST; it closes at 20:00 EST = 01:00Z next day.
        let ny = chrono_tz::America::New_York;
        assert_eq!(
            w.closes_on(ny, utc("2026-03-07T22:30:00Z")),
            Some(utc("2026-03-08T01:00:00Z"))
        );
        // The next day is the spring-forward day: 20:00 EDT is 00:00Z.
        assert_eq!(
            w.closes_on(ny, utc("2026-03-08T14:00:00Z")),
            Some(utc("2026-03-09T00:00:00Z"))
        );
    }

    #[test]
    fn a_window_with_no_open_day_has_no_next_opening() {
        let w = window(TCPA.0, TCPA.1, &[0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(
            w.next_open(chrono_tz::America::Chicago, utc("2026-06-10T15:00:00Z")),
            None
        );
    }

    proptest! {
        /// Whatever the instant, zone and window: the opening found is inside the
        /// window in the patient's local time, not before the instant, and the
        /// earliest such minute.
        #[test]
        fn the_next_opening_is_inside_the_window_and_the_earliest(
            seconds in THREE_YEARS,
            zone in 0..ZONES.len(),
            start in 8_u32..20,
            length in 1_u32..13,
            rest_mask in 0_u8..127, // never all seven days
        ) {
            let end = (start + length).min(21);
            let rest: Vec<u8> = (0..7).filter(|d| rest_mask & (1 << d) != 0).collect();
            let w = window(start, end, &rest);
            let tz = ZONES[zone];
            let at = DateTime::from_timestamp(seconds, 0).unwrap_or_default();
            let next = w.next_open(tz, at);
            prop_assert!(next.is_some());
            let next = next.unwrap_or_default();
            prop_assert!(next >= at);
            prop_assert!(w.allows(tz, next), "{next} is outside the window in {tz}");
            let local = next.with_timezone(&tz);
            prop_assert!(local.hour() >= 8 && (local.hour() < 21), "outside TCPA hours: {local}");
            if next > at {
                prop_assert!(!w.allows(tz, next - TimeDelta::minutes(1)), "an earlier minute was open");
                prop_assert!(!w.allows(tz, at));
            }
        }
    }
}
