//! Cases the cross-service tests open through the cases API.

use chrono::{DateTime, Utc};
use tonic::transport::Channel as GrpcChannel;
use touchpoint_platform::envelope::timestamp;
use touchpoint_proto::v1::case_service_client::CaseServiceClient;
use touchpoint_proto::v1::{
    Channel, CommandMeta, ConsentSource, ContactPoints, Language, OpenCaseRequest, Person,
    PersonName, RecordConsentRequest,
};

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
    let case_id = cases
        .open_case(OpenCaseRequest {
            meta: meta("open-1"),
            program_id: "adherence".into(),
            language: Language::Es as i32,
            time_zone: "America/New_York".into(),
            patient: Some(Person {
                name: Some(PersonName {
                    given_name: "Ana".into(),
                    family_name: "Ruiz".into(),
                }),
                contact: Some(ContactPoints {
                    mobile_e164: "(212) 555-0142".into(),
                    ..ContactPoints::default()
                }),
                relationship: String::new(),
            }),
            caregiver: None,
            prescriber_fax: String::new(),
            enrolled_at: Some(timestamp(enrolled_at)),
        })
        .await
        .unwrap_or_else(|e| panic!("open: {e}"))
        .into_inner()
        .case_id;
    cases
        .record_consent(RecordConsentRequest {
            meta: meta("consent-1"),
            case_id: case_id.clone(),
            channel: Channel::Sms as i32,
            source: ConsentSource::WrittenForm as i32,
        })
        .await
        .unwrap_or_else(|e| panic!("consent: {e}"));
    case_id
}
