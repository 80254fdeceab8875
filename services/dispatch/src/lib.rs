//! The dispatch service: delivery of attempts over SMS, email, fax, letters and
//! call tasks, each handed over once, with consent checked at the last moment.
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
pub mod callbacks;
mod calls;
pub mod domain;
pub mod intake;
pub mod metrics;
pub mod outcomes;
pub mod providers;
pub mod sender;
pub mod sla;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use touchpoint_platform::config::{ConfigError, Env, PlatformConfig};
use touchpoint_platform::inbox::InboxConsumer;
use touchpoint_platform::secret::SecretString;
use touchpoint_platform::service::{Platform, ServiceSpec, StartError};
use touchpoint_platform::shutdown::Shutdown;
use touchpoint_platform::topics::{Stream, TopicUse};
use touchpoint_programs::LiveCatalogue;
use touchpoint_proto::v1::dispatch_service_server::DispatchServiceServer;

use crate::api::DispatchApi;
use crate::domain::guard::DestinationCap;
use crate::intake::Intaker;
use crate::providers::email::{MailTls, StartTls, Unsubscribe};
use crate::providers::http::HttpClient;
use crate::providers::{Lob, Mailer, Mailgun, Phaxio, Providers, Throttle, Twilio, TwilioVoice};
use crate::sender::{Sender, SenderConfig};

/// The service's name, schema and migrations.
pub const SPEC: ServiceSpec = ServiceSpec {
    name: "dispatch",
    schema: "dispatch",
    migrations: &MIGRATIONS,
};

static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// The streams it publishes and consumes, and its consumer group: what its
/// broker identity may do (`k8s/base/kafka-users.yaml`).
pub const TOPIC_USE: TopicUse = TopicUse {
    publishes: &[Stream::Attempt],
    consumes: &[Stream::Case, Stream::Inbound, Stream::Outreach],
    group: intake::CONSUMER,
};

/// The gRPC port when `TOUCHPOINT_GRPC_ADDR` is unset.
pub const DEFAULT_GRPC_PORT: u16 = 50053;

/// A provider's pace from `var`, in messages a second; unset: as fast as it takes.
fn rate(env: &Env, var: &str) -> Result<Option<NonZeroU32>, ConfigError> {
    env.raw(var)
        .map(|_| {
            let per_second = env.count(var, 1, 100_000)?;
            NonZeroU32::new(per_second as u32).ok_or_else(|| ConfigError {
                var: var.to_owned(),
                reason: "expected a number of messages a second above 0".into(),
            })
        })
        .transpose()
}

/// The callback port when `TOUCHPOINT_HTTP_ADDR` is unset.
pub const DEFAULT_HTTP_PORT: u16 = 8053;

/// How long in-flight work may take to finish after SIGTERM.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// The dispatch service's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// What every service needs.
    pub platform: PlatformConfig,
    /// `TOUCHPOINT_PROGRAMS_DIR`: the programs and their templates.
    pub programs_dir: PathBuf,
    /// `TOUCHPOINT_PROGRAMS_RELOAD_MS`: how often the folder is read again
    /// for changes (0: never).
    pub programs_reload: Duration,
    /// The sender: `TOUCHPOINT_SEND_BATCH`, `TOUCHPOINT_SEND_POLL_MS`,
    /// `TOUCHPOINT_SEND_MAX_TRIES` (per provider), `TOUCHPOINT_SENDING_TIMEOUT_MS`,
    /// `TOUCHPOINT_DESTINATION_CAP_PER_DAY` (3: texts and calls to one phone
    /// number in any 24 hours, across cases and programs).
    pub sender: SenderConfig,
    /// `TOUCHPOINT_HTTP_ADDR`: where provider callbacks are taken.
    pub http_addr: SocketAddr,
    /// `TOUCHPOINT_CALLBACK_BASE_URL`: the URL providers reach `http_addr` at
    /// (default `http://` and the bound address).
    pub callback_base: Option<String>,
    /// SMS providers in failover order: `TOUCHPOINT_SMS_PRIMARY_*`, then
    /// `TOUCHPOINT_SMS_FAILOVER_*`.
    pub sms: Vec<SmsProvider>,
    /// The HTTP email provider: `TOUCHPOINT_MAILGUN_URL`, `_DOMAIN`,
    /// `_API_KEY`, `_FROM`, `_SIGNING_KEY`, `_RATE`. Set, it is email's first
    /// provider and the SMTP relay its fallback.
    pub mailgun: Option<MailgunProvider>,
    /// The SMTP relay for email: `TOUCHPOINT_SMTP_HOST`, `_PORT`, `_FROM`,
    /// `_USERNAME`, `_PASSWORD`. Unset host and no Mailgun: no email.
    pub smtp: Option<SmtpRelay>,
    /// The fax provider: `TOUCHPOINT_FAX_URL`, `_API_KEY`, `_API_SECRET`,
    /// `_CALLBACK_TOKEN`, `_RATE`. Unset URL: no fax.
    pub fax: Option<FaxProvider>,
    /// The voice provider for people's calls (click to call):
    /// `TOUCHPOINT_VOICE_URL`, `_ACCOUNT_SID`, `_AUTH_TOKEN`, `_CALLER_ID`.
    /// Unset URL: PlaceCall is refused.
    pub voice: Option<VoiceProvider>,
    /// The print-and-mail provider for letters: `TOUCHPOINT_MAIL_URL`,
    /// `_API_KEY`, `_FROM`, `_WEBHOOK_SECRET`, `_RATE`. Unset URL: no letters.
    pub mail: Option<MailProvider>,
    /// `TOUCHPOINT_PROVIDER_TIMEOUT_MS`: how long a provider has to answer.
    pub provider_timeout: Duration,
    /// `TOUCHPOINT_PROVIDER_CA_FILE`: a PEM file of certificate authorities the
    /// SMS and fax providers' `https://` URLs may also be signed by (a private
    /// CA, or the sandbox's development one), beside the public web's roots.
    pub provider_roots: Option<String>,
    /// SLA alerts by email (`sla.rs`).
    pub sla: SlaConfig,
}

