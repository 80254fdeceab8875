//! The routing service: inbound contacts reach the right coordinator; STOP,
//! START and HELP are honoured; free text is screened for possible adverse
//! events; the roster and the worklists live here.
//!
//! `run` is what the binary calls; `start` is what tests call to run the real
//! service on a free port.

pub mod api;
pub mod batcher;
pub mod call_news;
pub mod domain;
pub mod inbound;
pub mod projection;
pub mod recorder;
pub mod store;
pub mod tasks;
pub mod webhooks;
pub mod withdrawal;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use chrono::TimeDelta;
use sqlx::migrate::Migrator;
use touchpoint_platform::config::{ConfigError, Env, PlatformConfig};
use touchpoint_platform::inbox::InboxConsumer;
use touchpoint_platform::service::{Platform, ServiceSpec, StartError};
use touchpoint_platform::shutdown::Shutdown;
use touchpoint_platform::topics::{Stream, TopicUse};
use touchpoint_programs::LiveCatalogue;
use touchpoint_proto::v1::routing_service_server::RoutingServiceServer;

use crate::api::RoutingApi;
use crate::domain::keywords::{Phrases, PhrasesError};
use crate::domain::opt_out_scope::OptOutScope;
use crate::domain::roster::Roster;
use crate::domain::screening::{Lexicon, LexiconError};
use crate::inbound::{Inbound, Settings};
use crate::projection::Projector;
use crate::webhooks::Secrets;

/// The service's name, schema and migrations.
pub const SPEC: ServiceSpec = ServiceSpec {
    name: "routing",
    schema: "routing",
    migrations: &MIGRATIONS,
};

static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// The streams it publishes and consumes, and its consumer group: what its
/// broker identity may do (`k8s/base/kafka-users.yaml`).
pub const TOPIC_USE: TopicUse = TopicUse {
    publishes: &[Stream::Inbound, Stream::Outreach],
    consumes: &[Stream::Case, Stream::Attempt, Stream::Inbound],
    group: projection::CONSUMER,
};

/// The gRPC port when `TOUCHPOINT_GRPC_ADDR` is unset.
pub const DEFAULT_GRPC_PORT: u16 = 50054;

/// The webhook port when `TOUCHPOINT_HTTP_ADDR` is unset.
pub const DEFAULT_HTTP_PORT: u16 = 8054;

/// How long in-flight work may take to finish after SIGTERM.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// The routing service's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// What every service needs.
    pub platform: PlatformConfig,
    /// `TOUCHPOINT_HTTP_ADDR`: where inbound webhooks are taken.
    pub http_addr: SocketAddr,
    /// `TOUCHPOINT_WEBHOOK_BASE_URL`: the URL providers reach `http_addr` at
    /// (default `http://` and the bound address); signatures cover it.
    pub webhook_base: Option<String>,
    /// `TOUCHPOINT_INBOUND_SMS_AUTH_TOKEN`, `TOUCHPOINT_INBOUND_EMAIL_SIGNING_KEY`,
    /// `TOUCHPOINT_INBOUND_FAX_CALLBACK_TOKEN`: unset refuses that webhook.
    /// `TOUCHPOINT_UNSUBSCRIBE_KEY`: the key dispatch signs emails' one-click
    /// unsubscribe links with; unset refuses them.
    pub secrets: Secrets,
    /// `TOUCHPOINT_CALLBACK_SLA_MINUTES` (30), `TOUCHPOINT_REPLY_WINDOW_HOURS`
    /// (72) and `TOUCHPOINT_OPT_OUT_SCOPE` (`all-programs`, or `program`).
    pub settings: Settings,
    /// `TOUCHPOINT_AE_LEXICON_FILE`: a lexicon to use instead of the built-in one.
    pub lexicon_file: Option<PathBuf>,
    /// `TOUCHPOINT_OPT_OUT_PHRASES_FILE`: opt-out phrases to use instead of the
    /// built-in ones.
    pub phrases_file: Option<PathBuf>,
    /// `TOUCHPOINT_ROSTER_REFRESH_MS`: how often the roster cache is reloaded.
    pub roster_refresh: Duration,
    /// `TOUCHPOINT_PROGRAMS_DIR`: the programs (and their state rules), whose
    /// contact windows callbacks are kept inside.
    pub programs_dir: PathBuf,
    /// `TOUCHPOINT_PROGRAMS_RELOAD_MS`: how often the folder is read again
    /// for changes (0: never).
    pub programs_reload: Duration,
}

