//! `touchpoint up`, the local stack: a Tansu broker, the provider sandbox (SMS,
//! fax, SMTP), the four services and the desk (http://127.0.0.1:8080) as child
//! processes. Dispatch is pointed at the sandbox unless
//! `TOUCHPOINT_SMS_PRIMARY_URL` says where a real SMS provider is.
//!
//! Data stays under `.local/` in the working directory: the broker's sqlite file and
//! each process's log. Every process started here is stopped on Ctrl-C (SIGTERM,
//! then SIGKILL for one that does not stop in time).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use sqlx::{Connection as _, PgConnection};
use tokio::process::Command;
use touchpoint_platform::clock::ClockConfig;
use touchpoint_platform::config::DatabaseConfig;
use touchpoint_platform::vouch::Voucher;

use touchpoint_cli::demo;
use touchpoint_cli::health::SERVICES;
use touchpoint_cli::mesh::{self, MeshDir, Peer};
use touchpoint_cli::stack::{self, Stack, wait_for_port};
use touchpoint_sandbox::local;

const STATE_DIR: &str = ".local";
const LOCAL_BROKER: &str = "127.0.0.1:9092";
/// Routing's webhook address in the local stack.
const ROUTING_HTTP: &str = "127.0.0.1:8054";

/// What `touchpoint up` does once the stack is up.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct UpOptions {
    /// Skip the demo: stay up until Ctrl-C.
    #[arg(long = "no-demo", action = clap::ArgAction::SetFalse)]
    pub demo: bool,
    /// Keep the stack up after the demo, until Ctrl-C.
    #[arg(long)]
    pub keep: bool,
    /// Simulated days the demo runs.
    #[arg(long, value_name = "N", default_value_t = DEMO_DAYS, value_parser = clap::value_parser!(i64).range(1..=365))]
    pub days: i64,
}

/// `touchpoint demo`'s flags.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct DemoOptions {
    /// Simulated days the demo runs.
    #[arg(long, value_name = "N", default_value_t = DEMO_DAYS, value_parser = clap::value_parser!(i64).range(1..=365))]
    pub days: i64,
}

/// The demo's simulated start: a Monday morning, clear of holidays.
const DEMO_START: &str = "2027-01-04T13:00:00Z";
/// Simulated seconds per real second in the demo: a day every two seconds.
const DEMO_SPEED: f64 = 43_200.0;
/// Simulated days the demo runs unless told otherwise.
const DEMO_DAYS: i64 = 30;
/// The database the demo starts afresh each run, unless `DATABASE_URL` is set.
const DEMO_DATABASE: &str = "touchpoint_demo";

/// Starts everything and shows it; runs the demo unless told not to; stops
/// everything after the demo, or on Ctrl-C with `--no-demo` or `--keep`.
pub async fn up(options: UpOptions) -> anyhow::Result<()> {
    let state = PathBuf::from(STATE_DIR);
    std::fs::create_dir_all(state.join("logs")).context("cannot create .local/logs")?;
    // A clock noted by an earlier run is not this run's.
    let _ = std::fs::remove_file(state.join(DEMO_CLOCK_FILE));
    let database_url = match std::env::var("DATABASE_URL") {
        Ok(url) => url,
        // The demo starts from nothing each run: its own database and broker data.
        Err(_) if options.demo => {
            let url = DatabaseConfig::DEFAULT_URL
                .rsplit_once('/')
                .map(|(server, _)| format!("{server}/{DEMO_DATABASE}"))
                .context("the default database URL has no name")?;
            drop_database(&url).await?;
            url
        }
        Err(_) => DatabaseConfig::DEFAULT_URL.to_owned(),
    };
    ensure_database(&database_url).await?;
    let clock = options.demo.then(|| ClockConfig::Accelerated {
        start: DateTime::parse_from_rfc3339(DEMO_START)
            .map(|t| t.to_utc())
            .unwrap_or_else(|_| Utc::now()),
        epoch: Utc::now(),
        speed: DEMO_SPEED,
    });

    let mut processes = Stack::default();
    let result = start_all(&state, &database_url, clock.as_ref(), &mut processes).await;
    if let Err(error) = result {
        processes.stop().await;
        return Err(error);
    }
    if let Some(clock) = &clock {
        write_demo_clock(&state, clock)?;
        let settings = demo_settings(clock, options.days)?;
        let outcome = tokio::select! {
            outcome = demo::run(settings) => outcome.map(|_| ()),
            _ = tokio::signal::ctrl_c() => {
                println!("\nstopping...");
                processes.stop().await;
                return Ok(());
            }
            exited = processes.first_exit() => Err(anyhow::anyhow!("{exited} exited during the demo")),
        };
        if outcome.is_err() || !options.keep {
            processes.stop().await;
            println!("stopped.");
            return outcome;
        }
    }
    println!("\nTouchpoint is up. Logs: {STATE_DIR}/logs/. Ctrl-C stops everything.");
    let mesh = local_mesh();
    println!(
        "The services take only mutual TLS; the CLI joins with\n  export TOUCHPOINT_TLS_CA={} TOUCHPOINT_TLS_CERT={} TOUCHPOINT_TLS_KEY={}",
        mesh.ca().display(),
        mesh.cert("cli").display(),
        mesh.key("cli").display()
    );
    tokio::select! {
        _ = tokio::signal::ctrl_c() => println!("\nstopping..."),
        exited = processes.first_exit() => println!("\n{exited} exited; stopping the rest..."),
    }
    processes.stop().await;
    println!("stopped.");
    Ok(())
}

