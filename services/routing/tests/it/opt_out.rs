//! Revocation by any reasonable means (FCC 24-24): every opt-out word the order
//! names, a keyword with courtesy words around it, and plain-language requests
//! in English and Spanish opt out at once with one confirmation; an ambiguous
//! request goes to a person as a keyword review instead, who may complete it
//! as an opt-out. An email reply opts its address out of email the same way,
//! read from what was written above the quote, and so does an email's signed
//! one-click unsubscribe (RFC 8058).

use crate::support::*;
use touchpoint_platform::testkit::{self, TopicReader};
use touchpoint_platform::topics::{Stream, Topics};
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    Channel, CompleteTaskRequest, ContactPoint, CoordinatorRole, OptOutReceived, OutreachPurpose,
    TaskKind, TaskOutcome, contact_point,
};

fn phone(number: &str) -> Option<ContactPoint> {
    Some(ContactPoint {
        value: Some(contact_point::Value::PhoneE164(number.into())),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_opt_out_stop_thank_you_and_plain_words_each_opt_out_with_one_confirmation() {
    let world = World::at(NOW).await;
    world
        .upsert(member("carla", CoordinatorRole::Coordinator))
        .await;
    let messages = [
        ("+12125550101", "REVOKE", "REVOKE"),
        ("+12125550102", "Opt out", "OPT OUT"),
        ("+12125550103", "Stop. Thank you", "STOP"),
        ("+12125550104", "ALTO por favor", "ALTO"),
        ("+12125550105", "Please stop texting me", "stop texting me"),
        // "ya" (now) is a courtesy word like "por favor".
        (
            "+12125550106",
            "ya no me escriban por favor",
            "no me escriban",
        ),
    ];
    for (i, (number, _, _)) in messages.iter().enumerate() {
        world
            .open_case(&format!("case-{i}"), number, "carla", "")
            .await;
    }
    let replies = TopicReader::start(
        &world.prefix,
        &Topics::new(world.prefix.clone()).name(Stream::Outreach),
    );
    for (i, (number, body, _)) in messages.iter().enumerate() {
        let (status, _) = world.text(number, body, &format!("SM-{i}"), true).await;
        assert_eq!(status, 200, "{body}");
    }

    let opt_outs: Vec<(String, OptOutReceived)> =
        testkit::eventually("an opt-out for every message", WAIT, || async {
            let found: Vec<_> = world
                .events
                .all()
                .into_iter()
                .filter_map(|e| match e.payload {
                    Some(Payload::OptOutReceived(o)) => Some((e.case_id, o)),
                    _ => None,
                })
                .collect();
            (found.len() >= messages.len()).then_some(found)
        })
        .await;
    for (i, (number, body, keyword)) in messages.iter().enumerate() {
        let case_id = format!("case-{i}");
        let found: Vec<_> = opt_outs.iter().filter(|(c, _)| *c == case_id).collect();
        assert_eq!(found.len(), 1, "{body}: one opt-out");
        let opt_out = &found[0].1;
        assert_eq!(opt_out.keyword, *keyword, "{body}");
        assert_eq!(opt_out.channel(), Channel::Sms);
        assert_eq!(opt_out.contact_point, phone(number), "{body}: by number");
        assert_eq!(
            opt_out.received_at.map(|t| t.seconds),
            Some(utc(NOW).timestamp()),
            "{body}: counts from receipt"
        );
    }

    // One confirmation per number, and no person needed.
    let confirmations = testkit::eventually("a confirmation per number", WAIT, || async {
        let found: Vec<_> = replies
            .all()
            .into_iter()
            .filter_map(|e| match e.payload {
                Some(Payload::OutreachRequested(r))
                    if r.purpose() == OutreachPurpose::KeywordReply =>
                {
                    Some(r)
                }
                _ => None,
            })
            .collect();
        (found.len() >= messages.len()).then_some(found)
    })
    .await;
    for (number, body, _) in messages {
        let to_number = confirmations
            .iter()
            .filter(|r| r.destination == phone(number))
            .count();
        assert_eq!(to_number, 1, "{body}: one confirmation");
    }
    assert!(
        confirmations
            .iter()
            .all(|r| r.template_id == "keyword-stop")
    );
    assert!(world.worklist("carla").await.is_empty(), "no person needed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_request_goes_to_a_person_who_may_complete_it_as_an_opt_out() {
    let world = World::at(NOW).await;
    world
        .upsert(member("carla", CoordinatorRole::Coordinator))
        .await;
    world.open_case("case-1", MOBILE, "carla", "").await;
    let (status, _) = world.text(MOBILE, "No más", "SM-1", true).await;
    assert_eq!(status, 200);
    let kinds = testkit::eventually("the review task", WAIT, || async {
        let tasks = world.worklist("carla").await;
        (!tasks.is_empty()).then(|| tasks.iter().map(|t| t.kind).collect::<Vec<_>>())
    })
    .await;
    assert!(
        kinds.contains(&(TaskKind::KeywordReview as i32)),
        "{kinds:?}"
    );
    world
        .first("the message's routing", |e| match &e.payload {
            Some(Payload::ContactRouted(_)) => Some(()),
            _ => None,
        })
        .await;
    assert!(
        !world
            .events
            .all()
            .iter()
            .any(|e| matches!(e.payload, Some(Payload::OptOutReceived(_)))),
        "a person decides"
    );

    // The person decides it was an opt-out: the number opts out of SMS from the
    // message's receipt, for the case that holds it.
    let review = world
        .worklist("carla")
        .await
        .into_iter()
        .find(|t| t.kind() == TaskKind::KeywordReview)
        .unwrap_or_else(|| panic!("the review task"));
    let wrong_way = world
        .client
        .clone()
        .complete_task(CompleteTaskRequest {
            task_id: review.task_id.clone(),
            coordinator_id: "carla".into(),
            outcome: TaskOutcome::Reached as i32,
        })
        .await;
    assert!(wrong_way.is_err(), "a review is not a call");
    world
        .client
        .clone()
        .complete_task(CompleteTaskRequest {
            task_id: review.task_id.clone(),
            coordinator_id: "carla".into(),
            outcome: TaskOutcome::OptedOut as i32,
        })
        .await
        .unwrap_or_else(|e| panic!("complete: {e}"));
    let (case_id, opt_out) = world
        .first("the reviewed opt-out", |e| match &e.payload {
            Some(Payload::OptOutReceived(o)) => Some((e.case_id.clone(), o.clone())),
            _ => None,
        })
        .await;
    assert_eq!(case_id, "case-1");
    assert_eq!(opt_out.keyword, "REVIEWED");
    assert_eq!(opt_out.channel(), Channel::Sms);
    assert_eq!(opt_out.contact_point, phone(MOBILE));
    assert_eq!(
        opt_out.received_at.map(|t| t.seconds),
        Some(utc(NOW).timestamp()),
        "as of the message's receipt"
    );
    let completed = world
        .first("the review's completion", |e| match &e.payload {
            Some(Payload::TaskCompleted(t)) if t.task_id == review.task_id => Some(t.clone()),
            _ => None,
        })
        .await;
    assert_eq!(completed.outcome, "opted_out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_reply_saying_unsubscribe_above_the_quote_opts_the_address_out_of_email() {
    let world = World::at(NOW).await;
    world
        .upsert(member("carla", CoordinatorRole::Coordinator))
        .await;
    world.open_case("case-mail", MOBILE, "carla", "").await;
    // Our own words quoted back ("Reply STOP…") are not the patient's.
    let quoted =
        "Thanks, see you Monday\n\nOn Mon, Nov 23, 2026 Care Team wrote:\n> Reply STOP to opt out";
    assert_eq!(
        world
            .email("ana@example.com", "Re: Your refill", quoted, "m-thanks")
            .await,
        200
    );
    world
        .first("the thank-you received", |e| match &e.payload {
            Some(Payload::InboundReceived(r)) if r.channel() == Channel::Email => Some(()),
            _ => None,
        })
        .await;
    let unsubscribe = "Unsubscribe\n\nOn Mon, Nov 23, 2026 Care Team wrote:\n> Your refill is due";
    assert_eq!(
        world
            .email(
                "Ana Ruiz <ANA@Example.com>",
                "Re: Your refill",
                unsubscribe,
                "m-unsub"
            )
            .await,
        200
    );
    let opt_out = world
        .first("the email opt-out", |e| match &e.payload {
            Some(Payload::OptOutReceived(o)) => Some((e.case_id.clone(), o.clone())),
            _ => None,
        })
        .await;
    assert_eq!(opt_out.0, "case-mail");
    assert_eq!(opt_out.1.channel(), Channel::Email);
    assert_eq!(opt_out.1.keyword, "UNSUBSCRIBE");
    assert_eq!(
        opt_out.1.contact_point,
        Some(ContactPoint {
            value: Some(contact_point::Value::Email("ana@example.com".into())),
        }),
        "the address, not the case's phone"
    );
    let opt_outs = world
        .events
        .all()
        .iter()
        .filter(|e| matches!(e.payload, Some(Payload::OptOutReceived(_))))
        .count();
    assert_eq!(opt_outs, 1, "the quoted STOP opted nothing out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emails_one_click_unsubscribe_opts_its_address_out_and_a_forged_one_does_nothing() {
    let world = World::at(NOW).await;
    world
        .upsert(member("carla", CoordinatorRole::Coordinator))
        .await;
    world.open_case("case-click", MOBILE, "carla", "").await;
    let link = |sig: &str| {
        format!(
            "http://{}/unsubscribe/email?case=case-click&sig={sig}",
            world.http
        )
    };
    let here = &world;
    let one_click = move |url: String| async move {
        here.post_raw(
            &url,
            &[("content-type", "application/x-www-form-urlencoded")],
            b"List-Unsubscribe=One-Click".to_vec(),
        )
        .await
        .0
    };
    // Signed for another address, or with another key: refused.
    let other = touchpoint_platform::signature::unsubscribe::sign(
        UNSUBSCRIBE_KEY,
        "case-click",
        "someone@example.com",
    );
    assert_eq!(one_click(link(&other)).await, 403);
    let forged =
        touchpoint_platform::signature::unsubscribe::sign("guess", "case-click", "ana@example.com");
    assert_eq!(one_click(link(&forged)).await, 403);

    let sig = touchpoint_platform::signature::unsubscribe::sign(
        UNSUBSCRIBE_KEY,
        "case-click",
        "ana@example.com",
    );
    // Following the link shows a button; it changes nothing by itself.
    let page = match world
        .web
        .send(http::Method::GET, &link(&sig), &[], Vec::new())
        .await
    {
        touchpoint_platform::http_client::Exchange::Answered { status, body } => {
            (status, String::from_utf8_lossy(&body).into_owned())
        }
        other => panic!("no answer: {other:?}"),
    };
    assert_eq!(page.0, 200);
    assert!(page.1.contains("List-Unsubscribe") && !page.1.contains("ana@"));

    assert_eq!(one_click(link(&sig)).await, 200);
    let opt_out = world
        .first("the one-click opt-out", |e| match &e.payload {
            Some(Payload::OptOutReceived(o)) => Some((e.case_id.clone(), o.clone())),
            _ => None,
        })
        .await;
    assert_eq!(opt_out.0, "case-click");
    assert_eq!(opt_out.1.channel(), Channel::Email);
    assert_eq!(
        opt_out.1.contact_point,
        Some(ContactPoint {
            value: Some(contact_point::Value::Email("ana@example.com".into())),
        })
    );
    let opt_outs = world
        .events
        .all()
        .iter()
        .filter(|e| matches!(e.payload, Some(Payload::OptOutReceived(_))))
        .count();
    assert_eq!(
        opt_outs, 1,
        "the refused links and the page opted nothing out"
    );
}
