//! Who may call the case API: no credentials, an unknown token or a foreign
//! certificate is refused; a `read` caller may look but not change; a `write`
//! caller may do both; health answers anyone. Over plain gRPC with tokens, and
//! over mutual TLS with certificates from the mesh's authority.

use std::time::Duration;

use crate::support::{open_request, uuid_like};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use touchpoint_platform::access::Role;
use touchpoint_platform::config::{PlatformConfig, TlsMaterial};
use touchpoint_platform::grpc::client::{self, ClientAccess};
use touchpoint_platform::shutdown::Shutdown;
use touchpoint_platform::testkit::{self, READ_TOKEN, TestDatabase, WRITE_TOKEN};
use touchpoint_platform::tls::{DevCa, Identity};
use touchpoint_platform::vouch::{self, TrustedFronts, Voucher};
use touchpoint_proto::v1::case_service_client::CaseServiceClient;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    AddNoteRequest, FindCasesByContactRequest, GetCaseRequest, GetTimelineRequest,
};

struct Running {
    url: String,
    _database: TestDatabase,
    shutdown: Shutdown,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

async fn start(adjust: impl FnOnce(&mut PlatformConfig)) -> Running {
    testkit::init_tracing();
    let database = TestDatabase::fresh().await;
    let mut platform = testkit::platform_config("cases", &database, &testkit::unique_prefix());
    adjust(&mut platform);
    let shutdown = Shutdown::new();
    let addr = touchpoint_cases::start(touchpoint_cases::Config::new(platform), &shutdown)
        .await
        .unwrap_or_else(|e| panic!("cases did not start: {e}"));
    Running {
        url: format!("http://{addr}"),
        _database: database,
        shutdown,
    }
}

/// The status code of opening a case, and of reading one that does not exist
/// (`NotFound` once the gate lets the call through), as `access`.
async fn codes(url: &str, access: &ClientAccess) -> Result<(Code, Code), String> {
    let channel = client::connect_within(url, access, Duration::from_secs(10))
        .await
        .map_err(|e| format!("{e:?}"))?;
    let mut cases = CaseServiceClient::new(channel);
    let open = cases
        .open_case(open_request(&uuid_like(), "(312) 555-0142"))
        .await
        .map_or_else(|s| s.code(), |_| Code::Ok);
    let get = cases
        .get_case(GetCaseRequest {
            case_id: "00000000-0000-7000-8000-000000000000".into(),
        })
        .await
        .map_or_else(|s| s.code(), |_| Code::Ok);
    Ok((open, get))
}

async fn health(url: &str, access: &ClientAccess) -> Option<i32> {
    let channel = client::connect_within(url, access, Duration::from_secs(10))
        .await
        .ok()?;
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .ok()
        .map(|r| r.into_inner().status)
}

#[tokio::test]
async fn tokens_authenticate_and_roles_separate_reading_from_writing() {
    let cases = start(|_| {}).await;
    let url = cases.url.as_str();
    let anonymous = ClientAccess::default();
    assert_eq!(
        codes(url, &anonymous).await,
        Ok((Code::Unauthenticated, Code::Unauthenticated))
    );
    assert_eq!(
        codes(url, &ClientAccess::token("not-a-token")).await,
        Ok((Code::Unauthenticated, Code::Unauthenticated))
    );
    assert_eq!(
        codes(url, &ClientAccess::token(READ_TOKEN)).await,
        Ok((Code::PermissionDenied, Code::NotFound))
    );
    assert_eq!(
        codes(url, &ClientAccess::token(WRITE_TOKEN)).await,
        Ok((Code::Ok, Code::NotFound))
    );
    assert_eq!(
        health(url, &anonymous).await,
        Some(1),
        "health answers anyone"
    );
}

#[tokio::test]
async fn a_service_with_no_tokens_refuses_every_call_but_health() {
    let cases = start(|platform| platform.access.tokens.clear()).await;
    assert_eq!(
        codes(&cases.url, &ClientAccess::token(WRITE_TOKEN)).await,
        Ok((Code::Unauthenticated, Code::Unauthenticated))
    );
    assert_eq!(health(&cases.url, &ClientAccess::default()).await, Some(1));
}

fn member(ca: &DevCa, identity: Identity) -> ClientAccess {
    ClientAccess {
        token: None,
        tls: TlsMaterial {
            ca_pem: Some(ca.cert_pem()),
            identity: Some(identity),
        },
    }
}

#[tokio::test]
async fn mutual_tls_admits_the_mesh_by_role_and_refuses_strangers()
-> Result<(), Box<dyn std::error::Error>> {
    let ca = DevCa::generate()?;
    let server = ca.issue_client("cases", Some(Role::Write), &["localhost", "127.0.0.1"])?;
    let ca_pem = ca.cert_pem();
    let cases = start(move |platform| {
        platform.access.tls = TlsMaterial {
            ca_pem: Some(ca_pem),
            identity: Some(server),
        };
    })
    .await;
    let url = cases.url.as_str();

    let writer = member(&ca, ca.issue_client("cadence", Some(Role::Write), &[])?);
    assert_eq!(codes(url, &writer).await, Ok((Code::Ok, Code::NotFound)));
    let reader = member(&ca, ca.issue_client("reports", Some(Role::Read), &[])?);
    assert_eq!(
        codes(url, &reader).await,
        Ok((Code::PermissionDenied, Code::NotFound))
    );

    // Over TLS without a certificate, a token still works; nothing does not.
    let server_only = ClientAccess {
        token: None,
        tls: TlsMaterial {
            ca_pem: Some(ca.cert_pem()),
            identity: None,
        },
    };
    assert_eq!(
        codes(url, &server_only).await,
        Ok((Code::Unauthenticated, Code::Unauthenticated))
    );
    let with_token = ClientAccess {
        token: Some(WRITE_TOKEN.into()),
        ..server_only.clone()
    };
    assert_eq!(
        codes(url, &with_token).await,
        Ok((Code::Ok, Code::NotFound))
    );
    assert_eq!(health(url, &server_only).await, Some(1));

    // A certificate from another authority never gets a call through, and
    // neither does a caller that does not speak TLS.
    let stranger = DevCa::generate()?;
    let foreign = ClientAccess {
        token: None,
        tls: TlsMaterial {
            ca_pem: Some(ca.cert_pem()),
            identity: Some(stranger.issue_client("intruder", Some(Role::Write), &[])?),
        },
    };
    let refused = codes(url, &foreign).await;
    assert!(
        refused.as_ref().is_err()
            || refused
                .as_ref()
                .is_ok_and(|(open, _)| *open == Code::Unavailable || *open == Code::Unknown),
        "a foreign certificate was let in: {refused:?}"
    );
    let plain = codes(url, &ClientAccess::token(WRITE_TOKEN)).await;
    assert!(
        plain.as_ref().is_err() || plain.as_ref().is_ok_and(|(open, _)| *open != Code::Ok),
        "a plain-text call was let in: {plain:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_refused_request_does_not_echo_the_patient() {
    let cases = start(|_| {}).await;
    let channel = client::connect(&cases.url, &ClientAccess::token(WRITE_TOKEN))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut client = CaseServiceClient::new(channel);
    let secrets = ["+1312555014299", "ana.ruiz@@example", "Ana\u{7}Ruiz"];
    let mut bad_phone = open_request(&uuid_like(), secrets[0]);
    let mut bad_email = open_request(&uuid_like(), "(312) 555-0142");
    let mut bad_name = open_request(&uuid_like(), "(312) 555-0142");
    if let Some(patient) = bad_email.patient.as_mut()
        && let Some(contact) = patient.contact.as_mut()
    {
        contact.email = secrets[1].into();
    }
    if let Some(patient) = bad_name.patient.as_mut()
        && let Some(name) = patient.name.as_mut()
    {
        name.given_name = secrets[2].into();
    }
    if let Some(patient) = bad_phone.patient.as_mut()
        && let Some(contact) = patient.contact.as_mut()
    {
        contact.email = String::new();
    }
    for (request, secret) in [bad_phone, bad_email, bad_name].into_iter().zip(secrets) {
        let status = client
            .open_case(request)
            .await
            .err()
            .unwrap_or_else(|| panic!("a request with a bad field was taken"));
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(!status.message().is_empty());
        for part in [secret, "312555", "ana.ruiz", "Ana", "Ruiz"] {
            assert!(
                !status.message().contains(part),
                "the status repeats patient data: {}",
                status.message()
            );
        }
    }
}

#[tokio::test]
async fn the_health_port_answers_plain_probes_and_serves_nothing_else()
-> Result<(), Box<dyn std::error::Error>> {
    let ca = DevCa::generate()?;
    let server = ca.issue_client("cases", Some(Role::Write), &["127.0.0.1"])?;
    let probe_addr = format!("127.0.0.1:{}", testkit::free_port());
    let ca_pem = ca.cert_pem();
    let health_addr = probe_addr.parse()?;
    let _cases = start(move |platform| {
        platform.access.tls = TlsMaterial {
            ca_pem: Some(ca_pem),
            identity: Some(server),
        };
        platform.health_addr = Some(health_addr);
    })
    .await;
    let url = format!("http://{probe_addr}");
    assert_eq!(health(&url, &ClientAccess::default()).await, Some(1));
    // The API is not there, whatever the caller presents.
    assert_eq!(
        codes(&url, &ClientAccess::token(WRITE_TOKEN)).await,
        Ok((Code::Unimplemented, Code::Unimplemented))
    );
    Ok(())
}

/// `message` as a call the desk makes for `user`, who may see `programs`,
/// with a vouch signed by `voucher`.
fn vouched<T>(voucher: &Voucher, user: &str, programs: &[&str], message: T) -> tonic::Request<T> {
    let programs: Vec<String> = programs.iter().map(|p| (*p).to_owned()).collect();
    let now = chrono::Utc::now().timestamp();
    let mut request = tonic::Request::new(message);
    if let Ok(value) = voucher.vouch(user, &programs, now).parse() {
        request.metadata_mut().insert(vouch::HEADER, value);
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_the_desk_vouches_for_sees_only_their_programs_and_signs_their_changes()
-> Result<(), Box<dyn std::error::Error>> {
    let (desk, _) = Voucher::generate()?;
    let trusted = TrustedFronts::of(vec![desk.public_key_bytes()]);
    let running = start(move |platform| platform.access.fronts = trusted).await;
    let channel = client::connect(&running.url, &ClientAccess::token(WRITE_TOKEN)).await?;
    let mut cases = CaseServiceClient::new(channel);
    let case_id = cases
        .open_case(open_request(&uuid_like(), "(312) 555-0142"))
        .await?
        .into_inner()
        .case_id;
    let get = || GetCaseRequest {
        case_id: case_id.clone(),
    };

    // Carla works the adherence program: the case is hers to see and note.
    let seen = cases
        .get_case(vouched(&desk, "carla", &["adherence"], get()))
        .await?;
    assert_eq!(seen.into_inner().case_id, case_id);
    let note = |text: &str| AddNoteRequest {
        meta: None,
        case_id: case_id.clone(),
        text: text.into(),
    };
    cases
        .add_note(vouched(
            &desk,
            "carla",
            &["adherence"],
            note("called, all well"),
        ))
        .await?;
    let case_events = cases
        .get_timeline(vouched(
            &desk,
            "carla",
            &["adherence"],
            GetTimelineRequest {
                case_id: case_id.clone(),
                kinds: vec!["NoteAdded".into()],
                page_size: 0,
                page_token: String::new(),
            },
        ))
        .await?
        .into_inner();
    let author =
        case_events
            .entries
            .iter()
            .find_map(|e| match e.event.as_ref()?.payload.as_ref()? {
                Payload::NoteAdded(note) => Some(note.author.clone()),
                _ => None,
            });
    assert_eq!(
        author.as_deref(),
        Some("carla"),
        "the note is hers, not the desk's"
    );

    // Olu works another program: to him the case does not exist.
    let refused = cases
        .get_case(vouched(&desk, "olu", &["refill-reminder"], get()))
        .await;
    assert_eq!(refused.err().map(|s| s.code()), Some(Code::NotFound));
    let refused = cases
        .add_note(vouched(&desk, "olu", &["refill-reminder"], note("not his")))
        .await;
    assert_eq!(refused.err().map(|s| s.code()), Some(Code::NotFound));
    let found = cases
        .find_cases_by_contact(vouched(
            &desk,
            "olu",
            &["refill-reminder"],
            FindCasesByContactRequest {
                contact: "(312) 555-0142".into(),
            },
        ))
        .await?;
    assert!(found.into_inner().case_ids.is_empty());

    // A vouch the desk did not sign is no vouch at all.
    let (stranger, _) = Voucher::generate()?;
    let forged = cases
        .get_case(vouched(&stranger, "carla", &["adherence"], get()))
        .await;
    assert_eq!(forged.err().map(|s| s.code()), Some(Code::Unauthenticated));
    Ok(())
}
