//! `touchpoint dlq`: the records consumers gave up on, and putting them back.
//!
//! - [`list`] reads dead-letter topics from their start up to their end and
//!   describes each record: where it came from, which consumer gave up on it and
//!   why, and what it holds as [`events::describe`] shows it, without patient
//!   data. It commits nothing.
//! - [`replay`] republishes a dead-letter topic's records to the topics they came
//!   from, as they were (key, payload, trace headers), once each: the replayer's
//!   consumer group commits its place, so a second replay sends only records
//!   dead-lettered since. Replay after the consumer is fixed; a record it still
//!   cannot process lands in the DLQ again. Consumers skip events they have
//!   applied already, so a record replayed twice changes nothing twice.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context as _, bail};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::message::{BorrowedMessage, Header, Headers as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use touchpoint_platform::config::KafkaConfig;
use touchpoint_platform::dlq::{
    CONSUMER_HEADER, ORIGINAL_OFFSET_HEADER, ORIGINAL_PARTITION_HEADER, ORIGINAL_TOPIC_HEADER,
    REASON_HEADER, header,
};
use touchpoint_platform::kafka;
use touchpoint_platform::topics::{DLQ_SUFFIX, Topics};

use crate::events;

/// The consumer group whose committed offsets mark what has been replayed.
pub const REPLAY_GROUP: &str = "touchpoint-dlq-replay";
/// Header on a replayed record: the dead-letter topic, partition and offset it
/// was replayed from.
pub const REPLAYED_FROM_HEADER: &str = "dlq-replayed-from";
const BROKER_WAIT: Duration = Duration::from_secs(10);

/// One dead letter, as `dlq list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// `dlq-topic partition:offset`.
    pub place: String,
    /// `topic partition:offset` it was read from.
    pub origin: String,
    /// The consumer group that gave up on it.
    pub consumer: String,
    /// Why.
    pub reason: String,
    /// What it holds, without patient data.
    pub record: String,
}

impl std::fmt::Display for DeadLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}  from {}  by {}  why: {}\n    {}",
            self.place, self.origin, self.consumer, self.reason, self.record
        )
    }
}

/// The dead-letter topics `which` names: a DLQ topic, a stream's topic (its DLQ),
/// or every DLQ when `None`.
pub fn topics(config: &KafkaConfig, which: Option<&str>) -> anyhow::Result<Vec<String>> {
    let all: Vec<String> = Topics::new(config.topic_prefix.clone())
        .all()
        .into_iter()
        .filter(|t| t.ends_with(DLQ_SUFFIX))
        .collect();
    let Some(which) = which else {
        return Ok(all);
    };
    let wanted = if which.ends_with(DLQ_SUFFIX) {
        which.to_owned()
    } else {
        format!("{which}{DLQ_SUFFIX}")
    };
    if !all.contains(&wanted) {
        bail!(
            "{which:?} is not a Touchpoint topic or DLQ (one of: {})",
            all.join(", ")
        );
    }
    Ok(vec![wanted])
}

/// Every record now in `topics`, oldest first per partition.
pub fn list(config: &KafkaConfig, topics: &[String]) -> anyhow::Result<Vec<DeadLetter>> {
    let group = format!("touchpoint-dlq-list-{}", uuid::Uuid::now_v7());
    let consumer = reader(config, &group)?;
    let mut letters = Vec::new();
    for topic in topics {
        read_to_end(&consumer, topic, Start::Beginning, |record| {
            letters.push(dead_letter(record));
            Ok(())
        })?;
    }
    Ok(letters)
}

/// Republishes the records of `topic` (a DLQ) not replayed before to the topics
/// they came from; returns how many.
pub async fn replay(config: &KafkaConfig, topic: &str) -> anyhow::Result<usize> {
    if !topic.ends_with(DLQ_SUFFIX) {
        bail!("{topic:?} is not a dead-letter topic");
    }
    let consumer = reader(config, REPLAY_GROUP)?;
    let producer: FutureProducer = kafka::idempotent_producer_config(config)
        .create()
        .context("cannot create a producer")?;
    let mut outgoing = Vec::new();
    let positions = read_to_end(&consumer, topic, Start::Committed, |record| {
        outgoing.push(replayable(record)?);
        Ok(())
    })?;
    for record in &outgoing {
        let mut out = FutureRecord::<[u8], [u8]>::to(&record.topic)
            .payload(&record.payload)
            .headers(record.headers.clone());
        if let Some(key) = &record.key {
            out = out.key(key);
        }
        producer
            .send(out, Timeout::After(Duration::from_secs(30)))
            .await
            .map_err(|(error, _)| error)
            .with_context(|| format!("cannot republish {}", record.from))?;
    }
    // Only after every record is on its topic: a replay cut short sends again
    // what it had not confirmed, never skips it.
    if !positions.elements().is_empty() {
        consumer
            .commit(&positions, CommitMode::Sync)
            .context("cannot record the replay's place")?;
    }
    Ok(outgoing.len())
}