/// Who is mailed late callbacks and adverse-event reviews, and how often
/// dispatch looks.
#[derive(Debug, Clone)]
pub struct SlaConfig {
    /// `TOUCHPOINT_SLA_ALERT_TO`: `program=address+address,...` (`*`: any
    /// other program). Empty: alerts are only logged.
    pub recipients: sla::Recipients,
    /// `TOUCHPOINT_DESK_URL`: the desk's URL, for links in alerts.
    pub desk_url: Option<String>,
    /// `TOUCHPOINT_SLA_POLL_MS` (5000).
    pub poll: Duration,
}

impl Default for SlaConfig {
    fn default() -> Self {
        Self {
            recipients: sla::Recipients::default(),
            desk_url: None,
            poll: Duration::from_secs(5),
        }
    }
}

/// The Phaxio-speaking fax provider's settings.
#[derive(Debug, Clone)]
pub struct FaxProvider {
    /// The API's base URL.
    pub base_url: String,
    /// The API key.
    pub api_key: String,
    /// The API secret.
    pub api_secret: SecretString,
    /// The token its callbacks are signed with.
    pub callback_token: SecretString,
    /// At most this many faxes a second.
    pub rate: Option<NonZeroU32>,
}

impl FaxProvider {
    fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let Some(base_url) = env.raw("TOUCHPOINT_FAX_URL") else {
            return Ok(None);
        };
        provider_url("TOUCHPOINT_FAX_URL", &base_url)?;
        let required = required_with(env, "TOUCHPOINT_FAX_URL");
        Ok(Some(Self {
            base_url,
            api_key: required("TOUCHPOINT_FAX_API_KEY")?,
            api_secret: required("TOUCHPOINT_FAX_API_SECRET")?.into(),
            callback_token: required("TOUCHPOINT_FAX_CALLBACK_TOKEN")?.into(),
            rate: rate(env, "TOUCHPOINT_FAX_RATE")?,
        }))
    }
}

/// The Lob-speaking print-and-mail provider's settings.
#[derive(Debug, Clone)]
pub struct MailProvider {
    /// `TOUCHPOINT_MAIL_URL`: the API's base URL, e.g. `https://api.lob.com`.
    pub base_url: String,
    /// `TOUCHPOINT_MAIL_API_KEY`: the secret API key.
    pub api_key: SecretString,
    /// `TOUCHPOINT_MAIL_FROM`: the return address, the id (`adr_…`) of an
    /// address saved in the account.
    pub from: String,
    /// `TOUCHPOINT_MAIL_WEBHOOK_SECRET`: what the letter webhooks are signed
    /// with.
    pub webhook_secret: SecretString,
    /// `TOUCHPOINT_MAIL_RATE`: at most this many letters a second.
    pub rate: Option<NonZeroU32>,
}

impl MailProvider {
    fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        const URL: &str = "TOUCHPOINT_MAIL_URL";
        let Some(base_url) = env.raw(URL) else {
            return Ok(None);
        };
        provider_url(URL, &base_url)?;
        let required = required_with(env, URL);
        Ok(Some(Self {
            base_url,
            api_key: required("TOUCHPOINT_MAIL_API_KEY")?.into(),
            from: required("TOUCHPOINT_MAIL_FROM")?,
            webhook_secret: required("TOUCHPOINT_MAIL_WEBHOOK_SECRET")?.into(),
            rate: rate(env, "TOUCHPOINT_MAIL_RATE")?,
        }))
    }
}

/// The Twilio-speaking voice provider's settings.
#[derive(Debug, Clone)]
pub struct VoiceProvider {
    /// `TOUCHPOINT_VOICE_URL`: the API's base URL.
    pub base_url: String,
    /// `TOUCHPOINT_VOICE_ACCOUNT_SID`.
    pub account_sid: String,
    /// `TOUCHPOINT_VOICE_AUTH_TOKEN`: it also signs the call's webhooks.
    pub auth_token: SecretString,
    /// `TOUCHPOINT_VOICE_CALLER_ID`: the number (E.164) patients see.
    pub caller_id: String,
}

