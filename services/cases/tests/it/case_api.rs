//! The case service through its real gRPC API, against PostgreSQL and the broker.

use crate::support::{PHONE, meta, open_request, service};
use tonic::Code;
use touchpoint_proto::v1::{
    AssignCoordinatorRequest, CaseStatus, Channel, CommandMeta, ConsentState, ContactPoints,
    FindCasesByContactRequest, GetCaseRequest, Language,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_consent_assign_and_the_case_shows_it_and_publishes_it() {
    let mut svc = service().await;
    let case_id = svc.open("open-1").await;
    assert_eq!(
        svc.consent(&case_id, Channel::Sms, meta("consent-1"))
            .await
            .ok(),
        Some(2)
    );
    let assigned = svc
        .client
        .assign_coordinator(AssignCoordinatorRequest {
            meta: meta("assign-1"),
            case_id: case_id.clone(),
            coordinator_id: "coord-12".into(),
            navigator_id: "nav-3".into(),
        })
        .await
        .map(|r| r.into_inner().version);
    assert_eq!(assigned.ok(), Some(3));

    let case = svc.get(&case_id).await;
    assert_eq!(case.version, 3);
    assert_eq!(case.status(), CaseStatus::Active);
    assert_eq!(case.language(), Language::Es);
    assert_eq!(case.coordinator_id, "coord-12");
    assert_eq!(case.consents.len(), 1);
    assert_eq!(case.consents[0].channel(), Channel::Sms);
    assert_eq!(case.consents[0].state(), ConsentState::Granted);
    assert_eq!(
        case.consents[0].by, "test-writer",
        "the authenticated caller, not the request's actor field"
    );
    let mobile = case.patient.and_then(|p| p.contact).map(|c| c.mobile_e164);
    assert_eq!(mobile.as_deref(), Some("+13125550142"), "stored in E.164");

    assert_eq!(
        svc.published(&case_id, 3).await,
        vec![
            "touchpoint.v1.CaseOpened",
            "touchpoint.v1.ConsentRecorded",
            "touchpoint.v1.CoordinatorAssigned"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_close_and_a_closed_case_refuses_changes() {
    let mut svc = service().await;
    let case_id = svc.open("open-2").await;
    assert_eq!(
        svc.set_status(&case_id, CaseStatus::Paused, "hospitalised")
            .await
            .ok(),
        Some(2)
    );
    assert_eq!(svc.get(&case_id).await.status, CaseStatus::Paused as i32);
    assert_eq!(
        svc.set_status(&case_id, CaseStatus::Active, "").await.ok(),
        Some(3)
    );
    assert_eq!(
        svc.set_status(&case_id, CaseStatus::Closed, "therapy completed")
            .await
            .ok(),
        Some(4)
    );
    let case = svc.get(&case_id).await;
    assert_eq!(case.status(), CaseStatus::Closed);
    assert_eq!(case.status_reason, "therapy completed");

    let again = svc.set_status(&case_id, CaseStatus::Closed, "again").await;
    assert_eq!(
        again.err().map(|s| s.code()),
        Some(Code::FailedPrecondition)
    );
    let consent = svc.consent(&case_id, Channel::Email, meta("")).await;
    assert_eq!(
        consent.err().map(|s| s.code()),
        Some(Code::FailedPrecondition)
    );
    assert_eq!(
        svc.get(&case_id).await.version,
        4,
        "nothing appended by refused commands"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_expected_version_is_aborted_with_the_current_version() {
    let mut svc = service().await;
    let case_id = svc.open("open-3").await;
    svc.consent(&case_id, Channel::Sms, meta(""))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let stale = Some(CommandMeta {
        request_id: String::new(),
        expected_version: Some(1),
        actor: "agent-7".into(),
    });
    let status = svc.consent(&case_id, Channel::Email, stale).await.err();
    assert_eq!(status.as_ref().map(|s| s.code()), Some(Code::Aborted));
    let message = status.map(|s| s.message().to_owned()).unwrap_or_default();
    assert!(message.contains("version 2"), "{message}");

    let current = Some(CommandMeta {
        request_id: String::new(),
        expected_version: Some(2),
        actor: "agent-7".into(),
    });
    assert_eq!(
        svc.consent(&case_id, Channel::Email, current).await.ok(),
        Some(3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_returns_the_first_result_and_appends_nothing() {
    let mut svc = service().await;
    let first = svc.open("open-once").await;
    let retry = svc.open("open-once").await;
    assert_eq!(first, retry, "the retried OpenCase names the first case");

    let v1 = svc
        .consent(&first, Channel::Sms, meta("consent-once"))
        .await
        .ok();
    let v2 = svc
        .consent(&first, Channel::Sms, meta("consent-once"))
        .await
        .ok();
    assert_eq!(v1, Some(2));
    assert_eq!(v2, Some(2));
    assert_eq!(svc.get(&first).await.version, 2);

    let found = svc
        .client
        .find_cases_by_contact(FindCasesByContactRequest {
            contact: PHONE.into(),
        })
        .await
        .map(|r| r.into_inner().case_ids);
    assert_eq!(
        found.ok(),
        Some(vec![first.clone()]),
        "only one case was opened"
    );

    // The same request id on another case is a client bug, not a retry.
    let other = svc.open("open-other").await;
    let reused = svc
        .consent(&other, Channel::Sms, meta("consent-once"))
        .await
        .err();
    assert_eq!(
        reused.as_ref().map(|s| s.code()),
        Some(Code::InvalidArgument)
    );
    assert_eq!(
        svc.get(&other).await.version,
        1,
        "nothing appended to the other case"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_typed_three_ways_finds_the_same_cases() {
    let mut svc = service().await;
    let first = svc.open("open-a").await;
    let second = svc.open("open-b").await; // a caregiver's number on two cases
    let mut expected = vec![first, second];
    expected.sort();
    for typed in ["(312) 555-0142", "312.555.0142", "+1 312 555 0142"] {
        let found = svc
            .client
            .find_cases_by_contact(FindCasesByContactRequest {
                contact: typed.into(),
            })
            .await
            .map(|r| r.into_inner().case_ids);
        assert_eq!(found.ok(), Some(expected.clone()), "{typed}");
    }
    let by_email = svc
        .client
        .find_cases_by_contact(FindCasesByContactRequest {
            contact: "Ana.Ruiz@EXAMPLE.com".into(),
        })
        .await
        .map(|r| r.into_inner().case_ids.len());
    assert_eq!(by_email.ok(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_names_the_field_and_never_echoes_the_value() {
    let mut svc = service().await;
    let mut bad_phone = open_request("", "555-CALL-NOW-PLEASE");
    bad_phone.meta = meta("");
    let status = svc.client.open_case(bad_phone).await.err();
    assert_eq!(
        status.as_ref().map(|s| s.code()),
        Some(Code::InvalidArgument)
    );
    let message = status.map(|s| s.message().to_owned()).unwrap_or_default();
    assert!(message.contains("patient.contact.mobile_e164"), "{message}");
    assert!(!message.contains("CALL-NOW"), "{message}");

    let mut bad_email = open_request("", PHONE);
    if let Some(contact) = bad_email.patient.as_mut().and_then(|p| p.contact.as_mut()) {
        contact.email = "ana.ruiz(at)example".into();
    }
    let message = svc
        .client
        .open_case(bad_email)
        .await
        .err()
        .map(|s| s.message().to_owned())
        .unwrap_or_default();
    assert!(message.starts_with("patient.contact.email:"), "{message}");
    assert!(!message.contains("ana.ruiz"), "{message}");

    let mut bad_zone = open_request("", PHONE);
    bad_zone.time_zone = "Mars/Olympus".into();
    let message = svc
        .client
        .open_case(bad_zone)
        .await
        .err()
        .map(|s| s.message().to_owned())
        .unwrap_or_default();
    assert!(
        message.starts_with("time_zone:") && !message.contains("Mars"),
        "{message}"
    );

    let mut bad_language = open_request("", PHONE);
    bad_language.language = Language::Unspecified as i32;
    let status = svc.client.open_case(bad_language).await.err();
    assert_eq!(status.map(|s| s.code()), Some(Code::InvalidArgument));

    let missing = svc
        .set_status("no-such-case", CaseStatus::Paused, "x")
        .await
        .err();
    assert_eq!(missing.map(|s| s.code()), Some(Code::NotFound));
    let unknown = svc
        .client
        .get_case(GetCaseRequest {
            case_id: "no-such-case".into(),
        })
        .await
        .err();
    assert_eq!(unknown.as_ref().map(|s| s.code()), Some(Code::NotFound));
    assert!(
        !unknown
            .map(|s| s.message().to_owned())
            .unwrap_or_default()
            .contains("no-such-case")
    );

    let lookup = svc
        .client
        .find_cases_by_contact(FindCasesByContactRequest {
            contact: "ana@".into(),
        })
        .await
        .err();
    assert_eq!(lookup.map(|s| s.code()), Some(Code::InvalidArgument));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updated_contact_points_move_the_lookup_to_the_new_number() {
    let mut svc = service().await;
    let case_id = svc.open("open-move").await;
    let updated = svc
        .client
        .update_contact_points(touchpoint_proto::v1::UpdateContactPointsRequest {
            meta: meta("move-1"),
            case_id: case_id.clone(),
            patient: Some(ContactPoints {
                mobile_e164: "415 555 0177".into(),
                ..ContactPoints::default()
            }),
            caregiver: None,
            prescriber_fax: "312-555-0199".into(),
        })
        .await
        .map(|r| r.into_inner().version);
    assert_eq!(updated.ok(), Some(2));
    let find = |contact: &str| FindCasesByContactRequest {
        contact: contact.into(),
    };
    let old = svc
        .client
        .find_cases_by_contact(find(PHONE))
        .await
        .map(|r| r.into_inner().case_ids);
    assert_eq!(
        old.ok(),
        Some(vec![]),
        "the old number no longer leads to the case"
    );
    let new = svc
        .client
        .find_cases_by_contact(find("+14155550177"))
        .await
        .map(|r| r.into_inner().case_ids);
    assert_eq!(new.ok(), Some(vec![case_id.clone()]));
    let fax = svc
        .client
        .find_cases_by_contact(find("(312) 555 0199"))
        .await
        .map(|r| r.into_inner().case_ids);
    assert_eq!(
        fax.ok(),
        Some(vec![case_id]),
        "the prescriber fax is indexed too"
    );
}
