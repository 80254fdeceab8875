//! `touchpoint events tail TOPIC`: a topic's records, decoded, one line each:
//! partition and offset, when, the case, the event's kind and what it says,
//! through [`show::describe`], which never shows patient data. A record that
//! does not decode is reported as such, with its place, and the tail goes on.

use prost::Message as _;
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use touchpoint_platform::config::KafkaConfig;
use touchpoint_platform::kafka;
use touchpoint_proto::v1::Envelope;

use crate::show;

/// Where a tail starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// The first record the broker keeps.
    Start,
    /// Only records published from now on.
    Now,
}

/// Reads `topic` from `from`, handing each record's line to `line`, until
/// `limit` records (when given) or `stop` resolves.
pub async fn tail(
    config: &KafkaConfig,
    topic: &str,
    from: From,
    limit: Option<usize>,
    stop: impl std::future::Future<Output = ()>,
    mut line: impl FnMut(String),
) -> anyhow::Result<usize> {
    // A group of its own, committing nothing: a tail never moves anyone's offsets.
    let group = format!("touchpoint-tail-{}", uuid::Uuid::now_v7());
    let consumer: StreamConsumer = kafka::consumer_config(config, &group)
        .set("enable.auto.commit", "false")
        .set(
            "auto.offset.reset",
            match from {
                From::Start => "earliest",
                From::Now => "latest",
            },
        )
        .create()?;
    consumer.subscribe(&[topic])?;
    tokio::pin!(stop);
    let mut seen = 0;
    while limit.is_none_or(|limit| seen < limit) {
        let record = tokio::select! {
            () = &mut stop => break,
            record = consumer.recv() => record?,
        };
        seen += 1;
        line(describe(
            record.partition(),
            record.offset(),
            record.payload().unwrap_or_default(),
        ));
    }
    Ok(seen)
}

/// One record's line.
pub fn describe(partition: i32, offset: i64, payload: &[u8]) -> String {
    let place = format!("{partition}:{offset}");
    let Ok(envelope) = Envelope::decode(payload) else {
        return format!("{place}  (not an event envelope: {} bytes)", payload.len());
    };
    let when = envelope
        .occurred_at
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .map_or_else(|| "?".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string());
    let what = envelope.payload.as_ref().map_or_else(
        || "(a payload this build does not know)".into(),
        show::describe,
    );
    format!(
        "{place}  {when}  {}  {}  {what}",
        envelope.case_id, envelope.source
    )
}

#[cfg(test)]
mod tests {
    use prost_types::Timestamp;
    use touchpoint_proto::v1::envelope::Payload;
    use touchpoint_proto::v1::{InboundReceived, Probe};

    use super::*;

    #[test]
    fn a_record_is_one_line_with_its_place_and_what_happened() {
        let envelope = Envelope {
            case_id: "case-7".into(),
            source: "routing".into(),
            occurred_at: Some(Timestamp {
                seconds: 1_799_157_600,
                nanos: 0,
            }),
            payload: Some(Payload::InboundReceived(InboundReceived::default())),
            ..Envelope::default()
        };
        assert_eq!(
            describe(2, 41, &envelope.encode_to_vec()),
            "2:41  2027-01-05 14:00:00  case-7  routing  reply received: other"
        );
        let probe = Envelope {
            payload: Some(Payload::Probe(Probe::default())),
            ..Envelope::default()
        };
        assert!(describe(0, 0, &probe.encode_to_vec()).ends_with("probe"));
    }

    #[test]
    fn garbage_is_reported_not_a_panic() {
        assert_eq!(
            describe(0, 9, &[0xff, 0xff, 0xff]),
            "0:9  (not an event envelope: 3 bytes)"
        );
        assert!(describe(0, 10, &[]).contains("?"));
    }
}
