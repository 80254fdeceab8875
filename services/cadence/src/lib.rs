//! The cadence service: when each touchpoint is due. It loads the programs,
//! enrols cases from `touchpoint.case.v1`, keeps each enrolment's timer in
//! PostgreSQL, emits an `OutreachRequested` for each due attempt, and reacts to
//! attempt outcomes and inbound contacts.
//!
//! `run` is what the binary calls; `start` is what tests call to run the real
//! service on a free port.

pub mod api;
pub mod due;
pub mod enrolment;
pub mod events;
pub mod holds;
pub mod library;
pub mod plan;
pub mod preview;
pub use touchpoint_programs as program;
pub mod reactions;
pub mod store;
mod stored;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use touchpoint_platform::config::{ConfigError, Env, PlatformConfig};
use touchpoint_platform::inbox::InboxConsumer;
use touchpoint_platform::service::{Platform, ServiceSpec, StartError};
use touchpoint_platform::shutdown::Shutdown;
use touchpoint_platform::topics::{Stream, TopicUse};
use touchpoint_proto::v1::cadence_service_server::CadenceServiceServer;

use crate::api::CadenceApi;
use crate::due::DueLoop;
use crate::library::{Library, LibraryError};
use crate::reactions::Reactions;

/// The service's name, schema and migrations.
pub const SPEC: ServiceSpec = ServiceSpec {
    name: "cadence",
    schema: "cadence",
    migrations: &MIGRATIONS,
};

static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// The streams it publishes and consumes, and its consumer group: what its
/// broker identity may do (`k8s/base/kafka-users.yaml`).
pub const TOPIC_USE: TopicUse = TopicUse {
    publishes: &[Stream::Outreach],
    consumes: &[Stream::Case, Stream::Attempt, Stream::Inbound],
    group: reactions::CONSUMER,
};

/// The gRPC port when `TOUCHPOINT_GRPC_ADDR` is unset.
pub const DEFAULT_GRPC_PORT: u16 = 50052;

/// How long in-flight work may take to finish after SIGTERM.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// The cadence service's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// What every service needs.
    pub platform: PlatformConfig,
    /// `TOUCHPOINT_PROGRAMS_DIR`: the program folders, loaded and validated at
    /// start, and read again while it runs ([`library`]).
    pub programs_dir: PathBuf,
    /// `TOUCHPOINT_PROGRAMS_RELOAD_MS`: how often the programs folder is read
    /// again for changes (0: never).
    pub programs_reload: Duration,
    /// `TOUCHPOINT_DUE_BATCH`: enrolments the due loop claims per round.
    pub due_batch: usize,
    /// `TOUCHPOINT_DUE_POLL_MS`: how often an idle due loop looks for due timers.
    pub due_poll: Duration,
}

const DEFAULT_DUE_BATCH: usize = 500;
const DEFAULT_DUE_POLL_MS: u64 = 200;

impl Config {
    /// Reads the configuration; a bad value names its variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            platform: PlatformConfig::from_env(env, SPEC.name, DEFAULT_GRPC_PORT)?,
            programs_dir: PathBuf::from(env.string("TOUCHPOINT_PROGRAMS_DIR", "programs")),
            programs_reload: env
                .millis("TOUCHPOINT_PROGRAMS_RELOAD_MS", program::DEFAULT_RELOAD_MS)?,
            due_batch: env.count("TOUCHPOINT_DUE_BATCH", DEFAULT_DUE_BATCH, 10_000)?,
            due_poll: env.millis("TOUCHPOINT_DUE_POLL_MS", DEFAULT_DUE_POLL_MS)?,
        })
    }

    /// `platform` with the programs in `programs_dir` and the default due loop.
    pub fn new(platform: PlatformConfig, programs_dir: impl Into<PathBuf>) -> Self {
        Self {
            platform,
            programs_dir: programs_dir.into(),
            programs_reload: Duration::from_millis(program::DEFAULT_RELOAD_MS),
            due_batch: DEFAULT_DUE_BATCH,
            due_poll: Duration::from_millis(DEFAULT_DUE_POLL_MS),
        }
    }
}

/// The cadence service could not start.
#[derive(Debug, thiserror::Error)]
pub enum CadenceStartError {
    /// The programs folder holds an invalid program (every problem listed).
    #[error("the programs in {dir} are not valid:\n{problems}")]
    Programs {
        /// The folder.
        dir: String,
        /// One problem per line: `file: step: field: problem`.
        problems: String,
    },
    /// The published program versions could not be read or written.
    #[error("program versions: {0}")]
    Versions(sqlx::Error),
    /// What every service needs.
    #[error(transparent)]
    Platform(#[from] StartError),
}

/// Starts the service; returns the gRPC address. It stops when `shutdown` does.
pub async fn start(config: Config, shutdown: &Shutdown) -> Result<SocketAddr, CadenceStartError> {
    let dir = config.programs_dir.display().to_string();
    let invalid = |problems: String| CadenceStartError::Programs {
        dir: dir.clone(),
        problems,
    };
    // Checked before anything starts: a service does not start on an invalid
    // folder.
    let rules = program::LiveCatalogue::load(&config.programs_dir, false)
        .map_err(|e| invalid(e.0))?
        .rules()
        .clone();

    let mut platform = Platform::start(SPEC, config.platform, shutdown.clone()).await?;
    let library = Arc::new(
        Library::open(platform.pool.clone(), config.programs_dir.clone(), rules)
            .await
            .map_err(|e| match e {
                LibraryError::Invalid(problems) => invalid(problems),
                LibraryError::Database(e) => CadenceStartError::Versions(e),
            })?,
    );
    tracing::info!(
        programs = library.shelf().newest().iter().count(),
        "programs loaded"
    );
    if !config.programs_reload.is_zero() {
        shutdown.spawn(
            library
                .clone()
                .run(config.programs_reload, shutdown.token()),
        );
    }
    let api = CadenceApi::new(
        platform.pool.clone(),
        library.clone(),
        platform.clock.clone(),
        platform.topics.name(Stream::Outreach),
    );
    platform
        .grpc
        .routes()
        .add_service(CadenceServiceServer::new(api));

    let reactions = InboxConsumer::new(
        TOPIC_USE.group,
        TOPIC_USE.consumed(&platform.topics),
        platform.pool.clone(),
        Reactions::new(
            library.clone(),
            platform.clock.clone(),
            platform.topics.name(Stream::Outreach),
        ),
        &platform.config,
    );
    shutdown.supervise("cadence consumer", reactions.run(shutdown.token()));

    let due = DueLoop::new(
        platform.pool.clone(),
        library,
        platform.clock.clone(),
        platform.topics.name(Stream::Outreach),
        config.due_batch,
        config.due_poll,
    );
    shutdown.spawn(due.run(shutdown.token()));
    Ok(platform.serve()?)
}

/// Runs until SIGTERM or Ctrl-C, or until a task it cannot do without stops,
/// then drains in-flight work; an error names the task.
pub async fn run(config: Config) -> Result<(), CadenceStartError> {
    let shutdown = Shutdown::on_signals();
    start(config, &shutdown).await?;
    Ok(touchpoint_platform::service::until_stopped(&shutdown, DRAIN_LIMIT).await?)
}
