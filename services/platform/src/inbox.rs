//! The inbox consumer loop: Kafka records applied to PostgreSQL exactly once.
//!
//! Records arrive in batches (whatever is ready, up to the configured size). An
//! undecodable record goes to the DLQ at once. The rest are applied in one
//! transaction that also records each `event_id` in `inbox`; a repeated id is
//! skipped. Only after the transaction commits are the offsets stored, so a crash
//! anywhere replays records whose effect is then skipped.
//!
//! Fast path: one statement claims every event id of the batch and the handler
//! applies the new events together. If the handler fails, that transaction is
//! rolled back and the batch is applied one event at a time, each under a savepoint
//! with bounded retries; an event that still fails goes to the DLQ with the reason,
//! and the others are applied.
//!
//! A record's key is its case id, so one case's records share a partition and are
//! applied in order.
//!
//! Each consumer purges its own inbox rows older than the retention
//! (`TOUCHPOINT_INBOX_RETENTION_DAYS`, longer than the topics keep records)
//! between batches, at most hourly, so the table holds what a redelivery could
//! still bring and no more.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use futures::StreamExt as _;
use rdkafka::consumer::{CommitMode, Consumer as _, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message as _, OwnedMessage};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};
use sqlx::{Acquire as _, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use touchpoint_proto::v1::Envelope;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::config::{ConsumerConfig, KafkaConfig, PlatformConfig};
use crate::dlq::{DeadLetters, header};
use crate::envelope::decode;
use crate::kafka;
use crate::metrics::{self, ConsumerLag};
use crate::trace_context::{TRACEPARENT, continue_trace};

/// How often a consumer purges its inbox of rows older than the retention (or
/// as often as the retention lasts, when it is shorter).
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Rows deleted per statement of a purge, so applying is never held up long.
const PURGE_SLICE: u64 = 10_000;

/// Statements per purge: a million rows, the rest at the next turn, so a first
/// purge of a long-kept table does not stop applying for long.
const PURGE_SLICES: usize = 100;

/// Deletes up to a million of `consumer`'s inbox rows processed longer than
/// `retention` ago; returns how many. A record whose row is gone would be
/// applied again if it came back, so the retention must outlast the topics'
/// own.
pub async fn purge(pool: &PgPool, consumer: &str, retention: Duration) -> Result<u64, sqlx::Error> {
    let mut purged = 0;
    for _ in 0..PURGE_SLICES {
        let deleted = sqlx::query(&format!(
            "DELETE FROM inbox WHERE ctid IN (
                 SELECT ctid FROM inbox
                 WHERE consumer = $1 AND processed_at < now() - make_interval(secs => $2)
                 LIMIT {PURGE_SLICE})"
        ))
        .bind(consumer)
        .bind(retention.as_secs_f64())
        .execute(pool)
        .await?
        .rows_affected();
        purged += deleted;
        if deleted < PURGE_SLICE {
            break;
        }
    }
    Ok(purged)
}

/// `session.timeout.ms` for a static member (`TOUCHPOINT_CONSUMER_INSTANCE_ID`).
const STATIC_SESSION_TIMEOUT_MS: &str = "45000";

/// A record decoded into an envelope, with where it came from.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The event.
    pub envelope: Envelope,
    /// The event id, parsed.
    pub event_id: Uuid,
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// The W3C trace context the record carried.
    pub traceparent: Option<String>,
    /// For a record that carries a trace: open from its arrival until the last
    /// copy of the delivery is dropped, after its transaction, so the event
    /// shows in its trace whether it is applied in a batch or alone. A record
    /// without one costs no span unless a handler asks for it.
    span: Option<tracing::Span>,
}

impl Delivery {
    /// The span of applying this event, continuing the trace it arrived with.
    /// Events the handler appends inside it carry the same trace onward.
    pub fn span(&self) -> tracing::Span {
        self.span.clone().unwrap_or_else(|| self.new_span())
    }

