//! `touchpoint cases open|show`: open a case with its consents and team, and
//! show one case's state. What `show` prints masks the patient: initials, the
//! last two digits of a number, the domain of an address.

use chrono::{DateTime, Utc};
use touchpoint_platform::envelope::timestamp;
use touchpoint_platform::grpc::client::AuthChannel as GrpcChannel;
use touchpoint_proto::v1::case_service_client::CaseServiceClient;
use touchpoint_proto::v1::{
    AssignCoordinatorRequest, Case, CaseStatus, Channel, CommandMeta, ConsentSource, ConsentState,
    ContactPoints, GetCaseRequest, Language, OpenCaseRequest, Person, PersonName,
    RecordConsentRequest, contact_point,
};

use crate::mesh::Peer;

/// `cases open`'s flags. Values that are patient data (names, number,
/// address) are taken as they are; the cases service checks them and names
/// the field, never the value.
#[derive(Clone, PartialEq, Eq, clap::Args)]
pub struct OpenArgs {
    /// The program, e.g. adherence.
    #[arg(long, value_name = "ID")]
    pub program: String,
    /// The patient's language: en or es.
    #[arg(long, value_parser = language)]
    pub language: Language,
    /// The patient's IANA time zone, e.g. America/Chicago.
    #[arg(long, value_name = "ZONE")]
    pub time_zone: String,
    /// The patient's given name.
    #[arg(long, value_name = "NAME")]
    pub given: String,
    /// The patient's family name.
    #[arg(long, value_name = "NAME")]
    pub family: String,
    /// The patient's mobile, in any common form.
    #[arg(
        long,
        value_name = "NUMBER",
        default_value = "",
        hide_default_value = true
    )]
    pub mobile: String,
    /// The patient's email address.
    #[arg(
        long,
        value_name = "ADDRESS",
        default_value = "",
        hide_default_value = true
    )]
    pub email: String,
    /// Channels consented to on a written form: sms, email, voice, fax, mail.
    #[arg(long = "consent", value_name = "CHANNELS", value_delimiter = ',', value_parser = channel)]
    pub consents: Vec<Channel>,
    /// The coordinator to assign.
    #[arg(long, value_name = "ID", default_value = "", hide_default_value = true)]
    pub coordinator: String,
    /// The navigator to assign.
    #[arg(long, value_name = "ID", default_value = "", hide_default_value = true)]
    pub navigator: String,
    /// Repeats the command safely when given again; new each run when unset.
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
}

impl std::fmt::Debug for OpenArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenArgs")
            .field("program", &self.program)
            .field("language", &self.language)
            .field("consents", &self.consents)
            .finish_non_exhaustive()
    }
}

fn language(raw: &str) -> Result<Language, String> {
    match raw {
        "en" => Ok(Language::En),
        "es" => Ok(Language::Es),
        _ => Err("en or es".into()),
    }
}

fn channel(raw: &str) -> Result<Channel, String> {
    match raw.trim() {
        "sms" => Ok(Channel::Sms),
        "email" => Ok(Channel::Email),
        "voice" => Ok(Channel::Voice),
        "fax" => Ok(Channel::Fax),
        "mail" => Ok(Channel::Mail),
        _ => Err("sms, email, voice, fax or mail".into()),
    }
}

/// A client of the cases service.
pub async fn client(cases: &Peer) -> anyhow::Result<CaseServiceClient<GrpcChannel>> {
    Ok(CaseServiceClient::new(cases.channel().await?))
}

/// Opens the case, records its consents and assigns its team; returns the case
/// id and its version. Each command's request id derives from `--request-id`,
/// so running the same command again changes nothing.
pub async fn open(cases: &Peer, args: &OpenArgs) -> anyhow::Result<(String, u64)> {
    open_with(
        &mut client(cases).await?,
        args,
        Utc::now(),
        "touchpoint-cli",
    )
    .await
}

