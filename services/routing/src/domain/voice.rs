//! What a ringing call is answered with, in TwiML (Twilio's voice markup):
//! the person the routing rules chose is rung (`<Dial>` to their Twilio Client,
//! whose identity is their roster id), the program's queue takes the caller
//! (`<Enqueue>`), or, after hours, a short message in the case's language and a
//! voicemail (`<Say>`, `<Record>`), the callback already put on a worklist.

use touchpoint_platform::xml::escape;
use touchpoint_proto::v1::Language;

use super::decision::{Decision, Rule};

/// How long a chosen person's phone rings before the call counts as missed.
pub const RING_SECONDS: u32 = 20;

/// The longest voicemail taken, in seconds.
pub const VOICEMAIL_SECONDS: u32 = 120;

/// How routing answers one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Ring this person's client; `after` is told how the dial ended.
    Ring {
        /// Their roster id (their Twilio Client identity).
        client: String,
        /// Where Twilio reports the dial's outcome.
        after: String,
    },
    /// Wait in this queue for whoever takes the next call.
    Queue {
        /// The queue's name.
        queue: String,
    },
    /// The message in `language`, then a voicemail posted to `recorded`.
    Voicemail {
        /// The case's language (English when the caller has no case).
        language: Language,
        /// Where Twilio posts the recording.
        recorded: String,
    },
}

/// The answer for a call routed by `decision`, for a case in `language`;
/// `dial_url` and `recorded_url` are routing's own webhooks.
pub fn answer(
    decision: &Decision,
    language: Option<Language>,
    (dial_url, recorded_url): (&str, &str),
) -> Answer {
    let voicemail = || Answer::Voicemail {
        language: language.unwrap_or(Language::En),
        recorded: recorded_url.to_owned(),
    };
    match (decision.rule, &decision.member_id, &decision.queue) {
        (Rule::Coordinator | Rule::Navigator | Rule::Skills, Some(member), _) => Answer::Ring {
            client: member.clone(),
            after: dial_url.to_owned(),
        },
        (Rule::Queue, _, Some(queue)) => Answer::Queue {
            queue: queue.clone(),
        },
        _ => voicemail(),
    }
}

/// The message a caller hears after hours, and Twilio's code for its
/// language.
fn closed_message(language: Language) -> (&'static str, &'static str) {
    match language {
        Language::Es => (
            "es-MX",
            "Gracias por llamar a su programa de apoyo. En este momento no hay nadie \
             disponible. Deje su mensaje después del tono y le devolveremos la llamada \
             en su horario.",
        ),
        _ => (
            "en-US",
            "Thank you for calling your support program. Nobody can take your call \
             right now. Please leave a message after the tone, and we will call you \
             back at a time that suits you.",
        ),
    }
}

/// The TwiML document for `answer`.
pub fn twiml(answer: &Answer) -> String {
    let body = match answer {
        Answer::Ring { client, after } => format!(
            "<Dial timeout=\"{RING_SECONDS}\" action=\"{}\"><Client>{}</Client></Dial>",
            escape(after),
            escape(client)
        ),
        Answer::Queue { queue } => format!("<Enqueue>{}</Enqueue>", escape(queue)),
        Answer::Voicemail { language, recorded } => {
            let (code, message) = closed_message(*language);
            format!(
                "<Say language=\"{code}\">{}</Say><Record maxLength=\"{VOICEMAIL_SECONDS}\" \
                 playBeep=\"true\" action=\"{}\"/>",
                escape(message),
                escape(recorded)
            )
        }
    };
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>{body}</Response>")
}

/// What the caller hears once the voicemail is taken.
pub fn goodbye() -> String {
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Hangup/></Response>".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(rule: Rule, member: Option<&str>, queue: Option<&str>) -> Decision {
        Decision {
            rule,
            member_id: member.map(str::to_owned),
            queue: queue.map(str::to_owned),
            callback_due_at: None,
        }
    }

    const URLS: (&str, &str) = ("https://r.example/dial?a=1&b=2", "https://r.example/rec");

    #[test]
    fn a_chosen_person_is_rung_at_their_client_and_the_dial_reports_back() {
        let ring = answer(&decision(Rule::Navigator, Some("nico"), None), None, URLS);
        assert_eq!(
            twiml(&ring),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Dial timeout=\"20\" \
             action=\"https://r.example/dial?a=1&amp;b=2\"><Client>nico</Client></Dial></Response>"
        );
    }

    #[test]
    fn a_queue_takes_the_caller_and_after_hours_the_case_language_speaks() {
        let queued = answer(
            &decision(Rule::Queue, None, Some("program:adherence")),
            None,
            URLS,
        );
        assert!(twiml(&queued).contains("<Enqueue>program:adherence</Enqueue>"));
        let closed = decision(Rule::Callback, None, Some("program:adherence"));
        let spanish = twiml(&answer(&closed, Some(Language::Es), URLS));
        assert!(
            spanish.contains("<Say language=\"es-MX\">Gracias"),
            "{spanish}"
        );
        assert!(spanish.contains(
            "<Record maxLength=\"120\" playBeep=\"true\" action=\"https://r.example/rec\"/>"
        ));
        let unknown = twiml(&answer(&closed, None, URLS));
        assert!(
            unknown.contains("<Say language=\"en-US\">Thank you"),
            "{unknown}"
        );
    }
}
