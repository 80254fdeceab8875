//! What every service does at start, in order: connect to its schema and migrate,
//! create the topics, start the outbox relay, and bind gRPC with health and
//! reflection. A service's `start` adds its own API and consumers in between.

use std::net::SocketAddr;

use sqlx::PgPool;
use sqlx::migrate::Migrator;

use crate::clock::SharedClock;
use crate::config::PlatformConfig;
use crate::db::{self, DbError};
use crate::grpc::{GrpcError, GrpcServer};
use crate::metrics;
use crate::outbox::OutboxRelay;
use crate::shutdown::Shutdown;
use crate::topics::{self, TopicError, Topics};

/// Who a service is, for the platform.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSpec {
    /// Name in logs and traces, and its `source` in envelopes.
    pub name: &'static str,
    /// Its own PostgreSQL schema.
    pub schema: &'static str,
    /// Its embedded migrations (versions 1000 and up).
    pub migrations: &'static Migrator,
}

/// A service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database.
    #[error(transparent)]
    Database(#[from] DbError),
    /// The broker.
    #[error(transparent)]
    Topics(#[from] TopicError),
    /// The gRPC listener.
    #[error(transparent)]
    Grpc(#[from] GrpcError),
    /// Reading the bound address.
    #[error("listener address unavailable: {0}")]
    Address(#[from] std::io::Error),
    /// A task the service cannot do without stopped it.
    #[error("stopped: {0}")]
    Stopped(String),
}

/// Runs until SIGTERM or Ctrl-C, or until a supervised task stops the service,
/// then drains in-flight work for at most `limit`. An error names the task that
/// stopped it, so the process exits non-zero and is restarted.
pub async fn until_stopped(
    shutdown: &Shutdown,
    limit: std::time::Duration,
) -> Result<(), StartError> {
    shutdown.wait_and_drain(limit).await;
    match shutdown.failure() {
        Some(failure) => Err(StartError::Stopped(failure.to_owned())),
        None => Ok(()),
    }
}

/// The shared parts of a running service.
#[derive(Debug)]
pub struct Platform {
    /// The service.
    pub spec: ServiceSpec,
    /// Its configuration.
    pub config: PlatformConfig,
    /// A pool confined to its schema.
    pub pool: PgPool,
    /// Its clock.
    pub clock: SharedClock,
    /// Topic names under the configured prefix.
    pub topics: Topics,
    /// Its gRPC server, not serving until [`Platform::serve`].
    pub grpc: GrpcServer,
    /// The shutdown every task watches.
    pub shutdown: Shutdown,
}

impl Platform {
    /// Migrates, creates missing topics (unless told not to), starts the outbox
    /// relay and binds gRPC.
    pub async fn start(
        spec: ServiceSpec,
        config: PlatformConfig,
        shutdown: Shutdown,
    ) -> Result<Self, StartError> {
        let pool = db::connect(&config.database, spec.schema, spec.migrations).await?;
        if config.kafka.create_topics {
            topics::bootstrap(&config.kafka).await?;
        }
        let relay = OutboxRelay::new(pool.clone(), spec.schema, &config)?;
        shutdown.spawn(relay.run(shutdown.token()));
        if config.telemetry.otlp_endpoint.is_some() {
            shutdown.spawn(metrics::watch_outbox(pool.clone(), shutdown.token()));
        }
        let grpc = GrpcServer::bind(config.grpc_addr, config.health_addr, &config.access).await?;
        Ok(Self {
            spec,
            clock: config.clock.build(),
            topics: Topics::new(config.kafka.topic_prefix.clone()),
            config,
            pool,
            grpc,
            shutdown,
        })
    }

    /// Starts serving gRPC; returns the bound address.
    pub fn serve(self) -> Result<SocketAddr, StartError> {
        let addr = self.grpc.local_addr()?;
        let name = self.spec.name;
        let token = self.shutdown.token();
        self.shutdown
            .supervise("gRPC server", async move { self.grpc.serve(token).await });
        tracing::info!(service = name, %addr, "serving gRPC");
        Ok(addr)
    }
}
