//! The case aggregate: which commands a case accepts in its current state, the
//! events they produce, and how events fold into the state `GetCase` returns.
//!
//! Pure: `decide` and `apply` take values and a `now` and touch nothing else.

use chrono::{DateTime, TimeDelta, Utc};
use touchpoint_platform::envelope::{instant, timestamp};
use touchpoint_proto::Timestamp;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    AdverseEventReported, Case, CaseOpened, CaseStatus, CaseStatusChanged, Channel, Consent,
    ConsentRecorded, ConsentRevoked, ConsentSource, ConsentState, ContactPoint, ContactPoints,
    ContactPointsUpdated, CoordinatorAssigned, Fill, NoteAdded, Person, Therapy, TherapyEventKind,
    TherapyEventRecorded,
};

use super::contact::{ContactKey, EmailAddress, PhoneNumber};
use super::locale::{Language, TimeZone};

/// A person's contact points, parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contact {
    /// Mobile phone.
    pub mobile: Option<PhoneNumber>,
    /// Landline.
    pub landline: Option<PhoneNumber>,
    /// Email.
    pub email: Option<EmailAddress>,
    /// Postal address, as given.
    pub postal_address: Option<touchpoint_proto::v1::PostalAddress>,
}

impl Contact {
    fn to_proto(&self) -> ContactPoints {
        ContactPoints {
            mobile_e164: self
                .mobile
                .as_ref()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
            landline_e164: self
                .landline
                .as_ref()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
            email: self
                .email
                .as_ref()
                .map(|e| e.as_str().to_owned())
                .unwrap_or_default(),
            postal_address: self.postal_address.clone(),
        }
    }
}

/// A patient or caregiver, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonDetails {
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Contact points.
    pub contact: Contact,
    /// For a caregiver: relationship to the patient.
    pub relationship: String,
}

impl PersonDetails {
    fn to_proto(&self) -> Person {
        Person {
            name: Some(touchpoint_proto::v1::PersonName {
                given_name: self.given_name.clone(),
                family_name: self.family_name.clone(),
            }),
            contact: Some(self.contact.to_proto()),
            relationship: self.relationship.clone(),
        }
    }
}

/// A new case, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCase {
    /// The program it is enrolled in.
    pub program_id: String,
    /// Preferred language.
    pub language: Language,
    /// The patient's time zone.
    pub time_zone: TimeZone,
    /// The patient.
    pub patient: PersonDetails,
    /// A caregiver, if any.
    pub caregiver: Option<PersonDetails>,
    /// The prescriber office's fax.
    pub prescriber_fax: Option<PhoneNumber>,
    /// When the patient enrolled (default: now).
    pub enrolled_at: Option<DateTime<Utc>>,
}

/// New contact points for a case.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactUpdate {
    /// The patient's.
    pub patient: Contact,
    /// The caregiver's (ignored when the case has no caregiver).
    pub caregiver: Option<Contact>,
    /// The prescriber's fax.
    pub prescriber_fax: Option<PhoneNumber>,
}

/// A status change asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusChange {
    /// Back to active from paused.
    Resume,
    /// Hold outreach, with a reason and optionally until when.
    Pause {
        /// Why.
        reason: String,
        /// Until when, if known.
        until: Option<DateTime<Utc>>,
    },
    /// Close for good, with a reason.
    Close {
        /// Why.
        reason: String,
    },
}

/// A therapy fact.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TherapyFact {
    /// Therapy started.
    Started,
    /// A fill with its days of supply (at least 1).
    Fill {
        /// Days of supply dispensed.
        days_supply: u32,
    },
    /// Therapy stopped.
    Stopped,
}