impl VoiceProvider {
    fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        const URL: &str = "TOUCHPOINT_VOICE_URL";
        let Some(base_url) = env.raw(URL) else {
            return Ok(None);
        };
        provider_url(URL, &base_url)?;
        let required = required_with(env, URL);
        let caller_id = required("TOUCHPOINT_VOICE_CALLER_ID")?;
        let caller_id = touchpoint_platform::contact::PhoneNumber::parse(&caller_id, "caller id")
            .map_err(|_| ConfigError {
                var: "TOUCHPOINT_VOICE_CALLER_ID".into(),
                reason: "a phone number such as +18005550199".into(),
            })?
            .as_str()
            .to_owned();
        Ok(Some(Self {
            base_url,
            account_sid: required("TOUCHPOINT_VOICE_ACCOUNT_SID")?,
            auth_token: required("TOUCHPOINT_VOICE_AUTH_TOKEN")?.into(),
            caller_id,
        }))
    }
}

/// Reads a variable that `url_var` being set makes required.
fn required_with<'a>(
    env: &'a Env,
    url_var: &'a str,
) -> impl Fn(&str) -> Result<String, ConfigError> + 'a {
    move |var| {
        env.raw(var).ok_or_else(|| ConfigError {
            var: var.to_owned(),
            reason: format!("required when {url_var} is set"),
        })
    }
}

/// A provider's base URL: `https://` (the providers themselves), or `http://`
/// (the sandbox, or a proxy on the same host).
fn provider_url(var: &str, url: &str) -> Result<(), ConfigError> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(())
    } else {
        Err(ConfigError {
            var: var.to_owned(),
            reason: "expected an https:// (or http://) URL".into(),
        })
    }
}

/// The PEM file of extra certificate authorities `var` names
/// (`TOUCHPOINT_PROVIDER_CA_FILE`, `TOUCHPOINT_SMTP_CA_FILE`), checked to hold
/// certificates.
fn authorities(env: &Env, var: &str) -> Result<Option<String>, ConfigError> {
    let Some(path) = env.raw(var) else {
        return Ok(None);
    };
    let pem = std::fs::read_to_string(&path).map_err(|e| ConfigError {
        var: var.into(),
        reason: format!("cannot read {path}: {e}"),
    })?;
    touchpoint_platform::tls::certificates(&pem).map_err(|e| ConfigError {
        var: var.into(),
        reason: format!("{path}: {e}"),
    })?;
    Ok(Some(pem))
}

/// The SMTP relay's settings.
#[derive(Debug, Clone)]
pub struct SmtpRelay {
    /// Its host.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The sender mailbox, e.g. `Care Team <care@hub.example>`.
    pub from: String,
    /// User name and password, when the relay asks for them.
    pub credentials: Option<(String, SecretString)>,
    /// `TOUCHPOINT_SMTP_RATE`: at most this many messages a second.
    pub rate: Option<NonZeroU32>,
    /// `TOUCHPOINT_SMTP_TLS` (`opportunistic`, `required` or `none`) and
    /// `TOUCHPOINT_SMTP_CA_FILE`.
    pub tls: MailTls,
    /// `TOUCHPOINT_UNSUBSCRIBE_URL` and `TOUCHPOINT_UNSUBSCRIBE_KEY`: every
    /// email's one-click unsubscribe; required with a relay.
    pub unsubscribe: Unsubscribe,
}

impl SmtpRelay {
    fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let Some(host) = env.raw("TOUCHPOINT_SMTP_HOST") else {
            return Ok(None);
        };
        let from = env.raw("TOUCHPOINT_SMTP_FROM").ok_or_else(|| ConfigError {
            var: "TOUCHPOINT_SMTP_FROM".into(),
            reason: "required when TOUCHPOINT_SMTP_HOST is set".into(),
        })?;
        let credentials = match (
            env.raw("TOUCHPOINT_SMTP_USERNAME"),
            env.raw("TOUCHPOINT_SMTP_PASSWORD"),
        ) {
            (Some(user), Some(password)) => Some((user, password.into())),
            (None, None) => None,
            _ => {
                return Err(ConfigError {
                    var: "TOUCHPOINT_SMTP_PASSWORD".into(),
                    reason:
                        "set both TOUCHPOINT_SMTP_USERNAME and TOUCHPOINT_SMTP_PASSWORD, or neither"
                            .into(),
                });
            }
        };
        Ok(Some(Self {
            unsubscribe: unsubscribe(env, "TOUCHPOINT_SMTP_HOST")?,
            host,
            port: env.parse("TOUCHPOINT_SMTP_PORT", 25, "a port number")?,
            from,
            credentials,
            rate: rate(env, "TOUCHPOINT_SMTP_RATE")?,
            tls: mail_tls(env)?,
        }))
    }
}

/// `TOUCHPOINT_UNSUBSCRIBE_URL` and `TOUCHPOINT_UNSUBSCRIBE_KEY`, required
/// when `provider_var` sets up an email provider: every email carries a
/// one-click unsubscribe.
fn unsubscribe(env: &Env, provider_var: &str) -> Result<Unsubscribe, ConfigError> {
    let required = |var: &str| {
        env.raw(var).ok_or_else(|| ConfigError {
            var: var.into(),
            reason: format!(
                "required when {provider_var} is set: every email carries a one-click unsubscribe"
            ),
        })
    };
    let url = required("TOUCHPOINT_UNSUBSCRIBE_URL")?;
    let printable = url.chars().all(|c| c.is_ascii_graphic());
    if !printable || !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(ConfigError {
            var: "TOUCHPOINT_UNSUBSCRIBE_URL".into(),
            reason: "an http(s) URL of printable ASCII, without spaces".into(),
        });
    }
    Ok(Unsubscribe {
        url,
        key: required("TOUCHPOINT_UNSUBSCRIBE_KEY")?.into(),
    })
}

