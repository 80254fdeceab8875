//! The operations page's arithmetic: from the KPI projection's daily figures
//! (`GetKpis`) to each figure's value per day, each program's figures today
//! against its targets, and the SLA alerts. Pure: figures in, rows out.

use std::collections::BTreeMap;

use chrono::{NaiveDate, TimeDelta};
use touchpoint_proto::v1::{BacklogBucket, KpiFigure, OpenWork, ProgramTargets};

/// A figure the page plots and compares with a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kpi {
    /// Reached / attempted.
    ContactRate,
    /// Mean hours from enrolment to first contact.
    FirstContactHours,
    /// Callbacks done by their due time / done.
    CallbacksWithinSla,
    /// AE flags reviewed within 24 h / flagged.
    AeReviewedWithin24h,
    /// Inbound contacts.
    Inbound,
    /// Cases enrolled.
    Enrolled,
}

impl Kpi {
    /// Every figure, in the page's order.
    pub const ALL: [Kpi; 6] = [
        Kpi::ContactRate,
        Kpi::FirstContactHours,
        Kpi::CallbacksWithinSla,
        Kpi::AeReviewedWithin24h,
        Kpi::Inbound,
        Kpi::Enrolled,
    ];

    /// Its name in ids, CSV and the locale files (`ops.<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Kpi::ContactRate => "contact_rate",
            Kpi::FirstContactHours => "first_contact_hours",
            Kpi::CallbacksWithinSla => "callbacks_within_sla",
            Kpi::AeReviewedWithin24h => "ae_reviewed_within_24h",
            Kpi::Inbound => "inbound",
            Kpi::Enrolled => "enrolled",
        }
    }

    /// How its values are written: `%`, `h` or a count ("").
    pub fn unit(self) -> &'static str {
        match self {
            Kpi::ContactRate | Kpi::CallbacksWithinSla | Kpi::AeReviewedWithin24h => "%",
            Kpi::FirstContactHours => "h",
            Kpi::Inbound | Kpi::Enrolled => "",
        }
    }

    /// The figures its value is made of.
    pub fn figures(self) -> &'static [&'static str] {
        match self {
            Kpi::ContactRate => &["reached", "attempted"],
            Kpi::FirstContactHours => &["first_contact", "first_contact_seconds"],
            Kpi::CallbacksWithinSla => &["callbacks_in_sla", "callbacks_done"],
            Kpi::AeReviewedWithin24h => &["ae_reviewed_in_24h", "ae_flags"],
            Kpi::Inbound => &["inbound"],
            Kpi::Enrolled => &["enrolled"],
        }
    }

    /// Its value from one day's (or a range's) summed figures; `None` when
    /// there is nothing to measure.
    pub fn of(self, sums: &Sums) -> Option<f64> {
        let share = |part: &str, whole: &str| {
            let whole = sums.get(whole);
            (whole > 0).then(|| sums.get(part) as f64 / whole as f64)
        };
        match self {
            Kpi::ContactRate => share("reached", "attempted"),
            Kpi::FirstContactHours => {
                let n = sums.get("first_contact");
                (n > 0).then(|| sums.get("first_contact_seconds") as f64 / n as f64 / 3600.0)
            }
            Kpi::CallbacksWithinSla => share("callbacks_in_sla", "callbacks_done"),
            Kpi::AeReviewedWithin24h => share("ae_reviewed_in_24h", "ae_flags"),
            Kpi::Inbound => Some(sums.get("inbound") as f64),
            Kpi::Enrolled => Some(sums.get("enrolled") as f64),
        }
    }

    /// Its target, if the program sets one.
    pub fn target(self, targets: Option<&ProgramTargets>) -> Option<f64> {
        let t = targets?;
        match self {
            Kpi::ContactRate => t.contact_rate,
            Kpi::FirstContactHours => t.first_contact_hours,
            Kpi::CallbacksWithinSla => t.callbacks_within_sla,
            Kpi::AeReviewedWithin24h => t.ae_reviewed_within_24h,
            Kpi::Inbound | Kpi::Enrolled => None,
        }
    }

    /// Whether `value` misses `target`: below it for a share, above it for
    /// hours.
    pub fn misses(self, value: f64, target: f64) -> bool {
        match self {
            Kpi::FirstContactHours => value > target,
            _ => value < target,
        }
    }
}

/// Figures summed by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sums(BTreeMap<String, i64>);

impl Sums {
    /// The sum of `figure`.
    pub fn get(&self, figure: &str) -> i64 {
        self.0.get(figure).copied().unwrap_or(0)
    }

    fn add(&mut self, figure: &str, value: i64) {
        *self.0.entry(figure.to_owned()).or_default() += value;
    }
}

/// Whether a figure of `channel` counts under the page's channel filter: a
/// case's figures (channel "") always do.
fn counts(figure_channel: &str, filter: Option<&str>) -> bool {
    figure_channel.is_empty() || filter.is_none_or(|c| c == figure_channel)
}

/// Each day from `from` to `to` with its figures summed over programs and the
/// channels the filter lets through.
pub fn by_day(
    figures: &[KpiFigure],
    from: NaiveDate,
    to: NaiveDate,
    channel: Option<&str>,
) -> Vec<(NaiveDate, Sums)> {
    let mut days: BTreeMap<NaiveDate, Sums> = BTreeMap::new();
    let mut day = from;
    while day <= to {
        days.insert(day, Sums::default());
        day += TimeDelta::days(1);
    }
    for f in figures.iter().filter(|f| counts(&f.channel, channel)) {
        if let Ok(day) = NaiveDate::parse_from_str(&f.day, "%Y-%m-%d")
            && let Some(sums) = days.get_mut(&day)
        {
            sums.add(&f.figure, f.value);
        }
    }
    days.into_iter().collect()
}

