//! The dispatch binary killed (`kill -9`) while hand-offs are in flight, then
//! started again: every attempt reaches the patient once. The attempts the first
//! process left `sending` are looked up at the provider and recorded as sent,
//! never handed over a second time; the rest are sent by the new process. The
//! same holds for a person's call killed mid-dial.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;
use chrono::Utc;
use touchpoint_platform::grpc::client::{self, ClientAccess};
use touchpoint_platform::testkit::{self, TestDatabase, eventually};
use touchpoint_platform::topics::{self, Stream, Topics};
use touchpoint_proto::v1::contact_point::Value;
use touchpoint_proto::v1::dispatch_service_client::DispatchServiceClient;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{Channel, GetAttemptRequest, PlaceCallRequest};
use touchpoint_sandbox::voice::DialEnd;
use touchpoint_sandbox::{Fault, Sandbox};

const ATTEMPTS: usize = 30;

struct Process(Child);

impl Process {
    fn kill(&mut self) {
        let _ = self.0.kill(); // SIGKILL: no drain, no goodbye
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The dispatch binary on `database` and the test's broker, sending SMS and
/// placing calls through `sandbox`, on the gRPC and callback `ports` (the same
/// across a restart, as a deployment's are); `sending_timeout_ms` is how long
/// before it reconciles an attempt left `sending`.
fn spawn_dispatch(
    database: &TestDatabase,
    prefix: &str,
    sandbox: &Sandbox,
    (grpc_port, http_port): (u16, u16),
    sending_timeout_ms: u64,
    clock_epoch: chrono::DateTime<Utc>,
) -> Process {
    Command::new(env!("CARGO_BIN_EXE_touchpoint-dispatch"))
        .env("DATABASE_URL", &database.url)
        .env("KAFKA_BROKERS", testkit::broker())
        .env("TOUCHPOINT_TOPIC_PREFIX", prefix)
        .env("TOUCHPOINT_GRPC_ADDR", format!("127.0.0.1:{grpc_port}"))
        .env("TOUCHPOINT_API_TOKENS", testkit::test_tokens_var())
        .env("TOUCHPOINT_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
        .env(
            "TOUCHPOINT_PROGRAMS_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../programs"),
        )
        .env("TOUCHPOINT_CLOCK", "accelerated")
        .env("TOUCHPOINT_CLOCK_START", NOW)
        .env("TOUCHPOINT_CLOCK_EPOCH", clock_epoch.to_rfc3339())
        .env("TOUCHPOINT_CLOCK_SPEED", "1")
        // The restarted process is the same replica: it takes its old place in
        // the consumer group.
        .env("TOUCHPOINT_CONSUMER_INSTANCE_ID", "dispatch-0")
        .env("TOUCHPOINT_SEND_BATCH", "10")
        .env("TOUCHPOINT_SEND_POLL_MS", "50")
        .env("TOUCHPOINT_OUTBOX_POLL_MS", "50")
        .env(
            "TOUCHPOINT_SENDING_TIMEOUT_MS",
            sending_timeout_ms.to_string(),
        )
        .env("TOUCHPOINT_PROVIDER_TIMEOUT_MS", "120000")
        .env("TOUCHPOINT_SMS_PRIMARY_URL", sandbox.url())
        .env("TOUCHPOINT_SMS_PRIMARY_ACCOUNT_SID", ACCOUNT_SID)
        .env("TOUCHPOINT_SMS_PRIMARY_AUTH_TOKEN", AUTH_TOKEN)
        .env("TOUCHPOINT_SMS_PRIMARY_FROM", "+15005550006")
        .env("TOUCHPOINT_VOICE_URL", sandbox.url())
        .env("TOUCHPOINT_VOICE_ACCOUNT_SID", ACCOUNT_SID)
        .env("TOUCHPOINT_VOICE_AUTH_TOKEN", AUTH_TOKEN)
        .env("TOUCHPOINT_VOICE_CALLER_ID", "+12125550199")
        .env("RUST_LOG", "warn")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .map(Process)
        .unwrap_or_else(|e| panic!("cannot start the dispatch binary: {e}"))
}

/// A fresh database, the test's topics and the Twilio stand-in, for the
/// binary to run on.
async fn prepare() -> (TestDatabase, String, Sandbox) {
    testkit::init_tracing();
    let database = TestDatabase::fresh().await;
    let prefix = testkit::unique_prefix();
    topics::bootstrap(&testkit::kafka_config(&prefix))
        .await
        .unwrap_or_else(|e| panic!("topics: {e}"));
    let twilio = Sandbox::start(ACCOUNT_SID, AUTH_TOKEN)
        .await
        .unwrap_or_else(|e| panic!("sandbox: {e}"));
    (database, prefix, twilio)
}

/// A case with SMS consent and its own phone number, and its welcome request.
fn case_and_request(n: usize) -> (Vec<(Stream, touchpoint_proto::v1::Envelope)>, String) {
    let case_id = format!("case-{n}");
    let mut request = requested(&case_id, Channel::Sms);
    if let Some(Payload::OutreachRequested(r)) = request.payload.as_mut()
        && let Some(destination) = r.destination.as_mut()
    {
        destination.value = Some(Value::PhoneE164(format!("+1212555{n:04}")));
    }
    let id = attempt_id(&request);
    let events = vec![
        (Stream::Case, case_opened(&case_id)),
        (Stream::Case, consent(&case_id, Channel::Sms)),
        (Stream::Outreach, request),
    ];
    (events, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dispatch_killed_mid_send_and_restarted_sends_nothing_twice() {
    let (database, prefix, provider) = prepare().await;
    // Every hand-off is taken and then left unanswered: the process is killed
    // while it waits.
    for _ in 0..ATTEMPTS {
        provider.inject(Fault::AcceptThenStall(Duration::from_secs(300)));
    }
    let outcomes = Outcomes::start(&prefix, &Topics::new(prefix.clone()).name(Stream::Attempt));
    let epoch = Utc::now();
    let ports = (testkit::free_port(), testkit::free_port());
    let mut first = spawn_dispatch(&database, &prefix, &provider, ports, 600_000, epoch);

    let mut events = Vec::new();
    let mut ids = Vec::new();
    for n in 0..ATTEMPTS {
        let (more, id) = case_and_request(n);
        events.extend(more);
        ids.push(id);
    }
    testkit::publish(&prefix, &events).await;

    eventually("hand-offs in flight", WAIT, || async {
        (!provider.received().is_empty()).then_some(())
    })
    .await;
    first.kill();
    // What the provider had taken when the process died. An attempt committed
    // `sending` whose request had not reached the provider yet is looked up,
    // found missing and handed over after the restart: its second try.
    let taken_before_kill: std::collections::BTreeSet<String> =
        provider.received().into_iter().map(|m| m.to).collect();
    let in_flight = taken_before_kill.len();

    // The provider answers again; the restarted process reconciles at once.
    provider.clear_faults();
    let _second = spawn_dispatch(&database, &prefix, &provider, ports, 500, epoch);
    for id in &ids {
        eventually(&format!("{id} sent"), WAIT, || async {
            outcomes
                .of(id)
                .into_iter()
                .find(|e| matches!(e.payload, Some(Payload::AttemptSent(_))))
        })
        .await;
    }

    let received = provider.received();
    assert_eq!(received.len(), ATTEMPTS, "each patient got one message");
    let mut numbers: Vec<&str> = received.iter().map(|m| m.to.as_str()).collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), ATTEMPTS, "no number got two");

    let client = connect(ports.0).await;
    for (n, id) in ids.iter().enumerate() {
        let sent: Vec<_> = outcomes
            .of(id)
            .into_iter()
            .filter_map(|e| match e.payload {
                Some(Payload::AttemptSent(s)) => Some(s),
                _ => None,
            })
            .collect();
        assert_eq!(sent.len(), 1, "one AttemptSent for {id}");
        assert!(
            received
                .iter()
                .any(|m| m.sid == sent[0].provider_message_id),
            "the event names the message the patient got"
        );
        let attempt = client
            .clone()
            .get_attempt(GetAttemptRequest {
                attempt_id: id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .into_inner();
        assert_eq!(attempt.state, "sent");
        let number = format!("+1212555{n:04}");
        if taken_before_kill.contains(&number) {
            assert_eq!(
                attempt.tries, 1,
                "taken before the kill: never handed over again"
            );
        } else {
            assert!(attempt.tries <= 2, "handed over once after the lookup");
        }
    }
    println!("{in_flight} hand-offs were in flight at the kill; {ATTEMPTS} sent once each");
}

/// The restarted binary's gRPC API, once it answers.
async fn connect(
    grpc_port: u16,
) -> DispatchServiceClient<touchpoint_platform::grpc::client::AuthChannel> {
    eventually("the gRPC API", WAIT, || async {
        let access = ClientAccess::token(testkit::WRITE_TOKEN);
        client::connect(&format!("http://127.0.0.1:{grpc_port}"), &access)
            .await
            .ok()
            .map(DispatchServiceClient::new)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dispatch_killed_mid_dial_places_no_second_call() {
    let (database, prefix, twilio) = prepare().await;
    // The call is placed, and the process dies before the answer comes.
    twilio.inject(Fault::AcceptThenStall(Duration::from_secs(300)));
    let outcomes = Outcomes::start(&prefix, &Topics::new(prefix.clone()).name(Stream::Attempt));
    let epoch = Utc::now();
    let ports = (testkit::free_port(), testkit::free_port());
    let mut first = spawn_dispatch(&database, &prefix, &twilio, ports, 600_000, epoch);
    testkit::publish(
        &prefix,
        &[
            (Stream::Case, case_opened("case-dial")),
            (Stream::Case, consent("case-dial", Channel::Voice)),
        ],
    )
    .await;
    until_dispatch(
        &database.url,
        "dispatch knows case-dial",
        "SELECT 'CHANNEL_VOICE' = ANY(consented) FROM dispatch.case_views WHERE case_id = $1",
        &["case-dial"],
    )
    .await;
    let api = connect(ports.0).await;
    let request = PlaceCallRequest {
        request_id: "click-1".into(),
        case_id: "case-dial".into(),
        to: "+12125550142".into(),
        task_attempt_id: String::new(),
    };
    // It answers after its verdict wait, still `sending`; the kill comes first.
    let asking = tokio::spawn({
        let (mut api, request) = (api.clone(), request.clone());
        async move {
            loop {
                match api.place_call(request.clone()).await {
                    Err(status) if status.code() == tonic::Code::NotFound => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    other => return other.map(tonic::Response::into_inner),
                }
            }
        }
    });
    eventually("the call placed", WAIT, || async {
        (!twilio.calls().is_empty()).then_some(())
    })
    .await;
    first.kill();
    drop(asking.await);

    twilio.clear_faults();
    let _second = spawn_dispatch(&database, &prefix, &twilio, ports, 500, epoch);
    let mut api = connect(ports.0).await;
    // The caller's retry of the same click is the same attempt.
    let retried = eventually("the retried click answered", WAIT, || async {
        api.clone().place_call(request.clone()).await.ok()
    })
    .await
    .into_inner();
    let sent = outcomes
        .wait_for(&retried.attempt_id, |p| match p {
            Payload::AttemptSent(x) => Some(x),
            _ => None,
        })
        .await;
    let calls = twilio.calls();
    assert_eq!(calls.len(), 1, "one call, not two");
    assert_eq!(sent.provider_message_id, calls[0].sid);
    let attempt = api
        .get_attempt(GetAttemptRequest {
            attempt_id: retried.attempt_id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!((attempt.state.as_str(), attempt.tries), ("sent", 1));
    // The call goes on: the restarted process connects it to the patient.
    twilio.pick_up(&calls[0].sid).await;
    let dialled = twilio.calls()[0].dialled.clone();
    assert_eq!(dialled.map(|d| d.number), Some("+12125550142".to_owned()));
    twilio
        .end_dial(&calls[0].sid, DialEnd::Answered { seconds: 30 })
        .await;
    eventually("the answered call", WAIT, || async {
        outcomes
            .of(&retried.attempt_id)
            .into_iter()
            .find(|e| matches!(e.payload, Some(Payload::AttemptDelivered(_))))
    })
    .await;
}
