//! Faults: a cadence run for 1,000 patients across the four service processes
//! and a Tansu broker, while an injector, at moments drawn from a seeded RNG,
//! kills services with SIGKILL and starts them again, kills the broker with
//! SIGKILL and starts it again on its sqlite file, cuts the services off the
//! broker (every connection closed, new ones refused for one to three seconds),
//! and terminates the services' PostgreSQL connections.
//!
//! Once the run settles, the promises are checked from what the SMS provider
//! took and from the case timelines:
//!
//! 1. no attempt reached a handset twice;
//! 2. every due touchpoint was requested, and every one a patient consented to
//!    was sent;
//! 3. nothing went to a number without SMS consent, and nothing but the one
//!    confirmation after STOP;
//! 4. every attempt the provider took is on its case's timeline, sent after it
//!    was requested (by the events' times). How many `AttemptSent` entries were
//!    recorded ahead of their request is printed: the timeline consumer reads
//!    the outreach and attempt topics side by side, and under load it can apply
//!    an attempt before the request it answers.
//!
//! The CI form injects 20 faults. The long form, documented in docs/testing.md:
//! `TOUCHPOINT_FAULTS=200 cargo nextest run -p touchpoint-tests --test faults
//! --no-capture`; `TOUCHPOINT_FAULT_SEED` picks another sequence.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::Connection as _;
use tokio::process::Command;
use touchpoint_cli::cases::{OpenArgs, client, open_with};
use touchpoint_cli::stack::{self, Services, Stack};
use touchpoint_platform::clock::ClockConfig;
use touchpoint_platform::envelope::instant;
use touchpoint_platform::testkit::{self, TestDatabase, eventually, utc};
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{Channel, GetTimelineRequest, Language, TimelineEntry};
use touchpoint_sandbox::{InboundText, Received, Sandbox, post_inbound_text};
use touchpoint_tests::outage::Proxy;
use touchpoint_tests::system::{self, local_addr};