/// The demo's view of the local stack, reached through the mesh in `.local/tls`.
fn demo_settings(clock: &ClockConfig, days: i64) -> anyhow::Result<demo::Settings> {
    let access = local_mesh().cli_access()?;
    let peer = |service: &str| {
        Peer::new(
            format!("http://127.0.0.1:{}", port_of(service)),
            access.clone(),
        )
    };
    Ok(demo::Settings {
        cases: peer("cases"),
        routing: peer("routing"),
        sms_webhook: format!("http://{ROUTING_HTTP}/inbound/sms"),
        sms_token: local::AUTH_TOKEN.into(),
        sms_number: local::SMS_FROM.into(),
        clock: clock.build(),
        days,
    })
}

/// Where `up` keeps the development mesh of this run.
fn local_mesh() -> MeshDir {
    MeshDir(PathBuf::from(STATE_DIR).join("tls"))
}

/// Where `up` notes the demo clock its services run on, for `touchpoint demo`.
const DEMO_CLOCK_FILE: &str = "demo-clock";

fn write_demo_clock(state: &Path, clock: &ClockConfig) -> anyhow::Result<()> {
    if let ClockConfig::Accelerated {
        start,
        epoch,
        speed,
    } = clock
    {
        let text = format!("{}\n{}\n{speed}\n", start.to_rfc3339(), epoch.to_rfc3339());
        std::fs::write(state.join(DEMO_CLOCK_FILE), text).context("cannot note the demo clock")?;
    }
    Ok(())
}

/// `touchpoint demo [--days N]`: the demo again, against the stack `touchpoint up
/// --keep` left running on the demo clock. Its new cases reuse the cast's
/// numbers, so each reply now reaches every case of its number.
pub async fn demo(options: DemoOptions) -> anyhow::Result<()> {
    let noted = std::fs::read_to_string(PathBuf::from(STATE_DIR).join(DEMO_CLOCK_FILE))
        .context("no stack on the demo clock here: start one with `touchpoint up --keep`")?;
    let mut lines = noted.lines();
    let mut instant = || {
        lines
            .next()
            .and_then(|l| DateTime::parse_from_rfc3339(l).ok())
            .map(|t| t.to_utc())
    };
    let (Some(start), Some(epoch)) = (instant(), instant()) else {
        bail!("{STATE_DIR}/{DEMO_CLOCK_FILE} is not a demo clock");
    };
    let clock = ClockConfig::Accelerated {
        start,
        epoch,
        speed: DEMO_SPEED,
    };
    demo::run(demo_settings(&clock, options.days)?)
        .await
        .map(drop)
}

fn port_of(service: &str) -> u16 {
    SERVICES
        .iter()
        .find(|(name, _)| *name == service)
        .map_or(0, |(_, port)| *port)
}

