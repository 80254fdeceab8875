//! What `GetKpis` answers: the range and programs asked for, checked and
//! narrowed to the caller's scope, and the figures and backlog read for them.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use sqlx::PgPool;
use tonic::Status;
use touchpoint_platform::access::Scope;
use touchpoint_platform::envelope::timestamp;
use touchpoint_proto::v1::{BacklogBucket, GetKpisRequest, GetKpisResponse, KpiFigure, OpenWork};

use super::fold::day_of;
use super::store;

/// The days shown when none are asked for.
pub const DEFAULT_DAYS: i64 = 30;
/// The longest range one call may ask for.
pub const MAX_DAYS: i64 = 400;
/// Open work due within this is `due_soon`.
const DUE_SOON: TimeDelta = TimeDelta::hours(2);
/// How far `behind` counts.
const BEHIND_CAP: i64 = 100_000;

/// The days and programs a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// First day, inclusive.
    pub from: NaiveDate,
    /// Last day, inclusive.
    pub to: NaiveDate,
    /// The programs (`None`: every program).
    pub programs: Option<Vec<String>>,
}

/// Reads `request` at `today` in the site's zone, within `scope`.
pub fn range(request: &GetKpisRequest, today: NaiveDate, scope: &Scope) -> Result<Range, Status> {
    let to = day(&request.to_day, "to_day")?.unwrap_or(today);
    let days = match i64::from(request.days) {
        0 => DEFAULT_DAYS,
        n => n,
    };
    let from = day(&request.from_day, "from_day")?.unwrap_or(to - TimeDelta::days(days - 1));
    if from > to {
        return Err(Status::invalid_argument("from_day: after to_day"));
    }
    if (to - from).num_days() >= MAX_DAYS {
        return Err(Status::invalid_argument(format!(
            "from_day: at most {MAX_DAYS} days at a time"
        )));
    }
    Ok(Range {
        from,
        to,
        programs: programs(&request.program_ids, scope),
    })
}

/// `raw` as a day (`YYYY-MM-DD`), or `None` when empty.
pub fn day(raw: &str, field: &str) -> Result<Option<NaiveDate>, Status> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
        .map(Some)
        .map_err(|_| Status::invalid_argument(format!("{field}: expected YYYY-MM-DD")))
}

/// The programs `asked` for, narrowed to `scope` (`None`: every program);
/// none asked for is every program the caller may see.
pub fn programs(asked: &[String], scope: &Scope) -> Option<Vec<String>> {
    let asked: Vec<String> = asked
        .iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    match (asked.is_empty(), scope.programs()) {
        (true, None) => None,
        (true, Some(allowed)) => Some(allowed.to_vec()),
        (false, _) => Some(asked.into_iter().filter(|p| scope.sees(p)).collect()),
    }
}

/// The figures and the backlog for `request` at `now`.
pub async fn answer(
    pool: &PgPool,
    zone: Tz,
    now: DateTime<Utc>,
    request: &GetKpisRequest,
    scope: &Scope,
) -> Result<GetKpisResponse, Status> {
    let range = range(request, day_of(zone, now), scope)?;
    let programs = range.programs.as_deref();
    let channels: Vec<String> = request
        .channels
        .iter()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect();
    let names: Vec<String> = request
        .figures
        .iter()
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty())
        .collect();
    let selection = store::Selection {
        programs,
        channels: Some(channels.as_slice()).filter(|c| !c.is_empty()),
        figures: Some(names.as_slice()).filter(|f| !f.is_empty()),
        from: range.from,
        to: range.to,
        sum_programs: request.sum_programs,
        sum_channels: request.sum_channels,
    };
    // Each on a connection of its own, at once: the answer waits for the
    // slowest, not for their sum.
    let (figures, backlog, open_work, (through, behind)) = tokio::try_join!(
        store::figures(pool, selection),
        store::backlog(pool, programs, now),
        store::open_work(pool, programs, now, DUE_SOON),
        store::position(pool, BEHIND_CAP),
    )?;
    Ok(GetKpisResponse {
        figures: figures
            .into_iter()
            .map(|f| KpiFigure {
                program_id: f.program_id,
                day: f.day.to_string(),
                channel: f.channel,
                figure: f.figure,
                value: f.value,
            })
            .collect(),
        backlog: backlog
            .into_iter()
            .map(|(program_id, channel, age, count)| BacklogBucket {
                program_id,
                channel,
                age,
                count: count.max(0) as u64,
            })
            .collect(),
        time_zone: zone.name().to_owned(),
        from_day: range.from.to_string(),
        to_day: range.to.to_string(),
        projected_through: through.map(timestamp),
        behind: behind.max(0) as u64,
        open_work: open_work
            .into_iter()
            .map(|(program_id, kind, open, overdue, due_soon)| OpenWork {
                program_id,
                kind,
                open: open.max(0) as u64,
                overdue: overdue.max(0) as u64,
                due_soon: due_soon.max(0) as u64,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(raw: &str) -> NaiveDate {
        NaiveDate::parse_from_str(raw, "%Y-%m-%d").unwrap_or_else(|e| panic!("{e}"))
    }

    fn ask(from: &str, to: &str, programs: &[&str]) -> GetKpisRequest {
        GetKpisRequest {
            program_ids: programs.iter().map(|p| (*p).to_owned()).collect(),
            from_day: from.into(),
            to_day: to.into(),
            ..GetKpisRequest::default()
        }
    }

    #[test]
    fn no_range_is_the_last_thirty_days() {
        let got = range(&ask("", "", &[]), day("2027-03-31"), &Scope::all());
        assert_eq!(
            got.ok(),
            Some(Range {
                from: day("2027-03-02"),
                to: day("2027-03-31"),
                programs: None,
            })
        );
    }

    #[test]
    fn days_count_back_from_the_last_day() {
        let request = GetKpisRequest {
            days: 1,
            ..GetKpisRequest::default()
        };
        let got = range(&request, day("2027-03-31"), &Scope::all()).map(|r| (r.from, r.to));
        assert_eq!(got.ok(), Some((day("2027-03-31"), day("2027-03-31"))));
    }

    #[test]
    fn a_bad_or_backwards_or_too_long_range_is_refused_by_field() {
        let today = day("2027-03-31");
        let message = |r: &GetKpisRequest| {
            range(r, today, &Scope::all())
                .err()
                .map(|s| s.message().to_owned())
        };
        assert_eq!(
            message(&ask("31/03/2027", "", &[])).as_deref(),
            Some("from_day: expected YYYY-MM-DD")
        );
        assert_eq!(
            message(&ask("2027-04-02", "2027-04-01", &[])).as_deref(),
            Some("from_day: after to_day")
        );
        assert!(message(&ask("2025-01-01", "2027-01-01", &[])).is_some());
    }

    #[test]
    fn a_scoped_caller_sees_only_its_programs() {
        let scope = Scope::from_programs(vec!["adherence".into()]);
        let today = day("2027-03-31");
        let all = range(&ask("", "", &[]), today, &scope).map(|r| r.programs);
        assert_eq!(all.ok(), Some(Some(vec!["adherence".to_owned()])));
        let other = range(&ask("", "", &["refill-reminder"]), today, &scope).map(|r| r.programs);
        assert_eq!(other.ok(), Some(Some(vec![])));
    }
}
