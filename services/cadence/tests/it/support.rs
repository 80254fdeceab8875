//! What the cadence service's tests share: programs written to a folder of their
//! own, the real service on a free port on a simulated clock, case events
//! published to the broker as the cases service would, and a reader of
//! `touchpoint.outreach.v1`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use touchpoint_platform::clock::ClockConfig;
use touchpoint_platform::config::PlatformConfig;
use touchpoint_platform::envelope::{decode, instant};
use touchpoint_platform::grpc::client::AuthChannel as GrpcChannel;
use touchpoint_platform::kafka;
use touchpoint_platform::shutdown::Shutdown;
pub use touchpoint_platform::testkit::events::{
    EMAIL, MOBILE, NEW_YORK, NewCase, consent, event, person,
};
pub use touchpoint_platform::testkit::utc;
use touchpoint_platform::testkit::{self, TestDatabase};
use touchpoint_platform::topics::{Stream, Topics};
use touchpoint_proto::v1::cadence_service_client::CadenceServiceClient;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{Envelope, GetPlanRequest, OutreachRequested, Plan, StepState};

pub const WAIT: Duration = Duration::from_secs(90);
/// Monday 2026-04-06, 09:00 in New York: the simulated clock starts here.
pub const SIM_START: &str = "2026-04-06T13:00:00Z";

/// A programs folder of a test's own, removed when dropped.
pub struct ProgramsDir(PathBuf);

impl ProgramsDir {
    pub fn path(&self) -> &PathBuf {
        &self.0
    }
}

impl Drop for ProgramsDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A programs folder holding one program `id` written as `toml`, with a template
/// file for each of `templates`.
pub fn programs_dir(id: &str, toml: &str, templates: &[&str]) -> ProgramsDir {
    let root = std::env::temp_dir().join(format!("tp-programs-{}", uuid_like()));
    let folder = root.join(id).join("templates");
    std::fs::create_dir_all(&folder).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(root.join(id).join("program.toml"), toml).unwrap_or_else(|e| panic!("{e}"));
    for template in templates {
        std::fs::write(folder.join(format!("{template}.en.txt")), "Hello")
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            folder.join(format!("{template}.caregiver.en.txt")),
            "A message from {{ program_name }}",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    ProgramsDir(root)
}

/// The programs the project ships.
pub fn shipped_programs() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../programs"))
}

pub fn uuid_like() -> String {
    testkit::unique_prefix().trim_end_matches('.').to_owned()
}

/// A test's database, topics and clock, shared by the replicas it starts.
pub struct World {
    pub database: TestDatabase,
    pub prefix: String,
    pub clock: ClockConfig,
}

impl World {
    /// Simulated time from [`SIM_START`] at `speed` times real time.
    pub async fn accelerated(speed: f64) -> Self {
        Self::new(ClockConfig::Accelerated {
            start: utc(SIM_START),
            epoch: Utc::now(),
            speed,
        })
        .await
    }

    /// Simulated time standing at `at`.
    pub async fn fixed(at: &str) -> Self {
        Self::new(ClockConfig::Fixed { at: utc(at) }).await
    }

    async fn new(clock: ClockConfig) -> Self {
        testkit::init_tracing();
        Self {
            database: TestDatabase::fresh().await,
            prefix: testkit::unique_prefix(),
            clock,
        }
    }

    pub fn platform(&self) -> PlatformConfig {
        let mut config = testkit::platform_config("cadence", &self.database, &self.prefix);
        config.clock = self.clock.clone();
        config
    }

    pub fn topic(&self, stream: Stream) -> String {
        Topics::new(self.prefix.clone()).name(stream)
    }

    /// Starts a cadence replica with the programs in `programs`.
    pub async fn cadence(&self, programs: &PathBuf, due_batch: usize) -> Replica {
        let mut config = touchpoint_cadence::Config::new(self.platform(), programs);
        config.due_batch = due_batch;
        config.due_poll = Duration::from_millis(50);
        config.programs_reload = Duration::from_millis(100);
        let shutdown = Shutdown::new();
        let addr = touchpoint_cadence::start(config, &shutdown)
            .await
            .unwrap_or_else(|e| panic!("cadence did not start: {e}"));
        let client = CadenceServiceClient::new(testkit::channel(addr).await);
        Replica { client, shutdown }
    }

    /// Publishes `events` to their topics as the other services would.
    pub async fn publish(&self, events: &[(Stream, Envelope)]) {
        testkit::publish(&self.prefix, events).await;
    }

    /// A reader of `touchpoint.outreach.v1` from its start.
    pub fn outreach(&self) -> Outreach {
        Outreach::start(&self.prefix, &self.topic(Stream::Outreach))
    }
}

