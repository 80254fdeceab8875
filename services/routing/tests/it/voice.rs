//! Calls through Twilio's voice webhooks, signed as Twilio signs them: a
//! patient calling back rings her coordinator's client, with the coordinator
//! away her navigator's, and after hours hears the Spanish message and leaves a
//! voicemail, tied to the callback inside her window that waits on the
//! worklist; an answered call names who took it and for how long; a call
//! nobody answers becomes a callback for the one it rang, once.

use crate::support::*;
use http::StatusCode;
use touchpoint_platform::signature;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    Coordinator, CoordinatorRole, Presence, TaskKind, UpsertCoordinatorRequest,
};

/// Posts Twilio's webhook for `path` (with its query), signed with the
/// account's token unless `signed` is false.
async fn twilio(
    world: &World,
    path: &str,
    params: &[(&str, &str)],
    signed: bool,
) -> (StatusCode, String) {
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let url = format!("http://{}{path}", world.http);
    let token = if signed { SMS_TOKEN } else { "wrong-token" };
    let signed = signature::sign(token, &url, &params);
    world
        .post(&url, &params, &[(signature::HEADER, signed.as_str())])
        .await
}

/// Ana calls the program from her mobile: the call `sid` rings.
async fn call(world: &World, sid: &str) -> (StatusCode, String) {
    let params = [
        ("CallSid", sid),
        ("From", MOBILE),
        ("To", "+18005550100"),
        ("CallStatus", "ringing"),
    ];
    twilio(world, "/inbound/voice", &params, true).await
}

