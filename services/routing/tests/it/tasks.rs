//! Worklists: a call task from dispatch lands on the coordinator's worklist;
//! completing it publishes the voice attempt's outcome; nobody completes
//! another's task; a coordinator signed in with her own credential acts only
//! as herself; a call is listed first and claimed only inside the patient's
//! window; a patient who asks during a call not to be called again opts the
//! number out of voice; bad ids are clear errors.

use crate::support::*;
use touchpoint_platform::envelope::timestamp;
use touchpoint_platform::topics::Stream;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    Channel, ClaimTaskRequest, CompleteTaskRequest, ContactPoint, CoordinatorRole,
    ListCoordinatorsRequest, ListWorklistRequest, TaskKind, TaskOutcome, TaskStatus, contact_point,
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
                .find(|t| t.kind() == TaskKind::Call)
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
    assert_eq!(claimed.status(), TaskStatus::Claimed);
    let done = client
        .complete_task(CompleteTaskRequest {
            task_id: task.task_id.clone(),
            coordinator_id: "carla".into(),
            outcome: TaskOutcome::NoAnswer as i32,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(done.status(), TaskStatus::Done);

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_signed_in_as_herself_claims_and_completes_only_as_herself() {
    let world = World::at(NOW).await;
    world
        .upsert(member("carla", CoordinatorRole::Coordinator))
        .await;
    world
        .upsert(member("sol", CoordinatorRole::Coordinator))
        .await;
    world.open_case("case-own", MOBILE, "carla", "").await;
    let attempt = uuid::Uuid::now_v7().to_string();
    world
        .publish(&[(Stream::Attempt, call_requested("case-own", &attempt))])
        .await;
    let task = world.call_task_on_worklist(&attempt).await;
    let mut carla = world.client_with(CARLA_TOKEN).await;

    // Her token cannot read or act as sol, whatever the request says.
    let as_sol = carla
        .list_worklist(ListWorklistRequest {
            coordinator_id: "sol".into(),
            limit: 10,
        })
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(as_sol, Some(tonic::Code::PermissionDenied));
    let claim_as_sol = carla
        .claim_task(ClaimTaskRequest {
            task_id: task.task_id.clone(),
            coordinator_id: "sol".into(),
        })
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(claim_as_sol, Some(tonic::Code::PermissionDenied));

    // With no name given, she acts as herself.
    let claimed = carla
        .claim_task(ClaimTaskRequest {
            task_id: task.task_id.clone(),
            coordinator_id: String::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(claimed.coordinator_id, "carla");
    assert_eq!(claimed.status(), TaskStatus::Claimed);
    let done = carla
        .complete_task(CompleteTaskRequest {
            task_id: task.task_id.clone(),
            coordinator_id: String::new(),
            outcome: TaskOutcome::Reached as i32,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(done.status(), TaskStatus::Done);
    let completed = world
        .first("TaskCompleted", |e| match &e.payload {
            Some(Payload::TaskCompleted(t)) if t.task_id == task.task_id => Some(t.clone()),
            _ => None,
        })
        .await;
    assert_eq!(completed.coordinator_id, "carla");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_listed_and_claimed_only_inside_the_patients_window() {
    let world = World::at(NOW).await;
    world
        .upsert(member("carla", CoordinatorRole::Coordinator))
        .await;
    world.open_case("case-window", MOBILE, "carla", "").await;
    // NOW is 10:00 in New York. Yesterday's call closed at 20:00 last night;
    // today's is callable 09:00 to 20:00.
    let yesterday = uuid::Uuid::now_v7().to_string();
    let today = uuid::Uuid::now_v7().to_string();
    let call = |attempt: &str, from: &str, until: &str| {
        let mut envelope = call_requested("case-window", attempt);
        if let Some(Payload::CallTaskRequested(c)) = &mut envelope.payload {
            c.callable_from = Some(timestamp(utc(from)));
            c.not_after = Some(timestamp(utc(until)));
            c.time_zone = "America/New_York".into();
        }
        (Stream::Attempt, envelope)
    };
    world
        .publish(&[
            call(&yesterday, "2026-11-23T14:00:00Z", "2026-11-24T01:00:00Z"),
            call(&today, "2026-11-24T14:00:00Z", "2026-11-25T01:00:00Z"),
        ])
        .await;
    let listed = touchpoint_platform::testkit::eventually("both calls", WAIT, || async {
        let tasks = world.worklist("carla").await;
        (tasks.len() == 2).then_some(tasks)
    })
    .await;
    // Today's first though yesterday's is older, each with its window in the
    // patient's time.
    assert_eq!(listed[0].attempt_id, today);
    assert!(listed[0].workable_now);
    assert_eq!(
        (
            listed[0].callable_from_local.as_str(),
            listed[0].callable_until_local.as_str()
        ),
        ("2026-11-24T09:00:00-05:00", "2026-11-24T20:00:00-05:00")
    );
    assert_eq!(listed[1].attempt_id, yesterday);
    assert!(!listed[1].workable_now);

    let mut client = world.client.clone();
    let refused = client
        .claim_task(ClaimTaskRequest {
            task_id: listed[1].task_id.clone(),
            coordinator_id: "carla".into(),
        })
        .await
        .err()
        .unwrap_or_else(|| panic!("yesterday's call was claimed outside the window"));
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("contact window"),
        "{}",
        refused.message()
    );
    let claimed = client
        .claim_task(ClaimTaskRequest {
            task_id: listed[0].task_id.clone(),
            coordinator_id: "carla".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(claimed.status(), TaskStatus::Claimed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_who_asks_not_to_be_called_again_opts_the_number_out_of_voice() {
    let world = World::at(NOW).await;
    world
        .upsert(member("carla", CoordinatorRole::Coordinator))
        .await;
    world.open_case("case-dnc", MOBILE, "carla", "").await;
    let attempt = uuid::Uuid::now_v7().to_string();
    let mut call = call_requested("case-dnc", &attempt);
    if let Some(Payload::CallTaskRequested(c)) = &mut call.payload {
        c.destination = Some(ContactPoint {
            value: Some(contact_point::Value::PhoneE164(MOBILE.into())),
        });
    }
    world.publish(&[(Stream::Attempt, call)]).await;
    let task = world.call_task_on_worklist(&attempt).await;
    let mut client = world.client.clone();
    client
        .complete_task(CompleteTaskRequest {
            task_id: task.task_id.clone(),
            coordinator_id: "carla".into(),
            outcome: TaskOutcome::OptedOut as i32,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let opt_out = world
        .first("the voice opt-out", |e| match &e.payload {
            Some(Payload::OptOutReceived(o)) => Some((e.case_id.clone(), o.clone())),
            _ => None,
        })
        .await;
    assert_eq!(opt_out.0, "case-dnc");
    assert_eq!(opt_out.1.channel(), Channel::Voice);
    assert_eq!(opt_out.1.keyword, "CALL_DISPOSITION");
    assert_eq!(
        opt_out.1.contact_point,
        Some(ContactPoint {
            value: Some(contact_point::Value::PhoneE164(MOBILE.into())),
        })
    );
    let completed = world
        .first("TaskCompleted", |e| match &e.payload {
            Some(Payload::TaskCompleted(t)) if t.task_id == task.task_id => Some(t.clone()),
            _ => None,
        })
        .await;
    assert_eq!(completed.outcome, "opted_out");
}
