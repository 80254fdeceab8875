//! `RenderPreview` over gRPC: what a step would send on each written channel, in
//! the language asked for or its fallback, with SMS sizes; bad input is refused
//! naming the field, never echoing the value.

use crate::support::*;
use tonic::Code;
use touchpoint_proto::v1::{
    Channel, Language, PreviewFacts, RenderPreviewRequest, RenderPreviewResponse,
};

fn request(program: &str, step: &str, language: Language, first: &str) -> RenderPreviewRequest {
    RenderPreviewRequest {
        program_id: program.into(),
        step_id: step.into(),
        language: language as i32,
        facts: Some(PreviewFacts {
            first_name: first.into(),
            last_name: "Ruiz".into(),
        }),
    }
}

async fn preview(
    world: &World,
    request: RenderPreviewRequest,
) -> Result<RenderPreviewResponse, tonic::Status> {
    world
        .client
        .clone()
        .render_preview(request)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_renders_the_call_script_and_each_written_channel_in_the_language_asked() {
    let world = World::at(NOW).await;
    let shown = preview(&world, request("adherence", "welcome", Language::Es, "Ana"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let channels: Vec<i32> = shown.messages.iter().map(|m| m.channel).collect();
    assert_eq!(
        channels,
        [
            Channel::Voice as i32,
            Channel::Sms as i32,
            Channel::Email as i32
        ],
        "the call's script, then each written channel, in the step's order"
    );
    let script = &shown.messages[0];
    assert!(script.text.starts_with("Hola, ¿puedo hablar con Ana Ruiz?"));
    assert_eq!(script.language(), Language::Es);
    let sms = &shown.messages[1];
    assert!(sms.text.starts_with("Hola Ana,"));
    assert_eq!(sms.language(), Language::Es);
    assert!(!sms.language_fell_back);
    assert_eq!(sms.sms_encoding, "UCS-2", "á is not in GSM-7");
    assert!(sms.sms_segments >= 2);
    let email = &shown.messages[2];
    assert_eq!(email.subject, "Le damos la bienvenida a Adherence support");
    assert!(email.text.contains("Ana Ruiz"));
    assert!(email.html.contains("Ana"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_translation_falls_back_and_says_so() {
    let world = World::at(NOW).await;
    let shown = preview(
        &world,
        request("refill-reminder", "five-days-before", Language::Es, "Ana"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let sms = &shown.messages[0];
    assert_eq!(sms.language(), Language::En);
    assert!(sms.language_fell_back);
    assert_eq!(sms.sms_encoding, "GSM-7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_name_the_field_and_never_echo_it() {
    let world = World::at(NOW).await;
    let cases = [
        (
            request("no-such-program", "welcome", Language::En, "Ana"),
            Code::NotFound,
            "program_id",
        ),
        (
            request("adherence", "no-such-step", Language::En, "Ana"),
            Code::NotFound,
            "step_id",
        ),
        (
            request("adherence", "welcome", Language::Unspecified, "Ana"),
            Code::InvalidArgument,
            "language",
        ),
        (
            request("adherence", "welcome", Language::En, "Secret\u{7}Name"),
            Code::InvalidArgument,
            "facts.first_name",
        ),
    ];
    for (req, code, field) in cases {
        let status = preview(&world, req)
            .await
            .err()
            .unwrap_or_else(|| panic!("{field}: accepted"));
        assert_eq!(status.code(), code, "{field}");
        assert!(status.message().starts_with(field), "{}", status.message());
        assert!(!status.message().contains("Secret"));
    }
}
