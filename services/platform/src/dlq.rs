//! Dead letters: records a consumer cannot process go to `<topic>.dlq`, with the
//! reason and where they came from in headers, so the consumer can go on and an
//! operator can fix and replay them.
//!
//! Reasons are written by the platform or by handlers and must name ids and causes
//! only — never a value from the record.

use std::time::Duration;

use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use crate::config::KafkaConfig;
use crate::kafka;
use crate::topics::dlq_of;

/// Header: why the record was dead-lettered.
pub const REASON_HEADER: &str = "dlq-reason";
/// Header: the topic the record was read from.
pub const ORIGINAL_TOPIC_HEADER: &str = "dlq-original-topic";
/// Header: the partition the record was read from.
pub const ORIGINAL_PARTITION_HEADER: &str = "dlq-original-partition";
/// Header: the offset the record was read from.
pub const ORIGINAL_OFFSET_HEADER: &str = "dlq-original-offset";
/// Header: the consumer group that gave up on it.
pub const CONSUMER_HEADER: &str = "dlq-consumer";

/// Longest reason kept in a header.
const MAX_REASON_LEN: usize = 500;

/// Sends records to the dead-letter twin of their topic.
#[derive(Clone)]
pub struct DeadLetters {
    producer: FutureProducer,
    consumer: String,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl DeadLetters {
    /// A dead-letter sender for consumer group `consumer`.
    pub fn new(kafka: &KafkaConfig, consumer: &str) -> Result<Self, rdkafka::error::KafkaError> {
        Ok(Self {
            producer: kafka::idempotent_producer_config(kafka).create()?,
            consumer: consumer.to_owned(),
        })
    }

    /// Sends `record` to its topic's DLQ and waits until the broker has it.
    pub async fn send(
        &self,
        record: &OwnedMessage,
        reason: &str,
    ) -> Result<(), rdkafka::error::KafkaError> {
        let reason: String = reason.chars().take(MAX_REASON_LEN).collect();
        let partition = record.partition().to_string();
        let offset = record.offset().to_string();
        let mut headers = OwnedHeaders::new();
        if let Some(original) = record.headers() {
            for header in original.iter() {
                headers = headers.insert(header);
            }
        }
        let headers = headers
            .insert(Header {
                key: REASON_HEADER,
                value: Some(reason.as_str()),
            })
            .insert(Header {
                key: ORIGINAL_TOPIC_HEADER,
                value: Some(record.topic()),
            })
            .insert(Header {
                key: ORIGINAL_PARTITION_HEADER,
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: ORIGINAL_OFFSET_HEADER,
                value: Some(offset.as_str()),
            })
            .insert(Header {
                key: CONSUMER_HEADER,
                value: Some(self.consumer.as_str()),
            });
        let topic = dlq_of(record.topic());
        let mut dead = FutureRecord::<[u8], [u8]>::to(&topic).headers(headers);
        if let Some(key) = record.key() {
            dead = dead.key(key);
        }
        if let Some(payload) = record.payload() {
            dead = dead.payload(payload);
        }
        self.producer
            .send(dead, Timeout::After(Duration::from_secs(30)))
            .await
            .map(|_| ())
            .map_err(|(error, _)| error)
    }
}

/// The value of header `key` of `record`, if present and UTF-8.
pub fn header<'a>(record: &'a impl rdkafka::Message, key: &str) -> Option<&'a str> {
    record
        .headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}
