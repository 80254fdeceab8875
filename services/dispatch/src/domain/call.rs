//! A person's call (click to call), once their own phone is answered: the
//! TwiML that dials the patient with the program's caller id, and what the
//! provider's word on the patient's leg makes of the attempt.

use touchpoint_platform::xml::{escape, twiml};

/// How long the patient's phone rings before the call counts as unanswered.
pub const PATIENT_RING_SECONDS: u32 = 25;

/// The TwiML that connects the person who answered to `number`, showing
/// `caller_id`; `dialled` is told how the dial ended and `answered_by` who
/// (or what) picked up.
pub fn connect(number: &str, caller_id: &str, (dialled, answered_by): (&str, &str)) -> String {
    twiml(&format!(
        "<Dial callerId=\"{}\" timeout=\"{PATIENT_RING_SECONDS}\" action=\"{}\" method=\"POST\">\
         <Number machineDetection=\"Enable\" amdStatusCallback=\"{}\" amdStatusCallbackMethod=\"POST\">{}</Number>\
         </Dial>",
        escape(caller_id),
        escape(dialled),
        escape(answered_by),
        escape(number),
    ))
}

/// What became of the patient's leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The patient spoke with the person for so many seconds.
    Answered {
        /// `DialCallDuration`.
        seconds: u32,
    },
    /// Not reached: the code the attempt fails with (`no-answer`, `busy`,
    /// `voicemail`, `failed`, `canceled`), and whether calling again cannot help.
    NotReached {
        /// The outcome's code.
        code: &'static str,
        /// A number that cannot take calls.
        permanent: bool,
    },
}

/// The outcome of a dial that ended with `dial_status` after `seconds`, a
/// machine having answered if `answered_by` says so. None: a status the
/// provider does not send.
pub fn outcome(dial_status: &str, answered_by: Option<&str>, seconds: u32) -> Option<Outcome> {
    let machine = answered_by.is_some_and(|a| a.starts_with("machine") || a == "fax");
    Some(match dial_status {
        "completed" | "answered" if machine => Outcome::NotReached {
            code: "voicemail",
            permanent: false,
        },
        "completed" | "answered" => Outcome::Answered { seconds },
        "busy" => Outcome::NotReached {
            code: "busy",
            permanent: false,
        },
        "no-answer" => Outcome::NotReached {
            code: "no-answer",
            permanent: false,
        },
        "canceled" => Outcome::NotReached {
            code: "canceled",
            permanent: false,
        },
        "failed" => Outcome::NotReached {
            code: "failed",
            permanent: true,
        },
        _ => return None,
    })
}

/// The code of a call whose person never answered their own phone: the
/// patient was not called.
pub fn caller_unreached(call_status: &str) -> Option<&'static str> {
    match call_status {
        "no-answer" | "busy" | "failed" | "canceled" => Some("caller_unreached"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patient_is_dialled_with_the_programs_caller_id_and_markup_stays_text() {
        let twiml = connect(
            "+12125550100",
            "+18005550199",
            ("https://hub/d?a=1&b=2", "https://hub/amd"),
        );
        assert!(
            twiml.contains("<Dial callerId=\"+18005550199\" timeout=\"25\""),
            "{twiml}"
        );
        assert!(
            twiml.contains("action=\"https://hub/d?a=1&amp;b=2\""),
            "{twiml}"
        );
        assert!(twiml.contains(">+12125550100</Number>"), "{twiml}");
        assert!(twiml.ends_with("</Dial></Response>"), "{twiml}");
    }

    #[test]
    fn each_dial_status_is_an_outcome_and_a_machine_is_a_voicemail() {
        assert_eq!(
            outcome("completed", Some("human"), 42),
            Some(Outcome::Answered { seconds: 42 })
        );
        assert_eq!(
            outcome("completed", None, 7),
            Some(Outcome::Answered { seconds: 7 })
        );
        for (status, answered_by, code, permanent) in [
            ("completed", Some("machine_end_beep"), "voicemail", false),
            ("busy", None, "busy", false),
            ("no-answer", None, "no-answer", false),
            ("canceled", None, "canceled", false),
            ("failed", None, "failed", true),
        ] {
            assert_eq!(
                outcome(status, answered_by, 0),
                Some(Outcome::NotReached { code, permanent }),
                "{status}"
            );
        }
        assert_eq!(outcome("ringing", None, 0), None);
        assert_eq!(caller_unreached("no-answer"), Some("caller_unreached"));
        assert_eq!(caller_unreached("completed"), None);
    }
}
