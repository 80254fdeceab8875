//! Open work is withdrawn when its reason is gone: a call task after the
//! patient's STOP, after a reply answered its step, after the case closed; the
//! timeline is told why. A task a coordinator has claimed stays theirs, marked
//! with the reason.

use crate::support::*;
use touchpoint_platform::testkit;
use touchpoint_platform::topics::Stream;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    CaseStatus, CaseStatusChanged, Channel, ClaimTaskRequest, CoordinatorRole, Envelope,
    TaskStatus, TaskWithdrawn,
};

/// A call task for `case_id`'s welcome step, assigned to carla; returns its
/// attempt id once it is on her worklist.
async fn call_task(world: &World, case_id: &str) -> String {
    let attempt = uuid::Uuid::now_v7().to_string();
    world
        .publish(&[(Stream::Attempt, call_requested(case_id, &attempt))])
        .await;
    world.call_task_on_worklist(&attempt).await;
    attempt
}

/// The `TaskWithdrawn` for the call task making `attempt`, with its case.
async fn withdrawn(world: &World, attempt: &str) -> (String, TaskWithdrawn, Envelope) {
    world
        .first("the call task's withdrawal", |e| match &e.payload {
            Some(Payload::TaskWithdrawn(w)) if w.attempt_id == attempt => {
                Some((e.case_id.clone(), w.clone(), e.clone()))
            }
            _ => None,
        })
        .await
}

async fn has_call(world: &World, attempt: &str) -> bool {
    world
        .worklist("carla")
        .await
        .iter()
        .any(|t| t.attempt_id == attempt)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_withdraws_the_open_call_task_and_the_timeline_says_why() {
    let world = World::at(NOW).await;
    world
        .upsert(member("carla", CoordinatorRole::Coordinator))
        .await;
    world.open_case("case-1", MOBILE, "carla", "").await;
    let attempt = call_task(&world, "case-1").await;

    let (status, _) = world.text(MOBILE, "STOP", "SM-stop", true).await;
    assert_eq!(status, 200);
    let (case_id, withdrawal, envelope) = withdrawn(&world, &attempt).await;
    assert_eq!(case_id, "case-1");
    assert_eq!(withdrawal.reason, "opted_out");
    assert_eq!(withdrawal.kind, "call");
    assert!(!withdrawal.claimed);
    let stop = world
        .first("the STOP", |e| match &e.payload {
            Some(Payload::OptOutReceived(_)) => Some(e.event_id.clone()),
            _ => None,
        })
        .await;
    assert_eq!(envelope.causation_id, stop, "caused by the STOP");
    testkit::eventually("the task off the worklist", WAIT, || async {
        (!has_call(&world, &attempt).await).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_answers_the_step_withdraws_its_pending_call_task() {
    let world = World::at(NOW).await;
    world
        .upsert(member("carla", CoordinatorRole::Coordinator))
        .await;
    world.open_case("case-2", MOBILE, "carla", "").await;
    let attempt = call_task(&world, "case-2").await;
    // The step's text went out an hour ago; the patient answers it.
    let text_attempt = uuid::Uuid::now_v7().to_string();
    world
        .publish(&[(
            Stream::Attempt,
            attempt_sent(
                "case-2",
                &text_attempt,
                Channel::Sms,
                "2026-11-24T14:00:00Z",
            ),
        )])
        .await;
    world
        .until_row(
            "the text in routing",
            "SELECT attempt_id FROM routing.last_attempts WHERE case_id = $1",
            "case-2",
            |found: String| found == text_attempt,
        )
        .await;
    let (status, _) = world
        .text(MOBILE, "Todo bien, gracias", "SM-reply", true)
        .await;
    assert_eq!(status, 200);
    let (_, withdrawal, _) = withdrawn(&world, &attempt).await;
    assert_eq!(withdrawal.reason, "step_answered");
    testkit::eventually("the task off the worklist", WAIT, || async {
        (!has_call(&world, &attempt).await).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_case_leaves_a_claimed_call_with_its_coordinator_marked_with_the_reason() {
    let world = World::at(NOW).await;
    world
        .upsert(member("carla", CoordinatorRole::Coordinator))
        .await;
    world.open_case("case-3", MOBILE, "carla", "").await;
    let attempt = call_task(&world, "case-3").await;
    let task = world
        .worklist("carla")
        .await
        .into_iter()
        .find(|t| t.attempt_id == attempt)
        .unwrap_or_else(|| panic!("the call task"));
    world
        .client
        .clone()
        .claim_task(ClaimTaskRequest {
            task_id: task.task_id.clone(),
            coordinator_id: "carla".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("claim: {e}"));
    world
        .publish(&[(
            Stream::Case,
            event(
                "case-3",
                Payload::CaseStatusChanged(CaseStatusChanged {
                    status: CaseStatus::Closed as i32,
                    reason: "therapy completed".into(),
                    paused_until: None,
                }),
            ),
        )])
        .await;
    let (_, withdrawal, _) = withdrawn(&world, &attempt).await;
    assert_eq!(withdrawal.reason, "case_closed");
    assert!(withdrawal.claimed, "not taken away mid-call");
    let still = world
        .worklist("carla")
        .await
        .into_iter()
        .find(|t| t.attempt_id == attempt)
        .unwrap_or_else(|| panic!("still carla's"));
    assert_eq!(still.status(), TaskStatus::Claimed);
    assert_eq!(still.withdrawn_reason, "case_closed");
}
