//! Typed configuration read from environment variables.
//!
//! Every value has a default that works on a developer machine; a value that is set
//! but cannot be parsed stops the service at start with the variable's name, never
//! with the value itself (a misplaced secret must not end up in a log).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::access::ApiToken;
use crate::clock::ClockConfig;
use crate::kafka::KafkaSecurity;
use crate::tls::Identity;
use crate::vouch::TrustedFronts;

/// A configuration variable that is set but unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("configuration variable {var} is invalid: {reason}")]
pub struct ConfigError {
    /// The environment variable's name.
    pub var: String,
    /// What a valid value looks like.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(var: &str, reason: impl Into<String>) -> Self {
        Self {
            var: var.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Where configuration values come from: the process environment, or a map in tests.
#[derive(Debug, Clone)]
pub enum Env {
    /// `std::env::var`.
    Process,
    /// A fixed set of variables; anything absent is unset.
    Map(HashMap<String, String>),
}

impl Env {
    /// A map-backed source, for tests and for the CLI that starts services.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Env::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// The raw value of `var`; an empty value counts as unset.
    pub fn raw(&self, var: &str) -> Option<String> {
        let value = match self {
            Env::Process => std::env::var(var).ok(),
            Env::Map(map) => map.get(var).cloned(),
        };
        value.filter(|v| !v.trim().is_empty())
    }

    /// `var` as a string, or `default`.
    pub fn string(&self, var: &str, default: &str) -> String {
        self.raw(var).unwrap_or_else(|| default.to_owned())
    }

    /// `var` parsed with `FromStr`, or `default`; `expected` says what a good value is.
    pub fn parse<T: FromStr>(
        &self,
        var: &str,
        default: T,
        expected: &str,
    ) -> Result<T, ConfigError> {
        match self.raw(var) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|_| ConfigError::new(var, format!("expected {expected}"))),
        }
    }

    /// A positive integer bounded by `max`.
    pub fn count(&self, var: &str, default: usize, max: usize) -> Result<usize, ConfigError> {
        let value: usize = self.parse(var, default, &format!("an integer from 1 to {max}"))?;
        if value == 0 || value > max {
            return Err(ConfigError::new(
                var,
                format!("expected an integer from 1 to {max}"),
            ));
        }
        Ok(value)
    }

    /// A duration in milliseconds, at least 1.
    pub fn millis(&self, var: &str, default_ms: u64) -> Result<Duration, ConfigError> {
        let ms: u64 = self.parse(var, default_ms, "a number of milliseconds")?;
        if ms == 0 {
            return Err(ConfigError::new(
                var,
                "expected a number of milliseconds above 0",
            ));
        }
        Ok(Duration::from_millis(ms))
    }

    /// An RFC 3339 instant.
    pub fn instant(&self, var: &str) -> Result<Option<DateTime<Utc>>, ConfigError> {
        self.raw(var)
            .map(|raw| {
                DateTime::parse_from_rfc3339(raw.trim())
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| {
                        ConfigError::new(
                            var,
                            "expected an RFC 3339 instant such as 2026-01-05T09:00:00Z",
                        )
                    })
            })
            .transpose()
    }
}

/// PostgreSQL connection settings.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `DATABASE_URL`.
    pub url: String,
    /// `TOUCHPOINT_DB_MAX_CONNECTIONS`.
    pub max_connections: u32,
}

impl DatabaseConfig {
    /// The local server the setup script provides.
    pub const DEFAULT_URL: &'static str = "postgres://postgres@127.0.0.1:5432/touchpoint";

    /// Reads `DATABASE_URL` and `TOUCHPOINT_DB_MAX_CONNECTIONS`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let url = env.string("DATABASE_URL", Self::DEFAULT_URL);
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ConfigError::new(
                "DATABASE_URL",
                "expected a postgres:// URL",
            ));
        }
        let max_connections = env.count("TOUCHPOINT_DB_MAX_CONNECTIONS", 10, 1000)? as u32;
        Ok(Self {
            url,
            max_connections,
        })
    }
}

/// Kafka connection and topic settings.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `KAFKA_BROKERS`: comma-separated `host:port` list.
    pub brokers: String,
    /// `TOUCHPOINT_TOPIC_PREFIX`: put before every topic name (tests use a unique one).
    pub topic_prefix: String,
    /// `TOUCHPOINT_TOPIC_PARTITIONS`: partitions of each topic created at bootstrap.
    pub partitions: i32,
    /// `TOUCHPOINT_TOPIC_REPLICATION`: replication factor of created topics.
    pub replication: i32,
    /// TLS and SASL: `KAFKA_SECURITY_PROTOCOL` and the variables it brings.
    pub security: KafkaSecurity,
    /// `TOUCHPOINT_TOPIC_CREATE` (`true`): create missing topics at start. Off
    /// where an operator owns the topics (Strimzi's `KafkaTopic`s) and the
    /// service's identity may not create them.
    pub create_topics: bool,
}

