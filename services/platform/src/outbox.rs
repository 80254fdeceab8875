//! The transactional outbox.
//!
//! A service writes its state change and the events it causes in one PostgreSQL
//! transaction ([`append`]); the [`OutboxRelay`] publishes unsent rows to Kafka with
//! an idempotent producer and marks them sent. A crash between publish and mark
//! republishes the rows on restart: at-least-once on the wire, and consumers' inbox
//! makes it exactly once in effect.
//!
//! Ordering: rows are claimed in id order and a case's records share a key, so they
//! land in one partition in the order they were appended. Only one relay per schema
//! publishes at a time — it holds a session advisory lock and does all its claiming
//! on that session — so replicas cannot interleave one case's events out of order,
//! and a standby takes over within a poll interval when the leader's session ends.
//! Rows are read by `sent_at IS NULL`, never by `id > last_seen`, so a row whose
//! transaction commits late (ids are taken before commit) is still published.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use prost::Message as _;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use sqlx::postgres::{PgConnectOptions, PgListener};
use sqlx::{ConnectOptions as _, Connection as _, PgConnection, PgPool, Row as _};
use tokio_util::sync::CancellationToken;
use touchpoint_proto::v1::Envelope;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::config::{KafkaConfig, OutboxConfig, PlatformConfig};
use crate::db::{self, DbError};
use crate::envelope::event_type;
use crate::kafka;
use crate::trace_context::{TRACEPARENT, current_traceparent};

/// Kafka header naming the payload type, e.g. `touchpoint.v1.AttemptSent`.
pub const EVENT_TYPE_HEADER: &str = "event-type";
/// Kafka header with the record's event id.
pub const EVENT_ID_HEADER: &str = "event-id";
/// Kafka header with the value's content type.
pub const CONTENT_TYPE_HEADER: &str = "content-type";
/// The content type of every record value.
pub const CONTENT_TYPE: &str = "application/x-protobuf; messageType=touchpoint.v1.Envelope";

/// How often the relay purges sent rows.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// An event to publish to `topic`.
#[derive(Debug, Clone)]
pub struct OutgoingEvent {
    /// The full topic name (see [`crate::topics::Topics`]).
    pub topic: String,
    /// The event.
    pub envelope: Envelope,
    /// The W3C trace context to publish it under; `None` takes the current span's.
    pub traceparent: Option<String>,
}

impl OutgoingEvent {
    /// `envelope` for `topic`, under the trace of the span that appends it.
    pub fn new(topic: impl Into<String>, envelope: Envelope) -> Self {
        Self {
            topic: topic.into(),
            envelope,
            traceparent: None,
        }
    }

    /// The same event under the trace `traceparent` (e.g. one trace per attempt
    /// when a batch of attempts is appended at once).
    pub fn with_traceparent(mut self, traceparent: Option<String>) -> Self {
        self.traceparent = traceparent;
        self
    }
}

/// The outbox could not be written or relayed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// An envelope's `event_id` is not a UUID.
    #[error("event_id of an outgoing event is not a UUID")]
    EventId,
    /// An envelope has no `case_id` to key its record by.
    #[error("an outgoing event has no case_id")]
    CaseId,
    /// The database failed.
    #[error("outbox database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The producer could not be created.
    #[error("outbox producer error: {0}")]
    Kafka(#[from] KafkaError),
}

/// The `NOTIFY` channel the relay of `schema` listens on.
pub fn notify_channel(schema: &str) -> String {
    format!("touchpoint_outbox_{schema}")
}

/// The expression that wakes this schema's relay when the transaction commits.
pub const NOTIFY_RELAY: &str = "pg_notify('touchpoint_outbox_' || current_schema(), '')";

/// Events as the outbox's columns, one array each, in order: for
/// [`append`], and for a statement that appends its events itself along with
/// its other writes, in one round trip
/// (`INSERT INTO outbox (topic, record_key, event_id, event_type, payload,
/// traceparent) SELECT … FROM UNNEST(…) WITH ORDINALITY … ORDER BY n`, then
/// [`NOTIFY_RELAY`]).
#[derive(Debug, Default)]
pub struct OutboxColumns {
    /// `topic`.
    pub topics: Vec<String>,
    /// `record_key`: the case id.
    pub keys: Vec<String>,
    /// `event_id`.
    pub ids: Vec<Uuid>,
    /// `event_type`.
    pub types: Vec<String>,
    /// `payload`: the encoded envelope.
    pub payloads: Vec<Vec<u8>>,
    /// `traceparent`: the event's own trace context, else the current span's.
    pub traces: Vec<Option<String>>,
}

