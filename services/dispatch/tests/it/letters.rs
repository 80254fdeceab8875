//! Letters through the Lob adapter's real HTTP code, against the sandbox's
//! print-and-mail stand-in: the letter goes out once as a PDF (a first page
//! naming the patient, then the body, read back by poppler), even when its
//! answer was lost; its journey reaches the attempt's events once per stage
//! through signed webhooks only; a return to sender and an undeliverable
//! address fail it for good, so cadence moves the step to its next channel.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::*;
use http::Method;
use touchpoint_dispatch::MailProvider;
use touchpoint_dispatch::providers::http::{Exchange, HttpClient};
use touchpoint_platform::testkit::free_port;
use touchpoint_platform::topics::Stream;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{AttemptFailed, Channel, Envelope, contact_point};
use touchpoint_sandbox::Fault;
use touchpoint_sandbox::lob::{LobSandbox, ReceivedLetter, UNDELIVERABLE_ZIP};

const API_KEY: &str = "sandbox-lob-key";
const WEBHOOK_SECRET: &str = "sandbox-lob-webhook-secret";
const RETURN_ADDRESS: &str = "adr_hub_return";

async fn sandbox() -> LobSandbox {
    LobSandbox::start(API_KEY, WEBHOOK_SECRET)
        .await
        .unwrap_or_else(|e| panic!("lob sandbox: {e}"))
}

fn provider(sandbox: &LobSandbox) -> MailProvider {
    MailProvider {
        base_url: sandbox.url(),
        api_key: API_KEY.into(),
        from: RETURN_ADDRESS.into(),
        webhook_secret: WEBHOOK_SECRET.into(),
        rate: None,
    }
}

/// Opens a case with mail consent, asks for the welcome by letter (to
/// `request`'s address) and returns its attempt id.
async fn request_letter(world: &World, case_id: &str, request: Envelope) -> String {
    world.open_case(case_id, &[Channel::Mail]).await;
    let id = attempt_id(&request);
    world.publish(&[(Stream::Outreach, request)]).await;
    id
}