    fn new_span(&self) -> tracing::Span {
        let span = tracing::info_span!(
            "inbox.apply",
            topic = %self.topic,
            partition = self.partition,
            offset = self.offset,
            event_id = %self.event_id,
            case_id = %self.envelope.case_id,
        );
        continue_trace(&span, self.traceparent.as_deref());
        span
    }
}

/// Decodes a record, or says why it cannot be (the DLQ reason).
fn to_delivery(record: &OwnedMessage) -> Result<Delivery, String> {
    let (envelope, event_id) =
        decode(record.payload()).map_err(|error| format!("undecodable: {error}"))?;
    let mut delivery = Delivery {
        envelope,
        event_id,
        topic: record.topic().to_owned(),
        partition: record.partition(),
        offset: record.offset(),
        traceparent: header(record, TRACEPARENT).map(str::to_owned),
        span: None,
    };
    if delivery.traceparent.is_some() {
        delivery.span = Some(delivery.new_span());
    }
    Ok(delivery)
}

/// A handler could not apply an event. The message must not contain patient data:
/// it becomes the DLQ reason.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Retrying will not help (e.g. the event contradicts the state); goes to the DLQ.
    #[error("{0}")]
    Permanent(String),
    /// May succeed on a later try (e.g. a serialization conflict).
    #[error("{0}")]
    Transient(String),
    /// A database error inside the handler.
    #[error("database error in handler: {0}")]
    Database(#[from] sqlx::Error),
}

/// Applies events inside the consumer's transaction.
pub trait Handler: Send + Sync + 'static {
    /// Applies `delivery` using `tx`; what it writes commits with the inbox row.
    fn handle<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        delivery: &'a Delivery,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a;

    /// Applies `deliveries` (new events, in record order) using `tx`.
    ///
    /// The default applies them one by one; override it to batch SQL. On `Err` the
    /// transaction is rolled back and the batch is applied again one event at a
    /// time through [`Handler::handle`], so a failure is pinned to its event.
    fn handle_batch<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        deliveries: &'a [Delivery],
    ) -> impl Future<Output = Result<(), HandlerError>> + Send + 'a {
        async move {
            for delivery in deliveries {
                self.handle(tx, delivery)
                    .instrument(delivery.span())
                    .await?;
            }
            Ok(())
        }
    }
}

/// The consumer loop could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// The Kafka client could not be created or subscribed.
    #[error("consumer could not start: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The broker will not let it read what it subscribed to, which waiting
    /// does not mend: the service stops rather than sit idle while healthy.
    #[error("consumer cannot read its topics: {0}")]
    Refused(rdkafka::error::KafkaError),
}

/// What became of one record in a batch.
enum Outcome {
    Applied,
    Duplicate,
    DeadLetter(String),
}

/// A Kafka consumer group that applies events through a [`Handler`].
pub struct InboxConsumer<H> {
    name: String,
    topics: Vec<String>,
    pool: PgPool,
    handler: H,
    kafka: KafkaConfig,
    config: ConsumerConfig,
}

