//! What the case service's tests share: the real service on a free port, a client,
//! and request builders.

use std::time::Duration;

use prost::Message as _;
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use touchpoint_platform::grpc::client::AuthChannel as GrpcChannel;
use touchpoint_platform::shutdown::Shutdown;
use touchpoint_platform::testkit::events::person;
use touchpoint_platform::testkit::{self, TestDatabase};
use touchpoint_platform::topics::{Stream, Topics};
use touchpoint_platform::{dlq, kafka};
use touchpoint_proto::v1::case_service_client::CaseServiceClient;
use touchpoint_proto::v1::{
    CaseStatus, Channel, CommandMeta, ConsentSource, Envelope, GetCaseRequest, Language,
    OpenCaseRequest, RecordConsentRequest, SetStatusRequest,
};

pub const WAIT: Duration = Duration::from_secs(60);
pub const PHONE: &str = "(312) 555-0142";

pub struct Service {
    pub client: CaseServiceClient<GrpcChannel>,
    pub prefix: String,
    _database: TestDatabase,
    _shutdown: Shutdown,
}

pub async fn service() -> Service {
    testkit::init_tracing();
    let database = TestDatabase::fresh().await;
    let prefix = testkit::unique_prefix();
    let config =
        touchpoint_cases::Config::new(testkit::platform_config("cases", &database, &prefix));
    let shutdown = Shutdown::new();
    let addr = touchpoint_cases::start(config, &shutdown)
        .await
        .unwrap_or_else(|e| panic!("cases did not start: {e}"));
    let client = CaseServiceClient::new(testkit::channel(addr).await);
    Service {
        client,
        prefix,
        _database: database,
        _shutdown: shutdown,
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // Stop the service before its database is dropped under it.
        self._shutdown.trigger();
    }
}

pub fn meta(request_id: &str) -> Option<CommandMeta> {
    Some(CommandMeta {
        request_id: request_id.into(),
        expected_version: None,
        actor: "agent-7".into(),
    })
}

pub fn open_request(request_id: &str, mobile: &str) -> OpenCaseRequest {
    OpenCaseRequest {
        meta: meta(request_id),
        program_id: "adherence".into(),
        language: Language::Es as i32,
        time_zone: "America/Chicago".into(),
        patient: Some(person("Ana", "Ruiz", mobile, "ana.ruiz@example.com")),
        caregiver: None,
        prescriber_fax: String::new(),
        enrolled_at: None,
    }
}

impl Service {
    /// Publishes `envelopes` to `stream`'s topic as another service would.
    pub async fn publish(&self, stream: Stream, envelopes: &[Envelope]) {
        let records: Vec<(String, Vec<u8>)> = envelopes
            .iter()
            .map(|e| (e.case_id.clone(), e.encode_to_vec()))
            .collect();
        self.publish_raw(stream, &records).await;
    }

    /// Publishes `(key, value)` records to `stream`'s topic, whatever they hold.
    pub async fn publish_raw(&self, stream: Stream, records: &[(String, Vec<u8>)]) {
        let producer: FutureProducer =
            kafka::idempotent_producer_config(&testkit::kafka_config(&self.prefix))
                .create()
                .unwrap_or_else(|e| panic!("{e}"));
        let topic = Topics::new(self.prefix.clone()).name(stream);
        for (key, value) in records {
            let record = FutureRecord::to(&topic).key(key).payload(value);
            producer
                .send(record, WAIT)
                .await
                .unwrap_or_else(|(e, _)| panic!("{e}"));
        }
    }

    /// A second handle on the same service, for use inside closures.
    pub fn clone_client(&self) -> ServiceClient {
        ServiceClient(self.client.clone())
    }

    pub async fn open(&mut self, request_id: &str) -> String {
        self.client
            .open_case(open_request(request_id, PHONE))
            .await
            .unwrap_or_else(|e| panic!("open: {e}"))
            .into_inner()
            .case_id
    }

    pub async fn set_status(
        &mut self,
        case_id: &str,
        status: CaseStatus,
        reason: &str,
    ) -> Result<u64, tonic::Status> {
        self.client
            .set_status(SetStatusRequest {
                meta: meta(""),
                case_id: case_id.into(),
                status: status as i32,
                reason: reason.into(),
                paused_until: None,
            })
            .await
            .map(|r| r.into_inner().version)
    }

    pub async fn consent(
        &mut self,
        case_id: &str,
        channel: Channel,
        meta: Option<CommandMeta>,
    ) -> Result<u64, tonic::Status> {
        self.client
            .record_consent(RecordConsentRequest {
                meta,
                case_id: case_id.into(),
                channel: channel as i32,
                source: ConsentSource::WrittenForm as i32,
                contact_point: String::new(),
            })
            .await
            .map(|r| r.into_inner().version)
    }

    pub async fn get(&mut self, case_id: &str) -> touchpoint_proto::v1::Case {
        self.client
            .get_case(GetCaseRequest {
                case_id: case_id.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("get: {e}"))
            .into_inner()
    }

    /// Event types published to touchpoint.case.v1 for `case_id`, once `count` arrived.
    pub async fn published(&self, case_id: &str, count: usize) -> Vec<String> {
        let config = testkit::kafka_config(&self.prefix);
        let reader: StreamConsumer =
            kafka::consumer_config(&config, &format!("reader-{}", uuid_like()))
                .create()
                .unwrap_or_else(|e| panic!("{e}"));
        let topic = Topics::new(self.prefix.clone()).name(Stream::Case);
        reader
            .subscribe(&[&topic])
            .unwrap_or_else(|e| panic!("{e}"));
        let mut types = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        while types.len() < count {
            let record = tokio::time::timeout_at(deadline, reader.recv())
                .await
                .unwrap_or_else(|_| panic!("only {types:?} published"))
                .unwrap_or_else(|e| panic!("{e}"));
            if record.key() == Some(case_id.as_bytes()) {
                types.push(
                    dlq::header(&record, "event-type")
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
        types
    }
}

pub fn uuid_like() -> String {
    testkit::unique_prefix().trim_end_matches('.').to_owned()
}

/// A client of a running service, cheap to clone.
pub struct ServiceClient(pub CaseServiceClient<GrpcChannel>);

impl ServiceClient {
    /// The timeline of `case_id` with `kinds`.
    pub async fn timeline(
        mut self,
        case_id: &str,
        kinds: &[&str],
    ) -> Vec<touchpoint_proto::v1::TimelineEntry> {
        self.0
            .get_timeline(touchpoint_proto::v1::GetTimelineRequest {
                case_id: case_id.into(),
                kinds: kinds.iter().map(|k| (*k).to_owned()).collect(),
                page_size: 1000,
                page_token: String::new(),
            })
            .await
            .map(|r| r.into_inner().entries)
            .unwrap_or_default()
    }
}