const PATIENTS: usize = 1_000;
/// Every twentieth patient texts STOP before the first step; the next one
/// never consented to SMS.
const STOPS_EVERY: usize = 20;
const STEPS: usize = 4;
/// Hours from enrolment to the first step: time, on the run's fast clock, to
/// open the cases and take the STOPs before anything falls due.
const FIRST_STEP_AFTER: i64 = 3;
const INBOUND_TOKEN: &str = "fault-inbound-token";
/// 10:00 in New York on a Monday; the steps fall due at 13:00 to 16:00.
const START: &str = "2027-01-04T15:00:00Z";
/// How long after the first step the injector keeps going, per fault, in real
/// time: the clock is set so the four steps fall due while faults happen.
const PER_FAULT: Duration = Duration::from_millis(3_500);
const SETTLE: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_promises_hold_while_services_and_the_broker_crash_and_connections_drop() {
    let faults = env_number("TOUCHPOINT_FAULTS", 20);
    let seed = env_number("TOUCHPOINT_FAULT_SEED", 20_261_123) as u64;
    let mut rng = SplitMix(seed);
    println!("faults: {faults} faults, seed {seed}");

    let work = std::env::temp_dir().join(format!("tp-faults-{}", std::process::id()));
    let programs = write_program(&work);
    let log_dir = work.join("logs");
    std::fs::create_dir_all(&log_dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(work.join("broker")).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "faults: logs in {} (removed when the run passes)",
        log_dir.display()
    );
    let database = TestDatabase::fresh().await;
    let sms = Arc::new(
        Sandbox::start(system::SMS_ACCOUNT, system::SMS_AUTH_TOKEN)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    );

    // The broker, reached through the proxy, which it advertises.
    let listener = local_addr();
    let proxy = Proxy::start(&listener)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let broker = Broker {
        listener,
        advertised: proxy.addr().to_owned(),
        dir: work.clone(),
        log: log_dir.join("broker.log"),
    };
    let mut processes = Stack::default();
    processes
        .spawn("broker", broker.command(), &broker.log)
        .unwrap_or_else(|e| panic!("{e:#}"));
    stack::wait_for_port(&broker.listener)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));

    let mut services = system::services(
        &database,
        &testkit::unique_prefix(),
        &programs,
        sms.url(),
        &log_dir,
    );
    for (key, value) in &mut services.common {
        if key == "KAFKA_BROKERS" {
            value.clone_from(&broker.advertised);
        }
    }
    services.common.extend(
        [
            ("RUST_LOG", "info".to_owned()),
            ("TOUCHPOINT_OUTBOX_POLL_MS", "50".into()),
            // Static membership, as `touchpoint up` and k8s run them: a
            // restarted service takes its old place in its consumer groups.
            ("TOUCHPOINT_CONSUMER_INSTANCE_ID", "replica-0".into()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let routing_http = local_addr();
    services.own.extend(
        [
            ("TOUCHPOINT_HTTP_ADDR", routing_http.clone()),
            (
                "TOUCHPOINT_INBOUND_SMS_AUTH_TOKEN",
                INBOUND_TOKEN.to_owned(),
            ),
        ]
        .map(|(k, v)| ("routing", k.to_owned(), v)),
    );
    // From enrolment to the last step takes as long as the faults do: they
    // start once the STOPs are in and go on while the four steps fall due.
    let fault_period = PER_FAULT * faults as u32;
    let span_hours = (FIRST_STEP_AFTER + STEPS as i64 - 1) as f64;
    let speed = (span_hours * 3600.0 / fault_period.as_secs_f64()).max(1.0);
    let clock = ClockConfig::Accelerated {
        start: utc(START),
        epoch: Utc::now(),
        speed,
    };
    services.clock = Some(clock.clone());
    let clock = clock.build();
    processes
        .start_services(&services)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));

    // Enrol, then the STOPs: all before the first step is due.
    let enrolled_at = clock.now();
    let cases = enrol(&services, enrolled_at).await;
    let db = sqlx::PgPool::connect(&database.url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("routing knows every patient", SETTLE, || {
        let db = db.clone();
        async move {
            let known: i64 = sqlx::query_scalar("SELECT count(*) FROM routing.case_views")
                .fetch_one(&db)
                .await
                .ok()?;
            (known as usize >= PATIENTS).then_some(())
        }
    })
    .await;
    db.close().await;
    let stoppers: Vec<usize> = (0..PATIENTS).filter(|i| texts_stop(*i)).collect();
    for (n, i) in stoppers.iter().enumerate() {
        let text = InboundText {
            from: &mobile(*i),
            to: system::SMS_FROM,
            body: "STOP",
            sid: &format!("SMstop{n}"),
        };
        let url = format!("http://{routing_http}/inbound/sms");
        let status = post_inbound_text(&url, INBOUND_TOKEN, &text).await;
        assert_eq!(status, Some(200), "STOP {n} was taken");
    }
    let wanted = stoppers.len();
    eventually("every STOP confirmed", SETTLE, || {
        let confirmed = sms.received().len();
        async move { (confirmed >= wanted).then_some(()) }
    })
    .await;
    let first_due = enrolled_at + TimeDelta::hours(FIRST_STEP_AFTER);
    assert!(
        clock.now() < first_due,
        "enrolment and the STOPs took past the first step (speed {speed:.0})"
    );

    // Faults, from now until after the last step has fallen due.
    let injected = inject(
        faults,
        &mut rng,
        &mut processes,
        &services,
        &broker,
        &proxy,
        &database.url,
    )
    .await;
    println!("faults: injected {injected:?}");
    assert_eq!(injected.values().sum::<usize>(), faults);

    // Settle: every step due, and every text for the patients who can get one.
    let expected = (0..PATIENTS).filter(|i| reachable(*i)).count() * STEPS;
    let last_due = enrolled_at + TimeDelta::hours(FIRST_STEP_AFTER + STEPS as i64 - 1);
    let settled = tokio::time::Instant::now() + SETTLE;
    while (program_texts(&sms.received()) < expected || clock.now() < last_due)
        && tokio::time::Instant::now() < settled
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Quiet: a duplicate still in flight would arrive before the provider has
    // taken nothing new for three seconds.
    let mut last = (sms.received().len(), tokio::time::Instant::now());
    while last.1.elapsed() < Duration::from_secs(3) && tokio::time::Instant::now() < settled {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = sms.received().len();
        if now != last.0 {
            last = (now, tokio::time::Instant::now());
        }
    }
    let received = sms.received();
    // The timelines catch up: a request for each step of each reachable patient
    // and each confirmation, an AttemptSent for each text taken.
    let requests = expected + stoppers_count();
    let db = sqlx::PgPool::connect(&database.url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let caught_up = tokio::time::Instant::now() + SETTLE;
    let mut on_timelines = (0, 0);
    while (on_timelines.0 < requests || on_timelines.1 < received.len())
        && tokio::time::Instant::now() < caught_up
    {
        on_timelines = sqlx::query_as::<_, (i64, i64)>(
            "SELECT count(*) FILTER (WHERE kind = 'touchpoint.v1.OutreachRequested'),
                    count(*) FILTER (WHERE kind = 'touchpoint.v1.AttemptSent')
               FROM cases.timeline",
        )
        .fetch_one(&db)
        .await
        .map(|(r, s)| (r as usize, s as usize))
        .unwrap_or(on_timelines);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    db.close().await;
    let timelines = timelines(&services, &cases).await;
    let unclean = processes.stop().await;
    let report = Report::of(&received, &cases, &timelines);
    println!(
        "faults: {} faults injected; {} attempts sent; {} duplicates; {} lost; \
         {} unrequested; {} without consent or after STOP; {} not on their timeline in order; \
         {} requests repeated; {} timeline entries out of event order",
        faults,
        report.attempts,
        report.duplicates,
        report.lost,
        report.unrequested,
        report.unconsented,
        report.off_timeline,
        report.repeated_requests,
        report.out_of_order
    );
    assert_eq!(report.duplicates, 0, "promise 1: {report:#?}");
    assert_eq!(report.unrequested, 0, "promise 2: {report:#?}");
    assert_eq!(report.lost, 0, "promise 2: {report:#?}");
    assert_eq!(report.unconsented, 0, "promise 3: {report:#?}");
    assert_eq!(report.off_timeline, 0, "promise 4: {report:#?}");
    assert_eq!(report.out_of_order, 0, "promise 4, as read: {report:#?}");
    assert_eq!(report.attempts, expected + stoppers_count());
    assert!(unclean.is_empty(), "did not stop cleanly: {unclean:?}");
    let _ = std::fs::remove_dir_all(&work);
}

/// What the run's records show.
#[derive(Debug, Default)]
struct Report {
    /// Texts the provider took.
    attempts: usize,
    /// Texts beyond the first for one step of one patient.
    duplicates: usize,
    /// Steps of consenting patients that never reached the provider.
    lost: usize,
    /// Steps of consenting patients with no `OutreachRequested` on the case
    /// timeline.
    unrequested: usize,
    /// Texts to a number without consent, or after STOP (other than the one
    /// confirmation).
    unconsented: usize,
    /// Texts whose attempt has no `AttemptSent` on its timeline, or one whose
    /// event time is before its request's.
    off_timeline: usize,
    /// `AttemptSent` entries that `GetTimeline` lists before their request. The
    /// timeline consumer reads the outreach and attempt topics side by side, and
    /// under load one runs ahead of the other, so an attempt may be recorded
    /// first; the timeline is read in the order things happened.
    out_of_order: usize,
    /// `OutreachRequested` entries beyond the first for one attempt (a request
    /// published again under a new event id; dispatch sends an attempt once).
    repeated_requests: usize,
    /// A few examples, by case index.
    examples: Vec<String>,
}

impl Report {
    fn of(received: &[Received], cases: &[String], timelines: &[Vec<TimelineEntry>]) -> Self {
        let mut report = Report {
            attempts: received.len(),
            ..Report::default()
        };
        let by_number: HashMap<String, usize> = (0..PATIENTS).map(|i| (mobile(i), i)).collect();
        let mut per_step: HashMap<(usize, String), usize> = HashMap::new();
        for text in received {
            let Some(i) = by_number.get(&text.to).copied() else {
                report.unconsented += 1;
                continue;
            };
            let step = step_of(&text.body);
            *per_step.entry((i, step.clone())).or_default() += 1;
            let allowed = match step.as_str() {
                "stop-confirmation" => texts_stop(i),
                _ => reachable(i),
            };
            if !allowed {
                report.unconsented += 1;
                report.examples.push(format!("patient {i} got {step}"));
            }
        }
        // A resent attempt and a step requested twice both show as a second
        // text of one step to one patient.
        report.duplicates = per_step.values().map(|n| n - 1).sum::<usize>();
        for i in (0..PATIENTS).filter(|i| reachable(*i)) {
            for step in 1..=STEPS {
                if !per_step.contains_key(&(i, format!("step-{step}"))) {
                    report.lost += 1;
                    report
                        .examples
                        .push(format!("patient {i} missed step-{step}"));
                }
            }
        }
        // Each case's timeline: every step requested; every attempt the
        // provider took sent after its request.
        let sent_attempts: HashSet<&str> = received.iter().map(attempt_of).collect();
        for (i, entries) in timelines.iter().enumerate() {
            // (position, event time, payload) of each entry.
            let events: Vec<(usize, Option<DateTime<Utc>>, Payload)> = entries
                .iter()
                .enumerate()
                .filter_map(|(at, e)| {
                    let event = e.event.as_ref()?;
                    let when = event.occurred_at.as_ref().and_then(instant);
                    Some((at, when, event.payload.clone()?))
                })
                .collect();
            let mut requested: HashMap<&str, (usize, Option<DateTime<Utc>>)> = HashMap::new();
            let mut steps = HashSet::new();
            for (at, when, payload) in &events {
                if let Payload::OutreachRequested(r) = payload {
                    requested.insert(r.attempt_id.as_str(), (*at, *when));
                    steps.insert(r.step_id.clone());
                }
            }
            // A patient without consent, or after STOP, has nothing requested:
            // cadence holds such a step as blocked.
            let missing = (1..=STEPS)
                .filter(|s| reachable(i) && !steps.contains(&format!("step-{s}")))
                .count();
            if missing > 0 {
                report.unrequested += missing;
                report
                    .examples
                    .push(format!("case {} ({i}) lacks {missing} requests", cases[i]));
            }
            // Sent after it was requested, in event time, and listed after it.
            let mut in_order = HashSet::new();
            for (at, when, payload) in &events {
                let Payload::AttemptSent(sent) = payload else {
                    continue;
                };
                let Some((request_at, requested_when)) = requested.get(sent.attempt_id.as_str())
                else {
                    continue;
                };
                if matches!((when, requested_when), (Some(w), Some(r)) if w >= r) {
                    in_order.insert(sent.attempt_id.as_str());
                }
                if at < request_at {
                    report.out_of_order += 1;
                }
            }
            let off = requested
                .keys()
                .filter(|a| sent_attempts.contains(*a) && !in_order.contains(*a))
                .count();
            report.off_timeline += off;
            if off > 0 {
                report
                    .examples
                    .push(format!("case {i}: {off} attempts off its timeline"));
            }
        }
        let requests: Vec<&str> = timelines
            .iter()
            .flatten()
            .filter_map(|e| match e.event.as_ref()?.payload.as_ref()? {
                Payload::OutreachRequested(r) => Some(r.attempt_id.as_str()),
                _ => None,
            })
            .collect();
        let on_some_timeline: HashSet<&str> = requests.iter().copied().collect();
        report.repeated_requests = requests.len() - on_some_timeline.len();
        // A text whose request is on no timeline at all.
        report.off_timeline += sent_attempts
            .iter()
            .filter(|a| !on_some_timeline.contains(**a))
            .count();
        report.examples.truncate(20);
        report
    }
}

/// Injects `faults` faults, one every 1 to 4 seconds, each kind in turn in an
/// order the RNG shuffles; returns how many of each.
async fn inject(
    faults: usize,
    rng: &mut SplitMix,
    processes: &mut Stack,
    services: &Services,
    broker: &Broker,
    proxy: &Proxy,
    database_url: &str,
) -> BTreeMap<&'static str, usize> {
    const KINDS: [&str; 7] = [
        "kill cases",
        "kill cadence",
        "kill dispatch",
        "kill routing",
        "restart the broker",
        "cut off the broker",
        "drop database connections",
    ];
    let mut injected = BTreeMap::new();
    let mut deck: Vec<&str> = Vec::new();
    let mut admin = sqlx::PgConnection::connect(database_url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for n in 0..faults {
        if deck.is_empty() {
            deck = KINDS.to_vec();
            rng.shuffle(&mut deck);
        }
        let kind = deck.pop().unwrap_or(KINDS[0]);
        tokio::time::sleep(Duration::from_millis(1_000 + rng.below(3_000))).await;
        match kind.strip_prefix("kill ") {
            Some(service) => {
                assert!(processes.kill(service).await, "{service} was not running");
                // Down for up to a second, as a supervisor's restart takes.
                tokio::time::sleep(Duration::from_millis(rng.below(1_000))).await;
                processes
                    .restart_service(services, service)
                    .await
                    .unwrap_or_else(|e| panic!("fault {n}: {e:#}"));
            }
            None if kind == "restart the broker" => {
                assert!(processes.kill("broker").await, "the broker was not running");
                tokio::time::sleep(Duration::from_millis(rng.below(1_000))).await;
                processes
                    .respawn("broker", broker.command(), &broker.log)
                    .unwrap_or_else(|e| panic!("fault {n}: {e:#}"));
                stack::wait_for_port(&broker.listener)
                    .await
                    .unwrap_or_else(|e| panic!("fault {n}: {e:#}"));
            }
            None if kind == "cut off the broker" => {
                proxy.cut();
                tokio::time::sleep(Duration::from_millis(1_000 + rng.below(2_000))).await;
                proxy.restore();
            }
            None => {
                sqlx::query(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                      WHERE datname = current_database() AND pid <> pg_backend_pid()",
                )
                .execute(&mut admin)
                .await
                .unwrap_or_else(|e| panic!("fault {n}: {e}"));
            }
        }
        *injected.entry(kind).or_default() += 1;
    }
    injected
}

/// Opens the patients' cases; returns their ids, by patient index.
async fn enrol(services: &Services, enrolled_at: DateTime<Utc>) -> Vec<String> {
    let peer = services.peer("cases").unwrap_or_else(|e| panic!("{e:#}"));
    let mut clients = tokio::task::JoinSet::new();
    const OPENERS: usize = 16;
    for first in 0..OPENERS {
        let peer = peer.clone();
        clients.spawn(async move {
            let mut cases = client(&peer).await.unwrap_or_else(|e| panic!("{e:#}"));
            let mut opened = Vec::new();
            for i in (first..PATIENTS).step_by(OPENERS) {
                let consents = if never_consented(i) {
                    Vec::new()
                } else {
                    vec![Channel::Sms]
                };
                let patient = OpenArgs {
                    program: "faults".into(),
                    language: Language::En,
                    time_zone: "America/New_York".into(),
                    given: "Fault".into(),
                    family: format!("Patient{i}"),
                    mobile: mobile(i),
                    email: String::new(),
                    consents,
                    coordinator: String::new(),
                    navigator: String::new(),
                    request_id: Some(format!("faults-{i}")),
                };
                let (case_id, _) = open_with(&mut cases, &patient, enrolled_at, "fault-suite")
                    .await
                    .unwrap_or_else(|e| panic!("patient {i}: {e:#}"));
                opened.push((i, case_id));
            }
            opened
        });
    }
    let mut cases = vec![String::new(); PATIENTS];
    while let Some(opened) = clients.join_next().await {
        for (i, case_id) in opened.unwrap_or_else(|e| panic!("{e}")) {
            cases[i] = case_id;
        }
    }
    cases
}

/// Every case's whole timeline, in order.
async fn timelines(services: &Services, cases: &[String]) -> Vec<Vec<TimelineEntry>> {
    let peer = services.peer("cases").unwrap_or_else(|e| panic!("{e:#}"));
    let mut client = client(&peer).await.unwrap_or_else(|e| panic!("{e:#}"));
    let mut all = Vec::with_capacity(cases.len());
    for case_id in cases {
        let mut entries = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = client
                .get_timeline(GetTimelineRequest {
                    case_id: case_id.clone(),
                    kinds: Vec::new(),
                    page_size: 1_000,
                    page_token,
                })
                .await
                .unwrap_or_else(|status| panic!("GetTimeline: {}", status.message()))
                .into_inner();
            entries.extend(page.entries);
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        all.push(entries);
    }
    all
}

/// Whether patient `i` is to get the program's texts: consented, never STOPped.
fn reachable(i: usize) -> bool {
    !texts_stop(i) && !never_consented(i)
}

/// Whether patient `i` texts STOP before the first step.
fn texts_stop(i: usize) -> bool {
    i.is_multiple_of(STOPS_EVERY)
}

/// Whether patient `i` never consented to SMS.
fn never_consented(i: usize) -> bool {
    i % STOPS_EVERY == 1
}

fn stoppers_count() -> usize {
    (0..PATIENTS).filter(|i| texts_stop(*i)).count()
}

/// How many program texts (not confirmations) the provider took.
fn program_texts(received: &[Received]) -> usize {
    received
        .iter()
        .filter(|t| step_of(&t.body).starts_with("step-"))
        .count()
}

/// Which step a text is, from its template's wording.
fn step_of(body: &str) -> String {
    if let Some(rest) = body.strip_prefix("Check-in ") {
        return format!("step-{}", rest.chars().next().unwrap_or('?'));
    }
    if body.contains("no more texts") {
        return "stop-confirmation".into();
    }
    "other".into()
}

/// The attempt a text was for: the last segment of its status callback URL.
fn attempt_of(text: &Received) -> &str {
    text.status_callback
        .as_deref()
        .and_then(|url| url.rsplit('/').next())
        .unwrap_or("")
}

fn mobile(i: usize) -> String {
    format!("+1312555{i:04}")
}

/// The run's Tansu: its records in a sqlite file under `dir`, so that a
/// restart keeps them.
struct Broker {
    listener: String,
    /// The proxy's address, which the broker tells clients to reach it at.
    advertised: String,
    dir: PathBuf,
    log: PathBuf,
}

impl Broker {
    fn command(&self) -> Command {
        // Tansu takes a sqlite path relative to its working directory.
        let mut command = Command::new(touchpoint_platform::tansu::binary());
        command
            .current_dir(&self.dir)
            .arg("broker")
            .arg("--storage-engine")
            .arg("sqlite://broker/tansu.db")
            .arg("--listener-url")
            .arg(format!("tcp://{}", self.listener))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://{}", self.advertised))
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("STORAGE_ENGINE")
            // The group coordinator's joins, leaders and lapsed members, for a
            // run that fails.
            .env("RUST_LOG", "error,tansu_broker::coordinator::group=info");
        command
    }
}

fn write_program(work: &Path) -> PathBuf {
    let root = work.join("programs");
    let templates = root.join("faults").join("templates");
    std::fs::create_dir_all(&templates).unwrap_or_else(|e| panic!("{e}"));
    // A text an hour, from FIRST_STEP_AFTER hours after enrolment.
    let steps: Vec<(String, String, String)> = (1..=STEPS)
        .map(|n| {
            let hours = FIRST_STEP_AFTER + n as i64 - 1;
            (
                format!("step-{n}"),
                format!("{hours}h"),
                format!("step-{n}"),
            )
        })
        .collect();
    let program = system::sms_program("faults", 6, &steps);
    std::fs::write(root.join("faults").join("program.toml"), program)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut files = vec![
        (
            "keyword-stop.en.txt".to_owned(),
            "{{ program_name }}: you will get no more texts from us. Reply START to resume."
                .to_owned(),
        ),
        (
            "keyword-start.en.txt".into(),
            "{{ program_name }}: texts resume.".into(),
        ),
        (
            "keyword-help.en.txt".into(),
            "{{ program_name }}: call us for help.".into(),
        ),
    ];
    for step in 1..=STEPS {
        files.push((
            format!("step-{step}.en.txt"),
            format!("Check-in {step} of {STEPS} from your care team."),
        ));
        files.push((
            format!("step-{step}.caregiver.en.txt"),
            "{{ program_name }}: a check-in for someone in your care.".into(),
        ));
    }
    for (name, text) in files {
        std::fs::write(templates.join(name), text).unwrap_or_else(|e| panic!("{e}"));
    }
    root
}

fn env_number(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small seeded generator (SplitMix64): the same seed, the same faults.
#[derive(Debug)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}
