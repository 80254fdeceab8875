//! Worklists: a call task from dispatch lands on the coordinator's worklist;
//! completing it publishes the voice attempt's outcome; nobody completes
//! another's task; bad ids are clear errors.

mod support;

use support::*;
use touchpoint_platform::topics::Stream;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    ClaimTaskRequest, CompleteTaskRequest, CoordinatorRole, ListCoordinatorsRequest,
    ListWorklistRequest, TaskKind, TaskOutcome, TaskStatus,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_task_is_worked_and_its_outcome_is_published() {
    let world = World::at(NOW).await;
    world
        .upsert(member("carla", CoordinatorRole::Coordinator))
        .await;
    world
        .upsert(member("sol", CoordinatorRole::Coordinator))
        .await;
    world.open_case("case-call", MOBILE, "carla", "").await;
    let attempt = uuid::Uuid::now_v7().to_string();
    let call = call_requested("case-call", &attempt);
    // Delivered twice, tasked once.
    world
        .publish(&[(Stream::Attempt, call.clone()), (Stream::Attempt, call)])
        .await;
    let mut client = world.client.clone();
    let task = touchpoint_platform::testkit::eventually("the call task", WAIT, || {
        let mut client = client.clone();
        async move {
            client
                .list_worklist(ListWorklistRequest {
                    coordinator_id: "carla".into(),
                    limit: 10,
                })
                .await
                .ok()?
                .into_inner()
                .tasks
                .into_iter()
                .find(|t| t.kind == TaskKind::Call as i32)
        }
    })
    .await;
    assert_eq!(task.attempt_id, attempt);

    let refused = client
        .complete_task(CompleteTaskRequest {
            task_id: task.task_id.clone(),
            coordinator_id: "sol".into(),
            outcome: TaskOutcome::Reached as i32,
        })
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(
        refused,
        Some(tonic::Code::FailedPrecondition),
        "not sol's task"
    );
    let bad = client
        .claim_task(ClaimTaskRequest {
            task_id: "not-a-uuid".into(),
            coordinator_id: "carla".into(),
        })
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(bad, Some(tonic::Code::InvalidArgument));

    let claimed = client
        .claim_task(ClaimTaskRequest {
            task_id: task.task_id.clone(),
            coordinator_id: "carla".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(claimed.status, TaskStatus::Claimed as i32);
    let done = client
        .complete_task(CompleteTaskRequest {
            task_id: task.task_id.clone(),
            coordinator_id: "carla".into(),
            outcome: TaskOutcome::NoAnswer as i32,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(done.status, TaskStatus::Done as i32);

    let completed = world
        .first("TaskCompleted", |e| match &e.payload {
            Some(Payload::TaskCompleted(t)) => Some((e.case_id.clone(), t.clone())),
            _ => None,
        })
        .await;
    assert_eq!(completed.0, "case-call");
    assert_eq!(completed.1.attempt_id, attempt);
    assert_eq!(
        (completed.1.kind.as_str(), completed.1.outcome.as_str()),
        ("call", "no_answer")
    );
    let left = world.worklist("carla").await;
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_taken_straight_from_a_queue_leaves_capacity_counts_alone() {
    let world = World::at(NOW).await;
    world
        .upsert(member("carla", CoordinatorRole::Coordinator))
        .await;
    world.open_case("case-q", MOBILE, "carla", "").await;
    // One contact of her own patient: it counts against her.
    assert_eq!(world.text(MOBILE, "hola", "SM-own", true).await.0, 200);
    // One from a number nobody knows: it waits in the general queue.
    assert_eq!(
        world.text("+19995550000", "hello?", "SM-q", true).await.0,
        200
    );
    let mut client = world.client.clone();
    let queued = world
        .worklist("carla")
        .await
        .into_iter()
        .find(|t| t.queue == "general")
        .unwrap_or_else(|| panic!("no queued task"));
    client
        .complete_task(CompleteTaskRequest {
            task_id: queued.task_id,
            coordinator_id: "carla".into(),
            outcome: TaskOutcome::Resolved as i32,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let open = client
        .list_coordinators(ListCoordinatorsRequest::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner()
        .coordinators
        .into_iter()
        .find(|c| c.coordinator_id == "carla")
        .map(|c| c.open_tasks);
    assert_eq!(open, Some(1), "her own contact still counts");
    world
        .until_row(
            "the stored count",
            "SELECT open_tasks FROM routing.members WHERE member_id = $1",
            "carla",
            |n: i32| n == 1,
        )
        .await;
}
