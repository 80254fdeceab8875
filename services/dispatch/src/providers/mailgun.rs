//! Email through Mailgun's HTTP API (or anything that speaks it, like the
//! sandbox): `POST /v3/{domain}/messages` as a form with `from`, `to`,
//! `subject`, `text`, `html`, the one-click unsubscribe headers (`h:`) and the
//! attempt id as the custom variable `v:attempt_id`; HTTP basic auth as `api`
//! with the API key.
//!
//! The variable makes the attempt findable: a hand-off whose answer never came
//! is looked up in the domain's events (`GET /v3/{domain}/events?event=accepted`
//! filtered by the variable) before anything is sent again, so email is sent
//! exactly once as SMS is. Mailgun's events become searchable only some time
//! after the message is taken, so the lookup is left to the reconciler, which
//! asks once the sending timeout has passed ([`Mailgun::SEARCHABLE_AT_ONCE`]).
//!
//! Delivery, failure, complaint and unsubscribe come back as Mailgun's event
//! webhooks, signed with the webhook signing key ([`crate::callbacks`] and
//! routing's `/inbound/email/events`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use http::Method;
use lettre::message::Mailbox;
use serde::Deserialize;
use touchpoint_platform::secret::{ExposeSecret as _, SecretString};
use touchpoint_programs::Message;
use uuid::Uuid;

use super::email::{DEFAULT_SUBJECT, Unsubscribe};
use super::http::{Exchange, HttpClient};
use super::{Handoff, Lookup};

/// The provider's name in events and on attempts.
pub const NAME: &str = "mailgun";

/// The custom variable that carries the attempt id.
pub const ATTEMPT_VARIABLE: &str = "attempt_id";

/// One Mailgun-speaking email provider.
#[derive(Clone)]
pub struct Mailgun {
    /// The API's base URL, e.g. `https://api.mailgun.net` (`api.eu.mailgun.net`
    /// for an EU domain).
    pub base_url: String,
    /// The sending domain.
    pub domain: String,
    /// The API key.
    pub api_key: SecretString,
    /// The sender mailbox, e.g. `Care Team <care@hub.example>`.
    pub from: Mailbox,
    /// The key Mailgun signs its event webhooks with.
    pub signing_key: SecretString,
    /// Where every email's one-click unsubscribe goes.
    pub unsubscribe: Unsubscribe,
    /// The HTTP client.
    pub client: HttpClient,
}

impl std::fmt::Debug for Mailgun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailgun")
            .field("base_url", &self.base_url)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Queued {
    #[serde(default)]
    id: String,
}

#[derive(Deserialize)]
struct Events {
    #[serde(default)]
    items: Vec<Event>,
}

#[derive(Deserialize)]
struct Event {
    #[serde(default, rename = "user-variables")]
    variables: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    message: Option<EventMessage>,
}

#[derive(Deserialize)]
struct EventMessage {
    #[serde(default)]
    headers: serde_json::Map<String, serde_json::Value>,
}

impl Event {
    fn attempt(&self) -> Option<&str> {
        self.variables.get(ATTEMPT_VARIABLE)?.as_str()
    }

    fn message_id(&self) -> Option<&str> {
        self.message.as_ref()?.headers.get("message-id")?.as_str()
    }
}

impl Mailgun {
    /// Mailgun's events are not searchable the moment a message is taken: an
    /// unanswered hand-off is looked up by the reconciler, not at once.
    pub const SEARCHABLE_AT_ONCE: bool = false;

    fn url(&self, resource: &str) -> String {
        format!(
            "{}/v3/{}/{resource}",
            self.base_url.trim_end_matches('/'),
            self.domain
        )
    }

    fn authorization(&self) -> String {
        let pair = format!("api:{}", self.api_key.expose_secret());
        format!("Basic {}", STANDARD.encode(pair))
    }

    /// Sends `message` to `to` for `attempt_id` of `case_id`.
    pub async fn send(
        &self,
        attempt_id: Uuid,
        case_id: &str,
        to: &str,
        message: &Message,
    ) -> Handoff {
        let Ok(recipient) = to.parse::<Mailbox>() else {
            return Handoff::Refused {
                provider: NAME.into(),
                code: "invalid_address".into(),
                permanent: true,
            };
        };
        let link = self.unsubscribe.link(case_id, to);
        let attempt = attempt_id.to_string();
        // Built before any await: the serializer is not Send.
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("from", &self.from.to_string())
                .append_pair("to", &recipient.to_string())
                .append_pair(
                    "subject",
                    message.subject.as_deref().unwrap_or(DEFAULT_SUBJECT),
                )
                .append_pair("text", &message.text)
                .append_pair("h:List-Unsubscribe", &format!("<{link}>"))
                .append_pair("h:List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
                .append_pair(&format!("v:{ATTEMPT_VARIABLE}"), &attempt);
            if let Some(html) = &message.html {
                form.append_pair("html", html);
            }
            form.finish().into_bytes()
        };
        let authorization = self.authorization();
        let exchange = self
            .client
            .send(
                Method::POST,
                &self.url("messages"),
                &[
                    ("authorization", &authorization),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                body,
            )
            .await;
        super::taken(NAME, &exchange, |body| {
            let queued = serde_json::from_slice::<Queued>(body).ok()?;
            (!queued.id.is_empty()).then(|| queued.id.trim_matches(['<', '>']).to_owned())
        })
    }

    /// Whether Mailgun took a message for `attempt_id` since `since`. None: it
    /// cannot be asked now.
    pub async fn lookup(&self, attempt_id: Uuid, since: DateTime<Utc>) -> Option<Lookup> {
        let attempt = attempt_id.to_string();
        let mut filter = serde_json::Map::new();
        filter.insert(ATTEMPT_VARIABLE.into(), attempt.clone().into());
        let filter = serde_json::Value::Object(filter).to_string();
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("event", "accepted")
            .append_pair("begin", &since.timestamp().to_string())
            .append_pair("ascending", "yes")
            .append_pair("limit", "300")
            .append_pair("user-variables", &filter)
            .finish();
        let url = format!("{}?{query}", self.url("events"));
        let authorization = self.authorization();
        match self
            .client
            .send(
                Method::GET,
                &url,
                &[("authorization", &authorization)],
                Vec::new(),
            )
            .await
        {
            Exchange::Answered { status, body } if status.is_success() => {
                let events: Events = serde_json::from_slice(&body).ok()?;
                // The filter is checked again here: an event for another attempt
                // is never taken for this one.
                Some(
                    match events
                        .items
                        .iter()
                        .find(|e| e.attempt() == Some(attempt.as_str()))
                    {
                        Some(found) => Lookup::Accepted {
                            provider: NAME.into(),
                            message_id: found.message_id().unwrap_or_default().to_owned(),
                        },
                        None => Lookup::NotFound,
                    },
                )
            }
            _ => None,
        }
    }
}
