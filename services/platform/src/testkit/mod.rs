//! The test harness every crate's tests use (feature `testkit`).
//!
//! - [`TestDatabase::fresh`]: a new database per test on the server of
//!   `DATABASE_URL` (default the local server), dropped when the test ends.
//! - [`broker`]: `KAFKA_BROKERS` if set, else one Tansu broker on a free port with
//!   memory storage, shared by the tests of one binary and stopped when it exits.
//! - [`unique_prefix`]: topic names no other test uses.
//! - [`eventually`]: poll a condition with a deadline — never sleep to synchronise.
//! - [`publish`] and [`dead_letter_reasons`]: events in as another service would
//!   send them, and the reasons a consumer gave up on records.
//! - [`TopicReader`]: every event a service publishes to a topic, as it arrives.
//! - [`otlp::Collector`]: the spans services export, received in the test.
//!
//! Test helpers panic with a clear message: that is how a test fails.

pub mod events;
pub mod otlp;

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use prost::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::{Connection as _, PgConnection};
use touchpoint_proto::v1::Envelope;

use crate::access::{ApiToken, Role};
use crate::config::{
    ConsumerConfig, DatabaseConfig, Env, KafkaConfig, OutboxConfig, PlatformConfig,
};
use crate::grpc::client::{self, AuthChannel, ClientAccess};
use crate::kafka::KafkaSecurity;
use crate::topics::{Stream, Topics};

/// Where tests find the server when `DATABASE_URL` is unset.
pub const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDatabase {
    /// Its URL.
    pub url: String,
    name: String,
    server_url: String,
}

impl TestDatabase {
    /// Creates an empty database with a unique name.
    pub async fn fresh() -> Self {
        let server_url =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_SERVER_URL.to_owned());
        let name = format!("tp_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&server_url)
            .await
            .unwrap_or_else(|e| {
                panic!("test database server unreachable (run deploy/setup.sh): {e}")
            });
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database: {e}"));
        let _ = conn.close().await;
        Self {
            url: with_database(&server_url, &name),
            name,
            server_url,
        }
    }

    /// Database settings pointing at this database.
    pub fn config(&self) -> DatabaseConfig {
        DatabaseConfig {
            url: self.url.clone(),
            max_connections: 10,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let server_url = self.server_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop runs outside any async context we can rely on: use a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&server_url).await.ok()?;
                sqlx::query(&sql).execute(&mut conn).await.ok()?;
                conn.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("note: test database {} was not dropped", self.name);
        }
    }
}

/// `url` with its database name replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|j| start + j))
        .unwrap_or(base.len());
    let mut out = format!("{}/{database}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// A topic prefix no other test uses.
pub fn unique_prefix() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("t{}.", &id[..12])
}

static BROKER: OnceLock<Result<OwnBroker, String>> = OnceLock::new();

/// The brokers tests use: `KAFKA_BROKERS`, else a Tansu broker started on first use.
pub fn broker() -> String {
    if let Ok(brokers) = std::env::var("KAFKA_BROKERS")
        && !brokers.trim().is_empty()
    {
        return brokers;
    }
    match BROKER.get_or_init(spawn_tansu) {
        Ok(broker) => broker.addr.clone(),
        Err(why) => panic!("no Kafka broker for tests: {why}"),
    }
}

/// A free TCP port on 127.0.0.1, chosen below the kernel's ephemeral range.
///
/// A test that kills and restarts a process expects its port to be free again.
/// A port from `bind(":0")` is an ephemeral one, which any outgoing connection in
/// the parallel suite may take while the process is down; ports below the range are
/// only ever handed out here. Each test process starts at a random place, so two
/// processes rarely probe the same ports.
pub fn free_port() -> u16 {
    // The range, read once, and the next offset into it.
    static NEXT: OnceLock<(u16, u32, AtomicU32)> = OnceLock::new();
    let (low, span, next) = NEXT.get_or_init(|| {
        let (low, high) = ports_outside_ephemeral_range();
        let span = u32::from(high - low);
        let start = RandomState::new().hash_one(std::process::id());
        (low, span, AtomicU32::new((start % u64::from(span)) as u32))
    });
    let (low, span) = (*low, *span);
    for _ in 0..span {
        let offset = next.fetch_add(1, Ordering::Relaxed) % span;
        let port = low + offset as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// The ports [`free_port`] picks from: 10000 up to the start of the ephemeral
/// range (`/proc/sys/net/ipv4/ip_local_port_range`, 32768 when unreadable).
fn ports_outside_ephemeral_range() -> (u16, u16) {
    const LOW: u16 = 10_000;
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    (LOW, ephemeral_start.max(LOW + 1_000))
}

fn spawn_tansu() -> Result<OwnBroker, String> {
    OwnBroker::start(&BrokerOptions::default())
}

/// How a broker of a test's own is started.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// Tansu's `--storage-engine` (`memory://tansu/`, or `sqlite://FILE` to
    /// keep users and records across a restart; FILE is relative to the
    /// temporary directory, where every broker runs).
    pub storage: String,
    /// More options, such as `--authentication` (SASL); paths must not hold
    /// spaces.
    pub options: String,
    /// The port it tells clients to reach it at, when that is not its own (a
    /// proxy in front of it).
    pub advertised_port: Option<u16>,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        Self {
            storage: "memory://tansu/".into(),
            options: String::new(),
            advertised_port: None,
        }
    }
}

