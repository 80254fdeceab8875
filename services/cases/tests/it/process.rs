//! The `touchpoint-cases` binary as a process: it refuses a bad configuration by
//! name, continues callers' traces and exports them over OTLP, drains on
//! SIGTERM, and stops when its consumer can never read.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use touchpoint_platform::testkit::otlp::Collector;
use touchpoint_platform::testkit::{self, TestDatabase, eventually};

const WAIT: Duration = Duration::from_secs(60);
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[test]
fn bad_config_value_fails_at_start_naming_the_variable() {
    for (var, value) in [
        ("TOUCHPOINT_GRPC_ADDR", "not-an-address"),
        ("KAFKA_BROKERS", "no-port-here"),
        ("TOUCHPOINT_OUTBOX_BATCH", "zero"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_touchpoint-cases"))
            .env(var, value)
            .output()
            .unwrap_or_else(|e| panic!("cannot run the binary: {e}"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{var}={value} was accepted");
        assert!(stderr.contains(var), "stderr does not name {var}: {stderr}");
        assert!(
            !stderr.contains(value),
            "stderr echoes the value of {var}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continues_the_callers_trace_exports_it_and_drains_on_sigterm() {
    let collector = Collector::start().await;

    let database = TestDatabase::fresh().await;
    let grpc_addr = format!("127.0.0.1:{}", testkit::free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_touchpoint-cases"))
        .env("DATABASE_URL", &database.url)
        .env("KAFKA_BROKERS", testkit::broker())
        .env("TOUCHPOINT_TOPIC_PREFIX", testkit::unique_prefix())
        .env("TOUCHPOINT_GRPC_ADDR", &grpc_addr)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start touchpoint-cases: {e}"));

    // A health check carrying a caller's trace context.
    let status = eventually("cases to answer a health check", WAIT, || async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc_addr}"))
            .ok()?
            .connect()
            .await
            .ok()?;
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        });
        let traceparent = format!("00-{TRACE_ID}-00f067aa0ba902b7-01").parse().ok()?;
        request.metadata_mut().insert("traceparent", traceparent);
        HealthClient::new(channel)
            .check(request)
            .await
            .ok()
            .map(|r| r.into_inner().status)
    })
    .await;
    assert_eq!(status, 1, "SERVING");

    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(sent.is_ok_and(|s| s.success()), "SIGTERM sent");
    let exit = eventually("cases to exit after SIGTERM", WAIT, || {
        let exited = child.try_wait().ok().flatten();
        async move { exited }
    })
    .await;
    assert!(exit.success(), "clean exit after SIGTERM: {exit}");
    let mut logs = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut logs);
    }
    assert!(
        logs.contains("shutdown signal received; draining"),
        "{logs}"
    );
    assert!(
        logs.contains("outbox relay stopped"),
        "the relay drained: {logs}"
    );

    let span = eventually("the request span at the collector", WAIT, || {
        let found = collector
            .spans()
            .into_iter()
            .find(|span| span.trace_id == TRACE_ID);
        async move { found }
    })
    .await;
    assert_eq!(span.service, "cases", "exported under the service's name");
    assert_eq!(span.name, "grpc.request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_whose_topics_do_not_exist_stops_the_service_instead_of_idling() {
    // Topics are an operator's here (TOUCHPOINT_TOPIC_CREATE=false) and this
    // prefix has none: the timeline consumer can never read, so the service
    // must not go on answering health checks as if it could.
    let database = TestDatabase::fresh().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_touchpoint-cases"))
        .env("DATABASE_URL", &database.url)
        .env("KAFKA_BROKERS", testkit::broker())
        .env("TOUCHPOINT_TOPIC_PREFIX", testkit::unique_prefix())
        .env("TOUCHPOINT_TOPIC_CREATE", "false")
        .env(
            "TOUCHPOINT_GRPC_ADDR",
            format!("127.0.0.1:{}", testkit::free_port()),
        )
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start touchpoint-cases: {e}"));
    let exit = eventually("cases to stop", WAIT, || {
        let exited = child.try_wait().ok().flatten();
        async move { exited }
    })
    .await;
    assert!(
        !exit.success(),
        "a service that cannot consume exits non-zero"
    );
    let mut said = String::new();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read>),
    ]
    .into_iter()
    .flatten()
    {
        let mut stream = stream;
        let _ = stream.read_to_string(&mut said);
    }
    assert!(said.contains("timeline consumer"), "{said}");
}