impl KafkaConfig {
    /// Reads the Kafka variables.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let brokers = env.string("KAFKA_BROKERS", "127.0.0.1:9092");
        let well_formed = brokers.split(',').all(|b| {
            b.trim()
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        });
        if !well_formed {
            return Err(ConfigError::new(
                "KAFKA_BROKERS",
                "expected host:port[,host:port...]",
            ));
        }
        let topic_prefix = env.string("TOUCHPOINT_TOPIC_PREFIX", "");
        if !topic_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(ConfigError::new(
                "TOUCHPOINT_TOPIC_PREFIX",
                "expected letters, digits, '.', '_' or '-'",
            ));
        }
        Ok(Self {
            brokers,
            topic_prefix,
            partitions: env.count("TOUCHPOINT_TOPIC_PARTITIONS", 3, 1000)? as i32,
            replication: env.count("TOUCHPOINT_TOPIC_REPLICATION", 1, 16)? as i32,
            security: KafkaSecurity::from_env(env)?,
            create_topics: env.parse("TOUCHPOINT_TOPIC_CREATE", true, "true or false")?,
        })
    }
}

/// Telemetry settings.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Service name reported in logs and traces.
    pub service_name: String,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: export traces over OTLP/gRPC when set.
    pub otlp_endpoint: Option<String>,
    /// `RUST_LOG`: a tracing filter.
    pub log_filter: String,
}

impl TelemetryConfig {
    /// Reads `OTEL_EXPORTER_OTLP_ENDPOINT` and `RUST_LOG`.
    pub fn from_env(env: &Env, service_name: &str) -> Result<Self, ConfigError> {
        let otlp_endpoint = env.raw("OTEL_EXPORTER_OTLP_ENDPOINT");
        if let Some(endpoint) = &otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(ConfigError::new(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "expected an http:// or https:// URL",
            ));
        }
        let log_filter = env.string("RUST_LOG", "info");
        if tracing_subscriber::EnvFilter::try_new(&log_filter).is_err() {
            return Err(ConfigError::new(
                "RUST_LOG",
                "expected a tracing filter such as info,sqlx=warn",
            ));
        }
        Ok(Self {
            service_name: service_name.to_owned(),
            otlp_endpoint,
            log_filter,
        })
    }
}

/// Outbox relay tuning.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// `TOUCHPOINT_OUTBOX_BATCH`: rows claimed and published per round.
    pub batch_size: usize,
    /// `TOUCHPOINT_OUTBOX_POLL_MS`: the poll that backs up `LISTEN/NOTIFY`.
    pub poll_interval: Duration,
    /// `TOUCHPOINT_OUTBOX_LINGER_MS`: after a short round, the least time
    /// before the next, so the commits of that time go out as one round.
    pub linger: Duration,
    /// `TOUCHPOINT_OUTBOX_RETENTION_SECS`: how long published rows are kept
    /// before the relay deletes them (Kafka holds the records themselves); 0,
    /// the default, deletes each row as it is published.
    pub sent_retention: Duration,
}

impl OutboxConfig {
    /// Reads the outbox variables.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            batch_size: env.count("TOUCHPOINT_OUTBOX_BATCH", 1000, 50_000)?,
            poll_interval: env.millis("TOUCHPOINT_OUTBOX_POLL_MS", 200)?,
            linger: env.millis("TOUCHPOINT_OUTBOX_LINGER_MS", 10)?,
            sent_retention: {
                const VAR: &str = "TOUCHPOINT_OUTBOX_RETENTION_SECS";
                const MAX: u64 = 30 * 86_400;
                let secs: u64 = env.parse(VAR, 0, &format!("an integer from 0 to {MAX}"))?;
                if secs > MAX {
                    return Err(ConfigError::new(
                        VAR,
                        format!("expected an integer from 0 to {MAX}"),
                    ));
                }
                Duration::from_secs(secs)
            },
        })
    }
}

