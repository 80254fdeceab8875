//! The spine's two sides, as small as they can be while using the real platform.

use chrono::Utc;
use sqlx::migrate::Migrator;
use sqlx::{PgConnection, PgPool};
use touchpoint_platform::config::PlatformConfig;
use touchpoint_platform::db::DbError;
use touchpoint_platform::envelope::new_envelope;
use touchpoint_platform::inbox::{Delivery, Handler, HandlerError, InboxConsumer};
use touchpoint_platform::outbox::{self, OutboxError, OutboxRelay, OutgoingEvent};
use touchpoint_platform::topics::{Stream, Topics};
use touchpoint_platform::trace_context::current_trace_id;
use touchpoint_proto::v1::Probe;
use touchpoint_proto::v1::envelope::Payload;

/// Schema of the producing side (outbox only).
pub const PRODUCER_SCHEMA: &str = "spine_producer";
/// Schema of the consuming side (inbox and `spine_effects`).
pub const CONSUMER_SCHEMA: &str = "spine_consumer";
/// Consumer group and inbox name.
pub const CONSUMER_NAME: &str = "spine-consumer";
/// A probe note that makes the handler fail every time.
pub const ALWAYS_FAIL: &str = "always-fail";

/// No tables of its own: the producer only needs the platform's outbox.
pub static PRODUCER_MIGRATIONS: Migrator = Migrator::DEFAULT;
/// The consumer's `spine_effects` table.
pub static CONSUMER_MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// A probe event for `case_id` with `sequence`.
pub fn probe(topic: &str, case_id: &str, sequence: u64, note: &str) -> OutgoingEvent {
    OutgoingEvent::new(
        topic,
        new_envelope(
            case_id,
            "spine-test",
            Utc::now(),
            Payload::Probe(Probe {
                sequence,
                note: note.to_owned(),
            }),
            None,
        ),
    )
}

/// Appends `events` in one transaction.
pub async fn append(pool: &PgPool, events: &[OutgoingEvent]) -> Result<(), OutboxError> {
    let mut tx = pool.begin().await?;
    outbox::append(&mut tx, events).await?;
    tx.commit().await?;
    Ok(())
}

/// The relay of the producer schema.
pub fn relay(producer_pool: &PgPool, config: &PlatformConfig) -> Result<OutboxRelay, DbError> {
    OutboxRelay::new(producer_pool.clone(), PRODUCER_SCHEMA, config)
}

/// The consumer that applies the case topic to the consumer schema.
pub fn consumer(consumer_pool: &PgPool, config: &PlatformConfig) -> InboxConsumer<RecordEffect> {
    let topic = Topics::new(config.kafka.topic_prefix.clone()).name(Stream::Case);
    InboxConsumer::new(
        CONSUMER_NAME,
        vec![topic],
        consumer_pool.clone(),
        RecordEffect,
        config,
    )
}

/// Records each probe in `spine_effects` with the trace id it arrived under.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordEffect;

impl Handler for RecordEffect {
    async fn handle(&self, tx: &mut PgConnection, delivery: &Delivery) -> Result<(), HandlerError> {
        self.handle_batch(tx, std::slice::from_ref(delivery)).await
    }

    /// One insert for the whole batch, each row with the trace id of its own event.
    async fn handle_batch(
        &self,
        tx: &mut PgConnection,
        deliveries: &[Delivery],
    ) -> Result<(), HandlerError> {
        let mut event_ids = Vec::with_capacity(deliveries.len());
        let mut case_ids = Vec::with_capacity(deliveries.len());
        let mut sequences = Vec::with_capacity(deliveries.len());
        let mut trace_ids = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let Some(Payload::Probe(probe)) = &delivery.envelope.payload else {
                return Err(HandlerError::Permanent("not a probe event".into()));
            };
            if probe.note == ALWAYS_FAIL {
                return Err(HandlerError::Transient("probe asked to fail".into()));
            }
            event_ids.push(delivery.event_id);
            case_ids.push(delivery.envelope.case_id.clone());
            sequences.push(probe.sequence as i64);
            trace_ids.push(delivery.span().in_scope(current_trace_id));
        }
        sqlx::query(
            "INSERT INTO spine_effects (event_id, case_id, sequence, trace_id)
             SELECT event_id, case_id, sequence, trace_id
             FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::text[]) WITH ORDINALITY
                      AS e(event_id, case_id, sequence, trace_id, n)
             ORDER BY n",
        )
        .bind(&event_ids)
        .bind(&case_ids)
        .bind(&sequences)
        .bind(&trace_ids)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}
