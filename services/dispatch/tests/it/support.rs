//! What dispatch's tests share: the real service on a free port on a clock that
//! stands still, events published as the other services would, and a reader of
//! what dispatch publishes to `touchpoint.attempt.v1`.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use touchpoint_platform::clock::ClockConfig;
use touchpoint_platform::envelope::timestamp;
use touchpoint_platform::grpc::client::AuthChannel as GrpcChannel;
use touchpoint_platform::shutdown::Shutdown;
pub use touchpoint_platform::testkit::events::{NewCase, consent, event};
pub use touchpoint_platform::testkit::utc;
use touchpoint_platform::testkit::{self, TestDatabase};
use touchpoint_platform::topics::{Stream, Topics};
use touchpoint_proto::v1::dispatch_service_client::DispatchServiceClient;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    Channel, ContactPoint, CoordinatorAssigned, Envelope, Language, OutreachRequested,
    contact_point,
};

pub const WAIT: Duration = Duration::from_secs(90);
/// Tuesday 2026-04-07, 10:00 in New York: inside the adherence program's window.
pub const NOW: &str = "2026-04-07T14:00:00Z";
/// 20:00 in New York that day: the window's close.
pub const CLOSES: &str = "2026-04-08T00:00:00Z";

/// A test's database, topics, clock and the running service.
pub struct World {
    /// Held for the test's life: the database goes when it does.
    _database: TestDatabase,
    pub prefix: String,
    pub client: DispatchServiceClient<GrpcChannel>,
    shutdown: Shutdown,
}

impl Drop for World {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

impl World {
    /// Dispatch with the shipped programs, on a clock standing at `now`.
    pub async fn at(now: &str) -> Self {
        Self::on(ClockConfig::Fixed { at: utc(now) }).await
    }

    /// Dispatch on a clock that reads `now` at start and runs at real speed, for
    /// tests that wait for something dispatch schedules.
    pub async fn running_from(now: &str) -> Self {
        Self::running_with(now, |_| {}).await
    }

    async fn on(clock: ClockConfig) -> Self {
        Self::configured(clock, |_| {}).await
    }

    /// Dispatch on a clock that reads `now` at start and runs at real speed, with
    /// its configuration adjusted by `adjust` (providers, tries, timeouts).
    pub async fn running_with(
        now: &str,
        adjust: impl FnOnce(&mut touchpoint_dispatch::Config),
    ) -> Self {
        let clock = ClockConfig::Accelerated {
            start: utc(now),
            epoch: Utc::now(),
            speed: 1.0,
        };
        Self::configured(clock, adjust).await
    }

    async fn configured(
        clock: ClockConfig,
        adjust: impl FnOnce(&mut touchpoint_dispatch::Config),
    ) -> Self {
        testkit::init_tracing();
        let database = TestDatabase::fresh().await;
        let prefix = testkit::unique_prefix();
        let mut platform = testkit::platform_config("dispatch", &database, &prefix);
        platform.clock = clock;
        let programs = concat!(env!("CARGO_MANIFEST_DIR"), "/../../programs");
        let mut config = touchpoint_dispatch::Config::new(platform, programs);
        config.sender.poll = Duration::from_millis(50);
        adjust(&mut config);
        let shutdown = Shutdown::new();
        let addr = touchpoint_dispatch::start(config, &shutdown)
            .await
            .unwrap_or_else(|e| panic!("dispatch did not start: {e}"));
        let client = DispatchServiceClient::new(testkit::channel(addr).await);
        Self {
            _database: database,
            prefix,
            client,
            shutdown,
        }
    }

    pub fn topic(&self, stream: Stream) -> String {
        Topics::new(self.prefix.clone()).name(stream)
    }

    /// Publishes `events` to their topics as the other services would.
    pub async fn publish(&self, events: &[(Stream, Envelope)]) {
        testkit::publish(&self.prefix, events).await;
    }

