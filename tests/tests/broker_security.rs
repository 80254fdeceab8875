//! The services reach the broker over TLS, checking its certificate against the
//! authorities they are given, and sign in with a SASL identity where the broker
//! asks for one.
//!
//! Tansu 0.6.0 takes SASL (SCRAM, and PLAIN with any password) but cannot
//! serve TLS from its command line (`--cert` and `--key` exclude each other),
//! so TLS is spoken to a terminating front in this process that passes the
//! bytes on: librdkafka's own TLS code verifies the certificate. ACLs Tansu
//! does not enforce; each service's least privilege is checked on the
//! manifests (`deploy_files.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::producer::{BaseProducer, FutureProducer, FutureRecord, Producer as _};
use touchpoint_platform::config::KafkaConfig;
use touchpoint_platform::kafka::{self, KafkaSecurity, Protocol, Sasl};
use touchpoint_platform::secret::ExposeSecret as _;
use touchpoint_platform::testkit::{self, BrokerOptions, OwnBroker, eventually};
use touchpoint_platform::tls::{DevCa, Identity, TlsError};
use touchpoint_platform::topics;
use touchpoint_sandbox::https::TlsListener;
use touchpoint_sandbox::https::rustls::ServerConfig;

/// A TLS front on a port of its own for a broker; stops when dropped.
struct TlsFront {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsFront {
    /// Takes TLS on `port` as `config` says and passes each connection's
    /// bytes to and from `upstream`.
    async fn start(port: u16, config: Arc<ServerConfig>, upstream: &str) -> Self {
        let tcp = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .unwrap_or_else(|e| panic!("front: {e}"));
        let mut listener = TlsListener::new(tcp, config);
        let upstream = upstream.to_owned();
        let task = tokio::spawn(async move {
            loop {
                let (mut tls, _) = listener.next().await;
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if let Ok(mut broker) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
                    }
                });
            }
        });
        Self { task }
    }
}

/// A broker reached over TLS at `addr`, by a certificate for 127.0.0.1 that
/// `ca` signed.
struct TlsBroker {
    addr: String,
    _front: TlsFront,
    _broker: OwnBroker,
}

async fn tls_broker(ca: &DevCa) -> TlsBroker {
    tls_broker_as(ca, |identity| identity.server_config()).await
}

/// The same, its TLS configured by `config` from the broker's identity.
async fn tls_broker_as(
    ca: &DevCa,
    config: impl FnOnce(&Identity) -> Result<Arc<ServerConfig>, TlsError>,
) -> TlsBroker {
    let port = testkit::free_port();
    let broker = OwnBroker::start(&BrokerOptions {
        advertised_port: Some(port),
        ..BrokerOptions::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let identity = ca.issue(&["127.0.0.1"]).unwrap_or_else(|e| panic!("{e}"));
    let config = config(&identity).unwrap_or_else(|e| panic!("{e}"));
    let front = TlsFront::start(port, config, &broker.addr).await;
    TlsBroker {
        addr: format!("127.0.0.1:{port}"),
        _front: front,
        _broker: broker,
    }
}

fn ca() -> DevCa {
    DevCa::generate().unwrap_or_else(|e| panic!("{e}"))
}

/// A PEM file holding `text`, for a `KAFKA_SSL_*_FILE`.
fn pem_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("{name}-{}.pem", testkit::unique_prefix()));
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    path
}

/// A PEM file of `ca`'s certificate, for `KAFKA_SSL_CA_FILE`.
fn ca_file(ca: &DevCa, name: &str) -> PathBuf {
    pem_file(name, &ca.cert_pem())
}

fn config(brokers: &str, security: KafkaSecurity) -> KafkaConfig {
    let mut config = testkit::kafka_config(&testkit::unique_prefix());
    config.brokers = brokers.to_owned();
    config.partitions = 1;
    config.security = security;
    config
}

fn tls_trusting(ca_file: PathBuf) -> KafkaSecurity {
    KafkaSecurity {
        protocol: Protocol::Ssl,
        ca_file: Some(ca_file),
        ..KafkaSecurity::default()
    }
}

fn scram(username: &str, password: &str) -> KafkaSecurity {
    KafkaSecurity {
        protocol: Protocol::SaslPlaintext,
        sasl: Some(Sasl {
            mechanism: "SCRAM-SHA-512",
            username: username.into(),
            password: password.to_owned().into(),
        }),
        ..KafkaSecurity::default()
    }
}

/// Whether a client with `config` is given the broker's metadata at all.
fn reaches(config: &KafkaConfig) -> bool {
    let client: Result<BaseProducer, _> = kafka::client_config(config).create();
    client.is_ok_and(|c| {
        c.client()
            .fetch_metadata(None, Duration::from_secs(3))
            .is_ok()
    })
}