/// The Mailgun-speaking email provider's settings.
#[derive(Debug, Clone)]
pub struct MailgunProvider {
    /// `TOUCHPOINT_MAILGUN_URL`: the API's base URL.
    pub base_url: String,
    /// `TOUCHPOINT_MAILGUN_DOMAIN`: the sending domain.
    pub domain: String,
    /// `TOUCHPOINT_MAILGUN_API_KEY`.
    pub api_key: SecretString,
    /// `TOUCHPOINT_MAILGUN_FROM`: the sender mailbox.
    pub from: lettre::message::Mailbox,
    /// `TOUCHPOINT_MAILGUN_SIGNING_KEY`: the key its event webhooks are
    /// signed with.
    pub signing_key: SecretString,
    /// `TOUCHPOINT_MAILGUN_RATE`: at most this many messages a second.
    pub rate: Option<NonZeroU32>,
    /// `TOUCHPOINT_UNSUBSCRIBE_URL` and `TOUCHPOINT_UNSUBSCRIBE_KEY`.
    pub unsubscribe: Unsubscribe,
}

impl MailgunProvider {
    fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        const URL: &str = "TOUCHPOINT_MAILGUN_URL";
        let Some(base_url) = env.raw(URL) else {
            return Ok(None);
        };
        provider_url(URL, &base_url)?;
        let required = required_with(env, URL);
        let domain = required("TOUCHPOINT_MAILGUN_DOMAIN")?;
        if domain.is_empty()
            || !domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-".contains(c))
        {
            return Err(ConfigError {
                var: "TOUCHPOINT_MAILGUN_DOMAIN".into(),
                reason: "a domain name such as mg.hub.example".into(),
            });
        }
        let from = required("TOUCHPOINT_MAILGUN_FROM")?
            .parse()
            .map_err(|_| ConfigError {
                var: "TOUCHPOINT_MAILGUN_FROM".into(),
                reason: "a mailbox such as Care Team <care@hub.example>".into(),
            })?;
        Ok(Some(Self {
            base_url,
            domain,
            api_key: required("TOUCHPOINT_MAILGUN_API_KEY")?.into(),
            from,
            signing_key: required("TOUCHPOINT_MAILGUN_SIGNING_KEY")?.into(),
            rate: rate(env, "TOUCHPOINT_MAILGUN_RATE")?,
            unsubscribe: unsubscribe(env, URL)?,
        }))
    }
}

/// `TOUCHPOINT_SMTP_TLS` and `TOUCHPOINT_SMTP_CA_FILE`: how email is encrypted,
/// and a PEM file of extra certificate authorities to trust (a relay with a
/// private CA, or the sandbox's development one) beside the public roots.
fn mail_tls(env: &Env) -> Result<MailTls, ConfigError> {
    const VAR: &str = "TOUCHPOINT_SMTP_TLS";
    let mode = match env.string(VAR, "opportunistic").trim() {
        "opportunistic" => StartTls::Opportunistic,
        "required" => StartTls::Required,
        "none" => StartTls::Never,
        _ => {
            return Err(ConfigError {
                var: VAR.into(),
                reason: "one of opportunistic, required or none".into(),
            });
        }
    };
    let extra_roots = authorities(env, "TOUCHPOINT_SMTP_CA_FILE")?.map(String::into_bytes);
    Ok(MailTls { mode, extra_roots })
}

/// One Twilio-speaking SMS provider's settings, from `<PREFIX>_URL`,
/// `<PREFIX>_ACCOUNT_SID`, `<PREFIX>_AUTH_TOKEN` and `<PREFIX>_FROM`.
#[derive(Debug, Clone)]
pub struct SmsProvider {
    /// Its name in events and callback paths (`primary`, `failover`).
    pub name: String,
    /// The API's base URL.
    pub base_url: String,
    /// The account SID.
    pub account_sid: String,
    /// The auth token.
    pub auth_token: SecretString,
    /// The sender number or messaging service SID.
    pub from: String,
    /// `<PREFIX>_RATE`: at most this many messages a second from this sender.
    pub rate: Option<NonZeroU32>,
}

impl SmsProvider {
    fn from_env(env: &Env, name: &str, prefix: &str) -> Result<Option<Self>, ConfigError> {
        let var = |suffix: &str| format!("{prefix}_{suffix}");
        let Some(base_url) = env.raw(&var("URL")) else {
            return Ok(None);
        };
        provider_url(&var("URL"), &base_url)?;
        let required = |suffix: &str| {
            env.raw(&var(suffix)).ok_or_else(|| ConfigError {
                var: var(suffix),
                reason: format!("required when {} is set", var("URL")),
            })
        };
        Ok(Some(Self {
            name: name.to_owned(),
            base_url,
            account_sid: required("ACCOUNT_SID")?,
            auth_token: required("AUTH_TOKEN")?.into(),
            from: required("FROM")?,
            rate: rate(env, &var("RATE"))?,
        }))
    }
}

