//! The cases and cadence services together on one simulated clock: a case opened
//! and consented through the cases service is enrolled by cadence, and its first
//! touchpoint is requested when due and lands on the case timeline.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use touchpoint_platform::clock::ClockConfig;
use touchpoint_platform::envelope::{decode, instant};
use touchpoint_platform::kafka;
use touchpoint_platform::shutdown::Shutdown;
use touchpoint_platform::testkit::{self, TestDatabase, eventually, utc};
use touchpoint_platform::topics::{Stream, Topics};
use touchpoint_proto::v1::case_service_client::CaseServiceClient;
use touchpoint_proto::v1::contact_point::Value;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{Channel, GetTimelineRequest, Language, OutreachRequested};
use touchpoint_tests::fixtures::open_spanish_sms_patient;

const WAIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_case_opened_through_the_cases_service_gets_its_first_outreach_request_when_due() {
    testkit::init_tracing();
    let database = TestDatabase::fresh().await;
    let prefix = testkit::unique_prefix();
    // Both services read one simulated clock: Monday 09:00 in New York, an hour
    // per real second.
    let clock = ClockConfig::Accelerated {
        start: utc("2026-04-06T13:00:00Z"),
        epoch: Utc::now(),
        speed: 3600.0,
    };
    let config = |name: &str| {
        let mut config = testkit::platform_config(name, &database, &prefix);
        config.clock = clock.clone();
        config
    };
    let shutdown = Shutdown::new();
    let cases_addr =
        touchpoint_cases::start(touchpoint_cases::Config::new(config("cases")), &shutdown)
            .await
            .unwrap_or_else(|e| panic!("cases did not start: {e}"));
    let programs = concat!(env!("CARGO_MANIFEST_DIR"), "/../programs");
    touchpoint_cadence::start(
        touchpoint_cadence::Config::new(config("cadence"), programs),
        &shutdown,
    )
    .await
    .unwrap_or_else(|e| panic!("cadence did not start: {e}"));

    let reader: StreamConsumer =
        kafka::consumer_config(&testkit::kafka_config(&prefix), &format!("{prefix}reader"))
            .create()
            .unwrap_or_else(|e| panic!("{e}"));
    reader
        .subscribe(&[&Topics::new(prefix.clone()).name(Stream::Outreach)])
        .unwrap_or_else(|e| panic!("{e}"));

    // Enrolled 20 hours before the clock's start: the welcome (enrolment + 1 day)
    // is due at 13:00 in New York, four simulated hours in.
    let enrolled_at = utc("2026-04-05T17:00:00Z");
    let mut cases = CaseServiceClient::new(testkit::channel(cases_addr).await);
    let case_id = open_spanish_sms_patient(&mut cases, enrolled_at).await;

    let (requested_at, request) = tokio::time::timeout(WAIT, async {
        loop {
            let record = reader.recv().await.unwrap_or_else(|e| panic!("{e}"));
            let Ok((envelope, _)) = decode(record.payload()) else {
                continue;
            };
            if envelope.case_id != case_id {
                continue;
            }
            if let Some(Payload::OutreachRequested(request)) = envelope.payload {
                let at = envelope.occurred_at.as_ref().and_then(instant);
                return (at.unwrap_or_default(), request);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no outreach request for the case"));

    let due = enrolled_at + TimeDelta::days(1);
    let OutreachRequested {
        step_id,
        channel,
        due_at,
        destination,
        language,
        ..
    } = request;
    assert_eq!(step_id, "welcome");
    assert_eq!(channel, Channel::Sms as i32, "the only consented channel");
    assert_eq!(due_at.as_ref().and_then(instant), Some(due));
    assert!(
        requested_at >= due,
        "requested at {requested_at}, before {due}"
    );
    assert_eq!(language, Language::Es as i32);
    assert_eq!(
        destination.and_then(|d| d.value),
        Some(Value::PhoneE164("+12125550142".into())),
        "the number the cases service normalised"
    );

    // The cases service records it on the case timeline.
    let timeline = eventually("the request on the timeline", WAIT, || {
        let mut cases = cases.clone();
        let request = GetTimelineRequest {
            case_id: case_id.clone(),
            kinds: vec!["OutreachRequested".into()],
            page_size: 10,
            page_token: String::new(),
        };
        async move {
            let entries = cases.get_timeline(request).await.ok()?.into_inner().entries;
            (!entries.is_empty()).then_some(entries)
        }
    })
    .await;
    assert_eq!(timeline[0].kind, "touchpoint.v1.OutreachRequested");
    assert_eq!(
        timeline[0].event.as_ref().map(|e| e.source.as_str()),
        Some("cadence")
    );
    shutdown.trigger();
}
