//! The roster as supervisors change it: a caller scoped to programs changes
//! only people of those programs, and every change records who made it.

use tonic::Code;
use touchpoint_proto::v1::{CoordinatorRole, UpsertCoordinatorRequest};

use crate::support::{RITA_TOKEN, World, member};

const NOW: &str = "2027-01-05T15:00:00Z";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_changes_only_their_programs_people_and_is_recorded() {
    let world = World::at(NOW).await;
    world
        .upsert(member("carla", CoordinatorRole::Coordinator))
        .await;
    let mut rita = world.client_with(RITA_TOKEN).await;

    // Carla works adherence: not Rita's to change, nor to move to refill.
    let mut moved = member("carla", CoordinatorRole::Coordinator);
    moved.program_ids = vec!["refill-reminder".into()];
    let refused = rita
        .upsert_coordinator(UpsertCoordinatorRequest {
            coordinator: Some(moved),
        })
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(refused, Some(Code::PermissionDenied));

    // Olu works refill: Rita sets his capacity, and routing says she did.
    let mut olu = member("olu", CoordinatorRole::Coordinator);
    olu.program_ids = vec!["refill-reminder".into()];
    olu.capacity = 7;
    rita.upsert_coordinator(UpsertCoordinatorRequest {
        coordinator: Some(olu),
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let listed = world.roster().await;
    let changed: Vec<(&str, u32, &str)> = listed
        .iter()
        .map(|c| (c.coordinator_id.as_str(), c.capacity, c.updated_by.as_str()))
        .collect();
    assert!(changed.contains(&("olu", 7, "rita")), "{changed:?}");
    assert!(
        changed
            .iter()
            .any(|(id, _, by)| *id == "carla" && *by != "rita"),
        "{changed:?}"
    );
    let logged: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM routing.roster_changes WHERE member_id = 'olu' AND changed_by = 'rita'",
    )
    .fetch_one(&sqlx::PgPool::connect(&world.database.url).await.unwrap_or_else(|e| panic!("{e}")))
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(logged, 1);
}