fn letter_of(lob: &LobSandbox, attempt: &str) -> ReceivedLetter {
    lob.received()
        .into_iter()
        .find(|l| l.metadata.get("attempt").map(String::as_str) == Some(attempt))
        .unwrap_or_else(|| panic!("no letter for {attempt}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_letter_goes_out_once_as_a_pdf_even_when_its_answer_was_lost() {
    let lob = sandbox().await;
    // The hand-off is taken, but its answer never comes.
    lob.inject(Fault::AcceptThenStall(Duration::from_secs(3)));
    let world = World::running_with(NOW, |c| {
        c.mail = Some(provider(&lob));
        c.provider_timeout = Duration::from_millis(500);
    })
    .await;
    let outcomes = world.outcomes();
    let attempt = request_letter(
        &world,
        "case-letter-lost",
        requested("case-letter-lost", Channel::Mail),
    )
    .await;

    let sent = outcomes
        .wait_for(&attempt, |p| match p {
            Payload::AttemptSent(s) => Some(s),
            _ => None,
        })
        .await;
    let letters = lob.received();
    assert_eq!(letters.len(), 1, "one letter, not none and not two");
    let letter = &letters[0];
    assert_eq!(sent.provider, "mail");
    assert_eq!(sent.provider_message_id, letter.id);
    assert_eq!(letter.idempotency_key.as_deref(), Some(attempt.as_str()));
    assert_eq!(letter.from, RETURN_ADDRESS);
    assert_eq!(letter.use_type, "operational");
    let to = |field: &str| letter.to.get(field).map(String::as_str);
    assert_eq!(to("name"), Some("Ana Ruiz"));
    assert_eq!(to("address_line1"), Some("350 Fifth Avenue"));
    assert_eq!(to("address_line2"), Some("Apt 4B"));
    assert_eq!(to("address_city"), Some("New York"));
    assert_eq!(to("address_state"), Some("NY"));
    assert_eq!(to("address_zip"), Some("10118"));
    assert_eq!(to("address_country"), Some("US"));

    let (text, pages) = read_pdf(&letter.pdf);
    assert_eq!(pages, 2, "a first page, then the body");
    assert_eq!(sent.pages, 2);
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("Para: Ana Ruiz"), "the first page names her");
    assert!(flat.contains("PERSONAL Y CONFIDENCIAL"), "in her language");
    assert!(!flat.contains("FAX"), "a letter, not a fax");
    assert!(
        flat.contains("Hola Ana, le damos la bienvenida"),
        "the body"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhooks_track_the_letter_once_per_stage_and_a_return_fails_it_for_good() {
    let lob = sandbox().await;
    let port = free_port();
    let world = World::running_with(NOW, |c| {
        c.mail = Some(provider(&lob));
        c.http_addr = SocketAddr::from(([127, 0, 0, 1], port));
    })
    .await;
    let webhook = format!("http://127.0.0.1:{port}/callbacks/mail/lob");
    lob.webhook(&webhook);
    let outcomes = world.outcomes();
    let delivered = request_letter(
        &world,
        "case-letter-ok",
        requested("case-letter-ok", Channel::Mail),
    )
    .await;
    let returned = request_letter(
        &world,
        "case-letter-back",
        requested("case-letter-back", Channel::Mail),
    )
    .await;
    for attempt in [&delivered, &returned] {
        outcomes
            .wait_for(attempt, |p| {
                matches!(p, Payload::AttemptSent(_)).then_some(())
            })
            .await;
    }

    // Unsigned, or signed with another secret: refused, nothing changes.
    let client = HttpClient::new(Duration::from_secs(5)).unwrap_or_else(|e| panic!("{e}"));
    let forged = serde_json::json!({
        "event_type": { "id": "letter.returned_to_sender" },
        "body": { "id": letter_of(&lob, &delivered).id, "metadata": { "attempt": delivered } },
    })
    .to_string();
    let now = chrono::Utc::now().timestamp_millis().to_string();
    let wrong =
        touchpoint_platform::signature::mail::sign("not-the-secret", &now, forged.as_bytes());
    for headers in [
        vec![("content-type", "application/json")],
        vec![
            ("content-type", "application/json"),
            ("Lob-Signature", wrong.as_str()),
            ("Lob-Signature-Timestamp", now.as_str()),
        ],
    ] {
        let answer = client
            .send(
                Method::POST,
                &webhook,
                &headers,
                forged.clone().into_bytes(),
            )
            .await;
        assert!(
            matches!(answer, Exchange::Answered { status, .. } if status.as_u16() == 403),
            "{answer:?}"
        );
    }

    // The journey: each stage once, however often Lob repeats it.
    let report = |attempt: &str, event: &'static str| {
        let id = letter_of(&lob, attempt).id;
        let lob = &lob;
        async move { lob.report(&id, event).await }
    };
    for event in [
        "letter.mailed",
        "letter.mailed",
        "letter.in_transit",
        "letter.delivered",
    ] {
        assert_eq!(report(&delivered, event).await, Some(200), "{event}");
    }
    assert_eq!(report(&returned, "letter.mailed").await, Some(200));
    assert_eq!(
        report(&returned, "letter.returned_to_sender").await,
        Some(200)
    );
    outcomes
        .wait_for(&delivered, |p| {
            matches!(p, Payload::AttemptDelivered(_)).then_some(())
        })
        .await;
    let failed = outcomes
        .wait_for(&returned, |p| match p {
            Payload::AttemptFailed(f) => Some(f),
            _ => None,
        })
        .await;
    assert_eq!(
        failed,
        AttemptFailed {
            attempt_id: returned.clone(),
            channel: Channel::Mail as i32,
            permanent: true,
            provider: "mail".into(),
            provider_code: "returned_to_sender".into(),
        },
        "a letter returned to sender cannot reach her: the step falls back"
    );
    let stages: Vec<String> = outcomes
        .of(&delivered)
        .into_iter()
        .filter_map(|e| match e.payload {
            Some(Payload::AttemptInTransit(t)) => Some(t.stage),
            _ => None,
        })
        .collect();
    assert_eq!(
        stages,
        ["mailed", "in_transit"],
        "each stage once, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_the_provider_cannot_deliver_to_fails_the_letter_with_its_reason() {
    let lob = sandbox().await;
    let world = World::running_with(NOW, |c| c.mail = Some(provider(&lob))).await;
    let outcomes = world.outcomes();
    let mut request = requested("case-letter-nowhere", Channel::Mail);
    if let Some(Payload::OutreachRequested(r)) = request.payload.as_mut() {
        let mut nowhere = home();
        nowhere.postal_code = UNDELIVERABLE_ZIP.into();
        r.destination = Some(touchpoint_proto::v1::ContactPoint {
            value: Some(contact_point::Value::PostalAddress(nowhere)),
        });
    }
    let attempt = request_letter(&world, "case-letter-nowhere", request).await;
    let failed = outcomes
        .wait_for(&attempt, |p| match p {
            Payload::AttemptFailed(f) => Some(f),
            _ => None,
        })
        .await;
    assert!(failed.permanent, "retrying cannot help");
    assert_eq!(failed.provider_code, "failed_deliverability_strictness");
    assert!(lob.received().is_empty(), "nothing was printed");
}
