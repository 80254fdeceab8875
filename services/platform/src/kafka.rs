//! librdkafka settings shared by the relay, the consumers and the admin client,
//! and how they reach the broker: in the clear (a local broker), over TLS
//! (with a client certificate for mutual TLS), or with a SASL identity (SCRAM
//! or PLAIN) over TLS, as MSK, Confluent Cloud and Strimzi's listeners take.

use std::path::PathBuf;

use rdkafka::ClientConfig;

use crate::config::{ConfigError, Env, KafkaConfig};
use crate::secret::{ExposeSecret as _, SecretString};

/// Settings every client shares: brokers, security, and IPv4 loopback preferred.
pub fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        // `localhost` may resolve to ::1 where the broker listens on IPv4 only.
        .set("broker.address.family", "v4")
        .set("log_level", "4");
    let security = &config.security;
    client.set("security.protocol", security.protocol.as_str());
    if let Some(sasl) = &security.sasl {
        client
            .set("sasl.mechanisms", sasl.mechanism)
            .set("sasl.username", &sasl.username)
            .set("sasl.password", sasl.password.expose_secret());
    }
    if let Some(ca) = &security.ca_file {
        client.set("ssl.ca.location", ca.display().to_string());
    }
    if let Some((cert, key)) = &security.client_identity {
        client
            .set("ssl.certificate.location", cert.display().to_string())
            .set("ssl.key.location", key.display().to_string());
    }
    client
}

/// An idempotent producer: `acks=all`, in-order retries, no duplicates per session.
///
/// lz4, not snappy: snappy batches cannot be fetched back from some brokers' storage.
pub fn idempotent_producer_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = client_config(config);
    client
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "5")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .set("message.timeout.ms", "30000");
    client
}

/// A consumer in `group` that stores offsets only when told to.
///
/// `enable.auto.offset.store=false`: an offset is stored after the database
/// transaction that applied its record has committed; auto-commit then writes the
/// stored offsets to the broker.
pub fn consumer_config(config: &KafkaConfig, group: &str) -> ClientConfig {
    let mut client = client_config(config);
    client
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        // A broker may hold a fetch this long before answering; the default 500 ms
        // would add half a second to every hop of an outreach story.
        .set("fetch.wait.max.ms", "100")
        .set("enable.partition.eof", "false");
    client
}

/// How the services reach the broker: `KAFKA_SECURITY_PROTOCOL`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// `plaintext`: no encryption, no identity (a local broker only).
    #[default]
    Plaintext,
    /// `ssl`: TLS, with a client certificate when one is given (mutual TLS).
    Ssl,
    /// `sasl_plaintext`: a SASL identity without encryption.
    SaslPlaintext,
    /// `sasl_ssl`: a SASL identity over TLS (MSK, Confluent Cloud, Strimzi).
    SaslSsl,
}

impl Protocol {
    /// librdkafka's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Plaintext => "plaintext",
            Protocol::Ssl => "ssl",
            Protocol::SaslPlaintext => "sasl_plaintext",
            Protocol::SaslSsl => "sasl_ssl",
        }
    }

    fn tls(self) -> bool {
        matches!(self, Protocol::Ssl | Protocol::SaslSsl)
    }

    fn sasl(self) -> bool {
        matches!(self, Protocol::SaslPlaintext | Protocol::SaslSsl)
    }
}

/// A SASL identity: `KAFKA_SASL_MECHANISM`, `KAFKA_SASL_USERNAME`,
/// `KAFKA_SASL_PASSWORD`.
#[derive(Debug, Clone)]
pub struct Sasl {
    /// `SCRAM-SHA-512` (the default), `SCRAM-SHA-256` or `PLAIN`.
    pub mechanism: &'static str,
    /// The user.
    pub username: String,
    /// Its password.
    pub password: SecretString,
}

/// The broker connection's security settings.
#[derive(Debug, Clone, Default)]
pub struct KafkaSecurity {
    /// `KAFKA_SECURITY_PROTOCOL`.
    pub protocol: Protocol,
    /// The SASL identity, with a `sasl_*` protocol.
    pub sasl: Option<Sasl>,
    /// `KAFKA_SSL_CA_FILE`: a PEM file of the authorities the broker's
    /// certificate is checked against (unset: the system's).
    pub ca_file: Option<PathBuf>,
    /// `KAFKA_SSL_CERT_FILE` and `KAFKA_SSL_KEY_FILE`: the client's certificate
    /// and key, for mutual TLS.
    pub client_identity: Option<(PathBuf, PathBuf)>,
}

