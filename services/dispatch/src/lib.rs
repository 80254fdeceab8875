//! The dispatch service: delivery of attempts over SMS, email, fax and call tasks, sent once.
//!
//! `run` is what the binary calls; `start` is what tests call to run the real
//! service on a free port.

pub mod domain;

use std::net::SocketAddr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use touchpoint_platform::config::{ConfigError, Env, PlatformConfig};
use touchpoint_platform::service::{Platform, ServiceSpec, StartError};
use touchpoint_platform::shutdown::Shutdown;

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
}

impl Config {
    /// Reads the configuration; a bad value names its variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            platform: PlatformConfig::from_env(env, SPEC.name, DEFAULT_GRPC_PORT)?,
        })
    }
}

/// Starts the service; returns the gRPC address. It stops when `shutdown` does.
pub async fn start(config: Config, shutdown: &Shutdown) -> Result<SocketAddr, StartError> {
    let platform = Platform::start(SPEC, config.platform, shutdown.clone()).await?;
    platform.serve()
}

/// Runs until SIGTERM or Ctrl-C, then drains in-flight work.
pub async fn run(config: Config) -> Result<(), StartError> {
    let shutdown = Shutdown::on_signals();
    start(config, &shutdown).await?;
    shutdown.wait_and_drain(DRAIN_LIMIT).await;
    Ok(())
}