/// [`open`] through `client`, enrolled at `enrolled_at`, by `actor`.
pub async fn open_with(
    client: &mut CaseServiceClient<GrpcChannel>,
    args: &OpenArgs,
    enrolled_at: DateTime<Utc>,
    actor: &str,
) -> anyhow::Result<(String, u64)> {
    let request_id = args
        .request_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let meta = |what: &str| {
        Some(CommandMeta {
            request_id: format!("{request_id}-{what}"),
            expected_version: None,
            actor: actor.into(),
        })
    };
    let opened = client
        .open_case(OpenCaseRequest {
            meta: meta("open"),
            program_id: args.program.clone(),
            language: args.language as i32,
            time_zone: args.time_zone.clone(),
            patient: Some(Person {
                name: Some(PersonName {
                    given_name: args.given.clone(),
                    family_name: args.family.clone(),
                }),
                contact: Some(ContactPoints {
                    mobile_e164: args.mobile.clone(),
                    email: args.email.clone(),
                    ..ContactPoints::default()
                }),
                relationship: String::new(),
            }),
            caregiver: None,
            prescriber_fax: String::new(),
            enrolled_at: Some(timestamp(enrolled_at)),
        })
        .await
        .map_err(|status| anyhow::anyhow!("OpenCase: {}", status.message()))?
        .into_inner();
    let mut version = opened.version;
    for channel in &args.consents {
        version = client
            .record_consent(RecordConsentRequest {
                meta: meta(channel.as_str_name()),
                case_id: opened.case_id.clone(),
                channel: *channel as i32,
                source: ConsentSource::WrittenForm as i32,
                contact_point: String::new(),
            })
            .await
            .map_err(|status| anyhow::anyhow!("RecordConsent: {}", status.message()))?
            .into_inner()
            .version;
    }
    if !args.coordinator.is_empty() || !args.navigator.is_empty() {
        version = client
            .assign_coordinator(AssignCoordinatorRequest {
                meta: meta("assign"),
                case_id: opened.case_id.clone(),
                coordinator_id: args.coordinator.clone(),
                navigator_id: args.navigator.clone(),
            })
            .await
            .map_err(|status| anyhow::anyhow!("AssignCoordinator: {}", status.message()))?
            .into_inner()
            .version;
    }
    Ok((opened.case_id, version))
}

/// Fetches `case_id` and prints it masked.
pub async fn show_case(cases: &Peer, case_id: &str) -> anyhow::Result<()> {
    let case = client(cases)
        .await?
        .get_case(GetCaseRequest {
            case_id: case_id.to_owned(),
        })
        .await
        .map_err(|status| anyhow::anyhow!("GetCase: {}", status.message()))?
        .into_inner();
    print!("{}", show(&case));
    Ok(())
}

/// A case's state, one field a line, the patient masked.
pub fn show(case: &Case) -> String {
    let when = |t: &Option<prost_types::Timestamp>| {
        t.as_ref()
            .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
            .map_or_else(
                || "-".into(),
                |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
            )
    };
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    let mut lines = vec![
        ("case", case.case_id.clone()),
        ("program", case.program_id.clone()),
        (
            "status",
            CaseStatus::try_from(case.status)
                .map_or("?", |s| s.as_str_name())
                .trim_start_matches("CASE_STATUS_")
                .to_lowercase()
                + &if case.status_reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", case.status_reason)
                },
        ),
        (
            "language",
            Language::try_from(case.language)
                .map_or("?", |l| l.as_str_name())
                .trim_start_matches("LANGUAGE_")
                .to_lowercase(),
        ),
        ("time zone", case.time_zone.clone()),
        ("opened", when(&case.opened_at)),
        ("version", case.version.to_string()),
        ("patient", masked_person(case.patient.as_ref())),
        ("caregiver", masked_person(case.caregiver.as_ref())),
        ("coordinator", or_dash(&case.coordinator_id)),
        ("navigator", or_dash(&case.navigator_id)),
    ];
    let consents: Vec<String> = case
        .consents
        .iter()
        .map(|c| {
            let channel = Channel::try_from(c.channel)
                .map_or("?", |ch| ch.as_str_name())
                .trim_start_matches("CHANNEL_")
                .to_lowercase();
            let state = if c.state == ConsentState::Granted as i32 {
                "granted"
            } else {
                "revoked"
            };
            let point = c
                .contact_point
                .as_ref()
                .and_then(|p| p.value.as_ref())
                .map(|value| match value {
                    contact_point::Value::PhoneE164(n) | contact_point::Value::FaxE164(n) => {
                        format!(" for {}", phone_tail(n))
                    }
                    contact_point::Value::Email(e) => format!(" for {}", email_domain(e)),
                    // A region and country say which address without showing it.
                    contact_point::Value::PostalAddress(a) => {
                        format!(" for an address in {} {}", a.region, a.country)
                    }
                })
                .unwrap_or_default();
            format!("{channel} {state}{point} {}", when(&c.at))
        })
        .collect();
    lines.push((
        "consents",
        if consents.is_empty() {
            "-".into()
        } else {
            consents.join("; ")
        },
    ));
    if let Some(therapy) = &case.therapy {
        lines.push(("therapy start", when(&therapy.therapy_start)));
        lines.push(("next refill", when(&therapy.next_refill_due)));
    }
    lines
        .into_iter()
        .map(|(label, value)| format!("{label:<14}{value}\n"))
        .collect()
}

