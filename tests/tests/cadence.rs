//! The cases and cadence services together on one simulated clock: a case opened
//! and consented through the cases service is enrolled by cadence, and its first
//! touchpoint is requested when due and lands on the case timeline. With
//! dispatch and its stand-ins too: a letter step goes out once, and a letter
//! returned to sender moves the step on to a text.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use touchpoint_platform::clock::ClockConfig;
use touchpoint_platform::envelope::{decode, instant, timestamp};
use touchpoint_platform::kafka;
use touchpoint_platform::shutdown::Shutdown;
use touchpoint_platform::testkit::events::person;
use touchpoint_platform::testkit::{self, TestDatabase, eventually, utc};
use touchpoint_platform::topics::{Stream, Topics};
use touchpoint_proto::v1::case_service_client::CaseServiceClient;
use touchpoint_proto::v1::contact_point::Value;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    Channel, ConsentSource, GetTimelineRequest, Language, OpenCaseRequest, OutreachRequested,
    PostalAddress, RecordConsentRequest, RecordTherapyEventRequest, TherapyEventKind,
};
use touchpoint_tests::fixtures::{meta, open_spanish_sms_patient};
use touchpoint_tests::hub::Hub;

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

/// A copy of the shipped programs in which the refill reminder's first step is
/// a letter, falling back to a text, at most two a day.
fn programs_with_a_letter_step() -> std::path::PathBuf {
    let shipped = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../programs"));
    let copy = std::env::temp_dir().join(format!("touchpoint-programs-{}", uuid::Uuid::now_v7()));
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(shipped)
        .arg(&copy)
        .status()
        .unwrap_or_else(|e| panic!("cp: {e}"));
    assert!(status.success(), "the programs were not copied");
    let file = copy.join("refill-reminder/program.toml");
    let program = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
    let sms_then_email = r#"  { channel = "sms", attempts = 2, wait = "1d" },
  { channel = "email", attempts = 1 },"#;
    assert!(program.contains(sms_then_email) && program.contains("per_day = 1"));
    let letter_then_sms = r#"  { channel = "mail", attempts = 1 },
  { channel = "sms", attempts = 1 },"#;
    let program = program
        .replacen(sms_then_email, letter_then_sms, 1)
        .replacen("per_day = 1", "per_day = 2", 1);
    std::fs::write(&file, program).unwrap_or_else(|e| panic!("{e}"));
    copy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_letter_step_goes_out_once_and_a_return_to_sender_falls_back_to_a_text() {
    // 09:00 in Chicago.
    let now = utc("2026-11-23T15:00:00Z");
    let programs = programs_with_a_letter_step();
    let mut hub = Hub::start_with_programs(ClockConfig::Fixed { at: now }, &programs).await;
    let mut patient = person("Ana", "Ruiz", "+13125550142", "");
    if let Some(contact) = patient.contact.as_mut() {
        contact.postal_address = Some(PostalAddress {
            line1: "233 South Wacker Drive".into(),
            city: "Chicago".into(),
            region: "IL".into(),
            postal_code: "60606".into(),
            country: "US".into(),
            ..PostalAddress::default()
        });
    }
    let case_id = hub
        .cases
        .open_case(OpenCaseRequest {
            meta: meta("open-letter"),
            program_id: "refill-reminder".into(),
            language: Language::En as i32,
            time_zone: "America/Chicago".into(),
            patient: Some(patient),
            caregiver: None,
            prescriber_fax: String::new(),
            enrolled_at: Some(timestamp(now - TimeDelta::days(30))),
        })
        .await
        .unwrap_or_else(|e| panic!("open: {e}"))
        .into_inner()
        .case_id;
    for channel in [Channel::Mail, Channel::Sms] {
        hub.cases
            .record_consent(RecordConsentRequest {
                meta: meta(&format!("consent-letter-{}", channel.short_name())),
                case_id: case_id.clone(),
                channel: channel as i32,
                source: ConsentSource::WrittenForm as i32,
                contact_point: String::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("consent: {e}"));
    }
    // 30 days' supply filled 25 days ago: the refill is due in five days, and
    // the step five days before it now.
    hub.cases
        .record_therapy_event(RecordTherapyEventRequest {
            meta: meta("fill-letter"),
            case_id: case_id.clone(),
            kind: TherapyEventKind::Fill as i32,
            at: Some(timestamp(now - TimeDelta::days(25))),
            days_supply: 30,
        })
        .await
        .unwrap_or_else(|e| panic!("fill: {e}"));

    let sent = |channel: Channel| {
        let attempts = hub.attempts.clone();
        let case_id = case_id.clone();
        async move {
            attempts
                .wait_for(
                    &format!("a {} sent", channel.short_name()),
                    WAIT,
                    |e| match &e.payload {
                        Some(Payload::AttemptSent(s))
                            if e.case_id == case_id && s.channel == channel as i32 =>
                        {
                            Some(s.provider_message_id.clone())
                        }
                        _ => None,
                    },
                )
                .await
        }
    };
    let letter_id = sent(Channel::Mail).await;
    let letters = hub.lob.received();
    assert_eq!(letters.len(), 1, "one letter");
    assert_eq!(letters[0].id, letter_id);
    assert_eq!(
        letters[0].to.get("address_line1").map(String::as_str),
        Some("233 South Wacker Drive"),
        "to the address on the case"
    );
    assert!(hub.sms.received().is_empty(), "the letter came first");

    assert_eq!(
        hub.lob
            .report(&letter_id, "letter.returned_to_sender")
            .await,
        Some(200)
    );
    sent(Channel::Sms).await;
    let texts = hub.sms.received();
    assert_eq!(texts.len(), 1, "the step fell back to one text");
    assert_eq!(texts[0].to, "+13125550142");
    assert_eq!(hub.lob.received().len(), 1, "no second letter");
    let _ = std::fs::remove_dir_all(&programs);
}