    /// A reader of `touchpoint.attempt.v1` from its start.
    pub fn outcomes(&self) -> Outcomes {
        Outcomes::start(&self.prefix, &self.topic(Stream::Attempt))
    }

    /// Its database's URL.
    pub fn database_url(&self) -> &str {
        &self._database.url
    }

    /// [`World::open_case`], and waits until dispatch has applied it all.
    pub async fn open_known_case(&self, case_id: &str, consented: &[Channel]) {
        self.open_case(case_id, consented).await;
        let what = format!("dispatch knows {case_id}");
        until_dispatch(self.database_url(), &what, CASE_KNOWN, &[case_id]).await;
    }

    /// An active case in the adherence program, in New York, with consent on
    /// `consented` and a coordinator.
    pub async fn open_case(&self, case_id: &str, consented: &[Channel]) {
        let mut events = vec![(Stream::Case, case_opened(case_id))];
        for channel in consented {
            events.push((Stream::Case, consent(case_id, *channel)));
        }
        events.push((
            Stream::Case,
            event(
                case_id,
                Payload::CoordinatorAssigned(CoordinatorAssigned {
                    coordinator_id: "coordinator-7".into(),
                    navigator_id: String::new(),
                }),
            ),
        ));
        self.publish(&events).await;
    }
}

/// Waits until dispatch's database (at `database_url`) answers `sql`, bound
/// to `args`, with true: what dispatch has applied of the topics, for a test
/// that must not act before it.
pub async fn until_dispatch(database_url: &str, what: &str, sql: &str, args: &[&str]) {
    let pool = sqlx::PgPool::connect(database_url)
        .await
        .unwrap_or_else(|e| panic!("the test database: {e}"));
    testkit::eventually(what, WAIT, || async {
        let mut query = sqlx::query_scalar::<_, bool>(sql);
        for arg in args {
            query = query.bind(*arg);
        }
        query
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten()
            .filter(|b| *b)
    })
    .await;
}

/// SQL that is true once `open_case`'s last event (the coordinator) is
/// applied to case `$1`, so its consents are too.
pub const CASE_KNOWN: &str =
    "SELECT coordinator_id = 'coordinator-7' FROM dispatch.case_views WHERE case_id = $1";

/// The `dlq-reason` of the first `count` records dead-lettered from `stream`.
pub async fn dead_letter_reasons(world: &World, stream: Stream, count: usize) -> Vec<String> {
    testkit::dead_letter_reasons(&world.prefix, stream, count, WAIT).await
}

/// Ana's case in the adherence program (no contact points: each request
/// names its destination).
pub fn case_opened(case_id: &str) -> Envelope {
    NewCase::default().event(case_id)
}

/// An OutreachRequested for the welcome step on `channel`, due now, to be
/// handed over by the window's close.
pub fn requested(case_id: &str, channel: Channel) -> Envelope {
    let destination = match channel {
        Channel::Email => contact_point::Value::Email("ana@example.com".into()),
        Channel::Fax => contact_point::Value::FaxE164("+12125550111".into()),
        Channel::Mail => contact_point::Value::PostalAddress(home()),
        _ => contact_point::Value::PhoneE164("+12125550142".into()),
    };
    event(
        case_id,
        Payload::OutreachRequested(OutreachRequested {
            attempt_id: uuid::Uuid::now_v7().to_string(),
            program_id: "adherence".into(),
            step_id: "welcome".into(),
            channel: channel as i32,
            template_id: "welcome".into(),
            language: Language::Es as i32,
            destination: Some(ContactPoint {
                value: Some(destination),
            }),
            due_at: Some(timestamp(utc(NOW) - TimeDelta::minutes(1))),
            not_after: Some(timestamp(utc(CLOSES))),
            attempt_number: 1,
            ..OutreachRequested::default()
        }),
    )
}

/// The patient's home in New York: where her letters go.
pub fn home() -> touchpoint_proto::v1::PostalAddress {
    touchpoint_proto::v1::PostalAddress {
        line1: "350 Fifth Avenue".into(),
        line2: "Apt 4B".into(),
        city: "New York".into(),
        region: "NY".into(),
        postal_code: "10118".into(),
        country: "US".into(),
    }
}

/// The attempt id of a request.
pub fn attempt_id(request: &Envelope) -> String {
    match &request.payload {
        Some(Payload::OutreachRequested(r)) => r.attempt_id.clone(),
        _ => panic!("not a request"),
    }
}

/// Everything dispatch published to `touchpoint.attempt.v1`, in arrival order.
#[derive(Clone)]
pub struct Outcomes {
    reader: testkit::TopicReader,
}

impl Outcomes {
    /// Reads `topic` (under `prefix`) from its start.
    pub fn start(prefix: &str, topic: &str) -> Self {
        Self {
            reader: testkit::TopicReader::start(prefix, topic),
        }
    }

