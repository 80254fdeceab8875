//! Cadence due-loop figures with a loaded timer table.
//!
//! `cargo run --release -p touchpoint-tests --bin cadence-bench -- [SCHEDULED] [DUE] [STEADY_RATE]`
//! (defaults 1000000, 100000 and 1000). Uses the test harness: a fresh database on
//! `DATABASE_URL`'s server and `KAFKA_BROKERS` or a Tansu broker.
//!
//! Loads SCHEDULED touchpoints: SCHEDULED / 4 enrolled cases, each with four
//! steps planned 0, 30, 60 and 90 days after its enrolment. DUE cases have their
//! first step due at the instant the service starts (the burst); 30 seconds'
//! worth of cases at STEADY_RATE fall due one after another from 60 seconds
//! later (the steady phase); the rest are due in a month. The patients' zone is
//! chosen so the contact window is open during the run.
//!
//! Prints the burst's claim-and-emit throughput (due instant to the last
//! `OutreachRequested` on `touchpoint.outreach.v1`) and the lag from due time to
//! the record on the topic (broker-side create time), p50/p99, for the burst and
//! for the steady phase once caught up. `TOUCHPOINT_DUE_BATCH` sets the due loop's
//! batch as it does for the service.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use touchpoint_cadence::enrolment::{Destinations, Enrolment, NewEnrolment, PersonContacts, V7Ids};
use touchpoint_cadence::store::{self, Saved};
use touchpoint_platform::clock::ClockConfig;
use touchpoint_platform::envelope::{decode, instant};
use touchpoint_platform::shutdown::Shutdown;
use touchpoint_platform::testkit::{self, TestDatabase};
use touchpoint_platform::topics::{Stream, Topics};
use touchpoint_platform::{db, kafka};
use touchpoint_programs::{Program, parse};
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{Channel, Language};
use touchpoint_tests::bench::{percentile, zone_open_at};

const STEPS: usize = 4;
const LOAD_BATCH: usize = 5_000;
const STEADY_SECONDS: u64 = 30;
const STEADY_AFTER: TimeDelta = TimeDelta::seconds(60);

const PROGRAM: &str = r#"
id = "bench"
name = "Bench"
languages = ["en"]

[frequency_cap]
per_day = 4
per_week = 10

[[steps]]
id = "day-0"
anchor = "enrolled"
offset = "0d"
template = "t"
channels = [{ channel = "sms" }]

[[steps]]
id = "day-30"
anchor = "enrolled"
offset = "30d"
template = "t"
channels = [{ channel = "sms" }]

[[steps]]
id = "day-60"
anchor = "enrolled"
offset = "60d"
template = "t"
channels = [{ channel = "sms" }]