impl OutboxColumns {
    /// The columns of `events`; refuses an event without a case or a uuid id.
    pub fn of<'a>(
        events: impl IntoIterator<Item = &'a OutgoingEvent>,
    ) -> Result<Self, OutboxError> {
        let traceparent = current_traceparent();
        let mut columns = Self::default();
        for event in events {
            let id = Uuid::parse_str(&event.envelope.event_id).map_err(|_| OutboxError::EventId)?;
            if event.envelope.case_id.is_empty() {
                return Err(OutboxError::CaseId);
            }
            columns.topics.push(event.topic.clone());
            columns.keys.push(event.envelope.case_id.clone());
            columns.ids.push(id);
            columns.types.push(event_type(&event.envelope).to_owned());
            columns.payloads.push(event.envelope.encode_to_vec());
            columns
                .traces
                .push(event.traceparent.clone().or_else(|| traceparent.clone()));
        }
        Ok(columns)
    }
}

/// Appends `events` to the outbox inside the caller's transaction (a
/// `Transaction`, or the connection an inbox handler is given), in order.
///
/// Each event's trace context (its own, else the current span's) is stored with
/// it and travels in the Kafka headers. A `NOTIFY` wakes the relay when the
/// transaction commits; it is only a hint, the relay also polls.
pub async fn append(tx: &mut PgConnection, events: &[OutgoingEvent]) -> Result<(), OutboxError> {
    if events.is_empty() {
        return Ok(());
    }
    let columns = OutboxColumns::of(events)?;
    sqlx::query(
        "INSERT INTO outbox (topic, record_key, event_id, event_type, payload, traceparent)
         SELECT topic, record_key, event_id, event_type, payload, traceparent
         FROM UNNEST($1::text[], $2::text[], $3::uuid[], $4::text[], $5::bytea[], $6::text[])
              WITH ORDINALITY AS e(topic, record_key, event_id, event_type, payload, traceparent, n)
         ORDER BY n",
    )
    .bind(&columns.topics)
    .bind(&columns.keys)
    .bind(&columns.ids)
    .bind(&columns.types)
    .bind(&columns.payloads)
    .bind(&columns.traces)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!("SELECT {NOTIFY_RELAY}"))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// A test hook run after a batch is published and before it is marked sent.
pub type AfterPublishHook = Arc<dyn Fn(usize) + Send + Sync>;

/// Publishes unsent outbox rows of one schema to Kafka.
pub struct OutboxRelay {
    pool: PgPool,
    connect_options: PgConnectOptions,
    schema: String,
    kafka: KafkaConfig,
    config: OutboxConfig,
    after_publish: Option<AfterPublishHook>,
}

impl std::fmt::Debug for OutboxRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRelay")
            .field("schema", &self.schema)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

struct Row {
    id: i64,
    topic: String,
    key: String,
    event_id: Uuid,
    event_type: String,
    payload: Vec<u8>,
    traceparent: Option<String>,
}

/// Why a leadership term ended.
enum TermEnd {
    Shutdown,
    Lost(OutboxError),
}

impl OutboxRelay {
    /// A relay for the outbox in `schema`; `pool` must be confined to that schema,
    /// as [`crate::db::connect`] makes it.
    pub fn new(pool: PgPool, schema: &str, config: &PlatformConfig) -> Result<Self, DbError> {
        Ok(Self {
            pool,
            connect_options: db::connect_options(&config.database, schema)?,
            schema: schema.to_owned(),
            kafka: config.kafka.clone(),
            config: config.outbox.clone(),
            after_publish: None,
        })
    }

    /// Runs `hook` with the batch size after each publish, before marking sent.
    /// Fault tests use it to kill the process in that window.
    pub fn with_after_publish(mut self, hook: AfterPublishHook) -> Self {
        self.after_publish = Some(hook);
        self
    }

