//! Click to call through the voice adapter's real HTTP code, against the
//! sandbox's Twilio stand-in: the caller's own client rings first, then the
//! patient with the program's caller id, and the call's outcome is the
//! attempt's; the patient's "do not call me" refuses the call before anything
//! rings; an answer that never came is looked up, and the call is placed once.

use std::time::Duration;

use crate::support::*;
use touchpoint_dispatch::VoiceProvider;
use touchpoint_platform::envelope::timestamp;
use touchpoint_platform::testkit::eventually;
use touchpoint_platform::topics::Stream;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    Channel, ConsentRevoked, ConsentSource, ContactPoint, GetAttemptRequest, PlaceCallRequest,
    PlaceCallResponse, SuppressionReason, contact_point,
};
use touchpoint_sandbox::voice::DialEnd;
use touchpoint_sandbox::{Fault, Sandbox};

/// The patient's number, as `requested` and the case know it.
const PATIENT: &str = "+12125550142";
/// The program's caller id.
const CALLER_ID: &str = "+12125550199";
/// Who the test's token signs in as: their client rings first.
const CALLER: &str = "client:test-writer";

async fn sandbox() -> Sandbox {
    Sandbox::start(ACCOUNT_SID, AUTH_TOKEN)
        .await
        .unwrap_or_else(|e| panic!("sandbox: {e}"))
}

fn voice(sandbox: &Sandbox) -> VoiceProvider {
    VoiceProvider {
        base_url: sandbox.url(),
        account_sid: ACCOUNT_SID.into(),
        auth_token: AUTH_TOKEN.into(),
        caller_id: CALLER_ID.into(),
    }
}

/// Asks for a call to the patient on `case_id` until dispatch knows the case.
async fn place(world: &World, case_id: &str, request_id: &str) -> PlaceCallResponse {
    place_to(world, case_id, request_id, PATIENT).await
}

