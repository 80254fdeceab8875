//! Email through the Mailgun adapter's real HTTP code, against the sandbox's
//! Mailgun stand-in (whose events, as Mailgun's, are searchable only a moment
//! after a message is taken): an answer that never came is looked up by the
//! attempt's variable and not sent again, a request that never arrived is sent
//! again, and signed event webhooks settle the attempt while unsigned ones are
//! refused.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::*;
use http::Method;
use touchpoint_dispatch::MailgunProvider;
use touchpoint_dispatch::providers::email::Unsubscribe;
use touchpoint_dispatch::providers::http::{Exchange, HttpClient};
use touchpoint_platform::testkit::{eventually, free_port};
use touchpoint_platform::topics::Stream;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{Channel, GetAttemptRequest};
use touchpoint_sandbox::Fault;
use touchpoint_sandbox::mailgun::{MailgunOptions, MailgunSandbox};

const DOMAIN: &str = "mg.hub.example";
const API_KEY: &str = "sandbox-mailgun-key";
const SIGNING_KEY: &str = "sandbox-mailgun-signing-key";

async fn sandbox() -> MailgunSandbox {
    MailgunSandbox::start(MailgunOptions {
        domain: DOMAIN,
        api_key: API_KEY,
        signing_key: SIGNING_KEY,
        search_delay: Duration::from_secs(1),
    })
    .await
    .unwrap_or_else(|e| panic!("mailgun sandbox: {e}"))
}

fn provider(sandbox: &MailgunSandbox) -> MailgunProvider {
    MailgunProvider {
        base_url: sandbox.url(),
        domain: DOMAIN.into(),
        api_key: API_KEY.into(),
        from: "Care Team <care@hub.example>"
            .parse()
            .unwrap_or_else(|e| panic!("{e}")),
        signing_key: SIGNING_KEY.into(),
        rate: None,
        unsubscribe: Unsubscribe {
            url: "https://hub.example/unsubscribe/email".into(),
            key: "unsubscribe-key".into(),
        },
    }
}

/// Opens a case with email consent, requests the welcome by email and
/// returns its attempt id.
async fn request_email(world: &World, case_id: &str) -> String {
    world.open_case(case_id, &[Channel::Email]).await;
    let request = requested(case_id, Channel::Email);
    let id = attempt_id(&request);
    world.publish(&[(Stream::Outreach, request)]).await;
    id
}

