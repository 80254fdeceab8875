//! The demo `touchpoint up` runs, against the four services of this test on an
//! accelerated clock (a day every two seconds): its simulated patients get
//! their program's texts and email, answer, opt out and report a side effect,
//! and each of those shows on their case's timeline and in the counts.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use touchpoint_cli::demo::{self, cast::Reply};
use touchpoint_dispatch::providers::email::{MailTls, StartTls};
use touchpoint_dispatch::sandbox::Sandbox;
use touchpoint_dispatch::sandbox::smtp::{SmtpOptions, SmtpServer};
use touchpoint_platform::clock::ClockConfig;
use touchpoint_platform::shutdown::Shutdown;
use touchpoint_platform::testkit::{self, TestDatabase, utc};
use touchpoint_platform::topics::{Stream, Topics};
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{Channel, Language, TimelineEntry};

/// A Monday morning in New York, clear of the programs' no-contact dates.
const START: &str = "2027-01-04T13:00:00Z";
const SPEED: f64 = 43_200.0;
const DAYS: i64 = 20;
const SMS_TOKEN: &str = "demo-sms-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_shows_texts_answers_an_opt_out_a_side_effect_and_an_email_fallback() {
    testkit::init_tracing();
    let database = TestDatabase::fresh().await;
    let prefix = testkit::unique_prefix();
    let clock = ClockConfig::Accelerated {
        start: utc(START),
        epoch: Utc::now(),
        speed: SPEED,
    };
    let config = |name: &str| {
        let mut config = testkit::platform_config(name, &database, &prefix);
        config.clock = clock.clone();
        config
    };
    let shutdown = Shutdown::new();
    let programs = concat!(env!("CARGO_MANIFEST_DIR"), "/../programs");
    let cases = touchpoint_cases::start(
        touchpoint_cases::Config {
            platform: config("cases"),
        },
        &shutdown,
    )
    .await
    .unwrap_or_else(|e| panic!("cases did not start: {e}"));
    touchpoint_cadence::start(
        touchpoint_cadence::Config::new(config("cadence"), programs),
        &shutdown,
    )
    .await
    .unwrap_or_else(|e| panic!("cadence did not start: {e}"));

    let sms = Sandbox::start("ACdemo", "provider-token")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let smtp = SmtpServer::start(SmtpOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut dispatch = touchpoint_dispatch::Config::new(config("dispatch"), programs);
    dispatch.sender.poll = Duration::from_millis(50);
    dispatch.sms = vec![touchpoint_dispatch::SmsProvider {
        name: "primary".into(),
        base_url: sms.url(),
        account_sid: "ACdemo".into(),
        auth_token: "provider-token".into(),
        from: "+15005550006".into(),
        rate: None,
    }];
    dispatch.smtp = Some(touchpoint_dispatch::SmtpRelay {
        host: smtp.addr().ip().to_string(),
        port: smtp.addr().port(),
        from: "Care Team <care@hub.example>".into(),
        credentials: None,
        rate: None,
        tls: MailTls {
            mode: StartTls::Never,
            extra_roots: None,
        },
    });
    touchpoint_dispatch::start(dispatch, &shutdown)
        .await
        .unwrap_or_else(|e| panic!("dispatch did not start: {e}"));
    let mut routing = touchpoint_routing::Config::new(config("routing"));
    routing.secrets.sms_auth_token = Some(SMS_TOKEN.into());
    let routing = touchpoint_routing::start(routing, &shutdown)
        .await
        .unwrap_or_else(|e| panic!("routing did not start: {e}"));

    let report = demo::run(demo::Settings {
        cases: format!("http://{cases}"),
        routing: format!("http://{}", routing.grpc),
        sms_webhook: format!("http://{}/inbound/sms", routing.http),
        sms_token: SMS_TOKEN.into(),
        sms_number: "+15005550006".into(),
        clock: clock.build(),
        days: DAYS,
    })
    .await
    .unwrap_or_else(|e| panic!("the demo failed: {e:#}"));
    // `touchpoint kpi` reads the same story back from cases.
    let counted =
        touchpoint_cli::kpi::tally_all(&format!("http://{cases}"), Duration::from_secs(1))
            .await
            .unwrap_or_else(|e| panic!("kpi: {e:#}"));
    // `touchpoint events tail` decodes the case topic, without patient data.
    let mut lines = Vec::new();
    let tailed = touchpoint_cli::events::tail(
        &testkit::kafka_config(&prefix),
        &Topics::new(prefix.clone()).name(Stream::Case),
        touchpoint_cli::events::From::Start,
        // The case topic holds at least 29 records: six cases opened, eleven
        // consents, six assignments, six therapy events.
        Some(20),
        tokio::time::sleep(Duration::from_secs(60)),
        |line| lines.push(line),
    )
    .await
    .unwrap_or_else(|e| panic!("tail: {e:#}"));
    shutdown.trigger();
    assert_eq!(tailed, 20, "the tail read the topic within a minute");
    assert!(
        lines.iter().any(|l| l.contains("case opened")),
        "{lines:#?}"
    );
    assert!(lines.iter().all(|l| !l.contains("not an event envelope")));
    for patient in &demo::cast::PATIENTS {
        for secret in [patient.name.0, patient.name.1, patient.mobile] {
            assert!(lines.iter().all(|l| !l.contains(secret)), "{secret} shown");
        }
    }
    assert_eq!(counted.cases(), demo::cast::PATIENTS.len());
    assert_eq!(
        (counted.ae_flags, counted.opt_outs, counted.replies),
        (
            report.tally.ae_flags,
            report.tally.opt_outs,
            report.tally.replies
        )
    );
    assert!(counted.sent_total() >= report.tally.sent_total());

    let tally = &report.tally;
    assert!(tally.sent.get("sms").is_some_and(|n| *n >= 4), "{tally:?}");
    assert_eq!(tally.ae_flags, 1, "{tally:?}");
    assert_eq!(tally.opt_outs, 1, "{tally:?}");
    let repliers = demo::cast::PATIENTS
        .iter()
        .filter(|p| p.reply.is_some())
        .count();
    assert_eq!(tally.replies, repliers, "each replying patient, once");
    // Every reply but the opt-out goes to a person or a queue.
    assert_eq!(tally.routed, repliers - 1, "{tally:?}");

    let story = |pick: &dyn Fn(&demo::cast::Patient) -> bool| -> &Vec<TimelineEntry> {
        report
            .timelines
            .iter()
            .find(|(p, _)| pick(p))
            .map(|(_, entries)| entries)
            .unwrap_or_else(|| panic!("no such demo patient"))
    };
    let payloads = |entries: &Vec<TimelineEntry>| -> Vec<Payload> {
        entries
            .iter()
            .filter_map(|e| e.event.as_ref()?.payload.clone())
            .collect()
    };

    // The patient who answers: their reply answers the text and reaches their
    // coordinator.
    let answering = payloads(story(&|p| {
        matches!(p.reply, Some(Reply::Answer(_))) && p.program == "adherence"
    }));
    let reply = answering.iter().find_map(|p| match p {
        Payload::InboundReceived(i) => Some(i.clone()),
        _ => None,
    });
    assert!(
        reply.is_some_and(|r| !r.in_reply_to_attempt_id.is_empty()),
        "the answer names the text it answers"
    );
    assert!(answering.iter().any(|p| matches!(p, Payload::ContactRouted(r) if r.rule == "coordinator" && r.coordinator_id == "coord-maria")));

    // The Spanish patient who opts out: Spanish content, ALTO confirmed by a
    // text of its own, no program text after it.
    let opting_out = payloads(story(&|p| matches!(p.reply, Some(Reply::OptOut(_)))));
    let opted_at = opting_out
        .iter()
        .position(|p| matches!(p, Payload::OptOutReceived(_)))
        .unwrap_or_else(|| panic!("no opt-out on the timeline"));
    let texts: Vec<(usize, i32)> = opting_out
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            Payload::AttemptSent(s) if s.channel == Channel::Sms as i32 => Some((i, s.language)),
            _ => None,
        })
        .collect();
    assert!(
        texts
            .iter()
            .all(|(_, language)| *language == Language::Es as i32)
    );
    let confirmation = opting_out
        .iter()
        .position(|p| matches!(p, Payload::OutreachRequested(o) if o.step_id == "keyword-reply"));
    assert!(confirmation.is_some(), "ALTO is answered");
    let program_texts_after = opting_out[opted_at..]
        .iter()
        .filter(|p| matches!(p, Payload::OutreachRequested(o) if o.channel == Channel::Sms as i32 && o.step_id != "keyword-reply"))
        .count();
    assert_eq!(program_texts_after, 0, "no program text after ALTO");

    // The side effect: flagged with a report due 24 hours after receipt.
    let reporting = payloads(story(&|p| matches!(p.reply, Some(Reply::SideEffect(_)))));
    let flag = reporting
        .iter()
        .find_map(|p| match p {
            Payload::AdverseEventSuspected(f) => Some(f.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no flag"));
    let (received, due) = (
        flag.received_at.map(|t| t.seconds).unwrap_or_default(),
        flag.report_due_at.map(|t| t.seconds).unwrap_or_default(),
    );
    assert_eq!(due - received, TimeDelta::hours(24).num_seconds());

    // No SMS consent: reached by email.
    let emailed = payloads(story(&|p| !p.consents.contains(&Channel::Sms)));
    assert!(
        emailed
            .iter()
            .any(|p| matches!(p, Payload::AttemptSent(s) if s.channel == Channel::Email as i32))
    );
    assert!(
        !emailed
            .iter()
            .any(|p| matches!(p, Payload::AttemptSent(s) if s.channel == Channel::Sms as i32))
    );
    assert!(!smtp.mails().is_empty(), "the mail reached the SMTP server");
}
