//! Inbound contacts through the real webhooks and gRPC: a patient's reply
//! reaches their coordinator and names the attempt it answers; the fallbacks
//! run in order down to an after-hours callback, due inside the patient's
//! window; keywords, adverse events, unknown senders, repeats and bad requests.

use crate::support::*;
use touchpoint_platform::signature;
use touchpoint_platform::testkit::TopicReader;
use touchpoint_platform::topics::{Stream, Topics};
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    Channel, CoordinatorRole, Language, OutreachPurpose, Presence, RouteContactRequest, TaskKind,
    contact_point,
};

async fn route_call(world: &World, caller: &str) -> touchpoint_proto::v1::RouteContactResponse {
    world
        .client
        .clone()
        .route_contact(RouteContactRequest {
            caller_e164: caller.into(),
            dialled_e164: "+18005550100".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patients_reply_reaches_their_coordinator_and_answers_the_attempt() {
    let world = World::at(NOW).await;
    world
        .upsert(member("carla", CoordinatorRole::Coordinator))
        .await;
    world.open_case("case-1", MOBILE, "carla", "").await;
    let attempt = uuid::Uuid::now_v7().to_string();
    world
        .publish(&[(
            Stream::Attempt,
            attempt_sent("case-1", &attempt, Channel::Sms, "2026-11-24T14:00:00Z"),
        )])
        .await;
    world
        .until_row(
            "the attempt in routing",
            "SELECT attempt_id FROM routing.last_attempts WHERE case_id = $1",
            "case-1",
            |found: String| found == attempt,
        )
        .await;

    // Typed as the patient's phone shows it: the same number.
    let (status, body) = world
        .text(
            "(212) 555-0142",
            "Gracias, ¿a qué hora me llaman?",
            "SM1",
            true,
        )
        .await;
    assert_eq!(status, 200);
    assert!(body.contains("<Response>"), "TwiML: {body}");

    let received = world
        .first("InboundReceived", |e| match &e.payload {
            Some(Payload::InboundReceived(r)) => Some((e.case_id.clone(), r.clone())),
            _ => None,
        })
        .await;
    assert_eq!(received.0, "case-1");
    assert_eq!(received.1.in_reply_to_attempt_id, attempt);
    assert_eq!(received.1.channel(), Channel::Sms);
    let routed = world
        .first("ContactRouted", |e| match &e.payload {
            Some(Payload::ContactRouted(r)) => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        (routed.rule.as_str(), routed.coordinator_id.as_str()),
        ("coordinator", "carla")
    );
    let tasks = world.worklist("carla").await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].kind(), TaskKind::Inbound);
    assert_eq!(tasks[0].case_id, "case-1");
    assert_eq!(tasks[0].inbound_id, received.1.inbound_id);

    // Twilio sends a webhook again when unsure: the same contact, once.
    let (again, _) = world
        .text(
            "(212) 555-0142",
            "Gracias, ¿a qué hora me llaman?",
            "SM1",
            true,
        )
        .await;
    assert_eq!(again, 200);
    assert_eq!(world.worklist("carla").await.len(), 1, "not recorded twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_then_navigator_then_skills_then_queue_then_an_after_hours_callback() {
    let world = World::at(NOW).await;
    world
        .upsert(member("carla", CoordinatorRole::Coordinator))
        .await;
    world
        .upsert(member("nico", CoordinatorRole::Navigator))
        .await;
    world
        .upsert(member("sol", CoordinatorRole::Coordinator))
        .await;
    world.open_case("case-2", MOBILE, "carla", "nico").await;

    let mut seen = Vec::new();
    for step in 0..4 {
        match step {
            1 => world.set_presence("carla", Presence::Offline).await,
            2 => world.set_presence("nico", Presence::Away).await,
            3 => world.set_presence("sol", Presence::Busy).await,
            _ => {}
        }
        let routed = route_call(&world, MOBILE).await;
        assert_eq!(routed.case_ids, vec!["case-2".to_owned()]);
        seen.push((routed.rule, routed.coordinator_id, routed.queue));
    }
    let expected = [
        ("coordinator", "carla", ""),
        ("navigator", "nico", ""),
        ("skills", "sol", ""),
        ("queue", "", "program:adherence"),
    ];
    for (seen, expected) in seen.iter().zip(expected) {
        assert_eq!(
            (seen.0.as_str(), seen.1.as_str(), seen.2.as_str()),
            expected
        );
    }
    // The skills rule's pick is stored with the contact: a roster reloaded
    // from the table still knows whom it assigned last.
    world
        .until_row(
            "sol's stored last assignment",
            "SELECT last_assigned_at = $1::timestamptz FROM routing.members WHERE member_id = 'sol'",
            NOW,
            |at_the_call: bool| at_the_call,
        )
        .await;

    // Everyone works Saturdays only: on a Tuesday, a callback due Saturday
    // 09:00 in New York (14:00 UTC) plus the 30-minute SLA.
    for (id, role) in [
        ("carla", CoordinatorRole::Coordinator),
        ("nico", CoordinatorRole::Navigator),
        ("sol", CoordinatorRole::Coordinator),
    ] {
        world.upsert(weekly(id, role, &[6])).await;
    }
    let callback = route_call(&world, MOBILE).await;
    assert_eq!(callback.rule, "callback");
    assert_eq!(callback.queue, "program:adherence");
    assert_eq!(
        callback.callback_due_at.map(|t| t.seconds),
        Some(utc("2026-11-28T14:30:00Z").timestamp())
    );
    let requested = world
        .first("CallbackRequested", |e| match &e.payload {
            Some(Payload::CallbackRequested(c)) => Some(c.clone()),
            _ => None,
        })
        .await;
    assert_eq!(requested.inbound_id, callback.inbound_id);
    let queued = world.worklist("carla").await;
    assert!(
        queued
            .iter()
            .any(|t| t.kind() == TaskKind::Callback && t.task_id == requested.task_id),
        "the callback waits in the program's queue: {queued:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_in_spanish_opts_out_and_is_not_routed_to_a_person() {
    let world = World::at(NOW).await;
    world
        .upsert(member("carla", CoordinatorRole::Coordinator))
        .await;
    world.open_case("case-3", MOBILE, "carla", "").await;
    let (status, _) = world.text(MOBILE, " ¡Alto! ", "SM3", true).await;
    assert_eq!(status, 200);
    let opted_out = world
        .first("OptOutReceived", |e| match &e.payload {
            Some(Payload::OptOutReceived(o)) => Some((e.case_id.clone(), o.clone())),
            _ => None,
        })
        .await;
    assert_eq!(opted_out.0, "case-3");
    assert_eq!(opted_out.1.keyword, "ALTO");
    assert_eq!(opted_out.1.channel(), Channel::Sms);
    assert!(
        world.worklist("carla").await.is_empty(),
        "a keyword needs no person"
    );
    // The confirmation is dispatch's to send, in the keyword's language.
    let replies = TopicReader::start(
        &world.prefix,
        &Topics::new(world.prefix.clone()).name(Stream::Outreach),
    );
    let reply = replies
        .wait_for("the confirmation request", WAIT, |e| match &e.payload {
            Some(Payload::OutreachRequested(r)) => Some((e.case_id.clone(), r.clone())),
            _ => None,
        })
        .await;
    assert_eq!(reply.0, "case-3");
    assert_eq!(reply.1.purpose(), OutreachPurpose::KeywordReply);
    assert_eq!(reply.1.template_id, "keyword-stop");
    assert_eq!(reply.1.language(), Language::Es);
    assert_eq!(reply.1.channel(), Channel::Sms);
    assert_eq!(
        reply.1.destination.and_then(|d| d.value),
        Some(contact_point::Value::PhoneE164(MOBILE.into()))
    );

    // "Stop please" is not STOP: routed, with a review task.
    let (status, _) = world
        .text(MOBILE, "Stop please, I already refilled", "SM4", true)
        .await;
    assert_eq!(status, 200);
    let kinds: Vec<i32> = testkit_wait_tasks(&world, "carla", 2).await;
    assert!(
        kinds.contains(&(TaskKind::KeywordReview as i32)),
        "{kinds:?}"
    );
    assert_eq!(
        world
            .events
            .all()
            .iter()
            .filter(|e| matches!(e.payload, Some(Payload::OptOutReceived(_))))
            .count(),
        1,
        "only the real STOP opts out"
    );
}

async fn testkit_wait_tasks(world: &World, coordinator: &str, count: usize) -> Vec<i32> {
    touchpoint_platform::testkit::eventually("tasks", WAIT, || async {
        let tasks = world.worklist(coordinator).await;
        (tasks.len() >= count).then(|| tasks.iter().map(|t| t.kind).collect())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spanish_side_effect_is_flagged_with_a_24_hour_clock_and_a_high_priority_review() {
    let world = World::at(NOW).await;
    world
        .upsert(member("carla", CoordinatorRole::Coordinator))
        .await;
    world.open_case("case-4", MOBILE, "carla", "").await;
    let (status, _) = world
        .text(
            MOBILE,
            "Tengo náuseas y anoche fui a urgencias",
            "SM5",
            true,
        )
        .await;
    assert_eq!(status, 200);
    let flag = world
        .first("AdverseEventSuspected", |e| match &e.payload {
            Some(Payload::AdverseEventSuspected(a)) => Some(a.clone()),
            _ => None,
        })
        .await;
    assert_eq!(flag.matched_terms, vec!["nauseas", "urgencias"]);
    assert_eq!(
        flag.received_at.map(|t| t.seconds),
        Some(utc(NOW).timestamp())
    );
    assert_eq!(
        flag.report_due_at.map(|t| t.seconds),
        Some(utc("2026-11-25T15:00:00Z").timestamp())
    );
    let tasks = world.worklist("carla").await;
    assert_eq!(
        tasks[0].kind(),
        TaskKind::AdverseEventReview,
        "first: {tasks:?}"
    );
    assert_eq!(
        flag.review_task_id, tasks[0].task_id,
        "the flag names the review task that closes it"
    );
    assert!(tasks[0].priority > tasks[1].priority);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_senders_bad_signatures_and_oversized_bodies() {
    let world = World::at(NOW).await;
    world
        .upsert(member("carla", CoordinatorRole::Coordinator))
        .await;

    let (status, _) = world.text(MOBILE, "hola", "SM6", false).await;
    assert_eq!(status, 403, "a wrong signature is refused");
    let url = format!("http://{}/inbound/sms", world.http);
    let (status, _) = world
        .post(
            &url,
            &[
                ("From".into(), MOBILE.into()),
                ("Body".into(), "hola".into()),
            ],
            &[],
        )
        .await;
    assert_eq!(status, 403, "no signature is refused");
    let big = "x".repeat(70 * 1024);
    let (status, _) = world
        .post_raw(&url, &[(signature::HEADER, "x")], big.into_bytes())
        .await;
    assert_eq!(status, 413);

    // Not a phone number at all: the general queue, not a crash.
    let (status, _) = world.text("not-a-number", "hello?", "SM7", true).await;
    assert_eq!(status, 200);
    let unknown = route_call(&world, "+19995550000").await;
    assert!(unknown.case_ids.is_empty());
    assert_eq!(
        (unknown.rule.as_str(), unknown.queue.as_str()),
        ("queue", "general")
    );
    let tasks = world.worklist("carla").await;
    assert_eq!(
        tasks.len(),
        1,
        "the text waits in the general queue: {tasks:?}"
    );
    assert_eq!(tasks[0].queue, "general");
    assert!(world.events.all().is_empty(), "no case, no case events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_and_fax_webhooks_are_signed_and_routed() {
    let world = World::at(NOW).await;
    world
        .upsert(member("carla", CoordinatorRole::Coordinator))
        .await;
    world.open_case("case-5", MOBILE, "carla", "").await;

    let email_url = format!("http://{}/inbound/email", world.http);
    let email = |timestamp: String, id: &str| {
        let token = format!("token-{id}");
        let signed = signature::email::sign(EMAIL_KEY, &timestamp, &token);
        vec![
            ("sender".to_owned(), "Ana Ruiz <ANA@Example.com>".to_owned()),
            ("recipient".to_owned(), "care@hub.example".to_owned()),
            ("subject".to_owned(), "Pregunta".to_owned()),
            ("body-plain".to_owned(), "Me salió un sarpullido".to_owned()),
            ("Message-Id".to_owned(), format!("<{id}@example.com>")),
            ("timestamp".to_owned(), timestamp),
            ("token".to_owned(), token),
            ("signature".to_owned(), signed),
        ]
    };
    let now = chrono::Utc::now().timestamp().to_string();
    let stale = (chrono::Utc::now().timestamp() - 3600).to_string();
    let (status, _) = world.post(&email_url, &email(stale, "old"), &[]).await;
    assert_eq!(status, 403, "a replay from an hour ago is refused");
    let (status, _) = world.post(&email_url, &email(now, "m1"), &[]).await;
    assert_eq!(status, 200);
    let flag = world
        .first("an email's AdverseEventSuspected", |e| match &e.payload {
            Some(Payload::AdverseEventSuspected(a)) => Some((e.case_id.clone(), a.clone())),
            _ => None,
        })
        .await;
    assert_eq!(flag.0, "case-5");
    assert_eq!(flag.1.matched_terms, vec!["sarpullido"]);

    let fax_url = format!("http://{}/inbound/fax", world.http);
    let params = vec![
        ("direction".to_owned(), "received".to_owned()),
        (
            "fax".to_owned(),
            format!(r#"{{"id": 991, "from_number": "{MOBILE}", "num_pages": 2}}"#),
        ),
    ];
    let unsigned = world.post(&fax_url, &params, &[]).await;
    assert_eq!(unsigned.0, 403);
    let signed = signature::fax::sign(FAX_TOKEN, &fax_url, &params);
    let (status, _) = world
        .post(
            &fax_url,
            &params,
            &[(signature::fax::HEADER, signed.as_str())],
        )
        .await;
    assert_eq!(status, 200);
    world
        .first("a fax's InboundReceived", |e| match &e.payload {
            Some(Payload::InboundReceived(r)) if r.channel() == Channel::Fax => Some(()),
            _ => None,
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caregivers_number_finds_every_case_it_reaches() {
    let world = World::at(NOW).await;
    world
        .upsert(member("carla", CoordinatorRole::Coordinator))
        .await;
    world.open_case("case-a", MOBILE, "carla", "").await;
    world.open_case("case-b", MOBILE, "carla", "").await;
    let routed = route_call(&world, "+1 212-555-0142").await;
    assert_eq!(
        routed.case_ids,
        vec!["case-a".to_owned(), "case-b".to_owned()]
    );
    assert_eq!(routed.rule, "coordinator");
    // Each case's timeline hears of the call.
    let mut heard: Vec<String> =
        touchpoint_platform::testkit::eventually("both cases' events", WAIT, || async {
            let cases: Vec<String> = world
                .events
                .all()
                .iter()
                .filter(|e| matches!(e.payload, Some(Payload::InboundReceived(_))))
                .map(|e| e.case_id.clone())
                .collect();
            (cases.len() >= 2).then_some(cases)
        })
        .await;
    heard.sort();
    assert_eq!(heard, vec!["case-a".to_owned(), "case-b".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_after_hours_callback_is_due_inside_the_patients_window_and_a_shift() {
    // Tuesday 22:00 in New York, 19:00 in Los Angeles: nobody is on shift.
    let world = World::at("2026-11-25T03:00:00Z").await;
    world
        .upsert(member("carla", CoordinatorRole::Coordinator))
        .await;
    let mut opened = case_opened("case-la", MOBILE);
    if let Some(Payload::CaseOpened(o)) = &mut opened.payload {
        o.time_zone = "America/Los_Angeles".into();
    }
    world.publish(&[(Stream::Case, opened)]).await;
    world
        .until_row(
            "the case's zone in routing",
            "SELECT time_zone FROM routing.case_views WHERE case_id = $1",
            "case-la",
            |zone: String| zone == "America/Los_Angeles",
        )
        .await;
    // Carla's next shift starts Wednesday 09:00 in New York, plus the 30-minute
    // SLA: 06:30 for the patient, before the adherence program's 09:00. The
    // callback is due at 09:00 in Los Angeles, 12:00 in New York, on shift.
    let callback = route_call(&world, MOBILE).await;
    assert_eq!(callback.rule, "callback");
    assert_eq!(
        callback.callback_due_at.map(|t| t.seconds),
        Some(utc("2026-11-25T17:00:00Z").timestamp())
    );
}
