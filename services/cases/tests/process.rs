//! The `touchpoint-cases` binary as a process: it refuses a bad configuration by
//! name, continues callers' traces and exports them over OTLP, and drains on SIGTERM.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
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

/// An OTLP/gRPC collector that keeps (service name, trace id, span name) of each span.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<(String, String, String)>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self
            .spans
            .lock()
            .map_err(|_| tonic::Status::internal("poisoned"))?;
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    Value::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    let trace_id: String =
                        span.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                    spans.push((service.clone(), trace_id, span.name));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continues_the_callers_trace_exports_it_and_drains_on_sigterm() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let collector_addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let server = TraceServiceServer::new(collector.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let database = TestDatabase::fresh().await;
    let grpc_addr = format!("127.0.0.1:{}", testkit::free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_touchpoint-cases"))
        .env("DATABASE_URL", &database.url)
        .env("KAFKA_BROKERS", testkit::broker())
        .env("TOUCHPOINT_TOPIC_PREFIX", testkit::unique_prefix())
        .env("TOUCHPOINT_GRPC_ADDR", &grpc_addr)
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{collector_addr}"),
        )
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
        use std::io::Read as _;
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

    let spans = eventually("the request span at the collector", WAIT, || {
        let found = collector.spans.lock().ok().and_then(|spans| {
            spans
                .iter()
                .find(|(_, trace, _)| trace == TRACE_ID)
                .cloned()
        });
        async move { found }
    })
    .await;
    assert_eq!(spans.0, "cases", "exported under the service's name");
    assert_eq!(spans.2, "grpc.request");
}