impl<H> std::fmt::Debug for InboxConsumer<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxConsumer")
            .field("name", &self.name)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl<H: Handler> InboxConsumer<H> {
    /// A consumer named `name` (its group id and inbox key) reading `topics` and
    /// applying them through `handler` to `pool`.
    pub fn new(
        name: &str,
        topics: Vec<String>,
        pool: PgPool,
        handler: H,
        config: &PlatformConfig,
    ) -> Self {
        Self {
            name: name.to_owned(),
            topics,
            pool,
            handler,
            kafka: config.kafka.clone(),
            config: config.consumer.clone(),
        }
    }

    /// Runs until `shutdown` is cancelled; the batch in hand is finished first and
    /// its offsets committed.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        let mut client = kafka::consumer_config(&self.kafka, &self.name);
        if let Some(instance) = &self.config.instance_id {
            // Static membership: a restarted replica takes its old place (and its
            // partitions) at once. Brokers whose coordinator mishandles a member
            // that died mid-group (Tansu 0.6.0 can leave the newcomer with no
            // partitions) need it; Kafka merely skips a rebalance.
            client.set("group.instance.id", format!("{}-{instance}", self.name));
            // A static member is expected back under its name, so it keeps its
            // place for Kafka's default 45 s rather than 10 s. Tansu 0.6.0 needs
            // that too: once a member's session lapses, a restart under its name
            // joins as a stranger while the group still waits on the lapsed
            // member to lead, and the group never forms again.
            client.set("session.timeout.ms", STATIC_SESSION_TIMEOUT_MS);
        }
        // librdkafka's statistics carry each partition's lag.
        client.set("statistics.interval.ms", STATISTICS_EVERY_MS);
        let lag = ConsumerLag::default();
        let _lag_gauge = lag.gauge(&self.name);
        let consumer: StreamConsumer<LagContext> =
            client.create_with_context(LagContext { lag })?;
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        let dead_letters = DeadLetters::new(&self.kafka, &self.name)?;
        tracing::info!(consumer = %self.name, "inbox consumer started");

        let mut batches = consumer.stream().ready_chunks(self.config.batch_size);
        let every = PURGE_EVERY.min(self.config.inbox_retention);
        let mut purge_due = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        purge_due.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let batch = tokio::select! {
                () = shutdown.cancelled() => break,
                _ = purge_due.tick() => {
                    self.purge().await;
                    continue;
                }
                batch = batches.next() => batch,
            };
            let Some(batch) = batch else { break };
            let mut records = Vec::with_capacity(batch.len());
            for message in batch {
                match message {
                    Ok(message) => records.push(message.detach()),
                    Err(error) if refused(&error, self.kafka.create_topics) => {
                        return Err(ConsumerError::Refused(error));
                    }
                    Err(error) => {
                        tracing::warn!(consumer = %self.name, %error, "kafka consume error")
                    }
                }
            }
            if records.is_empty() {
                continue;
            }
            if !self.apply_batch(&records, &dead_letters, &shutdown).await {
                break; // Shut down mid-retry: nothing stored, the records come again.
            }
            store_offsets(&consumer, &records);
        }
        drop(batches);
        if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
            // NoOffset just means nothing new was stored since the last commit.
            tracing::debug!(consumer = %self.name, %error, "final offset commit");
        }
        tracing::info!(consumer = %self.name, "inbox consumer stopped");
        Ok(())
    }

    /// Purges this consumer's inbox rows older than the retention; a failure is
    /// logged and tried again at the next turn.
    async fn purge(&self) {
        match purge(&self.pool, &self.name, self.config.inbox_retention).await {
            Ok(0) => {}
            Ok(purged) => tracing::debug!(consumer = %self.name, purged, "inbox purged"),
            Err(error) => tracing::warn!(consumer = %self.name, %error, "inbox purge failed"),
        }
    }

    /// Applies `records` and dead-letters what cannot be applied. Retries the whole
    /// batch while the database is unavailable; returns false if shut down first.
    async fn apply_batch(
        &self,
        records: &[OwnedMessage],
        dead_letters: &DeadLetters,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut backoff = self.config.retry_backoff;
        loop {
            match self.try_apply_batch(records).await {
                Ok(outcomes) => {
                    for (record, outcome) in records.iter().zip(outcomes) {
                        if let Outcome::DeadLetter(reason) = outcome
                            && !self
                                .dead_letter(dead_letters, record, &reason, shutdown)
                                .await
                        {
                            return false;
                        }
                    }
                    return true;
                }
                Err(error) => {
                    tracing::warn!(consumer = %self.name, %error, records = records.len(), "batch not applied; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return false,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// One transaction over the batch. An `Err` means the transaction itself failed
    /// (nothing was applied); handler failures are outcomes.
    async fn try_apply_batch(&self, records: &[OwnedMessage]) -> Result<Vec<Outcome>, sqlx::Error> {
        let decoded: Vec<Result<Delivery, String>> = records.iter().map(to_delivery).collect();
        if let Some(outcomes) = self.apply_together(&decoded).await? {
            return Ok(outcomes);
        }
        self.apply_one_by_one(decoded).await
    }

    /// The fast path: every event id claimed in one statement, every new event
    /// applied by one `handle_batch`. `None` if the handler failed: nothing was
    /// committed and the batch must go one by one.
    async fn apply_together(
        &self,
        decoded: &[Result<Delivery, String>],
    ) -> Result<Option<Vec<Outcome>>, sqlx::Error> {
        let deliveries: Vec<&Delivery> = decoded.iter().filter_map(|d| d.as_ref().ok()).collect();
        let mut tx = self.pool.begin().await?;
        let fresh_ids: HashSet<Uuid> = if deliveries.is_empty() {
            HashSet::new()
        } else {
            sqlx::query_scalar(
                "INSERT INTO inbox (consumer, event_id, topic, kafka_partition, kafka_offset)
                 SELECT $1, event_id, topic, kafka_partition, kafka_offset
                 FROM UNNEST($2::uuid[], $3::text[], $4::int[], $5::bigint[])
                      AS r(event_id, topic, kafka_partition, kafka_offset)
                 ON CONFLICT DO NOTHING
                 RETURNING event_id",
            )
            .bind(&self.name)
            .bind(deliveries.iter().map(|d| d.event_id).collect::<Vec<_>>())
            .bind(
                deliveries
                    .iter()
                    .map(|d| d.topic.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(deliveries.iter().map(|d| d.partition).collect::<Vec<_>>())
            .bind(deliveries.iter().map(|d| d.offset).collect::<Vec<_>>())
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect()
        };
        // A record is new if its id was claimed just now and it is the first copy of
        // that id in the batch.
        let mut claimed = HashSet::new();
        let mut outcomes = Vec::with_capacity(decoded.len());
        let mut fresh = Vec::with_capacity(deliveries.len());
        for item in decoded {
            match item {
                Err(reason) => outcomes.push(Outcome::DeadLetter(reason.clone())),
                Ok(d) if fresh_ids.contains(&d.event_id) && claimed.insert(d.event_id) => {
                    fresh.push(d.clone());
                    outcomes.push(Outcome::Applied);
                }
                Ok(_) => outcomes.push(Outcome::Duplicate),
            }
        }
        let span =
            tracing::debug_span!("inbox.apply_batch", consumer = %self.name, events = fresh.len());
        match self
            .handler
            .handle_batch(&mut tx, &fresh)
            .instrument(span)
            .await
        {
            Ok(()) => {
                tx.commit().await?;
                Ok(Some(outcomes))
            }
            Err(error) => {
                tracing::debug!(consumer = %self.name, %error, "batch failed; applying one by one");
                tx.rollback().await?;
                Ok(None)
            }
        }
    }

    /// The careful path: each event under its own savepoint, with bounded retries.
    async fn apply_one_by_one(
        &self,
        decoded: Vec<Result<Delivery, String>>,
    ) -> Result<Vec<Outcome>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let mut outcomes = Vec::with_capacity(decoded.len());
        for item in decoded {
            let delivery = match item {
                Ok(delivery) => delivery,
                Err(reason) => {
                    outcomes.push(Outcome::DeadLetter(reason));
                    continue;
                }
            };
            let outcome = self
                .apply_one(&mut tx, &delivery)
                .instrument(delivery.span())
                .await?;
            outcomes.push(outcome);
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    /// Applies one event under a savepoint, with bounded retries.
    async fn apply_one(
        &self,
        tx: &mut PgConnection,
        delivery: &Delivery,
    ) -> Result<Outcome, sqlx::Error> {
        let mut attempt = 0;
        let mut backoff = self.config.retry_backoff;
        loop {
            attempt += 1;
            let mut savepoint = tx.begin().await?;
            let fresh = sqlx::query(
                "INSERT INTO inbox (consumer, event_id, topic, kafka_partition, kafka_offset)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(&self.name)
            .bind(delivery.event_id)
            .bind(&delivery.topic)
            .bind(delivery.partition)
            .bind(delivery.offset)
            .execute(&mut *savepoint)
            .await?
            .rows_affected()
                == 1;
            if !fresh {
                savepoint.commit().await?;
                tracing::debug!("duplicate event skipped");
                return Ok(Outcome::Duplicate);
            }
            match self.handler.handle(&mut savepoint, delivery).await {
                Ok(()) => {
                    savepoint.commit().await?;
                    return Ok(Outcome::Applied);
                }
                Err(error) => {
                    // Rolling back also removes the inbox row, so a replay from the
                    // DLQ is not mistaken for a duplicate.
                    savepoint.rollback().await?;
                    let permanent = matches!(error, HandlerError::Permanent(_));
                    tracing::warn!(%error, attempt, permanent, "handler failed");
                    if permanent || attempt >= self.config.max_attempts {
                        return Ok(Outcome::DeadLetter(format!(
                            "handler failed after {attempt} attempt(s): {error}"
                        )));
                    }
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
    }

    /// Sends to the DLQ, retrying until the broker has it; false if shut down first.
    /// A record is never skipped without landing somewhere.
    async fn dead_letter(
        &self,
        dead_letters: &DeadLetters,
        record: &OwnedMessage,
        reason: &str,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut backoff = self.config.retry_backoff;
        loop {
            match dead_letters.send(record, reason).await {
                Ok(()) => {
                    metrics::dead_lettered(&self.name, record.topic());
                    tracing::warn!(
                        consumer = %self.name,
                        topic = %record.topic(),
                        partition = record.partition(),
                        offset = record.offset(),
                        reason,
                        "record sent to DLQ"
                    );
                    return true;
                }
                Err(error) => {
                    tracing::warn!(consumer = %self.name, %error, "DLQ send failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return false,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Whether a consume error means the consumer will never get its records: the
/// broker refuses it the topic or the group, or a topic it reads does not
/// exist where the service does not create its topics (an operator's
/// `KafkaTopic` missing). Anything else may pass and is only logged.
fn refused(error: &KafkaError, creates_topics: bool) -> bool {
    match error.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed | RDKafkaErrorCode::GroupAuthorizationFailed,
        ) => true,
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            !creates_topics
        }
        _ => false,
    }
}

/// How often librdkafka reports its statistics (each partition's lag).
const STATISTICS_EVERY_MS: &str = "5000";

/// The consumer's context: it takes librdkafka's statistics for the lag gauge.
struct LagContext {
    lag: ConsumerLag,
}

impl ClientContext for LagContext {
    fn stats(&self, statistics: Statistics) {
        self.lag.record(&statistics);
    }
}

impl ConsumerContext for LagContext {}

/// Stores the next offset of each partition seen in `records`.
fn store_offsets(consumer: &StreamConsumer<LagContext>, records: &[OwnedMessage]) {
    let mut next: HashMap<(&str, i32), i64> = HashMap::new();
    for record in records {
        let entry = next
            .entry((record.topic(), record.partition()))
            .or_insert(0);
        *entry = (*entry).max(record.offset() + 1);
    }
    let mut list = TopicPartitionList::with_capacity(next.len());
    for ((topic, partition), offset) in next {
        if let Err(error) = list.add_partition_offset(topic, partition, Offset::Offset(offset)) {
            tracing::warn!(%error, "offset not stored");
        }
    }
    if let Err(error) = consumer.store_offsets(&list) {
        // The partition was revoked meanwhile: its new owner replays the records and
        // the inbox skips them.
        tracing::warn!(%error, "offsets not stored");
    }
}