/// A broker of the test's own, stopped when dropped.
#[derive(Debug)]
pub struct OwnBroker {
    /// Its `host:port`.
    pub addr: String,
    child: Child,
}

impl OwnBroker {
    /// Starts Tansu as `options` say, and waits until it listens.
    pub fn start(options: &BrokerOptions) -> Result<Self, String> {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let advertised = options.advertised_port.unwrap_or(port);
        let tansu = crate::tansu::binary();
        // A watchdog shell owns the broker and stops it when this test process
        // is gone, so no broker outlives the run even though statics are never
        // dropped.
        let script = format!(
            "\"$TANSU\" broker --storage-engine {storage} \
               --listener-url tcp://127.0.0.1:{port} \
               --advertised-listener-url tcp://127.0.0.1:{advertised} {more} >/dev/null 2>&1 & b=$!; \
             trap 'kill $b 2>/dev/null' EXIT INT TERM; \
             while kill -0 {parent} 2>/dev/null && kill -0 $b 2>/dev/null; do sleep 0.5; done",
            storage = options.storage,
            more = options.options,
            parent = std::process::id()
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(std::env::temp_dir())
            .env("TANSU", &tansu)
            // Tansu reads these too; the test's own values are not meant for it.
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("STORAGE_ENGINE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {tansu} (run deploy/setup.sh): {e}"))?;
        // Dropped on the way out unless it listens, which stops it.
        let broker = Self { addr, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        let socket: SocketAddr = broker.addr.parse().map_err(|e| format!("{e}"))?;
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&socket, Duration::from_millis(200)).is_ok() {
                return Ok(broker);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "{tansu} did not listen on {} within 30 s (run deploy/setup.sh)",
            broker.addr
        ))
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        // The watchdog shell's trap stops the broker when the shell is told to.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Kafka settings for a test: the test broker, `prefix`, 3 partitions.
pub fn kafka_config(prefix: &str) -> KafkaConfig {
    KafkaConfig {
        brokers: broker(),
        topic_prefix: prefix.to_owned(),
        partitions: 3,
        replication: 1,
        security: KafkaSecurity::default(),
        create_topics: true,
    }
}

/// Platform settings for a service under test: a free port, `database`, the test
/// broker under `prefix`, fast polling.
pub fn platform_config(service: &str, database: &TestDatabase, prefix: &str) -> PlatformConfig {
    let mut config = PlatformConfig::from_env(&Env::from_pairs([]), service, 0)
        .unwrap_or_else(|e| panic!("default config rejected: {e}"));
    config.database = database.config();
    config.kafka = kafka_config(prefix);
    config.outbox = OutboxConfig {
        batch_size: 1000,
        poll_interval: Duration::from_millis(50),
        linger: Duration::from_millis(10),
        sent_retention: Duration::from_secs(86_400),
    };
    config.consumer = ConsumerConfig {
        batch_size: 500,
        max_attempts: 3,
        retry_backoff: Duration::from_millis(10),
        instance_id: None,
        inbox_retention: Duration::from_secs(45 * 86_400),
    };
    config.access.tokens = test_tokens();
    config
}

/// The token tests call with: the `write` role.
pub const WRITE_TOKEN: &str = "test-write-token";
/// A token with the `read` role only.
pub const READ_TOKEN: &str = "test-read-token";

/// The tokens a service under test accepts: [`WRITE_TOKEN`] and [`READ_TOKEN`].
pub fn test_tokens() -> Vec<ApiToken> {
    vec![
        ApiToken::new("test-writer", Role::Write, WRITE_TOKEN),
        ApiToken::new("test-reader", Role::Read, READ_TOKEN),
    ]
}

/// `TOUCHPOINT_API_TOKENS` for a service process under test.
pub fn test_tokens_var() -> String {
    test_tokens()
        .iter()
        .map(ApiToken::entry)
        .collect::<Vec<_>>()
        .join(",")
}

/// A channel to the service at `addr` (plain gRPC) as the test writer.
pub async fn channel(addr: impl std::fmt::Display) -> AuthChannel {
    client::connect(&format!("http://{addr}"), &ClientAccess::token(WRITE_TOKEN))
        .await
        .unwrap_or_else(|e| panic!("cannot reach the service at {addr}: {e}"))
}

/// Polls `check` until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The instant `rfc3339` names, e.g. `2026-04-07T14:00:00Z`; panics on a typo.
pub fn utc(rfc3339: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.to_utc())
        .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
}

