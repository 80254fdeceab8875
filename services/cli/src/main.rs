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
//! - `touchpoint kpi [--from DAY] [--to DAY] [--program ID]...`: the KPI table
//!   over a range of days (default the last 30), from cases' KPI projection;
//!   `--rebuild` empties the projection and rebuilds it from the timeline first.
//! - `touchpoint kpi --export [--every SECONDS]`: the same KPIs as OpenTelemetry
//!   gauges, read from the projection and pushed to
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` every interval (default 60), until Ctrl-C.
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
//! - `touchpoint token NAME read|write [--programs A,B]`: a new bearer token (scoped
//!   to those programs' cases when given), and the entry the
//!   services take in `TOUCHPOINT_API_TOKENS`.
//!
//! Calls to the services present `TOUCHPOINT_API_TOKEN` and, with
//! `TOUCHPOINT_TLS_CA`, speak TLS (presenting `TOUCHPOINT_TLS_CERT` and
//! `TOUCHPOINT_TLS_KEY` when set).
//!
//! `touchpoint --help` and `touchpoint COMMAND --help` list the same, with every
//! flag (parsed by clap).
//!
//! `kpi`, `cases` and `demo` reach cases at `TOUCHPOINT_CASES_ADDR` (default
//! 127.0.0.1:50051, where `touchpoint up` puts it); `events` and `dlq` read
//! `KAFKA_BROKERS` and `TOUCHPOINT_TOPIC_PREFIX`.

mod up;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use touchpoint_cli::{cases, dlq, events, health, kpi, kpi_metrics, mesh, programs};
use touchpoint_platform::access::Role;
use touchpoint_platform::config::{Env, KafkaConfig};

/// Touchpoint's local stack and the operator's commands.
#[derive(Debug, Parser)]
#[command(name = "touchpoint", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a broker, the provider sandbox, the four services and the desk, run the demo
    /// on an accelerated clock, and stop everything.
    Up(up::UpOptions),
    /// Run the demo against a stack already up (`up --keep`).
    Demo(up::DemoOptions),
    /// The gRPC health of running services (default: the local stack's).
    Health {
        /// Service addresses, HOST:PORT.
        addrs: Vec<String>,
    },
    /// Check program files, or render them as the ConfigMap k8s/ mounts.
    #[command(subcommand)]
    Programs(ProgramsCommand),
    /// A topic's events as they come, decoded, without patient data.
    #[command(subcommand)]
    Events(EventsCommand),
    /// The KPI table over a range of days, from the cases service's KPI
    /// projection.
    Kpi {
        /// First day, YYYY-MM-DD in the site's time zone (default: 30 days
        /// before --to).
        #[arg(long, value_name = "DAY", default_value = "")]
        from: String,
        /// Last day (default: today).
        #[arg(long, value_name = "DAY", default_value = "")]
        to: String,
        /// Only this program (repeatable).
        #[arg(long = "program", value_name = "PROGRAM")]
        programs: Vec<String>,
        /// Empty the projection and rebuild it from every case's timeline first.
        #[arg(long, conflicts_with = "export")]
        rebuild: bool,
        /// Push the KPIs as OpenTelemetry gauges to OTEL_EXPORTER_OTLP_ENDPOINT
        /// until Ctrl-C, instead of printing them once.
        #[arg(long)]
        export: bool,
        /// Seconds between exports.
        #[arg(long, value_name = "SECONDS", requires = "export", default_value_t = 60,
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        every: u64,
    },
    /// Open a case, show one (the patient masked), or print its timeline.
    #[command(subcommand)]
    Cases(CasesCommand),
    /// The records consumers gave up on, and putting them back.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// A fresh development authority and a certificate for each service and
    /// the CLI: the mesh `up` runs on.
    DevCerts {
        /// Where to write them.
        #[arg(default_value = ".local/tls")]
        dir: PathBuf,
    },
    /// A new bearer token, and the entry the services take in
    /// TOUCHPOINT_API_TOKENS.
    Token {
        /// Who holds it.
        name: String,
        /// What it may do.
        #[arg(value_parser = role)]
        role: Role,
        /// Reach only these programs' cases (comma-separated); every
        /// program's when unset.
        #[arg(long, value_delimiter = ',')]
        programs: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ProgramsCommand {
    /// Check program files and list every problem; exits 1 if there is any.
    Validate {
        /// The programs folder.
        #[arg(default_value = "programs")]
        dir: String,
    },
    /// The programs as the ConfigMap k8s/ mounts.
    Configmap {
        /// The programs folder.
        #[arg(default_value = "programs")]
        dir: String,
    },
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Follow a topic (KAFKA_BROKERS, TOUCHPOINT_TOPIC_PREFIX).
    Tail {
        /// The topic, e.g. touchpoint.case.v1.
        topic: String,
        /// From the topic's start instead of now.
        #[arg(long)]
        from_start: bool,
    },
}

#[derive(Debug, Subcommand)]
enum CasesCommand {
    /// Open a case with its consents and team.
    Open(Box<cases::OpenArgs>),
    /// A case's state, the patient masked.
    Show {
        /// The case.
        case_id: String,
    },
    /// A case's timeline in its time zone.
    Timeline {
        /// The case.
        case_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// The dead letters of every DLQ, or of one topic's.
    List {
        /// The topic whose DLQ to read.
        topic: Option<String>,
    },
    /// Put a DLQ's records back on their topics, each once, after the
    /// consumer is fixed.
    Replay {
        /// The topic whose DLQ to replay.
        topic: String,
    },
}

fn role(raw: &str) -> Result<Role, String> {
    raw.parse().map_err(|()| "read or write".to_owned())
}

/// The cases service at `TOUCHPOINT_CASES_ADDR`, reached with the
/// credentials in the environment.
fn cases() -> anyhow::Result<mesh::Peer> {
    let addr = std::env::var("TOUCHPOINT_CASES_ADDR").unwrap_or_else(|_| "127.0.0.1:50051".into());
    mesh::Peer::from_env(&addr)
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // The error and its causes on one line, without a backtrace.
    if let Err(error) = run(cli.command).await {
        eprintln!("touchpoint: {error:#}");
        std::process::exit(1);
    }
}

/// Until Ctrl-C.
async fn ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(options) => up::up(options).await,
        Command::Demo(options) => up::demo(options).await,
        Command::Health { addrs } => health::report(&addrs).await,
        Command::DevCerts { dir } => {
            let mesh = mesh::write_dev_mesh(&dir)?;
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
        Command::Token {
            name,
            role,
            programs,
        } => {
            let (token, entry) = mesh::new_token(&name, role, &programs)?;
            println!("token (give it to the caller; it is not kept): {token}");
            println!("add to TOUCHPOINT_API_TOKENS: {entry}");
            Ok(())
        }
        Command::Programs(ProgramsCommand::Validate { dir }) => programs::validate(&dir),
        Command::Programs(ProgramsCommand::Configmap { dir }) => {
            print!("{}", programs::configmap(&dir)?);
            Ok(())
        }
        Command::Events(EventsCommand::Tail { topic, from_start }) => {
            let from = if from_start {
                events::From::Start
            } else {
                events::From::Now
            };
            let kafka = KafkaConfig::from_env(&Env::Process)?;
            events::tail(&kafka, &topic, from, None, ctrl_c(), |line| {
                println!("{line}");
            })
            .await?;
            Ok(())
        }
        Command::Kpi {
            from,
            to,
            programs,
            rebuild,
            export,
            every,
        } => {
            let ask = kpi::Ask { from, to, programs };
            if export {
                let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").context(
                    "kpi --export pushes to OTEL_EXPORTER_OTLP_ENDPOINT, which is unset",
                )?;
                println!("exporting the KPIs to {endpoint} every {every} s; Ctrl-C stops");
                let every = Duration::from_secs(every);
                kpi_metrics::export(&cases()?, &ask, &endpoint, every, ctrl_c()).await
            } else if rebuild {
                kpi::rebuild(&cases()?, &ask).await
            } else {
                kpi::report(&cases()?, &ask).await
            }
        }
        Command::Cases(CasesCommand::Open(open)) => {
            let (case_id, version) = cases::open(&cases()?, &open).await?;
            println!("opened {case_id} (version {version})");
            Ok(())
        }
        Command::Cases(CasesCommand::Show { case_id }) => {
            cases::show_case(&cases()?, &case_id).await
        }
        Command::Cases(CasesCommand::Timeline { case_id }) => {
            kpi::timeline(&cases()?, &case_id).await
        }
        Command::Dlq(command) => {
            let kafka = KafkaConfig::from_env(&Env::Process)?;
            match command {
                DlqCommand::List { topic } => {
                    let topics = dlq::topics(&kafka, topic.as_deref())?;
                    let letters = dlq::list(&kafka, &topics)?;
                    for letter in &letters {
                        println!("{letter}");
                    }
                    println!("{} dead letter(s) in {}", letters.len(), topics.join(", "));
                    Ok(())
                }
                DlqCommand::Replay { topic } => {
                    for topic in dlq::topics(&kafka, Some(&topic))? {
                        let sent = dlq::replay(&kafka, &topic).await?;
                        println!("{sent} record(s) replayed from {topic}");
                    }
                    Ok(())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_commands_are_well_formed_and_each_has_help() {
        Cli::command().debug_assert();
        let mut cli = Cli::command();
        for sub in cli.get_subcommands_mut() {
            let help = sub.render_help().to_string();
            assert!(help.contains("Usage: "), "{help}");
        }
    }

    #[test]
    fn a_misspelt_command_is_refused_with_the_usage() {
        let refused = Cli::try_parse_from(["touchpoint", "kpis"]).map(|c| c.command);
        let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains("'kpis'") && message.contains("Usage:"),
            "{message}"
        );
        let every_without_export = Cli::try_parse_from(["touchpoint", "kpi", "--every", "5"]);
        assert!(every_without_export.is_err());
    }
}