    /// Runs until `shutdown` is cancelled; the batch in flight is finished first.
    pub async fn run(self, shutdown: CancellationToken) {
        const FIRST_BACKOFF: Duration = Duration::from_millis(100);
        let mut backoff = FIRST_BACKOFF;
        while !shutdown.is_cancelled() {
            let term_started = tokio::time::Instant::now();
            match self.lead(&shutdown).await {
                Ok(TermEnd::Shutdown) => break,
                Ok(TermEnd::Lost(error)) | Err(error) => {
                    tracing::warn!(schema = %self.schema, %error, "outbox relay lost its session; retrying");
                }
            }
            if term_started.elapsed() > Duration::from_secs(30) {
                backoff = FIRST_BACKOFF; // A long healthy term: this is a fresh failure.
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        tracing::info!(schema = %self.schema, "outbox relay stopped");
    }

    /// Waits for leadership, then publishes until shutdown or the session is lost.
    async fn lead(&self, shutdown: &CancellationToken) -> Result<TermEnd, OutboxError> {
        let mut session = self.connect_options.connect().await?;
        loop {
            let leader: bool = sqlx::query_scalar(
                "SELECT pg_try_advisory_lock(hashtextextended('touchpoint.outbox.' || current_schema(), 0))",
            )
            .fetch_one(&mut session)
            .await?;
            if leader {
                break;
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(TermEnd::Shutdown),
                () = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
        tracing::info!(schema = %self.schema, "outbox relay is publishing");

        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(&notify_channel(&self.schema)).await?;
        let mut producer = self.producer()?;
        let mut last_purge = tokio::time::Instant::now();

        let end = loop {
            let round_began = tokio::time::Instant::now();
            let published = match self.publish_batch(&mut session, &mut producer).await {
                Ok(n) => n,
                Err(error) => break TermEnd::Lost(error),
            };
            if shutdown.is_cancelled() {
                break TermEnd::Shutdown;
            }
            // A retention shorter than the interval is purged as often as it
            // lasts; with none, rows kept under an earlier setting still go.
            let retention = self.config.sent_retention;
            let every = if retention.is_zero() {
                PURGE_EVERY
            } else {
                PURGE_EVERY.min(retention)
            };
            if last_purge.elapsed() >= every {
                last_purge = tokio::time::Instant::now();
                if let Err(error) = purge_sent(&mut session, self.config.sent_retention).await {
                    break TermEnd::Lost(error);
                }
            }
            if published == self.config.batch_size {
                continue; // More rows are likely waiting.
            }
            tokio::select! {
                () = shutdown.cancelled() => break TermEnd::Shutdown,
                notification = listener.recv() => {
                    if let Err(error) = notification {
                        // The hint channel failed (it reconnects on the next call);
                        // fall back to the poll so a broken channel cannot spin.
                        tracing::debug!(%error, "outbox listener interrupted");
                        tokio::time::sleep(self.config.poll_interval).await;
                    }
                    // Every commit notifies: those that arrived during the last
                    // round are all answered by the next one, not a round each.
                    while listener.next_buffered().is_some() {}
                }
                () = tokio::time::sleep(self.config.poll_interval) => {}
            }
            // Rounds start at least `linger` apart: a steady trickle of
            // commits goes out in at most 1/linger rounds a second (100 at
            // 10 ms), not one two-query round per commit, whose cost the
            // writers' latency felt. After an idle spell a commit goes out at once.
            let next_round = round_began + self.config.linger;
            if tokio::time::Instant::now() < next_round {
                tokio::select! {
                    () = shutdown.cancelled() => break TermEnd::Shutdown,
                    () = tokio::time::sleep_until(next_round) => {}
                }
                while listener.next_buffered().is_some() {}
            }
        };
        // Release leadership now rather than when the session times out.
        let _ = session.close().await;
        if let Err(error) = producer.flush(Duration::from_secs(5)) {
            tracing::warn!(%error, "outbox producer flush at stop failed");
        }
        Ok(end)
    }

    fn producer(&self) -> Result<FutureProducer, OutboxError> {
        Ok(kafka::idempotent_producer_config(&self.kafka).create()?)
    }

    /// Publishes one batch and marks what was delivered; returns the rows claimed.
    async fn publish_batch(
        &self,
        session: &mut PgConnection,
        producer: &mut FutureProducer,
    ) -> Result<usize, OutboxError> {
        let rows = claim(session, self.config.batch_size).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let span = tracing::debug_span!("outbox.publish", schema = %self.schema, rows = rows.len());
        let delivered = publish(producer, &rows).instrument(span).await;
        if let Some(hook) = &self.after_publish {
            hook(delivered);
        }
        // Mark only the delivered prefix: a failed row and everything after it is
        // published again next round, so no case's events overtake each other.
        let sent: Vec<i64> = rows.iter().take(delivered).map(|r| r.id).collect();
        if !sent.is_empty() {
            // Planned afresh each time (an unnamed statement): a plan cached
            // while the table was small scans all of it once it is not, and
            // did, costing a core at 2,000 events/s.
            // With no retention a published row is deleted at once: one small
            // WAL record instead of a whole new row version now and a delete
            // later.
            let statement = if self.config.sent_retention.is_zero() {
                "DELETE FROM outbox WHERE id = ANY($1)"
            } else {
                "UPDATE outbox SET sent_at = now() WHERE id = ANY($1)"
            };
            sqlx::query(statement)
                .persistent(false)
                .bind(&sent)
                .execute(&mut *session)
                .await?;
        }
        if delivered < rows.len() {
            tracing::warn!(
                schema = %self.schema,
                delivered,
                claimed = rows.len(),
                "outbox publish incomplete; the rest is retried"
            );
            if producer.client().fatal_error().is_some() {
                // An idempotent producer that hit a fatal error must be replaced.
                *producer = self.producer()?;
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
        Ok(rows.len())
    }
}

async fn claim(session: &mut PgConnection, limit: usize) -> Result<Vec<Row>, OutboxError> {
    let rows = sqlx::query(
        "SELECT id, topic, record_key, event_id, event_type, payload, traceparent
         FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1",
    )
    .bind(limit as i64)
    .fetch_all(&mut *session)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(Row {
                id: row.try_get("id")?,
                topic: row.try_get("topic")?,
                key: row.try_get("record_key")?,
                event_id: row.try_get("event_id")?,
                event_type: row.try_get("event_type")?,
                payload: row.try_get("payload")?,
                traceparent: row.try_get("traceparent")?,
            })
        })
        .collect()
}

/// Sends `rows` and waits for every delivery report; returns how many rows, from the
/// first, were all delivered.
async fn publish(producer: &FutureProducer, rows: &[Row]) -> usize {
    let mut deliveries = Vec::with_capacity(rows.len());
    for row in rows {
        let event_id = row.event_id.to_string();
        let mut headers = OwnedHeaders::new_with_capacity(4)
            .insert(Header {
                key: EVENT_ID_HEADER,
                value: Some(event_id.as_str()),
            })
            .insert(Header {
                key: EVENT_TYPE_HEADER,
                value: Some(row.event_type.as_str()),
            })
            .insert(Header {
                key: CONTENT_TYPE_HEADER,
                value: Some(CONTENT_TYPE),
            });
        if let Some(traceparent) = &row.traceparent {
            headers = headers.insert(Header {
                key: TRACEPARENT,
                value: Some(traceparent.as_str()),
            });
        }
        let mut record = FutureRecord::to(&row.topic)
            .key(&row.key)
            .payload(&row.payload)
            .headers(headers);
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    // The local queue is full: let librdkafka drain it, then retry.
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((error, _)) => {
                    tracing::warn!(%error, event_id = %row.event_id, "outbox record not accepted by producer");
                    return delivered_prefix(join_all(deliveries).await);
                }
            }
        }
    }
    delivered_prefix(join_all(deliveries).await)
}

fn delivered_prefix(
    results: Vec<Result<OwnedDeliveryResult, futures::channel::oneshot::Canceled>>,
) -> usize {
    let mut count = 0;
    for result in results {
        match result {
            Ok(Ok(_)) => count += 1,
            Ok(Err((error, _))) => {
                tracing::warn!(%error, "outbox record delivery failed");
                break;
            }
            Err(_) => {
                tracing::warn!("outbox delivery report lost");
                break;
            }
        }
    }
    count
}

/// Deletes rows sent longer than `retention` ago, in slices so publishing is
/// never held up for long; up to `PURGE_SLICES` slices a round keeps pace with a
/// relay far faster than this machine's measured rate.
async fn purge_sent(session: &mut PgConnection, retention: Duration) -> Result<(), OutboxError> {
    const PURGE_SLICE: u64 = 10_000;
    const PURGE_SLICES: usize = 200;
    let mut purged = 0;
    for _ in 0..PURGE_SLICES {
        let deleted = sqlx::query(&format!(
            "DELETE FROM outbox WHERE id IN (
                 SELECT id FROM outbox WHERE sent_at < now() - make_interval(secs => $1)
                 LIMIT {PURGE_SLICE})"
        ))
        .bind(retention.as_secs_f64())
        .execute(&mut *session)
        .await?
        .rows_affected();
        purged += deleted;
        if deleted < PURGE_SLICE {
            break;
        }
    }
    if purged > 0 {
        tracing::debug!(purged, "outbox purged sent rows");
    }
    Ok(())
}

/// How many outbox rows are not yet published (for health and benchmarks).
pub async fn unsent_count(pool: &PgPool) -> Result<i64, OutboxError> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            .fetch_one(pool)
            .await?,
    )
}
