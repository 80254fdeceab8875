//! The spine against real PostgreSQL and a real Kafka-protocol broker: outbox →
//! relay → topic → inbox consumer, across processes, through crashes and poison,
//! and each table's retention.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use rdkafka::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use sqlx::PgPool;
use touchpoint_platform::config::PlatformConfig;
use touchpoint_platform::dlq::{self, header};
use touchpoint_platform::outbox::EVENT_ID_HEADER;
use touchpoint_platform::shutdown::Shutdown;
use touchpoint_platform::testkit::{self, TestDatabase, eventually};
use touchpoint_platform::topics::{self, Stream, Topics};
use touchpoint_platform::{db, inbox, kafka, trace_context};
use touchpoint_tests::spine;

const WAIT: Duration = Duration::from_secs(60);

/// One test's world: a fresh database, its own topics, both schemas migrated.
struct World {
    database: TestDatabase,
    config: PlatformConfig,
    topics: Topics,
    producer_pool: PgPool,
    consumer_pool: PgPool,
}

impl World {
    async fn new() -> Self {
        testkit::init_tracing();
        let database = TestDatabase::fresh().await;
        let prefix = testkit::unique_prefix();
        let config = testkit::platform_config("spine-test", &database, &prefix);
        topics::bootstrap(&config.kafka)
            .await
            .unwrap_or_else(|e| panic!("topic bootstrap: {e}"));
        let producer_pool = db::connect(
            &config.database,
            spine::PRODUCER_SCHEMA,
            &spine::PRODUCER_MIGRATIONS,
        )
        .await
        .unwrap_or_else(|e| panic!("producer schema: {e}"));
        let consumer_pool = db::connect(
            &config.database,
            spine::CONSUMER_SCHEMA,
            &spine::CONSUMER_MIGRATIONS,
        )
        .await
        .unwrap_or_else(|e| panic!("consumer schema: {e}"));
        Self {
            database,
            topics: Topics::new(prefix),
            config,
            producer_pool,
            consumer_pool,
        }
    }

    fn case_topic(&self) -> String {
        self.topics.name(Stream::Case)
    }

    /// Starts `spine-peer ROLE` as a separate process against this world.
    fn peer(&self, role: &str, crash_after_publish: bool) -> Peer {
        let mut command = Command::new(env!("CARGO_BIN_EXE_spine-peer"));
        command
            .arg(role)
            .env("DATABASE_URL", &self.database.url)
            .env("KAFKA_BROKERS", &self.config.kafka.brokers)
            .env(
                "TOUCHPOINT_TOPIC_PREFIX",
                self.topics
                    .name(Stream::Case)
                    .replace(Stream::Case.base_name(), ""),
            )
            .env("TOUCHPOINT_OUTBOX_POLL_MS", "50")
            .env("TOUCHPOINT_CONSUMER_RETRY_MS", "10")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if crash_after_publish {
            command.env("SPINE_CRASH_AFTER_PUBLISH", "1");
        }
        Peer(
            command
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start spine-peer: {e}")),
        )
    }

    /// Runs a relay inside this process until the returned shutdown.
    fn relay(&self) -> Shutdown {
        let relay = Shutdown::new();
        relay.spawn(
            spine::relay(&self.producer_pool, &self.config)
                .unwrap_or_else(|e| panic!("{e}"))
                .run(relay.token()),
        );
        relay
    }

    /// Runs a relay and a consumer inside this process until the returned shutdown.
    fn in_process_pipeline(&self) -> Shutdown {
        let shutdown = Shutdown::new();
        let relay =
            spine::relay(&self.producer_pool, &self.config).unwrap_or_else(|e| panic!("{e}"));
        shutdown.spawn(relay.run(shutdown.token()));
        let consumer = spine::consumer(&self.consumer_pool, &self.config);
        let token = shutdown.token();
        shutdown.spawn(async move {
            if let Err(e) = consumer.run(token).await {
                panic!("consumer failed: {e}");
            }
        });
        shutdown
    }