impl Config {
    /// Reads the configuration; a bad value names its variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let minutes: u32 =
            env.parse("TOUCHPOINT_CALLBACK_SLA_MINUTES", 30, "a number of minutes")?;
        let hours: u32 = env.parse("TOUCHPOINT_REPLY_WINDOW_HOURS", 72, "a number of hours")?;
        Ok(Self {
            platform: PlatformConfig::from_env(env, SPEC.name, DEFAULT_GRPC_PORT)?,
            http_addr: env.parse(
                "TOUCHPOINT_HTTP_ADDR",
                SocketAddr::from(([127, 0, 0, 1], DEFAULT_HTTP_PORT)),
                "an address such as 127.0.0.1:8054",
            )?,
            webhook_base: env.raw("TOUCHPOINT_WEBHOOK_BASE_URL"),
            secrets: Secrets {
                sms_auth_token: env.raw("TOUCHPOINT_INBOUND_SMS_AUTH_TOKEN").map(Into::into),
                email_signing_key: env
                    .raw("TOUCHPOINT_INBOUND_EMAIL_SIGNING_KEY")
                    .map(Into::into),
                fax_callback_token: env
                    .raw("TOUCHPOINT_INBOUND_FAX_CALLBACK_TOKEN")
                    .map(Into::into),
                unsubscribe_key: env.raw("TOUCHPOINT_UNSUBSCRIBE_KEY").map(Into::into),
            },
            settings: Settings {
                callback_after: TimeDelta::minutes(i64::from(minutes)),
                reply_window: TimeDelta::hours(i64::from(hours)),
                opt_out_scope: env.parse(
                    "TOUCHPOINT_OPT_OUT_SCOPE",
                    OptOutScope::AllPrograms,
                    "all-programs or program",
                )?,
            },
            lexicon_file: env.raw("TOUCHPOINT_AE_LEXICON_FILE").map(PathBuf::from),
            phrases_file: env
                .raw("TOUCHPOINT_OPT_OUT_PHRASES_FILE")
                .map(PathBuf::from),
            roster_refresh: env.millis("TOUCHPOINT_ROSTER_REFRESH_MS", 2000)?,
            programs_dir: PathBuf::from(env.string("TOUCHPOINT_PROGRAMS_DIR", "programs")),
            programs_reload: env.millis(
                "TOUCHPOINT_PROGRAMS_RELOAD_MS",
                touchpoint_programs::DEFAULT_RELOAD_MS,
            )?,
        })
    }

    /// Defaults around `platform` and the programs in `programs_dir`, for
    /// tests: webhooks on a free port.
    pub fn new(platform: PlatformConfig, programs_dir: impl Into<PathBuf>) -> Self {
        Self {
            platform,
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            webhook_base: None,
            secrets: Secrets::default(),
            settings: Settings {
                callback_after: TimeDelta::minutes(30),
                reply_window: TimeDelta::hours(72),
                opt_out_scope: OptOutScope::AllPrograms,
            },
            lexicon_file: None,
            phrases_file: None,
            roster_refresh: Duration::from_secs(2),
            programs_dir: programs_dir.into(),
            programs_reload: Duration::from_millis(touchpoint_programs::DEFAULT_RELOAD_MS),
        }
    }
}