impl KafkaSecurity {
    /// Reads the security variables; a contradiction (a password without a
    /// SASL protocol, a certificate without TLS) is refused rather than
    /// silently ignored, so no one believes a connection is protected when it
    /// is not.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        const PROTOCOL: &str = "KAFKA_SECURITY_PROTOCOL";
        let protocol = match env
            .string(PROTOCOL, "plaintext")
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "plaintext" => Protocol::Plaintext,
            "ssl" => Protocol::Ssl,
            "sasl_plaintext" => Protocol::SaslPlaintext,
            "sasl_ssl" => Protocol::SaslSsl,
            _ => {
                return Err(ConfigError::new(
                    PROTOCOL,
                    "one of plaintext, ssl, sasl_plaintext or sasl_ssl",
                ));
            }
        };
        let sasl = Self::sasl(env, protocol)?;
        let file = |var: &str| -> Result<Option<PathBuf>, ConfigError> {
            let Some(path) = env.raw(var) else {
                return Ok(None);
            };
            if !protocol.tls() {
                return Err(ConfigError::new(
                    var,
                    format!("needs {PROTOCOL} ssl or sasl_ssl"),
                ));
            }
            let path = PathBuf::from(path);
            if !path.is_file() {
                return Err(ConfigError::new(
                    var,
                    format!("no file at {}", path.display()),
                ));
            }
            Ok(Some(path))
        };
        let ca_file = file("KAFKA_SSL_CA_FILE")?;
        let client_identity = match (file("KAFKA_SSL_CERT_FILE")?, file("KAFKA_SSL_KEY_FILE")?) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "KAFKA_SSL_KEY_FILE",
                    "required with KAFKA_SSL_CERT_FILE",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "KAFKA_SSL_CERT_FILE",
                    "required with KAFKA_SSL_KEY_FILE",
                ));
            }
        };
        Ok(Self {
            protocol,
            sasl,
            ca_file,
            client_identity,
        })
    }

    fn sasl(env: &Env, protocol: Protocol) -> Result<Option<Sasl>, ConfigError> {
        const VARS: [&str; 3] = [
            "KAFKA_SASL_MECHANISM",
            "KAFKA_SASL_USERNAME",
            "KAFKA_SASL_PASSWORD",
        ];
        if !protocol.sasl() {
            return match VARS.iter().find(|var| env.raw(var).is_some()) {
                Some(var) => Err(ConfigError::new(
                    var,
                    "needs KAFKA_SECURITY_PROTOCOL sasl_ssl or sasl_plaintext",
                )),
                None => Ok(None),
            };
        }
        let mechanism = match env
            .string(VARS[0], "SCRAM-SHA-512")
            .trim()
            .to_ascii_uppercase()
            .as_str()
        {
            "SCRAM-SHA-512" => "SCRAM-SHA-512",
            "SCRAM-SHA-256" => "SCRAM-SHA-256",
            "PLAIN" => "PLAIN",
            _ => {
                return Err(ConfigError::new(
                    VARS[0],
                    "one of SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN",
                ));
            }
        };
        let required = |var: &str| {
            env.raw(var)
                .ok_or_else(|| ConfigError::new(var, "required with a sasl_* protocol"))
        };
        Ok(Some(Sasl {
            mechanism,
            username: required(VARS[1])?,
            password: required(VARS[2])?.into(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<KafkaConfig, ConfigError> {
        KafkaConfig::from_env(&Env::from_pairs(pairs.iter().copied()))
    }

    fn refused(pairs: &[(&str, &str)]) -> Option<String> {
        config(pairs).err().map(|e| e.var)
    }

    #[test]
    fn by_default_a_local_broker_is_reached_in_the_clear() {
        let client = config(&[]).map(|c| client_config(&c));
        let Ok(client) = client else {
            panic!("refused: {client:?}");
        };
        assert_eq!(client.get("security.protocol"), Some("plaintext"));
        assert_eq!(client.get("sasl.username"), None);
    }

    #[test]
    fn a_sasl_identity_over_tls_reaches_librdkafka_and_no_log_line() {
        let ca = std::env::temp_dir().join(format!("kafka-ca-{}.pem", std::process::id()));
        let written = std::fs::write(&ca, "a CA");
        assert!(written.is_ok(), "{written:?}");
        let path = ca.display().to_string();
        let read = config(&[
            ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("KAFKA_SASL_USERNAME", "touchpoint-cases"),
            ("KAFKA_SASL_PASSWORD", "s3cret"),
            ("KAFKA_SSL_CA_FILE", &path),
        ]);
        let _ = std::fs::remove_file(&ca);
        let Ok(read) = read else {
            panic!("refused: {read:?}");
        };
        let client = client_config(&read);
        assert_eq!(client.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(client.get("sasl.mechanisms"), Some("SCRAM-SHA-512"));
        assert_eq!(client.get("sasl.username"), Some("touchpoint-cases"));
        assert_eq!(client.get("sasl.password"), Some("s3cret"));
        assert_eq!(client.get("ssl.ca.location"), Some(path.as_str()));
        assert!(!format!("{read:?}").contains("s3cret"));
    }

    #[test]
    fn settings_that_would_not_protect_the_connection_are_refused() {
        assert_eq!(
            refused(&[("KAFKA_SECURITY_PROTOCOL", "tls")]).as_deref(),
            Some("KAFKA_SECURITY_PROTOCOL")
        );
        assert_eq!(
            refused(&[("KAFKA_SASL_USERNAME", "cases")]).as_deref(),
            Some("KAFKA_SASL_USERNAME"),
            "an identity the plaintext protocol would never send"
        );
        assert_eq!(
            refused(&[
                ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
                ("KAFKA_SASL_USERNAME", "cases"),
            ])
            .as_deref(),
            Some("KAFKA_SASL_PASSWORD")
        );
        assert_eq!(
            refused(&[
                ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
                ("KAFKA_SASL_MECHANISM", "GSSAPI"),
            ])
            .as_deref(),
            Some("KAFKA_SASL_MECHANISM")
        );
        assert_eq!(
            refused(&[("KAFKA_SSL_CA_FILE", "/etc/hostname")]).as_deref(),
            Some("KAFKA_SSL_CA_FILE"),
            "an authority the plaintext protocol would never check"
        );
        assert_eq!(
            refused(&[
                ("KAFKA_SECURITY_PROTOCOL", "ssl"),
                ("KAFKA_SSL_CA_FILE", "/no/such/ca.pem"),
            ])
            .as_deref(),
            Some("KAFKA_SSL_CA_FILE")
        );
    }
}