/// The figures of each program summed over the days they cover.
pub fn by_program(figures: &[KpiFigure], channel: Option<&str>) -> BTreeMap<String, Sums> {
    let mut programs: BTreeMap<String, Sums> = BTreeMap::new();
    for f in figures.iter().filter(|f| counts(&f.channel, channel)) {
        programs
            .entry(f.program_id.clone())
            .or_default()
            .add(&f.figure, f.value);
    }
    programs
}

/// Something a supervisor should act on now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The program.
    pub program_id: String,
    /// `callback_overdue`, `callback_due_soon`, `adverse_event_overdue`,
    /// `adverse_event_due_soon` or `backlog` (the locale's `alert.<kind>`).
    pub kind: &'static str,
    /// How many.
    pub count: u64,
}

/// The alerts in `open` work and the `backlog`, given each program's targets.
pub fn alerts(
    open: &[OpenWork],
    backlog: &[BacklogBucket],
    targets: &BTreeMap<String, ProgramTargets>,
) -> Vec<Alert> {
    let mut alerts = Vec::new();
    for work in open {
        let (overdue, soon) = match work.kind.as_str() {
            "callback" => ("callback_overdue", "callback_due_soon"),
            "adverse_event" => ("adverse_event_overdue", "adverse_event_due_soon"),
            _ => continue,
        };
        for (kind, count) in [(overdue, work.overdue), (soon, work.due_soon)] {
            if count > 0 {
                alerts.push(Alert {
                    program_id: work.program_id.clone(),
                    kind,
                    count,
                });
            }
        }
    }
    // A backlog older than the program's limit: the buckets at or past it.
    let mut old: BTreeMap<&str, u64> = BTreeMap::new();
    for bucket in backlog {
        let Some(limit) = targets
            .get(&bucket.program_id)
            .and_then(|t| t.backlog_hours)
        else {
            continue;
        };
        let oldest_hours = match bucket.age.as_str() {
            "under_1h" => 1.0,
            "1h_to_24h" => 24.0,
            _ => f64::INFINITY,
        };
        if oldest_hours > limit {
            *old.entry(bucket.program_id.as_str()).or_default() += bucket.count;
        }
    }
    for (program, count) in old {
        alerts.push(Alert {
            program_id: program.to_owned(),
            kind: "backlog",
            count,
        });
    }
    alerts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(program: &str, day: &str, channel: &str, figure: &str, value: i64) -> KpiFigure {
        KpiFigure {
            program_id: program.into(),
            day: day.into(),
            channel: channel.into(),
            figure: figure.into(),
            value,
        }
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2027, 1, d).unwrap_or_default()
    }

    #[test]
    fn days_sum_over_programs_and_the_chosen_channel_and_empty_days_measure_nothing() {
        let figures = [
            f("adherence", "2027-01-01", "sms", "attempted", 4),
            f("adherence", "2027-01-01", "sms", "reached", 1),
            f("refill", "2027-01-01", "sms", "attempted", 4),
            f("refill", "2027-01-01", "sms", "reached", 3),
            f("adherence", "2027-01-01", "email", "attempted", 10),
            f("adherence", "2027-01-03", "", "enrolled", 2),
        ];
        let days = by_day(&figures, day(1), day(3), Some("sms"));
        assert_eq!(days.len(), 3);
        assert_eq!(Kpi::ContactRate.of(&days[0].1), Some(0.5));
        assert_eq!(Kpi::ContactRate.of(&days[1].1), None, "nothing attempted");
        assert_eq!(
            Kpi::Enrolled.of(&days[2].1),
            Some(2.0),
            "a case's figure counts"
        );
        let every_channel = by_day(&figures, day(1), day(1), None);
        assert_eq!(Kpi::ContactRate.of(&every_channel[0].1), Some(4.0 / 18.0));
    }

    #[test]
    fn a_share_misses_below_its_target_and_hours_above() {
        assert!(Kpi::ContactRate.misses(0.2, 0.35));
        assert!(!Kpi::ContactRate.misses(0.4, 0.35));
        assert!(Kpi::FirstContactHours.misses(80.0, 72.0));
        assert!(!Kpi::FirstContactHours.misses(10.0, 72.0));
    }

    #[test]
    fn overdue_and_soon_due_work_and_a_backlog_past_the_limit_are_alerts() {
        let open = [
            OpenWork {
                program_id: "adherence".into(),
                kind: "callback".into(),
                open: 3,
                overdue: 1,
                due_soon: 0,
            },
            OpenWork {
                program_id: "adherence".into(),
                kind: "adverse_event".into(),
                open: 1,
                overdue: 0,
                due_soon: 1,
            },
            OpenWork {
                program_id: "adherence".into(),
                kind: "inbound".into(),
                open: 9,
                overdue: 9,
                due_soon: 0,
            },
        ];
        let backlog = [
            BacklogBucket {
                program_id: "adherence".into(),
                channel: "sms".into(),
                age: "under_1h".into(),
                count: 5,
            },
            BacklogBucket {
                program_id: "adherence".into(),
                channel: "sms".into(),
                age: "1h_to_24h".into(),
                count: 2,
            },
        ];
        let targets = BTreeMap::from([(
            "adherence".to_owned(),
            ProgramTargets {
                backlog_hours: Some(4.0),
                ..ProgramTargets::default()
            },
        )]);
        let kinds: Vec<(&str, u64)> = alerts(&open, &backlog, &targets)
            .iter()
            .map(|a| (a.kind, a.count))
            .collect();
        assert_eq!(
            kinds,
            [
                ("callback_overdue", 1),
                ("adverse_event_due_soon", 1),
                ("backlog", 2)
            ]
        );
    }
}
