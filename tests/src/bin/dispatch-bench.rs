//! Dispatch throughput: attempts handed to the sandbox SMS provider (rate limits
//! lifted) and to the local SMTP server, in clear and over STARTTLS.
//!
//! `cargo run --release -p touchpoint-tests --bin dispatch-bench -- [COUNT]`
//! (default 50000 each). Uses the test harness: a fresh database on
//! `DATABASE_URL`'s server and `KAFKA_BROKERS` or a Tansu broker.
//!
//! For each channel: the service runs with the shipped programs; COUNT cases
//! (New York, SMS and email consent) are published to `touchpoint.case.v1` and
//! taken in first. Then COUNT `OutreachRequested` are published at once, and the
//! clock runs from the moment the first is on the broker until every attempt is
//! recorded sent, and until every `AttemptSent` is published. Prints attempts/s
//! and the lag from a request's publishing to its hand-off recorded, p50/p99.
//! `TOUCHPOINT_SEND_BATCH` sets the sender's batch as it does for the service.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, TimeDelta, Utc};
use futures::future::join_all;
use prost::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use touchpoint_dispatch::providers::email::{MailTls, StartTls, Unsubscribe};
use touchpoint_platform::clock::ClockConfig;
use touchpoint_platform::envelope::timestamp;
use touchpoint_platform::shutdown::Shutdown;
use touchpoint_platform::testkit::events::{NewCase, consent, event, person};
use touchpoint_platform::testkit::{self, TestDatabase};
use touchpoint_platform::tls::DevCa;
use touchpoint_platform::topics::{self, Stream, Topics};
use touchpoint_platform::{db, kafka};
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    Channel, ContactPoint, Envelope, Language, OutreachRequested, contact_point,
};
use touchpoint_sandbox::Sandbox;
use touchpoint_sandbox::smtp::{SmtpOptions, SmtpServer};
use touchpoint_tests::bench::percentile;

/// Tuesday 2026-04-07, 10:00 in New York: the adherence program's window is open.
const START: &str = "2026-04-07T14:00:00Z";
const PUBLISH_CHUNK: usize = 5_000;
const LIMIT: Duration = Duration::from_secs(900);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()
        .context("COUNT must be a number")?
        .unwrap_or(50_000);
    let batch: Option<usize> = std::env::var("TOUCHPOINT_SEND_BATCH")
        .ok()
        .map(|b| b.parse())
        .transpose()
        .context("TOUCHPOINT_SEND_BATCH must be a number")?;
    println!("dispatch-bench: {count} attempts per channel");
    for (channel, tls) in [
        (Channel::Sms, false),
        (Channel::Email, false),
        (Channel::Email, true),
    ] {
        run(channel, tls, count, batch).await?;
    }
    Ok(())
}

