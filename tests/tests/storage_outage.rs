//! A storage outage reaches every service's clients as `UNAVAILABLE`, which
//! clients retry, with no patient data in the message; when the database comes
//! back the same calls are answered again. The four services reach PostgreSQL
//! through a proxy the test cuts.

use std::str::FromStr as _;
use std::time::Duration;

use chrono::TimeDelta;
use sqlx::postgres::PgConnectOptions;
use tonic::Code;
use touchpoint_platform::envelope::timestamp;
use touchpoint_platform::grpc::client::AuthChannel;
use touchpoint_platform::shutdown::Shutdown;
use touchpoint_platform::testkit::{self, TestDatabase, eventually, utc};
use touchpoint_proto::v1::cadence_service_client::CadenceServiceClient;
use touchpoint_proto::v1::case_service_client::CaseServiceClient;
use touchpoint_proto::v1::dispatch_service_client::DispatchServiceClient;
use touchpoint_proto::v1::routing_service_client::RoutingServiceClient;
use touchpoint_proto::v1::{
    ContactPoints, Coordinator, CoordinatorRole, GetCaseRequest, GetPlanRequest, Language,
    ListAttemptsRequest, ListWorklistRequest, OpenCaseRequest, Person, PersonName,
    UpsertCoordinatorRequest,
};
use touchpoint_tests::fixtures::meta;
use touchpoint_tests::outage::Proxy;

const PATIENT_NAME: &str = "Ottoline";
const PATIENT_MOBILE: &str = "+13125550199";
const COORDINATOR: &str = "coordinator-1";

/// One client of each service.
struct Clients {
    cases: CaseServiceClient<AuthChannel>,
    cadence: CadenceServiceClient<AuthChannel>,
    dispatch: DispatchServiceClient<AuthChannel>,
    routing: RoutingServiceClient<AuthChannel>,
}

impl Clients {
    /// What each service answers to a call that reads its store, by name: Ok
    /// or the status code and message.
    async fn reads(&self, case_id: &str) -> Vec<(&'static str, Result<(), (Code, String)>)> {
        let status = |s: tonic::Status| (s.code(), s.message().to_owned());
        let case_id = case_id.to_owned();
        vec![
            (
                "cases",
                self.cases
                    .clone()
                    .get_case(GetCaseRequest {
                        case_id: case_id.clone(),
                    })
                    .await
                    .map(drop)
                    .map_err(status),
            ),
            (
                "cadence",
                // A case cadence has not enrolled is NOT_FOUND once the store
                // answers: either way the store was read.
                match self
                    .cadence
                    .clone()
                    .get_plan(GetPlanRequest {
                        case_id: case_id.clone(),
                    })
                    .await
                {
                    Err(s) if s.code() != Code::NotFound => Err(status(s)),
                    _ => Ok(()),
                },
            ),
            (
                "dispatch",
                self.dispatch
                    .clone()
                    .list_attempts(ListAttemptsRequest {
                        case_id: case_id.clone(),
                    })
                    .await
                    .map(drop)
                    .map_err(status),
            ),
            (
                "routing",
                self.routing
                    .clone()
                    .list_worklist(ListWorklistRequest {
                        coordinator_id: COORDINATOR.into(),
                        limit: 10,
                    })
                    .await
                    .map(drop)
                    .map_err(status),
            ),
        ]
    }

    /// Opens a case for the patient; the status on failure.
    async fn open(&self, request_id: &str) -> Result<String, tonic::Status> {
        let opened = self
            .cases
            .clone()
            .open_case(OpenCaseRequest {
                meta: meta(request_id),
                program_id: "adherence".into(),
                language: Language::En as i32,
                time_zone: "America/Chicago".into(),
                patient: Some(Person {
                    name: Some(PersonName {
                        given_name: PATIENT_NAME.into(),
                        family_name: "Quist".into(),
                    }),
                    contact: Some(ContactPoints {
                        mobile_e164: PATIENT_MOBILE.into(),
                        ..ContactPoints::default()
                    }),
                    relationship: String::new(),
                }),
                caregiver: None,
                prescriber_fax: String::new(),
                enrolled_at: Some(timestamp(utc("2026-11-24T15:00:00Z") - TimeDelta::days(1))),
            })
            .await?;
        Ok(opened.into_inner().case_id)
    }
}

