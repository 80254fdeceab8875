//! Fax through the Phaxio adapter's real HTTP code, against the sandbox: a PDF
//! with a cover page and the body in the patient's language, sent once, found by
//! its tag after an answer that never came, and settled by signed callbacks only.
//! The PDF is read back with poppler's `pdftotext` and `pdfinfo` (installed by
//! `deploy/setup.sh`), so it is checked by a reader that is not ours.

use std::time::Duration;

use crate::support::*;
use http::Method;
use touchpoint_dispatch::FaxProvider;
use touchpoint_dispatch::providers::http::{Exchange, HttpClient};
use touchpoint_platform::testkit::eventually;
use touchpoint_platform::topics::Stream;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{Channel, GetAttemptRequest, Language};
use touchpoint_sandbox::Fault;
use touchpoint_sandbox::fax::{FaxSandbox, ReceivedFax};

const API_KEY: &str = "sandbox-key";
const API_SECRET: &str = "sandbox-secret";
const CALLBACK_TOKEN: &str = "sandbox-callback-token";

async fn sandbox() -> FaxSandbox {
    FaxSandbox::start(API_KEY, API_SECRET, CALLBACK_TOKEN)
        .await
        .unwrap_or_else(|e| panic!("fax sandbox: {e}"))
}

fn fax_provider(sandbox: &FaxSandbox) -> FaxProvider {
    FaxProvider {
        base_url: sandbox.url(),
        api_key: API_KEY.into(),
        api_secret: API_SECRET.into(),
        callback_token: CALLBACK_TOKEN.into(),
        rate: None,
    }
}