/// Publishes one record to a topic of its own and reads it back.
async fn round_trip(config: &KafkaConfig, payload: &str) -> String {
    let topic = format!("{}security", config.topic_prefix);
    eventually("the topic", Duration::from_secs(30), || async {
        topics::create(config, std::slice::from_ref(&topic))
            .await
            .ok()
    })
    .await;
    let producer: FutureProducer = kafka::idempotent_producer_config(config)
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    let sent = producer
        .send(
            FutureRecord::to(&topic).key("k").payload(payload),
            Duration::from_secs(20),
        )
        .await;
    assert!(sent.is_ok(), "{sent:?}");
    let consumer: StreamConsumer = kafka::consumer_config(config, &format!("{topic}-reader"))
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    consumer
        .subscribe(&[&topic])
        .unwrap_or_else(|e| panic!("{e}"));
    let record = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
        .await
        .unwrap_or_else(|_| panic!("nothing came back"))
        .unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8_lossy(record.payload().unwrap_or_default()).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_cross_tls_to_a_broker_whose_certificate_a_trusted_authority_signed() {
    let ca = ca();
    let broker = tls_broker(&ca).await;
    let config = config(&broker.addr, tls_trusting(ca_file(&ca, "kafka-ca")));
    assert_eq!(round_trip(&config, "over TLS").await, "over TLS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_no_trusted_authority_vouches_for_is_not_talked_to() {
    let broker = tls_broker(&ca()).await;
    let ours = config(&broker.addr, tls_trusting(ca_file(&ca(), "other-ca")));
    assert!(
        !reaches(&ours),
        "a certificate our authority did not sign was taken"
    );
    let clear = config(&broker.addr, KafkaSecurity::default());
    assert!(
        !reaches(&clear),
        "a plaintext client was answered on a TLS listener"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mutual_tls_only_a_client_with_a_certificate_the_broker_trusts_gets_in() {
    let ca = ca();
    let broker = tls_broker_as(&ca, |identity| {
        identity.server_config_requiring_clients(&ca.cert_pem())
    })
    .await;
    let own = ca
        .issue_client("touchpoint-cases", None, &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let mutual = KafkaSecurity {
        client_identity: Some((
            pem_file("cases-cert", &own.cert_pem),
            pem_file("cases-key", own.key_pem.expose_secret()),
        )),
        ..tls_trusting(ca_file(&ca, "kafka-ca"))
    };
    let cases = config(&broker.addr, mutual);
    assert_eq!(round_trip(&cases, "mutual").await, "mutual");
    let anonymous = config(&broker.addr, tls_trusting(ca_file(&ca, "kafka-ca")));
    assert!(
        !reaches(&anonymous),
        "a client without a certificate was answered"
    );
}

/// A broker that asks every client to sign in, knowing `user` by SCRAM-SHA-512
/// with `password`. Tansu takes new users only from a client that needs no
/// sign-in, so the user is made on the same storage before authentication is
/// turned on.
fn scram_broker(user: &str, password: &str) -> ScramBroker {
    let file = format!("tansu-{}.db", testkit::unique_prefix());
    let storage = format!("sqlite://{file}");
    let open = OwnBroker::start(&BrokerOptions {
        storage: storage.clone(),
        ..BrokerOptions::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let created = Command::new(touchpoint_platform::tansu::binary())
        .args(["user", "create", "--broker"])
        .arg(format!("tcp://{}", open.addr))
        .args([user, password])
        .output()
        .unwrap_or_else(|e| panic!("tansu user create: {e}"));
    assert!(
        created.status.success(),
        "tansu user create: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    drop(open);
    let broker = OwnBroker::start(&BrokerOptions {
        storage,
        options: "--authentication".into(),
        advertised_port: None,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    ScramBroker {
        broker: Some(broker),
        file: std::env::temp_dir().join(file),
    }
}

/// A broker on sqlite storage of its own, whose files go with it.
struct ScramBroker {
    broker: Option<OwnBroker>,
    file: PathBuf,
}

impl ScramBroker {
    fn addr(&self) -> &str {
        self.broker.as_ref().map_or("", |b| b.addr.as_str())
    }
}

impl Drop for ScramBroker {
    fn drop(&mut self) {
        drop(self.broker.take());
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.file.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_signs_in_with_its_scram_identity_and_a_stranger_is_refused() {
    let broker = scram_broker("touchpoint-cases", "cases-password");
    let cases = config(broker.addr(), scram("touchpoint-cases", "cases-password"));
    assert_eq!(round_trip(&cases, "signed in").await, "signed in");
    let wrong = config(broker.addr(), scram("touchpoint-cases", "guessed"));
    assert!(!reaches(&wrong), "a wrong password was let in");
    let anonymous = config(broker.addr(), KafkaSecurity::default());
    assert!(
        !reaches(&anonymous),
        "a client without an identity was answered"
    );
}