    /// The outcome events of `attempt_id` so far.
    pub fn of(&self, attempt_id: &str) -> Vec<Envelope> {
        self.reader
            .all()
            .into_iter()
            .filter(|e| outcome_attempt(e) == Some(attempt_id))
            .collect()
    }

    /// Waits for the first outcome of `attempt_id` that `pick` takes.
    pub async fn wait_for<T>(&self, attempt_id: &str, pick: impl Fn(Payload) -> Option<T>) -> T {
        testkit::eventually(&format!("an outcome of {attempt_id}"), WAIT, || async {
            self.of(attempt_id)
                .into_iter()
                .find_map(|e| e.payload.and_then(&pick))
        })
        .await
    }

    /// Waits for the first outcome of `attempt_id`.
    pub async fn first(&self, attempt_id: &str) -> Envelope {
        testkit::eventually(&format!("an outcome of {attempt_id}"), WAIT, || async {
            self.of(attempt_id).into_iter().next()
        })
        .await
    }
}

fn outcome_attempt(envelope: &Envelope) -> Option<&str> {
    match envelope.payload.as_ref()? {
        Payload::AttemptSent(p) => Some(&p.attempt_id),
        Payload::AttemptFailed(p) => Some(&p.attempt_id),
        Payload::AttemptSuppressed(p) => Some(&p.attempt_id),
        Payload::CallTaskRequested(p) => Some(&p.attempt_id),
        Payload::AttemptDelivered(p) => Some(&p.attempt_id),
        Payload::AttemptInTransit(p) => Some(&p.attempt_id),
        _ => None,
    }
}

/// A Twilio-speaking SMS provider setting for `sandbox`, named `name`.
pub fn sms_provider(
    name: &str,
    sandbox: &touchpoint_sandbox::Sandbox,
) -> touchpoint_dispatch::SmsProvider {
    touchpoint_dispatch::SmsProvider {
        name: name.into(),
        base_url: sandbox.url(),
        account_sid: ACCOUNT_SID.into(),
        auth_token: AUTH_TOKEN.into(),
        from: "+15005550006".into(),
        rate: None,
    }
}

pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const AUTH_TOKEN: &str = "sandbox-auth-token";

/// What poppler reads in a PDF (a fax's, a letter's): its text and its page
/// count. Poppler is installed by `deploy/setup.sh`.
pub fn read_pdf(pdf: &[u8]) -> (String, u32) {
    let dir = std::env::temp_dir().join(format!("touchpoint-pdf-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let file = dir.join("document.pdf");
    std::fs::write(&file, pdf).unwrap_or_else(|e| panic!("{e}"));
    let run = |program: &str, args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program} (installed by deploy/setup.sh): {e}"));
        assert!(out.status.success(), "{program} could not read the PDF");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = run("pdftotext", &[file.as_os_str(), "-".as_ref()]);
    let info = run("pdfinfo", &[file.as_os_str()]);
    let _ = std::fs::remove_dir_all(&dir);
    let pages = info
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("pdfinfo gave no page count"));
    (text, pages)
}
