//! Case service figures with a loaded database.
//!
//! `cargo run --release -p touchpoint-tests --bin cases-bench -- [CASES] [EVENTS_PER_CASE]`
//! (defaults 100000 and 10, i.e. 1,000,000 timeline events). Uses the test harness:
//! a fresh database on `DATABASE_URL`'s server and `KAFKA_BROKERS` or a Tansu broker.
//!
//! Loads the cases and their timelines with bulk SQL, starts the real service, then
//! prints: `OpenCase` throughput (16 concurrent clients), `GetCase` and
//! `FindCasesByContact` latency p50/p99 at a steady 500 requests/s, and the lag
//! from each new case's event to its record on `touchpoint.case.v1`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::Utc;
use futures::StreamExt as _;
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use tokio::sync::Mutex;
use touchpoint_platform::envelope::{decode, instant};
use touchpoint_platform::shutdown::Shutdown;
use touchpoint_platform::testkit::{self, TestDatabase};
use touchpoint_platform::topics::{Stream, Topics};
use touchpoint_platform::{db, kafka};
use touchpoint_proto::v1::case_service_client::CaseServiceClient;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    CommandMeta, FindCasesByContactRequest, GetCaseRequest, Language, OpenCaseRequest,
};
use touchpoint_tests::seed::{self, person};

const OPEN_REQUESTS: usize = 5_000;
const OPEN_CONCURRENCY: usize = 16;
const RATE: u64 = 500;
const LATENCY_SECONDS: u64 = 10;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let cases: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()
        .context("CASES must be a number")?
        .unwrap_or(100_000);
    let per_case: i64 = args
        .next()
        .map(|a| a.parse())
        .transpose()
        .context("EVENTS_PER_CASE must be a number")?
        .unwrap_or(10);
    if cases == 0 || per_case <= 0 {
        bail!("CASES and EVENTS_PER_CASE must be above 0");
    }

    let database = TestDatabase::fresh().await;
    let prefix = testkit::unique_prefix();
    let mut platform = testkit::platform_config("cases", &database, &prefix);
    platform.database.max_connections = 20;
    platform.outbox.poll_interval = Duration::from_millis(20);

    // Migrate first, then load in bulk as if the service had been running for years.
    let pool = db::connect(
        &platform.database,
        touchpoint_cases::SPEC.schema,
        touchpoint_cases::SPEC.migrations,
    )
    .await?;
    let started = Instant::now();
    let case_ids = seed::cases_with_notes(&pool, cases, per_case, "+1312").await?;
    println!(
        "cases-bench: loaded {cases} cases and {} timeline events in {:.1} s",
        cases as i64 * per_case,
        started.elapsed().as_secs_f64()
    );

    let shutdown = Shutdown::new();
    let addr =
        touchpoint_cases::start(touchpoint_cases::Config::new(platform.clone()), &shutdown).await?;
    let client = CaseServiceClient::new(testkit::channel(addr).await);

    // Publish lag: a reader on touchpoint.case.v1 notes when each CaseOpened arrives.
    let lags = Arc::new(Mutex::new(Vec::<f64>::new()));
    let reader: StreamConsumer =
        kafka::consumer_config(&platform.kafka, &format!("{prefix}lag")).create()?;
    reader.subscribe(&[&Topics::new(prefix.clone()).name(Stream::Case)])?;
    let reading = {
        let lags = lags.clone();
        tokio::spawn(async move {
            let mut stream = reader.stream();
            while let Some(Ok(record)) = stream.next().await {
                let Ok((envelope, _)) = decode(record.payload()) else {
                    continue;
                };
                let occurred = envelope.occurred_at.as_ref().and_then(instant);
                if let (Some(Payload::CaseOpened(_)), Some(occurred)) =
                    (&envelope.payload, occurred)
                {
                    let lag = (Utc::now() - occurred)
                        .num_microseconds()
                        .unwrap_or(i64::MAX);
                    lags.lock().await.push(lag as f64 / 1000.0);
                }
            }
        })
    };

    // Warm up: the reader has joined its group once it sees a first case.
    let mut warm = client.clone();
    warm.open_case(open_request(OPEN_REQUESTS)).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while lags.lock().await.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lags.lock().await.clear();

    // OpenCase throughput.
    let started = Instant::now();
    let results: Vec<_> = futures::stream::iter(0..OPEN_REQUESTS)
        .map(|i| {
            let mut client = client.clone();
            async move { client.open_case(open_request(i)).await }
        })
        .buffer_unordered(OPEN_CONCURRENCY)
        .collect()
        .await;
    let open_elapsed = started.elapsed();
    let failed = results.iter().filter(|r| r.is_err()).count();
    if failed > 0 {
        bail!("{failed} OpenCase calls failed");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while lags.lock().await.len() < OPEN_REQUESTS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reading.abort();
    let mut seen_lag = lags.lock().await.clone();
    // Commit to acknowledged on the topic: the outbox row is written in the command's
    // transaction and marked sent once the broker has acknowledged the record.
    let mut publish_lag: Vec<f64> = sqlx::query_scalar(
        "SELECT (EXTRACT(EPOCH FROM (sent_at - created_at)) * 1000)::float8 FROM outbox
         WHERE sent_at IS NOT NULL AND event_type = 'touchpoint.v1.CaseOpened'",
    )
    .fetch_all(&pool)
    .await?;

    // Latency at a steady rate.
    let ids = Arc::new(case_ids);
    let get = paced(|i| {
        let mut client = client.clone();
        let ids = ids.clone();
        async move {
            let case_id = ids[(i * 7919) % ids.len()].clone();
            client
                .get_case(GetCaseRequest { case_id })
                .await
                .map(|_| ())
        }
    })
    .await?;
    let find = paced(|i| {
        let mut client = client.clone();
        let cases = ids.len();
        async move {
            let n = (i * 7919) % cases;
            let contact = format!("(312) {:03}-{:04}", 200 + n / 10_000, n % 10_000);
            client
                .find_cases_by_contact(FindCasesByContactRequest { contact })
                .await
                .map(|r| {
                    debug_assert_eq!(r.get_ref().case_ids.len(), 1);
                })
        }
    })
    .await?;
    shutdown.drain(Duration::from_secs(30)).await;

    println!(
        "OpenCase           : {OPEN_REQUESTS} in {:.2} s = {:.0} /s ({OPEN_CONCURRENCY} concurrent clients)",
        open_elapsed.as_secs_f64(),
        OPEN_REQUESTS as f64 / open_elapsed.as_secs_f64()
    );
    println!(
        "GetCase @ {RATE}/s     : p50 {:.2} ms  p99 {:.2} ms  ({} requests)",
        pct(&mut get.clone(), 50.0),
        pct(&mut get.clone(), 99.0),
        get.len()
    );
    println!(
        "FindCasesByContact : p50 {:.2} ms  p99 {:.2} ms  ({} requests)",
        pct(&mut find.clone(), 50.0),
        pct(&mut find.clone(), 99.0),
        find.len()
    );
    println!(
        "publish lag        : p50 {:.1} ms  p99 {:.1} ms  (commit to broker ack, {} records)",
        pct(&mut publish_lag, 50.0),
        pct(&mut publish_lag, 99.0),
        publish_lag.len()
    );
    println!(
        "seen by a consumer : p50 {:.1} ms  p99 {:.1} ms  (event to consumer, {} of {OPEN_REQUESTS} records)",
        pct(&mut seen_lag, 50.0),
        pct(&mut seen_lag, 99.0),
        seen_lag.len()
    );
    Ok(())
}

