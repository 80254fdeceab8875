//! Each service starts on a free port against its own schema, serves the standard
//! gRPC health service, and stops serving on shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use touchpoint_platform::config::PlatformConfig;
use touchpoint_platform::grpc::client::{self, ClientAccess};
use touchpoint_platform::shutdown::Shutdown;
use touchpoint_platform::testkit::{self, TestDatabase};

async fn health(addr: SocketAddr) -> Option<ServingStatus> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect()
        .await
        .ok()?;
    let mut client = HealthClient::new(channel);
    let response = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()?;
    ServingStatus::try_from(response.into_inner().status).ok()
}

/// The services the server lists through gRPC reflection.
async fn reflected_services(addr: SocketAddr) -> Vec<String> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    // Reflection needs the read role.
    let reader = ClientAccess::token(testkit::READ_TOKEN);
    let channel = client::connect(&format!("http://{addr}"), &reader)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap_or_else(|e| panic!("reflection call: {e}"))
        .into_inner();
    match responses
        .message()
        .await
        .ok()
        .flatten()
        .and_then(|r| r.message_response)
    {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection answer: {other:?}"),
    }
}

async fn tables_in(database: &TestDatabase, schema: &str) -> Vec<String> {
    let pool = sqlx::PgPool::connect(&database.url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
    )
    .bind(schema)
    .fetch_all(&pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_serves_health_in_its_own_schema_and_stops_on_shutdown() {
    testkit::init_tracing();
    let database = TestDatabase::fresh().await;
    let prefix = testkit::unique_prefix();
    let config =
        |name: &str| -> PlatformConfig { testkit::platform_config(name, &database, &prefix) };
    let shutdown = Shutdown::new();

    let programs = concat!(env!("CARGO_MANIFEST_DIR"), "/../programs");
    let started: Vec<(&str, Result<SocketAddr, String>)> = vec![
        (
            "cases",
            touchpoint_cases::start(touchpoint_cases::Config::new(config("cases")), &shutdown)
                .await
                .map_err(|e| e.to_string()),
        ),
        (
            "cadence",
            touchpoint_cadence::start(
                touchpoint_cadence::Config::new(config("cadence"), programs),
                &shutdown,
            )
            .await
            .map_err(|e| e.to_string()),
        ),
        (
            "dispatch",
            touchpoint_dispatch::start(
                touchpoint_dispatch::Config::new(config("dispatch"), programs),
                &shutdown,
            )
            .await
            .map_err(|e| e.to_string()),
        ),
        (
            "routing",
            touchpoint_routing::start(
                touchpoint_routing::Config::new(config("routing"), programs),
                &shutdown,
            )
            .await
            .map(|addresses| addresses.grpc)
            .map_err(|e| e.to_string()),
        ),
    ];
    let mut addrs = Vec::new();
    for (name, result) in started {
        let addr = result.unwrap_or_else(|e| panic!("{name} did not start: {e}"));
        assert_ne!(addr.port(), 0);
        let status =
            testkit::eventually(&format!("{name} serving"), Duration::from_secs(30), || {
                health(addr)
            })
            .await;
        assert_eq!(status, ServingStatus::Serving, "{name}");
        let tables = tables_in(&database, name).await;
        for table in ["_sqlx_migrations", "inbox", "outbox"] {
            assert!(
                tables.iter().any(|t| t == table),
                "{name} schema lacks {table}: {tables:?}"
            );
        }
        let services = reflected_services(addr).await;
        assert!(
            services.iter().any(|s| s == "grpc.health.v1.Health"),
            "{name}: {services:?}"
        );
        assert!(
            services.iter().any(|s| s.starts_with("touchpoint.v1.")),
            "{name}: {services:?}"
        );
        addrs.push(addr);
    }

    assert!(
        shutdown.drain(Duration::from_secs(30)).await,
        "every task drained"
    );
    for addr in addrs {
        assert_ne!(
            health(addr).await,
            Some(ServingStatus::Serving),
            "{addr} still serving after shutdown"
        );
    }
}
