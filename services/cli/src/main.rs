//! `touchpoint`: the local stack and the operator's commands.
//!
//! - `touchpoint up [--no-demo] [--keep] [--days N]`: start a broker (unless
//!   `KAFKA_BROKERS` is set), the provider sandbox and the four services as
//!   separate processes, wait until each reports healthy, run the demo on an
//!   accelerated clock (see [`demo`]) and stop everything; with `--no-demo` or
//!   `--keep`, stay up until Ctrl-C.
//! - `touchpoint health [ADDR...]`: the gRPC health of running services.
//! - `touchpoint programs validate [DIR]`: check program files (default `programs`)
//!   and list every problem; exits 1 if there is any.
//! - `touchpoint programs configmap [DIR]`: the programs as the ConfigMap `k8s/`
//!   mounts (`k8s/base/programs-configmap.json`).
//! - `touchpoint events tail TOPIC [--from-start]`: a topic's events as they
//!   come, decoded, one line each, without patient data (`KAFKA_BROKERS`).
//! - `touchpoint kpi`: the KPI table over every case the cases service knows.
//! - `touchpoint kpi --export [--every SECONDS]`: the same KPIs as OpenTelemetry
//!   gauges, pushed to `OTEL_EXPORTER_OTLP_ENDPOINT` every interval (default 60)
//!   as cases records events, until Ctrl-C.
//! - `touchpoint cases open --program ID ...`: open a case with its consents and
//!   team (`cases open --help` lists the flags).
//! - `touchpoint cases show CASE_ID`: a case's state, the patient masked.
//! - `touchpoint cases timeline CASE_ID`: a case's timeline in its time zone.
//! - `touchpoint dlq list [TOPIC]`: the records consumers gave up on, and why
//!   (every DLQ, or one topic's).
//! - `touchpoint dlq replay TOPIC`: put a DLQ's records back on their topics,
//!   each once, after the consumer is fixed.
//! - `touchpoint demo [--days N]`: the demo, against a stack already up.
//! - `touchpoint dev-certs [DIR]`: a fresh development authority and a
//!   certificate for each service and the CLI (default `.local/tls`), the mesh
//!   `up` runs on.
//! - `touchpoint token NAME read|write`: a new bearer token, and the entry the
//!   services take in `TOUCHPOINT_API_TOKENS`.
//!
//! Calls to the services present `TOUCHPOINT_API_TOKEN` and, with
//! `TOUCHPOINT_TLS_CA`, speak TLS (presenting `TOUCHPOINT_TLS_CERT` and
//! `TOUCHPOINT_TLS_KEY` when set).
//!
//! `kpi`, `cases` and `demo` reach cases at `TOUCHPOINT_CASES_ADDR` (default
//! 127.0.0.1:50051, where `touchpoint up` puts it); `events` and `dlq` read
//! `KAFKA_BROKERS` and `TOUCHPOINT_TOPIC_PREFIX`.

mod up;

use std::time::Duration;

use anyhow::{Context as _, bail};
use touchpoint_cli::{cases, dlq, events, health, kpi, kpi_metrics, mesh, programs};
use touchpoint_platform::config::{Env, KafkaConfig};

const USAGE: &str = "usage: touchpoint up [--no-demo] [--keep] [--days N] | touchpoint demo [--days N] | touchpoint health [HOST:PORT ...] | touchpoint programs validate|configmap [DIR] | touchpoint events tail TOPIC [--from-start] | touchpoint kpi [--export [--every SECONDS]] | touchpoint cases open|show|timeline ... | touchpoint dlq list [TOPIC] | touchpoint dlq replay TOPIC | touchpoint dev-certs [DIR] | touchpoint token NAME read|write";

/// The cases service at `TOUCHPOINT_CASES_ADDR`, reached with the
/// credentials in the environment.
fn cases() -> anyhow::Result<mesh::Peer> {
    let addr = std::env::var("TOUCHPOINT_CASES_ADDR").unwrap_or_else(|_| "127.0.0.1:50051".into());
    mesh::Peer::from_env(&addr)
}

#[tokio::main]
async fn main() {
    // The error and its causes on one line, without a backtrace.
    if let Err(error) = run(std::env::args().skip(1).collect()).await {
        eprintln!("touchpoint: {error:#}");
        std::process::exit(1);
    }
}

