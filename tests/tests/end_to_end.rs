//! End to end, across processes: the four service binaries run as processes
//! against PostgreSQL and the broker, on an accelerated clock (a day every four
//! seconds), with the providers' stand-ins (SMS, SMTP) and an OTLP collector in
//! the test. The demo `touchpoint up` runs drives them: its simulated patients get
//! their program's texts and email, answer, opt out and report a side effect.
//!
//! Checked: a reply reaches the coordinator and answers its attempt; no SMS
//! consent falls back to email; ALTO is confirmed and later texts suppressed;
//! the Spanish patient gets Spanish content; the side effect is flagged with its
//! 24-hour due time; an outside reader of `touchpoint.case.v1` sees the cases'
//! story without patient data; one trace id spans cadence, dispatch and cases
//! for one attempt; every service's metrics (outbox backlog, consumer lag,
//! attempts by outcome, provider and gRPC call times) reach the collector;
//! every service stops cleanly on SIGTERM; no patient's name, number, address
//! or message text is in any service's log, span or metric.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use touchpoint_cli::demo::{self, cast::Reply};
use touchpoint_cli::kpi_summary::Summary;
use touchpoint_cli::stack::{self, Stack};
use touchpoint_platform::clock::ClockConfig;
use touchpoint_platform::testkit::otlp::{Collector, ExportedSpan};
use touchpoint_platform::testkit::{self, TestDatabase, eventually, utc};
use touchpoint_platform::topics::{Stream, Topics};
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{Channel, Language, TimelineEntry};
use touchpoint_sandbox::smtp::{SmtpOptions, SmtpServer};
use touchpoint_sandbox::{Received, Sandbox};
use touchpoint_tests::system::{self, local_addr};

