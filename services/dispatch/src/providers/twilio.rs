//! SMS through Twilio's Programmable Messaging API (or anything that speaks it,
//! like the sandbox): create a message with `To`, `From` (or a messaging
//! service), `Body` and a `StatusCallback` carrying the attempt id; HTTP basic
//! auth with the account SID and auth token.
//!
//! Twilio's create call takes no idempotency key. So a hand-off whose answer never
//! came is not retried blindly: the adapter lists today's messages to the number
//! and looks for the same body before anything is sent again.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use http::{Method, StatusCode};
use serde::Deserialize;
use touchpoint_platform::secret::{ExposeSecret as _, SecretString};
use uuid::Uuid;

use super::http::{Exchange, HttpClient};
use super::{Handoff, Lookup};

/// One Twilio-speaking SMS provider.
#[derive(Debug, Clone)]
pub struct Twilio {
    /// Its name in events and callback paths, e.g. `primary`.
    pub name: String,
    /// The API's base URL, e.g. `https://api.twilio.com`.
    pub base_url: String,
    /// The account SID.
    pub account_sid: String,
    /// The auth token.
    pub auth_token: SecretString,
    /// The sender: a phone number, or a messaging service SID (`MG…`).
    pub from: String,
    /// Where dispatch takes status callbacks, e.g. `https://hub.example`.
    pub callback_base: Option<String>,
    /// The HTTP client.
    pub client: HttpClient,
}

#[derive(Deserialize)]
struct Created {
    sid: Option<String>,
}

#[derive(Deserialize)]
struct ApiError {
    code: Option<i64>,
}

#[derive(Deserialize)]
struct Listed {
    #[serde(default)]
    messages: Vec<ListedMessage>,
}

#[derive(Deserialize)]
struct ListedMessage {
    sid: String,
    #[serde(default)]
    body: String,
}

impl Twilio {
    fn api(&self) -> Api<'_> {
        Api {
            client: &self.client,
            base_url: &self.base_url,
            account_sid: &self.account_sid,
            auth_token: &self.auth_token,
        }
    }

    /// Where Twilio reports the status of `attempt_id`.
    pub fn callback_url(&self, attempt_id: Uuid) -> Option<String> {
        self.callback_base.as_ref().map(|base| {
            format!(
                "{}/callbacks/sms/{}/{attempt_id}",
                base.trim_end_matches('/'),
                self.name
            )
        })
    }

    /// Creates the message.
    pub async fn send(&self, attempt_id: Uuid, to: &str, body: &str) -> Handoff {
        let form = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("To", to);
            let sender = if self.from.starts_with("MG") {
                "MessagingServiceSid"
            } else {
                "From"
            };
            form.append_pair(sender, &self.from);
            form.append_pair("Body", body);
            if let Some(callback) = self.callback_url(attempt_id) {
                form.append_pair("StatusCallback", &callback);
            }
            form.finish()
        };
        let exchange = self.api().create("Messages", form).await;
        created(&self.name, exchange)
    }

    /// Whether a message with `body` went to `to` since `since`: its SID if so.
    pub async fn lookup(&self, to: &str, body: &str, since: DateTime<Utc>) -> Option<Lookup> {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("To", to)
            .append_pair("DateSent>", &since.format("%Y-%m-%d").to_string())
            .finish();
        match self.api().list("Messages", &query).await {
            Exchange::Answered { status, body: page } if status.is_success() => {
                let listed: Listed = serde_json::from_slice(&page).ok()?;
                Some(match listed.messages.into_iter().find(|m| m.body == body) {
                    Some(found) => Lookup::Accepted {
                        provider: self.name.clone(),
                        message_id: found.sid,
                    },
                    None => Lookup::NotFound,
                })
            }
            // No answer to go by: ask again later.
            _ => None,
        }
    }
}

/// One Twilio account's REST API (messages and calls alike): a resource's
/// URL, and requests signed in with HTTP basic auth (the account SID and its
/// auth token).
pub(super) struct Api<'a> {
    pub(super) client: &'a HttpClient,
    pub(super) base_url: &'a str,
    pub(super) account_sid: &'a str,
    pub(super) auth_token: &'a SecretString,
}

impl Api<'_> {
    /// The URL of `resource` (`Messages`, `Calls`) in the account.
    fn url(&self, resource: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/{resource}.json",
            self.base_url.trim_end_matches('/'),
            self.account_sid
        )
    }

    fn authorization(&self) -> String {
        let pair = format!("{}:{}", self.account_sid, self.auth_token.expose_secret());
        format!("Basic {}", STANDARD.encode(pair))
    }

    /// Creates one of `resource` from `form` (read the answer with [`created`]).
    pub(super) async fn create(&self, resource: &str, form: String) -> Exchange {
        let authorization = self.authorization();
        self.client
            .send(
                Method::POST,
                &self.url(resource),
                &[
                    ("authorization", &authorization),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                form.into_bytes(),
            )
            .await
    }

    /// Lists `resource` filtered by `query` (form-encoded).
    pub(super) async fn list(&self, resource: &str, query: &str) -> Exchange {
        let authorization = self.authorization();
        self.client
            .send(
                Method::GET,
                &format!("{}?{query}", self.url(resource)),
                &[("authorization", &authorization)],
                Vec::new(),
            )
            .await
    }
}

/// What Twilio's answer to a create request (a message, a call) means: its
/// SID once taken (a yes without one is as good as no answer); a 429 or 5xx
/// is tried again; any other refusal is final, with Twilio's own error code
/// (21211: not a valid number, 21610: the number replied STOP to this
/// sender); no answer may have been taken, and is looked up before anything
/// is sent again.
pub(super) fn created(provider: &str, exchange: Exchange) -> Handoff {
    let refused = |code: String, permanent: bool| Handoff::Refused {
        provider: provider.to_owned(),
        code,
        permanent,
    };
    let ambiguous = |code: &str| Handoff::Ambiguous {
        provider: provider.to_owned(),
        code: code.to_owned(),
    };
    match exchange {
        Exchange::Answered { status, body } if status.is_success() => {
            match serde_json::from_slice::<Created>(&body)
                .ok()
                .and_then(|c| c.sid)
            {
                Some(sid) => Handoff::Accepted {
                    provider: provider.to_owned(),
                    message_id: sid,
                },
                None => ambiguous("no_sid"),
            }
        }
        Exchange::Answered { status, .. } if status == StatusCode::TOO_MANY_REQUESTS => {
            refused("http_429".into(), false)
        }
        Exchange::Answered { status, body } if status.is_client_error() => {
            let code = serde_json::from_slice::<ApiError>(&body)
                .ok()
                .and_then(|e| e.code)
                .map_or_else(|| format!("http_{}", status.as_u16()), |c| c.to_string());
            refused(code, true)
        }
        Exchange::Answered { status, .. } => refused(format!("http_{}", status.as_u16()), false),
        Exchange::NotSent => refused("connect".into(), false),
        Exchange::Unanswered => ambiguous("timeout"),
    }
}