/// The dial of call `sid` to `member` ended with `status`.
async fn dial_ended(world: &World, sid: &str, member: &str, status: &str) -> (StatusCode, String) {
    let params = [
        ("CallSid", sid),
        ("From", MOBILE),
        ("DialCallStatus", status),
        ("DialCallDuration", "95"),
    ];
    let path = format!("/inbound/voice/dial?member={member}");
    twilio(world, &path, &params, true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_rings_the_coordinator_then_the_navigator_and_after_hours_takes_a_spanish_voicemail()
{
    let world = World::at(NOW).await;
    world
        .upsert(member("carla", CoordinatorRole::Coordinator))
        .await;
    world
        .upsert(member("nico", CoordinatorRole::Navigator))
        .await;
    world.open_case("case-call", MOBILE, "carla", "nico").await;

    let (status, twiml) = call(&world, "CA0001").await;
    assert_eq!(status, StatusCode::OK);
    let dial = format!(
        "<Dial timeout=\"20\" action=\"http://{}/inbound/voice/dial?member=carla\"><Client>carla</Client></Dial>",
        world.http
    );
    assert!(twiml.contains(&dial), "{twiml}");

    // Unsigned: refused, and nothing rings.
    let params = [("CallSid", "CA0002"), ("From", MOBILE)];
    let (refused, _) = twilio(&world, "/inbound/voice", &params, false).await;
    assert_eq!(refused, StatusCode::FORBIDDEN);

    world.set_presence("carla", Presence::Away).await;
    let (_, twiml) = call(&world, "CA0003").await;
    assert!(twiml.contains("<Client>nico</Client>"), "{twiml}");

    // Everyone works Saturdays only: on this Tuesday, the Spanish message and a
    // voicemail, and a callback due Saturday at 09:30 in New York.
    for (id, role) in [
        ("carla", CoordinatorRole::Coordinator),
        ("nico", CoordinatorRole::Navigator),
    ] {
        world.upsert(weekly(id, role, &[6])).await;
    }
    let (_, twiml) = call(&world, "CA0004").await;
    assert!(twiml.contains("<Say language=\"es-MX\">Gracias"), "{twiml}");
    let record = format!(
        "<Record maxLength=\"120\" playBeep=\"true\" action=\"http://{}/inbound/voice/recorded\"/>",
        world.http
    );
    assert!(twiml.contains(&record), "{twiml}");
    let requested = world
        .first("CallbackRequested", |e| match &e.payload {
            Some(Payload::CallbackRequested(c)) => Some(c.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        requested.due_at.map(|t| t.seconds),
        Some(utc("2026-11-28T14:30:00Z").timestamp())
    );
    let queued = world.worklist("carla").await;
    assert!(
        queued
            .iter()
            .any(|t| t.kind() == TaskKind::Callback && t.task_id == requested.task_id),
        "the callback waits on the worklist: {queued:?}"
    );
    let params = [
        ("CallSid", "CA0004"),
        ("RecordingSid", "RE0004"),
        ("RecordingDuration", "14"),
    ];
    let (status, twiml) = twilio(&world, "/inbound/voice/recorded", &params, true).await;
    assert_eq!(status, StatusCode::OK);
    assert!(twiml.contains("<Hangup/>"), "{twiml}");
    // The voicemail is on the timeline, tied to the callback that answers it.
    let left = world
        .first("VoicemailLeft", |e| match &e.payload {
            Some(Payload::VoicemailLeft(v)) => Some(v.clone()),
            _ => None,
        })
        .await;
    assert_eq!(left.task_id, requested.task_id, "the callback's voicemail");
    assert_eq!((left.recording_id.as_str(), left.seconds), ("RE0004", 14));
    // Reported again: still one.
    twilio(&world, "/inbound/voice/recorded", &params, true).await;
    let (_, twiml) = call(&world, "CA0005").await;
    assert!(twiml.contains("<Record"), "{twiml}");
    // Events publish in order: once the next call's callback is out, a second
    // voicemail event would be too.
    world
        .first("the next call's CallbackRequested", |_| {
            let callbacks = world
                .events
                .all()
                .iter()
                .filter(|e| matches!(e.payload, Some(Payload::CallbackRequested(_))))
                .count();
            (callbacks >= 2).then_some(())
        })
        .await;
    let voicemails = world
        .events
        .all()
        .into_iter()
        .filter(|e| matches!(e.payload, Some(Payload::VoicemailLeft(_))))
        .count();
    assert_eq!(voicemails, 1, "one voicemail, however often it is reported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_nobody_answers_becomes_one_callback_for_the_coordinator_it_rang() {
    let world = World::at(NOW).await;
    world
        .upsert(member("carla", CoordinatorRole::Coordinator))
        .await;
    world.open_case("case-missed", MOBILE, "carla", "").await;
    let (_, twiml) = call(&world, "CA0100").await;
    assert!(twiml.contains("<Client>carla</Client>"), "{twiml}");

    // Answered: the call ends there; who took it and for how long is on the
    // case's timeline, once however often it is reported.
    let (status, twiml) = dial_ended(&world, "CA0100", "carla", "completed").await;
    assert_eq!(status, StatusCode::OK);
    assert!(twiml.contains("<Hangup/>"), "{twiml}");
    dial_ended(&world, "CA0100", "carla", "completed").await;
    let answered = world
        .first("CallAnswered", |e| match &e.payload {
            Some(Payload::CallAnswered(c)) if e.case_id == "case-missed" => Some(c.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        (answered.answered_by.as_str(), answered.seconds),
        ("carla", 95)
    );

    // Not answered: a voicemail in Spanish, and a callback on Carla's worklist
    // due 30 minutes later (10:30 in New York, inside the window and her shift).
    let (_, twiml) = call(&world, "CA0101").await;
    assert!(twiml.contains("<Client>carla</Client>"), "{twiml}");
    let (status, twiml) = dial_ended(&world, "CA0101", "carla", "no-answer").await;
    assert_eq!(status, StatusCode::OK);
    assert!(twiml.contains("<Say language=\"es-MX\">"), "{twiml}");
    let requested = world
        .first("the missed call's CallbackRequested", |e| {
            match &e.payload {
                Some(Payload::CallbackRequested(c)) if e.case_id == "case-missed" => {
                    Some(c.clone())
                }
                _ => None,
            }
        })
        .await;
    assert_eq!(
        requested.due_at.map(|t| t.seconds),
        Some(utc("2026-11-24T15:30:00Z").timestamp())
    );
    // Carla's own, not the queue's.
    let callbacks = |tasks: Vec<touchpoint_proto::v1::Task>| {
        tasks
            .into_iter()
            .filter(|t| t.kind() == TaskKind::Callback)
            .map(|t| (t.task_id, t.coordinator_id))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        callbacks(world.worklist("carla").await),
        vec![(requested.task_id, "carla".to_owned())]
    );
    // Twilio reports the same dial again: still one callback.
    let (status, _) = dial_ended(&world, "CA0101", "carla", "no-answer").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(callbacks(world.worklist("carla").await).len(), 1);
    let answered = world
        .events
        .all()
        .into_iter()
        .filter(|e| matches!(e.payload, Some(Payload::CallAnswered(_))))
        .count();
    assert_eq!(answered, 1, "one CallAnswered for the answered call");

    // What was recorded is forgotten after the retention, and only that.
    let options: sqlx::postgres::PgConnectOptions = world
        .database
        .url
        .parse::<sqlx::postgres::PgConnectOptions>()
        .unwrap_or_else(|e| panic!("{e}"))
        .options([("search_path", "routing")]);
    let pool = sqlx::PgPool::connect_with(options)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let retention = std::time::Duration::from_secs(45 * 86_400);
    let kept = touchpoint_routing::call_news::purge(&pool, retention).await;
    assert_eq!(kept.ok(), Some(0), "news younger than the retention stays");
    sqlx::query("UPDATE call_news SET recorded_at = now() - interval '46 days'")
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let purged = touchpoint_routing::call_news::purge(&pool, retention).await;
    assert_eq!(purged.ok(), Some(1), "the answered call's news, once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_rings_a_desk_phone_where_the_roster_says_so_and_a_bad_target_is_refused() {
    let world = World::at(NOW).await;
    let desk_phone = "sip:carla@hub.sip.twilio.com";
    world
        .upsert(Coordinator {
            dial_to: desk_phone.into(),
            ..member("carla", CoordinatorRole::Coordinator)
        })
        .await;
    world
        .open_case("case-desk-phone", MOBILE, "carla", "")
        .await;
    let (status, twiml) = call(&world, "CA0200").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        twiml.contains(&format!("<Sip>{desk_phone}</Sip></Dial>")),
        "{twiml}"
    );
    assert_eq!(world.roster().await[0].dial_to, desk_phone);

    let refused = world
        .client
        .clone()
        .upsert_coordinator(UpsertCoordinatorRequest {
            coordinator: Some(Coordinator {
                dial_to: "carla's phone".into(),
                ..member("carla", CoordinatorRole::Coordinator)
            }),
        })
        .await
        .err()
        .unwrap_or_else(|| panic!("a target that is no client, SIP address or number"));
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().starts_with("dial_to:"), "{refused}");
}