fn masked_person(person: Option<&Person>) -> String {
    let Some(person) = person else {
        return "-".into();
    };
    let initial = |s: &str| {
        s.chars()
            .next()
            .map_or_else(String::new, |c| format!("{c}."))
    };
    let name = person
        .name
        .as_ref()
        .map(|n| format!("{} {}", initial(&n.given_name), initial(&n.family_name)))
        .unwrap_or_default();
    let mut parts = vec![name.trim().to_owned()];
    if let Some(contact) = &person.contact {
        for (label, number) in [
            ("mobile", &contact.mobile_e164),
            ("landline", &contact.landline_e164),
        ] {
            if !number.is_empty() {
                parts.push(format!("{label} {}", phone_tail(number)));
            }
        }
        if contact.email.contains('@') {
            parts.push(format!("email {}", email_domain(&contact.email)));
        }
    }
    parts.retain(|p| !p.is_empty());
    parts.join(", ")
}

/// A number as the CLI shows it: its last two digits, e.g. `…47`.
fn phone_tail(number: &str) -> String {
    let tail: Vec<char> = number.chars().rev().take(2).collect();
    format!("…{}", tail.into_iter().rev().collect::<String>())
}

/// An address as the CLI shows it: its domain, e.g. `…@example.net`.
fn email_domain(address: &str) -> String {
    address
        .split_once('@')
        .map_or_else(|| "…".to_owned(), |(_, domain)| format!("…@{domain}"))
}

#[cfg(test)]
mod tests {
    use touchpoint_proto::v1::{Consent, ContactPoint};

    use super::*;

    #[derive(clap::Parser)]
    struct Open {
        #[command(flatten)]
        args: OpenArgs,
    }

    fn args(list: &[&str]) -> Result<OpenArgs, clap::Error> {
        use clap::Parser as _;
        Open::try_parse_from(std::iter::once("open").chain(list.iter().copied())).map(|o| o.args)
    }

    const GOOD: [&str; 10] = [
        "--program",
        "adherence",
        "--language",
        "es",
        "--time-zone",
        "America/Chicago",
        "--given",
        "Rosa",
        "--family",
        "Quintero",
    ];

    #[test]
    fn open_reads_its_flags_and_names_the_missing_one() {
        let mut flags = GOOD.to_vec();
        flags.extend(["--consent", "sms,email", "--coordinator", "coord-maria"]);
        let open = args(&flags).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(open.language, Language::Es);
        assert_eq!(open.consents, vec![Channel::Sms, Channel::Email]);
        assert_eq!(open.coordinator, "coord-maria");
        let missing = args(&GOOD[..8])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(missing.contains("--family <NAME>"), "{missing}");
        assert!(!missing.contains("Rosa"), "{missing}");
        let mut bad = GOOD.to_vec();
        bad.extend(["--consent", "sms,pigeon"]);
        let refused = args(&bad).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            refused.contains("sms, email, voice, fax or mail"),
            "{refused}"
        );
        assert!(args(&["--program"]).is_err());
        let mut again = GOOD.to_vec();
        again.extend(["--request-id", "rosa-1"]);
        assert_eq!(
            args(&again).map(|o| o.request_id).ok(),
            Some(Some("rosa-1".to_owned()))
        );
    }

    #[test]
    fn flags_do_not_show_in_debug_output() {
        let open = args(&GOOD).unwrap_or_else(|e| panic!("{e}"));
        let debug = format!("{open:?}");
        assert!(
            !debug.contains("Rosa") && !debug.contains("Quintero"),
            "{debug}"
        );
    }

    #[test]
    fn show_masks_the_patient() {
        let case = Case {
            case_id: "case-1".into(),
            program_id: "adherence".into(),
            status: CaseStatus::Active as i32,
            language: Language::Es as i32,
            time_zone: "America/Chicago".into(),
            patient: Some(Person {
                name: Some(PersonName {
                    given_name: "Rosa".into(),
                    family_name: "Quintero".into(),
                }),
                contact: Some(ContactPoints {
                    mobile_e164: "+13125550147".into(),
                    email: "rosa.q@example.net".into(),
                    ..ContactPoints::default()
                }),
                relationship: String::new(),
            }),
            consents: vec![
                Consent {
                    channel: Channel::Sms as i32,
                    state: ConsentState::Granted as i32,
                    ..Consent::default()
                },
                Consent {
                    channel: Channel::Sms as i32,
                    state: ConsentState::Revoked as i32,
                    contact_point: Some(ContactPoint {
                        value: Some(contact_point::Value::PhoneE164("+13125550147".into())),
                    }),
                    ..Consent::default()
                },
            ],
            ..Case::default()
        };
        let shown = show(&case);
        assert!(
            shown.contains("patient       R. Q., mobile …47, email …@example.net"),
            "{shown}"
        );
        assert!(shown.contains("status        active"), "{shown}");
        assert!(shown.contains("consents      sms granted"), "{shown}");
        assert!(shown.contains("sms revoked for …47"), "{shown}");
        for secret in ["Rosa", "Quintero", "5550147", "rosa.q"] {
            assert!(!shown.contains(secret), "{secret} shown");
        }
    }
}