async fn run(args: Vec<String>) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        Some("up") => up::up(up::UpOptions::parse(&args[1..])?).await,
        Some("health") => health::report(&args[1..]).await,
        Some("dev-certs") => {
            let dir = args.get(1).map_or(".local/tls", String::as_str);
            let mesh = mesh::write_dev_mesh(std::path::Path::new(dir))?;
            println!("authority {}", mesh.ca().display());
            for name in mesh::MEMBERS {
                println!(
                    "{name:<9} {} {}",
                    mesh.cert(name).display(),
                    mesh.key(name).display()
                );
            }
            Ok(())
        }
        Some("token") => {
            let (Some(name), Some(role)) = (args.get(1), args.get(2)) else {
                bail!("usage: touchpoint token NAME read|write");
            };
            let role = role
                .parse()
                .map_err(|()| anyhow::anyhow!("the role is read or write"))?;
            let (token, entry) = mesh::new_token(name, role)?;
            println!("token (give it to the caller; it is not kept): {token}");
            println!("add to TOUCHPOINT_API_TOKENS: {entry}");
            Ok(())
        }
        Some("programs") => {
            let dir = args.get(2).map_or("programs", String::as_str);
            match args.get(1).map(String::as_str) {
                Some("validate") => programs::validate(dir),
                Some("configmap") => {
                    print!("{}", programs::configmap(dir)?);
                    Ok(())
                }
                _ => bail!("usage: touchpoint programs validate|configmap [DIR]"),
            }
        }
        Some("events") => match (args.get(1).map(String::as_str), args.get(2), args.get(3)) {
            (Some("tail"), Some(topic), flag) => {
                let from = match flag.map(String::as_str) {
                    None => events::From::Now,
                    Some("--from-start") => events::From::Start,
                    Some(other) => bail!("unknown flag {other:?} for events tail"),
                };
                let kafka = KafkaConfig::from_env(&Env::Process)?;
                let stop = async {
                    let _ = tokio::signal::ctrl_c().await;
                };
                events::tail(&kafka, topic, from, None, stop, |line| println!("{line}")).await?;
                Ok(())
            }
            _ => bail!("usage: touchpoint events tail TOPIC [--from-start]"),
        },
        Some("kpi") => match args.get(1).map(String::as_str) {
            None => kpi::report(&cases()?).await,
            Some("--export") => {
                let every = match (args.get(2).map(String::as_str), args.get(3)) {
                    (None, _) => 60,
                    (Some("--every"), Some(seconds)) => seconds
                        .parse()
                        .ok()
                        .filter(|s| (1..=3600).contains(s))
                        .context("--every takes seconds from 1 to 3600")?,
                    _ => bail!("usage: touchpoint kpi [--export [--every SECONDS]]"),
                };
                let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").context(
                    "kpi --export pushes to OTEL_EXPORTER_OTLP_ENDPOINT, which is unset",
                )?;
                let stop = async {
                    let _ = tokio::signal::ctrl_c().await;
                };
                println!("exporting the KPIs to {endpoint} every {every} s; Ctrl-C stops");
                kpi_metrics::export(&cases()?, &endpoint, Duration::from_secs(every), stop).await
            }
            Some(_) => bail!("usage: touchpoint kpi [--export [--every SECONDS]]"),
        },
        Some("cases") => match (args.get(1).map(String::as_str), args.get(2)) {
            (Some("open"), Some(flag)) if flag != "--help" => {
                let open = cases::OpenArgs::parse(&args[2..])?;
                let (case_id, version) = cases::open(&cases()?, &open).await?;
                println!("opened {case_id} (version {version})");
                Ok(())
            }
            (Some("open"), _) => bail!("usage: {}", cases::OPEN_USAGE),
            (Some("show"), Some(case_id)) => cases::show_case(&cases()?, case_id).await,
            (Some("timeline"), Some(case_id)) => kpi::timeline(&cases()?, case_id).await,
            _ => bail!("usage: touchpoint cases open|show|timeline ..."),
        },
        Some("dlq") => {
            let kafka = KafkaConfig::from_env(&Env::Process)?;
            match (args.get(1).map(String::as_str), args.get(2)) {
                (Some("list"), which) => {
                    let topics = dlq::topics(&kafka, which.map(String::as_str))?;
                    let letters = dlq::list(&kafka, &topics)?;
                    for letter in &letters {
                        println!("{letter}");
                    }
                    println!("{} dead letter(s) in {}", letters.len(), topics.join(", "));
                    Ok(())
                }
                (Some("replay"), Some(which)) => {
                    for topic in dlq::topics(&kafka, Some(which))? {
                        let sent = dlq::replay(&kafka, &topic).await?;
                        println!("{sent} record(s) replayed from {topic}");
                    }
                    Ok(())
                }
                _ => bail!("usage: touchpoint dlq list [TOPIC] | touchpoint dlq replay TOPIC"),
            }
        }
        Some("demo") => up::demo(&args[1..]).await,
        Some("-h" | "--help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command {other:?}\n{USAGE}"),
    }
}