/// A Monday morning in New York, clear of the programs' no-contact dates.
const START: &str = "2027-01-04T13:00:00Z";
/// A day every four seconds: half the demo's pace, so that a reaction delayed
/// by a loaded machine costs fewer simulated hours.
const SPEED: f64 = 21_600.0;
const DAYS: i64 = 12;
const SMS_TOKEN: &str = "demo-sms-token";
const UNSUBSCRIBE_KEY: &str = "demo-unsubscribe-key";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_story_of_six_patients_across_the_four_service_processes() {
    let database = TestDatabase::fresh().await;
    let prefix = testkit::unique_prefix();
    let clock = ClockConfig::Accelerated {
        start: utc(START),
        epoch: Utc::now(),
        speed: SPEED,
    };
    let collector = Collector::start().await;
    let sms = std::sync::Arc::new(
        Sandbox::start(system::SMS_ACCOUNT, system::SMS_AUTH_TOKEN)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    );
    // Every text reaches its handset, and the provider says so.
    let delivering = {
        let sms = sms.clone();
        tokio::spawn(async move {
            let mut reported = 0;
            loop {
                sms.deliver_new(&mut reported).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let smtp = SmtpServer::start(SmtpOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let log_dir = std::env::temp_dir().join(format!("touchpoint-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&log_dir).unwrap_or_else(|e| panic!("{e}"));
    let routing_http = local_addr();
    let mut services = system::services(
        &database,
        &prefix,
        &PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../programs")),
        sms.url(),
        &log_dir,
    );
    services.common.extend(
        [
            ("TOUCHPOINT_OUTBOX_POLL_MS", "50".to_owned()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint()),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500".to_owned()),
            (
                "RUST_LOG",
                "info,touchpoint_platform=debug,touchpoint_cases=debug,\
                 touchpoint_cadence=debug,touchpoint_dispatch=debug,touchpoint_routing=debug"
                    .into(),
            ),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    services.own.extend(
        [
            ("TOUCHPOINT_SEND_POLL_MS", "50".to_owned()),
            ("TOUCHPOINT_SMTP_HOST", smtp.addr().ip().to_string()),
            ("TOUCHPOINT_SMTP_PORT", smtp.addr().port().to_string()),
            (
                "TOUCHPOINT_SMTP_FROM",
                "Care Team <care@hub.example>".into(),
            ),
            ("TOUCHPOINT_SMTP_TLS", "none".into()),
            (
                "TOUCHPOINT_UNSUBSCRIBE_URL",
                format!("http://{routing_http}/unsubscribe/email"),
            ),
            ("TOUCHPOINT_UNSUBSCRIBE_KEY", UNSUBSCRIBE_KEY.into()),
        ]
        .map(|(k, v)| ("dispatch", k.to_owned(), v))
        .into_iter()
        .chain(
            [
                ("TOUCHPOINT_HTTP_ADDR", routing_http.clone()),
                ("TOUCHPOINT_INBOUND_SMS_AUTH_TOKEN", SMS_TOKEN.into()),
                ("TOUCHPOINT_UNSUBSCRIBE_KEY", UNSUBSCRIBE_KEY.into()),
            ]
            .map(|(k, v)| ("routing", k.to_owned(), v)),
        ),
    );
    services.clock = Some(clock.clone());
    let mut processes = Stack::default();
    if let Err(error) = processes.start_services(&services).await {
        panic!("the services did not start: {error:#}");
    }
    let peer = |service: &str| {
        services
            .peer(service)
            .unwrap_or_else(|e| panic!("{service}: {e:#}"))
    };

    let report = demo::run(demo::Settings {
        cases: peer("cases"),
        routing: peer("routing"),
        sms_webhook: format!("http://{routing_http}/inbound/sms"),
        sms_token: SMS_TOKEN.into(),
        sms_number: system::SMS_FROM.into(),
        clock: clock.build(),
        days: DAYS,
    })
    .await
    .unwrap_or_else(|e| panic!("the demo failed: {e:#}"));
    // `touchpoint kpi` reads the story from cases' KPI projection.
    let ask = touchpoint_cli::kpi::Ask {
        from: report.kpis.from_day.clone(),
        to: report.kpis.to_day.clone(),
        programs: Vec::new(),
    };
    let counted = touchpoint_cli::kpi::settled(&peer("cases"), &ask, WAIT)
        .await
        .map(|answer| Summary::of(&answer))
        .unwrap_or_else(|e| panic!("kpi: {e:#}"));
    // An outside reader of the case topic, `touchpoint events tail`, decodes
    // every record, without patient data.
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
    assert_eq!(counted.behind, 0, "the projection caught up");
    assert_eq!(counted.enrolled, demo::cast::PATIENTS.len() as i64);
    assert_eq!(
        (counted.ae_flags, counted.opted_out, counted.inbound),
        (
            report.tally.ae_flags as i64,
            report.tally.opt_outs as i64,
            report.tally.replies as i64
        )
    );
    assert!(counted.attempted_total() >= report.tally.sent_total() as i64);
    // Every case was sent something; only those who answered were contacted.
    let repliers = demo::cast::PATIENTS
        .iter()
        .filter(|p| p.reply.is_some())
        .count() as i64;
    assert_eq!(
        (counted.first_send.count, counted.first_contact.count),
        (demo::cast::PATIENTS.len() as i64, repliers)
    );

    // The same KPIs as OpenTelemetry metrics (`touchpoint kpi --export`).
    let (stop_export, stopped) = tokio::sync::oneshot::channel::<()>();
    let exporting = {
        let (cases, endpoint, ask) = (peer("cases"), collector.endpoint(), ask.clone());
        tokio::spawn(async move {
            let stop = async {
                let _ = stopped.await;
            };
            let every = Duration::from_millis(200);
            touchpoint_cli::kpi_metrics::export(&cases, &ask, &endpoint, every, stop).await
        })
    };
    // Nobody reviews the demo's side effect: its flag stays open, and past the
    // 24 hours a report is due in by the demo's twelfth day.
    assert_eq!(counted.open_of("adverse_event"), (1, 1));
    let sms_rate = counted
        .contact_rates()
        .into_iter()
        .find(|(channel, ..)| *channel == "sms")
        .map(|(.., rate)| rate);
    eventually("the KPIs at the collector", WAIT, || {
        let exported = (
            collector.latest("touchpoint.kpi.cases", &[]),
            collector.latest("touchpoint.kpi.ae_flags", &[]),
            collector.latest("touchpoint.kpi.ae_flags_open", &[]),
            collector.latest("touchpoint.kpi.contact_rate", &[("channel", "sms")]),
        );
        let wanted = (
            Some(6.0),
            Some(counted.ae_flags as f64),
            Some(1.0),
            sms_rate,
        );
        async move { (exported == wanted).then_some(()) }
    })
    .await;
    let _ = stop_export.send(());
    let exported = exporting
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| format!("{e:#}")));
    assert!(exported.is_ok(), "kpi --export: {exported:?}");

    // The services' own metrics, as an operator's collector takes them: each
    // service's outbox backlog and gRPC calls, the consumers' lag, dispatch's
    // attempts by outcome and the provider's answers.
    let outreach = Topics::new(prefix.clone()).name(Stream::Outreach);
    let sms_sent = report.tally.sent.get("sms").copied().unwrap_or_default() as f64;
    eventually("the services' metrics at the collector", WAIT, || {
        let backlogs: std::collections::BTreeSet<String> = collector
            .points("touchpoint.outbox.waiting")
            .into_iter()
            .map(|p| p.service)
            .collect();
        let served: std::collections::BTreeSet<String> = collector
            .points("rpc.server.call.duration")
            .into_iter()
            .filter(|p| p.attribute("rpc.grpc.status_code") == Some("0"))
            .map(|p| p.service)
            .collect();
        let lag = collector.points("touchpoint.consumer.lag").iter().any(|p| {
            p.service == "dispatch"
                && p.attribute("consumer") == Some("dispatch")
                && p.attribute("topic") == Some(outreach.as_str())
        });
        let sent = collector.latest(
            "touchpoint.attempts",
            &[("channel", "sms"), ("outcome", "sent")],
        );
        let answered = collector
            .points("touchpoint.provider.duration")
            .iter()
            .any(|p| {
                p.attribute("provider") == Some("primary")
                    && p.attribute("result") == Some("accepted")
            });
        let everyone: std::collections::BTreeSet<String> =
            stack::SERVICES.iter().map(|s| (*s).to_owned()).collect();
        let ready = backlogs == everyone
            && served.contains("cases")
            && served.contains("routing")
            && lag
            && sent.is_some_and(|n| n >= sms_sent)
            && answered;
        async move { ready.then_some(()) }
    })
    .await;

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
            Payload::AttemptSent(s) if s.channel() == Channel::Sms => Some((i, s.language)),
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
        .filter(|p| matches!(p, Payload::OutreachRequested(o) if o.channel() == Channel::Sms && o.step_id != "keyword-reply"))
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
            .any(|p| matches!(p, Payload::AttemptSent(s) if s.channel() == Channel::Email))
    );
    assert!(
        !emailed
            .iter()
            .any(|p| matches!(p, Payload::AttemptSent(s) if s.channel() == Channel::Sms))
    );
    assert!(!smtp.mails().is_empty(), "the mail reached the SMTP server");

    // One trace per attempt, from the cadence that asked for it through dispatch
    // to the case timeline.
    let attempt_id = answering
        .iter()
        .find_map(|p| match p {
            Payload::AttemptSent(s) => Some(s.attempt_id.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the answering patient was sent nothing"));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let story = trace_of(&collector.spans(), &attempt_id);
        let has = |service: &str, topic: Option<&str>| {
            story
                .iter()
                .any(|(s, _, t)| s == service && topic.is_none_or(|topic| t.ends_with(topic)))
        };
        // Cases applies the attempt's own events under it, not only the request.
        if has("cadence", None)
            && has("dispatch", Some(Stream::Outreach.base_name()))
            && has("cases", Some(Stream::Attempt.base_name()))
        {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let mut exported = std::collections::BTreeMap::<String, usize>::new();
            for span in collector.spans() {
                *exported
                    .entry(format!("{} {}", span.service, span.name))
                    .or_default() += 1;
            }
            panic!("the attempt's trace is not whole: {story:#?}\nspans exported: {exported:#?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    delivering.abort();
    let unclean = processes.stop().await;
    assert!(
        unclean.is_empty(),
        "did not stop cleanly on SIGTERM: {unclean:?}"
    );

    // No patient data in anything the services logged (at debug level for
    // Touchpoint's own code) or traced.
    let secrets = patient_data(&sms.received());
    let mut captured: Vec<(String, String)> = stack::SERVICES
        .iter()
        .map(|service| {
            let log = log_dir.join(format!("{service}.log"));
            let text =
                std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
            (format!("{service}'s log"), text)
        })
        .collect();
    assert!(
        captured.iter().all(|(_, text)| !text.is_empty()),
        "every service logged something"
    );
    captured.extend(collector.spans().into_iter().map(|span| {
        (
            format!("{}'s span {}", span.service, span.name),
            format!("{} {:?}", span.name, span.attributes),
        )
    }));
    captured.extend(collector.all_points().into_iter().map(|point| {
        (
            format!("{}'s metric {}", point.service, point.metric),
            format!("{:?}", point.attributes),
        )
    }));
    for (source, text) in &captured {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{source} holds {secret:?}");
        }
    }
    let _ = std::fs::remove_dir_all(&log_dir);
}

/// What no log line or span may hold: the demo patients' names, numbers and
/// addresses, the texts they send (an opt-out keyword is one word of a closed
/// list, recorded on purpose, so not among them) and every text sent to them.
fn patient_data(texts_sent: &[Received]) -> Vec<String> {
    let mut secrets = Vec::new();
    for patient in &demo::cast::PATIENTS {
        secrets.extend([patient.name.0, patient.name.1].map(str::to_owned));
        if !patient.mobile.is_empty() {
            secrets.push(patient.mobile.to_owned());
            secrets.push(patient.mobile.trim_start_matches("+1").to_owned());
        }
        if !patient.email.is_empty() {
            secrets.push(patient.email.to_owned());
        }
        if let Some(reply @ (Reply::Answer(_) | Reply::SideEffect(_))) = patient.reply {
            secrets.push(reply.text().to_owned());
        }
    }
    secrets.extend(texts_sent.iter().map(|text| text.body.clone()));
    assert!(
        texts_sent.len() >= 4 && secrets.len() > texts_sent.len() + 12,
        "the check has something to look for"
    );
    secrets
}

const WAIT: Duration = Duration::from_secs(60);

/// The spans of the trace in which cadence asked for `attempt_id`: (service,
/// span name, topic it applied a record of, if any).
fn trace_of(spans: &[ExportedSpan], attempt_id: &str) -> Vec<(String, String, String)> {
    let Some(trace) = spans
        .iter()
        .find(|s| s.attribute("attempt_id") == Some(attempt_id))
        .map(|s| s.trace_id.clone())
    else {
        return Vec::new();
    };
    spans
        .iter()
        .filter(|s| s.trace_id == trace)
        .map(|s| {
            let topic = s.attribute("topic").unwrap_or_default().to_owned();
            (s.service.clone(), s.name.clone(), topic)
        })
        .collect()
}
