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
        let per_day = self
            .per_24_hours
            .and_then(|limit| rolling(sent, at, TimeDelta::hours(24), limit));
        let per_week = rolling(sent, at, TimeDelta::days(7), self.per_week);
        per_day.max(per_week)
    }

    /// Whether a message at `at` keeps to the cap.
    pub fn allows(&self, tz: Tz, sent: &[DateTime<Utc>], at: DateTime<Utc>) -> bool {
        self.blocks_until(tz, sent, at).is_none()
    }
}

/// If `limit` messages of `sent` fall in the `span` before `at`, the first
/// instant enough of them are older than `span`.
fn rolling(
    sent: &[DateTime<Utc>],
    at: DateTime<Utc>,
    span: TimeDelta,
    limit: u32,
) -> Option<DateTime<Utc>> {
    let from = at - span;
    let mut inside: Vec<&DateTime<Utc>> = sent.iter().filter(|s| **s > from && **s <= at).collect();
    let limit = limit as usize;
    if inside.len() < limit {
        return None;
    }
    inside.sort();
    // limit >= 1 (validated), so the index is inside.
    inside
        .get(inside.len() - limit.max(1))
        .map(|oldest_to_expire| **oldest_to_expire + span)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::utc;

    const HEALTHCARE: FrequencyCap = FrequencyCap {
        per_day: 1,
        per_week: 3,
        per_24_hours: None,
    };

    #[test]
    fn a_state_rule_of_three_in_24_hours_counts_across_local_midnight() {
        let cap = FrequencyCap {
            per_day: 3,
            per_week: 20,
            per_24_hours: Some(3),
        };
        let chicago = chrono_tz::America::Chicago;
        // Three late on the 8th (local); the 9th is a new day but not 24 hours on.
        let sent = [
            utc("2026-04-09T00:00:00Z"),
            utc("2026-04-09T01:00:00Z"),
            utc("2026-04-09T02:00:00Z"),
        ];
        assert_eq!(
            cap.blocks_until(chicago, &sent, utc("2026-04-09T14:00:00Z")),
            Some(utc("2026-04-10T00:00:00Z"))
        );
        assert!(cap.allows(chicago, &sent, utc("2026-04-10T00:00:01Z")));
    }

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
