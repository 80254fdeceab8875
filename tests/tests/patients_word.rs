//! The patient's word binds every path that reaches them: cases, dispatch and
//! routing together.
//! - A caregiver whose number two cases share texts STOP: both cases' consent
//!   reads revoked for that number and granted for each patient's own, the
//!   number gets one confirmation and nothing else from either case, and each
//!   patient's own texts still go out.
//! - A number no case holds texts STOP; a case opened with it later starts with
//!   SMS to it revoked, and nothing is texted to it.
//! - A text for the caregiver is the caregiver's text: no patient name.
//! - A number two cases share is capped as one person.
//! - An Oklahoma number is not texted at 20:30 local, which the TCPA allows and
//!   Oklahoma does not, and is texted at 08:00 the next morning.
//! - A patient in two programs texts STOP after one program's text: by default
//!   both programs stop texting her number; where the deployment scopes
//!   opt-outs by program, only the program whose text she answered does.
//! - A patient marks a program email as spam: the email provider's signed
//!   complaint revokes email to her address, and the next email is not sent.

use std::time::Duration;

use chrono::TimeDelta;
use touchpoint_platform::clock::ClockConfig;
use touchpoint_platform::envelope::{new_envelope, timestamp};
use touchpoint_platform::grpc::client::AuthChannel;
use touchpoint_platform::testkit::events::person;
use touchpoint_platform::testkit::{self, eventually, utc};
use touchpoint_platform::topics::Stream;
use touchpoint_proto::v1::cadence_service_client::CadenceServiceClient;
use touchpoint_proto::v1::case_service_client::CaseServiceClient;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    Case, Channel, ConsentSource, ConsentState, ContactPoint, ContactPoints, Envelope,
    GetCaseRequest, GetPlanRequest, Language, OpenCaseRequest, OutreachRequested, Person,
    PersonName, RecordConsentRequest, RecordTherapyEventRequest, SuppressionReason,
    TherapyEventKind, contact_point,
};
use touchpoint_tests::fixtures::meta;
use touchpoint_tests::hub::Hub;

const WAIT: Duration = Duration::from_secs(90);
/// Tuesday 2026-11-24, 10:00 in New York: inside the adherence program's window.
const NOW: &str = "2026-11-24T15:00:00Z";
const CAREGIVER: &str = "+12125550177";
const PATIENTS: [&str; 2] = ["+12125550101", "+12125550102"];

fn phone(number: &str) -> ContactPoint {
    ContactPoint {
        value: Some(contact_point::Value::PhoneE164(number.into())),
    }
}

/// The consent state `case` holds for SMS to `number`: the number's own entry,
/// else the channel's.
fn sms_consent(case: &Case, number: &str) -> Option<(ConsentState, ConsentSource)> {
    let on_sms = |c: &&touchpoint_proto::v1::Consent| c.channel() == Channel::Sms;
    let own = case
        .consents
        .iter()
        .filter(on_sms)
        .find(|c| c.contact_point.as_ref() == Some(&phone(number)));
    let consent = own.or_else(|| {
        case.consents
            .iter()
            .filter(on_sms)
            .find(|c| c.contact_point.is_none())
    })?;
    Some((
        ConsentState::try_from(consent.state).ok()?,
        ConsentSource::try_from(consent.source).ok()?,
    ))
}

