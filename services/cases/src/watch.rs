//! The `WatchCase` and `WatchEvents` streams: what is stored after the caller's
//! starting point, then each new entry as it is recorded (polled), until the
//! caller hangs up or the service shuts down.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use touchpoint_proto::v1::TimelineEntry;

use crate::store::StoreError;
use crate::timeline::{self, Cursor};

/// Entries read per query.
const BATCH: i64 = 500;

/// A stream of timeline entries as tonic serves it.
pub type EntryStream = Pin<Box<dyn Stream<Item = Result<TimelineEntry, Status>> + Send>>;

/// Where a stream reads its next entries from, remembering how far it got.
pub trait Source: Send + 'static {
    /// The next entries after the last ones returned (empty: nothing new yet).
    fn next_batch(&mut self)
    -> impl Future<Output = Result<Vec<TimelineEntry>, StoreError>> + Send;
}

/// A case's own events, by version.
#[derive(Debug)]
pub struct CaseEvents {
    /// The pool.
    pub pool: PgPool,
    /// The case.
    pub case_id: String,
    /// The last version delivered.
    pub after_version: i64,
}

impl Source for CaseEvents {
    async fn next_batch(&mut self) -> Result<Vec<TimelineEntry>, StoreError> {
        let entries =
            timeline::case_events_after(&self.pool, &self.case_id, self.after_version, BATCH)
                .await?;
        if let Some(last) = entries.last() {
            self.after_version = last.version as i64;
        }
        Ok(entries)
    }
}

/// Every case's timeline, in gap-free order.
#[derive(Debug)]
pub struct AllEvents {
    /// The pool.
    pub pool: PgPool,
    /// The last entry delivered.
    pub cursor: Cursor,
}

impl Source for AllEvents {
    async fn next_batch(&mut self) -> Result<Vec<TimelineEntry>, StoreError> {
        let rows = timeline::stream_after(&self.pool, self.cursor, BATCH).await?;
        if let Some((_, last)) = rows.last() {
            self.cursor = *last;
        }
        Ok(rows.into_iter().map(|(entry, _)| entry).collect())
    }
}

struct State<S> {
    source: S,
    buffer: VecDeque<TimelineEntry>,
    shutdown: CancellationToken,
    poll: Duration,
    failed: bool,
}

/// Streams `source` until the caller hangs up or `shutdown`, polling every `poll`
/// when caught up.
pub fn stream<S: Source>(source: S, shutdown: CancellationToken, poll: Duration) -> EntryStream {
    let state = State {
        source,
        buffer: VecDeque::new(),
        shutdown,
        poll,
        failed: false,
    };
    Box::pin(futures::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(entry) = state.buffer.pop_front() {
                return Some((Ok(entry), state));
            }
            if state.failed || state.shutdown.is_cancelled() {
                return None;
            }
            match state.source.next_batch().await {
                Ok(entries) if !entries.is_empty() => state.buffer.extend(entries),
                Ok(_) => {
                    tokio::select! {
                        () = state.shutdown.cancelled() => return None,
                        () = tokio::time::sleep(state.poll) => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "timeline stream failed");
                    state.failed = true;
                    let status =
                        Status::unavailable("timeline unavailable; resume from the last cursor");
                    return Some((Err(status), state));
                }
            }
        }
    }))
}
