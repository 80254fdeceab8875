//! The email stand-in: it speaks the part of Mailgun's API dispatch uses, so the
//! adapter's real HTTP code runs against it:
//! - `POST /v3/{domain}/messages` (basic auth `api:<key>`; a form with `from`,
//!   `to`, `subject`, `text`, `html`, `h:<header>` and `v:<variable>` fields),
//!   answering `{"id": "<…>", "message": "Queued. Thank you."}`, or Mailgun's
//!   error shape (`{"message": …}`) with 400 or 401;
//! - `GET /v3/{domain}/events` with `event`, `begin` (seconds since the epoch),
//!   `ascending`, `limit` and `user-variables` (a JSON object each listed
//!   variable must match): the `accepted` events, in Mailgun's
//!   `{"items": […], "paging": {…}}` shape. As at Mailgun, an event becomes
//!   searchable only some time after the message was taken ([`MailgunSandbox::
//!   search_delay`]), so a client that looks a message up at once may miss it.
//!
//! Webhooks are registered per event type as Mailgun's webhooks API does
//! (`delivered`, `permanent_fail`, `temporary_fail`, `complained`,
//! `unsubscribed`); [`MailgunSandbox::report`] posts an event to its webhook,
//! signed with the webhook signing key as Mailgun signs them.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use http::Method;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{Fault, Refused, basic_auth, refusal, serve};
use touchpoint_platform::http_client::{Exchange, HttpClient};
use touchpoint_platform::signature;
use touchpoint_platform::tls::Identity;

/// The largest message taken.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// An email the sandbox took (patient data, kept only in memory).
#[derive(Clone, PartialEq)]
pub struct ReceivedMail {
    /// The id it gave the message (`<…@domain>`).
    pub id: String,
    /// The recipient.
    pub to: String,
    /// The sender.
    pub from: String,
    /// The subject.
    pub subject: String,
    /// The plain text.
    pub text: String,
    /// The HTML, when sent.
    pub html: Option<String>,
    /// Custom headers (`h:` fields), by name.
    pub headers: HashMap<String, String>,
    /// Custom variables (`v:` fields), by name.
    pub variables: HashMap<String, String>,
    /// When it was taken, in seconds since the epoch.
    pub timestamp: f64,
}

impl std::fmt::Debug for ReceivedMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceivedMail")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Recorded {
    mails: Vec<(ReceivedMail, Instant)>,
    faults: VecDeque<Fault>,
    webhooks: HashMap<String, String>,
    next_id: u64,
}

#[derive(Debug, Clone)]
struct Shared {
    domain: String,
    api_key: String,
    signing_key: String,
    search_delay: Duration,
    recorded: Arc<Mutex<Recorded>>,
}

