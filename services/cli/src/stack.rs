//! The local stack: a Tansu broker, the provider sandbox (SMS, fax, SMTP) and the
//! four services as child processes. Dispatch is pointed at the sandbox unless
//! `TOUCHPOINT_SMS_PRIMARY_URL` says where a real SMS provider is.
//!
//! Data stays under `.local/` in the working directory: the broker's sqlite file and
//! each process's log. Every process started here is stopped on Ctrl-C (SIGTERM,
//! then SIGKILL for one that does not stop in time).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use sqlx::{Connection as _, PgConnection};
use tokio::process::{Child, Command};
use tonic_health::pb::health_check_response::ServingStatus;
use touchpoint_platform::config::DatabaseConfig;

use touchpoint_dispatch::sandbox::local;

use crate::health::{SERVICES, status};

const STATE_DIR: &str = ".local";
const LOCAL_BROKER: &str = "127.0.0.1:9092";
const START_LIMIT: Duration = Duration::from_secs(60);
const STOP_LIMIT: Duration = Duration::from_secs(20);

struct Process {
    name: String,
    child: Child,
}

/// Starts everything, shows it, and waits for Ctrl-C.
pub async fn up() -> anyhow::Result<()> {
    let state = PathBuf::from(STATE_DIR);
    std::fs::create_dir_all(state.join("logs")).context("cannot create .local/logs")?;
    let database_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| DatabaseConfig::DEFAULT_URL.to_owned());
    ensure_database(&database_url).await?;

    let mut processes = Vec::new();
    let result = start_all(&state, &database_url, &mut processes).await;
    if let Err(error) = result {
        stop_all(&mut processes).await;
        return Err(error);
    }
    println!("\nTouchpoint is up. Logs: {STATE_DIR}/logs/. Ctrl-C stops everything.");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => println!("\nstopping..."),
        exited = first_exit(&mut processes) => println!("\n{exited} exited; stopping the rest..."),
    }
    stop_all(&mut processes).await;
    println!("stopped.");
    Ok(())
}

async fn start_all(
    state: &Path,
    database_url: &str,
    processes: &mut Vec<Process>,
) -> anyhow::Result<()> {
    let brokers = match std::env::var("KAFKA_BROKERS") {
        Ok(brokers) if !brokers.trim().is_empty() => brokers,
        _ => {
            processes.push(start_broker(state)?);
            wait_for_port(LOCAL_BROKER)
                .await
                .context("the broker did not start")?;
            LOCAL_BROKER.to_owned()
        }
    };
    println!("{:<10} {:<18} {:<10} log", "process", "address", "status");
    if processes.iter().any(|p| p.name == "broker") {
        println!(
            "{:<10} {:<18} {:<10} {STATE_DIR}/logs/broker.log",
            "broker", LOCAL_BROKER, "up"
        );
    }
    let bin_dir = std::env::current_exe()
        .context("cannot locate this executable")?
        .parent()
        .map(Path::to_path_buf)
        .context("executable has no directory")?;
    let sandboxed = std::env::var_os("TOUCHPOINT_SMS_PRIMARY_URL").is_none();
    if sandboxed {
        processes.push(start_sandbox(state, &bin_dir)?);
        for addr in [local::SMS_ADDR, local::FAX_ADDR, local::SMTP_ADDR] {
            wait_for_port(addr)
                .await
                .context("the provider sandbox did not start")?;
        }
        println!(
            "{:<10} {:<18} {:<10} {STATE_DIR}/logs/sandbox.log",
            "sandbox",
            local::SMS_ADDR,
            "up"
        );
    }
    for (name, port) in SERVICES {
        let addr = format!("127.0.0.1:{port}");
        let binary = bin_dir.join(format!("touchpoint-{name}"));
        if !binary.exists() {
            bail!(
                "{} is missing: build with `cargo build --release --bins`",
                binary.display()
            );
        }
        let log = std::fs::File::create(state.join("logs").join(format!("{name}.log")))?;
        let mut command = Command::new(&binary);
        if sandboxed && name == "dispatch" {
            command.envs(local::dispatch_env(&sandbox_ca_file(state)));
        }
        let child = command
            .env("DATABASE_URL", database_url)
            .env("KAFKA_BROKERS", &brokers)
            .env("TOUCHPOINT_GRPC_ADDR", &addr)
            // One replica each: a service restarted here takes its old place in
            // its consumer groups at once.
            .env("TOUCHPOINT_CONSUMER_INSTANCE_ID", "local")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        processes.push(Process {
            name: name.to_owned(),
            child,
        });
    }
    for (name, port) in SERVICES {
        let addr = format!("127.0.0.1:{port}");
        wait_until_serving(&addr).await.with_context(|| {
            format!("{name} did not become healthy; see {STATE_DIR}/logs/{name}.log")
        })?;
        println!(
            "{name:<10} {addr:<18} {:<10} {STATE_DIR}/logs/{name}.log",
            "SERVING"
        );
    }
    Ok(())
}

