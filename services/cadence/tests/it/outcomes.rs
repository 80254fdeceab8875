//! A due touchpoint goes out as an `OutreachRequested`, and what comes back moves
//! its step: a permanent failure to the next channel, a reply to completion. A
//! record cadence cannot use goes to the DLQ and the consumer goes on.

use crate::support::*;
use touchpoint_platform::envelope::instant;
use touchpoint_platform::testkit::eventually;
use touchpoint_platform::topics::Stream;
use touchpoint_proto::v1::contact_point::Value;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    AttemptFailed, CaseOpened, Channel, ContactPoints, GetPlanRequest, InboundReceived, Language,
    Person, StepState,
};

/// Tuesday 2026-04-07, 10:00 in New York: the welcome of a case enrolled a day
/// earlier is due.
const NOW: &str = "2026-04-07T14:00:00Z";
const ENROLLED: &str = "2026-04-06T14:00:00Z";

/// Enrols `case_id` in adherence with SMS and email consent and returns its
/// welcome text as requested.
async fn welcome_sent(world: &World, outreach: &Outreach, case_id: &str) -> Requested {
    world
        .publish(&[
            (
                Stream::Case,
                case_opened(case_id, "adherence", utc(ENROLLED)),
            ),
            (Stream::Case, consent(case_id, Channel::Sms)),
            (Stream::Case, consent(case_id, Channel::Email)),
        ])
        .await;
    eventually("the welcome text", WAIT, || async {
        outreach.all().into_iter().find(|r| r.case_id == case_id)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_that_falls_to_the_caregiver_is_asked_for_as_the_caregivers() {
    let world = World::fixed(NOW).await;
    let outreach = world.outreach();
    let _replica = world.cadence(&shipped_programs(), 500).await;
    let mut opened = case_opened("case-caregiver", "adherence", utc(ENROLLED));
    if let Some(Payload::CaseOpened(case)) = opened.payload.as_mut() {
        // No mobile of the patient's own; her son's.
        if let Some(contact) = case.patient.as_mut().and_then(|p| p.contact.as_mut()) {
            contact.mobile_e164.clear();
        }
        case.caregiver = Some(Person {
            name: None,
            contact: Some(ContactPoints {
                mobile_e164: "+12125550177".into(),
                ..ContactPoints::default()
            }),
            relationship: "son".into(),
        });
    }
    world
        .publish(&[
            (Stream::Case, opened),
            (Stream::Case, consent("case-caregiver", Channel::Sms)),
        ])
        .await;
    let sent = eventually("the welcome text", WAIT, || async {
        outreach
            .all()
            .into_iter()
            .find(|r| r.case_id == "case-caregiver")
    })
    .await;
    assert_eq!(
        sent.request.destination.and_then(|d| d.value),
        Some(Value::PhoneE164("+12125550177".into()))
    );
    assert!(
        sent.request.to_caregiver,
        "dispatch sends the caregiver's text"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_touchpoint_is_requested_with_what_dispatch_needs() {
    let world = World::fixed(NOW).await;
    let outreach = world.outreach();
    let _replica = world.cadence(&shipped_programs(), 500).await;
    let sent = welcome_sent(&world, &outreach, "case-sent").await;
    let r = &sent.request;
    assert_eq!(r.program_id, "adherence");
    assert_eq!(r.step_id, "welcome");
    assert_eq!(r.template_id, "welcome");
    assert_eq!(r.channel(), Channel::Sms, "no consent for calls");
    assert_eq!(r.attempt_number, 1);
    assert_eq!(r.language(), Language::Es);
    assert_eq!(
        r.destination.as_ref().and_then(|d| d.value.clone()),
        Some(Value::PhoneE164("+12125550142".into()))
    );
    assert!(!r.to_caregiver, "the patient's own number");
    assert_eq!(r.due_at.as_ref().and_then(instant), Some(utc(NOW)));
    assert_eq!(sent.requested_at, utc(NOW));
    // The program's window closes at 20:00 in New York.
    assert_eq!(
        r.not_after.as_ref().and_then(instant),
        Some(utc("2026-04-08T00:00:00Z"))
    );
    assert!(uuid::Uuid::parse_str(&r.attempt_id).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_moves_the_step_to_its_next_channel_under_the_cap() {
    let world = World::fixed(NOW).await;
    let outreach = world.outreach();
    let replica = world.cadence(&shipped_programs(), 500).await;
    let sent = welcome_sent(&world, &outreach, "case-fail").await;
    let failed = event(
        "case-fail",
        Payload::AttemptFailed(AttemptFailed {
            attempt_id: sent.request.attempt_id.clone(),
            channel: Channel::Sms as i32,
            permanent: true,
            provider: "sandbox".into(),
            provider_code: "21211".into(),
        }),
    );
    world.publish(&[(Stream::Attempt, failed)]).await;
    // Unanswered, the SMS would be followed by email a day later; the failure
    // makes the email due at once.
    let plan = plan_where(&replica, "case-fail", |p| {
        p.upcoming.first().is_some_and(|t| {
            t.channel() == Channel::Email && t.due_at.as_ref().and_then(instant) == Some(utc(NOW))
        })
    })
    .await;
    assert_eq!(step_state(&plan, "welcome"), Some(StepState::Running));
    // One message a day: the email, due now, waits for 09:00 tomorrow, the
    // window's start.
    assert_eq!(plan.upcoming[0].due_at_local, "2026-04-07T10:00:00-04:00");
    assert_eq!(plan.upcoming[0].send_at_local, "2026-04-08T09:00:00-04:00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_to_the_attempt_completes_its_step() {
    let world = World::fixed(NOW).await;
    let outreach = world.outreach();
    let replica = world.cadence(&shipped_programs(), 500).await;
    let sent = welcome_sent(&world, &outreach, "case-reply").await;
    let reply = event(
        "case-reply",
        Payload::InboundReceived(InboundReceived {
            inbound_id: "in-1".into(),
            channel: Channel::Sms as i32,
            received_at: None,
            in_reply_to_attempt_id: sent.request.attempt_id.clone(),
        }),
    );
    world.publish(&[(Stream::Inbound, reply)]).await;
    let plan = plan_where(&replica, "case-reply", |p| {
        step_state(p, "welcome") == Some(StepState::Completed)
    })
    .await;
    assert!(
        plan.upcoming.iter().all(|t| t.step_id != "welcome"),
        "no retry after an answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_record_goes_to_the_dlq_and_the_next_is_applied() {
    let world = World::fixed(NOW).await;
    let outreach = world.outreach();
    let replica = world.cadence(&shipped_programs(), 500).await;
    let bad_zone = event(
        "case-bad",
        Payload::CaseOpened(CaseOpened {
            program_id: "adherence".into(),
            time_zone: "Nowhere/Patient_Street_12".into(),
            ..CaseOpened::default()
        }),
    );
    world.publish(&[(Stream::Case, bad_zone)]).await;
    welcome_sent(&world, &outreach, "case-good").await;
    let reasons = dead_letter_reasons(&world, Stream::Case, 1).await;
    assert!(reasons[0].contains("CaseOpened: time_zone"), "{reasons:?}");
    assert!(
        !reasons[0].contains("Patient_Street"),
        "the value is echoed"
    );
    let unknown = replica
        .client
        .clone()
        .get_plan(GetPlanRequest {
            case_id: "case-bad".into(),
        })
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(unknown, Some(tonic::Code::NotFound));
}
