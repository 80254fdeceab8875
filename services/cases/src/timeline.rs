//! Reading the case timeline: pages for `GetTimeline`, a case's own events by
//! version for `WatchCase`, and the whole timeline in a gap-free order for
//! `WatchEvents`.
//!
//! `GetTimeline` reads a case in the order things happened, not the order they
//! were recorded: the timeline consumer reads the outreach, attempt and inbound
//! topics side by side, and under load an attempt can be recorded before the
//! request it answers. Entries are ordered by their event time; at one instant
//! an event comes after the one that caused it, then in recording order. A page
//! ends where an instant ends, so its token (that instant) resumes exactly.
//!
//! Gap-free: entries are read in (writer transaction id, position) order and only
//! those whose writer is older than every transaction still running. Every such
//! entry has committed, and any entry committed later has a larger writer id, so
//! a reader that resumes after its last cursor misses nothing and sees nothing twice.
//! A transaction left open holds the stream back until it ends.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

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
    /// The cursor after the entry at `position` written by `writer_xid`.
    pub fn new(writer_xid: i64, position: i64) -> Self {
        Self {
            writer_xid,
            position,
        }
    }

    /// The writer's transaction id and the position, as stored.
    pub fn parts(self) -> (i64, i64) {
        (self.writer_xid, self.position)
    }

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

/// Where a `GetTimeline` page ends: every entry up to and at this instant has
/// been given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageToken(DateTime<Utc>);

impl PageToken {
    /// Parses a token given by a client; empty is the start.
    pub fn parse(raw: &str, field: &str) -> Result<Option<Self>, FieldError> {
        if raw.is_empty() {
            return Ok(None);
        }
        raw.parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_micros)
            .map(|at| Some(Self(at)))
            .ok_or_else(|| FieldError::new(field, "not a token returned by this service"))
    }

    /// The text form handed to clients.
    pub fn encode(&self) -> String {
        self.0.timestamp_micros().to_string()
    }
}

/// Every event of `case_id` of the given kinds (full names), in the order they
/// were recorded: for a case's few events of a rare kind.
pub async fn events_of(
    pool: &PgPool,
    case_id: &str,
    kinds: &[&str],
) -> Result<Vec<Envelope>, StoreError> {
    let rows: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT envelope FROM timeline WHERE case_id = $1 AND kind = ANY($2) ORDER BY position",
    )
    .bind(case_id)
    .bind(kinds)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|bytes| Envelope::decode(bytes.as_slice()).map_err(|_| StoreError::Corrupt))
        .collect()
}

/// About `page_size` entries of `case_id` after `after`, in the order they
/// happened, of the given kinds (all if empty), and the token of the next page
/// when there may be more. A page runs to the end of its last instant, so it
/// may hold more than `page_size`.
pub async fn page(
    pool: &PgPool,
    case_id: &str,
    kinds: &[String],
    after: Option<PageToken>,
    page_size: usize,
) -> Result<(Vec<TimelineEntry>, Option<PageToken>), StoreError> {
    let after = after.map(|t| t.0);
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS}, occurred_at FROM timeline
         WHERE case_id = $1 AND ($2::timestamptz IS NULL OR occurred_at > $2)
           AND (cardinality($3::text[]) = 0 OR kind = ANY($3))
         ORDER BY occurred_at, position LIMIT $4"
    ))
    .bind(case_id)
    .bind(after)
    .bind(kinds)
    .bind(page_size as i64 + 1)
    .fetch_all(pool)
    .await?;
    let mut entries = rows
        .iter()
        .map(|r| Ok((r.try_get("occurred_at")?, entry(r)?.0)))
        .collect::<Result<Vec<(DateTime<Utc>, TimelineEntry)>, StoreError>>()?;
    if entries.len() <= page_size {
        return Ok((causes_first(entries), None));
    }
    // Cut at the page size, then complete the last instant.
    entries.truncate(page_size);
    let Some(last) = entries.last().map(|(at, _)| *at) else {
        return Ok((Vec::new(), None));
    };
    entries.retain(|(at, _)| *at < last);
    let rest = sqlx::query(&format!(
        "SELECT {COLUMNS}, occurred_at FROM timeline
         WHERE case_id = $1 AND occurred_at = $2
           AND (cardinality($3::text[]) = 0 OR kind = ANY($3))
         ORDER BY position"
    ))
    .bind(case_id)
    .bind(last)
    .bind(kinds)
    .fetch_all(pool)
    .await?;
    for row in &rest {
        entries.push((row.try_get("occurred_at")?, entry(row)?.0));
    }
    Ok((causes_first(entries), Some(PageToken(last))))
}

/// `entries`, in (event time, recording) order, with each instant's entries
/// put so that an event comes after the one that caused it, and otherwise as
/// recorded.
pub fn causes_first(entries: Vec<(DateTime<Utc>, TimelineEntry)>) -> Vec<TimelineEntry> {
    let mut ordered = Vec::with_capacity(entries.len());
    let mut rest = entries.into_iter().peekable();
    while let Some((at, first)) = rest.next() {
        let mut instant = vec![first];
        while let Some((_, entry)) = rest.next_if(|(next, _)| *next == at) {
            instant.push(entry);
        }
        for index in instant_order(&instant) {
            ordered.push(std::mem::take(&mut instant[index]));
        }
    }
    ordered
}

