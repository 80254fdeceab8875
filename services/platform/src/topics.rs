//! The Kafka topics of the event contract, and their creation at start.
//!
//! Names are `touchpoint.<stream>.v1`, each with a `.dlq` twin, behind an optional
//! prefix from `TOUCHPOINT_TOPIC_PREFIX` (tests give each run its own).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::KafkaConfig;
use crate::kafka;

/// One stream of the event contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Case changes, from the cases service.
    Case,
    /// Outreach requests, from the cadence service.
    Outreach,
    /// Attempt outcomes, from the dispatch service.
    Attempt,
    /// Inbound contacts and routing, from the routing service.
    Inbound,
}

impl Stream {
    /// Every stream.
    pub const ALL: [Stream; 4] = [
        Stream::Case,
        Stream::Outreach,
        Stream::Attempt,
        Stream::Inbound,
    ];

    /// The topic name without prefix.
    pub fn base_name(self) -> &'static str {
        match self {
            Stream::Case => "touchpoint.case.v1",
            Stream::Outreach => "touchpoint.outreach.v1",
            Stream::Attempt => "touchpoint.attempt.v1",
            Stream::Inbound => "touchpoint.inbound.v1",
        }
    }
}

/// What a service does with the event contract's streams. Its broker
/// identity's ACLs (`k8s/base/kafka-users.yaml`) grant exactly this: write
/// what it publishes and the dead-letter twins of what it consumes, read what
/// it consumes, in its own group.
#[derive(Debug, Clone, Copy)]
pub struct TopicUse {
    /// The streams it publishes to.
    pub publishes: &'static [Stream],
    /// The streams it consumes.
    pub consumes: &'static [Stream],
    /// Its consumer group.
    pub group: &'static str,
}

impl TopicUse {
    /// The topics it consumes, under `topics`' prefix.
    pub fn consumed(&self, topics: &Topics) -> Vec<String> {
        self.consumes.iter().map(|s| topics.name(*s)).collect()
    }
}

/// The suffix of a dead-letter topic.
pub const DLQ_SUFFIX: &str = ".dlq";

/// Topic names with the configured prefix applied.
#[derive(Debug, Clone, Default)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// Names under `prefix` (may be empty).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The topic of `stream`.
    pub fn name(&self, stream: Stream) -> String {
        format!("{}{}", self.prefix, stream.base_name())
    }

    /// The dead-letter twin of `stream`'s topic.
    pub fn dlq(&self, stream: Stream) -> String {
        dlq_of(&self.name(stream))
    }

    /// Every topic and dead-letter topic of the contract.
    pub fn all(&self) -> Vec<String> {
        Stream::ALL
            .iter()
            .flat_map(|s| [self.name(*s), self.dlq(*s)])
            .collect()
    }
}

/// The dead-letter topic of `topic`.
pub fn dlq_of(topic: &str) -> String {
    format!("{topic}{DLQ_SUFFIX}")
}

/// Topics could not be created.
#[derive(Debug, thiserror::Error)]
#[error("could not create topic {topic}: {source}")]
pub struct TopicError {
    /// The topic that failed.
    pub topic: String,
    /// The broker's answer.
    #[source]
    pub source: KafkaError,
}

/// Creates every topic of the contract that does not exist yet.
pub async fn bootstrap(config: &KafkaConfig) -> Result<(), TopicError> {
    let topics = Topics::new(config.topic_prefix.clone()).all();
    create(config, &topics).await
}

/// Creates `names` with the configured partitions and replication, if missing.
pub async fn create(config: &KafkaConfig, names: &[String]) -> Result<(), TopicError> {
    let admin: AdminClient<DefaultClientContext> =
        kafka::client_config(config)
            .create()
            .map_err(|source| TopicError {
                topic: names.join(","),
                source,
            })?;
    let new_topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                config.partitions,
                TopicReplication::Fixed(config.replication),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|source| TopicError {
            topic: names.join(","),
            source,
        })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(TopicError {
                    topic,
                    source: KafkaError::AdminOp(code),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stream_has_a_dlq_twin_under_the_prefix() {
        let topics = Topics::new("t1.");
        assert_eq!(topics.name(Stream::Attempt), "t1.touchpoint.attempt.v1");
        assert_eq!(topics.dlq(Stream::Attempt), "t1.touchpoint.attempt.v1.dlq");
        assert_eq!(topics.all().len(), 8);
    }
}