    async fn effect_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM spine_effects")
            .fetch_one(&self.consumer_pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn wait_for_effects(&self, expected: i64) {
        eventually(&format!("{expected} effects"), WAIT, || async {
            (self.effect_count().await >= expected).then_some(())
        })
        .await;
    }

    /// (event_id, case_id, sequence, trace_id) in the order they were applied.
    async fn effects(&self) -> Vec<(uuid::Uuid, String, i64, Option<String>)> {
        sqlx::query_as(
            "SELECT event_id, case_id, sequence, trace_id FROM spine_effects ORDER BY applied_seq",
        )
        .fetch_all(&self.consumer_pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Appends probes numbered `sequences` over seven cases, then waits until the
    /// relay has published every row.
    async fn append_and_wait_published(
        &self,
        sequences: std::ops::RangeInclusive<u64>,
        what: &str,
    ) {
        let events: Vec<_> = sequences
            .map(|n| spine::probe(&self.case_topic(), &format!("case-{}", n % 7), n, ""))
            .collect();
        spine::append(&self.producer_pool, &events)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        eventually(what, WAIT, || async {
            (self.unsent().await == 0).then_some(())
        })
        .await;
    }

    /// Asserts the case topic holds `expected` records, each a different event.
    async fn assert_each_published_once(&self, expected: usize) {
        let wire = self
            .read_topic(&self.case_topic(), |seen| seen.len() >= expected)
            .await;
        let ids: HashSet<&str> = wire
            .iter()
            .filter_map(|r| header(r, EVENT_ID_HEADER))
            .collect();
        assert_eq!(wire.len(), expected, "no row was published twice");
        assert_eq!(ids.len(), expected, "every row published once");
    }

    async fn outbox_rows(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&self.producer_pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn unsent(&self) -> i64 {
        touchpoint_platform::outbox::unsent_count(&self.producer_pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Reads `topic` from the start until `done` says enough, or panics at the deadline.
    async fn read_topic(
        &self,
        topic: &str,
        done: impl Fn(&[OwnedMessage]) -> bool,
    ) -> Vec<OwnedMessage> {
        let group = format!("reader-{}", uuid::Uuid::new_v4());
        let reader: StreamConsumer = kafka::consumer_config(&self.config.kafka, &group)
            .create()
            .unwrap_or_else(|e| panic!("{e}"));
        reader.subscribe(&[topic]).unwrap_or_else(|e| panic!("{e}"));
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        while !done(&seen) {
            match tokio::time::timeout_at(deadline, reader.recv()).await {
                Ok(Ok(message)) => seen.push(message.detach()),
                Ok(Err(e)) => panic!("reading {topic}: {e}"),
                Err(_) => panic!("timed out reading {topic}: {} records seen", seen.len()),
            }
        }
        seen
    }
}

/// A child process killed when the test is done with it.
struct Peer(Child);

impl Peer {
    async fn wait_exit(&mut self) -> ExitStatus {
        let child = std::sync::Mutex::new(&mut self.0);
        eventually("peer to exit", WAIT, || {
            let status = child
                .lock()
                .ok()
                .and_then(|mut c| c.try_wait().ok().flatten());
            async move { status }
        })
        .await
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_appended_in_one_process_is_applied_once_in_another_with_its_trace() {
    let world = World::new().await;
    let span = tracing::info_span!("test.append");
    let trace_id = span
        .in_scope(trace_context::current_trace_id)
        .unwrap_or_else(|| panic!("no trace id"));
    let event = spine::probe(&world.case_topic(), "case-trace", 1, "");
    let event_id = event.envelope.event_id.clone();
    {
        let _entered = span.enter();
        spine::append(&world.producer_pool, &[event])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    let _relay = world.peer("relay", false);
    let _consumer = world.peer("consume", false);
    world.wait_for_effects(1).await;

    let effects = world.effects().await;
    assert_eq!(effects.len(), 1, "applied exactly once");
    assert_eq!(effects[0].0.to_string(), event_id);
    assert_eq!(
        effects[0].3.as_deref(),
        Some(trace_id.as_str()),
        "trace id survives the trip"
    );
    eventually("outbox row marked sent", WAIT, || async {
        (world.unsent().await == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_killed_between_publish_and_mark_sent_duplicates_on_the_wire_but_not_in_effect() {
    let world = World::new().await;
    // One case, so one partition: the sentinel is applied after every earlier record.
    let events: Vec<_> = (1..=50)
        .map(|n| spine::probe(&world.case_topic(), "case-crash", n, ""))
        .collect();
    spine::append(&world.producer_pool, &events)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let mut crashing = world.peer("relay", true);
    let status = crashing.wait_exit().await;
    assert!(!status.success(), "the relay was meant to die mid-batch");
    assert_eq!(
        world.unsent().await,
        50,
        "nothing was marked sent before the crash"
    );

    let _relay = world.peer("relay", false);
    // Both publishes reach the wire: each event id at least twice.
    let wire = world
        .read_topic(&world.case_topic(), |seen| seen.len() >= 100)
        .await;
    let mut copies: HashMap<String, usize> = HashMap::new();
    for record in &wire {
        *copies
            .entry(
                header(record, EVENT_ID_HEADER)
                    .unwrap_or_default()
                    .to_owned(),
            )
            .or_default() += 1;
    }
    assert_eq!(copies.len(), 50);
    assert!(
        copies.values().all(|&n| n >= 2),
        "every event was published twice: {copies:?}"
    );

    spine::append(
        &world.producer_pool,
        &[spine::probe(&world.case_topic(), "case-crash", 51, "")],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let _consumer = world.peer("consume", false);
    eventually("the sentinel applied", WAIT, || async {
        world
            .effects()
            .await
            .iter()
            .any(|e| e.2 == 51)
            .then_some(())
    })
    .await;

    let effects = world.effects().await;
    let sequences: Vec<i64> = effects.iter().map(|e| e.2).collect();
    assert_eq!(
        sequences,
        (1..=51).collect::<Vec<_>>(),
        "each event applied exactly once, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_failing_records_go_to_the_dlq_and_the_consumer_goes_on() {
    let world = World::new().await;
    let producer: FutureProducer = kafka::idempotent_producer_config(&world.config.kafka)
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    let topic = world.case_topic();
    let garbage = FutureRecord::to(&topic)
        .key("case-poison")
        .payload(&[0xde_u8, 0xad, 0xbe, 0xef][..]);
    producer
        .send(garbage, Timeout::After(WAIT))
        .await
        .unwrap_or_else(|(e, _)| panic!("{e}"));
    spine::append(
        &world.producer_pool,
        &[
            spine::probe(&world.case_topic(), "case-poison", 1, spine::ALWAYS_FAIL),
            spine::probe(&world.case_topic(), "case-poison", 2, ""),
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    let pipeline = world.in_process_pipeline();
    world.wait_for_effects(1).await;
    let effects = world.effects().await;
    assert_eq!(effects.len(), 1);
    assert_eq!(
        effects[0].2, 2,
        "the good record after the poison was applied"
    );

    let dead = world
        .read_topic(&world.topics.dlq(Stream::Case), |seen| seen.len() >= 2)
        .await;
    let reasons: Vec<&str> = dead
        .iter()
        .filter_map(|r| header(r, dlq::REASON_HEADER))
        .collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("undecodable")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("handler failed after 3 attempt(s)")),
        "{reasons:?}"
    );
    for record in &dead {
        assert_eq!(
            header(record, dlq::ORIGINAL_TOPIC_HEADER),
            Some(world.case_topic().as_str())
        );
        assert!(
            header(record, dlq::ORIGINAL_PARTITION_HEADER)
                .is_some_and(|p| p.parse::<i32>().is_ok())
        );
        assert!(
            header(record, dlq::ORIGINAL_OFFSET_HEADER).is_some_and(|o| o.parse::<i64>().is_ok())
        );
        assert_eq!(
            record.key(),
            Some(&b"case-poison"[..]),
            "the DLQ keeps the original key"
        );
    }
    pipeline.drain(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_for_a_hundred_cases_are_applied_in_per_case_order() {
    const CASES: u64 = 100;
    const PER_CASE: u64 = 100;
    let world = World::new().await;
    let pipeline = world.in_process_pipeline();
    // Interleave cases across many small transactions, as services would.
    for round in 0..PER_CASE / 10 {
        let mut batch = Vec::new();
        for case in 0..CASES {
            for n in 1..=10 {
                let sequence = round * 10 + n;
                batch.push(spine::probe(
                    &world.case_topic(),
                    &format!("case-{case:03}"),
                    sequence,
                    "",
                ));
            }
        }
        for chunk in batch.chunks(250) {
            spine::append(&world.producer_pool, chunk)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    world.wait_for_effects((CASES * PER_CASE) as i64).await;
    pipeline.drain(WAIT).await;

    let effects = world.effects().await;
    assert_eq!(
        effects.len() as u64,
        CASES * PER_CASE,
        "no event applied twice"
    );
    let distinct: HashSet<_> = effects.iter().map(|e| e.0).collect();
    assert_eq!(distinct.len(), effects.len());
    let mut last: HashMap<&str, i64> = HashMap::new();
    for (_, case, sequence, _) in &effects {
        let previous = last.insert(case.as_str(), *sequence).unwrap_or(0);
        assert_eq!(*sequence, previous + 1, "{case} applied out of order");
    }
    assert_eq!(last.len() as u64, CASES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relay_replicas_publish_each_row_once_and_the_standby_takes_over() {
    let world = World::new().await;
    let relay =
        || spine::relay(&world.producer_pool, &world.config).unwrap_or_else(|e| panic!("{e}"));
    // The first replica publishes alone, so it is the leader when the second joins.
    let first = Shutdown::new();
    first.spawn(relay().run(first.token()));
    world
        .append_and_wait_published(1..=200, "rows published by the leader")
        .await;
    let second = Shutdown::new();
    second.spawn(relay().run(second.token()));
    world
        .append_and_wait_published(201..=250, "rows published while both run")
        .await;

    // The leader stops; only the standby is left to publish the rest.
    first.drain(WAIT).await;
    world
        .append_and_wait_published(251..=300, "rows published by the survivor")
        .await;
    second.drain(WAIT).await;

    world.assert_each_published_once(300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_rows_are_deleted_after_the_retention_and_later_rows_still_go_out() {
    let mut world = World::new().await;
    world.config.outbox.sent_retention = Duration::from_secs(1);
    let relay = world.relay();
    world
        .append_and_wait_published(1..=100, "first rows published")
        .await;
    eventually("published rows deleted", WAIT, || async {
        (world.outbox_rows().await == 0).then_some(())
    })
    .await;
    world
        .append_and_wait_published(101..=150, "later rows published")
        .await;
    relay.drain(WAIT).await;

    world.assert_each_published_once(150).await;
}

impl World {
    async fn inbox_sequences(&self) -> Vec<i64> {
        sqlx::query_scalar(
            "SELECT e.sequence FROM inbox i JOIN spine_effects e USING (event_id)
             ORDER BY e.sequence",
        )
        .fetch_all(&self.consumer_pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_rows_past_the_retention_are_purged_and_a_redelivery_inside_it_has_no_second_effect()
{
    let world = World::new().await;
    let _pipeline = world.in_process_pipeline();
    world.append_and_wait_published(1..=40, "published").await;
    world.wait_for_effects(40).await;
    // The first twenty were applied 46 days ago; the retention is 45.
    sqlx::query(
        "UPDATE inbox SET processed_at = now() - interval '46 days'
         WHERE event_id IN (SELECT event_id FROM spine_effects WHERE sequence <= 20)",
    )
    .execute(&world.consumer_pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let retention = Duration::from_secs(45 * 86_400);
    let purged = inbox::purge(&world.consumer_pool, spine::CONSUMER_NAME, retention)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(purged, 20, "what is past the retention goes");
    assert_eq!(
        world.inbox_sequences().await,
        (21..=40).collect::<Vec<i64>>(),
        "nothing younger goes"
    );
    let again = inbox::purge(&world.consumer_pool, spine::CONSUMER_NAME, retention).await;
    assert_eq!(again.ok(), Some(0));

    // Records come again: those still remembered (21-40) have no second
    // effect. One past the retention (1), which a topic no longer holds by
    // then, would be applied again: the retention must outlast the topics'.
    let wire = world
        .read_topic(&world.case_topic(), |seen| seen.len() >= 40)
        .await;
    let producer: FutureProducer = kafka::idempotent_producer_config(&world.config.kafka)
        .create()
        .unwrap_or_else(|e| panic!("{e}"));
    let effects = world.effects().await;
    let sequence_of: HashMap<uuid::Uuid, i64> =
        effects.iter().map(|(id, _, seq, _)| (*id, *seq)).collect();
    let topic = world.case_topic();
    let mut resent = 0;
    for record in &wire {
        let id = header(record, EVENT_ID_HEADER).and_then(|id| uuid::Uuid::parse_str(id).ok());
        let sequence = id.and_then(|id| sequence_of.get(&id).copied());
        if !matches!(sequence, Some(1 | 21..=40)) {
            continue;
        }
        let mut again = FutureRecord::to(&topic).payload(record.payload().unwrap_or_default());
        if let Some(key) = record.key() {
            again = again.key(key);
        }
        producer
            .send(again, Timeout::After(WAIT))
            .await
            .unwrap_or_else(|(e, _)| panic!("{e}"));
        resent += 1;
    }
    assert_eq!(resent, 21);
    // A last record for each case, behind the redelivered ones in its
    // partition: once they are applied, so is everything before them.
    world
        .append_and_wait_published(41..=47, "markers published")
        .await;
    world.wait_for_effects(48).await;
    let effects = world.effects().await;
    let applied = |n: i64| effects.iter().filter(|(_, _, seq, _)| *seq == n).count();
    assert_eq!(effects.len(), 48, "40 + 7 markers + the one forgotten");
    assert_eq!(applied(30), 1, "remembered: applied once");
    assert_eq!(applied(1), 2, "forgotten past the retention: applied again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_purges_its_own_inbox_past_the_retention_and_goes_on_applying() {
    let mut world = World::new().await;
    world.config.consumer.inbox_retention = Duration::from_secs(1);
    let _pipeline = world.in_process_pipeline();
    world.append_and_wait_published(1..=30, "published").await;
    world.wait_for_effects(30).await;
    eventually("the inbox purged", WAIT, || async {
        world.inbox_sequences().await.is_empty().then_some(())
    })
    .await;
    world.append_and_wait_published(31..=40, "later ones").await;
    world.wait_for_effects(40).await;
    assert_eq!(world.effects().await.len(), 40, "each applied once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_retention_each_row_is_deleted_as_it_is_published_and_goes_out_once() {
    let mut world = World::new().await;
    world.config.outbox.sent_retention = Duration::ZERO;
    let relay = world.relay();
    world
        .append_and_wait_published(1..=100, "rows published")
        .await;
    assert_eq!(world.outbox_rows().await, 0, "nothing kept once published");
    world
        .append_and_wait_published(101..=150, "later rows published")
        .await;
    relay.drain(WAIT).await;
    world.assert_each_published_once(150).await;
}