/// The order of one instant's entries: each time, the earliest recorded whose
/// cause is not still waiting among them (with a cycle, the earliest left).
/// Linear in the entries but for the heap: a bulk load puts a thousand
/// entries at one instant.
fn instant_order(instant: &[TimelineEntry]) -> Vec<usize> {
    fn id(e: &TimelineEntry) -> &str {
        e.event.as_ref().map_or("", |ev| ev.event_id.as_str())
    }
    let by_id: HashMap<&str, usize> = instant
        .iter()
        .enumerate()
        .filter(|(_, e)| !id(e).is_empty())
        .map(|(i, e)| (id(e), i))
        .collect();
    // Each entry's cause among them, and what each causes.
    let mut causes: Vec<Option<usize>> = Vec::with_capacity(instant.len());
    let mut caused: Vec<Vec<usize>> = vec![Vec::new(); instant.len()];
    for (i, entry) in instant.iter().enumerate() {
        let cause = entry
            .event
            .as_ref()
            .and_then(|ev| by_id.get(ev.causation_id.as_str()).copied());
        if let Some(c) = cause {
            caused[c].push(i);
        }
        causes.push(cause);
    }
    let mut ready: BinaryHeap<Reverse<usize>> = causes
        .iter()
        .enumerate()
        .filter(|(_, c)| c.is_none())
        .map(|(i, _)| Reverse(i))
        .collect();
    let mut done = vec![false; instant.len()];
    let mut order = Vec::with_capacity(instant.len());
    while order.len() < instant.len() {
        let next = match ready.pop() {
            Some(Reverse(i)) => i,
            // A cycle: the earliest left goes first.
            None => match done.iter().position(|d| !d) {
                Some(i) => i,
                None => break,
            },
        };
        if done[next] {
            continue;
        }
        done[next] = true;
        order.push(next);
        ready.extend(
            caused[next]
                .iter()
                .filter(|c| !done[**c])
                .map(|c| Reverse(*c)),
        );
    }
    order
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
pub async fn stream_after<'e>(
    db: impl sqlx::PgExecutor<'e>,
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
    .fetch_all(db)
    .await?;
    rows.iter().map(entry).collect()
}

/// The cursor after the last entry a stream could deliver now.
pub async fn latest_cursor(pool: &PgPool) -> Result<Cursor, StoreError> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT writer_xid, position FROM timeline
         WHERE writer_xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
         ORDER BY writer_xid DESC, position DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    Ok(
        row.map_or_else(Cursor::default, |(writer_xid, position)| Cursor {
            writer_xid,
            position,
        }),
    )
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
    use touchpoint_platform::envelope::new_envelope;
    use touchpoint_proto::v1::envelope::Payload;
    use touchpoint_proto::v1::{AttemptSent, OutreachRequested};

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

    fn at(second: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + second, 0).unwrap_or_default()
    }

    fn recorded(position: u64, event: Envelope) -> TimelineEntry {
        TimelineEntry {
            position,
            event: Some(event),
            ..TimelineEntry::default()
        }
    }

    #[test]
    fn at_one_instant_an_event_follows_its_cause_whatever_the_recording_order() {
        let request = new_envelope(
            "c",
            "cadence",
            at(0),
            Payload::OutreachRequested(OutreachRequested::default()),
            None,
        );
        let sent = new_envelope(
            "c",
            "dispatch",
            at(0),
            Payload::AttemptSent(AttemptSent::default()),
            Some(&request),
        );
        let unrelated = new_envelope(
            "c",
            "cases",
            at(0),
            Payload::AttemptSent(AttemptSent::default()),
            None,
        );
        let later = new_envelope(
            "c",
            "cases",
            at(5),
            Payload::AttemptSent(AttemptSent::default()),
            None,
        );
        // Recorded: the attempt, something unrelated, the request, a later one.
        let entries = vec![
            (at(0), recorded(1, sent.clone())),
            (at(0), recorded(2, unrelated.clone())),
            (at(0), recorded(3, request.clone())),
            (at(5), recorded(4, later)),
        ];
        let positions: Vec<u64> = causes_first(entries).iter().map(|e| e.position).collect();
        assert_eq!(positions, vec![2, 3, 1, 4]);
    }

    #[test]
    fn a_chain_recorded_backwards_comes_out_cause_first_and_a_cycle_still_comes_out() {
        let first = new_envelope(
            "c",
            "cadence",
            at(0),
            Payload::AttemptSent(AttemptSent::default()),
            None,
        );
        let second = new_envelope(
            "c",
            "dispatch",
            at(0),
            Payload::AttemptSent(AttemptSent::default()),
            Some(&first),
        );
        let third = new_envelope(
            "c",
            "routing",
            at(0),
            Payload::AttemptSent(AttemptSent::default()),
            Some(&second),
        );
        let entries = vec![
            (at(0), recorded(1, third.clone())),
            (at(0), recorded(2, second.clone())),
            (at(0), recorded(3, first.clone())),
        ];
        let positions: Vec<u64> = causes_first(entries).iter().map(|e| e.position).collect();
        assert_eq!(positions, vec![3, 2, 1]);
        // Two events naming each other: both come out, the earliest first.
        let mut a = first;
        let mut b = second;
        a.causation_id = b.event_id.clone();
        b.causation_id = a.event_id.clone();
        let entries = vec![(at(0), recorded(1, a)), (at(0), recorded(2, b))];
        let positions: Vec<u64> = causes_first(entries).iter().map(|e| e.position).collect();
        assert_eq!(positions, vec![1, 2]);
    }

    #[test]
    fn a_page_token_reads_back_and_a_foreign_one_is_refused() {
        let token = PageToken(at(7));
        assert_eq!(PageToken::parse(&token.encode(), "t"), Ok(Some(token)));
        assert_eq!(PageToken::parse("", "t"), Ok(None));
        assert!(PageToken::parse("next", "t").is_err());
    }
}
