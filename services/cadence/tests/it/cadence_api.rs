//! `CadenceService` through its real gRPC API, on a clock standing still: plans
//! in UTC and the patient's local time, holds, previews, program validation, and
//! refusals that name the field without echoing the value.

use crate::support::*;
use tonic::Code;
use touchpoint_platform::envelope::{instant, timestamp};
use touchpoint_platform::testkit::{self, TopicReader};
use touchpoint_platform::topics::Stream;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    AdverseEventSuspected, Channel, Envelope, GetPlanRequest, Language, ListProgramsRequest,
    OutreachHeld, OutreachResumed, PauseOutreachRequest, Plan, PreviewCase, PreviewProgramRequest,
    ResumeOutreachRequest, StepState, TaskCompleted, TherapyEventKind, TherapyEventRecorded,
    ValidateProgramRequest,
};

/// Monday 2026-04-06, 10:00 in New York.
const NOW: &str = "2026-04-06T14:00:00Z";

/// A case in the adherence program enrolled now, with SMS consent and therapy
/// starting on Wednesday; waits until its plan shows both.
async fn enrolled(world: &World, replica: &Replica, case_id: &str) -> Plan {
    let therapy = event(
        case_id,
        Payload::TherapyEventRecorded(TherapyEventRecorded {
            kind: TherapyEventKind::TherapyStart as i32,
            at: Some(timestamp(utc("2026-04-08T14:00:00Z"))),
            days_supply: 0,
        }),
    );
    world
        .publish(&[
            (Stream::Case, case_opened(case_id, "adherence", utc(NOW))),
            (Stream::Case, consent(case_id, Channel::Sms)),
            (Stream::Case, therapy),
        ])
        .await;
    plan_where(replica, case_id, |p| p.upcoming.len() == 2).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_shows_each_step_and_the_upcoming_touchpoints_in_utc_and_local_time() {
    let world = World::fixed(NOW).await;
    let replica = world.cadence(&shipped_programs(), 500).await;
    let plan = enrolled(&world, &replica, "case-plan").await;

    assert_eq!(plan.program_id, "adherence");
    assert_eq!(plan.time_zone, NEW_YORK);
    assert_eq!(plan.case_status, "active");
    let welcome = &plan.upcoming[0];
    assert_eq!(welcome.step_id, "welcome");
    // Voice comes first in the step, but only SMS has consent.
    assert_eq!(welcome.channel(), Channel::Sms);
    assert_eq!(welcome.attempt_number, 1);
    assert_eq!(
        welcome.due_at.as_ref().and_then(instant),
        Some(utc("2026-04-07T14:00:00Z"))
    );
    assert_eq!(welcome.due_at_local, "2026-04-07T10:00:00-04:00");
    assert_eq!(welcome.send_at_local, "2026-04-07T10:00:00-04:00");
    let first_week = &plan.upcoming[1];
    assert_eq!(first_week.step_id, "first-week");
    // Therapy start + 7 days: 10:00 EDT on Wednesday 2026-04-15.
    assert_eq!(first_week.send_at_local, "2026-04-15T10:00:00-04:00");
    assert_eq!(step_state(&plan, "welcome"), Some(StepState::Scheduled));
    assert_eq!(
        step_state(&plan, "month-one"),
        Some(StepState::AwaitingAnchor)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outreach_can_be_held_and_resumed_without_touching_the_case() {
    let world = World::fixed(NOW).await;
    let mut replica = world.cadence(&shipped_programs(), 500).await;
    enrolled(&world, &replica, "case-hold").await;
    let until = utc("2026-04-20T12:00:00Z");
    let held = replica
        .client
        .pause_outreach(PauseOutreachRequest {
            case_id: "case-hold".into(),
            until: Some(timestamp(until)),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert!(held.outreach_held);
    assert_eq!(held.held_until.as_ref().and_then(instant), Some(until));
    assert_eq!(held.case_status, "active", "the case itself is not paused");

    let resumed = replica
        .client
        .resume_outreach(ResumeOutreachRequest {
            case_id: "case-hold".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert!(!resumed.outreach_held);
    assert_eq!(resumed.upcoming.len(), 2);

    let past = replica
        .client
        .pause_outreach(PauseOutreachRequest {
            case_id: "case-hold".into(),
            until: Some(timestamp(utc("2026-01-01T00:00:00Z"))),
        })
        .await;
    assert_eq!(
        past.map_err(|s| s.code()).err(),
        Some(Code::InvalidArgument)
    );
}

/// The holds and their lifting cadence published for `case_id`, in order.
fn notes(reader: &TopicReader, case_id: &str) -> Vec<Envelope> {
    reader
        .all()
        .into_iter()
        .filter(|e| e.case_id == case_id)
        .filter(|e| {
            matches!(
                e.payload,
                Some(Payload::OutreachHeld(_) | Payload::OutreachResumed(_))
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_and_its_end_go_on_the_timeline_with_who_did_them() {
    let world = World::fixed(NOW).await;
    let mut replica = world.cadence(&shipped_programs(), 500).await;
    let reader = TopicReader::start(&world.prefix, &world.topic(Stream::Outreach));
    enrolled(&world, &replica, "case-who").await;
    replica
        .client
        .pause_outreach(PauseOutreachRequest {
            case_id: "case-who".into(),
            until: None,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    replica
        .client
        .resume_outreach(ResumeOutreachRequest {
            case_id: "case-who".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let seen = testkit::eventually("the pause and the resumption", WAIT, || async {
        let seen = notes(&reader, "case-who");
        (seen.len() >= 2).then_some(seen)
    })
    .await;
    let payloads: Vec<_> = seen.into_iter().filter_map(|e| e.payload).collect();
    assert_eq!(
        payloads,
        vec![
            Payload::OutreachHeld(OutreachHeld {
                reason: "paused".into(),
                by: "test-writer".into(),
                until: None,
                review_task_id: String::new(),
            }),
            Payload::OutreachResumed(OutreachResumed {
                reason: "resumed".into(),
                by: "test-writer".into(),
                review_task_id: String::new(),
            }),
        ],
        "who paused is the authenticated caller"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adverse_event_flag_holds_automated_outreach_until_its_review_is_completed() {
    let world = World::fixed(NOW).await;
    let replica = world.cadence(&shipped_programs(), 500).await;
    let reader = TopicReader::start(&world.prefix, &world.topic(Stream::Outreach));
    enrolled(&world, &replica, "case-ae").await;
    let flag = event(
        "case-ae",
        Payload::AdverseEventSuspected(AdverseEventSuspected {
            inbound_id: "in-1".into(),
            matched_terms: vec!["rash".into()],
            review_task_id: "review-1".into(),
            ..AdverseEventSuspected::default()
        }),
    );
    world
        .publish(&[
            (Stream::Inbound, flag.clone()),
            (Stream::Inbound, flag.clone()),
        ])
        .await;
    let held = plan_where(&replica, "case-ae", |p| !p.adverse_event_reviews.is_empty()).await;
    assert_eq!(held.adverse_event_reviews, vec!["review-1"]);
    let first = testkit::eventually("the hold on the timeline", WAIT, || async {
        notes(&reader, "case-ae").into_iter().next()
    })
    .await;
    assert_eq!(first.causation_id, flag.event_id, "caused by the flag");
    assert!(matches!(
        first.payload,
        Some(Payload::OutreachHeld(OutreachHeld { ref reason, ref review_task_id, .. }))
            if reason == "adverse_event_review" && review_task_id == "review-1"
    ));

    // Another task's completion changes nothing; the review's lifts the hold.
    let completed = |task_id: &str, kind: &str| {
        event(
            "case-ae",
            Payload::TaskCompleted(TaskCompleted {
                task_id: task_id.into(),
                kind: kind.into(),
                outcome: "resolved".into(),
                attempt_id: String::new(),
                coordinator_id: "pv-1".into(),
            }),
        )
    };
    world
        .publish(&[
            (Stream::Inbound, completed("inbound-task", "inbound")),
            (
                Stream::Inbound,
                completed("review-1", "adverse_event_review"),
            ),
        ])
        .await;
    let resumed = plan_where(&replica, "case-ae", |p| p.adverse_event_reviews.is_empty()).await;
    assert_eq!(resumed.upcoming.len(), 2, "the plan goes on");
    let seen = testkit::eventually("the resumption on the timeline", WAIT, || async {
        let seen = notes(&reader, "case-ae");
        (seen.len() >= 2).then_some(seen)
    })
    .await;
    assert_eq!(seen.len(), 2, "a flag delivered twice holds once");
    assert!(matches!(
        &seen[1].payload,
        Some(Payload::OutreachResumed(r)) if r.by == "pv-1" && r.review_task_id == "review-1"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_moves_pending_touchpoints_off_sms_and_blocks_steps_with_no_channel_left() {
    let world = World::fixed(NOW).await;
    let replica = world.cadence(&shipped_programs(), 500).await;
    world
        .publish(&[(Stream::Case, consent("case-stop", Channel::Email))])
        .await; // before the case exists: skipped, not a failure
    enrolled(&world, &replica, "case-stop").await;
    world
        .publish(&[
            (Stream::Case, consent("case-stop", Channel::Email)),
            (
                Stream::Inbound,
                event(
                    "case-stop",
                    Payload::OptOutReceived(touchpoint_proto::v1::OptOutReceived {
                        inbound_id: "in-1".into(),
                        channel: Channel::Sms as i32,
                        keyword: "STOP".into(),
                        ..touchpoint_proto::v1::OptOutReceived::default()
                    }),
                ),
            ),
        ])
        .await;
    // The consent and the STOP travel on different topics, in either order; wait
    // until both are applied.
    let plan = plan_where(&replica, "case-stop", |p| {
        step_state(p, "first-week") == Some(StepState::Blocked)
            && p.upcoming.iter().any(|t| t.channel() == Channel::Email)
    })
    .await;
    // welcome does not list opted_out: it falls back to email.
    assert_eq!(plan.upcoming.len(), 1, "{:?}", plan.upcoming);
    assert_eq!(plan.upcoming[0].step_id, "welcome");
    assert_eq!(plan.upcoming[0].channel(), Channel::Email);
    assert!(
        plan.upcoming.iter().all(|t| t.channel() != Channel::Sms),
        "nothing waits on SMS after STOP"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_runs_the_program_on_a_simulated_clock_and_stores_nothing() {
    let world = World::fixed(NOW).await;
    let mut replica = world.cadence(&shipped_programs(), 500).await;
    let facts = PreviewCase {
        time_zone: "America/Phoenix".into(),
        language: Language::Es as i32,
        enrolled_at: Some(timestamp(utc("2026-04-06T17:00:00Z"))),
        therapy_start: Some(timestamp(utc("2026-04-08T17:00:00Z"))),
        last_fill_at: None,
        days_supply: 0,
        consented_channels: vec![Channel::Sms as i32, Channel::Email as i32],
    };
    let request = PreviewProgramRequest {
        program_id: "adherence".into(),
        case_facts: Some(facts.clone()),
        responses: vec![],
        until: Some(timestamp(utc("2026-06-01T00:00:00Z"))),
    };
    let preview = replica
        .client
        .preview_program(request.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let first = &preview.touchpoints[0];
    assert_eq!(first.step_id, "welcome");
    assert_eq!(first.channel(), Channel::Sms);
    assert_eq!(first.template_id, "welcome");
    assert_eq!(first.language(), Language::Es);
    // Phoenix keeps UTC-7 all year.
    assert_eq!(first.send_at_local, "2026-04-07T10:00:00-07:00");
    let steps: Vec<&str> = preview
        .touchpoints
        .iter()
        .map(|t| t.step_id.as_str())
        .collect();
    assert!(
        steps.contains(&"first-week") && steps.contains(&"month-one"),
        "{steps:?}"
    );

    // An answer to the welcome text leaves nothing more of that step.
    let mut answered = request.clone();
    answered.responses = vec![timestamp(utc("2026-04-07T18:00:00Z"))];
    let preview = replica
        .client
        .preview_program(answered)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let welcome = preview
        .touchpoints
        .iter()
        .filter(|t| t.step_id == "welcome")
        .count();
    assert_eq!(welcome, 1);

    let mut bad_zone = request.clone();
    bad_zone.case_facts = Some(PreviewCase {
        time_zone: "Europe/Secret-Patient-Town".into(),
        ..facts
    });
    let status = replica
        .client
        .preview_program(bad_zone)
        .await
        .err()
        .unwrap_or_else(|| panic!("a bad zone was accepted"));
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("case_facts.time_zone"),
        "{}",
        status.message()
    );
    assert!(!status.message().contains("Secret"), "the value is echoed");

    let mut unknown = request;
    unknown.program_id = "no-such-program".into();
    let status = replica.client.preview_program(unknown).await.err();
    assert_eq!(status.map(|s| s.code()), Some(Code::NotFound));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programs_are_listed_and_a_draft_is_validated_with_every_problem() {
    let world = World::fixed(NOW).await;
    let mut replica = world.cadence(&shipped_programs(), 500).await;
    let listed = replica
        .client
        .list_programs(ListProgramsRequest {})
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let ids: Vec<&str> = listed
        .programs
        .iter()
        .map(|p| p.program_id.as_str())
        .collect();
    assert_eq!(ids, ["adherence", "refill-reminder"]);
    assert_eq!(
        listed.programs[0].step_ids,
        ["welcome", "first-week", "month-one"]
    );

    let good = replica
        .client
        .validate_program(ValidateProgramRequest {
            program_toml: burst_program(2),
            template_ids: vec!["hello".into()],
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert!(good.valid, "{:?}", good.problems);

    let draft = burst_program(2)
        .replace("offset = \"0d\"", "offset = \"-2d\"")
        .replace("\"sms\"", "\"pigeon\"");
    let bad = replica
        .client
        .validate_program(ValidateProgramRequest {
            program_toml: draft,
            template_ids: vec![],
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert!(!bad.valid);
    let fields: Vec<(&str, &str)> = bad
        .problems
        .iter()
        .map(|p| (p.step_id.as_str(), p.field.as_str()))
        .collect();
    for expected in [
        ("hello", "offset"),
        ("hello", "template"),
        ("hello", "channels[0].channel"),
    ] {
        assert!(fields.contains(&expected), "{expected:?} not in {fields:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_malformed_case_ids_are_refused_by_field() {
    let world = World::fixed(NOW).await;
    let mut replica = world.cadence(&shipped_programs(), 500).await;
    let unknown = replica
        .client
        .get_plan(GetPlanRequest {
            case_id: "no-such-case".into(),
        })
        .await
        .err();
    assert_eq!(unknown.map(|s| s.code()), Some(Code::NotFound));
    let empty = replica
        .client
        .resume_outreach(ResumeOutreachRequest {
            case_id: " ".into(),
        })
        .await
        .err()
        .unwrap_or_else(|| panic!("an empty case id was accepted"));
    assert_eq!(empty.code(), Code::InvalidArgument);
    assert!(
        empty.message().starts_with("case_id"),
        "{}",
        empty.message()
    );
}
