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
//! - `touchpoint kpi`: the KPI table over every case the cases service knows.
//! - `touchpoint cases timeline CASE_ID`: a case's timeline in its time zone.
//!
//! `kpi` and `cases` reach cases at `TOUCHPOINT_CASES_ADDR` (default
//! 127.0.0.1:50051, where `touchpoint up` puts it).

mod health;
mod programs;
mod stack;

use anyhow::bail;
use touchpoint_cli::kpi;

const USAGE: &str = "usage: touchpoint up [--no-demo] [--keep] [--days N] | touchpoint health [HOST:PORT ...] | touchpoint programs validate [DIR] | touchpoint kpi | touchpoint cases timeline CASE_ID";

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
