//! Cases, dispatch and routing together: a patient's Spanish text about a side
//! effect is flagged on the case timeline with a review task, and ALTO is
//! confirmed through dispatch's SMS path while the next program text is
//! suppressed; a report of the side effect completes its review task and lifts
//! the hold on outreach.

use std::time::Duration;

use chrono::TimeDelta;
use touchpoint_platform::clock::ClockConfig;
use touchpoint_platform::envelope::{new_envelope, timestamp};
use touchpoint_platform::grpc::client::AuthChannel;
use touchpoint_platform::testkit::{self, eventually, utc};
use touchpoint_platform::topics::Stream;
use touchpoint_proto::v1::case_service_client::CaseServiceClient;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::routing_service_client::RoutingServiceClient;
use touchpoint_proto::v1::{
    AdverseEventReport, AssignCoordinatorRequest, Channel, ContactPoint, Coordinator,
    CoordinatorRole, GetTimelineRequest, Language, ListAdverseEventsRequest, ListWorklistRequest,
    OutreachRequested, Presence, ReportAdverseEventRequest, Shift, SuppressionReason, TaskKind,
    UpsertCoordinatorRequest, contact_point,
};
use touchpoint_tests::fixtures::{MOBILE, meta, open_spanish_sms_patient};
use touchpoint_tests::hub::Hub;

const WAIT: Duration = Duration::from_secs(90);
/// Tuesday 2026-11-24, 10:00 in New York: inside the adherence program's window.
const NOW: &str = "2026-11-24T15:00:00Z";

/// Carla on the roster (Spanish, weekdays 09:00-17:00 in New York) and her
/// Spanish-speaking SMS patient, enrolled three days ago, known to routing
/// and dispatch: routing's API and the case id.
async fn carla_and_her_patient(hub: &Hub) -> (RoutingServiceClient<AuthChannel>, String) {
    let mut roster = RoutingServiceClient::new(testkit::channel(hub.routing).await);
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

    let mut cases = hub.cases.clone();
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
    let pool = sqlx::PgPool::connect(&hub.database.url)
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
    (roster, case_id)
}

