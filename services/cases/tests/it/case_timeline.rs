//! The case timeline: other services' events recorded once and in order, pages and
//! filters, and the watch streams resuming without gaps or repeats.

use std::collections::HashSet;
use std::time::Duration;

use crate::support::{Service, WAIT, meta, service};
use chrono::Utc;
use prost::Message as _;
use tonic::Code;
use touchpoint_platform::envelope::new_envelope;
use touchpoint_platform::testkit::{self, eventually};
use touchpoint_platform::topics::{Stream, Topics};
use touchpoint_platform::{dlq, kafka};
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    AttemptDelivered, AttemptSent, CaseStatus, Channel, Envelope, GetTimelineRequest,
    InboundReceived, OutreachRequested, TimelineEntry, WatchCaseRequest, WatchEventsRequest,
};

/// `envelope` encoded with a length-delimited field `number` this build does
/// not know, as a newer producer would write it.
fn with_unknown_field(envelope: &Envelope, number: u32, value: &[u8]) -> Vec<u8> {
    use prost::encoding::{WireType, encode_key, encode_varint};
    let mut bytes = envelope.encode_to_vec();
    encode_key(number, WireType::LengthDelimited, &mut bytes);
    encode_varint(value.len() as u64, &mut bytes);
    bytes.extend_from_slice(value);
    bytes
}

fn sent(case_id: &str, attempt: &str) -> Envelope {
    new_envelope(
        case_id,
        "dispatch",
        Utc::now(),
        Payload::AttemptSent(AttemptSent {
            attempt_id: attempt.into(),
            channel: Channel::Sms as i32,
            provider: "sandbox".into(),
            provider_message_id: format!("msg-{attempt}"),
            sent_at: None,
            ..AttemptSent::default()
        }),
        None,
    )
}