/// Runs `call(i)` at `RATE` per second for `LATENCY_SECONDS`, each call on its own
/// task (open loop: a slow answer does not slow the schedule); returns latencies in ms.
async fn paced<F, Fut>(call: F) -> anyhow::Result<Vec<f64>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>> + Send + 'static,
{
    let total = (RATE * LATENCY_SECONDS) as usize;
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        ticker.tick().await;
        let request = call(i);
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            request
                .await
                .map(|()| started.elapsed().as_secs_f64() * 1000.0)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.push(
            task.await?
                .map_err(|s| anyhow::anyhow!("request failed: {}", s.code()))?,
        );
    }
    Ok(latencies)
}

fn pct(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * (values.len() - 1) as f64).round() as usize;
    values[rank.min(values.len() - 1)]
}

fn open_request(i: usize) -> OpenCaseRequest {
    OpenCaseRequest {
        meta: Some(CommandMeta {
            request_id: format!("bench-open-{i}"),
            expected_version: None,
            actor: "bench".into(),
        }),
        program_id: "adherence".into(),
        language: Language::En as i32,
        time_zone: "America/New_York".into(),
        patient: Some(person(&format!("+1617{:07}", 2_000_000 + i))),
        caregiver: None,
        prescriber_fax: String::new(),
        enrolled_at: None,
    }
}