impl Config {
    /// Reads the configuration; a bad value names its variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            platform: PlatformConfig::from_env(env, SPEC.name, DEFAULT_GRPC_PORT)?,
            programs_dir: PathBuf::from(env.string("TOUCHPOINT_PROGRAMS_DIR", "programs")),
            programs_reload: env.millis(
                "TOUCHPOINT_PROGRAMS_RELOAD_MS",
                touchpoint_programs::DEFAULT_RELOAD_MS,
            )?,
            sender: SenderConfig {
                batch: env.count("TOUCHPOINT_SEND_BATCH", 200, 10_000)?,
                poll: env.millis("TOUCHPOINT_SEND_POLL_MS", 100)?,
                max_tries: env.count("TOUCHPOINT_SEND_MAX_TRIES", 5, 100)? as u32,
                sending_timeout: env.millis("TOUCHPOINT_SENDING_TIMEOUT_MS", 120_000)?,
                destination_cap: DestinationCap(env.count(
                    "TOUCHPOINT_DESTINATION_CAP_PER_DAY",
                    3,
                    100,
                )?),
            },
            http_addr: env.parse(
                "TOUCHPOINT_HTTP_ADDR",
                SocketAddr::from(([127, 0, 0, 1], DEFAULT_HTTP_PORT)),
                "an address such as 127.0.0.1:8053",
            )?,
            callback_base: env.raw("TOUCHPOINT_CALLBACK_BASE_URL"),
            sms: [
                SmsProvider::from_env(env, "primary", "TOUCHPOINT_SMS_PRIMARY")?,
                SmsProvider::from_env(env, "failover", "TOUCHPOINT_SMS_FAILOVER")?,
            ]
            .into_iter()
            .flatten()
            .collect(),
            mailgun: MailgunProvider::from_env(env)?,
            smtp: SmtpRelay::from_env(env)?,
            fax: FaxProvider::from_env(env)?,
            voice: VoiceProvider::from_env(env)?,
            mail: MailProvider::from_env(env)?,
            provider_timeout: env.millis("TOUCHPOINT_PROVIDER_TIMEOUT_MS", 10_000)?,
            provider_roots: authorities(env, "TOUCHPOINT_PROVIDER_CA_FILE")?,
            sla: SlaConfig {
                recipients: sla::Recipients::parse(&env.string("TOUCHPOINT_SLA_ALERT_TO", ""))?,
                desk_url: env.raw("TOUCHPOINT_DESK_URL"),
                poll: env.millis("TOUCHPOINT_SLA_POLL_MS", 5000)?,
            },
        })
    }

    /// `platform` with the programs in `programs_dir` and the default sender.
    pub fn new(platform: PlatformConfig, programs_dir: impl Into<PathBuf>) -> Self {
        Self {
            platform,
            programs_dir: programs_dir.into(),
            programs_reload: Duration::from_millis(touchpoint_programs::DEFAULT_RELOAD_MS),
            sender: SenderConfig {
                batch: 200,
                poll: Duration::from_millis(100),
                max_tries: 5,
                sending_timeout: Duration::from_secs(120),
                destination_cap: DestinationCap::default(),
            },
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            callback_base: None,
            sms: Vec::new(),
            mailgun: None,
            smtp: None,
            fax: None,
            voice: None,
            mail: None,
            provider_timeout: Duration::from_secs(10),
            provider_roots: None,
            sla: SlaConfig::default(),
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
    /// The SMTP settings.
    #[error(transparent)]
    Email(#[from] providers::email::MailerError),
    /// The providers' TLS settings.
    #[error("the providers' TLS settings: {0}")]
    ProviderTls(#[from] touchpoint_platform::tls::TlsError),
    /// The callback listener.
    #[error("cannot listen for callbacks on {addr}: {source}")]
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

/// Starts the service; returns the gRPC address. It stops when `shutdown` does.
pub async fn start(config: Config, shutdown: &Shutdown) -> Result<SocketAddr, DispatchStartError> {
    let catalogue = Arc::new(
        LiveCatalogue::load(&config.programs_dir, true).map_err(|e| {
            DispatchStartError::Programs {
                dir: config.programs_dir.display().to_string(),
                problems: e.to_string(),
            }
        })?,
    );
    let rules = catalogue.rules().clone();
    if !config.programs_reload.is_zero() {
        shutdown.spawn(
            catalogue
                .clone()
                .run(config.programs_reload, shutdown.token()),
        );
    }
    let mut platform = Platform::start(SPEC, config.platform, shutdown.clone()).await?;
    platform
        .grpc
        .routes()
        .add_service(DispatchServiceServer::new(DispatchApi::new(
            platform.pool.clone(),
            catalogue.clone(),
            platform.clock.clone(),
            config.voice.is_some(),
        )));

    let intake = InboxConsumer::new(
        TOPIC_USE.group,
        TOPIC_USE.consumed(&platform.topics),
        platform.pool.clone(),
        Intaker::new(platform.clock.clone(), rules),
        &platform.config,
    );
    shutdown.supervise("dispatch intake", intake.run(shutdown.token()));

    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .map_err(|source| DispatchStartError::Http {
            addr: config.http_addr,
            source,
        })?;
    let http_addr = listener
        .local_addr()
        .map_err(|source| DispatchStartError::Http {
            addr: config.http_addr,
            source,
        })?;
    let callback_base = config
        .callback_base
        .clone()
        .unwrap_or_else(|| format!("http://{http_addr}"));
    let client = HttpClient::trusting(config.provider_timeout, config.provider_roots.as_deref())?;
    let providers = Arc::new(Providers {
        sms: config
            .sms
            .iter()
            .map(|p| Twilio {
                name: p.name.clone(),
                base_url: p.base_url.clone(),
                account_sid: p.account_sid.clone(),
                auth_token: p.auth_token.clone(),
                from: p.from.clone(),
                callback_base: Some(callback_base.clone()),
                client: client.clone(),
            })
            .collect(),
        mailgun: config.mailgun.as_ref().map(|m| Mailgun {
            base_url: m.base_url.clone(),
            domain: m.domain.clone(),
            api_key: m.api_key.clone(),
            from: m.from.clone(),
            signing_key: m.signing_key.clone(),
            unsubscribe: m.unsubscribe.clone(),
            client: client.clone(),
        }),
        mailgun_pace: config
            .mailgun
            .as_ref()
            .and_then(|m| m.rate)
            .map(Throttle::per_second),
        email: config
            .smtp
            .as_ref()
            .map(|relay| {
                Mailer::new(
                    &relay.host,
                    relay.port,
                    &relay.from,
                    relay.credentials.clone(),
                    (&relay.tls, relay.unsubscribe.clone()),
                    config.provider_timeout,
                )
            })
            .transpose()?,
        sms_pace: config
            .sms
            .iter()
            .map(|p| p.rate.map(Throttle::per_second))
            .collect(),
        email_pace: config
            .smtp
            .as_ref()
            .and_then(|relay| relay.rate)
            .map(Throttle::per_second),
        fax: config.fax.as_ref().map(|f| Phaxio {
            base_url: f.base_url.clone(),
            api_key: f.api_key.clone(),
            api_secret: f.api_secret.clone(),
            callback_token: f.callback_token.clone(),
            callback_base: Some(callback_base.clone()),
            client: client.clone(),
        }),
        fax_pace: config
            .fax
            .as_ref()
            .and_then(|f| f.rate)
            .map(Throttle::per_second),
        voice: config.voice.as_ref().map(|v| TwilioVoice {
            base_url: v.base_url.clone(),
            account_sid: v.account_sid.clone(),
            auth_token: v.auth_token.clone(),
            caller_id: v.caller_id.clone(),
            callback_base: callback_base.clone(),
            client: client.clone(),
        }),
        mail: config.mail.as_ref().map(|m| Lob {
            base_url: m.base_url.clone(),
            api_key: m.api_key.clone(),
            from: m.from.clone(),
            webhook_secret: m.webhook_secret.clone(),
            client: client.clone(),
        }),
        mail_pace: config
            .mail
            .as_ref()
            .and_then(|m| m.rate)
            .map(Throttle::per_second),
    });
    let alerts = sla::SlaAlerts {
        pool: platform.pool.clone(),
        clock: platform.clock.clone(),
        mailer: providers.email.clone(),
        recipients: config.sla.recipients.clone(),
        desk_url: config.sla.desk_url.clone(),
        catalogue: catalogue.clone(),
    };
    shutdown.supervise("SLA alerts", alerts.run(config.sla.poll, shutdown.token()));
    let attempts_topic = platform.topics.name(Stream::Attempt);
    let routes = callbacks::router(
        platform.pool.clone(),
        providers.clone(),
        platform.clock.clone(),
        attempts_topic.clone(),
    );
    let stop = shutdown.token();
    shutdown.supervise(
        "callback listener",
        axum::serve(listener, routes)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .into_future(),
    );
    tracing::info!(%http_addr, sms_providers = providers.sms.len(), "taking provider callbacks");

    let sender = Sender::new(
        platform.pool.clone(),
        catalogue,
        platform.clock.clone(),
        attempts_topic,
        providers,
        config.sender,
    );
    shutdown.spawn(sender.run(shutdown.token()));
    Ok(platform.serve()?)
}

/// Runs until SIGTERM or Ctrl-C, or until a task it cannot do without stops,
/// then drains in-flight work; an error names the task.
pub async fn run(config: Config) -> Result<(), DispatchStartError> {
    let shutdown = Shutdown::on_signals();
    start(config, &shutdown).await?;
    Ok(touchpoint_platform::service::until_stopped(&shutdown, DRAIN_LIMIT).await?)
}

#[cfg(test)]
mod tests {
    use touchpoint_platform::config::Env;

    use super::*;

    const RELAY: [(&str, &str); 2] = [
        ("TOUCHPOINT_SMTP_HOST", "relay.hub.example"),
        ("TOUCHPOINT_SMTP_FROM", "Care Team <care@hub.example>"),
    ];

    fn refused(pairs: &[(&str, &str)]) -> Option<String> {
        SmtpRelay::from_env(&Env::from_pairs(pairs.iter().copied()))
            .err()
            .map(|e| e.var)
    }

    #[test]
    fn a_relay_without_a_one_click_unsubscribe_is_refused_at_start() {
        assert_eq!(
            refused(&RELAY).as_deref(),
            Some("TOUCHPOINT_UNSUBSCRIBE_URL"),
            "every email carries one"
        );
        let url = (
            "TOUCHPOINT_UNSUBSCRIBE_URL",
            "https://hub.example/unsubscribe/email",
        );
        let key = ("TOUCHPOINT_UNSUBSCRIBE_KEY", "unsubscribe-key");
        assert_eq!(
            refused(&[RELAY[0], RELAY[1], url]).as_deref(),
            Some("TOUCHPOINT_UNSUBSCRIBE_KEY")
        );
        let spaced = (
            "TOUCHPOINT_UNSUBSCRIBE_URL",
            "https://hub.example/un subscribe",
        );
        assert_eq!(
            refused(&[RELAY[0], RELAY[1], spaced, key]).as_deref(),
            Some("TOUCHPOINT_UNSUBSCRIBE_URL"),
            "a header value must be printable ASCII without spaces"
        );
        let relay = SmtpRelay::from_env(&Env::from_pairs([RELAY[0], RELAY[1], url, key]));
        assert!(relay.is_ok_and(|r| r.is_some()));
        assert_eq!(refused(&[]), None, "no relay, no email, nothing required");
    }

    #[test]
    fn a_provider_url_or_authority_file_that_cannot_be_used_is_refused_at_start() {
        let sms = |url: &'static str| {
            Env::from_pairs([
                ("TOUCHPOINT_SMS_PRIMARY_URL", url),
                ("TOUCHPOINT_SMS_PRIMARY_ACCOUNT_SID", "AC123"),
                ("TOUCHPOINT_SMS_PRIMARY_AUTH_TOKEN", "token"),
                ("TOUCHPOINT_SMS_PRIMARY_FROM", "+15005550006"),
            ])
        };
        assert!(
            SmsProvider::from_env(
                &sms("https://api.twilio.com"),
                "primary",
                "TOUCHPOINT_SMS_PRIMARY"
            )
            .is_ok()
        );
        let refused =
            SmsProvider::from_env(&sms("api.twilio.com"), "primary", "TOUCHPOINT_SMS_PRIMARY");
        assert_eq!(
            refused.err().map(|e| e.var).as_deref(),
            Some("TOUCHPOINT_SMS_PRIMARY_URL")
        );
        let not_pem = std::env::temp_dir().join(format!("not-a-ca-{}.pem", std::process::id()));
        let written = std::fs::write(&not_pem, "not a certificate");
        assert!(written.is_ok(), "{written:?}");
        let path = not_pem.display().to_string();
        let refused = authorities(
            &Env::from_pairs([("TOUCHPOINT_PROVIDER_CA_FILE", path.as_str())]),
            "TOUCHPOINT_PROVIDER_CA_FILE",
        );
        let _ = std::fs::remove_file(&not_pem);
        assert_eq!(
            refused.err().map(|e| e.var).as_deref(),
            Some("TOUCHPOINT_PROVIDER_CA_FILE")
        );
        let missing = authorities(
            &Env::from_pairs([("TOUCHPOINT_PROVIDER_CA_FILE", "/no/such/ca.pem")]),
            "TOUCHPOINT_PROVIDER_CA_FILE",
        );
        assert!(missing.is_err());
    }

    #[test]
    fn the_configuration_shows_no_secret_when_printed() {
        let env = Env::from_pairs([
            ("TOUCHPOINT_SMS_PRIMARY_URL", "https://sms.hub.example"),
            ("TOUCHPOINT_SMS_PRIMARY_ACCOUNT_SID", "AC123"),
            ("TOUCHPOINT_SMS_PRIMARY_AUTH_TOKEN", "sms-s3cret"),
            ("TOUCHPOINT_SMS_PRIMARY_FROM", "+15005550006"),
            ("TOUCHPOINT_FAX_URL", "https://fax.hub.example"),
            ("TOUCHPOINT_FAX_API_KEY", "fax-key"),
            ("TOUCHPOINT_FAX_API_SECRET", "fax-s3cret"),
            ("TOUCHPOINT_FAX_CALLBACK_TOKEN", "callback-s3cret"),
            RELAY[0],
            RELAY[1],
            ("TOUCHPOINT_SMTP_USERNAME", "dispatch"),
            ("TOUCHPOINT_SMTP_PASSWORD", "smtp-s3cret"),
            (
                "TOUCHPOINT_UNSUBSCRIBE_URL",
                "https://hub.example/unsubscribe/email",
            ),
            ("TOUCHPOINT_UNSUBSCRIBE_KEY", "unsubscribe-s3cret"),
            ("TOUCHPOINT_MAILGUN_URL", "https://api.mailgun.net"),
            ("TOUCHPOINT_MAILGUN_DOMAIN", "mg.hub.example"),
            ("TOUCHPOINT_MAILGUN_API_KEY", "mailgun-s3cret"),
            ("TOUCHPOINT_MAILGUN_FROM", "Care Team <care@hub.example>"),
            ("TOUCHPOINT_MAILGUN_SIGNING_KEY", "signing-s3cret"),
            ("TOUCHPOINT_MAIL_URL", "https://api.lob.com"),
            ("TOUCHPOINT_MAIL_API_KEY", "lob-s3cret"),
            ("TOUCHPOINT_MAIL_FROM", "adr_return"),
            ("TOUCHPOINT_MAIL_WEBHOOK_SECRET", "webhook-s3cret"),
        ]);
        let config = Config::from_env(&env).map(|c| format!("{c:?}"));
        let Ok(printed) = config else {
            panic!("refused: {config:?}");
        };
        assert!(printed.contains("sms.hub.example") && printed.contains("relay.hub.example"));
        assert!(printed.contains("mg.hub.example") && printed.contains("api.lob.com"));
        assert!(!printed.contains("s3cret"), "{printed}");
        let no_secret = changed(
            &[
                ("TOUCHPOINT_MAIL_URL", "https://api.lob.com"),
                ("TOUCHPOINT_MAIL_API_KEY", "k"),
                ("TOUCHPOINT_MAIL_FROM", "adr_return"),
            ],
            "TOUCHPOINT_MAIL_RATE",
            None,
        );
        assert_eq!(
            MailProvider::from_env(&no_secret)
                .err()
                .map(|e| e.var)
                .as_deref(),
            Some("TOUCHPOINT_MAIL_WEBHOOK_SECRET"),
            "letters whose webhooks cannot be checked are refused at start"
        );
    }

    /// The `complete` settings with `var` set to `value`, or removed.
    fn changed<'a>(complete: &[(&'a str, &'a str)], var: &'a str, value: Option<&'a str>) -> Env {
        let kept = complete.iter().copied().filter(|(k, _)| *k != var);
        Env::from_pairs(kept.chain(value.map(|v| (var, v))))
    }

    #[test]
    fn mailgun_settings_that_cannot_work_are_refused_at_start_by_name() {
        let complete = [
            ("TOUCHPOINT_MAILGUN_URL", "https://api.mailgun.net"),
            ("TOUCHPOINT_MAILGUN_DOMAIN", "mg.hub.example"),
            ("TOUCHPOINT_MAILGUN_API_KEY", "key"),
            ("TOUCHPOINT_MAILGUN_FROM", "Care Team <care@hub.example>"),
            ("TOUCHPOINT_MAILGUN_SIGNING_KEY", "signing"),
            (
                "TOUCHPOINT_UNSUBSCRIBE_URL",
                "https://hub.example/unsubscribe/email",
            ),
            ("TOUCHPOINT_UNSUBSCRIBE_KEY", "unsubscribe"),
        ];
        let with = |var, value| {
            MailgunProvider::from_env(&changed(&complete, var, value))
                .err()
                .map(|e| e.var)
        };
        let provider = MailgunProvider::from_env(&Env::from_pairs(complete));
        assert!(matches!(provider, Ok(Some(_))), "{provider:?}");
        for (var, bad) in [
            ("TOUCHPOINT_MAILGUN_URL", Some("api.mailgun.net")),
            ("TOUCHPOINT_MAILGUN_DOMAIN", Some("mg hub/example")),
            ("TOUCHPOINT_MAILGUN_FROM", Some("not a mailbox")),
            ("TOUCHPOINT_MAILGUN_API_KEY", None),
            ("TOUCHPOINT_MAILGUN_SIGNING_KEY", None),
            ("TOUCHPOINT_UNSUBSCRIBE_KEY", None),
        ] {
            assert_eq!(with(var, bad).as_deref(), Some(var), "{var} = {bad:?}");
        }
    }

    #[test]
    fn voice_settings_that_cannot_work_are_refused_at_start_by_name() {
        let complete = [
            ("TOUCHPOINT_VOICE_URL", "https://api.twilio.com"),
            ("TOUCHPOINT_VOICE_ACCOUNT_SID", "AC123"),
            ("TOUCHPOINT_VOICE_AUTH_TOKEN", "token"),
            ("TOUCHPOINT_VOICE_CALLER_ID", "(212) 555-0199"),
        ];
        let with = |var, value| {
            VoiceProvider::from_env(&changed(&complete, var, value))
                .err()
                .map(|e| e.var)
        };
        let provider = VoiceProvider::from_env(&Env::from_pairs(complete));
        let provider = provider.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            provider.map(|p| p.caller_id).as_deref(),
            Some("+12125550199"),
            "the caller id in E.164"
        );
        for (var, bad) in [
            ("TOUCHPOINT_VOICE_URL", Some("api.twilio.com")),
            ("TOUCHPOINT_VOICE_CALLER_ID", Some("the front desk")),
            ("TOUCHPOINT_VOICE_CALLER_ID", None),
            ("TOUCHPOINT_VOICE_ACCOUNT_SID", None),
            ("TOUCHPOINT_VOICE_AUTH_TOKEN", None),
        ] {
            assert_eq!(with(var, bad).as_deref(), Some(var), "{var} = {bad:?}");
        }
    }
}
