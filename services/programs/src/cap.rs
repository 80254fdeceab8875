//! The frequency cap: at most so many messages a patient receives on one local
//! day and in any seven days (the healthcare-message exemption allows one a day,
//! three a week).

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use super::FrequencyCap;
use super::window::local_instant;

impl FrequencyCap {
    /// If a message at `at` would break the cap, given when earlier messages to
    /// the patient were `sent`, the first instant it might not. Days are the
    /// patient's local days in `tz`.
    pub fn blocks_until(
        &self,
        tz: Tz,
        sent: &[DateTime<Utc>],
        at: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let day = at.with_timezone(&tz).date_naive();
        let same_day = sent
            .iter()
            .filter(|s| s.with_timezone(&tz).date_naive() == day)
            .count();
        if same_day >= self.per_day as usize {
            // The next local day's first instant, even where a clock change skips
            // its midnight; a day later if the calendar ends.
            let next_day = day.succ_opt().and_then(|d| d.and_hms_opt(0, 0, 0));
            return Some(
                next_day
                    .and_then(|midnight| local_instant(tz, midnight))
                    .unwrap_or(at + TimeDelta::days(1)),
            );
        }
        let week_start = at - TimeDelta::days(7);
        let mut in_week: Vec<&DateTime<Utc>> = sent
            .iter()
            .filter(|s| **s > week_start && **s <= at)
            .collect();
        if in_week.len() >= self.per_week as usize {
            in_week.sort();
            // Free once enough of the week's messages are more than 7 days old.
            let oldest_to_expire = in_week[in_week.len() - self.per_week as usize];
            return Some(*oldest_to_expire + TimeDelta::days(7));
        }
        None
    }

    /// Whether a message at `at` keeps to the cap.
    pub fn allows(&self, tz: Tz, sent: &[DateTime<Utc>], at: DateTime<Utc>) -> bool {
        self.blocks_until(tz, sent, at).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::utc;

    const HEALTHCARE: FrequencyCap = FrequencyCap {
        per_day: 1,
        per_week: 3,
    };

    #[test]
    fn one_a_day_in_the_patients_local_day() {
        let chicago = chrono_tz::America::Chicago;
        // 23:30 CDT on the 8th is 04:30Z on the 9th: still the 8th for the patient.
        let sent = [utc("2026-04-09T04:30:00Z")];
        assert!(!HEALTHCARE.allows(chicago, &sent, utc("2026-04-08T15:00:00Z")));
        assert_eq!(
            HEALTHCARE.blocks_until(chicago, &sent, utc("2026-04-08T15:00:00Z")),
            Some(utc("2026-04-09T05:00:00Z")),
            "midnight CDT"
        );
        assert!(HEALTHCARE.allows(chicago, &sent, utc("2026-04-09T15:00:00Z")));
    }

    #[test]
    fn three_in_any_seven_days() {
        let tz = chrono_tz::America::Phoenix;
        let sent = [
            utc("2026-04-06T17:00:00Z"),
            utc("2026-04-07T17:00:00Z"),
            utc("2026-04-08T17:00:00Z"),
        ];
        assert_eq!(
            HEALTHCARE.blocks_until(tz, &sent, utc("2026-04-10T17:00:00Z")),
            Some(utc("2026-04-13T17:00:00Z"))
        );
        assert!(HEALTHCARE.allows(tz, &sent, utc("2026-04-13T17:00:01Z")));
    }

    #[test]
    fn a_day_whose_midnight_is_skipped_still_starts_the_next_day() {
        // Havana springs forward at midnight: 2026-03-08 00:00 does not exist and
        // the day starts at 01:00 CDT (05:00Z).
        let havana = chrono_tz::America::Havana;
        let sent = [utc("2026-03-07T17:00:00Z")];
        assert_eq!(
            HEALTHCARE.blocks_until(havana, &sent, utc("2026-03-07T23:00:00Z")),
            Some(utc("2026-03-08T05:00:00Z"))
        );
    }
}