/// Inbox consumer tuning.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `TOUCHPOINT_CONSUMER_BATCH`: records applied per database transaction.
    pub batch_size: usize,
    /// `TOUCHPOINT_CONSUMER_MAX_ATTEMPTS`: handler tries before a record goes to the DLQ.
    pub max_attempts: u32,
    /// `TOUCHPOINT_CONSUMER_RETRY_MS`: first backoff between tries (doubles each time).
    pub retry_backoff: Duration,
    /// `TOUCHPOINT_CONSUMER_INSTANCE_ID`: this replica's stable name, for static
    /// group membership. A replica restarted under the same name takes its old
    /// place in each consumer group at once instead of joining as a stranger.
    /// Unset: dynamic membership.
    pub instance_id: Option<String>,
    /// `TOUCHPOINT_INBOX_RETENTION_DAYS` (45): how long an applied event's id
    /// is kept, so its record redelivered within that time has no second
    /// effect. Longer than the topics keep records (30 days), so a consumer
    /// group reset to the earliest offset replays nothing twice.
    pub inbox_retention: Duration,
}

impl ConsumerConfig {
    /// Reads the consumer variables.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let instance_id = env.raw("TOUCHPOINT_CONSUMER_INSTANCE_ID");
        if instance_id.as_ref().is_some_and(|id| {
            id.len() > 100
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        }) {
            return Err(ConfigError::new(
                "TOUCHPOINT_CONSUMER_INSTANCE_ID",
                "expected at most 100 letters, digits, '.', '_' or '-'",
            ));
        }
        Ok(Self {
            batch_size: env.count("TOUCHPOINT_CONSUMER_BATCH", 500, 50_000)?,
            max_attempts: env.count("TOUCHPOINT_CONSUMER_MAX_ATTEMPTS", 3, 100)? as u32,
            retry_backoff: env.millis("TOUCHPOINT_CONSUMER_RETRY_MS", 50)?,
            instance_id,
            inbox_retention: Duration::from_secs(
                env.count("TOUCHPOINT_INBOX_RETENTION_DAYS", 45, 3650)? as u64 * 86_400,
            ),
        })
    }
}

/// TLS material read from PEM files: `TOUCHPOINT_TLS_CA` (the mesh's
/// authority), `TOUCHPOINT_TLS_CERT` and `TOUCHPOINT_TLS_KEY` (this process's
/// certificate chain and key; both or neither).
#[derive(Debug, Clone, Default)]
pub struct TlsMaterial {
    /// The authority's certificate: a server verifies client certificates with
    /// it, a client the server's.
    pub ca_pem: Option<String>,
    /// This process's certificate and key.
    pub identity: Option<Identity>,
}

impl TlsMaterial {
    /// Reads the TLS variables; a file that cannot be read names its variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let read = |var: &str| -> Result<Option<String>, ConfigError> {
            env.raw(var)
                .map(|path| {
                    std::fs::read_to_string(path.trim())
                        .map_err(|_| ConfigError::new(var, "expected a readable PEM file"))
                })
                .transpose()
        };
        let ca_pem = read("TOUCHPOINT_TLS_CA")?;
        let identity = match (read("TOUCHPOINT_TLS_CERT")?, read("TOUCHPOINT_TLS_KEY")?) {
            (Some(cert_pem), Some(key_pem)) => Some(Identity {
                cert_pem,
                key_pem: key_pem.into(),
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "TOUCHPOINT_TLS_KEY",
                    "expected the key of TOUCHPOINT_TLS_CERT",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "TOUCHPOINT_TLS_CERT",
                    "expected the certificate of TOUCHPOINT_TLS_KEY",
                ));
            }
        };
        Ok(Self { ca_pem, identity })
    }
}

/// Who may call the service's gRPC API (see [`crate::access`]).
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    /// `TOUCHPOINT_API_TOKENS`: `name:role:sha256-hex`, comma-separated.
    pub tokens: Vec<ApiToken>,
    /// `TOUCHPOINT_USER_VOUCH_KEYS`: the public keys of the fronts (the desk)
    /// whose vouches for signed-in people the service takes.
    pub fronts: TrustedFronts,
    /// With a certificate the service speaks TLS; with an authority too, it
    /// takes client certificates signed by it.
    pub tls: TlsMaterial,
}

impl AccessConfig {
    /// Reads `TOUCHPOINT_API_TOKENS` and the TLS variables.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let tokens = match env.raw("TOUCHPOINT_API_TOKENS") {
            None => Vec::new(),
            Some(raw) => ApiToken::parse_list(&raw)
                .map_err(|reason| ConfigError::new("TOUCHPOINT_API_TOKENS", reason))?,
        };
        let fronts = match env.raw("TOUCHPOINT_USER_VOUCH_KEYS") {
            None => TrustedFronts::default(),
            Some(raw) => TrustedFronts::parse(&raw)
                .map_err(|reason| ConfigError::new("TOUCHPOINT_USER_VOUCH_KEYS", reason))?,
        };
        Ok(Self {
            tokens,
            fronts,
            tls: TlsMaterial::from_env(env)?,
        })
    }
}