/// A running replica; it stops when dropped.
pub struct Replica {
    pub client: CadenceServiceClient<GrpcChannel>,
    pub shutdown: Shutdown,
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// A `CaseOpened` for `case_id` in `program`, in New York, with a mobile and an
/// email, enrolled at `enrolled_at`.
pub fn case_opened(case_id: &str, program: &str, enrolled_at: DateTime<Utc>) -> Envelope {
    NewCase::default()
        .program(program)
        .enrolled_at(enrolled_at)
        .patient(person("", "", MOBILE, EMAIL))
        .event(case_id)
}

/// One `OutreachRequested` as read from the topic.
#[derive(Debug, Clone)]
pub struct Requested {
    pub case_id: String,
    /// The simulated instant it was requested.
    pub requested_at: DateTime<Utc>,
    pub request: OutreachRequested,
    /// The W3C trace context the record carried.
    pub traceparent: Option<String>,
}

/// Everything published to `touchpoint.outreach.v1`, in arrival order.
#[derive(Clone)]
pub struct Outreach {
    seen: Arc<Mutex<Vec<Requested>>>,
}

impl Outreach {
    fn start(prefix: &str, topic: &str) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let config = testkit::kafka_config(prefix);
        let reader: StreamConsumer =
            kafka::consumer_config(&config, &format!("reader-{}", uuid_like()))
                .create()
                .unwrap_or_else(|e| panic!("{e}"));
        reader.subscribe(&[topic]).unwrap_or_else(|e| panic!("{e}"));
        let sink = seen.clone();
        tokio::spawn(async move {
            let mut stream = reader.stream();
            while let Some(record) = stream.next().await {
                let Ok(record) = record else { continue };
                let Ok((envelope, _)) = decode(record.payload()) else {
                    continue;
                };
                let traceparent =
                    touchpoint_platform::dlq::header(&record, "traceparent").map(str::to_owned);
                let requested_at = envelope.occurred_at.as_ref().and_then(instant);
                if let (Some(Payload::OutreachRequested(request)), Some(requested_at)) =
                    (envelope.payload, requested_at)
                {
                    sink.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(Requested {
                            case_id: envelope.case_id,
                            requested_at,
                            request,
                            traceparent,
                        });
                }
            }
        });
        Self { seen }
    }

    /// Every record so far.
    pub fn all(&self) -> Vec<Requested> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The distinct attempts so far (a record the relay republished after a crash
    /// carries the same attempt id and counts once).
    pub fn attempts(&self) -> BTreeMap<String, Requested> {
        self.all()
            .into_iter()
            .map(|r| (r.request.attempt_id.clone(), r))
            .collect()
    }

    /// Waits until `count` distinct attempts arrived.
    pub async fn wait_for(&self, count: usize) -> BTreeMap<String, Requested> {
        testkit::eventually(&format!("{count} outreach requests"), WAIT, || async {
            let attempts = self.attempts();
            (attempts.len() >= count).then_some(attempts)
        })
        .await
    }
}

/// Fails if one attempt of a step (case, step, channel, number) was requested
/// under two attempt ids: that would be the same touchpoint emitted twice.
pub fn assert_each_attempt_once(attempts: &BTreeMap<String, Requested>) {
    let mut by_touchpoint: BTreeMap<(String, String, i32, u32), Vec<&str>> = BTreeMap::new();
    for (id, r) in attempts {
        by_touchpoint
            .entry((
                r.case_id.clone(),
                r.request.step_id.clone(),
                r.request.channel,
                r.request.attempt_number,
            ))
            .or_default()
            .push(id);
    }
    let twice: Vec<_> = by_touchpoint
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .collect();
    assert!(twice.is_empty(), "emitted more than once: {twice:?}");
}

/// A program of one step due at enrolment: `attempts` SMS two hours apart, with a
/// cap loose enough for all of them in a day.
pub fn burst_program(attempts: u32) -> String {
    format!(
        r#"
id = "burst"
name = "Burst"
languages = ["en"]

[frequency_cap]
per_day = 10
per_week = 50

[[steps]]
id = "hello"
anchor = "enrolled"
offset = "0d"
template = "hello"
exit_when = ["responded"]
channels = [{{ channel = "sms", attempts = {attempts}, wait = "2h" }}]
"#
    )
}

/// The `dlq-reason` of the first `count` records dead-lettered from `stream`.
pub async fn dead_letter_reasons(world: &World, stream: Stream, count: usize) -> Vec<String> {
    testkit::dead_letter_reasons(&world.prefix, stream, count, WAIT).await
}

/// The plan of `case_id` once `check` holds; on timeout the failure shows the
/// last plan seen (plans carry ids and times, no patient data).
pub async fn plan_where(replica: &Replica, case_id: &str, check: impl Fn(&Plan) -> bool) -> Plan {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = None;
    loop {
        let request = GetPlanRequest {
            case_id: case_id.into(),
        };
        if let Ok(plan) = replica.client.clone().get_plan(request).await {
            let plan = plan.into_inner();
            if check(&plan) {
                return plan;
            }
            last = Some(plan);
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {WAIT:?} waiting for the plan; last seen: {last:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The state of `step` in `plan`.
pub fn step_state(plan: &Plan, step: &str) -> Option<StepState> {
    plan.steps
        .iter()
        .find(|s| s.step_id == step)
        .and_then(|s| StepState::try_from(s.state).ok())
}
