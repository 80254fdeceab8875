//! Due touchpoints become outreach requests exactly once: with two replicas
//! sharing the work, and across a `kill -9` of the service.

use std::process::{Child, Command, Stdio};

use crate::support::*;
use touchpoint_platform::envelope::instant;
use touchpoint_platform::testkit;
use touchpoint_platform::topics::{self, Stream};
use touchpoint_proto::v1::Channel;
use touchpoint_proto::v1::contact_point::Value;

const ATTEMPTS: u32 = 3;

/// Enrols cases `range` in the burst program at the simulated start, with SMS consent.
async fn enrol(world: &World, range: std::ops::Range<usize>) -> Vec<String> {
    let case_ids: Vec<String> = range.map(|i| format!("case-{i:04}")).collect();
    let mut events = Vec::new();
    for case_id in &case_ids {
        events.push((Stream::Case, case_opened(case_id, "burst", utc(SIM_START))));
        events.push((Stream::Case, consent(case_id, Channel::Sms)));
    }
    world.publish(&events).await;
    case_ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_running_together_never_emit_the_same_attempt() {
    // An hour of simulated time per real second: the three attempts of each case
    // fall due over four simulated hours.
    let world = World::accelerated(3600.0).await;
    let programs = programs_dir("burst", &burst_program(ATTEMPTS), &["hello"]);
    let outreach = world.outreach();
    // Small batches so both replicas' due loops keep claiming side by side.
    let first = world.cadence(programs.path(), 20).await;
    let second = world.cadence(programs.path(), 20).await;
    let cases = enrol(&world, 0..200).await;

    let expected = cases.len() * ATTEMPTS as usize;
    let attempts = outreach.wait_for(expected).await;
    assert_each_attempt_once(&attempts);
    assert_eq!(attempts.len(), expected);
    // Requested in batches, yet each attempt is a trace of its own, which dispatch
    // and the case timeline continue.
    let traces: std::collections::BTreeSet<String> = attempts
        .values()
        .map(|r| {
            let traceparent = r.traceparent.clone().unwrap_or_default();
            traceparent.split('-').nth(1).unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(
        traces.len(),
        expected,
        "attempts share a trace or carry none"
    );
    for r in attempts.values() {
        assert_eq!(r.request.step_id, "hello");
        assert_eq!(r.request.channel(), Channel::Sms);
        let due_at = r.request.due_at.as_ref().and_then(instant);
        assert!(
            due_at.is_some_and(|due| r.requested_at >= due),
            "requested before due"
        );
        assert_eq!(
            r.request.destination.as_ref().and_then(|d| d.value.clone()),
            Some(Value::PhoneE164("+12125550142".into()))
        );
    }
    drop((first, second));
}

/// A service process, killed (SIGKILL) when dropped, so a failing test leaves
/// nothing running.
struct Process(Child);

impl Process {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The service binary on the world's database, broker and clock.
fn spawn_cadence(world: &World, programs: &std::path::Path) -> Process {
    let touchpoint_platform::clock::ClockConfig::Accelerated {
        start,
        epoch,
        speed,
    } = world.clock
    else {
        panic!("the process test runs on an accelerated clock");
    };
    Command::new(env!("CARGO_BIN_EXE_touchpoint-cadence"))
        .env("DATABASE_URL", &world.database.url)
        .env("KAFKA_BROKERS", testkit::broker())
        .env("TOUCHPOINT_TOPIC_PREFIX", &world.prefix)
        .env(
            "TOUCHPOINT_GRPC_ADDR",
            format!("127.0.0.1:{}", testkit::free_port()),
        )
        .env("TOUCHPOINT_PROGRAMS_DIR", programs)
        .env("TOUCHPOINT_CLOCK", "accelerated")
        .env("TOUCHPOINT_CLOCK_START", start.to_rfc3339())
        .env("TOUCHPOINT_CLOCK_EPOCH", epoch.to_rfc3339())
        .env("TOUCHPOINT_CLOCK_SPEED", speed.to_string())
        // The restarted process is the same replica: it takes its old place in
        // the consumer group.
        .env("TOUCHPOINT_CONSUMER_INSTANCE_ID", "cadence-0")
        .env("TOUCHPOINT_DUE_BATCH", "25")
        .env("TOUCHPOINT_DUE_POLL_MS", "50")
        .env("TOUCHPOINT_OUTBOX_POLL_MS", "50")
        .env("RUST_LOG", "warn")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdin(Stdio::null())
        // Logs go where the test's output goes: nextest shows them on a failure.
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .map(Process)
        .unwrap_or_else(|e| panic!("cannot start the cadence binary: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_service_killed_mid_run_and_restarted_loses_no_due_touchpoint_and_repeats_none() {
    // Half an hour of simulated time per real second: the attempts keep falling
    // due while the service is down.
    let world = World::accelerated(1800.0).await;
    let programs = programs_dir("burst", &burst_program(ATTEMPTS), &["hello"]);
    let outreach = world.outreach();
    topics::bootstrap(&testkit::kafka_config(&world.prefix))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut service = spawn_cadence(&world, programs.path());
    let first_half = enrol(&world, 0..150).await;

    // Kill it without warning in the middle of the first burst (each case's first
    // attempt falls due at once), while rounds are claiming and the relay has rows
    // it has not marked sent.
    outreach.wait_for(first_half.len() / 3).await;
    service.kill();
    let before_restart = outreach.attempts().len();
    // The other half is enrolled while the service is down: the restarted one must
    // consume it, and catch up with everything that fell due meanwhile.
    let second_half = enrol(&world, 150..300).await;
    let expected = (first_half.len() + second_half.len()) * ATTEMPTS as usize;
    assert!(
        before_restart < expected,
        "everything went out before the kill"
    );

    let mut restarted = spawn_cadence(&world, programs.path());
    let attempts = outreach.wait_for(expected).await;
    let wire_records = outreach.all().len();
    restarted.kill();

    assert_each_attempt_once(&attempts);
    assert_eq!(
        attempts.len(),
        expected,
        "every due touchpoint was requested"
    );
    println!(
        "killed after {before_restart} of {expected} attempts; {wire_records} records on the wire \
         for {expected} attempts (the relay republishes what it had not marked sent)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_enrolment_is_set_aside_and_the_others_still_go_out() {
    let world = World::accelerated(3600.0).await;
    let programs = programs_dir("burst", &burst_program(1), &["hello"]);
    let outreach = world.outreach();
    let _replica = world.cadence(programs.path(), 20).await;
    // A row no release of the service could have written, due now.
    let pool = sqlx::PgPool::connect(&world.database.url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query(
        "INSERT INTO cadence.enrolments (case_id, program_id, state, wake_at)
         VALUES ('case-broken', 'burst', '{\"runs\": 42}', '2026-04-05T00:00:00Z')",
    )
    .execute(&pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let cases = enrol(&world, 0..30).await;

    let attempts = outreach.wait_for(cases.len()).await;
    assert_eq!(attempts.len(), cases.len());
    assert!(attempts.values().all(|r| r.case_id != "case-broken"));
    let parked: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT wake_at FROM cadence.enrolments WHERE case_id = 'case-broken'")
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(parked, None, "its timer is stopped");
}
