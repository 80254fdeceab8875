//! Cases the cross-service tests open through the cases API.

use chrono::{DateTime, Utc};
use touchpoint_cli::cases::{OpenArgs, open_with};
use touchpoint_platform::grpc::client::AuthChannel as GrpcChannel;
use touchpoint_proto::v1::case_service_client::CaseServiceClient;
use touchpoint_proto::v1::{Channel, CommandMeta, Language};

/// The mobile number the patient of [`open_spanish_sms_patient`] has.
pub const MOBILE: &str = "+12125550142";

/// A coordinator's command metadata with request id `id`.
pub fn meta(id: &str) -> Option<CommandMeta> {
    Some(CommandMeta {
        request_id: id.into(),
        expected_version: None,
        actor: "coordinator-1".into(),
    })
}

/// Opens the adherence case of a Spanish-speaking patient in New York with a
/// mobile ([`MOBILE`], given as `(212) 555-0142`), enrolled at `enrolled_at`,
/// and records her written SMS consent; returns the case id.
pub async fn open_spanish_sms_patient(
    cases: &mut CaseServiceClient<GrpcChannel>,
    enrolled_at: DateTime<Utc>,
) -> String {
    let patient = OpenArgs {
        program: "adherence".into(),
        language: Language::Es,
        time_zone: "America/New_York".into(),
        given: "Ana".into(),
        family: "Ruiz".into(),
        mobile: "(212) 555-0142".into(),
        email: String::new(),
        consents: vec![Channel::Sms],
        coordinator: String::new(),
        navigator: String::new(),
        request_id: Some("fixture-1".into()),
    };
    open_with(cases, &patient, enrolled_at, "coordinator-1")
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
        .0
}