impl Shared {
    fn recorded(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running Mailgun stand-in; it stops when dropped.
#[derive(Debug)]
pub struct MailgunSandbox {
    url: String,
    shared: Shared,
    stop: CancellationToken,
}

impl Drop for MailgunSandbox {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What the stand-in is started with.
#[derive(Debug, Clone)]
pub struct MailgunOptions<'a> {
    /// The sending domain.
    pub domain: &'a str,
    /// The API key (basic auth as `api`).
    pub api_key: &'a str,
    /// The key webhooks are signed with.
    pub signing_key: &'a str,
    /// How long after a message is taken its `accepted` event can be found.
    pub search_delay: Duration,
}

impl MailgunSandbox {
    /// Starts a stand-in on a free port of 127.0.0.1.
    pub async fn start(options: MailgunOptions<'_>) -> std::io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), options, None).await
    }

    /// Starts a stand-in listening on `addr`, over TLS with `tls` when given.
    pub async fn start_on(
        addr: SocketAddr,
        options: MailgunOptions<'_>,
        tls: Option<&Identity>,
    ) -> std::io::Result<Self> {
        let shared = Shared {
            domain: options.domain.to_owned(),
            api_key: options.api_key.to_owned(),
            signing_key: options.signing_key.to_owned(),
            search_delay: options.search_delay,
            recorded: Arc::default(),
        };
        let app = Router::new()
            .route("/v3/{domain}/messages", post(send))
            .route("/v3/{domain}/events", get(events))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(shared.clone());
        let (url, stop) = serve(addr, tls, app).await?;
        Ok(Self { url, shared, stop })
    }

    /// Its base URL, for the adapter's configuration.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// How long after a message is taken it can be found in the events.
    pub fn search_delay(&self) -> Duration {
        self.shared.search_delay
    }

    /// The next send request meets `fault` instead of being answered at once.
    pub fn inject(&self, fault: Fault) {
        self.shared.recorded().faults.push_back(fault);
    }

    /// Registers `url` for the webhook `kind` (`delivered`, `permanent_fail`,
    /// `temporary_fail`, `complained`, `unsubscribed`).
    pub fn webhook(&self, kind: &str, url: &str) {
        self.shared
            .recorded()
            .webhooks
            .insert(kind.to_owned(), url.to_owned());
    }

    /// Every message taken so far.
    pub fn received(&self) -> Vec<ReceivedMail> {
        self.shared
            .recorded()
            .mails
            .iter()
            .map(|(m, _)| m.clone())
            .collect()
    }

    /// Reports every message taken since the `reported`-th as delivered, and
    /// moves `reported` past them.
    pub async fn deliver_new(&self, reported: &mut usize) {
        let received = self.received();
        for mail in received.iter().skip(*reported) {
            self.report(&mail.id, "delivered", None).await;
        }
        *reported = received.len();
    }

    /// Reports `event` (`delivered`, `failed`, `complained`, `unsubscribed`)
    /// for message `id` to the webhook registered for it, signed; `severity`
    /// (`permanent`, `temporary`) for a failure. Returns the status the webhook
    /// answered; None when no webhook is registered or it did not answer.
    pub async fn report(&self, id: &str, event: &str, severity: Option<&str>) -> Option<u16> {
        let (mail, url, event_id) = {
            let mut recorded = self.shared.recorded();
            let mail = recorded.mails.iter().find(|(m, _)| m.id == id)?.0.clone();
            let kind = match (event, severity) {
                ("failed", Some("temporary")) => "temporary_fail",
                ("failed", _) => "permanent_fail",
                (other, _) => other,
            };
            let url = recorded.webhooks.get(kind)?.clone();
            recorded.next_id += 1;
            (mail, url, format!("sandbox-event-{}", recorded.next_id))
        };
        let now = Utc::now();
        let timestamp = now.timestamp().to_string();
        let token = format!("{:050x}", now.timestamp_nanos_opt().unwrap_or_default());
        let mut data = json!({
            "id": event_id,
            "event": event,
            "timestamp": now.timestamp_millis() as f64 / 1000.0,
            "recipient": mail.to,
            "user-variables": mail.variables,
            "message": { "headers": { "message-id": bare(&mail.id) } },
        });
        if event == "failed" {
            data["severity"] = json!(severity.unwrap_or("permanent"));
            data["reason"] = json!("bounce");
            data["delivery-status"] = json!({ "code": 550, "message": "No such mailbox" });
        }
        let body = json!({
            "signature": {
                "timestamp": timestamp,
                "token": token,
                "signature": signature::email::sign(&self.shared.signing_key, &timestamp, &token),
            },
            "event-data": data,
        });
        let client = HttpClient::new(Duration::from_secs(10)).ok()?;
        match client
            .send(
                Method::POST,
                &url,
                &[("content-type", "application/json")],
                body.to_string().into_bytes(),
            )
            .await
        {
            Exchange::Answered { status, .. } => Some(status.as_u16()),
            _ => None,
        }
    }
}

/// A message id without its angle brackets, as Mailgun's events carry it.
fn bare(id: &str) -> &str {
    id.trim_start_matches('<').trim_end_matches('>')
}

fn refused(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "message": message }))).into_response()
}

fn authorized(shared: &Shared, domain: &str, headers: &HeaderMap) -> Option<Response> {
    if !basic_auth(headers, "api", &shared.api_key) {
        return Some(refused(StatusCode::UNAUTHORIZED, "Invalid private key"));
    }
    if domain != shared.domain {
        return Some(refused(StatusCode::NOT_FOUND, "Domain not found"));
    }
    None
}

