//! What a ringing call is answered with, in TwiML (Twilio's voice markup):
//! the person the routing rules chose is rung (`<Dial>` to their Twilio Client,
//! whose identity is their roster id), the program's queue takes the caller
//! (`<Enqueue>`), or, after hours, a short message in the case's language and a
//! voicemail (`<Say>`, `<Record>`), the callback already put on a worklist.

use touchpoint_platform::xml::{escape, twiml as twiml_document};
use touchpoint_proto::v1::Language;

use super::decision::{Decision, Rule};
use super::roster::DialTarget;

/// How long a chosen person's phone rings before the call counts as missed.
pub const RING_SECONDS: u32 = 20;

/// The longest voicemail taken, in seconds.
pub const VOICEMAIL_SECONDS: u32 = 120;

/// How routing answers one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Ring this person where their calls ring; `after` is told how the dial
    /// ended.
    Ring {
        /// Their roster id (their Twilio Client identity).
        member: String,
        /// Where their calls ring.
        target: DialTarget,
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

/// The answer for a call routed by `decision`, for a case in `language`; the
/// chosen person is rung at `target`; `dial_url` and `recorded_url` are
/// routing's own webhooks.
pub fn answer(
    decision: &Decision,
    language: Option<Language>,
    target: DialTarget,
    (dial_url, recorded_url): (&str, &str),
) -> Answer {
    let voicemail = || Answer::Voicemail {
        language: language.unwrap_or(Language::En),
        recorded: recorded_url.to_owned(),
    };
    match (decision.rule, &decision.member_id, &decision.queue) {
        (Rule::Coordinator | Rule::Navigator | Rule::Skills, Some(member), _) => Answer::Ring {
            member: member.clone(),
            target,
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
        Answer::Ring {
            member,
            target,
            after,
        } => {
            let noun = match target {
                DialTarget::Client => format!("<Client>{}</Client>", escape(member)),
                DialTarget::Sip(address) => format!("<Sip>{}</Sip>", escape(address)),
                DialTarget::Number(number) => format!("<Number>{}</Number>", escape(number)),
            };
            format!(
                "<Dial timeout=\"{RING_SECONDS}\" action=\"{}\">{noun}</Dial>",
                escape(after)
            )
        }
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
    twiml_document(&body)
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
    fn a_chosen_person_is_rung_where_the_roster_says_and_the_dial_reports_back() {
        let nico = decision(Rule::Navigator, Some("nico"), None);
        let ring = answer(&nico, None, DialTarget::Client, URLS);
        assert_eq!(
            twiml(&ring),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Dial timeout=\"20\" \
             action=\"https://r.example/dial?a=1&amp;b=2\"><Client>nico</Client></Dial></Response>"
        );
        // A desk phone, or their own number, where the roster says so.
        let sip = DialTarget::Sip("sip:nico@hub.sip.twilio.com".into());
        let desk_phone = twiml(&answer(&nico, None, sip, URLS));
        assert!(
            desk_phone.contains("<Sip>sip:nico@hub.sip.twilio.com</Sip></Dial>"),
            "{desk_phone}"
        );
        let own = DialTarget::Number("+12125550177".into());
        let own_phone = twiml(&answer(&nico, None, own, URLS));
        assert!(
            own_phone.contains("<Number>+12125550177</Number></Dial>"),
            "{own_phone}"
        );
    }

    #[test]
    fn a_queue_takes_the_caller_and_after_hours_the_case_language_speaks() {
        let queued = answer(
            &decision(Rule::Queue, None, Some("program:adherence")),
            None,
            DialTarget::Client,
            URLS,
        );
        assert!(twiml(&queued).contains("<Enqueue>program:adherence</Enqueue>"));
        let closed = decision(Rule::Callback, None, Some("program:adherence"));
        let spanish = twiml(&answer(
            &closed,
            Some(Language::Es),
            DialTarget::Client,
            URLS,
        ));
        assert!(
            spanish.contains("<Say language=\"es-MX\">Gracias"),
            "{spanish}"
        );
        assert!(spanish.contains(
            "<Record maxLength=\"120\" playBeep=\"true\" action=\"https://r.example/rec\"/>"
        ));
        let unknown = twiml(&answer(&closed, None, DialTarget::Client, URLS));
        assert!(
            unknown.contains("<Say language=\"en-US\">Thank you"),
            "{unknown}"
        );
    }
}