/// Creates the database named in `url` if its server lacks it.
async fn ensure_database(url: &str) -> anyhow::Result<()> {
    if PgConnection::connect(url).await.is_ok() {
        return Ok(());
    }
    let (server, name) = url
        .rsplit_once('/')
        .map(|(server, name)| (server, name.split('?').next().unwrap_or(name)))
        .context("DATABASE_URL has no database name")?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        bail!("DATABASE_URL's database name must be letters, digits and '_'");
    }
    let mut admin = PgConnection::connect(&format!("{server}/postgres"))
        .await
        .context("PostgreSQL is not reachable at DATABASE_URL (run deploy/setup.sh)")?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .context("cannot create the database")?;
    println!("created database {name}");
    Ok(())
}

/// Where the sandbox writes its development CA's certificate.
fn sandbox_ca_file(state: &Path) -> PathBuf {
    state.join("sandbox-ca.pem")
}

fn start_sandbox(state: &Path, bin_dir: &Path) -> anyhow::Result<Process> {
    let binary = bin_dir.join("touchpoint-sandbox");
    if !binary.exists() {
        bail!(
            "{} is missing: build with `cargo build --release --bins`",
            binary.display()
        );
    }
    let log = std::fs::File::create(state.join("logs").join("sandbox.log"))?;
    // A certificate left by an earlier run must not be mistaken for this one's.
    let ca_file = sandbox_ca_file(state);
    if ca_file.exists() {
        std::fs::remove_file(&ca_file)?;
    }
    let child = Command::new(&binary)
        .env(local::CA_FILE_VAR, &ca_file)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start the provider sandbox")?;
    Ok(Process {
        name: "sandbox".into(),
        child,
    })
}

fn start_broker(state: &Path) -> anyhow::Result<Process> {
    let log = std::fs::File::create(state.join("logs").join("broker.log"))?;
    let tansu = touchpoint_platform::tansu::binary();
    let child = Command::new(&tansu)
        .arg("broker")
        // sqlite, so the broker keeps its records across restarts; relative to
        // the working directory.
        .arg("--storage-engine")
        .arg(format!("sqlite://{STATE_DIR}/tansu.db"))
        .arg("--listener-url")
        .arg(format!("tcp://{LOCAL_BROKER}"))
        .arg("--advertised-listener-url")
        .arg(format!("tcp://{LOCAL_BROKER}"))
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {tansu} (run deploy/setup.sh)"))?;
    Ok(Process {
        name: "broker".into(),
        child,
    })
}

async fn wait_for_port(addr: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + START_LIMIT;
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("nothing listens on {addr} after {START_LIMIT:?}")
}

async fn wait_until_serving(addr: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + START_LIMIT;
    loop {
        let last = status(addr).await;
        if matches!(last, Ok(ServingStatus::Serving)) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(last.err().unwrap_or_else(|| anyhow::anyhow!("not serving")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn first_exit(processes: &mut [Process]) -> String {
    loop {
        for process in processes.iter_mut() {
            if let Ok(Some(_)) = process.child.try_wait() {
                return process.name.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Services first (they drain into the broker), the broker last.
async fn stop_all(processes: &mut Vec<Process>) {
    while let Some(mut process) = processes.pop() {
        if let Some(pid) = process.child.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
        if tokio::time::timeout(STOP_LIMIT, process.child.wait())
            .await
            .is_err()
        {
            eprintln!(
                "{} did not stop in {STOP_LIMIT:?}; killing it",
                process.name
            );
            let _ = process.child.kill().await;
        }
    }
}