async fn start_all(
    state: &Path,
    database_url: &str,
    clock: Option<&ClockConfig>,
    processes: &mut Stack,
) -> anyhow::Result<()> {
    let brokers = match std::env::var("KAFKA_BROKERS") {
        Ok(brokers) if !brokers.trim().is_empty() => brokers,
        _ => {
            start_broker(processes, state, clock.is_some())?;
            wait_for_port(LOCAL_BROKER)
                .await
                .context("the broker did not start")?;
            LOCAL_BROKER.to_owned()
        }
    };
    println!("{:<10} {:<18} {:<10} log", "process", "address", "status");
    if brokers == LOCAL_BROKER {
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
    let mut own = Vec::new();
    if sandboxed {
        start_sandbox(processes, state, &bin_dir)?;
        for addr in [
            local::SMS_ADDR,
            local::FAX_ADDR,
            local::MAILGUN_ADDR,
            local::LOB_ADDR,
            local::SMTP_ADDR,
        ] {
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
        for (var, value) in local::dispatch_env(&sandbox_ca_file(state)) {
            own.push(("dispatch", var.to_owned(), value));
        }
        // The sandbox's patients text through routing's webhook, signed with the
        // account token as the provider signs.
        own.push((
            "routing",
            "TOUCHPOINT_HTTP_ADDR".into(),
            ROUTING_HTTP.into(),
        ));
        own.push((
            "routing",
            "TOUCHPOINT_INBOUND_SMS_AUTH_TOKEN".into(),
            local::AUTH_TOKEN.into(),
        ));
        // Complaints and unsubscribes at the email provider reach routing,
        // signed with Mailgun's webhook key.
        own.push((
            "routing",
            "TOUCHPOINT_INBOUND_EMAIL_SIGNING_KEY".into(),
            local::MAILGUN_SIGNING_KEY.into(),
        ));
        // Every email's one-click unsubscribe reaches routing, signed with a
        // key the two share.
        own.push((
            "dispatch",
            "TOUCHPOINT_UNSUBSCRIBE_URL".into(),
            format!("http://{ROUTING_HTTP}/unsubscribe/email"),
        ));
        for service in ["dispatch", "routing"] {
            own.push((
                service,
                "TOUCHPOINT_UNSUBSCRIBE_KEY".into(),
                local::UNSUBSCRIBE_KEY.into(),
            ));
        }
        // Late callbacks and adverse-event reviews are mailed to the local
        // relay, with links to the desk.
        own.push((
            "dispatch",
            "TOUCHPOINT_SLA_ALERT_TO".into(),
            "*=supervisors@touchpoint.local".into(),
        ));
        own.push((
            "dispatch",
            "TOUCHPOINT_DESK_URL".into(),
            "http://127.0.0.1:8080".into(),
        ));
    }
    // The desk vouches for its signed-in users with a key made for this run;
    // the services take its vouches and no one else's.
    let (voucher, key) = Voucher::generate()?;
    std::fs::create_dir_all(&local_mesh().0).context("cannot create the mesh folder")?;
    mesh::write_secret(&local_mesh().0.join(DESK_VOUCH_KEY), &key)?;
    let services = stack::Services {
        bin_dir,
        log_dir: state.join("logs"),
        grpc: SERVICES.map(|(_, port)| format!("127.0.0.1:{port}")),
        common: vec![
            ("DATABASE_URL".into(), database_url.into()),
            ("KAFKA_BROKERS".into(), brokers),
            // One replica each: a service restarted here takes its old place in
            // its consumer groups at once.
            ("TOUCHPOINT_CONSUMER_INSTANCE_ID".into(), "local".into()),
            ("TOUCHPOINT_USER_VOUCH_KEYS".into(), voucher.public_key()),
        ],
        own,
        clock: clock.cloned(),
        // A fresh mesh each run: the services and the CLI call each other over
        // mutual TLS with certificates from a development authority.
        mesh: Some(mesh::write_dev_mesh(&local_mesh().0)?),
    };
    processes.start_services(&services).await?;
    for (name, addr) in stack::SERVICES.iter().zip(&services.grpc) {
        println!(
            "{name:<10} {addr:<18} {:<10} {STATE_DIR}/logs/{name}.log",
            "SERVING"
        );
    }
    start_desk(processes, &services).await
}

/// Where `up` serves the desk.
pub const DESK_ADDR: &str = "127.0.0.1:8080";

/// The desk's vouching key, beside the mesh's certificates.
const DESK_VOUCH_KEY: &str = "desk-vouch.key";

/// The desk, with the development sign-in: on this machine nobody runs an
/// identity provider, so the sign-in form believes the roster id it is given.
async fn start_desk(processes: &mut Stack, services: &stack::Services) -> anyhow::Result<()> {
    let mut command = services.desk_command(DESK_ADDR)?;
    command.env("TOUCHPOINT_DESK_DEV_LOGIN", "true").env(
        "TOUCHPOINT_DESK_VOUCH_KEY_FILE",
        local_mesh().0.join(DESK_VOUCH_KEY),
    );
    processes.spawn("desk", command, &services.log_of("desk"))?;
    wait_for_port(DESK_ADDR)
        .await
        .with_context(|| format!("the desk did not start; see {STATE_DIR}/logs/desk.log"))?;
    println!(
        "{:<10} {:<18} {:<10} {STATE_DIR}/logs/desk.log",
        "desk", DESK_ADDR, "up"
    );
    println!(
        "\nThe desk: http://{DESK_ADDR} (development sign-in: roster id coord-maria, \
         role coordinator, programs adherence, refill-reminder; role supervisor for the \
         operations page and the roster)\n"
    );
    Ok(())
}

/// Drops the database named in `url`, if it exists, with whoever is connected.
async fn drop_database(url: &str) -> anyhow::Result<()> {
    on_server(
        url,
        |name| format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        "cannot drop the demo database",
    )
    .await
    .map(drop)
}

/// Runs `statement` about the database named in `url` from its server's
/// `postgres` database; returns the name.
async fn on_server(
    url: &str,
    statement: impl Fn(&str) -> String,
    failure: &'static str,
) -> anyhow::Result<String> {
    let (server, name) = database_name(url)?;
    let mut admin = PgConnection::connect(&format!("{server}/postgres"))
        .await
        .context("PostgreSQL is not reachable at DATABASE_URL (run deploy/setup.sh)")?;
    sqlx::query(&statement(name))
        .execute(&mut admin)
        .await
        .context(failure)?;
    Ok(name.to_owned())
}

/// The server part of `url` and its database name, checked to be a plain name.
fn database_name(url: &str) -> anyhow::Result<(&str, &str)> {
    let (server, name) = url
        .rsplit_once('/')
        .map(|(server, name)| (server, name.split('?').next().unwrap_or(name)))
        .context("DATABASE_URL has no database name")?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        bail!("DATABASE_URL's database name must be letters, digits and '_'");
    }
    Ok((server, name))
}

/// Creates the database named in `url` if its server lacks it.
async fn ensure_database(url: &str) -> anyhow::Result<()> {
    if PgConnection::connect(url).await.is_ok() {
        return Ok(());
    }
    let name = on_server(
        url,
        |name| format!("CREATE DATABASE {name}"),
        "cannot create the database",
    )
    .await?;
    println!("created database {name}");
    Ok(())
}

/// Where the sandbox writes its development CA's certificate.
fn sandbox_ca_file(state: &Path) -> PathBuf {
    state.join("sandbox-ca.pem")
}

fn start_sandbox(processes: &mut Stack, state: &Path, bin_dir: &Path) -> anyhow::Result<()> {
    let binary = bin_dir.join("touchpoint-sandbox");
    if !binary.exists() {
        bail!(
            "{} is missing: build with `cargo build --release --bins`",
            binary.display()
        );
    }
    // A certificate left by an earlier run must not be mistaken for this one's.
    let ca_file = sandbox_ca_file(state);
    if ca_file.exists() {
        std::fs::remove_file(&ca_file)?;
    }
    let mut command = Command::new(&binary);
    command.env(local::CA_FILE_VAR, &ca_file);
    processes.spawn("sandbox", command, &state.join("logs").join("sandbox.log"))
}

/// Starts Tansu on sqlite storage under `state`; a demo's broker starts empty.
fn start_broker(processes: &mut Stack, state: &Path, fresh: bool) -> anyhow::Result<()> {
    let file = if fresh { "tansu-demo.db" } else { "tansu.db" };
    if fresh {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let path = state.join(format!("{file}{suffix}"));
            if path.exists() {
                std::fs::remove_file(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
    }
    let tansu = touchpoint_platform::tansu::binary();
    let mut command = Command::new(&tansu);
    command
        .arg("broker")
        // sqlite, so the broker keeps its records across restarts; relative to
        // the working directory.
        .arg("--storage-engine")
        .arg(format!("sqlite://{STATE_DIR}/{file}"))
        .arg("--listener-url")
        .arg(format!("tcp://{LOCAL_BROKER}"))
        .arg("--advertised-listener-url")
        .arg(format!("tcp://{LOCAL_BROKER}"))
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
    processes
        .spawn("broker", command, &state.join("logs").join("broker.log"))
        .with_context(|| format!("{tansu} (run deploy/setup.sh)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Up {
        #[command(flatten)]
        options: UpOptions,
    }

    fn parse(args: &[&str]) -> Result<UpOptions, clap::Error> {
        use clap::Parser as _;
        Up::try_parse_from(std::iter::once("up").chain(args.iter().copied())).map(|u| u.options)
    }

    #[test]
    fn up_runs_the_demo_and_stops_unless_told_otherwise() {
        let plain = parse(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            plain,
            UpOptions {
                demo: true,
                keep: false,
                days: DEMO_DAYS
            }
        );
        let kept = parse(&["--keep", "--days", "10"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(kept.demo && kept.keep && kept.days == 10);
        assert!(!parse(&["--no-demo"]).is_ok_and(|o| o.demo));
    }

    #[test]
    fn bad_flags_are_refused_with_what_up_takes() {
        for bad in [&["--days"][..], &["--days", "0"], &["--days", "x"]] {
            let error = parse(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(error.contains("--days <N>"), "{bad:?}: {error}");
        }
        let unknown = parse(&["--fast"]).err().map(|e| e.to_string());
        assert!(
            unknown
                .as_ref()
                .is_some_and(|e| e.contains("'--fast'") && e.contains("Usage: up [OPTIONS]")),
            "{unknown:?}"
        );
    }

    #[test]
    fn the_sandbox_settings_give_dispatch_every_provider_with_mailgun_before_smtp() {
        let dir = std::env::temp_dir().join(format!("touchpoint-up-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let ca_file = dir.join("sandbox-ca.pem");
        let ca = touchpoint_platform::tls::DevCa::generate().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&ca_file, ca.cert_pem()).unwrap_or_else(|e| panic!("{e}"));
        let mut pairs = local::dispatch_env(&ca_file);
        pairs.push((
            "TOUCHPOINT_UNSUBSCRIBE_URL",
            "http://127.0.0.1:8054/unsubscribe/email".into(),
        ));
        pairs.push(("TOUCHPOINT_UNSUBSCRIBE_KEY", local::UNSUBSCRIBE_KEY.into()));
        let env = touchpoint_platform::config::Env::from_pairs(
            pairs.iter().map(|(k, v)| (*k, v.as_str())),
        );
        let config = touchpoint_dispatch::Config::from_env(&env);
        let _ = std::fs::remove_dir_all(&dir);
        let config = config.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.sms.len(), 1);
        assert!(config.fax.is_some() && config.smtp.is_some());
        let voice = config.voice.unwrap_or_else(|| panic!("no voice provider"));
        assert_eq!(voice.caller_id, local::VOICE_CALLER_ID, "a valid caller id");
        let mailgun = config.mailgun.unwrap_or_else(|| panic!("no Mailgun"));
        assert_eq!(mailgun.base_url, format!("https://{}", local::MAILGUN_ADDR));
        let dispatch_http = format!(
            "http://127.0.0.1:{}/",
            touchpoint_dispatch::DEFAULT_HTTP_PORT
        );
        assert!(local::MAILGUN_DELIVERY_WEBHOOK.starts_with(&dispatch_http));
        assert!(local::MAILGUN_DELIVERY_WEBHOOK.ends_with("/callbacks/email/mailgun"));
        assert!(local::MAILGUN_COMPLAINT_WEBHOOK.starts_with(&format!("http://{ROUTING_HTTP}/")));
    }

    #[test]
    fn a_database_name_must_be_plain() {
        assert_eq!(
            database_name("postgres://u@h:5432/touchpoint_demo?sslmode=disable").ok(),
            Some(("postgres://u@h:5432", "touchpoint_demo"))
        );
        assert!(database_name("postgres://u@h/x;DROP").is_err());
        assert!(database_name("postgres://u@h/").is_err());
    }
}
