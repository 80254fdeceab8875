//! SMS through the Twilio adapter's real HTTP code, against the sandbox (over
//! HTTPS too, refusing a certificate the roots do not trust): written
//! in the patient's language and sent once, retried after a provider error, never
//! sent twice after an answer that never came, failed over to the second
//! provider, and confirmed by signed status callbacks only.

use std::time::Duration;

use crate::support::*;
use http::Method;
use touchpoint_dispatch::domain::sms;
use touchpoint_dispatch::providers::http::{Exchange, HttpClient};
use touchpoint_dispatch::providers::signature;
use touchpoint_platform::testkit::eventually;
use touchpoint_platform::tls::DevCa;
use touchpoint_platform::topics::Stream;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    Channel, ContactPoint, GetAttemptRequest, GetAttemptResponse, Language, contact_point,
};
use touchpoint_sandbox::{Fault, Sandbox};

async fn sandbox() -> Sandbox {
    Sandbox::start(ACCOUNT_SID, AUTH_TOKEN)
        .await
        .unwrap_or_else(|e| panic!("sandbox: {e}"))
}

async fn attempt(world: &World, id: &str) -> GetAttemptResponse {
    world
        .client
        .clone()
        .get_attempt(GetAttemptRequest {
            attempt_id: id.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner()
}

/// Opens a case with SMS consent, requests a welcome text, and returns its
/// attempt id.
async fn request_sms(world: &World, case_id: &str) -> String {
    world.open_case(case_id, &[Channel::Sms]).await;
    let request = requested(case_id, Channel::Sms);
    let id = attempt_id(&request);
    world.publish(&[(Stream::Outreach, request)]).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_goes_out_once_written_in_the_patients_language() {
    let provider = sandbox().await;
    let world =
        World::running_with(NOW, |c| c.sms = vec![sms_provider("primary", &provider)]).await;
    let outcomes = world.outcomes();
    let id = request_sms(&world, "case-es").await;
    let sent = outcomes.first(&id).await;
    let Some(Payload::AttemptSent(sent)) = sent.payload else {
        panic!("not sent: {sent:?}");
    };
    let received = provider.received();
    assert_eq!(received.len(), 1);
    let message = &received[0];
    assert_eq!(message.to, "+12125550142");
    assert!(message.body.starts_with("Hola Ana,"), "the Spanish welcome");
    assert!(
        message
            .status_callback
            .as_deref()
            .is_some_and(|u| u.ends_with(&id))
    );
    assert_eq!(sent.provider, "primary");
    assert_eq!(sent.provider_message_id, message.sid);
    assert_eq!(sent.language(), Language::Es);
    assert!(!sent.language_fell_back);
    assert_eq!(sent.segments as usize, sms::measure(&message.body).segments);
    assert!(
        sent.segments > 1,
        "á forces UCS-2: the welcome takes more than one segment"
    );
    assert_eq!(attempt(&world, &id).await.state, "sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_500_then_200_sends_once() {
    let provider = sandbox().await;
    provider.inject(Fault::Status(500));
    let world =
        World::running_with(NOW, |c| c.sms = vec![sms_provider("primary", &provider)]).await;
    let outcomes = world.outcomes();
    let id = request_sms(&world, "case-500").await;
    let sent = outcomes.first(&id).await;
    assert!(
        matches!(sent.payload, Some(Payload::AttemptSent(_))),
        "{sent:?}"
    );
    assert_eq!(provider.received().len(), 1);
    assert_eq!(
        attempt(&world, &id).await.tries,
        2,
        "the 500, then the one taken"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_never_came_is_looked_up_and_not_sent_again() {
    let provider = sandbox().await;
    // The provider takes the message but answers after the client gave up.
    provider.inject(Fault::AcceptThenStall(Duration::from_secs(3)));
    let world = World::running_with(NOW, |c| {
        c.sms = vec![sms_provider("primary", &provider)];
        c.provider_timeout = Duration::from_millis(500);
    })
    .await;
    let outcomes = world.outcomes();
    let id = request_sms(&world, "case-timeout").await;
    let sent = outcomes.first(&id).await;
    let Some(Payload::AttemptSent(sent)) = sent.payload else {
        panic!("not sent: {sent:?}");
    };
    let received = provider.received();
    assert_eq!(received.len(), 1, "no second message");
    assert_eq!(sent.provider_message_id, received[0].sid, "found by lookup");
    let settled = attempt(&world, &id).await;
    assert_eq!((settled.state.as_str(), settled.tries), ("sent", 1));
}

/// A sandbox serving HTTPS with a certificate for 127.0.0.1 signed by `ca`.
async fn sandbox_over_https(ca: &DevCa) -> Sandbox {
    let identity = ca
        .issue(&["127.0.0.1"])
        .unwrap_or_else(|e| panic!("certificate: {e}"));
    Sandbox::start_tls(ACCOUNT_SID, AUTH_TOKEN, &identity)
        .await
        .unwrap_or_else(|e| panic!("sandbox: {e}"))
}

fn dev_ca() -> DevCa {
    DevCa::generate().unwrap_or_else(|e| panic!("CA: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_goes_out_over_https_to_a_provider_whose_certificate_the_roots_trust() {
    let ca = dev_ca();
    let provider = sandbox_over_https(&ca).await;
    assert!(provider.url().starts_with("https://"));
    let world = World::running_with(NOW, |c| {
        c.sms = vec![sms_provider("primary", &provider)];
        c.provider_roots = Some(ca.cert_pem());
    })
    .await;
    let outcomes = world.outcomes();
    let id = request_sms(&world, "case-https").await;
    let sent = outcomes.first(&id).await;
    let Some(Payload::AttemptSent(sent)) = sent.payload else {
        panic!("not sent: {sent:?}");
    };
    let received = provider.received();
    assert_eq!(received.len(), 1);
    assert_eq!(sent.provider_message_id, received[0].sid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_whose_certificate_the_roots_do_not_trust_is_never_given_the_text() {
    let ours = dev_ca();
    let impostor = sandbox_over_https(&dev_ca()).await;
    let failover = sandbox_over_https(&ours).await;
    let world = World::running_with(NOW, |c| {
        c.sms = vec![
            sms_provider("primary", &impostor),
            sms_provider("failover", &failover),
        ];
        c.provider_roots = Some(ours.cert_pem());
        c.sender.max_tries = 2;
    })
    .await;
    let outcomes = world.outcomes();
    let id = request_sms(&world, "case-impostor").await;
    let sent = outcomes.first(&id).await;
    let Some(Payload::AttemptSent(sent)) = sent.payload else {
        panic!("not sent: {sent:?}");
    };
    assert_eq!(
        sent.provider, "failover",
        "the untrusted primary was refused"
    );
    assert!(
        impostor.received().is_empty(),
        "no text crossed the handshake"
    );
    assert_eq!(failover.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_its_tries_the_primary_fails_over_to_the_second_provider() {
    let primary = sandbox().await;
    let failover = sandbox().await;
    primary.inject(Fault::Status(503));
    primary.inject(Fault::Status(503));
    let world = World::running_with(NOW, |c| {
        c.sms = vec![
            sms_provider("primary", &primary),
            sms_provider("failover", &failover),
        ];
        c.sender.max_tries = 2;
    })
    .await;
    let outcomes = world.outcomes();
    let id = request_sms(&world, "case-failover").await;
    let sent = outcomes.first(&id).await;
    let Some(Payload::AttemptSent(sent)) = sent.payload else {
        panic!("not sent: {sent:?}");
    };
    assert_eq!(sent.provider, "failover");
    assert_eq!(primary.received().len(), 0);
    assert_eq!(failover.received().len(), 1);
    assert_eq!(attempt(&world, &id).await.tries, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_the_provider_refuses_fails_permanently_at_once() {
    let provider = sandbox().await;
    provider.inject(Fault::Refuse {
        status: 400,
        code: 21211,
    });
    let world =
        World::running_with(NOW, |c| c.sms = vec![sms_provider("primary", &provider)]).await;
    let outcomes = world.outcomes();
    let id = request_sms(&world, "case-wrong").await;
    match outcomes.first(&id).await.payload {
        Some(Payload::AttemptFailed(f)) => {
            assert!(f.permanent);
            assert_eq!(
                (f.provider.as_str(), f.provider_code.as_str()),
                ("primary", "21211")
            );
        }
        other => panic!("not failed: {other:?}"),
    }
    assert_eq!(attempt(&world, &id).await.tries, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_callbacks_are_applied_and_unsigned_ones_change_nothing() {
    let provider = sandbox().await;
    let world =
        World::running_with(NOW, |c| c.sms = vec![sms_provider("primary", &provider)]).await;
    let outcomes = world.outcomes();
    let id = request_sms(&world, "case-cb").await;
    outcomes.first(&id).await;
    let message = provider.received().remove(0);
    let url = message.status_callback.clone().unwrap_or_default();
    let client = HttpClient::new(Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"));
    let post = |signed: Option<String>, params: Vec<(String, String)>| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params.iter())
                .finish();
            let mut headers = vec![(
                "content-type",
                "application/x-www-form-urlencoded".to_owned(),
            )];
            if let Some(signed) = signed {
                headers.push((signature::HEADER, signed));
            }
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            match client
                .send(Method::POST, &url, &headers, body.into_bytes())
                .await
            {
                Exchange::Answered { status, .. } => status.as_u16(),
                other => panic!("{other:?}"),
            }
        }
    };
    let delivered = vec![
        ("MessageSid".to_owned(), message.sid.clone()),
        ("MessageStatus".to_owned(), "delivered".to_owned()),
    ];
    assert_eq!(post(None, delivered.clone()).await, 403, "unsigned");
    let forged = signature::sign("not-the-token", &url, &delivered);
    assert_eq!(
        post(Some(forged), delivered.clone()).await,
        403,
        "wrongly signed"
    );
    assert_eq!(attempt(&world, &id).await.state, "sent", "nothing changed");

    assert_eq!(
        provider.report(&message.sid, "delivered", None).await,
        Some(200)
    );
    eventually("the delivery", WAIT, || async {
        outcomes
            .of(&id)
            .into_iter()
            .find(|e| matches!(e.payload, Some(Payload::AttemptDelivered(_))))
    })
    .await;
    assert_eq!(attempt(&world, &id).await.state, "delivered");
    // A repeat changes nothing.
    assert_eq!(
        provider.report(&message.sid, "delivered", None).await,
        Some(200)
    );

    // A signed callback for an attempt dispatch never heard of is acknowledged.
    let unknown = url.replace(&id, &uuid::Uuid::now_v7().to_string());
    let signed = signature::sign(AUTH_TOKEN, &unknown, &delivered);
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(delivered.iter())
        .finish();
    let answered = client
        .send(
            Method::POST,
            &unknown,
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                (signature::HEADER, &signed),
            ],
            body.into_bytes(),
        )
        .await;
    assert!(
        matches!(answered, Exchange::Answered { status, .. } if status == 200),
        "{answered:?}"
    );
    let delivered_events = outcomes
        .of(&id)
        .into_iter()
        .filter(|e| matches!(e.payload, Some(Payload::AttemptDelivered(_))))
        .count();
    assert_eq!(delivered_events, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_provider_sends_the_whole_backlog_at_its_rate_and_drops_none() {
    let provider = sandbox().await;
    let world = World::running_with(NOW, |c| {
        let mut paced = sms_provider("primary", &provider);
        paced.rate = std::num::NonZeroU32::new(2);
        c.sms = vec![paced];
    })
    .await;
    let outcomes = world.outcomes();
    let mut ids = Vec::new();
    for n in 0..8 {
        // Eight patients, each with a number of their own: one number would be
        // held back by the caps that count it across cases.
        let case_id = format!("case-paced-{n}");
        world.open_case(&case_id, &[Channel::Sms]).await;
        let mut request = requested(&case_id, Channel::Sms);
        if let Some(Payload::OutreachRequested(r)) = request.payload.as_mut() {
            r.destination = Some(ContactPoint {
                value: Some(contact_point::Value::PhoneE164(format!("+1212555030{n}"))),
            });
        }
        ids.push(attempt_id(&request));
        world.publish(&[(Stream::Outreach, request)]).await;
    }
    for id in &ids {
        let sent = outcomes.first(id).await;
        assert!(
            matches!(sent.payload, Some(Payload::AttemptSent(_))),
            "{sent:?}"
        );
    }
    let received = provider.received();
    assert_eq!(received.len(), 8, "each once, none dropped");
    // Two a second, in bursts of two: eight cannot all be taken in under three
    // seconds. A lower bound: load can only make it longer.
    let first = received
        .iter()
        .map(|m| m.date_created)
        .min()
        .unwrap_or_default();
    let last = received
        .iter()
        .map(|m| m.date_created)
        .max()
        .unwrap_or_default();
    assert!(
        last - first >= chrono::TimeDelta::milliseconds(2500),
        "eight messages in {} ms at two a second",
        (last - first).num_milliseconds()
    );
}
