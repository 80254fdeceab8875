//! The desk: the browser front for the people a support center employs.
//! Coordinators and navigators sign in through the hub's OpenID provider, work
//! their worklist, open a case and record what happened. Pages are rendered on
//! the server; the four services are reached over their gRPC APIs, and the
//! desk keeps only its own state (sessions, the access log) in its schema.
//!
//! `run` is what the binary calls; `start` is what tests call to run the real
//! desk on a free port.

pub mod chart;
pub mod e2b;
pub mod i18n;
pub mod jwt;
pub mod live;
pub mod mask;
pub mod oidc;
pub mod ops;
pub mod peers;
pub mod store;
pub mod user;
pub mod views;
pub mod words;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom as _, SystemRandom};
use sqlx::migrate::Migrator;
use touchpoint_platform::clock::ClockConfig;
use touchpoint_platform::config::{ConfigError, DatabaseConfig, Env, TelemetryConfig};
use touchpoint_platform::db::{self, DbError};
use touchpoint_platform::grpc::client::ClientAccess;
use touchpoint_platform::secret::{ExposeSecret as _, SecretString};
use touchpoint_platform::shutdown::Shutdown;
use touchpoint_platform::vouch::Voucher;

use crate::oidc::{OidcConfig, OidcError, Provider};
use crate::peers::{PeerUrls, Peers};
use crate::store::Lifetime;

/// The desk's schema.
pub const SCHEMA: &str = "desk";

static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// Where the desk listens when `TOUCHPOINT_DESK_ADDR` is unset.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// How long in-flight requests may take to finish after SIGTERM.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// The desk's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `TOUCHPOINT_DESK_ADDR` (127.0.0.1:8080): where browsers reach it.
    pub addr: SocketAddr,
    /// `TOUCHPOINT_DESK_PUBLIC_URL`: the URL users open (default `http://`
    /// and the bound address). With `https://` cookies are `Secure`.
    pub public_url: Option<String>,
    /// `DATABASE_URL`.
    pub database: DatabaseConfig,
    /// The OTLP settings.
    pub telemetry: TelemetryConfig,
    /// `TOUCHPOINT_CLOCK`: the clock local times are shown on.
    pub clock: ClockConfig,
    /// `TOUCHPOINT_CASES_URL`, `_CADENCE_URL`, `_DISPATCH_URL`, `_ROUTING_URL`.
    pub peers: PeerUrls,
    /// What the desk presents to the services: `TOUCHPOINT_TLS_*`,
    /// `TOUCHPOINT_API_TOKEN`.
    pub access: ClientAccess,
    /// `TOUCHPOINT_OIDC_*`: the identity provider; unset, only the
    /// development sign-in (if enabled) signs anyone in.
    pub oidc: Option<OidcConfig>,
    /// `TOUCHPOINT_DESK_DEV_LOGIN=true`: a sign-in form that believes what it
    /// is told, for local runs only.
    pub dev_login: bool,
    /// When sessions end.
    pub lifetime: Lifetime,
    /// `TOUCHPOINT_DESK_VOUCH_KEY_FILE`: the desk's Ed25519 key (a base64url
    /// PKCS#8 document) with which it vouches to the services for the
    /// signed-in user; the services trust its public key
    /// (`TOUCHPOINT_USER_VOUCH_KEYS`).
    pub vouch_key: Option<SecretString>,
}

impl Config {
    /// Reads the configuration; a bad value names its variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let oidc = match env.raw("TOUCHPOINT_OIDC_ISSUER") {
            None => None,
            Some(issuer) => {
                let required = |var: &str| {
                    env.raw(var).ok_or_else(|| ConfigError {
                        var: var.into(),
                        reason: "required with TOUCHPOINT_OIDC_ISSUER".into(),
                    })
                };
                let ca_pem = env
                    .raw("TOUCHPOINT_OIDC_CA_FILE")
                    .map(|path| {
                        std::fs::read_to_string(path.trim()).map_err(|_| ConfigError {
                            var: "TOUCHPOINT_OIDC_CA_FILE".into(),
                            reason: "expected a readable PEM file".into(),
                        })
                    })
                    .transpose()?;
                Some(OidcConfig {
                    issuer: issuer.trim().to_owned(),
                    client_id: required("TOUCHPOINT_OIDC_CLIENT_ID")?,
                    client_secret: required("TOUCHPOINT_OIDC_CLIENT_SECRET")?.into(),
                    ca_pem,
                    id_claim: env.string("TOUCHPOINT_OIDC_ID_CLAIM", "preferred_username"),
                })
            }
        };
        let public_url = env.raw("TOUCHPOINT_DESK_PUBLIC_URL");
        if let Some(url) = &public_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(ConfigError {
                var: "TOUCHPOINT_DESK_PUBLIC_URL".into(),
                reason: "expected an http:// or https:// URL".into(),
            });
        }
        Ok(Self {
            addr: env.parse(
                "TOUCHPOINT_DESK_ADDR",
                DEFAULT_ADDR
                    .parse()
                    .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080))),
                "an address such as 127.0.0.1:8080",
            )?,
            public_url: public_url.map(|u| u.trim_end_matches('/').to_owned()),
            database: DatabaseConfig::from_env(env)?,
            telemetry: TelemetryConfig::from_env(env, "desk")?,
            clock: ClockConfig::from_env(env)?,
            peers: PeerUrls::from_env(env),
            access: ClientAccess::from_env(env)?,
            oidc,
            dev_login: env.parse("TOUCHPOINT_DESK_DEV_LOGIN", false, "true or false")?,
            lifetime: Lifetime::default(),
            vouch_key: env
                .raw("TOUCHPOINT_DESK_VOUCH_KEY_FILE")
                .map(|path| {
                    std::fs::read_to_string(path.trim())
                        .map(SecretString::from)
                        .map_err(|_| ConfigError {
                            var: "TOUCHPOINT_DESK_VOUCH_KEY_FILE".into(),
                            reason: "expected a readable file".into(),
                        })
                })
                .transpose()?,
        })
    }
}

