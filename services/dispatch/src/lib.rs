//! The dispatch service: delivery of attempts over SMS, email, fax and call tasks,
//! each handed over once, with consent checked at the last moment.
//!
//! It keeps a view of each case from `touchpoint.case.v1` and
//! `touchpoint.inbound.v1`, records the attempts cadence asks for on
//! `touchpoint.outreach.v1`, and its sender hands them over and publishes what
//! became of each to `touchpoint.attempt.v1`.
//!
//! `run` is what the binary calls; `start` is what tests call to run the real
//! service on a free port.

pub mod api;
pub mod attempts;
pub mod domain;
pub mod intake;
pub mod providers;
pub mod sender;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use touchpoint_platform::config::{ConfigError, Env, PlatformConfig};
use touchpoint_platform::inbox::InboxConsumer;
use touchpoint_platform::service::{Platform, ServiceSpec, StartError};
use touchpoint_platform::shutdown::Shutdown;
use touchpoint_platform::topics::Stream;
use touchpoint_programs::Catalogue;
use touchpoint_proto::v1::dispatch_service_server::DispatchServiceServer;

use crate::api::DispatchApi;
use crate::intake::Intaker;
use crate::providers::Providers;
use crate::sender::{Sender, SenderConfig};

/// The service's name, schema and migrations.
pub const SPEC: ServiceSpec = ServiceSpec {
    name: "dispatch",
    schema: "dispatch",
    migrations: &MIGRATIONS,
};

static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// The gRPC port when `TOUCHPOINT_GRPC_ADDR` is unset.
pub const DEFAULT_GRPC_PORT: u16 = 50053;

/// How long in-flight work may take to finish after SIGTERM.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// The dispatch service's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// What every service needs.
    pub platform: PlatformConfig,
    /// `TOUCHPOINT_PROGRAMS_DIR`: the programs and their templates.
    pub programs_dir: PathBuf,
    /// The sender: `TOUCHPOINT_SEND_BATCH`, `TOUCHPOINT_SEND_POLL_MS`,
    /// `TOUCHPOINT_SEND_MAX_TRIES`, `TOUCHPOINT_SENDING_TIMEOUT_MS`.
    pub sender: SenderConfig,
}

impl Config {
    /// Reads the configuration; a bad value names its variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            platform: PlatformConfig::from_env(env, SPEC.name, DEFAULT_GRPC_PORT)?,
            programs_dir: PathBuf::from(env.string("TOUCHPOINT_PROGRAMS_DIR", "programs")),
            sender: SenderConfig {
                batch: env.count("TOUCHPOINT_SEND_BATCH", 200, 10_000)?,
                poll: env.millis("TOUCHPOINT_SEND_POLL_MS", 100)?,
                max_tries: env.count("TOUCHPOINT_SEND_MAX_TRIES", 5, 100)? as u32,
                sending_timeout: env.millis("TOUCHPOINT_SENDING_TIMEOUT_MS", 120_000)?,
            },
        })
    }

    /// `platform` with the programs in `programs_dir` and the default sender.
    pub fn new(platform: PlatformConfig, programs_dir: impl Into<PathBuf>) -> Self {
        Self {
            platform,
            programs_dir: programs_dir.into(),
            sender: SenderConfig {
                batch: 200,
                poll: Duration::from_millis(100),
                max_tries: 5,
                sending_timeout: Duration::from_secs(120),
            },
        }
    }
}

/// The dispatch service could not start.
#[derive(Debug, thiserror::Error)]
pub enum DispatchStartError {
    /// The programs folder holds an invalid program (every problem listed).
    #[error("the programs in {dir} are not valid:\n{problems}")]
    Programs {
        /// The folder.
        dir: String,
        /// One problem per line.
        problems: String,
    },
    /// What every service needs.
    #[error(transparent)]
    Platform(#[from] StartError),
}

/// Starts the service; returns the gRPC address. It stops when `shutdown` does.
pub async fn start(config: Config, shutdown: &Shutdown) -> Result<SocketAddr, DispatchStartError> {
    let loaded =
        touchpoint_programs::load_dir_with_templates(&config.programs_dir).map_err(|errors| {
            DispatchStartError::Programs {
                dir: config.programs_dir.display().to_string(),
                problems: errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            }
        })?;
    let catalogue = Arc::new(Catalogue::with_templates(loaded));
    let mut platform = Platform::start(SPEC, config.platform, shutdown.clone()).await?;
    platform
        .grpc
        .routes()
        .add_service(DispatchServiceServer::new(DispatchApi::new(
            platform.pool.clone(),
        )));

    let intake = InboxConsumer::new(
        intake::CONSUMER,
        [Stream::Case, Stream::Inbound, Stream::Outreach]
            .iter()
            .map(|s| platform.topics.name(*s))
            .collect(),
        platform.pool.clone(),
        Intaker::new(platform.clock.clone()),
        &platform.config,
    );
    let token = shutdown.token();
    shutdown.spawn(async move {
        if let Err(error) = intake.run(token).await {
            tracing::error!(%error, "dispatch intake stopped");
        }
    });

    let sender = Sender::new(
        platform.pool.clone(),
        catalogue,
        platform.clock.clone(),
        platform.topics.name(Stream::Attempt),
        Arc::new(Providers::none()),
        config.sender,
    );
    shutdown.spawn(sender.run(shutdown.token()));
    Ok(platform.serve()?)
}

/// Runs until SIGTERM or Ctrl-C, then drains in-flight work.
pub async fn run(config: Config) -> Result<(), DispatchStartError> {
    let shutdown = Shutdown::on_signals();
    start(config, &shutdown).await?;
    shutdown.wait_and_drain(DRAIN_LIMIT).await;
    Ok(())
}