/// `url` with its host and port replaced by `addr`.
fn through(url: &str, addr: &str) -> String {
    let options = PgConnectOptions::from_str(url).unwrap_or_else(|e| panic!("database url: {e}"));
    let server = format!("{}:{}", options.get_host(), options.get_port());
    assert!(
        url.contains(&server),
        "the url names its server as host:port"
    );
    url.replacen(&server, addr, 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storage_outage_reaches_every_services_clients_as_unavailable() {
    testkit::init_tracing();
    let database = TestDatabase::fresh().await;
    let options = PgConnectOptions::from_str(&database.url).unwrap_or_else(|e| panic!("{e}"));
    let proxy = Proxy::start(&format!("{}:{}", options.get_host(), options.get_port()))
        .await
        .unwrap_or_else(|e| panic!("proxy: {e}"));
    let prefix = testkit::unique_prefix();
    let config = |name: &str| {
        let mut config = testkit::platform_config(name, &database, &prefix);
        config.database.url = through(&database.url, proxy.addr());
        config
    };
    let shutdown = Shutdown::new();
    let programs = concat!(env!("CARGO_MANIFEST_DIR"), "/../programs");
    let started = |name: &str, result: Result<std::net::SocketAddr, String>| {
        result.unwrap_or_else(|e| panic!("{name} did not start: {e}"))
    };
    let cases = touchpoint_cases::start(touchpoint_cases::Config::new(config("cases")), &shutdown)
        .await
        .map_err(|e| e.to_string());
    let cadence = touchpoint_cadence::start(
        touchpoint_cadence::Config::new(config("cadence"), programs),
        &shutdown,
    )
    .await
    .map_err(|e| e.to_string());
    let dispatch = touchpoint_dispatch::start(
        touchpoint_dispatch::Config::new(config("dispatch"), programs),
        &shutdown,
    )
    .await
    .map_err(|e| e.to_string());
    let routing = touchpoint_routing::start(
        touchpoint_routing::Config::new(config("routing"), programs),
        &shutdown,
    )
    .await
    .map(|a| a.grpc)
    .map_err(|e| e.to_string());
    let clients = Clients {
        cases: CaseServiceClient::new(testkit::channel(started("cases", cases)).await),
        cadence: CadenceServiceClient::new(testkit::channel(started("cadence", cadence)).await),
        dispatch: DispatchServiceClient::new(testkit::channel(started("dispatch", dispatch)).await),
        routing: RoutingServiceClient::new(testkit::channel(started("routing", routing)).await),
    };

    clients
        .routing
        .clone()
        .upsert_coordinator(UpsertCoordinatorRequest {
            coordinator: Some(Coordinator {
                coordinator_id: COORDINATOR.into(),
                role: CoordinatorRole::Coordinator as i32,
                time_zone: "America/Chicago".into(),
                capacity: 10,
                ..Coordinator::default()
            }),
        })
        .await
        .unwrap_or_else(|e| panic!("coordinator: {e}"));
    let case_id = clients
        .open("before-the-outage")
        .await
        .unwrap_or_else(|e| panic!("open: {e}"));
    for (service, answer) in clients.reads(&case_id).await {
        assert_eq!(answer, Ok(()), "{service} before the outage");
    }

    proxy.cut();
    for (service, answer) in clients.reads(&case_id).await {
        let Err((code, message)) = answer else {
            panic!("{service} answered without its database");
        };
        assert_eq!(code, Code::Unavailable, "{service}: {message}");
        assert!(
            message.contains("storage is unavailable"),
            "{service}: {message}"
        );
    }
    let refused = clients.open("during-the-outage").await.err();
    let refused = refused.unwrap_or_else(|| panic!("a case opened without the database"));
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused.message().contains("retry with the same request_id"),
        "{}",
        refused.message()
    );
    for patient_data in [PATIENT_NAME, PATIENT_MOBILE] {
        assert!(!refused.message().contains(patient_data));
    }

    // Back: the same calls are answered, and the refused request, retried
    // with its id, opens the case.
    proxy.restore();
    let answered = eventually(
        "every service answers again",
        Duration::from_secs(60),
        || {
            let clients = &clients;
            let case_id = &case_id;
            async move {
                let reads = clients.reads(case_id).await;
                reads.iter().all(|(_, a)| a.is_ok()).then_some(reads)
            }
        },
    )
    .await;
    assert_eq!(answered.len(), 4);
    let retried = clients
        .open("during-the-outage")
        .await
        .unwrap_or_else(|e| panic!("the retried request: {e}"));
    assert_ne!(retried, case_id);
    shutdown.trigger();
}
