//! Dispatch through the real broker and database: a requested attempt is handed
//! over once, suppressed with its reason when a last-moment check fails, waits for
//! a case it has not heard of, and a bad request goes to the DLQ. A call task
//! carries the patient's window.

use crate::support::*;
use touchpoint_platform::testkit::eventually;
use touchpoint_platform::topics::Stream;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    CaseStatus, CaseStatusChanged, Channel, GetAttemptRequest, ListAttemptsRequest, OptOutReceived,
    OutreachRequested, SuppressionReason,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voice_attempt_becomes_one_call_task_for_the_coordinator() {
    let mut world = World::at(NOW).await;
    let outcomes = world.outcomes();
    world.open_case("case-call", &[Channel::Voice]).await;
    let request = requested("case-call", Channel::Voice);
    let id = attempt_id(&request);
    // The same record twice, and the same attempt under another event id: one
    // attempt still.
    let mut again = request.clone();
    again.event_id = uuid::Uuid::now_v7().to_string();
    world
        .publish(&[
            (Stream::Outreach, request.clone()),
            (Stream::Outreach, request.clone()),
            (Stream::Outreach, again),
        ])
        .await;
    let task = outcomes.first(&id).await;
    let Some(Payload::CallTaskRequested(call)) = &task.payload else {
        panic!("not a call task: {task:?}");
    };
    assert_eq!(call.coordinator_id, "coordinator-7");
    assert_eq!(call.step_id, "welcome");
    // Callable inside the adherence program's window, in the patient's zone.
    assert_eq!(
        (call.callable_from, call.not_after),
        (
            Some(touchpoint_platform::envelope::timestamp(
                touchpoint_platform::testkit::utc("2026-04-07T13:00:00Z")
            )),
            Some(touchpoint_platform::envelope::timestamp(
                touchpoint_platform::testkit::utc(CLOSES)
            )),
        ),
        "09:00 to 20:00 in New York"
    );
    assert_eq!(call.time_zone, "America/New_York");
    assert_eq!(task.causation_id, request.event_id, "caused by the request");
    assert_eq!(task.correlation_id, request.correlation_id, "in its story");

    let attempt = world
        .client
        .get_attempt(GetAttemptRequest {
            attempt_id: id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(
        (attempt.state.as_str(), attempt.provider.as_str()),
        ("sent", "worklist")
    );
    // Another request for the case makes the list two; nothing more for this one.
    let later = requested("case-call", Channel::Voice);
    world.publish(&[(Stream::Outreach, later.clone())]).await;
    outcomes.first(&attempt_id(&later)).await;
    assert_eq!(outcomes.of(&id).len(), 1, "one outcome for the attempt");
    let listed = world
        .client
        .list_attempts(ListAttemptsRequest {
            case_id: "case-call".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner()
        .attempts;
    assert_eq!(listed.len(), 2);
}

async fn suppression(
    world: &World,
    outcomes: &Outcomes,
    request: OutreachRequestedEnvelope,
) -> i32 {
    let id = attempt_id(&request);
    world.publish(&[(Stream::Outreach, request)]).await;
    match outcomes.first(&id).await.payload {
        Some(Payload::AttemptSuppressed(s)) => s.reason,
        other => panic!("not suppressed: {other:?}"),
    }
}

type OutreachRequestedEnvelope = touchpoint_proto::v1::Envelope;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failed_check_suppresses_the_attempt_with_its_reason() {
    let world = World::at(NOW).await;
    let outcomes = world.outcomes();
    world.open_case("case-s", &[Channel::Voice]).await;
    world.open_case("case-stop", &[Channel::Sms]).await;
    world.open_case("case-closed", &[Channel::Voice]).await;
    world
        .publish(&[
            (
                Stream::Inbound,
                event(
                    "case-stop",
                    Payload::OptOutReceived(OptOutReceived {
                        inbound_id: "in-1".into(),
                        channel: Channel::Sms as i32,
                        keyword: "STOP".into(),
                        ..OptOutReceived::default()
                    }),
                ),
            ),
            (
                Stream::Case,
                event(
                    "case-closed",
                    Payload::CaseStatusChanged(CaseStatusChanged {
                        status: CaseStatus::Closed as i32,
                        reason: "withdrew".into(),
                        paused_until: None,
                    }),
                ),
            ),
        ])
        .await;
    // Wait until the closure is in dispatch's view: a first call is suppressed.
    let closed = suppression(&world, &outcomes, requested("case-closed", Channel::Voice)).await;
    assert_eq!(closed, SuppressionReason::CaseNotActive as i32);

    let no_consent = suppression(&world, &outcomes, requested("case-s", Channel::Sms)).await;
    assert_eq!(no_consent, SuppressionReason::NoConsent as i32);
    let stopped = suppression(&world, &outcomes, requested("case-stop", Channel::Sms)).await;
    assert_eq!(stopped, SuppressionReason::OptedOut as i32);

    let mut late = requested("case-s", Channel::Voice);
    if let Some(Payload::OutreachRequested(r)) = late.payload.as_mut() {
        r.not_after = Some(touchpoint_platform::envelope::timestamp(
            utc(NOW) - chrono::TimeDelta::minutes(1),
        ));
    }
    let expired = suppression(&world, &outcomes, late).await;
    assert_eq!(expired, SuppressionReason::Expired as i32);

    // One a day: the first call goes out, the second is over the cap.
    let first = requested("case-s", Channel::Voice);
    world.publish(&[(Stream::Outreach, first.clone())]).await;
    outcomes.first(&attempt_id(&first)).await;
    let capped = suppression(&world, &outcomes, requested("case-s", Channel::Voice)).await;
    assert_eq!(capped, SuppressionReason::FrequencyCap as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_nine_in_the_patients_zone_an_attempt_is_outside_the_window() {
    // 07:30 in New York; the request's own deadline is later that day.
    let world = World::at("2026-04-07T11:30:00Z").await;
    let outcomes = world.outcomes();
    world.open_case("case-early", &[Channel::Voice]).await;
    let reason = suppression(&world, &outcomes, requested("case-early", Channel::Voice)).await;
    assert_eq!(reason, SuppressionReason::OutsideContactWindow as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_for_a_case_not_yet_heard_of_waits_for_it() {
    let world = World::running_from(NOW).await;
    let outcomes = world.outcomes();
    let request = requested("case-late", Channel::Voice);
    let id = attempt_id(&request);
    world.publish(&[(Stream::Outreach, request)]).await;
    let queued = eventually("the attempt recorded", WAIT, || {
        let mut client = world.client.clone();
        let id = id.clone();
        async move {
            let a = client
                .get_attempt(GetAttemptRequest { attempt_id: id })
                .await
                .ok()?
                .into_inner();
            (a.state == "queued").then_some(a)
        }
    })
    .await;
    assert_eq!(queued.tries, 0);
    assert!(outcomes.of(&id).is_empty(), "not suppressed on a late view");
    world.open_case("case-late", &[Channel::Voice]).await;
    let task = outcomes.first(&id).await;
    assert!(matches!(task.payload, Some(Payload::CallTaskRequested(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_written_channel_without_a_provider_fails_with_a_clear_code() {
    let world = World::at(NOW).await;
    let outcomes = world.outcomes();
    world.open_case("case-sms", &[Channel::Sms]).await;
    let request = requested("case-sms", Channel::Sms);
    let id = attempt_id(&request);
    world.publish(&[(Stream::Outreach, request)]).await;
    match outcomes.first(&id).await.payload {
        Some(Payload::AttemptFailed(f)) => {
            assert!(f.permanent);
            assert_eq!(f.provider_code, "no_provider");
        }
        other => panic!("not failed: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_a_destination_goes_to_the_dlq_and_the_next_is_handled() {
    let world = World::at(NOW).await;
    let outcomes = world.outcomes();
    world.open_case("case-d", &[Channel::Voice]).await;
    let mut broken = requested("case-d", Channel::Voice);
    if let Some(Payload::OutreachRequested(OutreachRequested { destination, .. })) =
        broken.payload.as_mut()
    {
        *destination = None;
    }
    let good = requested("case-d", Channel::Voice);
    world
        .publish(&[
            (Stream::Outreach, broken.clone()),
            (Stream::Outreach, good.clone()),
        ])
        .await;
    outcomes.first(&attempt_id(&good)).await;
    assert!(outcomes.of(&attempt_id(&broken)).is_empty());
    let reasons = dead_letter_reasons(&world, Stream::Outreach, 1).await;
    assert!(
        reasons[0].contains("OutreachRequested: destination"),
        "{reasons:?}"
    );
}
