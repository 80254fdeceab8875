//! Reading the case timeline: pages for `GetTimeline`, a case's own events by
//! version for `WatchCase`, and the whole timeline in a gap-free order for
//! `WatchEvents`.
//!
//! Gap-free: entries are read in (writer transaction id, position) order and only
//! those whose writer is older than every transaction still running. Every such
//! entry has committed, and any entry committed later has a larger writer id, so
//! a reader that resumes after its last cursor misses nothing and sees nothing twice.
//! A transaction left open holds the stream back until it ends.

use chrono::{DateTime, Utc};
use prost::Message as _;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row as _};
use touchpoint_platform::envelope::timestamp;
use touchpoint_proto::v1::{Envelope, TimelineEntry};

use crate::domain::FieldError;
use crate::store::StoreError;

/// Where a `WatchEvents` reader is: after this entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    writer_xid: i64,
    position: i64,
}

impl Cursor {
    /// Parses a cursor given by a client; empty is the start.
    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldError> {
        if raw.is_empty() {
            return Ok(Self::default());
        }
        let invalid = || FieldError::new(field, "not a cursor returned by this service");
        let (xid, position) = raw.split_once('.').ok_or_else(invalid)?;
        let cursor = Self {
            writer_xid: xid.parse().map_err(|_| invalid())?,
            position: position.parse().map_err(|_| invalid())?,
        };
        if cursor.writer_xid < 0 || cursor.position < 0 {
            return Err(invalid());
        }
        Ok(cursor)
    }

    /// The text form handed to clients.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.writer_xid, self.position)
    }
}

const COLUMNS: &str = "position, version, kind, envelope, recorded_at, writer_xid";

fn entry(row: &PgRow) -> Result<(TimelineEntry, Cursor), StoreError> {
    let position: i64 = row.try_get("position")?;
    let writer_xid: i64 = row.try_get("writer_xid")?;
    let envelope: Vec<u8> = row.try_get("envelope")?;
    let recorded_at: DateTime<Utc> = row.try_get("recorded_at")?;
    let cursor = Cursor {
        writer_xid,
        position,
    };
    Ok((
        TimelineEntry {
            position: position as u64,
            version: row.try_get::<Option<i64>, _>("version")?.unwrap_or(0) as u64,
            kind: row.try_get("kind")?,
            event: Some(Envelope::decode(envelope.as_slice()).map_err(|_| StoreError::Corrupt)?),
            recorded_at: Some(timestamp(recorded_at)),
            cursor: cursor.encode(),
        },
        cursor,
    ))
}

/// Up to `limit` entries of `case_id` after `after_position`, oldest first, of the
/// given kinds (all if empty).
pub async fn page(
    pool: &PgPool,
    case_id: &str,
    kinds: &[String],
    after_position: i64,
    limit: i64,
) -> Result<Vec<TimelineEntry>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM timeline
         WHERE case_id = $1 AND position > $2 AND (cardinality($3::text[]) = 0 OR kind = ANY($3))
         ORDER BY position LIMIT $4"
    ))
    .bind(case_id)
    .bind(after_position)
    .bind(kinds)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(|r| entry(r).map(|(e, _)| e)).collect()
}

/// Up to `limit` of the case's own events after `after_version`, by version.
pub async fn case_events_after(
    pool: &PgPool,
    case_id: &str,
    after_version: i64,
    limit: i64,
) -> Result<Vec<TimelineEntry>, StoreError> {
    // Versions commit in order (each command holds the case's row lock), so no
    // later commit can land below a version already read.
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM timeline
         WHERE case_id = $1 AND version > $2 ORDER BY version LIMIT $3"
    ))
    .bind(case_id)
    .bind(after_version)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(|r| entry(r).map(|(e, _)| e)).collect()
}

/// Up to `limit` entries of every case after `cursor`, in gap-free order.
pub async fn stream_after(
    pool: &PgPool,
    cursor: Cursor,
    limit: i64,
) -> Result<Vec<(TimelineEntry, Cursor)>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM timeline
         WHERE (writer_xid, position) > ($1, $2)
           AND writer_xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
         ORDER BY writer_xid, position LIMIT $3"
    ))
    .bind(cursor.writer_xid)
    .bind(cursor.position)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(entry).collect()
}

/// Whether the case exists.
pub async fn case_exists(pool: &PgPool, case_id: &str) -> Result<bool, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM cases WHERE case_id = $1)")
            .bind(case_id)
            .fetch_one(pool)
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() -> Result<(), FieldError> {
        let cursor = Cursor {
            writer_xid: 7421,
            position: 99,
        };
        assert_eq!(Cursor::parse(&cursor.encode(), "c")?, cursor);
        assert_eq!(Cursor::parse("", "c")?, Cursor::default());
        for bad in ["7421", "a.b", "-1.5", "1.2.3", "99999999999999999999.1"] {
            assert!(Cursor::parse(bad, "after_cursor").is_err(), "{bad:?}");
        }
        Ok(())
    }
}
