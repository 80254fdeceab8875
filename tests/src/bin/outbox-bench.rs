//! Outbox throughput, measured end to end and against raw Kafka on the same broker.
//!
//! `cargo run --release -p touchpoint-tests --bin outbox-bench -- [EVENTS] [CASES]`
//! (defaults 100000 and 1000). Uses the test harness: a fresh database on
//! `DATABASE_URL`'s server and `KAFKA_BROKERS` or a Tansu broker it starts.
//!
//! 1. Outbox: writers commit EVENTS probe events (100 per transaction) while the
//!    relay publishes and the inbox consumer applies them; events/s is EVENTS over
//!    the time from the first commit to the last effect.
//! 2. Raw: the same keys and encoded envelopes produced with an idempotent rdkafka
//!    producer and consumed by a plain consumer, from first send to last receipt.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::future::try_join_all;
use prost::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use touchpoint_platform::outbox::OutgoingEvent;
use touchpoint_platform::shutdown::Shutdown;
use touchpoint_platform::testkit::{self, TestDatabase};
use touchpoint_platform::topics::{self, Stream, Topics};
use touchpoint_platform::{db, kafka};
use touchpoint_tests::spine;

const EVENTS_PER_TRANSACTION: usize = 100;
const WRITERS: usize = 4;
const WAIT: Duration = Duration::from_secs(600);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let events: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()
        .context("EVENTS must be a number")?
        .unwrap_or(100_000);
    let cases: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()
        .context("CASES must be a number")?
        .unwrap_or(1_000);
    if events == 0 || cases == 0 {
        bail!("EVENTS and CASES must be above 0");
    }

    let database = TestDatabase::fresh().await;
    let prefix = testkit::unique_prefix();
    let mut config = testkit::platform_config("outbox-bench", &database, &prefix);
    config.consumer.batch_size = 2000;
    config.outbox.batch_size = 2000;
    topics::bootstrap(&config.kafka).await?;
    let topic = Topics::new(prefix.clone()).name(Stream::Case);
    println!(
        "outbox-bench: {events} events over {cases} cases, {} partitions, broker {}",
        config.kafka.partitions, config.kafka.brokers
    );

    let events_to_send: Vec<OutgoingEvent> = (0..events)
        .map(|i| {
            spine::probe(
                &topic,
                &format!("case-{:05}", i % cases),
                (i / cases) as u64 + 1,
                "",
            )
        })
        .collect();

    // 1. Through the outbox.
    let producer_pool = db::connect(
        &config.database,
        spine::PRODUCER_SCHEMA,
        &spine::PRODUCER_MIGRATIONS,
    )
    .await?;
    let consumer_pool = db::connect(
        &config.database,
        spine::CONSUMER_SCHEMA,
        &spine::CONSUMER_MIGRATIONS,
    )
    .await?;
    let shutdown = Shutdown::new();
    let relay = spine::relay(&producer_pool, &config)?;
    shutdown.spawn(relay.run(shutdown.token()));
    let consumer = spine::consumer(&consumer_pool, &config);
    let token = shutdown.token();
    shutdown.spawn(async move {
        if let Err(error) = consumer.run(token).await {
            eprintln!("consumer stopped: {error}");
        }
    });
    // Warm up: the consumer group has joined once one event has made the trip.
    spine::append(&producer_pool, &[spine::probe(&topic, "warm-up", 0, "")]).await?;
    wait_for_effects(&consumer_pool, 1).await?;

    let started = Instant::now();
    let chunks: Vec<&[OutgoingEvent]> = events_to_send.chunks(EVENTS_PER_TRANSACTION).collect();
    let per_writer = chunks.len().div_ceil(WRITERS);
    let writers = chunks.chunks(per_writer.max(1)).map(|mine| {
        let pool = producer_pool.clone();
        async move {
            for chunk in mine {
                spine::append(&pool, chunk).await?;
            }
            anyhow::Ok(())
        }
    });
    try_join_all(writers).await?;
    let committed = started.elapsed();
    let mut relayed = None;
    let deadline = Instant::now() + WAIT;
    loop {
        if relayed.is_none()
            && touchpoint_platform::outbox::unsent_count(&producer_pool).await? == 0
        {
            relayed = Some(started.elapsed());
        }
        let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM spine_effects")
            .fetch_one(&consumer_pool)
            .await?;
        if applied > events as i64 {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {applied} of {events} effects after {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let relayed = relayed.unwrap_or_else(|| started.elapsed());
    let outbox_elapsed = started.elapsed();
    shutdown.drain(Duration::from_secs(30)).await;
    let outbox_rate = events as f64 / outbox_elapsed.as_secs_f64();

    // 2. Raw rdkafka, same records, same broker, a fresh topic.
    let raw_topic = format!("{prefix}raw.bench");
    topics::create(&config.kafka, std::slice::from_ref(&raw_topic)).await?;
    let reader: StreamConsumer =
        kafka::consumer_config(&config.kafka, &format!("{prefix}raw-reader"))
            .set("enable.auto.offset.store", "true")
            .create()?;
    reader.subscribe(&[&raw_topic])?;
    let producer: FutureProducer = kafka::idempotent_producer_config(&config.kafka).create()?;
    producer
        .send(
            FutureRecord::to(&raw_topic)
                .key("warm-up")
                .payload("warm-up"),
            WAIT,
        )
        .await
        .map_err(|(e, _)| e)?;
    tokio::time::timeout(WAIT, reader.recv())
        .await
        .context("raw warm-up")??;

    let encoded: Vec<(String, Vec<u8>)> = events_to_send
        .iter()
        .map(|e| (e.envelope.case_id.clone(), e.envelope.encode_to_vec()))
        .collect();
    let started = Instant::now();
    let receiving = async {
        for _ in 0..events {
            tokio::time::timeout(WAIT, reader.recv())
                .await
                .context("raw consume")??;
        }
        anyhow::Ok(())
    };
    let sending = async {
        let mut deliveries = Vec::with_capacity(encoded.len());
        for (key, payload) in &encoded {
            let record = FutureRecord::to(&raw_topic).key(key).payload(payload);
            deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
        }
        for delivery in deliveries {
            delivery.await?.map_err(|(e, _)| e)?;
        }
        anyhow::Ok(())
    };
    tokio::try_join!(receiving, sending)?;
    let raw_elapsed = started.elapsed();
    let raw_rate = events as f64 / raw_elapsed.as_secs_f64();

    println!(
        "outbox end to end : {events} events in {:.2} s = {outbox_rate:.0} events/s (all committed after {:.2} s, all published after {:.2} s)",
        outbox_elapsed.as_secs_f64(),
        committed.as_secs_f64(),
        relayed.as_secs_f64()
    );
    println!(
        "raw rdkafka       : {events} events in {:.2} s = {raw_rate:.0} events/s",
        raw_elapsed.as_secs_f64()
    );
    println!("ratio outbox/raw  : {:.2}", outbox_rate / raw_rate);
    Ok(())
}

async fn wait_for_effects(pool: &sqlx::PgPool, expected: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM spine_effects")
            .fetch_one(pool)
            .await?;
        if applied >= expected {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {applied} of {expected} effects after {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