/// The service could not start.
#[derive(Debug, thiserror::Error)]
pub enum RoutingStartError {
    /// A data file named by `variable` could not be read.
    #[error("{variable} {path}: {reason}")]
    DataFile {
        /// The variable naming it.
        variable: &'static str,
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The lexicon.
    #[error(transparent)]
    Lexicon(#[from] LexiconError),
    /// The opt-out phrases.
    #[error(transparent)]
    Phrases(#[from] PhrasesError),
    /// The programs or their state rules are not valid.
    #[error("programs in {dir} are not valid:\n{problems}")]
    Programs {
        /// The folder.
        dir: String,
        /// One problem per line.
        problems: String,
    },
    /// The roster could not be loaded.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The webhook listener.
    #[error("cannot listen for webhooks on {addr}: {source}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// What every service needs.
    #[error(transparent)]
    Platform(#[from] StartError),
}

/// Where a started service listens.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    /// gRPC.
    pub grpc: SocketAddr,
    /// Webhooks.
    pub http: SocketAddr,
}

/// The text of the file `variable` names, or `builtin` when it names none.
fn data_file(
    variable: &'static str,
    path: Option<&PathBuf>,
    builtin: &'static str,
) -> Result<std::borrow::Cow<'static, str>, RoutingStartError> {
    match path {
        None => Ok(builtin.into()),
        Some(path) => {
            std::fs::read_to_string(path)
                .map(Into::into)
                .map_err(|e| RoutingStartError::DataFile {
                    variable,
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })
        }
    }
}

fn lexicon(config: &Config) -> Result<Lexicon, RoutingStartError> {
    let text = data_file(
        "TOUCHPOINT_AE_LEXICON_FILE",
        config.lexicon_file.as_ref(),
        domain::screening::BUILTIN,
    )?;
    Ok(Lexicon::parse(&text)?)
}

fn phrases(config: &Config) -> Result<Phrases, RoutingStartError> {
    let text = data_file(
        "TOUCHPOINT_OPT_OUT_PHRASES_FILE",
        config.phrases_file.as_ref(),
        domain::keywords::BUILTIN,
    )?;
    Ok(Phrases::parse(&text)?)
}

/// Starts the service; returns where it listens. It stops when `shutdown` does.
pub async fn start(config: Config, shutdown: &Shutdown) -> Result<Addresses, RoutingStartError> {
    let lexicon = Arc::new(lexicon(&config)?);
    let phrases = Arc::new(phrases(&config)?);
    let catalogue = Arc::new(
        LiveCatalogue::load(&config.programs_dir, false).map_err(|e| {
            RoutingStartError::Programs {
                dir: config.programs_dir.display().to_string(),
                problems: e.0,
            }
        })?,
    );
    if !config.programs_reload.is_zero() {
        shutdown.spawn(
            catalogue
                .clone()
                .run(config.programs_reload, shutdown.token()),
        );
    }
    let mut platform = Platform::start(SPEC, config.platform, shutdown.clone()).await?;
    let roster = Arc::new(RwLock::new(Roster::new(
        store::load_members(&platform.pool).await?,
    )));
    {
        let (pool, roster, every, stop) = (
            platform.pool.clone(),
            roster.clone(),
            config.roster_refresh,
            shutdown.token(),
        );
        shutdown.spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let mark = roster.read().unwrap_or_else(PoisonError::into_inner).mark();
                match store::load_members(&pool).await {
                    Ok(members) => {
                        roster
                            .write()
                            .unwrap_or_else(PoisonError::into_inner)
                            .reload(mark, Roster::new(members));
                    }
                    Err(error) => {
                        tracing::warn!(%error, "roster reload failed; keeping the last one")
                    }
                }
            }
        });
    }
    {
        // Call news is kept as long as the inbox remembers events, then
        // forgotten, hourly.
        let (pool, retention, stop) = (
            platform.pool.clone(),
            platform.config.consumer.inbox_retention,
            shutdown.token(),
        );
        shutdown.spawn(async move {
            let every = Duration::from_secs(3600).min(retention);
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                if let Err(error) = call_news::purge(&pool, retention).await {
                    tracing::warn!(%error, "call news purge failed; tried again next hour");
                }
            }
        });
    }
    let inbound_topic = platform.topics.name(Stream::Inbound);
    let inbound = Inbound::new(
        platform.pool.clone(),
        (roster.clone(), catalogue.clone()),
        (lexicon, phrases),
        (
            inbound_topic.clone(),
            platform.topics.name(Stream::Outreach),
        ),
        config.settings,
    );
    platform
        .grpc
        .routes()
        .add_service(RoutingServiceServer::new(RoutingApi::new(
            platform.pool.clone(),
            roster,
            inbound.clone(),
            platform.clock.clone(),
            inbound_topic,
        )));

    let consumer = InboxConsumer::new(
        TOPIC_USE.group,
        TOPIC_USE.consumed(&platform.topics),
        platform.pool.clone(),
        Projector {
            topic: platform.topics.name(Stream::Inbound),
            catalogue,
        },
        &platform.config,
    );
    shutdown.supervise("routing consumer", consumer.run(shutdown.token()));

    let http_error = |source| RoutingStartError::Http {
        addr: config.http_addr,
        source,
    };
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .map_err(http_error)?;
    let http = listener.local_addr().map_err(http_error)?;
    let base = config
        .webhook_base
        .clone()
        .unwrap_or_else(|| format!("http://{http}"));
    let routes = webhooks::router(inbound, platform.clock.clone(), config.secrets, base);
    let stop = shutdown.token();
    shutdown.supervise(
        "webhook listener",
        axum::serve(listener, routes)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .into_future(),
    );
    tracing::info!(%http, "taking inbound webhooks");
    let grpc = platform.serve()?;
    Ok(Addresses { grpc, http })
}

