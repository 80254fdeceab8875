//! A program edited while cadence runs: the edit is published as the next
//! version without a restart; a case enrolled before keeps the steps it
//! started on and a new one gets the new steps; an invalid edit is refused
//! with the published version still serving; a supervisor previews what the
//! running case would receive next on the new version, then migrates it.

use touchpoint_platform::testkit::{self, utc};
use touchpoint_platform::topics::Stream;
use touchpoint_proto::v1::{
    Channel, GetPlanRequest, ListProgramVersionsRequest, ListProgramsRequest,
    MigrateEnrolmentsRequest, Plan,
};

use crate::support::{SIM_START, WAIT, World, case_opened, consent, plan_where, programs_dir};

/// The first version: a welcome text a day after enrolment.
const FIRST: &str = r#"
id = "launch"
name = "Launch"
languages = ["en"]

[[steps]]
id = "welcome"
anchor = "enrolled"
offset = "1d"
template = "t"
channels = [{ channel = "sms" }]
"#;

/// The second: the welcome, then a check-in two days after enrolment.
const SECOND: &str = r#"
id = "launch"
name = "Launch"
languages = ["en"]
published_by = "lee.site-leader"

[[steps]]
id = "welcome"
anchor = "enrolled"
offset = "1d"
template = "t"
channels = [{ channel = "sms" }]

[[steps]]
id = "check-in"
anchor = "enrolled"
offset = "2d"
template = "t"
channels = [{ channel = "sms" }]
"#;

/// An edit that does not validate: an anchor that does not exist.
const BROKEN: &str = r#"
id = "launch"
name = "Launch"
languages = ["en"]

[[steps]]
id = "welcome"
anchor = "someday"
offset = "1d"
template = "t"
channels = [{ channel = "sms" }]
"#;

fn steps(plan: &Plan) -> Vec<&str> {
    plan.steps.iter().map(|s| s.step_id.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_program_is_published_running_cases_keep_their_version_until_migrated() {
    let world = World::fixed(SIM_START).await;
    let dir = programs_dir("launch", FIRST, &["t"]);
    let replica = world.cadence(dir.path(), 100).await;
    let file = dir.path().join("launch").join("program.toml");
    let start = utc(SIM_START);

    world
        .publish(&[
            (Stream::Case, case_opened("case-a", "launch", start)),
            (Stream::Case, consent("case-a", Channel::Sms)),
        ])
        .await;
    let a = plan_where(&replica, "case-a", |p| !p.steps.is_empty()).await;
    assert_eq!((a.program_version, steps(&a)), (1, vec!["welcome"]));

    // Edited while running: loaded as version 2, no restart.
    std::fs::write(&file, SECOND).unwrap_or_else(|e| panic!("{e}"));
    testkit::eventually("version 2 to load", WAIT, || {
        let mut client = replica.client.clone();
        async move {
            let listed = client
                .list_programs(ListProgramsRequest {})
                .await
                .ok()?
                .into_inner();
            listed
                .programs
                .iter()
                .any(|p| p.program_id == "launch" && p.version == 2)
                .then_some(())
        }
    })
    .await;
    world
        .publish(&[
            (Stream::Case, case_opened("case-b", "launch", start)),
            (Stream::Case, consent("case-b", Channel::Sms)),
        ])
        .await;
    let b = plan_where(&replica, "case-b", |p| !p.steps.is_empty()).await;
    assert_eq!(
        (b.program_version, steps(&b)),
        (2, vec!["welcome", "check-in"])
    );
    // The case enrolled before keeps the steps it started on.
    let a = plan_where(&replica, "case-a", |_| true).await;
    assert_eq!((a.program_version, steps(&a)), (1, vec!["welcome"]));

    // An invalid edit is refused, saying why; version 2 keeps serving.
    std::fs::write(&file, BROKEN).unwrap_or_else(|e| panic!("{e}"));
    let refused = testkit::eventually("the broken edit to be refused", WAIT, || {
        let mut client = replica.client.clone();
        async move {
            let listed = client
                .list_programs(ListProgramsRequest {})
                .await
                .ok()?
                .into_inner();
            Some(listed).filter(|l| !l.refused_change.is_empty())
        }
    })
    .await;
    assert!(
        refused.refused_change.contains("anchor"),
        "{}",
        refused.refused_change
    );
    assert_eq!(
        refused
            .programs
            .iter()
            .find(|p| p.program_id == "launch")
            .map(|p| (p.version, p.step_ids.len())),
        Some((2, 2))
    );
    world
        .publish(&[
            (Stream::Case, case_opened("case-c", "launch", start)),
            (Stream::Case, consent("case-c", Channel::Sms)),
        ])
        .await;
    let c = plan_where(&replica, "case-c", |p| !p.steps.is_empty()).await;
    assert_eq!(c.program_version, 2);

    // Each version, who published it and the cases on it.
    let versions = replica
        .client
        .clone()
        .list_program_versions(ListProgramVersionsRequest {
            program_id: "launch".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner()
        .versions;
    let seen: Vec<(u32, &str, u64, bool)> = versions
        .iter()
        .map(|v| (v.version, v.published_by.as_str(), v.cases, v.newest))
        .collect();
    assert_eq!(
        seen,
        [
            (1, "programs folder", 1, false),
            (2, "lee.site-leader", 2, true)
        ]
    );

    // The preview of a migration changes nothing: it says what case A would
    // receive next on version 2.
    let migrate = |apply: bool| MigrateEnrolmentsRequest {
        program_id: "launch".into(),
        to_version: 2,
        case_ids: vec![],
        apply,
    };
    let preview = replica
        .client
        .clone()
        .migrate_enrolments(migrate(false))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(preview.migrated, 0);
    let previewed: Vec<(&str, u32)> = preview
        .cases
        .iter()
        .map(|c| (c.case_id.as_str(), c.from_version))
        .collect();
    assert_eq!(previewed, [("case-a", 1)]);
    let next = preview.cases[0]
        .plan
        .as_ref()
        .map(|p| {
            p.upcoming
                .iter()
                .map(|t| t.step_id.as_str())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    assert_eq!(next, ["welcome", "check-in"]);
    let still = replica
        .client
        .clone()
        .get_plan(GetPlanRequest {
            case_id: "case-a".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(still.program_version, 1);

    // Applied: case A runs on version 2, with its check-in planned.
    let applied = replica
        .client
        .clone()
        .migrate_enrolments(migrate(true))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(applied.migrated, 1);
    let a = plan_where(&replica, "case-a", |p| p.program_version == 2).await;
    assert_eq!(steps(&a), ["welcome", "check-in"]);
    assert!(a.upcoming.iter().any(|t| t.step_id == "check-in"));
}