/// Everything a case can be asked to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Open a new case.
    Open(Box<NewCase>),
    /// Replace the contact points.
    UpdateContactPoints(Box<ContactUpdate>),
    /// Consent granted on a channel.
    RecordConsent(ConsentChange),
    /// Consent revoked on a channel.
    RevokeConsent(ConsentChange),
    /// Assign the coordinator and navigator.
    AssignCoordinator {
        /// Coordinator id.
        coordinator_id: String,
        /// Navigator id (may be empty).
        navigator_id: String,
    },
    /// Record a therapy fact at an instant.
    RecordTherapyEvent {
        /// What happened.
        fact: TherapyFact,
        /// When.
        at: DateTime<Utc>,
    },
    /// Pause, resume or close.
    SetStatus(StatusChange),
    /// Add a note to the timeline.
    AddNote {
        /// Who wrote it.
        author: String,
        /// The note.
        text: String,
    },
    /// Record a decision on a possible adverse event
    /// ([`super::adverse_event::reported`] builds it).
    DecideAdverseEvent(Box<AdverseEventReported>),
}

/// Consent given or revoked.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentChange {
    /// The channel.
    pub channel: Channel,
    /// How it was given or revoked.
    pub source: ConsentSource,
    /// Who recorded it.
    pub by: String,
    /// The number or address it is for; None: every contact point of the case
    /// on the channel (and it replaces what was said of each of them).
    pub point: Option<ContactPoint>,
    /// When it took effect, when that was before it was recorded (an opt-out
    /// counts from the message's receipt).
    pub effective_at: Option<DateTime<Utc>>,
    /// A revocation of `point` that holds for this program's messages only
    /// (an opt-out scoped by program); None: for every program's.
    pub only_program: Option<String>,
}