/// Runs until SIGTERM or Ctrl-C, or until a task it cannot do without stops,
/// then drains in-flight work; an error names the task.
pub async fn run(config: Config) -> Result<(), RoutingStartError> {
    let shutdown = Shutdown::on_signals();
    start(config, &shutdown).await?;
    Ok(touchpoint_platform::service::until_stopped(&shutdown, DRAIN_LIMIT).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opt_out_scope_is_read_and_a_misspelt_one_names_its_variable() {
        let scope = |value| {
            Config::from_env(&Env::from_pairs([("TOUCHPOINT_OPT_OUT_SCOPE", value)]))
                .map(|c| c.settings.opt_out_scope)
        };
        assert!(matches!(scope("program"), Ok(OptOutScope::Program)));
        assert!(matches!(
            scope("all-programs"),
            Ok(OptOutScope::AllPrograms)
        ));
        let unset = Config::from_env(&Env::from_pairs([])).map(|c| c.settings.opt_out_scope);
        assert!(matches!(unset, Ok(OptOutScope::AllPrograms)));
        let refused = scope("per-program").map_err(|e| e.to_string());
        assert!(
            matches!(&refused, Err(message) if message.contains("TOUCHPOINT_OPT_OUT_SCOPE")),
            "{refused:?}"
        );
    }

    #[test]
    fn the_configuration_shows_no_secret_when_printed() {
        let env = Env::from_pairs([
            ("TOUCHPOINT_INBOUND_SMS_AUTH_TOKEN", "sms-s3cret"),
            ("TOUCHPOINT_INBOUND_EMAIL_SIGNING_KEY", "email-s3cret"),
            ("TOUCHPOINT_INBOUND_FAX_CALLBACK_TOKEN", "fax-s3cret"),
            ("TOUCHPOINT_UNSUBSCRIBE_KEY", "unsubscribe-s3cret"),
        ]);
        let printed = Config::from_env(&env).map(|c| format!("{c:?}"));
        assert!(
            printed
                .as_ref()
                .is_ok_and(|p| p.contains("sms_auth_token") && !p.contains("s3cret")),
            "{printed:?}"
        );
    }
}
