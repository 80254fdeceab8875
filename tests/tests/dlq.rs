//! `touchpoint dlq`: dead letters are listed with where they came from and why,
//! without their contents; a replay puts each back on its topic as it was, once.

use std::time::Duration;

use prost::Message as _;
use rdkafka::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Header, Headers as _, OwnedHeaders, OwnedMessage, Timestamp};
use touchpoint_cli::dlq;
use touchpoint_platform::dlq::DeadLetters;
use touchpoint_platform::testkit::{self, eventually};
use touchpoint_platform::topics::{self, Stream, Topics};
use touchpoint_platform::{config::KafkaConfig, kafka};
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{AttemptSent, Envelope};

const WAIT: Duration = Duration::from_secs(60);
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn record(topic: &str, offset: i64, key: &str, payload: Vec<u8>) -> OwnedMessage {
    let headers = OwnedHeaders::new().insert(Header {
        key: "traceparent",
        value: Some(TRACEPARENT),
    });
    OwnedMessage::new(
        Some(payload),
        Some(key.as_bytes().to_vec()),
        topic.to_owned(),
        Timestamp::NotAvailable,
        0,
        offset,
        Some(headers),
    )
}

/// The records on `topic`, (key, payload, header keys, replayed-from), once
/// `want` have come or after ten seconds.
fn read_all(
    kafka: &KafkaConfig,
    topic: &str,
    want: usize,
) -> Vec<(String, Vec<u8>, Vec<String>, String)> {
    let consumer: BaseConsumer = kafka::consumer_config(kafka, &testkit::unique_prefix())
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    consumer
        .subscribe(&[topic])
        .unwrap_or_else(|e| panic!("{e}"));
    let mut records = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while records.len() < want && std::time::Instant::now() < deadline {
        let Some(Ok(r)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let headers: Vec<String> = r
            .headers()
            .map(|h| h.iter().map(|h| h.key.to_owned()).collect())
            .unwrap_or_default();
        records.push((
            String::from_utf8_lossy(r.key().unwrap_or_default()).into_owned(),
            r.payload().unwrap_or_default().to_vec(),
            headers,
            touchpoint_platform::dlq::header(&r, dlq::REPLAYED_FROM_HEADER)
                .unwrap_or_default()
                .to_owned(),
        ));
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_with_their_reasons_and_replayed_once_each() {
    let prefix = testkit::unique_prefix();
    let kafka = testkit::kafka_config(&prefix);
    topics::bootstrap(&kafka)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let topic = Topics::new(prefix.clone()).name(Stream::Attempt);
    let dead = DeadLetters::new(&kafka, "cases-timeline").unwrap_or_else(|e| panic!("{e}"));
    let event = Envelope {
        event_id: "evt-1".into(),
        case_id: "case-2".into(),
        source: "dispatch".into(),
        payload: Some(Payload::AttemptSent(AttemptSent {
            attempt_id: "att-9".into(),
            ..AttemptSent::default()
        })),
        ..Envelope::default()
    };
    let garbage = record(&topic, 17, "case-1", vec![0xff, 0xfe, 0x00]);
    let unknown = record(&topic, 18, "case-2", event.encode_to_vec());
    for (r, why) in [
        (&garbage, "undecodable: invalid wire type"),
        (&unknown, "case case-2 is unknown"),
    ] {
        dead.send(r, why).await.unwrap_or_else(|e| panic!("{e}"));
    }

    let dlq_topics = dlq::topics(&kafka, Some(&topic)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dlq_topics, vec![format!("{topic}.dlq")]);
    assert!(dlq::topics(&kafka, Some("elsewhere.v1")).is_err());
    let listed = {
        let (kafka, dlq_topics) = (kafka.clone(), dlq_topics.clone());
        tokio::task::spawn_blocking(move || dlq::list(&kafka, &dlq_topics))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e:#}"))
    };
    assert_eq!(listed.len(), 2, "{listed:#?}");
    let by_origin = |offset: i64| {
        listed
            .iter()
            .find(|l| l.origin == format!("{topic} 0:{offset}"))
            .unwrap_or_else(|| panic!("no dead letter from offset {offset}: {listed:#?}"))
    };
    assert_eq!(by_origin(17).consumer, "cases-timeline");
    assert_eq!(by_origin(17).reason, "undecodable: invalid wire type");
    assert!(
        by_origin(17)
            .record
            .contains("not an event envelope: 3 bytes")
    );
    assert!(
        by_origin(18).record.contains("case-2"),
        "{}",
        by_origin(18).record
    );
    assert!(
        by_origin(18)
            .to_string()
            .contains("why: case case-2 is unknown")
    );

    let replayed = dlq::replay(&kafka, &dlq_topics[0])
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(replayed, 2);
    assert_eq!(
        dlq::replay(&kafka, &dlq_topics[0]).await.ok(),
        Some(0),
        "a second replay sends nothing again"
    );
    // A record dead-lettered since is the only one the next replay sends.
    let later = record(&topic, 30, "case-3", event.encode_to_vec());
    dead.send(&later, "handler failed")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dlq::replay(&kafka, &dlq_topics[0]).await.ok(), Some(1));

    let back = {
        let (kafka, topic) = (kafka.clone(), topic.clone());
        eventually("the replayed records on their topic", WAIT, move || {
            let (kafka, topic) = (kafka.clone(), topic.clone());
            async move {
                let records = tokio::task::spawn_blocking(move || read_all(&kafka, &topic, 3))
                    .await
                    .ok()?;
                (records.len() >= 3).then_some(records)
            }
        })
        .await
    };
    let mut keys: Vec<&str> = back.iter().map(|(key, ..)| key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["case-1", "case-2", "case-3"], "each once");
    let (_, payload, headers, from) = back
        .iter()
        .find(|(key, ..)| key == "case-1")
        .unwrap_or_else(|| panic!("case-1 not replayed"));
    assert_eq!(payload, &garbage.payload().unwrap_or_default().to_vec());
    assert!(
        headers.iter().any(|h| h == "traceparent"),
        "the trace goes on"
    );
    assert!(!headers.iter().any(|h| h == "dlq-reason"), "{headers:?}");
    assert!(from.starts_with(&format!("{topic}.dlq ")), "{from}");
}