/// Opens a case with fax consent, requests the welcome by fax in `language`,
/// and returns its attempt id.
async fn request_fax(world: &World, case_id: &str, language: Language) -> String {
    world.open_case(case_id, &[Channel::Fax]).await;
    let mut request = requested(case_id, Channel::Fax);
    if let Some(Payload::OutreachRequested(r)) = request.payload.as_mut() {
        r.language = language as i32;
    }
    let id = attempt_id(&request);
    world.publish(&[(Stream::Outreach, request)]).await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fax_goes_out_once_as_a_cover_page_and_the_body_in_either_language() {
    let provider = sandbox().await;
    let world = World::running_with(NOW, |c| c.fax = Some(fax_provider(&provider))).await;
    let outcomes = world.outcomes();
    let spanish = request_fax(&world, "case-fax-es", Language::Es).await;
    let english = request_fax(&world, "case-fax-en", Language::En).await;
    for (id, cover_label, greeting) in [
        (&spanish, "Para:", "Hola Ana, le damos la bienvenida"),
        (&english, "To:", "Hi Ana, welcome to your support program"),
    ] {
        let sent = outcomes.first(id).await;
        let Some(Payload::AttemptSent(sent)) = sent.payload else {
            panic!("not sent: {sent:?}");
        };
        let received: Vec<ReceivedFax> = provider
            .received()
            .into_iter()
            .filter(|f| f.tags.get("attempt") == Some(id))
            .collect();
        assert_eq!(received.len(), 1, "one fax for the attempt");
        let fax = &received[0];
        assert_eq!(fax.to, "+12125550111");
        assert_eq!(sent.provider, "fax");
        assert_eq!(sent.provider_message_id, fax.id.to_string());
        let (text, pages) = read_pdf(&fax.pdf);
        assert_eq!(pages, 2, "a cover page and one page of body");
        assert_eq!(sent.pages, 2);
        assert!(text.contains(cover_label), "the cover in the language");
        assert!(text.contains("Ana Ruiz"), "the cover names the patient");
        assert!(text.contains("Adherence support"), "and the program");
        let body: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(body.contains(greeting), "the body: {greeting}");
    }
    let (spanish_text, _) = read_pdf(
        &provider
            .received()
            .into_iter()
            .find(|f| f.tags.get("attempt") == Some(&spanish))
            .unwrap_or_else(|| panic!("the Spanish fax"))
            .pdf,
    );
    assert!(spanish_text.contains("llámenos"), "accents survive WinAnsi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_never_came_is_found_by_its_tag_and_not_sent_again() {
    let provider = sandbox().await;
    provider.inject(Fault::AcceptThenStall(Duration::from_secs(3)));
    let world = World::running_with(NOW, |c| {
        c.fax = Some(fax_provider(&provider));
        c.provider_timeout = Duration::from_millis(500);
    })
    .await;
    let outcomes = world.outcomes();
    let id = request_fax(&world, "case-fax-stall", Language::Es).await;
    let sent = outcomes.first(&id).await;
    let Some(Payload::AttemptSent(sent)) = sent.payload else {
        panic!("not sent: {sent:?}");
    };
    let received = provider.received();
    assert_eq!(received.len(), 1, "no second fax");
    assert_eq!(sent.provider_message_id, received[0].id.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_callbacks_settle_the_fax_and_unsigned_ones_are_refused() {
    let provider = sandbox().await;
    let world = World::running_with(NOW, |c| c.fax = Some(fax_provider(&provider))).await;
    let outcomes = world.outcomes();
    let delivered = request_fax(&world, "case-fax-ok", Language::Es).await;
    let failed = request_fax(&world, "case-fax-busy", Language::Es).await;
    for id in [&delivered, &failed] {
        outcomes.first(id).await;
    }
    let fax_of = |id: &str| {
        provider
            .received()
            .into_iter()
            .find(|f| f.tags.get("attempt").map(String::as_str) == Some(id))
            .unwrap_or_else(|| panic!("no fax for {id}"))
    };

    // Unsigned, and signed with another token: refused, nothing changes.
    let fax = fax_of(&delivered);
    let url = fax.callback_url.clone().unwrap_or_default();
    let body = format!(
        "success=true&fax=%7B%22id%22%3A{}%2C%22status%22%3A%22success%22%7D",
        fax.id
    );
    let client = HttpClient::new(Duration::from_secs(5)).unwrap_or_else(|e| panic!("{e}"));
    for signature in ["", "0123456789abcdef0123456789abcdef01234567"] {
        let answer = client
            .send(
                Method::POST,
                &url,
                &[
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("x-phaxio-signature", signature),
                ],
                body.clone().into_bytes(),
            )
            .await;
        assert!(
            matches!(answer, Exchange::Answered { status, .. } if status.as_u16() == 403),
            "{answer:?}"
        );
    }
    let state = |id: String| {
        let mut client = world.client.clone();
        async move {
            client
                .get_attempt(GetAttemptRequest { attempt_id: id })
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .into_inner()
        }
    };
    assert_eq!(state(delivered.clone()).await.state, "sent");

    // Signed: delivered with its pages; a busy line fails, and may be retried.
    assert_eq!(provider.report(fax.id, "success", None).await, Some(200));
    assert_eq!(
        provider
            .report(fax_of(&failed).id, "failure", Some("lineError"))
            .await,
        Some(200)
    );
    let delivery = eventually("the delivery", WAIT, || async {
        outcomes
            .of(&delivered)
            .into_iter()
            .find_map(|e| match e.payload {
                Some(Payload::AttemptDelivered(d)) => Some(d),
                _ => None,
            })
    })
    .await;
    assert_eq!(delivery.pages, 2);
    let failure = eventually("the failure", WAIT, || async {
        outcomes
            .of(&failed)
            .into_iter()
            .find_map(|e| match e.payload {
                Some(Payload::AttemptFailed(f)) => Some(f),
                _ => None,
            })
    })
    .await;
    assert_eq!(failure.provider_code, "lineError");
    assert!(!failure.permanent);
    assert_eq!(state(delivered).await.state, "delivered");
    assert_eq!(state(failed).await.state, "failed");
}