/// Everything the platform needs to run one service.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    /// gRPC listen address: `TOUCHPOINT_GRPC_ADDR`.
    pub grpc_addr: SocketAddr,
    /// `TOUCHPOINT_HEALTH_ADDR`: where the health service alone is also
    /// served, in plain gRPC, for probes that speak no TLS.
    pub health_addr: Option<SocketAddr>,
    /// Database settings.
    pub database: DatabaseConfig,
    /// Kafka settings.
    pub kafka: KafkaConfig,
    /// Telemetry settings.
    pub telemetry: TelemetryConfig,
    /// Outbox relay settings.
    pub outbox: OutboxConfig,
    /// Inbox consumer settings.
    pub consumer: ConsumerConfig,
    /// Which clock the service reads time from.
    pub clock: ClockConfig,
    /// Who may call its gRPC API.
    pub access: AccessConfig,
}

impl PlatformConfig {
    /// Reads every platform variable for `service_name`, whose gRPC port defaults
    /// to `default_grpc_port` on 127.0.0.1.
    pub fn from_env(
        env: &Env,
        service_name: &str,
        default_grpc_port: u16,
    ) -> Result<Self, ConfigError> {
        let grpc_addr = env.parse(
            "TOUCHPOINT_GRPC_ADDR",
            SocketAddr::from(([127, 0, 0, 1], default_grpc_port)),
            "an address such as 127.0.0.1:50051",
        )?;
        let health_addr = env
            .raw("TOUCHPOINT_HEALTH_ADDR")
            .map(|raw| {
                raw.trim().parse().map_err(|_| {
                    ConfigError::new(
                        "TOUCHPOINT_HEALTH_ADDR",
                        "expected an address such as 0.0.0.0:8051",
                    )
                })
            })
            .transpose()?;
        Ok(Self {
            grpc_addr,
            health_addr,
            database: DatabaseConfig::from_env(env)?,
            kafka: KafkaConfig::from_env(env)?,
            telemetry: TelemetryConfig::from_env(env, service_name)?,
            outbox: OutboxConfig::from_env(env)?,
            consumer: ConsumerConfig::from_env(env)?,
            clock: ClockConfig::from_env(env)?,
            access: AccessConfig::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<PlatformConfig, ConfigError> {
        PlatformConfig::from_env(&Env::from_pairs(pairs.iter().copied()), "test", 50051)
    }

    #[test]
    fn defaults_work_locally() -> Result<(), ConfigError> {
        let config = config(&[])?;
        assert_eq!(config.grpc_addr.to_string(), "127.0.0.1:50051");
        assert_eq!(config.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(config.kafka.partitions, 3);
        assert_eq!(config.outbox.batch_size, 1000);
        assert!(config.telemetry.otlp_endpoint.is_none());
        Ok(())
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        let cases = [
            ("TOUCHPOINT_GRPC_ADDR", "not-an-address"),
            ("DATABASE_URL", "mysql://db"),
            ("KAFKA_BROKERS", "broker-without-port"),
            ("TOUCHPOINT_TOPIC_PREFIX", "bad prefix!"),
            ("TOUCHPOINT_TOPIC_PARTITIONS", "0"),
            ("TOUCHPOINT_OUTBOX_BATCH", "lots"),
            ("TOUCHPOINT_OUTBOX_POLL_MS", "0"),
            ("TOUCHPOINT_CONSUMER_MAX_ATTEMPTS", "-1"),
            ("TOUCHPOINT_CONSUMER_INSTANCE_ID", "two words"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
            ("TOUCHPOINT_CLOCK", "sundial"),
            ("TOUCHPOINT_CLOCK_SPEED", "fast"),
            ("TOUCHPOINT_API_TOKENS", "telephony:root:00"),
            ("TOUCHPOINT_HEALTH_ADDR", "probe-port"),
            ("TOUCHPOINT_TLS_CA", "/no/such/ca.pem"),
            ("TOUCHPOINT_TLS_CERT", "/no/such/cert.pem"),
        ];
        for (var, value) in cases {
            // An accelerated clock, so its speed is read; the case under test comes last
            // and overrides.
            let err = config(&[
                ("TOUCHPOINT_CLOCK", "accelerated"),
                ("TOUCHPOINT_CLOCK_START", "2026-01-05T09:00:00Z"),
                (var, value),
            ])
            .err()
            .map(|e| e.var);
            assert_eq!(
                err.as_deref(),
                Some(var),
                "{var}={value} should be rejected by name"
            );
        }
    }

    #[test]
    fn error_message_names_variable_but_not_value() {
        let err = config(&[("DATABASE_URL", "mysql://secret-password@db")])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("DATABASE_URL"), "{err}");
        assert!(!err.contains("secret-password"), "{err}");
    }
}
