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
//! - `touchpoint events tail TOPIC [--from-start]`: a topic's events as they
//!   come, decoded, one line each, without patient data (`KAFKA_BROKERS`).
//! - `touchpoint kpi`: the KPI table over every case the cases service knows.
//! - `touchpoint cases timeline CASE_ID`: a case's timeline in its time zone.
//!
//! `kpi` and `cases` reach cases at `TOUCHPOINT_CASES_ADDR` (default
//! 127.0.0.1:50051, where `touchpoint up` puts it).

mod health;
mod programs;
mod stack;

use anyhow::bail;
use touchpoint_cli::{events, kpi};
use touchpoint_platform::config::{Env, KafkaConfig};

const USAGE: &str = "usage: touchpoint up [--no-demo] [--keep] [--days N] | touchpoint health [HOST:PORT ...] | touchpoint programs validate [DIR] | touchpoint events tail TOPIC [--from-start] | touchpoint kpi | touchpoint cases timeline CASE_ID";

fn cases_url() -> String {
    let addr = std::env::var("TOUCHPOINT_CASES_ADDR").unwrap_or_else(|_| "127.0.0.1:50051".into());
    format!("http://{addr}")
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
        Some("up") => stack::up(stack::UpOptions::parse(&args[1..])?).await,
        Some("health") => health::report(&args[1..]).await,
        Some("programs") if args.get(1).map(String::as_str) == Some("validate") => {
            programs::validate(args.get(2).map_or("programs", String::as_str))
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
        Some("kpi") => kpi::report(&cases_url()).await,
        Some("cases") => match (args.get(1).map(String::as_str), args.get(2)) {
            (Some("timeline"), Some(case_id)) => kpi::timeline(&cases_url(), case_id).await,
            _ => bail!("usage: touchpoint cases timeline CASE_ID"),
        },
        Some("-h" | "--help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command {other:?}\n{USAGE}"),
    }
}