/// Publishes `events` to their topics under `prefix`, keyed by case id as the
/// services publish them.
pub async fn publish(prefix: &str, events: &[(Stream, Envelope)]) {
    let producer: FutureProducer = crate::kafka::idempotent_producer_config(&kafka_config(prefix))
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    let topics = Topics::new(prefix.to_owned());
    for (stream, envelope) in events {
        let topic = topics.name(*stream);
        let bytes = envelope.encode_to_vec();
        let record = FutureRecord::to(&topic)
            .key(&envelope.case_id)
            .payload(&bytes);
        producer
            .send(record, Duration::from_secs(30))
            .await
            .unwrap_or_else(|(e, _)| panic!("publish failed: {e}"));
    }
}

/// The `dlq-reason` of the first `count` records dead-lettered from `stream`
/// under `prefix`, waiting at most `wait`.
pub async fn dead_letter_reasons(
    prefix: &str,
    stream: Stream,
    count: usize,
    wait: Duration,
) -> Vec<String> {
    let group = format!("dlq-{}", unique_prefix().trim_end_matches('.'));
    let reader: StreamConsumer = crate::kafka::consumer_config(&kafka_config(prefix), &group)
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    let topic = Topics::new(prefix.to_owned()).dlq(stream);
    reader
        .subscribe(&[&topic])
        .unwrap_or_else(|e| panic!("{e}"));
    let mut reasons = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while reasons.len() < count {
        let record = tokio::time::timeout_at(deadline, reader.recv())
            .await
            .unwrap_or_else(|_| panic!("only {reasons:?} dead-lettered"))
            .unwrap_or_else(|e| panic!("{e}"));
        reasons.push(
            crate::dlq::header(&record, crate::dlq::REASON_HEADER)
                .unwrap_or_default()
                .to_owned(),
        );
    }
    reasons
}

/// Every event published to one topic, read from its start in the background.
#[derive(Debug, Clone)]
pub struct TopicReader {
    seen: std::sync::Arc<std::sync::Mutex<Vec<Envelope>>>,
}

impl TopicReader {
    /// Reads `topic` (a full name, under `prefix`'s broker settings) from its
    /// start.
    pub fn start(prefix: &str, topic: &str) -> Self {
        use futures::StreamExt as _;
        use rdkafka::Message as _;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let group = format!("reader-{}", unique_prefix().trim_end_matches('.'));
        let reader: StreamConsumer = crate::kafka::consumer_config(&kafka_config(prefix), &group)
            .create()
            .unwrap_or_else(|e| panic!("{e}"));
        reader.subscribe(&[topic]).unwrap_or_else(|e| panic!("{e}"));
        let sink = seen.clone();
        tokio::spawn(async move {
            let mut stream = reader.stream();
            while let Some(record) = stream.next().await {
                if let Ok(record) = record
                    && let Ok((envelope, _)) = crate::envelope::decode(record.payload())
                {
                    sink.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(envelope);
                }
            }
        });
        Self { seen }
    }

    /// Every event read so far, in arrival order.
    pub fn all(&self) -> Vec<Envelope> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Waits up to `wait` for an event `pick` finds something in, and returns
    /// what it found.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        wait: Duration,
        pick: impl Fn(&Envelope) -> Option<T>,
    ) -> T {
        eventually(what, wait, || async { self.all().iter().find_map(&pick) }).await
    }
}

static TRACING: OnceLock<Option<crate::telemetry::Telemetry>> = OnceLock::new();

/// Installs the platform's telemetry in the test process once, so spans carry
/// trace ids as they do in a service.
pub fn init_tracing() {
    TRACING.get_or_init(|| {
        let config = crate::config::TelemetryConfig {
            service_name: "test".into(),
            otlp_endpoint: None,
            log_filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        };
        crate::telemetry::init(&config).ok()
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let (_, ephemeral_start) = ports_outside_ephemeral_range();
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        for port in &ports {
            assert!(*port < ephemeral_start, "{port} is an ephemeral port");
            assert!(
                TcpListener::bind(("127.0.0.1", *port)).is_ok(),
                "{port} is taken"
            );
        }
        let mut distinct = ports.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
    }

    #[test]
    fn database_name_is_replaced_keeping_options() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }
}