async fn run(
    channel: Channel,
    tls: bool,
    count: usize,
    batch: Option<usize>,
) -> anyhow::Result<()> {
    let sms = Sandbox::start("ACbench", "bench-token").await?;
    let ca = DevCa::generate()?;
    let smtp = SmtpServer::start(SmtpOptions {
        credentials: None,
        tls: tls.then(|| ca.issue(&["127.0.0.1"])).transpose()?,
    })
    .await?;
    let database = TestDatabase::fresh().await;
    let prefix = testkit::unique_prefix();
    let start = DateTime::parse_from_rfc3339(START)?.to_utc();
    let mut platform = testkit::platform_config("dispatch", &database, &prefix);
    let epoch = Utc::now();
    platform.clock = ClockConfig::Accelerated {
        start,
        epoch,
        speed: 1.0,
    };
    let programs = concat!(env!("CARGO_MANIFEST_DIR"), "/../programs");
    let mut config = touchpoint_dispatch::Config::new(platform.clone(), programs);
    config.sender.poll = Duration::from_millis(20);
    if let Some(batch) = batch {
        config.sender.batch = batch;
    }
    config.sms = vec![touchpoint_dispatch::SmsProvider {
        name: "primary".into(),
        base_url: sms.url(),
        account_sid: "ACbench".into(),
        auth_token: "bench-token".into(),
        from: "+15005550006".into(),
        rate: None,
    }];
    let smtp_addr = smtp.addr();
    config.smtp = Some(touchpoint_dispatch::SmtpRelay {
        host: smtp_addr.ip().to_string(),
        port: smtp_addr.port(),
        from: "Care Team <care@hub.example>".into(),
        credentials: None,
        rate: None,
        unsubscribe: Unsubscribe {
            url: "http://127.0.0.1:9/unsubscribe/email".into(),
            key: "unsubscribe-key".into(),
        },
        tls: MailTls {
            mode: if tls {
                StartTls::Required
            } else {
                StartTls::Never
            },
            extra_roots: Some(ca.cert_pem().into_bytes()),
        },
    });
    topics::bootstrap(&platform.kafka).await?;
    let shutdown = Shutdown::new();
    touchpoint_dispatch::start(config, &shutdown).await?;
    let pool = db::connect(
        &platform.database,
        touchpoint_dispatch::SPEC.schema,
        touchpoint_dispatch::SPEC.migrations,
    )
    .await?;
    let producer: FutureProducer =
        kafka::idempotent_producer_config(&testkit::kafka_config(&prefix)).create()?;
    let topics = Topics::new(prefix.clone());

    let cases: Vec<(Stream, Envelope)> = (0..count)
        .flat_map(|i| {
            let case_id = format!("case-{i:06}");
            [
                (Stream::Case, opened(&case_id)),
                (Stream::Case, consent(&case_id, channel)),
            ]
        })
        .collect();
    publish(&producer, &topics, &cases).await?;
    wait_for(&pool, "SELECT count(*) FROM case_views", count).await?;

    let requests: Vec<(Stream, Envelope)> = (0..count)
        .map(|i| (Stream::Outreach, request(i, channel, start)))
        .collect();
    let began = Instant::now();
    publish(&producer, &topics, &requests).await?;
    let published = began.elapsed();
    wait_for(
        &pool,
        "SELECT count(*) FROM attempts WHERE state = 'sent'",
        count,
    )
    .await?;
    let all_sent = began.elapsed();
    wait_for(
        &pool,
        "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL",
        count,
    )
    .await?;
    let all_published = began.elapsed();

    let handed = match channel {
        Channel::Sms => sms.received().len(),
        _ => smtp.mails().len(),
    };
    if handed != count {
        bail!("the provider took {handed} messages for {count} attempts");
    }
    // The request's time is the publisher's (real) clock, the sending time the
    // service's, which reads `start` at `epoch`.
    let times: Vec<(DateTime<Utc>, DateTime<Utc>)> =
        sqlx::query_as("SELECT requested_at, sent_at FROM attempts")
            .fetch_all(&pool)
            .await?;
    let mut lags: Vec<f64> = times
        .iter()
        .map(|(requested, sent)| {
            let requested = start + (*requested - epoch);
            (*sent - requested).num_microseconds().unwrap_or(0) as f64 / 1000.0
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    let name = match (channel, tls) {
        (Channel::Sms, _) => "SMS via the Twilio-speaking sandbox",
        (_, false) => "email via SMTP to the local server, in clear",
        (_, true) => "email via SMTP to the local server, over STARTTLS",
    };
    println!("\n{name}:");
    println!("  requests published : {:.1} s", published.as_secs_f64());
    println!(
        "  all sent           : {:.1} s  -> {:.0} attempts/s",
        all_sent.as_secs_f64(),
        count as f64 / all_sent.as_secs_f64()
    );
    println!(
        "  all AttemptSent published: {:.1} s  -> {:.0} events/s",
        all_published.as_secs_f64(),
        count as f64 / all_published.as_secs_f64()
    );
    println!(
        "  published -> hand-off recorded: p50 {:.0} ms  p99 {:.0} ms",
        percentile(&lags, 0.50),
        percentile(&lags, 0.99)
    );
    println!("  each message handed over once: {handed} taken for {count} attempts");
    shutdown.trigger();
    Ok(())
}

/// Publishes `events` in order, many in flight at once (the idempotent producer
/// keeps each partition's order).
async fn publish(
    producer: &FutureProducer,
    topics: &Topics,
    events: &[(Stream, Envelope)],
) -> anyhow::Result<()> {
    for chunk in events.chunks(PUBLISH_CHUNK) {
        let encoded: Vec<(String, &str, Vec<u8>)> = chunk
            .iter()
            .map(|(stream, e)| (topics.name(*stream), e.case_id.as_str(), e.encode_to_vec()))
            .collect();
        let sends = encoded.iter().map(|(topic, key, bytes)| {
            producer.send(
                FutureRecord::to(topic).key(*key).payload(bytes),
                Duration::from_secs(60),
            )
        });
        for sent in join_all(sends).await {
            sent.map_err(|(e, _)| anyhow::anyhow!("publish failed: {e}"))?;
        }
    }
    Ok(())
}

async fn wait_for(pool: &sqlx::PgPool, query: &str, count: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let n: i64 = sqlx::query_scalar(query).fetch_one(pool).await?;
        if n as usize >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{n} of {count} after {} s: {query}", LIMIT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A patient's case, named but with no contact points: each request names
/// its destination.
fn opened(case_id: &str) -> Envelope {
    NewCase::default()
        .language(Language::En)
        .patient(person("Pat", "Bench", "", ""))
        .event(case_id)
}

fn request(i: usize, channel: Channel, start: DateTime<Utc>) -> Envelope {
    let case_id = format!("case-{i:06}");
    let destination = match channel {
        Channel::Email => contact_point::Value::Email(format!("patient{i}@example.com")),
        _ => contact_point::Value::PhoneE164(format!("+1212{:07}", i)),
    };
    event(
        &case_id,
        Payload::OutreachRequested(OutreachRequested {
            attempt_id: uuid::Uuid::now_v7().to_string(),
            program_id: "adherence".into(),
            step_id: "welcome".into(),
            channel: channel as i32,
            template_id: "welcome".into(),
            language: Language::En as i32,
            destination: Some(ContactPoint {
                value: Some(destination),
            }),
            due_at: Some(timestamp(start)),
            not_after: Some(timestamp(start + TimeDelta::hours(9))),
            attempt_number: 1,
            ..OutreachRequested::default()
        }),
    )
}
