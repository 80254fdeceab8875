//! Who the demo enrols and how each simulated patient behaves. Invented people
//! with numbers from the 555-01xx range reserved for fiction; the demo still
//! prints only their labels.

use touchpoint_proto::v1::{Channel, CoordinatorRole, Language};

/// What a simulated patient texts back after the first program text reaches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// An ordinary answer: routed to the coordinator, the step answered.
    Answer(&'static str),
    /// An opt-out keyword: confirmed, later texts suppressed.
    OptOut(&'static str),
    /// A message describing a side effect: flagged for review.
    SideEffect(&'static str),
}

impl Reply {
    /// The text the patient sends.
    pub fn text(self) -> &'static str {
        match self {
            Reply::Answer(t) | Reply::OptOut(t) | Reply::SideEffect(t) => t,
        }
    }

    /// What the demo table calls it.
    pub fn label(self) -> &'static str {
        match self {
            Reply::Answer(_) => "answers",
            Reply::OptOut(_) => "opts out",
            Reply::SideEffect(_) => "reports a side effect",
        }
    }
}

/// One demo patient.
#[derive(Debug, Clone, Copy)]
pub struct Patient {
    /// How the demo's output names the case.
    pub label: &'static str,
    /// Given and family name.
    pub name: (&'static str, &'static str),
    /// The program enrolled in.
    pub program: &'static str,
    /// Preferred language.
    pub language: Language,
    /// Home time zone.
    pub zone: &'static str,
    /// Mobile number, if any.
    pub mobile: &'static str,
    /// Email address, if any.
    pub email: &'static str,
    /// The channels the patient consented to.
    pub consents: &'static [Channel],
    /// The answer to the first text, if the patient answers.
    pub reply: Option<Reply>,
}

/// The demo's patients: English and Spanish, four US time zones, both
/// programs, one without SMS consent (email instead), one who answers, one who
/// opts out in Spanish, one who reports a side effect in Spanish.
pub const PATIENTS: [Patient; 6] = [
    Patient {
        label: "P1 en New York adherence",
        name: ("Avery", "Stone"),
        program: "adherence",
        language: Language::En,
        zone: "America/New_York",
        mobile: "+12125550101",
        email: "avery.stone@example.com",
        consents: &[Channel::Sms, Channel::Email, Channel::Voice],
        reply: Some(Reply::Answer(
            "Thanks, all good here. Started the pills on time.",
        )),
    },
    Patient {
        label: "P2 es Chicago adherence",
        name: ("Lucía", "Fernández"),
        program: "adherence",
        language: Language::Es,
        zone: "America/Chicago",
        mobile: "+13125550102",
        email: "",
        consents: &[Channel::Sms, Channel::Voice],
        reply: Some(Reply::OptOut("ALTO")),
    },
    Patient {
        label: "P3 es Los Angeles adherence",
        name: ("Mateo", "Ruiz"),
        program: "adherence",
        language: Language::Es,
        zone: "America/Los_Angeles",
        mobile: "+12135550103",
        email: "mateo.ruiz@example.com",
        consents: &[Channel::Sms, Channel::Email],
        reply: Some(Reply::SideEffect(
            "Desde ayer tengo mareos y náuseas con la medicina",
        )),
    },
    Patient {
        label: "P4 en Denver adherence, email only",
        name: ("Jordan", "Lee"),
        program: "adherence",
        language: Language::En,
        zone: "America/Denver",
        mobile: "+17205550104",
        email: "jordan.lee@example.com",
        consents: &[Channel::Email],
        reply: None,
    },
    Patient {
        label: "P5 en Chicago refill",
        name: ("Sam", "Patel"),
        program: "refill-reminder",
        language: Language::En,
        zone: "America/Chicago",
        mobile: "+13125550105",
        email: "sam.patel@example.com",
        consents: &[Channel::Sms, Channel::Email],
        reply: Some(Reply::Answer("Got it, picking it up Friday")),
    },
    Patient {
        label: "P6 es New York refill (English content)",
        name: ("Rosa", "Díaz"),
        program: "refill-reminder",
        language: Language::Es,
        zone: "America/New_York",
        mobile: "+17185550106",
        email: "",
        consents: &[Channel::Sms],
        reply: None,
    },
];

/// One demo coordinator or navigator.
#[derive(Debug, Clone, Copy)]
pub struct Member {
    /// Their id.
    pub id: &'static str,
    /// Coordinator or navigator.
    pub role: CoordinatorRole,
    /// Where they work.
    pub zone: &'static str,
    /// The languages they speak.
    pub languages: &'static [Language],
}

/// The team: a bilingual coordinator in New York, an English one in Denver, and
/// a bilingual navigator in Chicago.
pub const TEAM: [Member; 3] = [
    Member {
        id: "coord-maria",
        role: CoordinatorRole::Coordinator,
        zone: "America/New_York",
        languages: &[Language::En, Language::Es],
    },
    Member {
        id: "coord-dan",
        role: CoordinatorRole::Coordinator,
        zone: "America/Denver",
        languages: &[Language::En],
    },
    Member {
        id: "nav-ines",
        role: CoordinatorRole::Navigator,
        zone: "America/Chicago",
        languages: &[Language::En, Language::Es],
    },
];

/// The coordinator a patient's case is assigned to: one who speaks the
/// patient's language.
pub fn coordinator_for(patient: &Patient) -> &'static Member {
    let [maria, dan, _] = &TEAM;
    match patient.language {
        Language::Es => maria,
        _ if patient.zone == "America/Denver" => dan,
        _ => maria,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cast_covers_what_the_demo_must_show() {
        let replies: Vec<Reply> = PATIENTS.iter().filter_map(|p| p.reply).collect();
        assert!(replies.iter().any(|r| matches!(r, Reply::Answer(_))));
        assert!(replies.iter().any(|r| matches!(r, Reply::OptOut(_))));
        assert!(replies.iter().any(|r| matches!(r, Reply::SideEffect(_))));
        assert!(
            PATIENTS.iter().any(
                |p| !p.consents.contains(&Channel::Sms) && p.consents.contains(&Channel::Email)
            ),
            "someone is reached by email for want of SMS consent"
        );
        assert!(PATIENTS.iter().any(|p| p.language == Language::Es));
        let zones: std::collections::BTreeSet<_> = PATIENTS.iter().map(|p| p.zone).collect();
        assert!(zones.len() >= 3, "several US time zones");
    }

    #[test]
    fn every_case_goes_to_a_coordinator_who_speaks_its_language() {
        for patient in &PATIENTS {
            let member = coordinator_for(patient);
            assert!(
                member.languages.contains(&patient.language),
                "{}",
                patient.label
            );
        }
    }
}