[[steps]]
id = "day-90"
anchor = "enrolled"
offset = "90d"
template = "t"
channels = [{ channel = "sms" }]
"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut number = |name: &str, default: usize| -> anyhow::Result<usize> {
        args.next()
            .map(|a| a.parse())
            .transpose()
            .with_context(|| format!("{name} must be a number"))
            .map(|n| n.unwrap_or(default))
    };
    let scheduled = number("SCHEDULED", 1_000_000)?;
    let due = number("DUE", 100_000)?;
    let rate = number("STEADY_RATE", 1_000)?;
    let cases = scheduled / STEPS;
    let steady = rate * STEADY_SECONDS as usize;
    if due + steady > cases || rate == 0 {
        bail!("DUE plus {STEADY_SECONDS} s of STEADY_RATE must fit in SCHEDULED / {STEPS} cases");
    }

    // The burst is due at `zero`, the instant the service's clock starts from.
    let zero = Utc::now() + TimeDelta::hours(1);
    let tz = zone_open_at(zero);
    let templates = BTreeSet::from(["t".to_owned()]);
    let program = parse("bench", PROGRAM, &templates)
        .map_err(|e| anyhow::anyhow!("bench program invalid: {e:?}"))?;
    let programs_dir = write_program()?;

    let database = TestDatabase::fresh().await;
    let prefix = testkit::unique_prefix();
    let mut platform = testkit::platform_config("cadence", &database, &prefix);
    platform.database.max_connections = 10;
    let pool = db::connect(
        &platform.database,
        touchpoint_cadence::SPEC.schema,
        touchpoint_cadence::SPEC.migrations,
    )
    .await?;
    let started = Instant::now();
    for first in (0..cases).step_by(LOAD_BATCH) {
        let batch: Vec<(String, Enrolment)> = (first..(first + LOAD_BATCH).min(cases))
            .map(|i| {
                let enrolled_at = if i < due {
                    zero
                } else if i < due + steady {
                    let k = (i - due) as i64;
                    zero + STEADY_AFTER + TimeDelta::microseconds(k * 1_000_000 / rate as i64)
                } else {
                    zero + TimeDelta::days(30)
                };
                (
                    format!("case-{i:07}"),
                    enrolment(&program, tz, enrolled_at, i),
                )
            })
            .collect();
        let rows: Vec<Saved<'_>> = batch
            .iter()
            .map(|(case_id, e)| Saved {
                case_id,
                enrolment: e,
                wake_at: e.wake_at(),
            })
            .collect();
        let mut tx = pool.begin().await?;
        store::save(&mut tx, &rows).await?;
        tx.commit().await?;
    }
    sqlx::query("ANALYZE enrolments").execute(&pool).await?;
    println!(
        "cadence-bench: loaded {cases} cases, {} scheduled touchpoints ({due} due at once, \
         {steady} at {rate}/s from {} s later) in {:.1} s; zone {tz}",
        cases * STEPS,
        STEADY_AFTER.num_seconds(),
        started.elapsed().as_secs_f64()
    );

    touchpoint_platform::topics::bootstrap(&platform.kafka).await?;
    let reader: StreamConsumer =
        kafka::consumer_config(&platform.kafka, &format!("{prefix}bench")).create()?;
    reader.subscribe(&[&Topics::new(prefix.clone()).name(Stream::Outreach)])?;
    let shutdown = Shutdown::new();
    // Real time now is `zero` on the service's clock: the burst is due at once.
    let epoch = Utc::now();
    platform.clock = ClockConfig::Accelerated {
        start: zero,
        epoch,
        speed: 1.0,
    };
    let mut config = touchpoint_cadence::Config::new(platform, &programs_dir);
    if let Ok(batch) = std::env::var("TOUCHPOINT_DUE_BATCH") {
        config.due_batch = batch
            .parse()
            .context("TOUCHPOINT_DUE_BATCH must be a number")?;
    }
    println!(
        "cadence-bench: due loop batch {}, poll {} ms",
        config.due_batch,
        config.due_poll.as_millis()
    );
    touchpoint_cadence::start(config, &shutdown).await?;

    let mut burst_lags = Vec::with_capacity(due);
    let mut steady_lags = Vec::with_capacity(steady);
    let mut last_burst = epoch;
    let deadline = Instant::now() + Duration::from_secs(600);
    while burst_lags.len() < due || steady_lags.len() < steady {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Ok(record) = tokio::time::timeout(remaining, reader.recv()).await else {
            bail!(
                "timed out with {} of {due} burst and {} of {steady} steady requests",
                burst_lags.len(),
                steady_lags.len()
            );
        };
        let Ok(record) = record else {
            continue; // a passing consumer error; the records come again
        };
        let Some(on_topic) = record
            .timestamp()
            .to_millis()
            .and_then(DateTime::from_timestamp_millis)
        else {
            continue;
        };
        let Ok((envelope, _)) = decode(record.payload()) else {
            continue;
        };
        let Some(Payload::OutreachRequested(request)) = envelope.payload else {
            continue;
        };
        let Some(due_at) = request.due_at.as_ref().and_then(instant) else {
            continue;
        };
        // The due instant in real time, on the service's clock.
        let real_due = epoch + (due_at - zero);
        let lag_ms = (on_topic - real_due).num_milliseconds() as f64;
        if due_at == zero {
            burst_lags.push(lag_ms);
            last_burst = last_burst.max(on_topic);
        } else {
            steady_lags.push(lag_ms);
        }
    }
    burst_lags.sort_by(f64::total_cmp);
    steady_lags.sort_by(f64::total_cmp);
    let drained = (last_burst - epoch).num_milliseconds() as f64 / 1000.0;
    println!(
        "burst: {due} due at once, on the topic within {drained:.2} s: {:.0} due touchpoints/s \
         claimed and emitted (target >= 5000)",
        due as f64 / drained
    );
    println!(
        "burst lag due -> topic: p50 {:.0} ms, p99 {:.0} ms",
        percentile(&burst_lags, 0.50),
        percentile(&burst_lags, 0.99)
    );
    let caught_up = last_burst < epoch + STEADY_AFTER;
    println!(
        "steady {rate}/s lag due -> topic: p50 {:.0} ms, p99 {:.0} ms (target p99 <= 2000 ms){}",
        percentile(&steady_lags, 0.50),
        percentile(&steady_lags, 0.99),
        if caught_up {
            ""
        } else {
            " — the burst was not drained when the steady phase began"
        }
    );
    shutdown.trigger();
    let _ = std::fs::remove_dir_all(&programs_dir);
    Ok(())
}

/// A case enrolled at `enrolled_at` with SMS consent, its four steps planned.
fn enrolment(program: &Program, tz: Tz, enrolled_at: DateTime<Utc>, i: usize) -> Enrolment {
    let mut e = Enrolment::open(NewEnrolment {
        program_id: program.id.clone(),
        language: Language::En,
        time_zone: tz,
        enrolled_at,
        destinations: Destinations {
            patient: PersonContacts {
                mobile: Some(format!("+1555{:07}", i % 10_000_000)),
                landline: None,
                email: None,
                region: None,
                address: None,
            },
            ..Destinations::default()
        },
    });
    e.consented.insert(Channel::Sms);
    e.replan(program, enrolled_at, &mut V7Ids);
    e
}

fn write_program() -> anyhow::Result<PathBuf> {
    let root = std::env::temp_dir().join(format!("tp-bench-programs-{}", std::process::id()));
    let folder = root.join("bench");
    std::fs::create_dir_all(folder.join("templates"))?;
    std::fs::write(folder.join("program.toml"), PROGRAM)?;
    std::fs::write(folder.join("templates").join("t.en.txt"), "Hello")?;
    std::fs::write(folder.join("templates").join("t.caregiver.en.txt"), "Hello")?;
    Ok(root)
}