fn delivered(case_id: &str, attempt: &str) -> Envelope {
    new_envelope(
        case_id,
        "dispatch",
        Utc::now(),
        Payload::AttemptDelivered(AttemptDelivered {
            attempt_id: attempt.into(),
            channel: Channel::Sms as i32,
            delivered_at: None,
            pages: 0,
            call_seconds: 0,
        }),
        None,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempt_and_inbound_events_appear_once_on_the_timeline_in_order() {
    let mut svc = service().await;
    let case_id = svc.open("open-t1").await;
    let first = sent(&case_id, "a1");
    let inbound = new_envelope(
        &case_id,
        "routing",
        Utc::now(),
        Payload::InboundReceived(InboundReceived {
            inbound_id: "in-1".into(),
            channel: Channel::Sms as i32,
            received_at: None,
            in_reply_to_attempt_id: "a1".into(),
        }),
        None,
    );
    // The first send is delivered twice, as after a relay crash.
    svc.publish(
        Stream::Attempt,
        &[first.clone(), delivered(&case_id, "a1"), first.clone()],
    )
    .await;
    svc.publish(Stream::Inbound, &[inbound]).await;
    svc.publish(Stream::Attempt, &[sent("no-such-case", "a9")])
        .await;

    let kinds = [
        "AttemptSent",
        "AttemptDelivered",
        "touchpoint.v1.InboundReceived",
    ];
    let entries = eventually("three entries from other services", WAIT, || async {
        let entries = svc.clone_client().timeline(&case_id, &kinds).await;
        (entries.len() >= 3).then_some(entries)
    })
    .await;
    let seen: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(seen.len(), 3, "the duplicate was recorded once: {seen:?}");
    let attempts: Vec<&str> = seen
        .iter()
        .copied()
        .filter(|k| k.contains("Attempt"))
        .collect();
    assert_eq!(
        attempts,
        [
            "touchpoint.v1.AttemptSent",
            "touchpoint.v1.AttemptDelivered"
        ],
        "in order"
    );
    assert!(
        entries.iter().all(|e| e.version == 0),
        "other services' events carry no case version"
    );
    assert_eq!(
        svc.get(&case_id).await.version,
        1,
        "they do not move the case's version"
    );

    // The event for an unknown case is dead-lettered with the reason.
    let dead = eventually("the unknown case's event in the DLQ", WAIT, || async {
        read_one(&svc, &Topics::new(svc.prefix.clone()).dlq(Stream::Attempt)).await
    })
    .await;
    assert!(dead.contains("case no-such-case not found"), "{dead}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_of_every_kind_lands_where_it_belongs_and_the_consumer_goes_on() {
    let mut svc = service().await;
    let case_id = svc.open("open-poison").await;
    // From a newer producer: a payload type this build does not know (the
    // envelope's payload is a field it has no case for) ...
    let mut future_kind = sent(&case_id, "a-future");
    future_kind.payload = None;
    let future_kind = with_unknown_field(&future_kind, 900, b"a payload from the future");
    // ... and a known payload in an envelope with a field added.
    let newer = sent(&case_id, "a-newer");
    let newer_bytes = with_unknown_field(&newer, 901, b"an added envelope field");
    let key = case_id.clone();
    svc.publish_raw(
        Stream::Attempt,
        &[
            (key.clone(), vec![0xde, 0xad, 0xbe, 0xef]),
            (key.clone(), future_kind),
            (key.clone(), newer_bytes.clone()),
            // The same event id again, as after a producer's retry.
            (key.clone(), newer_bytes),
            (
                "no-such-case".into(),
                sent("no-such-case", "a-orphan").encode_to_vec(),
            ),
        ],
    )
    .await;
    // A good record after all of them.
    svc.publish(Stream::Attempt, &[delivered(&case_id, "a-newer")])
        .await;

    let entries = eventually("the good record after the poison", WAIT, || async {
        let entries = svc.clone_client().timeline(&case_id, &[]).await;
        entries
            .iter()
            .any(|e| e.kind == "touchpoint.v1.AttemptDelivered")
            .then_some(entries)
    })
    .await;
    let kinds: Vec<&str> = entries
        .iter()
        .filter(|e| e.version == 0)
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "touchpoint.v1.Unknown",
            "touchpoint.v1.AttemptSent",
            "touchpoint.v1.AttemptDelivered"
        ],
        "the unknown kind kept for the audit trail, the newer envelope applied \
         once, then the good record"
    );
    let applied = entries
        .iter()
        .find(|e| e.kind == "touchpoint.v1.AttemptSent")
        .and_then(|e| e.event.as_ref()?.payload.clone());
    assert!(
        matches!(applied, Some(Payload::AttemptSent(s)) if s.attempt_id == "a-newer"),
        "the newer envelope's known fields were read"
    );

    // The garbage and the unknown case's event are dead-lettered, each with
    // its reason.
    let reasons = testkit::dead_letter_reasons(&svc.prefix, Stream::Attempt, 2, WAIT).await;
    assert!(
        reasons.iter().any(|r| r.starts_with("undecodable")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("case no-such-case not found")),
        "{reasons:?}"
    );
}

/// The reason header of the first record on `topic`, if one arrives soon.
async fn read_one(svc: &Service, topic: &str) -> Option<String> {
    use rdkafka::consumer::{Consumer as _, StreamConsumer};
    let reader: StreamConsumer = kafka::consumer_config(
        &testkit::kafka_config(&svc.prefix),
        &format!("dlq-{}", crate::support::uuid_like()),
    )
    .create()
    .ok()?;
    reader.subscribe(&[topic]).ok()?;
    let record = tokio::time::timeout(Duration::from_secs(10), reader.recv())
        .await
        .ok()?
        .ok()?;
    dlq::header(&record, dlq::REASON_HEADER).map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_reads_in_the_order_things_happened_not_as_they_were_recorded() {
    let mut svc = service().await;
    let case_id = svc.open("open-order").await;
    let then = Utc::now() - chrono::TimeDelta::minutes(5);
    let request = |attempt: &str, at| {
        new_envelope(
            &case_id,
            "cadence",
            at,
            Payload::OutreachRequested(OutreachRequested {
                attempt_id: attempt.into(),
                ..OutreachRequested::default()
            }),
            None,
        )
    };
    // One attempt sent a second after its request, one at the same instant.
    let (early, same) = (request("a1", then), request("a2", then));
    let sent_of = |cause: &Envelope, attempt: &str, at| {
        new_envelope(
            &case_id,
            "dispatch",
            at,
            Payload::AttemptSent(AttemptSent {
                attempt_id: attempt.into(),
                ..AttemptSent::default()
            }),
            Some(cause),
        )
    };
    let attempts = [
        sent_of(&early, "a1", then + chrono::TimeDelta::seconds(1)),
        sent_of(&same, "a2", then),
    ];
    // The attempts are recorded first, as when the attempt topic runs ahead.
    svc.publish(Stream::Attempt, &attempts).await;
    eventually("the attempts recorded", WAIT, || async {
        let entries = svc
            .clone_client()
            .timeline(&case_id, &["AttemptSent"])
            .await;
        (entries.len() == 2).then_some(())
    })
    .await;
    svc.publish(Stream::Outreach, &[early.clone(), same.clone()])
        .await;
    let order = eventually("all four, in event order", WAIT, || async {
        let entries = svc
            .clone_client()
            .timeline(&case_id, &["AttemptSent", "OutreachRequested"])
            .await;
        (entries.len() == 4).then(|| {
            entries
                .iter()
                .filter_map(|e| e.event.as_ref().map(|ev| ev.event_id.clone()))
                .collect::<Vec<_>>()
        })
    })
    .await;
    assert_eq!(
        order,
        vec![
            early.event_id.clone(),
            same.event_id.clone(),
            attempts[1].event_id.clone(),
            attempts[0].event_id.clone(),
        ],
        "each request before its attempt: by time, and at one instant by cause"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeline_pages_oldest_first_and_filters_by_kind() {
    let mut svc = service().await;
    let case_id = svc.open("open-t2").await;
    for n in 0..4 {
        svc.consent(&case_id, Channel::Sms, meta(&format!("c{n}")))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    svc.set_status(&case_id, CaseStatus::Paused, "travel")
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let mut versions = Vec::new();
    let mut token = String::new();
    loop {
        let page = svc
            .client
            .get_timeline(GetTimelineRequest {
                case_id: case_id.clone(),
                kinds: vec![],
                page_size: 2,
                page_token: token.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .into_inner();
        assert!(page.entries.len() <= 2);
        versions.extend(page.entries.iter().map(|e| e.version));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        versions,
        vec![1, 2, 3, 4, 5, 6],
        "every event once, oldest first"
    );

    let consents = svc
        .clone_client()
        .timeline(&case_id, &["ConsentRecorded"])
        .await;
    assert_eq!(consents.len(), 4);
    let status = svc
        .clone_client()
        .timeline(&case_id, &["CaseStatusChanged"])
        .await;
    assert_eq!(status.len(), 1);

    let bad = svc
        .client
        .get_timeline(GetTimelineRequest {
            case_id: case_id.clone(),
            kinds: vec!["Attempt Sent; DROP".into()],
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .err();
    assert_eq!(bad.map(|s| s.code()), Some(Code::InvalidArgument));
    let unknown = svc
        .client
        .get_timeline(GetTimelineRequest {
            case_id: "no-such-case".into(),
            kinds: vec![],
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .err();
    assert_eq!(unknown.map(|s| s.code()), Some(Code::NotFound));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_events_subscriber_resumes_after_disconnecting_without_gaps_or_repeats() {
    let mut svc = service().await;
    let mut cases = Vec::new();
    for n in 0..3 {
        cases.push(svc.open(&format!("open-w{n}")).await);
    }
    for case_id in &cases {
        svc.consent(case_id, Channel::Sms, meta(""))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // 6 events so far. Read 4, then hang up.
    let mut first_part = Vec::new();
    {
        let mut stream = svc
            .client
            .watch_events(WatchEventsRequest::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .into_inner();
        while first_part.len() < 4 {
            let entry = tokio::time::timeout(WAIT, stream.message())
                .await
                .unwrap_or_else(|_| panic!("stream stalled"))
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|| panic!("stream ended"));
            first_part.push(entry);
        }
    }
    // While disconnected, more happens on every case, from concurrent clients.
    let writes = cases.iter().map(|case_id| {
        let mut client = svc.client.clone();
        let case_id = case_id.clone();
        async move {
            for channel in [Channel::Email, Channel::Voice] {
                client
                    .record_consent(touchpoint_proto::v1::RecordConsentRequest {
                        meta: meta(""),
                        case_id: case_id.clone(),
                        channel: channel as i32,
                        source: touchpoint_proto::v1::ConsentSource::Portal as i32,
                        contact_point: String::new(),
                    })
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
    });
    futures::future::join_all(writes).await;

    let cursor = first_part
        .last()
        .map(|e| e.cursor.clone())
        .unwrap_or_default();
    let mut second_part = Vec::new();
    let mut stream = svc
        .client
        .watch_events(WatchEventsRequest {
            after_cursor: cursor,
            ..WatchEventsRequest::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    while first_part.len() + second_part.len() < 12 {
        let entry = tokio::time::timeout(WAIT, stream.message())
            .await
            .unwrap_or_else(|_| panic!("stream stalled after {} entries", second_part.len()))
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("stream ended"));
        second_part.push(entry);
    }

    let all: Vec<&TimelineEntry> = first_part.iter().chain(&second_part).collect();
    let ids: HashSet<&str> = all
        .iter()
        .filter_map(|e| e.event.as_ref())
        .map(|e| e.event_id.as_str())
        .collect();
    assert_eq!(ids.len(), 12, "no repeats");
    for case_id in &cases {
        let versions: Vec<u64> = all
            .iter()
            .filter(|e| e.event.as_ref().is_some_and(|ev| &ev.case_id == case_id))
            .map(|e| e.version)
            .collect();
        assert_eq!(
            versions,
            vec![1, 2, 3, 4],
            "every event of the case, in order, no gaps"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_now_skips_the_history_and_delivers_what_comes_next() {
    let mut svc = service().await;
    let old = svc.open("open-old").await;
    svc.consent(&old, Channel::Sms, meta(""))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A stream hands out an entry only once no older transaction can still
    // commit before it; "now" is where that horizon stands. Wait until the
    // history has passed it (a stream from the start has delivered it all).
    {
        let mut history = svc
            .client
            .watch_events(WatchEventsRequest::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .into_inner();
        for _ in 0..2 {
            tokio::time::timeout(WAIT, history.message())
                .await
                .unwrap_or_else(|_| panic!("the history stalled"))
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|| panic!("stream ended"));
        }
    }
    let mut stream = svc
        .client
        .watch_events(WatchEventsRequest {
            from_now: true,
            ..WatchEventsRequest::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let new = svc.open("open-new").await;
    let entry = tokio::time::timeout(WAIT, stream.message())
        .await
        .unwrap_or_else(|_| panic!("stream stalled"))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("stream ended"));
    assert_eq!(
        entry.event.map(|e| e.case_id),
        Some(new),
        "the first entry is the first one recorded after the watch began"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_case_streams_a_case_from_a_version_then_live() {
    let mut svc = service().await;
    let case_id = svc.open("open-wc").await;
    svc.consent(&case_id, Channel::Sms, meta(""))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut stream = svc
        .client
        .watch_case(WatchCaseRequest {
            case_id: case_id.clone(),
            after_version: 1,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(
        next_entry(&mut stream).await,
        Some((2, "touchpoint.v1.ConsentRecorded".into()))
    );
    svc.set_status(&case_id, CaseStatus::Paused, "travel")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        next_entry(&mut stream).await,
        Some((3, "touchpoint.v1.CaseStatusChanged".into())),
        "live"
    );
}

/// The next entry's version and kind, or None if the stream ends or stalls.
async fn next_entry(stream: &mut tonic::Streaming<TimelineEntry>) -> Option<(u64, String)> {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .ok()
        .and_then(|m| m.ok().flatten())
        .map(|e| (e.version, e.kind))
}
