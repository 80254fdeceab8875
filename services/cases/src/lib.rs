//! The cases service: the event-sourced system of record for each case.
//!
//! `run` is what the binary calls; `start` is what tests call to run the real
//! service on a free port.

pub mod api;
pub mod domain;
pub mod kpi;
pub mod store;
pub mod timeline;
pub mod timeline_consumer;
pub mod watch;

use std::net::SocketAddr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use touchpoint_platform::config::{ConfigError, Env, PlatformConfig};
use touchpoint_platform::service::{Platform, ServiceSpec, StartError};
use touchpoint_platform::shutdown::Shutdown;
use touchpoint_platform::topics::{Stream, TopicUse};
use touchpoint_proto::v1::case_service_server::CaseServiceServer;

use touchpoint_platform::inbox::InboxConsumer;

use crate::api::CaseApi;
use crate::store::CaseStore;
use crate::timeline_consumer::TimelineRecorder;

/// The service's name, schema and migrations.
pub const SPEC: ServiceSpec = ServiceSpec {
    name: "cases",
    schema: "cases",
    migrations: &MIGRATIONS,
};

static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// The streams it publishes and consumes, and its consumer group: what its
/// broker identity may do (`k8s/base/kafka-users.yaml`).
pub const TOPIC_USE: TopicUse = TopicUse {
    publishes: &[Stream::Case],
    consumes: &[Stream::Outreach, Stream::Attempt, Stream::Inbound],
    group: timeline_consumer::CONSUMER,
};

/// The gRPC port when `TOUCHPOINT_GRPC_ADDR` is unset.
pub const DEFAULT_GRPC_PORT: u16 = 50051;

/// How long in-flight work may take to finish after SIGTERM.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// The site's time zone when `TOUCHPOINT_SITE_TIME_ZONE` is unset.
pub const DEFAULT_SITE_TIME_ZONE: chrono_tz::Tz = chrono_tz::America::New_York;

/// How often the KPI projection looks for new timeline entries when caught up.
const KPI_POLL: Duration = Duration::from_millis(250);

/// The cases service's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// What every service needs.
    pub platform: PlatformConfig,
    /// The zone the KPI projection's days are in (`TOUCHPOINT_SITE_TIME_ZONE`).
    pub site_time_zone: chrono_tz::Tz,
}

impl Config {
    /// `platform` with the defaults of the rest.
    pub fn new(platform: PlatformConfig) -> Self {
        Self {
            platform,
            site_time_zone: DEFAULT_SITE_TIME_ZONE,
        }
    }

    /// Reads the configuration; a bad value names its variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            platform: PlatformConfig::from_env(env, SPEC.name, DEFAULT_GRPC_PORT)?,
            site_time_zone: env.parse(
                "TOUCHPOINT_SITE_TIME_ZONE",
                DEFAULT_SITE_TIME_ZONE,
                "an IANA time zone such as America/Chicago",
            )?,
        })
    }
}

/// Starts the service; returns the gRPC address. It stops when `shutdown` does.
pub async fn start(config: Config, shutdown: &Shutdown) -> Result<SocketAddr, StartError> {
    let mut platform = Platform::start(SPEC, config.platform, shutdown.clone()).await?;
    let store = CaseStore::new(
        platform.pool.clone(),
        platform.clock.clone(),
        platform.topics.name(Stream::Case),
    );
    let api = CaseApi::new(store.clone(), config.site_time_zone, shutdown.token());
    platform
        .grpc
        .routes()
        .add_service(CaseServiceServer::new(api));

    // Other services' events join the case timeline.
    let timeline = InboxConsumer::new(
        TOPIC_USE.group,
        TOPIC_USE.consumed(&platform.topics),
        platform.pool.clone(),
        TimelineRecorder::new(store),
        &platform.config,
    );
    shutdown.supervise("timeline consumer", timeline.run(shutdown.token()));
    let kpis = kpi::projector::run(
        platform.pool.clone(),
        config.site_time_zone,
        KPI_POLL,
        shutdown.token(),
    );
    shutdown.supervise("KPI projection", kpis);
    platform.serve()
}

/// Runs until SIGTERM or Ctrl-C, or until a task it cannot do without stops,
/// then drains in-flight work; an error names the task.
pub async fn run(config: Config) -> Result<(), StartError> {
    let shutdown = Shutdown::on_signals();
    start(config, &shutdown).await?;
    touchpoint_platform::service::until_stopped(&shutdown, DRAIN_LIMIT).await
}