async fn sent_id(outcomes: &Outcomes, attempt: &str) -> String {
    let first = outcomes.first(attempt).await;
    match first.payload {
        Some(Payload::AttemptSent(sent)) => {
            assert_eq!(sent.provider, "mailgun");
            sent.provider_message_id
        }
        other => panic!("not sent: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_whose_answer_was_lost_is_looked_up_and_sent_once_not_lost_and_not_twice() {
    let mailgun = sandbox().await;
    // The first hand-off is taken but its answer never comes; the second never
    // arrives at all. Either may meet either attempt.
    mailgun.inject(Fault::AcceptThenStall(Duration::from_secs(3)));
    mailgun.inject(Fault::Stall(Duration::from_secs(3)));
    let world = World::running_with(NOW, |c| {
        c.mailgun = Some(provider(&mailgun));
        c.provider_timeout = Duration::from_millis(500);
        c.sender.sending_timeout = Duration::from_secs(2);
    })
    .await;
    let outcomes = world.outcomes();
    let first = request_email(&world, "case-mailgun-lost-1").await;
    let second = request_email(&world, "case-mailgun-lost-2").await;

    for attempt in [&first, &second] {
        let message_id = sent_id(&outcomes, attempt).await;
        let mails: Vec<_> = mailgun
            .received()
            .into_iter()
            .filter(|m| m.variables.get("attempt_id") == Some(attempt))
            .collect();
        assert_eq!(
            mails.len(),
            1,
            "one email for {attempt}, not none and not two"
        );
        assert_eq!(format!("<{message_id}>"), mails[0].id);
        assert_eq!(mails[0].to, "ana@example.com");
        assert!(
            mails[0]
                .headers
                .get("List-Unsubscribe")
                .is_some_and(|l| l.starts_with("<https://hub.example/unsubscribe/email?case=")),
            "the one-click unsubscribe rides along"
        );
    }
    assert_eq!(mailgun.received().len(), 2, "no email sent twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_mailgun_events_settle_the_email_and_unsigned_ones_are_refused() {
    let mailgun = sandbox().await;
    let port = free_port();
    let world = World::running_with(NOW, |c| {
        c.mailgun = Some(provider(&mailgun));
        c.http_addr = SocketAddr::from(([127, 0, 0, 1], port));
    })
    .await;
    let webhook = format!("http://127.0.0.1:{port}/callbacks/email/mailgun");
    for kind in ["delivered", "permanent_fail", "temporary_fail"] {
        mailgun.webhook(kind, &webhook);
    }
    let outcomes = world.outcomes();
    let delivered = request_email(&world, "case-mailgun-ok").await;
    let bounced = request_email(&world, "case-mailgun-bounce").await;
    let mail_of = |attempt: &str| {
        let id = mailgun
            .received()
            .into_iter()
            .find(|m| m.variables.get("attempt_id").map(String::as_str) == Some(attempt))
            .map(|m| m.id);
        id.unwrap_or_else(|| panic!("no email for {attempt}"))
    };
    for attempt in [&delivered, &bounced] {
        sent_id(&outcomes, attempt).await;
    }

    // Unsigned, and signed with another key: refused, nothing changes.
    let client = HttpClient::new(Duration::from_secs(5)).unwrap_or_else(|e| panic!("{e}"));
    let forged = serde_json::json!({
        "signature": { "timestamp": chrono::Utc::now().timestamp().to_string(),
                       "token": "abc", "signature": "00" },
        "event-data": { "event": "delivered", "user-variables": { "attempt_id": delivered } },
    });
    let answer = client
        .send(
            Method::POST,
            &webhook,
            &[("content-type", "application/json")],
            forged.to_string().into_bytes(),
        )
        .await;
    assert!(
        matches!(answer, Exchange::Answered { status, .. } if status.as_u16() == 403),
        "{answer:?}"
    );
    let state = |id: String| {
        let mut client = world.client.clone();
        async move {
            client
                .get_attempt(GetAttemptRequest { attempt_id: id })
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .into_inner()
                .state
        }
    };
    assert_eq!(state(delivered.clone()).await, "sent");

    // A temporary failure changes nothing (Mailgun tries again); delivery and
    // a permanent failure settle the attempts.
    let report = |attempt: &str, event: &'static str, severity: Option<&'static str>| {
        let id = mail_of(attempt);
        let mailgun = &mailgun;
        async move { mailgun.report(&id, event, severity).await }
    };
    assert_eq!(
        report(&bounced, "failed", Some("temporary")).await,
        Some(200)
    );
    assert_eq!(state(bounced.clone()).await, "sent");
    assert_eq!(report(&delivered, "delivered", None).await, Some(200));
    assert_eq!(
        report(&bounced, "failed", Some("permanent")).await,
        Some(200)
    );
    eventually("the delivery", WAIT, || async {
        outcomes
            .of(&delivered)
            .into_iter()
            .find(|e| matches!(e.payload, Some(Payload::AttemptDelivered(_))))
    })
    .await;
    let failure = eventually("the bounce", WAIT, || async {
        outcomes
            .of(&bounced)
            .into_iter()
            .find_map(|e| match e.payload {
                Some(Payload::AttemptFailed(f)) => Some(f),
                _ => None,
            })
    })
    .await;
    assert!(failure.permanent, "a bounce is final");
    assert_eq!(failure.provider_code, "smtp_550");
    assert_eq!(state(delivered).await, "delivered");
    assert_eq!(state(bounced).await, "failed");
}
