//! Cases, dispatch and routing together: a patient's Spanish text about a side
//! effect is flagged on the case timeline with a review task, and ALTO is
//! confirmed through dispatch's SMS path while the next program text is
//! suppressed.

use std::time::Duration;

use chrono::TimeDelta;
use touchpoint_dispatch::sandbox::{InboundText, Sandbox, post_inbound_text};
use touchpoint_platform::clock::ClockConfig;
use touchpoint_platform::envelope::{new_envelope, timestamp};
use touchpoint_platform::shutdown::Shutdown;
use touchpoint_platform::testkit::{self, TestDatabase, TopicReader, eventually, utc};
use touchpoint_platform::topics::{Stream, Topics};
use touchpoint_proto::v1::case_service_client::CaseServiceClient;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::routing_service_client::RoutingServiceClient;
use touchpoint_proto::v1::{
    AssignCoordinatorRequest, Channel, ContactPoint, Coordinator, CoordinatorRole,
    GetTimelineRequest, Language, ListWorklistRequest, OutreachRequested, Presence, Shift,
    SuppressionReason, TaskKind, UpsertCoordinatorRequest, contact_point,
};
use touchpoint_tests::fixtures::{MOBILE, meta, open_spanish_sms_patient};

const WAIT: Duration = Duration::from_secs(90);
/// Tuesday 2026-11-24, 10:00 in New York: inside the adherence program's window.
const NOW: &str = "2026-11-24T15:00:00Z";
const SMS_TOKEN: &str = "inbound-sms-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_side_effect_reaches_the_timeline_and_alto_is_confirmed_and_honoured() {
    testkit::init_tracing();
    let database = TestDatabase::fresh().await;
    let prefix = testkit::unique_prefix();
    let config = |name: &str| {
        let mut config = testkit::platform_config(name, &database, &prefix);
        config.clock = ClockConfig::Fixed { at: utc(NOW) };
        config
    };
    let shutdown = Shutdown::new();
    let cases_addr = touchpoint_cases::start(
        touchpoint_cases::Config {
            platform: config("cases"),
        },
        &shutdown,
    )
    .await
    .unwrap_or_else(|e| panic!("cases did not start: {e}"));
    let sms = Sandbox::start("ACtest", "test-token")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let programs = concat!(env!("CARGO_MANIFEST_DIR"), "/../programs");
    let mut dispatch = touchpoint_dispatch::Config::new(config("dispatch"), programs);
    dispatch.sender.poll = Duration::from_millis(50);
    dispatch.sms = vec![touchpoint_dispatch::SmsProvider {
        name: "primary".into(),
        base_url: sms.url(),
        account_sid: "ACtest".into(),
        auth_token: "test-token".into(),
        from: "+15005550006".into(),
        rate: None,
    }];
    touchpoint_dispatch::start(dispatch, &shutdown)
        .await
        .unwrap_or_else(|e| panic!("dispatch did not start: {e}"));
    let mut routing = touchpoint_routing::Config::new(config("routing"));
    routing.secrets.sms_auth_token = Some(SMS_TOKEN.into());
    let routing_addrs = touchpoint_routing::start(routing, &shutdown)
        .await
        .unwrap_or_else(|e| panic!("routing did not start: {e}"));
    let topics = Topics::new(prefix.clone());
    let attempts = TopicReader::start(&prefix, &topics.name(Stream::Attempt));

    let mut roster = RoutingServiceClient::new(testkit::channel(routing_addrs.grpc).await);
    roster
        .upsert_coordinator(UpsertCoordinatorRequest {
            coordinator: Some(Coordinator {
                coordinator_id: "carla".into(),
                role: CoordinatorRole::Coordinator as i32,
                time_zone: "America/New_York".into(),
                program_ids: vec!["adherence".into()],
                languages: vec![Language::Es as i32],
                capacity: 10,
                presence: Presence::Available as i32,
                shifts: (1..=5)
                    .map(|weekday| Shift {
                        weekday,
                        start: "09:00".into(),
                        end: "17:00".into(),
                    })
                    .collect(),
                ..Coordinator::default()
            }),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let mut cases = CaseServiceClient::new(testkit::channel(cases_addr).await);
    let case_id = open_spanish_sms_patient(&mut cases, utc(NOW) - TimeDelta::days(3)).await;
    cases
        .assign_coordinator(AssignCoordinatorRequest {
            meta: meta("assign-1"),
            case_id: case_id.clone(),
            coordinator_id: "carla".into(),
            navigator_id: String::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("assign: {e}"));

    // Both services have heard of the case (routing its coordinator, dispatch
    // its SMS consent).
    let pool = sqlx::PgPool::connect(&database.url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("routing and dispatch know the case", WAIT, || async {
        let routed: Option<String> =
            sqlx::query_scalar("SELECT coordinator_id FROM routing.case_views WHERE case_id = $1")
                .bind(&case_id)
                .fetch_optional(&pool)
                .await
                .ok()
                .flatten();
        let consented: Option<Vec<String>> =
            sqlx::query_scalar("SELECT consented FROM dispatch.case_views WHERE case_id = $1")
                .bind(&case_id)
                .fetch_optional(&pool)
                .await
                .ok()
                .flatten();
        (routed.as_deref() == Some("carla")
            && consented.is_some_and(|c| c.iter().any(|c| c == "CHANNEL_SMS")))
        .then_some(())
    })
    .await;

    let webhook = format!("http://{}/inbound/sms", routing_addrs.http);
    let text = |body: &'static str, sid: &'static str| {
        let webhook = webhook.clone();
        async move {
            let text = InboundText {
                from: MOBILE,
                to: "+15005550006",
                body,
                sid,
            };
            post_inbound_text(&webhook, SMS_TOKEN, &text)
                .await
                .unwrap_or_else(|| panic!("routing did not answer"))
        }
    };

    // A side effect, in Spanish: flagged on the case timeline, reviewed first.
    assert_eq!(
        text("Desde ayer tengo mareos y náuseas", "SM-ae").await,
        200
    );
    let flag = eventually("the flag on the case timeline", WAIT, || {
        let mut cases = cases.clone();
        let case_id = case_id.clone();
        async move {
            cases
                .get_timeline(GetTimelineRequest {
                    case_id,
                    kinds: vec!["AdverseEventSuspected".into()],
                    page_size: 10,
                    page_token: String::new(),
                })
                .await
                .ok()?
                .into_inner()
                .entries
                .into_iter()
                .find_map(|entry| match entry.event?.payload? {
                    Payload::AdverseEventSuspected(flag) => Some(flag),
                    _ => None,
                })
        }
    })
    .await;
    assert_eq!(flag.matched_terms, vec!["mareos", "nauseas"]);
    assert_eq!(
        flag.report_due_at.map(|t| t.seconds),
        Some((utc(NOW) + TimeDelta::hours(24)).timestamp())
    );
    let worklist = roster
        .list_worklist(ListWorklistRequest {
            coordinator_id: "carla".into(),
            limit: 10,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner()
        .tasks;
    assert_eq!(
        worklist.first().map(|t| t.kind),
        Some(TaskKind::AdverseEventReview as i32),
        "{worklist:?}"
    );

    // ALTO: one confirmation in Spanish, sent through dispatch.
    assert_eq!(text("ALTO", "SM-stop").await, 200);
    let confirmation = eventually("the opt-out confirmation", WAIT, || async {
        sms.received().into_iter().find(|m| m.to == MOBILE)
    })
    .await;
    assert!(
        confirmation.body.contains("ya no recibirá"),
        "Spanish confirmation: {}",
        confirmation.body
    );

    // The next program text is suppressed, never sent.
    let attempt_id = uuid::Uuid::now_v7().to_string();
    testkit::publish(
        &prefix,
        &[(
            Stream::Outreach,
            new_envelope(
                &case_id,
                "cadence",
                utc(NOW),
                Payload::OutreachRequested(OutreachRequested {
                    attempt_id: attempt_id.clone(),
                    program_id: "adherence".into(),
                    step_id: "first-week".into(),
                    channel: Channel::Sms as i32,
                    template_id: "first-week-check-in".into(),
                    language: Language::Es as i32,
                    destination: Some(ContactPoint {
                        value: Some(contact_point::Value::PhoneE164("+12125550142".into())),
                    }),
                    due_at: Some(timestamp(utc(NOW))),
                    not_after: Some(timestamp(utc(NOW) + TimeDelta::hours(8))),
                    attempt_number: 1,
                    ..OutreachRequested::default()
                }),
                None,
            ),
        )],
    )
    .await;
    let reason = attempts
        .wait_for("the next attempt's outcome", WAIT, |e| match &e.payload {
            Some(Payload::AttemptSuppressed(s)) if s.attempt_id == attempt_id => Some(s.reason),
            Some(Payload::AttemptSent(s)) if s.attempt_id == attempt_id => Some(-1),
            _ => None,
        })
        .await;
    assert_eq!(reason, SuppressionReason::OptedOut as i32);
    assert_eq!(sms.received().len(), 1, "only the confirmation went out");
    shutdown.trigger();
}