impl ConsentChange {
    /// A change to the whole channel, effective when recorded.
    pub fn channel(channel: Channel, source: ConsentSource, by: impl Into<String>) -> Self {
        Self {
            channel,
            source,
            by: by.into(),
            point: None,
            effective_at: None,
            only_program: None,
        }
    }
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The case does not exist.
    #[error("case not found")]
    NotFound,
    /// The case is closed; only notes and consent revocations are still accepted.
    #[error("case is closed")]
    Closed,
    /// The command does not fit the case's state.
    #[error("{0}")]
    Precondition(&'static str),
}

/// The events `command` produces for a case in `state` (None: not opened yet).
pub fn decide(state: Option<&Case>, command: &Command) -> Result<Vec<Payload>, Rejection> {
    let case = match (state, command) {
        (None, Command::Open(new)) => return Ok(vec![Payload::CaseOpened(opened(new))]),
        (Some(_), Command::Open(_)) => return Err(Rejection::Precondition("case already open")),
        (None, _) => return Err(Rejection::NotFound),
        (Some(case), _) => case,
    };
    let closed = case.status == CaseStatus::Closed as i32;
    // A revocation must always be honoured, notes keep the audit trail going,
    // and a possible adverse event is reported whatever became of the case.
    let allowed_when_closed = matches!(
        command,
        Command::RevokeConsent(_) | Command::AddNote { .. } | Command::DecideAdverseEvent(_)
    );
    if closed && !allowed_when_closed {
        return Err(Rejection::Closed);
    }
    let event = match command {
        Command::Open(_) => return Err(Rejection::Precondition("case already open")),
        Command::UpdateContactPoints(update) => {
            Payload::ContactPointsUpdated(ContactPointsUpdated {
                patient: Some(update.patient.to_proto()),
                caregiver: update.caregiver.as_ref().map(Contact::to_proto),
                prescriber_fax_e164: update
                    .prescriber_fax
                    .as_ref()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default(),
            })
        }
        Command::RecordConsent(c) => Payload::ConsentRecorded(ConsentRecorded {
            channel: c.channel as i32,
            source: c.source as i32,
            recorded_by: c.by.clone(),
            recorded_at: c.effective_at.map(timestamp),
            contact_point: c.point.clone(),
        }),
        Command::RevokeConsent(c) => Payload::ConsentRevoked(ConsentRevoked {
            channel: c.channel as i32,
            source: c.source as i32,
            recorded_by: c.by.clone(),
            revoked_at: c.effective_at.map(timestamp),
            contact_point: c.point.clone(),
            program_id: c.only_program.clone().unwrap_or_default(),
        }),
        Command::AssignCoordinator {
            coordinator_id,
            navigator_id,
        } => Payload::CoordinatorAssigned(CoordinatorAssigned {
            coordinator_id: coordinator_id.clone(),
            navigator_id: navigator_id.clone(),
        }),
        Command::RecordTherapyEvent { fact, at } => {
            let (kind, days_supply) = match fact {
                TherapyFact::Started => (TherapyEventKind::TherapyStart, 0),
                TherapyFact::Fill { days_supply } => (TherapyEventKind::Fill, *days_supply),
                TherapyFact::Stopped => (TherapyEventKind::TherapyStopped, 0),
            };
            Payload::TherapyEventRecorded(TherapyEventRecorded {
                kind: kind as i32,
                at: Some(timestamp(*at)),
                days_supply,
            })
        }
        Command::SetStatus(change) => Payload::CaseStatusChanged(status_change(case, change)?),
        Command::AddNote { author, text } => Payload::NoteAdded(NoteAdded {
            author: author.clone(),
            text: text.clone(),
        }),
        Command::DecideAdverseEvent(decided) => Payload::AdverseEventReported((**decided).clone()),
    };
    Ok(vec![event])
}

fn opened(new: &NewCase) -> CaseOpened {
    CaseOpened {
        program_id: new.program_id.clone(),
        language: new.language.to_proto() as i32,
        time_zone: new.time_zone.name().to_owned(),
        enrolled_at: new.enrolled_at.map(timestamp),
        patient: Some(new.patient.to_proto()),
        caregiver: new.caregiver.as_ref().map(PersonDetails::to_proto),
        prescriber_fax_e164: new
            .prescriber_fax
            .as_ref()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
    }
}

fn status_change(case: &Case, change: &StatusChange) -> Result<CaseStatusChanged, Rejection> {
    Ok(match change {
        StatusChange::Resume => {
            if case.status != CaseStatus::Paused as i32 {
                return Err(Rejection::Precondition("case is not paused"));
            }
            CaseStatusChanged {
                status: CaseStatus::Active as i32,
                reason: String::new(),
                paused_until: None,
            }
        }
        StatusChange::Pause { reason, until } => CaseStatusChanged {
            status: CaseStatus::Paused as i32,
            reason: reason.clone(),
            paused_until: until.map(timestamp),
        },
        StatusChange::Close { reason } => CaseStatusChanged {
            status: CaseStatus::Closed as i32,
            reason: reason.clone(),
            paused_until: None,
        },
    })
}

/// Folds one event, which occurred at `at` and was caused by the event
/// `caused_by` (empty: by a command), into the case (None: not opened yet).
/// Each event moves the version up by one.
pub fn apply(
    state: Option<Case>,
    case_id: &str,
    payload: &Payload,
    at: &Timestamp,
    caused_by: &str,
) -> Option<Case> {
    let mut case = match (state, payload) {
        (None, Payload::CaseOpened(opened)) => Case {
            case_id: case_id.to_owned(),
            program_id: opened.program_id.clone(),
            patient: opened.patient.clone(),
            caregiver: opened.caregiver.clone(),
            prescriber_fax_e164: opened.prescriber_fax_e164.clone(),
            language: opened.language,
            time_zone: opened.time_zone.clone(),
            therapy: Some(Therapy {
                enrolled_at: Some(opened.enrolled_at.unwrap_or(*at)),
                ..Therapy::default()
            }),
            status: CaseStatus::Active as i32,
            opened_at: Some(*at),
            version: 1,
            ..Case::default()
        },
        (None, _) => return None,
        (Some(mut case), payload) => {
            apply_to_open_case(&mut case, payload, at, caused_by);
            case.version += 1;
            case
        }
    };
    case.case_id = case_id.to_owned();
    Some(case)
}

fn apply_to_open_case(case: &mut Case, payload: &Payload, at: &Timestamp, caused_by: &str) {
    match payload {
        Payload::ContactPointsUpdated(update) => {
            if let Some(patient) = case.patient.as_mut() {
                patient.contact = update.patient.clone();
            }
            if let (Some(caregiver), Some(contact)) =
                (case.caregiver.as_mut(), update.caregiver.as_ref())
            {
                caregiver.contact = Some(contact.clone());
            }
            case.prescriber_fax_e164 = update.prescriber_fax_e164.clone();
        }
        Payload::ConsentRecorded(c) => set_consent(
            case,
            Consent {
                channel: c.channel,
                state: ConsentState::Granted as i32,
                source: c.source,
                at: Some(c.recorded_at.unwrap_or(*at)),
                by: c.recorded_by.clone(),
                contact_point: c.contact_point.clone(),
                caused_by_event_id: caused_by.to_owned(),
            },
        ),
        Payload::ConsentRevoked(c) => set_consent(
            case,
            Consent {
                channel: c.channel,
                state: ConsentState::Revoked as i32,
                source: c.source,
                at: Some(c.revoked_at.unwrap_or(*at)),
                by: c.recorded_by.clone(),
                contact_point: c.contact_point.clone(),
                caused_by_event_id: caused_by.to_owned(),
            },
        ),
        Payload::CoordinatorAssigned(a) => {
            case.coordinator_id = a.coordinator_id.clone();
            case.navigator_id = a.navigator_id.clone();
        }
        Payload::TherapyEventRecorded(t) => {
            let therapy = case.therapy.get_or_insert_with(Therapy::default);
            match TherapyEventKind::try_from(t.kind) {
                Ok(TherapyEventKind::TherapyStart) => therapy.therapy_start = t.at,
                Ok(TherapyEventKind::TherapyStopped) => therapy.therapy_stopped = t.at,
                Ok(TherapyEventKind::Fill) => {
                    therapy.fills.push(Fill {
                        filled_at: t.at,
                        days_supply: t.days_supply,
                    });
                    therapy.next_refill_due = next_refill_due(&therapy.fills);
                }
                _ => {}
            }
        }
        Payload::CaseStatusChanged(s) => {
            case.status = s.status;
            case.status_reason = s.reason.clone();
            case.paused_until = s.paused_until;
        }
        _ => {}
    }
}

/// Keeps one entry per channel and contact point. A number's or address's own
/// revocation (its STOP) outlasts consent recorded for the whole channel: only
/// consent naming it, or its own opt-in, lifts it. A revocation of the whole
/// channel ends every contact point's own consent there.
fn set_consent(case: &mut Case, consent: Consent) {
    if consent.contact_point.is_none() && consent.state == ConsentState::Revoked as i32 {
        case.consents.retain(|c| {
            c.channel != consent.channel
                || c.contact_point.is_none()
                || c.state == ConsentState::Revoked as i32
        });
    }
    match case
        .consents
        .iter_mut()
        .find(|c| c.channel == consent.channel && c.contact_point == consent.contact_point)
    {
        Some(existing) => *existing = consent,
        None => case.consents.push(consent),
    }
}

/// The consent that holds for `channel` at `point`: the contact point's own
/// entry, else the channel's.
pub fn consent_for<'a>(
    case: &'a Case,
    channel: Channel,
    point: &ContactPoint,
) -> Option<&'a Consent> {
    let on_channel = |c: &&Consent| c.channel == channel as i32;
    case.consents
        .iter()
        .filter(on_channel)
        .find(|c| c.contact_point.as_ref() == Some(point))
        .or_else(|| {
            case.consents
                .iter()
                .filter(on_channel)
                .find(|c| c.contact_point.is_none())
        })
}