/// Asks for a call to `to` on `case_id` until dispatch knows the case.
async fn place_to(world: &World, case_id: &str, request_id: &str, to: &str) -> PlaceCallResponse {
    eventually(&format!("a call on {case_id}"), WAIT, || async {
        let answer = world
            .client
            .clone()
            .place_call(PlaceCallRequest {
                request_id: request_id.into(),
                case_id: case_id.into(),
                to: to.into(),
                task_attempt_id: String::new(),
            })
            .await;
        match answer {
            Ok(answer) => Some(answer.into_inner()),
            Err(status) if status.code() == tonic::Code::NotFound => None,
            Err(status) => panic!("PlaceCall: {status}"),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_rings_the_caller_then_the_patient_and_its_outcome_is_the_attempts() {
    let twilio = sandbox().await;
    let world = World::running_with(NOW, |c| c.voice = Some(voice(&twilio))).await;
    let outcomes = world.outcomes();
    world.open_known_case("case-call", &[Channel::Voice]).await;

    let first = place(&world, "case-call", "call-1").await;
    assert_eq!(first.state, "sent", "the caller's phone rings");
    let calls = twilio.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.to, CALLER, "the caller's own client rings first");
    assert_eq!(call.from, CALLER_ID);
    assert!(
        call.url.contains(&first.attempt_id) && !call.url.contains("555"),
        "the call's URL names the attempt, never the patient's number"
    );
    // A retry of the same request places nothing more.
    let again = place(&world, "case-call", "call-1").await;
    assert_eq!(again.attempt_id, first.attempt_id);
    assert_eq!(twilio.calls().len(), 1, "one call per request");
    let (status, twiml) = twilio
        .pick_up(&call.sid)
        .await
        .unwrap_or_else(|| panic!("the call's TwiML was not fetched"));
    assert_eq!(status, 200);
    let dial = twilio.calls()[0]
        .dialled
        .clone()
        .unwrap_or_else(|| panic!("the caller was not connected to anyone: {twiml}"));
    assert_eq!(dial.number, PATIENT, "the patient is dialled");
    assert_eq!(dial.caller_id, CALLER_ID, "with the program's caller id");

    let (status, hang_up) = twilio
        .end_dial(&call.sid, DialEnd::Answered { seconds: 95 })
        .await
        .unwrap_or_else(|| panic!("the dial's end was not taken"));
    assert_eq!(status, 200);
    assert!(hang_up.contains("<Hangup/>"), "{hang_up}");
    let delivered = outcomes
        .wait_for(&first.attempt_id, |p| match p {
            Payload::AttemptDelivered(x) => Some(x),
            _ => None,
        })
        .await;
    assert_eq!(delivered.call_seconds, 95, "how long they spoke");
    let sent: Vec<_> = outcomes
        .of(&first.attempt_id)
        .into_iter()
        .filter_map(|e| match e.payload {
            Some(Payload::AttemptSent(s)) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].provider_message_id, call.sid);
    assert!(sent[0].from_person, "a person's call, not the program's");

    // Another patient's call reaches voicemail (the program calls a patient
    // once a day): the attempt fails with that outcome.
    world
        .open_known_case("case-voicemail", &[Channel::Voice])
        .await;
    let second = place_to(&world, "case-voicemail", "call-2", "+12125550143").await;
    assert_eq!(second.state, "sent");
    let sid = twilio.calls()[1].sid.clone();
    twilio.pick_up(&sid).await;
    twilio.end_dial(&sid, DialEnd::Voicemail).await;
    let failed = outcomes
        .wait_for(&second.attempt_id, |p| match p {
            Payload::AttemptFailed(x) => Some(x),
            _ => None,
        })
        .await;
    assert_eq!(failed.provider_code, "voicemail");
    // A third the caller never picks up: the patient was never called.
    world
        .open_known_case("case-unreached", &[Channel::Voice])
        .await;
    let third = place_to(&world, "case-unreached", "call-3", "+12125550144").await;
    let sid = twilio.calls()[2].sid.clone();
    assert_eq!(twilio.not_picked_up(&sid).await, Some(200));
    let attempt = eventually("the unanswered caller recorded", WAIT, || async {
        let attempt = world
            .client
            .clone()
            .get_attempt(GetAttemptRequest {
                attempt_id: third.attempt_id.clone(),
            })
            .await
            .ok()?
            .into_inner();
        (attempt.state == "failed").then_some(attempt)
    })
    .await;
    assert_eq!(attempt.failure_code, "caller_unreached");
    assert!(
        twilio.calls()[2].dialled.is_none(),
        "nobody dialled the patient"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_patient_says_do_not_call_me_a_call_is_refused_before_anything_rings() {
    let twilio = sandbox().await;
    let world = World::running_with(NOW, |c| c.voice = Some(voice(&twilio))).await;
    let outcomes = world.outcomes();
    world
        .open_known_case("case-no-calls", &[Channel::Voice, Channel::Sms])
        .await;
    // On a call she asked not to be called on this number again.
    let revoked = event(
        "case-no-calls",
        Payload::ConsentRevoked(ConsentRevoked {
            channel: Channel::Voice as i32,
            source: ConsentSource::PatientRequest as i32,
            recorded_by: "coordinator-7".into(),
            revoked_at: Some(timestamp(utc(NOW) - chrono::TimeDelta::hours(1))),
            contact_point: Some(ContactPoint {
                value: Some(contact_point::Value::PhoneE164(PATIENT.into())),
            }),
            ..ConsentRevoked::default()
        }),
    );
    world.publish(&[(Stream::Case, revoked)]).await;
    until_dispatch(
        world.database_url(),
        "dispatch has her number's opt-out",
        "SELECT opted_out_at > opted_in_at FROM dispatch.opted_out_destinations
         WHERE channel = 'CHANNEL_VOICE' AND destination = $1",
        &[PATIENT],
    )
    .await;

    let refused = place(&world, "case-no-calls", "call-after-stop").await;
    assert_eq!(refused.state, "suppressed");
    assert_eq!(
        SuppressionReason::try_from(refused.suppression),
        Ok(SuppressionReason::OptedOut),
        "refused for her word"
    );
    assert!(
        twilio.calls().is_empty(),
        "nothing rang, not even the caller"
    );
    let suppressed = outcomes.first(&refused.attempt_id).await;
    assert!(
        matches!(suppressed.payload, Some(Payload::AttemptSuppressed(_))),
        "the refusal is on the timeline's topic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_answer_was_lost_is_looked_up_and_placed_once() {
    let twilio = sandbox().await;
    // The provider takes the call but its answer never comes in time.
    twilio.inject(Fault::AcceptThenStall(Duration::from_secs(60)));
    let world = World::running_with(NOW, |c| {
        c.voice = Some(voice(&twilio));
        c.provider_timeout = Duration::from_secs(1);
    })
    .await;
    let outcomes = world.outcomes();
    world.open_known_case("case-lost", &[Channel::Voice]).await;

    let placed = place(&world, "case-lost", "call-lost").await;
    let sent = outcomes
        .wait_for(&placed.attempt_id, |p| match p {
            Payload::AttemptSent(x) => Some(x),
            _ => None,
        })
        .await;
    let calls = twilio.calls();
    assert_eq!(calls.len(), 1, "one call, not two");
    assert_eq!(
        sent.provider_message_id, calls[0].sid,
        "found by the lookup"
    );
    let attempt = world
        .client
        .clone()
        .get_attempt(GetAttemptRequest {
            attempt_id: placed.attempt_id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!((attempt.state.as_str(), attempt.tries), ("sent", 1));
}