struct Replayable {
    from: String,
    topic: String,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: OwnedHeaders,
}

/// The record as it was on its own topic, marked with where it was replayed from.
fn replayable(record: &BorrowedMessage<'_>) -> anyhow::Result<Replayable> {
    let from = format!(
        "{} {}:{}",
        record.topic(),
        record.partition(),
        record.offset()
    );
    let topic = header(record, ORIGINAL_TOPIC_HEADER)
        .map(str::to_owned)
        .or_else(|| record.topic().strip_suffix(DLQ_SUFFIX).map(str::to_owned))
        .with_context(|| format!("{from} does not say where it came from"))?;
    let mut headers = OwnedHeaders::new();
    if let Some(original) = record.headers() {
        for h in original.iter().filter(|h| !h.key.starts_with("dlq-")) {
            headers = headers.insert(h);
        }
    }
    let headers = headers.insert(Header {
        key: REPLAYED_FROM_HEADER,
        value: Some(from.as_str()),
    });
    Ok(Replayable {
        topic,
        key: record.key().map(<[u8]>::to_vec),
        payload: record.payload().unwrap_or_default().to_vec(),
        headers,
        from,
    })
}

fn dead_letter(record: &BorrowedMessage<'_>) -> DeadLetter {
    let text = |key: &str| header(record, key).unwrap_or("?").to_owned();
    DeadLetter {
        place: format!(
            "{} {}:{}",
            record.topic(),
            record.partition(),
            record.offset()
        ),
        origin: format!(
            "{} {}:{}",
            text(ORIGINAL_TOPIC_HEADER),
            text(ORIGINAL_PARTITION_HEADER),
            text(ORIGINAL_OFFSET_HEADER)
        ),
        consumer: text(CONSUMER_HEADER),
        reason: text(REASON_HEADER),
        record: events::describe(
            record.partition(),
            record.offset(),
            record.payload().unwrap_or_default(),
        ),
    }
}

fn reader(config: &KafkaConfig, group: &str) -> anyhow::Result<BaseConsumer> {
    kafka::consumer_config(config, group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("cannot create a consumer")
}

#[derive(Clone, Copy)]
enum Start {
    Beginning,
    /// Where the group's last commit left off; the beginning if it never did.
    Committed,
}

/// Reads every partition of `topic` from `start` to the end it has now; returns
/// each partition's next offset, to commit.
fn read_to_end(
    consumer: &BaseConsumer,
    topic: &str,
    start: Start,
    mut each: impl FnMut(&BorrowedMessage<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<TopicPartitionList> {
    let metadata = consumer
        .fetch_metadata(Some(topic), BROKER_WAIT)
        .with_context(|| format!("cannot read {topic}'s metadata"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut assignment = TopicPartitionList::new();
    for partition in &partitions {
        assignment.add_partition_offset(topic, *partition, Offset::Beginning)?;
    }
    if matches!(start, Start::Committed) && !partitions.is_empty() {
        let committed = consumer
            .committed_offsets(assignment.clone(), BROKER_WAIT)
            .context("cannot read the replay's place")?;
        for element in committed.elements() {
            if let Offset::Offset(offset) = element.offset() {
                assignment.set_partition_offset(
                    topic,
                    element.partition(),
                    Offset::Offset(offset),
                )?;
            }
        }
    }
    // Where each partition ends now; records arriving later wait for the next run.
    let mut remaining = HashMap::new();
    let mut next = TopicPartitionList::new();
    for element in assignment.elements() {
        let (low, high) = consumer
            .fetch_watermarks(topic, element.partition(), BROKER_WAIT)
            .with_context(|| format!("cannot read {topic}'s end"))?;
        let from = match element.offset() {
            Offset::Offset(offset) => offset.max(low),
            _ => low,
        };
        if from < high {
            remaining.insert(element.partition(), high);
        }
        next.add_partition_offset(topic, element.partition(), Offset::Offset(from))?;
    }
    consumer.assign(&assignment)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !remaining.is_empty() {
        if std::time::Instant::now() > deadline {
            bail!("{topic} was not read to its end within a minute");
        }
        let Some(result) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let record = result.with_context(|| format!("cannot read {topic}"))?;
        let partition = record.partition();
        let Some(high) = remaining.get(&partition).copied() else {
            continue;
        };
        if record.offset() >= high {
            continue;
        }
        each(&record)?;
        next.set_partition_offset(topic, partition, Offset::Offset(record.offset() + 1))?;
        if record.offset() + 1 >= high {
            remaining.remove(&partition);
        }
    }
    Ok(next)
}