/// The latest fill's date plus its days of supply.
fn next_refill_due(fills: &[Fill]) -> Option<Timestamp> {
    let latest = fills
        .iter()
        .filter_map(|f| Some((f.filled_at?, f.days_supply)))
        .max_by_key(|(at, _)| (at.seconds, at.nanos))?;
    let filled = instant(&latest.0)?;
    Some(timestamp(filled + TimeDelta::days(i64::from(latest.1))))
}

/// Every contact key of a case, for the lookup index.
pub fn contact_keys(case: &Case) -> Vec<String> {
    let mut keys = Vec::new();
    let people = [case.patient.as_ref(), case.caregiver.as_ref()];
    for contact in people
        .into_iter()
        .flatten()
        .filter_map(|p| p.contact.as_ref())
    {
        for phone in [&contact.mobile_e164, &contact.landline_e164] {
            if let Ok(key) = ContactKey::parse(phone, "") {
                keys.push(key.index_key());
            }
        }
        if let Ok(key) = ContactKey::parse(&contact.email, "") {
            keys.push(key.index_key());
        }
    }
    if let Ok(key) = ContactKey::parse(&case.prescriber_fax_e164, "") {
        keys.push(key.index_key());
    }
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        timestamp(Utc::now())
    }

    fn new_case() -> Result<NewCase, super::super::FieldError> {
        Ok(NewCase {
            program_id: "adherence".into(),
            language: Language::Es,
            time_zone: TimeZone::parse("America/Chicago", "tz")?,
            patient: PersonDetails {
                given_name: "Ana".into(),
                family_name: "Ruiz".into(),
                contact: Contact {
                    mobile: Some(PhoneNumber::parse("312 555 0142", "m")?),
                    email: Some(EmailAddress::parse("ana@example.com", "e")?),
                    ..Contact::default()
                },
                relationship: String::new(),
            },
            caregiver: None,
            prescriber_fax: Some(PhoneNumber::parse("(312) 555-0199", "f")?),
            enrolled_at: None,
        })
    }

    /// Decides and applies a command, as the store does.
    fn run(state: Option<Case>, command: Command) -> Result<Case, Rejection> {
        let events = decide(state.as_ref(), &command)?;
        let at = now();
        Ok(events
            .iter()
            .fold(state, |s, e| apply(s, "case-1", e, &at, ""))
            .unwrap_or_default())
    }

    fn opened() -> Case {
        new_case()
            .ok()
            .and_then(|n| run(None, Command::Open(Box::new(n))).ok())
            .unwrap_or_default()
    }

    #[test]
    fn an_opened_case_is_active_at_version_one_and_indexed_by_its_contacts() {
        let case = opened();
        assert_eq!(case.status, CaseStatus::Active as i32);
        assert_eq!(case.version, 1);
        assert_eq!(case.time_zone, "America/Chicago");
        assert_eq!(
            contact_keys(&case),
            vec![
                "email:ana@example.com",
                "phone:+13125550142",
                "phone:+13125550199"
            ]
        );
    }

    #[test]
    fn commands_on_a_missing_case_are_not_found_and_opening_twice_is_refused() {
        let assign = Command::AssignCoordinator {
            coordinator_id: "c1".into(),
            navigator_id: String::new(),
        };
        assert_eq!(decide(None, &assign), Err(Rejection::NotFound));
        let again = new_case().map(|n| decide(Some(&opened()), &Command::Open(Box::new(n))));
        assert_eq!(again, Ok(Err(Rejection::Precondition("case already open"))));
    }

    #[test]
    fn consent_is_granted_then_revoked_per_channel() -> Result<(), Rejection> {
        let grant = Command::RecordConsent(ConsentChange::channel(
            Channel::Sms,
            ConsentSource::WrittenForm,
            "agent-7",
        ));
        let case = run(Some(opened()), grant)?;
        assert_eq!(case.consents.len(), 1);
        assert_eq!(case.consents[0].state, ConsentState::Granted as i32);
        let revoke = Command::RevokeConsent(ConsentChange::channel(
            Channel::Sms,
            ConsentSource::SmsKeyword,
            "routing",
        ));
        let case = run(Some(case), revoke)?;
        assert_eq!(case.consents.len(), 1, "one entry per channel");
        assert_eq!(case.consents[0].state, ConsentState::Revoked as i32);
        assert_eq!(case.version, 3);
        Ok(())
    }

    #[test]
    fn an_opt_out_of_one_number_leaves_the_channel_granted_elsewhere() -> Result<(), Rejection> {
        let phone = |n: &str| ContactPoint {
            value: Some(touchpoint_proto::v1::contact_point::Value::PhoneE164(
                n.into(),
            )),
        };
        let (patient, caregiver) = (phone("+13125550142"), phone("+13125550177"));
        let grant = Command::RecordConsent(ConsentChange::channel(
            Channel::Sms,
            ConsentSource::WrittenForm,
            "agent-7",
        ));
        let case = run(Some(opened()), grant.clone())?;
        let received = DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default();
        let stop = Command::RevokeConsent(ConsentChange {
            point: Some(patient.clone()),
            effective_at: Some(received),
            ..ConsentChange::channel(Channel::Sms, ConsentSource::SmsKeyword, "routing")
        });
        let case = run(Some(case), stop)?;
        let state = |case: &Case, point| {
            consent_for(case, Channel::Sms, point).map(|c| ConsentState::try_from(c.state))
        };
        assert_eq!(state(&case, &patient), Some(Ok(ConsentState::Revoked)));
        assert_eq!(state(&case, &caregiver), Some(Ok(ConsentState::Granted)));
        let revoked = consent_for(&case, Channel::Sms, &patient).and_then(|c| c.at);
        assert_eq!(revoked, Some(timestamp(received)), "counts from receipt");

        // Consent for the whole channel does not lift the number's STOP; consent
        // naming the number does.
        let case = run(Some(case), grant)?;
        assert_eq!(state(&case, &patient), Some(Ok(ConsentState::Revoked)));
        let case = run(
            Some(case),
            Command::RecordConsent(ConsentChange {
                point: Some(patient.clone()),
                ..ConsentChange::channel(Channel::Sms, ConsentSource::WrittenForm, "agent-7")
            }),
        )?;
        assert_eq!(state(&case, &patient), Some(Ok(ConsentState::Granted)));

        // Revoking the whole channel ends the number's own consent too.
        let case = run(
            Some(case),
            Command::RevokeConsent(ConsentChange::channel(
                Channel::Sms,
                ConsentSource::Portal,
                "agent-7",
            )),
        )?;
        assert_eq!(state(&case, &patient), Some(Ok(ConsentState::Revoked)));
        assert_eq!(state(&case, &caregiver), Some(Ok(ConsentState::Revoked)));
        Ok(())
    }

    #[test]
    fn pause_resume_close_and_what_a_closed_case_still_accepts() -> Result<(), Rejection> {
        let resume = Command::SetStatus(StatusChange::Resume);
        assert_eq!(
            decide(Some(&opened()), &resume),
            Err(Rejection::Precondition("case is not paused"))
        );
        let paused = run(
            Some(opened()),
            Command::SetStatus(StatusChange::Pause {
                reason: "hospitalised".into(),
                until: None,
            }),
        )?;
        assert_eq!(paused.status, CaseStatus::Paused as i32);
        let resumed = run(Some(paused), resume)?;
        assert_eq!(resumed.status, CaseStatus::Active as i32);
        let closed = run(
            Some(resumed),
            Command::SetStatus(StatusChange::Close {
                reason: "therapy completed".into(),
            }),
        )?;
        assert_eq!(closed.status, CaseStatus::Closed as i32);

        let close_again = Command::SetStatus(StatusChange::Close { reason: "x".into() });
        assert_eq!(decide(Some(&closed), &close_again), Err(Rejection::Closed));
        let consent = Command::RecordConsent(ConsentChange::channel(
            Channel::Email,
            ConsentSource::Portal,
            "a",
        ));
        assert_eq!(decide(Some(&closed), &consent), Err(Rejection::Closed));
        let revoke = Command::RevokeConsent(ConsentChange::channel(
            Channel::Email,
            ConsentSource::Portal,
            "a",
        ));
        assert!(
            decide(Some(&closed), &revoke).is_ok(),
            "a revocation is always honoured"
        );
        Ok(())
    }

    #[test]
    fn next_refill_is_the_latest_fill_plus_its_supply() -> Result<(), Rejection> {
        let day = |d: u32| {
            DateTime::from_timestamp(1_767_225_600 + i64::from(d) * 86_400, 0).unwrap_or_default()
        };
        let fill = |at, days_supply| Command::RecordTherapyEvent {
            fact: TherapyFact::Fill { days_supply },
            at,
        };
        let case = run(Some(opened()), fill(day(10), 30))?;
        let case = run(Some(case), fill(day(0), 90))?; // recorded late; an older fill
        let due = case
            .therapy
            .and_then(|t| t.next_refill_due)
            .map(|t| t.seconds);
        assert_eq!(due, Some(day(40).timestamp()));
        Ok(())
    }
}