/// Opens an adherence case for a patient with `mobile` and, when given, a
/// caregiver with the mobile `caregiver`, and records written SMS consent for
/// the case; returns the case id.
async fn open_with_caregiver(
    cases: &mut CaseServiceClient<AuthChannel>,
    mobile: &str,
    caregiver: Option<&str>,
) -> String {
    let person = |given: &str, mobile: &str| Person {
        name: Some(PersonName {
            given_name: given.into(),
            family_name: "Ruiz".into(),
        }),
        contact: Some(ContactPoints {
            mobile_e164: mobile.into(),
            ..ContactPoints::default()
        }),
        relationship: String::new(),
    };
    let case_id = cases
        .open_case(OpenCaseRequest {
            meta: meta(&format!("open-{mobile}")),
            program_id: "adherence".into(),
            language: Language::En as i32,
            time_zone: "America/New_York".into(),
            patient: Some(person("Ana", mobile)),
            caregiver: caregiver.map(|number| Person {
                relationship: "daughter".into(),
                ..person("Lucía", number)
            }),
            prescriber_fax: String::new(),
            enrolled_at: Some(timestamp(utc(NOW) - TimeDelta::days(3))),
        })
        .await
        .unwrap_or_else(|e| panic!("open: {e}"))
        .into_inner()
        .case_id;
    cases
        .record_consent(RecordConsentRequest {
            meta: meta(&format!("consent-{mobile}")),
            case_id: case_id.clone(),
            channel: Channel::Sms as i32,
            source: ConsentSource::WrittenForm as i32,
            contact_point: String::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("consent: {e}"));
    case_id
}

/// A program text for `case_id` to `to`, as cadence would ask for it.
fn program_text(case_id: &str, to: &str) -> (String, (Stream, Envelope)) {
    program_text_for(case_id, to, false)
}

/// A program text for `case_id` to `to`, for the caregiver when `to_caregiver`.
fn program_text_for(case_id: &str, to: &str, to_caregiver: bool) -> (String, (Stream, Envelope)) {
    let step = ("adherence", "first-week", "first-week-check-in");
    program_text_with(case_id, to, to_caregiver, step, NOW)
}

/// The refill reminder's first text for `case_id` to `to`, asked for at
/// `EVENING`.
fn refill_text(case_id: &str, to: &str) -> (String, (Stream, Envelope)) {
    let step = ("refill-reminder", "five-days-before", "refill-due-soon");
    program_text_with(case_id, to, false, step, EVENING)
}

/// A text of `(program, step, template)` for `case_id` to `to`, due at `now`.
fn program_text_with(
    case_id: &str,
    to: &str,
    to_caregiver: bool,
    (program_id, step_id, template_id): (&str, &str, &str),
    now: &str,
) -> (String, (Stream, Envelope)) {
    let attempt_id = uuid::Uuid::now_v7().to_string();
    let request = OutreachRequested {
        attempt_id: attempt_id.clone(),
        program_id: program_id.into(),
        step_id: step_id.into(),
        channel: Channel::Sms as i32,
        template_id: template_id.into(),
        language: Language::En as i32,
        destination: Some(phone(to)),
        due_at: Some(timestamp(utc(now))),
        not_after: Some(timestamp(utc(now) + TimeDelta::hours(8))),
        attempt_number: 1,
        to_caregiver,
        ..OutreachRequested::default()
    };
    let envelope = new_envelope(
        case_id,
        "cadence",
        utc(now),
        Payload::OutreachRequested(request),
        None,
    );
    (attempt_id, (Stream::Outreach, envelope))
}

/// What the tests ask of the services besides texting them.
trait Checks {
    async fn case_once(&self, case_id: &str, accept: impl Fn(&Case) -> bool) -> Case;
    async fn outcomes(&self, texts: &[(&str, &str)]) -> Vec<i32>;
    async fn outcomes_of(&self, texts: Vec<(String, (Stream, Envelope))>) -> Vec<i32>;
}

impl Checks for Hub {
    /// The case, once `accept` takes it.
    async fn case_once(&self, case_id: &str, accept: impl Fn(&Case) -> bool) -> Case {
        eventually("the case", WAIT, || {
            let mut cases = self.cases.clone();
            let case_id = case_id.to_owned();
            let accept = &accept;
            async move {
                let case = cases
                    .get_case(GetCaseRequest { case_id })
                    .await
                    .ok()?
                    .into_inner();
                accept(&case).then_some(case)
            }
        })
        .await
    }

    /// Publishes program texts (case, to) and returns, for each, the
    /// suppression reason, or -1 when it was sent.
    async fn outcomes(&self, texts: &[(&str, &str)]) -> Vec<i32> {
        let texts = texts
            .iter()
            .map(|(case_id, to)| program_text(case_id, to))
            .collect();
        self.outcomes_of(texts).await
    }

    /// Publishes texts as `program_text_with` makes them and returns, for each,
    /// the suppression reason, or -1 when it was sent.
    async fn outcomes_of(&self, texts: Vec<(String, (Stream, Envelope))>) -> Vec<i32> {
        let (ids, events): (Vec<String>, Vec<_>) = texts.into_iter().unzip();
        testkit::publish(&self.prefix, &events).await;
        let mut outcomes = Vec::new();
        for attempt_id in ids {
            outcomes.push(
                self.attempts
                    .wait_for("the program text's outcome", WAIT, |e| match &e.payload {
                        Some(Payload::AttemptSuppressed(s)) if s.attempt_id == attempt_id => {
                            Some(s.reason)
                        }
                        Some(Payload::AttemptSent(s)) if s.attempt_id == attempt_id => Some(-1),
                        _ => None,
                    })
                    .await,
            );
        }
        outcomes
    }
}

const SENT: i32 = -1;
const OPTED_OUT: i32 = SuppressionReason::OptedOut as i32;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_caregiver_number_shared_by_two_cases_texts_stop_and_both_cases_stop_texting_it() {
    let mut hub = Hub::start(NOW).await;
    let mut case_ids = Vec::new();
    for mobile in PATIENTS {
        case_ids.push(open_with_caregiver(&mut hub.cases, mobile, Some(CAREGIVER)).await);
    }

    // Routing knows both cases by the caregiver's number; dispatch has their
    // SMS consent.
    let pool = sqlx::PgPool::connect(&hub.database.url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually("routing and dispatch know both cases", WAIT, || async {
        let indexed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM routing.case_contacts WHERE case_id = ANY($1)
             AND contact_key = 'phone:' || $2",
        )
        .bind(&case_ids)
        .bind(CAREGIVER)
        .fetch_one(&pool)
        .await
        .ok()?;
        let consented: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM dispatch.case_views
             WHERE case_id = ANY($1) AND 'CHANNEL_SMS' = ANY(consented)",
        )
        .bind(&case_ids)
        .fetch_one(&pool)
        .await
        .ok()?;
        (indexed == 2 && consented == 2).then_some(())
    })
    .await;

    let status = hub
        .text(CAREGIVER, "Stop. Thank you", "SM-caregiver-stop")
        .await;
    assert_eq!(status, 200);

    // Both cases' consent reads revoked for the caregiver's number, from the
    // keyword, and still granted for each patient's own number.
    for (case_id, patient) in case_ids.iter().zip(PATIENTS) {
        let case = hub
            .case_once(case_id, |case| {
                sms_consent(case, CAREGIVER).map(|c| c.0) == Some(ConsentState::Revoked)
            })
            .await;
        assert_eq!(
            sms_consent(&case, CAREGIVER),
            Some((ConsentState::Revoked, ConsentSource::SmsKeyword))
        );
        assert_eq!(
            sms_consent(&case, patient),
            Some((ConsentState::Granted, ConsentSource::WrittenForm)),
            "the patient's own number is untouched"
        );
    }

    // One confirmation to the caregiver, however many cases the number reaches.
    eventually("the opt-out confirmation", WAIT, || async {
        hub.sms.received().into_iter().find(|m| m.to == CAREGIVER)
    })
    .await;

    // The next program texts: to the caregiver from either case, suppressed;
    // to each patient, sent.
    let outcomes = hub
        .outcomes(&[
            (&case_ids[0], CAREGIVER),
            (&case_ids[0], PATIENTS[0]),
            (&case_ids[1], CAREGIVER),
            (&case_ids[1], PATIENTS[1]),
        ])
        .await;
    assert_eq!(outcomes, vec![OPTED_OUT, SENT, OPTED_OUT, SENT]);
    let received = hub.sms.received();
    assert_eq!(
        received.iter().filter(|m| m.to == CAREGIVER).count(),
        1,
        "the caregiver's number got its confirmation and nothing else"
    );
    for patient in PATIENTS {
        assert_eq!(received.iter().filter(|m| m.to == patient).count(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stop_from_a_number_no_case_holds_is_honoured_when_a_case_is_opened_with_it() {
    let mut hub = Hub::start(NOW).await;
    let stranger = PATIENTS[0];
    assert_eq!(hub.text(stranger, "STOP", "SM-stranger-stop").await, 200);

    let case_id = open_with_caregiver(&mut hub.cases, stranger, None).await;
    let case = hub
        .case_once(&case_id, |case| {
            sms_consent(case, stranger).map(|c| c.0) == Some(ConsentState::Revoked)
        })
        .await;
    assert_eq!(
        sms_consent(&case, stranger),
        Some((ConsentState::Revoked, ConsentSource::SmsKeyword)),
        "the case starts with the number's STOP, though its written consent came later"
    );
    let revoked_at = case
        .consents
        .iter()
        .find(|c| c.contact_point.is_some())
        .and_then(|c| c.at)
        .map(|t| t.seconds);
    assert_eq!(revoked_at, Some(utc(NOW).timestamp()), "as of the STOP");

    assert_eq!(hub.outcomes(&[(&case_id, stranger)]).await, vec![OPTED_OUT]);
    assert!(
        hub.sms.received().iter().all(|m| m.to != stranger),
        "nothing is texted to the number"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_text_to_the_caregiver_is_the_caregivers_text_without_the_patients_name() {
    let mut hub = Hub::start(NOW).await;
    // The patient has no mobile of her own: texts reach her daughter.
    let case_id = open_with_caregiver(&mut hub.cases, "", Some(CAREGIVER)).await;
    let (attempt_id, request) = program_text_for(&case_id, CAREGIVER, true);
    testkit::publish(&hub.prefix, &[request]).await;
    let sent = hub
        .attempts
        .wait_for("the caregiver's text", WAIT, |e| match &e.payload {
            Some(Payload::AttemptSent(s)) if s.attempt_id == attempt_id => Some(s.clone()),
            Some(Payload::AttemptSuppressed(s)) if s.attempt_id == attempt_id => {
                panic!("suppressed: {}", s.reason)
            }
            _ => None,
        })
        .await;
    assert_eq!(sent.channel(), Channel::Sms);
    let texts: Vec<String> = hub
        .sms
        .received()
        .into_iter()
        .filter(|m| m.to == CAREGIVER)
        .map(|m| m.body)
        .collect();
    assert_eq!(texts.len(), 1);
    let text = &texts[0];
    assert!(
        text.contains("we are checking in with someone in your care"),
        "the caregiver's check-in: {text}"
    );
    for patient_data in ["Ana", "Ruiz"] {
        assert!(!text.contains(patient_data), "{patient_data} in {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_number_two_cases_share_is_capped_as_one_person() {
    let mut hub = Hub::start(NOW).await;
    let mut case_ids = Vec::new();
    for mobile in PATIENTS {
        case_ids.push(open_with_caregiver(&mut hub.cases, mobile, Some(CAREGIVER)).await);
    }
    // The adherence program allows one text a day: the second case's text to
    // the same number waits, though that case sent nothing today.
    let outcomes = hub
        .outcomes(&[(&case_ids[0], CAREGIVER), (&case_ids[1], CAREGIVER)])
        .await;
    // Whichever goes first is sent.
    let mut sorted = outcomes.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![SENT, SuppressionReason::FrequencyCap as i32],
        "the program's cap counts the number across cases"
    );
    // The case whose text was held sent nothing today: its patient's own
    // number is another person, and is texted.
    let held = usize::from(outcomes[0] == SENT);
    assert_eq!(
        hub.outcomes(&[(&case_ids[held], PATIENTS[held])]).await,
        vec![SENT],
        "the held case's patient's own number is another person"
    );
}

/// 20:30 in Tulsa and Chicago (UTC-6) on Monday 2026-11-23.
const EVENING: &str = "2026-11-24T02:30:00Z";
/// 08:00 there the next morning.
const NEXT_MORNING: &str = "2026-11-24T14:00:00Z";
const TULSA: &str = "+19185550142";
const CHICAGO: &str = "+13125550142";

/// Opens a refill-reminder case for a patient in Chicago's time zone with the
/// mobile `mobile`, consented to SMS, whose first reminder falls due at
/// `EVENING`; returns the case id.
async fn open_refill_case(hub: &mut Hub, mobile: &str) -> String {
    let case_id = hub
        .cases
        .open_case(OpenCaseRequest {
            meta: meta(&format!("open-refill-{mobile}")),
            program_id: "refill-reminder".into(),
            language: Language::En as i32,
            time_zone: "America/Chicago".into(),
            patient: Some(person("Ana", "Ruiz", mobile, "")),
            caregiver: None,
            prescriber_fax: String::new(),
            enrolled_at: Some(timestamp(utc("2026-10-20T15:00:00Z"))),
        })
        .await
        .unwrap_or_else(|e| panic!("open: {e}"))
        .into_inner()
        .case_id;
    hub.cases
        .record_consent(RecordConsentRequest {
            meta: meta(&format!("consent-refill-{mobile}")),
            case_id: case_id.clone(),
            channel: Channel::Sms as i32,
            source: ConsentSource::WrittenForm as i32,
            contact_point: String::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("consent: {e}"));
    // 30 days' supply: the refill is due at EVENING + 5 days, and the reminder
    // five days before it at EVENING.
    hub.cases
        .record_therapy_event(RecordTherapyEventRequest {
            meta: meta(&format!("fill-refill-{mobile}")),
            case_id: case_id.clone(),
            kind: TherapyEventKind::Fill as i32,
            at: Some(timestamp(utc(EVENING) - TimeDelta::days(25))),
            days_supply: 30,
        })
        .await
        .unwrap_or_else(|e| panic!("fill: {e}"));
    case_id
}

/// Waits for the text of `case_id`'s first reminder to be sent; returns the
/// attempt id.
async fn reminder_sent(hub: &Hub, case_id: &str) -> String {
    hub.attempts
        .wait_for("the reminder sent", WAIT, |e| match &e.payload {
            Some(Payload::AttemptSent(s)) if e.case_id == case_id => Some(s.attempt_id.clone()),
            _ => None,
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oklahoma_number_is_not_texted_at_half_past_eight_in_the_evening_but_at_eight_next_morning()
 {
    // The evening: the TCPA allows until 21:00, and so does the program.
    let mut hub = Hub::start_on(ClockConfig::Fixed { at: utc(EVENING) }, true).await;
    let chicago = open_refill_case(&mut hub, CHICAGO).await;
    let tulsa = open_refill_case(&mut hub, TULSA).await;
    reminder_sent(&hub, &chicago).await;
    let Some(cadence) = hub.cadence else {
        panic!("cadence was started");
    };
    let cadence = CadenceServiceClient::new(testkit::channel(cadence).await);
    let planned = eventually("the Tulsa reminder planned", WAIT, || {
        let mut cadence = cadence.clone();
        let case_id = tulsa.clone();
        async move {
            let plan = cadence
                .get_plan(GetPlanRequest { case_id })
                .await
                .ok()?
                .into_inner();
            let first = plan
                .upcoming
                .into_iter()
                .find(|t| t.step_id == "five-days-before")?;
            Some((first.send_at, first.send_at_local))
        }
    })
    .await;
    assert_eq!(
        planned,
        (
            Some(timestamp(utc(NEXT_MORNING))),
            "2026-11-24T08:00:00-06:00".to_owned()
        ),
        "Oklahoma allows texts until 20:00: the reminder waits for the morning"
    );
    // Dispatch checks the same rule: a text for the Tulsa case asked for now is
    // held back, not sent.
    let (attempt_id, event) = refill_text(&tulsa, TULSA);
    testkit::publish(&hub.prefix, &[event]).await;
    let reason = hub
        .attempts
        .wait_for("the evening text's outcome", WAIT, |e| match &e.payload {
            Some(Payload::AttemptSuppressed(s)) if s.attempt_id == attempt_id => Some(s.reason),
            Some(Payload::AttemptSent(s)) if s.attempt_id == attempt_id => Some(SENT),
            _ => None,
        })
        .await;
    assert_eq!(reason, SuppressionReason::OutsideContactWindow as i32);
    let to_tulsa = hub.sms.received().iter().filter(|m| m.to == TULSA).count();
    assert_eq!(
        to_tulsa, 0,
        "nothing reached the Tulsa number in the evening"
    );
    drop(hub);

    // The next morning, the same case as it stands then: its reminder goes out.
    let mut hub = Hub::start_on(
        ClockConfig::Fixed {
            at: utc(NEXT_MORNING),
        },
        true,
    )
    .await;
    let tulsa = open_refill_case(&mut hub, TULSA).await;
    reminder_sent(&hub, &tulsa).await;
    let to_tulsa = hub.sms.received().iter().filter(|m| m.to == TULSA).count();
    assert_eq!(
        to_tulsa, 1,
        "the reminder reached the Tulsa number at 08:00"
    );
}

/// The refill reminder's first step.
const REFILL_STEP: (&str, &str, &str) = ("refill-reminder", "five-days-before", "refill-due-soon");

/// Ana is in the adherence program, whose texts go to her daughter, and in the
/// refill reminders on her own number. The adherence program texts her
/// daughter; then Ana texts STOP from her own number, which answers it (a
/// reply from any of a case's numbers answers the case's latest text on the
/// channel), and each program texts her number.
async fn stop_after_an_adherence_text(hub: &mut Hub) -> Stopped {
    let ana = PATIENTS[0];
    let adherence = open_with_caregiver(&mut hub.cases, ana, Some(CAREGIVER)).await;
    let refill = open_refill_case(hub, ana).await;
    assert_eq!(hub.outcomes(&[(&adherence, CAREGIVER)]).await, vec![SENT]);
    let pool = sqlx::PgPool::connect(&hub.database.url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually(
        "routing knows the adherence text was sent",
        WAIT,
        || async {
            let sent: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM routing.last_attempts
             WHERE case_id = $1 AND channel = 'CHANNEL_SMS'",
            )
            .bind(&adherence)
            .fetch_one(&pool)
            .await
            .ok()?;
            let indexed: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM routing.case_contacts WHERE contact_key = 'phone:' || $1",
            )
            .bind(ana)
            .fetch_one(&pool)
            .await
            .ok()?;
            (sent == 1 && indexed == 2).then_some(())
        },
    )
    .await;

    assert_eq!(hub.text(ana, "STOP", "SM-ana-stop").await, 200);
    hub.case_once(&adherence, |case| {
        sms_consent(case, ana) == Some((ConsentState::Revoked, ConsentSource::SmsKeyword))
    })
    .await;
    // Dispatch has heard the STOP once it answered it.
    eventually("the opt-out confirmation", WAIT, || async {
        hub.sms.received().into_iter().find(|m| m.to == ana)
    })
    .await;
    let programs = eventually("dispatch holds the opt-out", WAIT, || async {
        let programs: Vec<String> = sqlx::query_scalar(
            "SELECT program_id FROM dispatch.opted_out_destinations
             WHERE destination = $1 AND opted_out_at > opted_in_at ORDER BY program_id",
        )
        .bind(ana)
        .fetch_all(&pool)
        .await
        .ok()?;
        (!programs.is_empty()).then_some(programs)
    })
    .await;

    let outcomes = hub
        .outcomes_of(vec![
            program_text(&adherence, ana),
            program_text_with(&refill, ana, false, REFILL_STEP, NOW),
        ])
        .await;
    Stopped {
        refill,
        programs,
        outcomes: [outcomes[0], outcomes[1]],
    }
}

/// What Ana's STOP did.
struct Stopped {
    /// Her refill case.
    refill: String,
    /// The programs dispatch holds her number opted out of ("" for every).
    programs: Vec<String>,
    /// The adherence and the refill program's next texts to her number.
    outcomes: [i32; 2],
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stop_after_one_programs_text_stops_every_programs_texts_to_the_number() {
    let mut hub = Hub::start(NOW).await;
    let stopped = stop_after_an_adherence_text(&mut hub).await;
    assert_eq!(stopped.programs, [""], "opted out of every program");
    assert_eq!(
        stopped.outcomes,
        [OPTED_OUT, OPTED_OUT],
        "the FCC's revoke-all rule"
    );
    hub.case_once(&stopped.refill, |case| {
        sms_consent(case, PATIENTS[0]) == Some((ConsentState::Revoked, ConsentSource::SmsKeyword))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scoped_by_program_a_stop_stops_only_the_program_whose_text_it_answers() {
    let mut hub = Hub::start_scoped_by_program(NOW).await;
    let stopped = stop_after_an_adherence_text(&mut hub).await;
    assert_eq!(stopped.programs, ["adherence"]);
    assert_eq!(
        stopped.outcomes,
        [OPTED_OUT, SENT],
        "the adherence program stops texting Ana; her refill reminders go on"
    );
    let case = hub
        .case_once(&stopped.refill, |case| {
            sms_consent(case, PATIENTS[0]).is_some()
        })
        .await;
    assert_eq!(
        sms_consent(&case, PATIENTS[0]),
        Some((ConsentState::Granted, ConsentSource::WrittenForm)),
        "the refill case's consent stands"
    );
    let received = hub.sms.received();
    assert_eq!(
        received.iter().filter(|m| m.to == PATIENTS[0]).count(),
        2,
        "Ana's number got the STOP's confirmation and the refill reminder"
    );
    // A case of the adherence program given Ana's number later (she cares for
    // her husband) starts with it revoked.
    let later = open_with_caregiver(&mut hub.cases, PATIENTS[1], Some(PATIENTS[0])).await;
    hub.case_once(&later, |case| {
        sms_consent(case, PATIENTS[0]) == Some((ConsentState::Revoked, ConsentSource::SmsKeyword))
    })
    .await;
}

const ANA_EMAIL: &str = "ana.ruiz@example.com";

/// The welcome email for `case_id` to `to`, as cadence would ask for it.
fn program_email(case_id: &str, to: &str) -> (String, (Stream, Envelope)) {
    let step = ("adherence", "welcome", "welcome");
    let (attempt_id, (stream, mut envelope)) = program_text_with(case_id, to, false, step, NOW);
    if let Some(Payload::OutreachRequested(request)) = envelope.payload.as_mut() {
        request.channel = Channel::Email as i32;
        request.destination = Some(ContactPoint {
            value: Some(contact_point::Value::Email(to.into())),
        });
    }
    (attempt_id, (stream, envelope))
}

/// The consent `case` holds for email to `address`: the address's own entry.
fn email_consent(case: &Case, address: &str) -> Option<ConsentState> {
    let point = ContactPoint {
        value: Some(contact_point::Value::Email(address.into())),
    };
    case.consents
        .iter()
        .find(|c| c.channel() == Channel::Email && c.contact_point.as_ref() == Some(&point))
        .map(|c| c.state())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_spam_complaint_at_the_email_provider_stops_email_to_that_address() {
    let mut hub = Hub::start(NOW).await;
    let case_id = hub
        .cases
        .open_case(OpenCaseRequest {
            meta: meta("open-ana-email"),
            program_id: "adherence".into(),
            language: Language::En as i32,
            time_zone: "America/New_York".into(),
            patient: Some(person("Ana", "Ruiz", PATIENTS[0], ANA_EMAIL)),
            caregiver: None,
            prescriber_fax: String::new(),
            enrolled_at: Some(timestamp(utc(NOW) - TimeDelta::days(1))),
        })
        .await
        .unwrap_or_else(|e| panic!("open: {e}"))
        .into_inner()
        .case_id;
    hub.cases
        .record_consent(RecordConsentRequest {
            meta: meta("consent-ana-email"),
            case_id: case_id.clone(),
            channel: Channel::Email as i32,
            source: ConsentSource::WrittenForm as i32,
            contact_point: String::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("consent: {e}"));

    // The welcome goes out through the email provider, once.
    let first = hub
        .outcomes_of(vec![program_email(&case_id, ANA_EMAIL)])
        .await;
    assert_eq!(first, [SENT]);
    let sent = hub.mailgun.received();
    assert_eq!(sent.len(), 1);

    // Ana marks it as spam: Mailgun's signed complaint reaches routing, and
    // email to her address is revoked on her case.
    assert_eq!(
        hub.mailgun.report(&sent[0].id, "complained", None).await,
        Some(200)
    );
    hub.case_once(&case_id, |case| {
        email_consent(case, ANA_EMAIL) == Some(ConsentState::Revoked)
    })
    .await;
    // The next email is not sent.
    let second = hub
        .outcomes_of(vec![program_email(&case_id, ANA_EMAIL)])
        .await;
    assert_eq!(second, [OPTED_OUT], "no email after a complaint");
    assert_eq!(hub.mailgun.received().len(), 1);
}