/// The desk could not start.
#[derive(Debug, thiserror::Error)]
pub enum DeskStartError {
    /// Its database.
    #[error(transparent)]
    Database(#[from] DbError),
    /// The identity provider.
    #[error(transparent)]
    Oidc(#[from] OidcError),
    /// A service's URL.
    #[error("cannot reach the services: {0}")]
    Peers(String),
    /// The listener.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A template or locale file is broken.
    #[error("the desk's pages cannot be loaded: {0}")]
    Pages(String),
    /// The vouching key is missing or broken.
    #[error("TOUCHPOINT_DESK_VOUCH_KEY_FILE: {0}")]
    VouchKey(String),
    /// Nobody could sign in.
    #[error(
        "no way to sign in: set TOUCHPOINT_OIDC_ISSUER (or, for a local run only, TOUCHPOINT_DESK_DEV_LOGIN=true)"
    )]
    NoSignIn,
    /// A task it cannot do without stopped.
    #[error("stopped: {0}")]
    Stopped(String),
}

/// Starts the desk; returns the address it listens on.
pub async fn start(config: Config, shutdown: &Shutdown) -> Result<SocketAddr, DeskStartError> {
    if config.oidc.is_none() && !config.dev_login {
        return Err(DeskStartError::NoSignIn);
    }
    let pages = views::pages::shared().ok_or_else(|| {
        DeskStartError::Pages(views::pages::load_error().unwrap_or_default().to_owned())
    })?;
    let voucher = config
        .vouch_key
        .as_ref()
        .ok_or_else(|| {
            DeskStartError::VouchKey(
                "required: the services act only for a user the desk vouches for".into(),
            )
        })
        .and_then(|key| {
            Voucher::from_pkcs8(key.expose_secret())
                .map_err(|e| DeskStartError::VouchKey(e.to_string()))
        })?;
    let pool = db::connect(&config.database, SCHEMA, &MIGRATIONS).await?;
    let provider = match config.oidc.clone() {
        Some(oidc) => Some(Arc::new(Provider::discover(oidc).await?)),
        None => None,
    };
    let peers = Peers::connect(&config.peers, &config.access)
        .map_err(|e| DeskStartError::Peers(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| DeskStartError::Listen {
            addr: config.addr,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| DeskStartError::Listen {
            addr: config.addr,
            source,
        })?;
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let clock = config.clock.build();
    let live = live::Live::start(peers.clone(), shutdown);
    let state = views::Desk {
        pool: pool.clone(),
        clock,
        peers,
        provider,
        dev_login: config.dev_login,
        secure_cookies: public_url.starts_with("https://"),
        public_url,
        lifetime: config.lifetime,
        pages,
        live,
        voucher: Arc::new(voucher),
    };
    let routes = views::router(state);
    let stop = shutdown.token();
    shutdown.supervise(
        "desk listener",
        axum::serve(listener, routes)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .into_future(),
    );
    let lifetime = config.lifetime;
    let token = shutdown.token();
    shutdown.spawn(async move {
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(60)) => {}
            }
            if let Err(error) = store::prune_sessions(&pool, lifetime, chrono::Utc::now()).await {
                tracing::warn!(%error, "could not prune ended sessions");
            }
        }
    });
    tracing::info!(%addr, "desk serving");
    Ok(addr)
}

/// Runs until SIGTERM or Ctrl-C, or until a task it cannot do without stops.
pub async fn run(config: Config) -> Result<(), DeskStartError> {
    let shutdown = Shutdown::on_signals();
    start(config, &shutdown).await?;
    shutdown.wait_and_drain(DRAIN_LIMIT).await;
    match shutdown.failure() {
        Some(failure) => Err(DeskStartError::Stopped(failure.to_owned())),
        None => Ok(()),
    }
}

/// 32 random bytes, base64url: session ids, CSRF tokens, sign-in state.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // The system's generator does not fail on a working machine; a zeroed
    // buffer would be guessable, so a failure is loud.
    if SystemRandom::new().fill(&mut bytes).is_err() {
        tracing::error!("the system's random generator failed");
        std::process::abort();
    }
    URL_SAFE_NO_PAD.encode(bytes)
}
