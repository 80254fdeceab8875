//! What `ListAdverseEvents` answers: the possible adverse events received in a
//! range of days (the site's), or every one still open, within the caller's
//! programs, each with its decision. A flag whose review task was completed
//! without a report or a decision is still open for pharmacovigilance.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use sqlx::{PgPool, Row as _};
use tonic::Status;
use touchpoint_platform::access::Scope;
use touchpoint_platform::envelope::timestamp;
use touchpoint_proto::v1::{AdverseEventFlag, ListAdverseEventsRequest, ListAdverseEventsResponse};

use super::query;
use crate::store::StoreError;

/// The longest range one call may ask for.
const MAX_DAYS: i64 = 400;
/// The most flags one answer holds.
const MAX_FLAGS: i64 = 10_000;

/// The flags `request` asks for.
pub async fn answer(
    pool: &PgPool,
    zone: Tz,
    request: &ListAdverseEventsRequest,
    scope: &Scope,
) -> Result<ListAdverseEventsResponse, Status> {
    let (from, to) = window(request, zone)?;
    let programs = query::programs(&request.program_ids, scope);
    let rows = sqlx::query(
        "SELECT case_id, program_id, key, inbound_id, received_at, due_at, decision,
             decided_at, decided_by, safety_reference, reason
         FROM ae_flags
         WHERE ($1::timestamptz IS NULL OR received_at >= $1)
           AND ($2::timestamptz IS NULL OR received_at < $2)
           AND (NOT $3 OR decision IS NULL OR decision = 'reviewed')
           AND ($4::text[] IS NULL OR program_id = ANY($4))
         ORDER BY received_at, case_id LIMIT $5",
    )
    .bind(from)
    .bind(to)
    .bind(request.open_only)
    .bind(programs)
    .bind(MAX_FLAGS)
    .fetch_all(pool)
    .await
    .map_err(StoreError::from)?;
    let flags = rows
        .iter()
        .map(flag)
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(StoreError::from)?;
    Ok(ListAdverseEventsResponse {
        flags,
        time_zone: zone.name().to_owned(),
    })
}

/// From and until (exclusive); `None`: open at that end.
type Window = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// The instants the request's days span in `zone`: from the start of its
/// first day to the start of the day after its last; open both ends for
/// "every open flag".
fn window(request: &ListAdverseEventsRequest, zone: Tz) -> Result<Window, Status> {
    let (from, to) = (
        query::day(&request.from_day, "from_day")?,
        query::day(&request.to_day, "to_day")?,
    );
    let (from, to) = match (from, to) {
        (None, None) if request.open_only => return Ok((None, None)),
        (Some(from), Some(to)) => (from, to),
        _ => {
            return Err(Status::invalid_argument(
                "from_day: give from_day and to_day, or neither with open_only",
            ));
        }
    };
    if from > to {
        return Err(Status::invalid_argument("from_day: after to_day"));
    }
    if (to - from).num_days() >= MAX_DAYS {
        return Err(Status::invalid_argument(format!(
            "from_day: at most {MAX_DAYS} days at a time"
        )));
    }
    let start = |day: NaiveDate| {
        day.and_hms_opt(0, 0, 0)
            .and_then(|midnight| midnight.and_local_timezone(zone).earliest())
            .map(|at| at.with_timezone(&Utc))
            .ok_or_else(|| Status::invalid_argument("from_day: not a day in the site's zone"))
    };
    Ok((Some(start(from)?), Some(start(to + TimeDelta::days(1))?)))
}

fn flag(row: &sqlx::postgres::PgRow) -> Result<AdverseEventFlag, sqlx::Error> {
    let at = |column: &str| -> Result<Option<touchpoint_proto::Timestamp>, sqlx::Error> {
        Ok(row
            .try_get::<Option<DateTime<Utc>>, _>(column)?
            .map(timestamp))
    };
    Ok(AdverseEventFlag {
        case_id: row.try_get("case_id")?,
        program_id: row.try_get("program_id")?,
        review_task_id: row.try_get("key")?,
        inbound_id: row.try_get("inbound_id")?,
        received_at: at("received_at")?,
        due_at: at("due_at")?,
        decision: row
            .try_get::<Option<String>, _>("decision")?
            .unwrap_or_default(),
        decided_at: at("decided_at")?,
        decided_by: row.try_get("decided_by")?,
        safety_reference: row.try_get("safety_reference")?,
        reason: row.try_get("reason")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_spans_its_days_in_the_sites_zone() {
        let request = ListAdverseEventsRequest {
            from_day: "2026-11-01".into(),
            to_day: "2026-11-30".into(),
            ..ListAdverseEventsRequest::default()
        };
        let (from, to) =
            window(&request, chrono_tz::America::New_York).unwrap_or_else(|e| panic!("{e}"));
        // Midnight in New York: 04:00 UTC in daylight time, 05:00 after it.
        assert_eq!(
            from.map(|t| t.to_rfc3339()),
            Some("2026-11-01T04:00:00+00:00".into())
        );
        assert_eq!(
            to.map(|t| t.to_rfc3339()),
            Some("2026-12-01T05:00:00+00:00".into())
        );
        let open = ListAdverseEventsRequest {
            open_only: true,
            ..ListAdverseEventsRequest::default()
        };
        assert_eq!(window(&open, Tz::UTC).ok(), Some((None, None)));
        let half = ListAdverseEventsRequest {
            from_day: "2026-11-01".into(),
            ..ListAdverseEventsRequest::default()
        };
        assert!(window(&half, Tz::UTC).is_err());
    }
}