/// The first event of `case_id`'s timeline `pick` takes.
async fn first_on_timeline<T>(
    cases: &CaseServiceClient<AuthChannel>,
    case_id: &str,
    what: &str,
    pick: impl Fn(Payload) -> Option<T>,
) -> T {
    eventually(what, WAIT, || {
        let mut cases = cases.clone();
        let case_id = case_id.to_owned();
        let pick = &pick;
        async move {
            cases
                .get_timeline(GetTimelineRequest {
                    case_id,
                    kinds: vec![],
                    page_size: 1000,
                    page_token: String::new(),
                })
                .await
                .ok()?
                .into_inner()
                .entries
                .into_iter()
                .find_map(|entry| pick(entry.event?.payload?))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_side_effect_reaches_the_timeline_and_alto_is_confirmed_and_honoured() {
    let hub = Hub::start(NOW).await;
    let (prefix, sms, attempts) = (hub.prefix.clone(), &hub.sms, &hub.attempts);
    let (mut roster, case_id) = carla_and_her_patient(&hub).await;
    let cases = hub.cases.clone();

    let text = |body: &'static str, sid: &'static str| hub.text(MOBILE, body, sid);

    // A side effect, in Spanish: flagged on the case timeline, reviewed first.
    assert_eq!(
        text("Desde ayer tengo mareos y náuseas", "SM-ae").await,
        200
    );
    let flag = first_on_timeline(&cases, &case_id, "the flag", |payload| match payload {
        Payload::AdverseEventSuspected(flag) => Some(flag),
        _ => None,
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reported_side_effect_completes_its_review_task_and_lifts_the_hold() {
    // With cadence, which holds the case's outreach while the flag waits.
    let hub = Hub::start_on(ClockConfig::Fixed { at: utc(NOW) }, true).await;
    let (mut roster, case_id) = carla_and_her_patient(&hub).await;
    let mut cases = hub.cases.clone();
    assert_eq!(
        hub.text(MOBILE, "Desde ayer tengo mareos y náuseas", "SM-ae")
            .await,
        200
    );
    let flag = first_on_timeline(&cases, &case_id, "the flag", |payload| match payload {
        Payload::AdverseEventSuspected(flag) => Some(flag),
        _ => None,
    })
    .await;
    // Automated outreach waits for the review.
    first_on_timeline(&cases, &case_id, "the hold", |payload| match payload {
        Payload::OutreachHeld(held) if held.reason == "adverse_event_review" => Some(()),
        _ => None,
    })
    .await;

    let report = |report: AdverseEventReport| ReportAdverseEventRequest {
        meta: meta("ae-report-1"),
        case_id: case_id.clone(),
        review_task_id: flag.review_task_id.clone(),
        report: Some(report),
        safety_reference: "SDB-7".into(),
        ..ReportAdverseEventRequest::default()
    };
    let complete = AdverseEventReport {
        patient_initials: "M.G.".into(),
        reporter_name: "María García".into(),
        reporter_qualification: "consumer".into(),
        suspect_product: "Adherex".into(),
        event_description: "Mareos y náuseas desde ayer".into(),
        ..AdverseEventReport::default()
    };
    // Without a reporter the report is refused, naming the field, not the value.
    let refused = cases
        .report_adverse_event(report(AdverseEventReport {
            reporter_name: String::new(),
            ..complete.clone()
        }))
        .await
        .err()
        .unwrap_or_else(|| panic!("a report without a reporter was taken"));
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().starts_with("report.reporter_name"),
        "{}",
        refused.message()
    );
    assert!(!refused.message().contains("García"));
    // A flag the case does not have.
    let unknown = cases
        .report_adverse_event(ReportAdverseEventRequest {
            review_task_id: uuid::Uuid::now_v7().to_string(),
            ..report(complete.clone())
        })
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(unknown, Some(tonic::Code::FailedPrecondition));

    cases
        .report_adverse_event(report(complete.clone()))
        .await
        .unwrap_or_else(|e| panic!("report: {e}"));
    // Routing completes the review task; cadence lifts the hold.
    let done = first_on_timeline(
        &cases,
        &case_id,
        "the review done",
        |payload| match payload {
            Payload::TaskCompleted(done) if done.kind == "adverse_event_review" => Some(done),
            _ => None,
        },
    )
    .await;
    assert_eq!(done.task_id, flag.review_task_id);
    first_on_timeline(
        &cases,
        &case_id,
        "the hold lifted",
        |payload| match payload {
            Payload::OutreachResumed(resumed) if resumed.reason == "adverse_event_reviewed" => {
                Some(())
            }
            _ => None,
        },
    )
    .await;
    let worklist = roster
        .list_worklist(ListWorklistRequest {
            coordinator_id: "carla".into(),
            limit: 10,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner()
        .tasks;
    assert!(
        worklist.iter().all(|t| t.task_id != flag.review_task_id),
        "{worklist:?}"
    );
    // One decision per flag.
    let again = cases
        .report_adverse_event(ReportAdverseEventRequest {
            meta: meta("ae-report-2"),
            not_adverse_event: true,
            reason: "second thoughts".into(),
            ..report(complete)
        })
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(again, Some(tonic::Code::FailedPrecondition));
    // The reconciliation lists it, decided.
    let listed = eventually("the flag reconciled", WAIT, || {
        let mut cases = cases.clone();
        async move {
            cases
                .list_adverse_events(ListAdverseEventsRequest {
                    from_day: "2026-11-01".into(),
                    to_day: "2026-11-30".into(),
                    ..ListAdverseEventsRequest::default()
                })
                .await
                .ok()?
                .into_inner()
                .flags
                .into_iter()
                .find(|f| f.decision == "reported")
        }
    })
    .await;
    assert_eq!(listed.case_id, case_id);
    assert_eq!(listed.safety_reference, "SDB-7");
    assert_eq!(listed.received_at, flag.received_at);
}
