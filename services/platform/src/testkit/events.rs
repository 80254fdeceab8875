//! Events as the other services publish them, for a test to put on a topic: a
//! case opened for a patient, a consent, an attempt sent. The defaults are the
//! suite's patient, Ana Ruiz, in the adherence program, in Spanish, in New
//! York; each builder changes only what a story needs.

use chrono::{DateTime, Utc};
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    AttemptSent, CaseOpened, Channel, ConsentRecorded, ContactPoints, Envelope, Language, Person,
    PersonName,
};

use crate::envelope::{new_envelope, timestamp};

/// The program cases open in unless a test says otherwise.
pub const PROGRAM: &str = "adherence";
/// Ana's time zone.
pub const NEW_YORK: &str = "America/New_York";
/// Ana's mobile.
pub const MOBILE: &str = "+12125550142";
/// Ana's email address.
pub const EMAIL: &str = "ana@example.com";

/// `payload` about `case_id`, published now by a test.
pub fn event(case_id: &str, payload: Payload) -> Envelope {
    new_envelope(case_id, "test", Utc::now(), payload, None)
}

/// A person named `given` `family` (no name when both are empty), reached at
/// `mobile` and `email` (either may be empty; no contact points when both are).
pub fn person(given: &str, family: &str, mobile: &str, email: &str) -> Person {
    Person {
        name: (!given.is_empty() || !family.is_empty()).then(|| PersonName {
            given_name: given.into(),
            family_name: family.into(),
        }),
        contact: (!mobile.is_empty() || !email.is_empty()).then(|| ContactPoints {
            mobile_e164: mobile.into(),
            email: email.into(),
            ..ContactPoints::default()
        }),
        relationship: String::new(),
    }
}

/// A `CaseOpened`: Ana Ruiz, named, with no contact points, in the adherence
/// program in Spanish in New York, enrolled on 2026-04-06.
#[derive(Debug, Clone)]
pub struct NewCase(CaseOpened);

impl Default for NewCase {
    fn default() -> Self {
        Self(CaseOpened {
            program_id: PROGRAM.into(),
            language: Language::Es as i32,
            time_zone: NEW_YORK.into(),
            enrolled_at: Some(timestamp(crate::testkit::utc("2026-04-06T14:00:00Z"))),
            patient: Some(person("Ana", "Ruiz", "", "")),
            caregiver: None,
            prescriber_fax_e164: String::new(),
        })
    }
}

impl NewCase {
    /// In `program`.
    pub fn program(mut self, program: &str) -> Self {
        self.0.program_id = program.into();
        self
    }

    /// Enrolled at `at`.
    pub fn enrolled_at(mut self, at: DateTime<Utc>) -> Self {
        self.0.enrolled_at = Some(timestamp(at));
        self
    }

    /// The patient is `patient`.
    pub fn patient(mut self, patient: Person) -> Self {
        self.0.patient = Some(patient);
        self
    }

    /// Speaking `language`.
    pub fn language(mut self, language: Language) -> Self {
        self.0.language = language as i32;
        self
    }

    /// The `CaseOpened` of `case_id`.
    pub fn event(self, case_id: &str) -> Envelope {
        event(case_id, Payload::CaseOpened(self.0))
    }
}

/// The patient of `case_id` consented to `channel`.
pub fn consent(case_id: &str, channel: Channel) -> Envelope {
    let mut consent = ConsentRecorded::default();
    consent.set_channel(channel);
    event(case_id, Payload::ConsentRecorded(consent))
}

/// The primary provider took `attempt_id` on `channel` at `at`.
pub fn attempt_sent(
    case_id: &str,
    attempt_id: &str,
    channel: Channel,
    at: DateTime<Utc>,
) -> Envelope {
    let mut sent = AttemptSent {
        attempt_id: attempt_id.into(),
        provider: "primary".into(),
        sent_at: Some(timestamp(at)),
        ..AttemptSent::default()
    };
    sent.set_channel(channel);
    event(case_id, Payload::AttemptSent(sent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_case_is_ana_unless_a_story_says_otherwise() {
        let opened = NewCase::default()
            .program("refill-reminder")
            .patient(person("", "", MOBILE, ""))
            .event("case-1");
        let Some(Payload::CaseOpened(case)) = opened.payload else {
            panic!("not a CaseOpened: {opened:?}");
        };
        assert_eq!(opened.case_id, "case-1");
        assert_eq!(case.program_id, "refill-reminder");
        assert_eq!(case.language(), Language::Es);
        let patient = case.patient.unwrap_or_default();
        assert_eq!(patient.name, None, "no name given, none sent");
        assert_eq!(
            patient.contact.map(|c| c.mobile_e164).as_deref(),
            Some(MOBILE)
        );
    }
}