/// Whether `address` looks like an email address (`Name <a@b>` or `a@b`).
fn is_address(address: &str) -> bool {
    let bare = address
        .rsplit_once('<')
        .and_then(|(_, rest)| rest.strip_suffix('>'))
        .unwrap_or(address)
        .trim();
    bare.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && domain.contains('.') && !bare.contains(char::is_whitespace)
    })
}

async fn send(
    State(shared): State<Shared>,
    Path(domain): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = authorized(&shared, &domain, &headers) {
        return refusal;
    }
    let fault = shared.recorded().faults.pop_front();
    let answer = |status, why: Refused| refused(status, why.message());
    if let Some(refused) = refusal(fault.as_ref(), answer).await {
        return refused;
    }
    let fields: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let (Some(from), Some(to)) = (field("from"), field("to")) else {
        return refused(StatusCode::BAD_REQUEST, "'from' and 'to' are required");
    };
    if !is_address(&to) || !is_address(&from) {
        return refused(
            StatusCode::BAD_REQUEST,
            "'to' parameter is not a valid address. please check documentation",
        );
    }
    let Some(text) = field("text").or_else(|| field("html")) else {
        return refused(
            StatusCode::BAD_REQUEST,
            "Need at least one of 'text' or 'html'",
        );
    };
    let prefixed = |prefix: &str| -> HashMap<String, String> {
        fields
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_owned(), v.clone())))
            .collect()
    };
    let id = {
        let mut recorded = shared.recorded();
        recorded.next_id += 1;
        let id = format!(
            "<{}.{}@{}>",
            Utc::now().format("%Y%m%d%H%M%S"),
            recorded.next_id,
            shared.domain
        );
        recorded.mails.push((
            ReceivedMail {
                id: id.clone(),
                to,
                from,
                subject: field("subject").unwrap_or_default(),
                text,
                html: field("html"),
                headers: prefixed("h:"),
                variables: prefixed("v:"),
                timestamp: Utc::now().timestamp_millis() as f64 / 1000.0,
            },
            Instant::now(),
        ));
        id
    };
    if let Some(Fault::AcceptThenStall(stall)) = fault {
        tokio::time::sleep(stall).await;
    }
    Json(json!({ "id": id, "message": "Queued. Thank you." })).into_response()
}

async fn events(
    State(shared): State<Shared>,
    Path(domain): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(refusal) = authorized(&shared, &domain, &headers) {
        return refusal;
    }
    if query.get("event").is_some_and(|e| e != "accepted") {
        return Json(json!({ "items": [], "paging": {} })).into_response();
    }
    let begin: f64 = query
        .get("begin")
        .and_then(|b| b.parse().ok())
        .unwrap_or_default();
    let wanted: HashMap<String, String> = match query.get("user-variables") {
        Some(json) => match serde_json::from_str::<HashMap<String, serde_json::Value>>(json) {
            Ok(wanted) => wanted
                .into_iter()
                .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect(),
            Err(_) => return refused(StatusCode::BAD_REQUEST, "Invalid user-variables filter"),
        },
        None => HashMap::new(),
    };
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(300)
        .min(300);
    let items: Vec<serde_json::Value> = shared
        .recorded()
        .mails
        .iter()
        .filter(|(m, taken)| {
            taken.elapsed() >= shared.search_delay
                && m.timestamp >= begin
                && wanted.iter().all(|(k, v)| m.variables.get(k) == Some(v))
        })
        .take(limit)
        .map(|(m, _)| {
            json!({
                "event": "accepted",
                "id": format!("accepted-{}", bare(&m.id)),
                "timestamp": m.timestamp,
                "recipient": m.to,
                "user-variables": m.variables,
                "message": { "headers": { "message-id": bare(&m.id) } },
            })
        })
        .collect();
    Json(json!({ "items": items, "paging": {} })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_told_from_what_is_not_one() {
        assert!(is_address("ana@example.com"));
        assert!(is_address("Care Team <care@touchpoint.local>"));
        assert!(!is_address("not an address"));
        assert!(!is_address("ana@localhost"));
        assert!(!is_address("@example.com"));
    }
}
