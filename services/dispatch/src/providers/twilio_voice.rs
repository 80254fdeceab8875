//! Click to call through Twilio's Programmable Voice API (or anything that
//! speaks it, like the sandbox): create a call to the person's Twilio Client
//! (`To=client:<roster id>`) from the program's caller id, whose `Url` answers,
//! once they pick up, with TwiML that dials the patient; HTTP basic auth with
//! the account SID and auth token.
//!
//! The patient's number is never in a URL: the TwiML that dials it is fetched
//! from dispatch by the call itself, with the attempt id in the path.
//!
//! Twilio's create call takes no idempotency key. So a hand-off whose answer
//! never came is not retried blindly: the adapter lists the calls to the
//! person's client and takes one the API placed since the call was asked for
//! as this one. A person has one call in flight at a time (dispatch refuses a
//! second), so the one found is theirs.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use touchpoint_platform::secret::SecretString;
use uuid::Uuid;

use super::http::{Exchange, HttpClient};
use super::twilio::{Api, created};
use super::{Handoff, Lookup};

/// The provider's name in events and callback paths.
pub const NAME: &str = "voice";

/// How long the person's client rings before the call is given up.
pub const RING_SECONDS: u32 = 20;

/// How far the provider's clock may be behind the database's when a call's
/// creation time is compared with the moment it was asked for.
const CLOCK_SKEW: TimeDelta = TimeDelta::seconds(5);

/// The Twilio-speaking voice provider.
#[derive(Debug, Clone)]
pub struct TwilioVoice {
    /// The API's base URL, e.g. `https://api.twilio.com`.
    pub base_url: String,
    /// The account SID.
    pub account_sid: String,
    /// The auth token; it also signs the call's webhooks.
    pub auth_token: SecretString,
    /// The program's caller id: the number the patient sees.
    pub caller_id: String,
    /// Where dispatch takes the call's webhooks, e.g. `https://hub.example`.
    pub callback_base: String,
    /// The HTTP client.
    pub client: HttpClient,
}

#[derive(Deserialize)]
struct Listed {
    #[serde(default)]
    calls: Vec<ListedCall>,
}

#[derive(Deserialize)]
struct ListedCall {
    sid: String,
    #[serde(default)]
    direction: String,
    #[serde(default)]
    date_created: Option<String>,
}

/// The webhooks of one call, each under `/callbacks/voice/{attempt}/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// The person answered: the TwiML that dials the patient.
    Connect,
    /// The dial to the patient ended (`DialCallStatus`).
    Dialled,
    /// The answering-machine verdict on the patient's leg (`AnsweredBy`).
    AnsweredBy,
    /// The person's leg ended (`CallStatus`).
    Status,
}

impl Hook {
    /// Its last path segment.
    pub fn segment(self) -> &'static str {
        match self {
            Hook::Connect => "connect",
            Hook::Dialled => "dialled",
            Hook::AnsweredBy => "answered-by",
            Hook::Status => "status",
        }
    }
}

impl TwilioVoice {
    fn api(&self) -> Api<'_> {
        Api {
            client: &self.client,
            base_url: &self.base_url,
            account_sid: &self.account_sid,
            auth_token: &self.auth_token,
        }
    }

    /// Where the provider reaches `hook` of `attempt_id`'s call.
    pub fn hook_url(&self, attempt_id: Uuid, hook: Hook) -> String {
        format!(
            "{}/callbacks/voice/{attempt_id}/{}",
            self.callback_base.trim_end_matches('/'),
            hook.segment()
        )
    }

    /// Places the call: rings `caller`'s client first.
    pub async fn place(&self, attempt_id: Uuid, caller: &str) -> Handoff {
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("To", &format!("client:{caller}"))
            .append_pair("From", &self.caller_id)
            .append_pair("Url", &self.hook_url(attempt_id, Hook::Connect))
            .append_pair("StatusCallback", &self.hook_url(attempt_id, Hook::Status))
            .append_pair("Timeout", &RING_SECONDS.to_string())
            .finish();
        let exchange = self.api().create("Calls", form).await;
        created(NAME, exchange)
    }

    /// Whether a call to `caller`'s client was placed through the API since
    /// `since`: its SID if so.
    pub async fn lookup(&self, caller: &str, since: DateTime<Utc>) -> Option<Lookup> {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("To", &format!("client:{caller}"))
            .append_pair("PageSize", "50")
            .finish();
        match self.api().list("Calls", &query).await {
            Exchange::Answered { status, body: page } if status.is_success() => {
                let listed: Listed = serde_json::from_slice(&page).ok()?;
                Some(match placed_since(&listed.calls, since) {
                    Some(sid) => Lookup::Accepted {
                        provider: NAME.into(),
                        message_id: sid,
                    },
                    None => Lookup::NotFound,
                })
            }
            _ => None,
        }
    }
}

/// The earliest call in `calls` the API placed (not a leg of an inbound call)
/// at or after `since`, less the clocks' skew.
fn placed_since(calls: &[ListedCall], since: DateTime<Utc>) -> Option<String> {
    calls
        .iter()
        .filter(|c| c.direction == "outbound-api")
        .filter_map(|c| {
            let created = DateTime::parse_from_rfc2822(c.date_created.as_deref()?).ok()?;
            (created.to_utc() >= since - CLOCK_SKEW).then_some((created, &c.sid))
        })
        .min_by_key(|(created, _)| *created)
        .map(|(_, sid)| sid.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(sid: &str, direction: &str, created: &str) -> ListedCall {
        ListedCall {
            sid: sid.into(),
            direction: direction.into(),
            date_created: Some(created.into()),
        }
    }

    #[test]
    fn only_a_call_the_api_placed_since_it_was_asked_for_is_taken_as_it() {
        let since = DateTime::parse_from_rfc3339("2026-04-07T14:00:00Z")
            .unwrap_or_else(|e| panic!("{e}"))
            .to_utc();
        let calls = [
            call(
                "CA-before",
                "outbound-api",
                "Tue, 07 Apr 2026 13:59:00 +0000",
            ),
            call(
                "CA-inbound-leg",
                "outbound-dial",
                "Tue, 07 Apr 2026 14:00:03 +0000",
            ),
            call(
                "CA-later",
                "outbound-api",
                "Tue, 07 Apr 2026 14:00:09 +0000",
            ),
            call("CA-this", "outbound-api", "Tue, 07 Apr 2026 14:00:01 +0000"),
        ];
        assert_eq!(placed_since(&calls, since).as_deref(), Some("CA-this"));
        assert_eq!(placed_since(&calls[..2], since), None);
        let unreadable = [call("CA-x", "outbound-api", "yesterday")];
        assert_eq!(placed_since(&unreadable, since), None);
    }
}
