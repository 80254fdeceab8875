//! The print-and-mail stand-in: it speaks the part of Lob's letters API
//! dispatch uses, so the adapter's real HTTP code runs against it:
//! - `POST /v1/letters` (basic auth with the API key as the user name;
//!   `multipart/form-data` with the `to[…]` address, `from`, a PDF `file`,
//!   `use_type` and `metadata[…]`), honouring the `Idempotency-Key` header: a
//!   repeated key answers with the letter it made, and makes none. It answers
//!   with the letter (`ltr_…`), or Lob's error shape (`error.message`,
//!   `error.status_code`, `error.code`): an address whose ZIP is `00000` is
//!   refused as Lob refuses an undeliverable one
//!   (`failed_deliverability_strictness`);
//! - `GET /v1/letters` with a `metadata[…]` filter.
//!
//! It records what it received (the PDF too), can be told to fail or stall the
//! next requests, and reports a letter's journey (`letter.mailed`,
//! `letter.in_transit`, `letter.delivered`, `letter.returned_to_sender`, …) to
//! the account's webhook, signed as Lob signs them (`Lob-Signature` over
//! `Lob-Signature-Timestamp` and the body).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use touchpoint_platform::http_client::{Exchange, HttpClient};
use touchpoint_platform::multipart;
use touchpoint_platform::signature;
use touchpoint_platform::tls::Identity;

use super::{Fault, Refused, basic_auth, refusal, serve};

/// The largest document taken.
const MAX_BODY: usize = 20 * 1024 * 1024;

/// The ZIP code the stand-in cannot deliver to.
pub const UNDELIVERABLE_ZIP: &str = "00000";

/// A letter the sandbox took (patient data, kept only in memory).
#[derive(Clone, PartialEq, Eq)]
pub struct ReceivedLetter {
    /// The id it gave the letter (`ltr_…`).
    pub id: String,
    /// The `to[…]` fields, by their names inside the brackets (`name`,
    /// `address_line1`, `address_city`, …).
    pub to: HashMap<String, String>,
    /// The return address's id.
    pub from: String,
    /// The document.
    pub pdf: Vec<u8>,
    /// Its metadata (`attempt` → the attempt id).
    pub metadata: HashMap<String, String>,
    /// The idempotency key it came with.
    pub idempotency_key: Option<String>,
    /// `use_type`.
    pub use_type: String,
}

impl std::fmt::Debug for ReceivedLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceivedLetter")
            .field("id", &self.id)
            .field("bytes", &self.pdf.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Recorded {
    letters: Vec<ReceivedLetter>,
    faults: VecDeque<Fault>,
    webhook: Option<String>,
    next_id: u64,
}

#[derive(Debug, Clone)]
struct Shared {
    api_key: String,
    webhook_secret: String,
    recorded: Arc<Mutex<Recorded>>,
}

impl Shared {
    fn recorded(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running print-and-mail sandbox; it stops when dropped.
#[derive(Debug)]
pub struct LobSandbox {
    url: String,
    shared: Shared,
    stop: CancellationToken,
}

impl Drop for LobSandbox {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl LobSandbox {
    /// Starts a sandbox on a free port of 127.0.0.1 taking `api_key`, signing
    /// webhooks with `webhook_secret`.
    pub async fn start(api_key: &str, webhook_secret: &str) -> std::io::Result<Self> {
        Self::start_on(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            (api_key, webhook_secret),
            None,
        )
        .await
    }

    /// Starts a sandbox listening on `addr`, over TLS with `tls` when given.
    pub async fn start_on(
        addr: SocketAddr,
        (api_key, webhook_secret): (&str, &str),
        tls: Option<&Identity>,
    ) -> std::io::Result<Self> {
        let shared = Shared {
            api_key: api_key.to_owned(),
            webhook_secret: webhook_secret.to_owned(),
            recorded: Arc::default(),
        };
        let app = Router::new()
            .route("/v1/letters", post(create).get(list))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(shared.clone());
        let (url, stop) = serve(addr, tls, app).await?;
        Ok(Self { url, shared, stop })
    }

    /// Its base URL, for the adapter's configuration.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Where the account's letter webhooks go.
    pub fn webhook(&self, url: &str) {
        self.shared.recorded().webhook = Some(url.to_owned());
    }

    /// The next create request meets `fault` instead of being answered at once.
    pub fn inject(&self, fault: Fault) {
        self.shared.recorded().faults.push_back(fault);
    }

    /// Every letter taken so far.
    pub fn received(&self) -> Vec<ReceivedLetter> {
        self.shared.recorded().letters.clone()
    }

    /// Reports `event` (`letter.mailed`, `letter.in_transit`,
    /// `letter.delivered`, `letter.returned_to_sender`, …) for letter `id` to
    /// the webhook, signed; returns the status it answered. None when no
    /// webhook is set, the letter is unknown or the webhook did not answer.
    pub async fn report(&self, id: &str, event: &str) -> Option<u16> {
        let (letter, url, event_id) = {
            let mut recorded = self.shared.recorded();
            let letter = recorded.letters.iter().find(|l| l.id == id)?.clone();
            let url = recorded.webhook.clone()?;
            recorded.next_id += 1;
            (letter, url, format!("evt_sandbox{:010}", recorded.next_id))
        };
        let body = json!({
            "id": event_id,
            "object": "event",
            "date_created": chrono::Utc::now().to_rfc3339(),
            "reference_id": letter.id,
            "event_type": {
                "id": event,
                "resource": "letters",
                "enabled_for_test": true,
                "object": "event_type",
            },
            "body": {
                "id": letter.id,
                "object": "letter",
                "metadata": letter.metadata,
                "use_type": letter.use_type,
            },
        })
        .to_string();
        let timestamp = chrono::Utc::now().timestamp_millis().to_string();
        let signed =
            signature::mail::sign(&self.shared.webhook_secret, &timestamp, body.as_bytes());
        let client = HttpClient::new(Duration::from_secs(10)).ok()?;
        match client
            .send(
                Method::POST,
                &url,
                &[
                    ("content-type", "application/json"),
                    (signature::mail::HEADER, &signed),
                    (signature::mail::TIMESTAMP_HEADER, &timestamp),
                ],
                body.into_bytes(),
            )
            .await
        {
            Exchange::Answered { status, .. } => Some(status.as_u16()),
            _ => None,
        }
    }

    /// Reports each letter taken since the `reported`-th as mailed, in transit
    /// and delivered (what a local run shows), and moves `reported` past them.
    pub async fn deliver_new(&self, reported: &mut usize) {
        let received = self.received();
        for letter in received.iter().skip(*reported) {
            for event in ["letter.mailed", "letter.in_transit", "letter.delivered"] {
                self.report(&letter.id, event).await;
            }
        }
        *reported = received.len();
    }
}

fn refused(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({
        "error": { "message": message, "status_code": status.as_u16(), "code": code },
    });
    (status, Json(body)).into_response()
}

/// `prefix[name]` → `name`.
fn bracketed<'a>(field: &'a str, prefix: &str) -> Option<&'a str> {
    field
        .strip_prefix(prefix)?
        .strip_prefix('[')?
        .strip_suffix(']')
}

fn letter_json(letter: &ReceivedLetter) -> serde_json::Value {
    json!({
        "id": letter.id,
        "object": "letter",
        "metadata": letter.metadata,
        "use_type": letter.use_type,
        "color": false,
        "address_placement": "insert_blank_page",
    })
}

async fn create(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if !basic_auth(&headers, &shared.api_key, "") {
        return refused(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Your API key is not valid.",
        );
    }
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // A key seen before: the letter it made, and nothing new.
    if let Some(key) = &idempotency_key {
        let recorded = shared.recorded();
        if let Some(made) = recorded
            .letters
            .iter()
            .find(|l| l.idempotency_key.as_ref() == Some(key))
        {
            return Json(letter_json(made)).into_response();
        }
    }
    let fault = shared.recorded().faults.pop_front();
    let answer = |status, why: Refused| {
        let code = match why {
            Refused::Internal => "internal_server_error",
            Refused::Coded(_) => "invalid",
            Refused::Stalled => "service_unavailable",
        };
        refused(status, code, why.message())
    };
    if let Some(refused) = refusal(fault.as_ref(), answer).await {
        return refused;
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Ok(parts) = multipart::decode(content_type, &body) else {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_request",
            "Expected multipart/form-data",
        );
    };
    let field = |name: &str| {
        parts
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.text())
            .map(str::to_owned)
            .unwrap_or_default()
    };
    let to: HashMap<String, String> = parts
        .iter()
        .filter_map(|p| Some((bracketed(&p.name, "to")?.to_owned(), p.text()?.to_owned())))
        .collect();
    let given = |name: &str| to.get(name).is_some_and(|v| !v.trim().is_empty());
    if !(given("name") && given("address_line1") && given("address_country")) {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "to.name, to.address_line1 and to.address_country are required",
        );
    }
    if to.get("address_zip").map(String::as_str) == Some(UNDELIVERABLE_ZIP) {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "failed_deliverability_strictness",
            "The to address does not meet the account's deliverability strictness.",
        );
    }
    let from = field("from");
    if !from.starts_with("adr_") {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "from must be an address id",
        );
    }
    let use_type = field("use_type");
    if !matches!(use_type.as_str(), "operational" | "marketing") {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "use_type must be operational or marketing",
        );
    }
    let Some(pdf) = parts
        .iter()
        .find(|p| p.name == "file" && p.data.starts_with(b"%PDF-"))
        .map(|p| p.data.clone())
    else {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "A PDF file is required",
        );
    };
    let metadata = parts
        .iter()
        .filter_map(|p| {
            Some((
                bracketed(&p.name, "metadata")?.to_owned(),
                p.text()?.to_owned(),
            ))
        })
        .collect();
    let letter = {
        let mut recorded = shared.recorded();
        recorded.next_id += 1;
        let letter = ReceivedLetter {
            id: format!("ltr_sandbox{:010}", recorded.next_id),
            to,
            from,
            pdf,
            metadata,
            idempotency_key,
            use_type,
        };
        recorded.letters.push(letter.clone());
        letter
    };
    if let Some(Fault::AcceptThenStall(stall)) = fault {
        tokio::time::sleep(stall).await;
    }
    Json(letter_json(&letter)).into_response()
}

async fn list(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !basic_auth(&headers, &shared.api_key, "") {
        return refused(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Your API key is not valid.",
        );
    }
    let wanted: Vec<(&str, &String)> = query
        .iter()
        .filter_map(|(k, v)| Some((bracketed(k, "metadata")?, v)))
        .collect();
    let data: Vec<serde_json::Value> = shared
        .recorded()
        .letters
        .iter()
        .filter(|l| wanted.iter().all(|(k, v)| l.metadata.get(*k) == Some(*v)))
        .map(letter_json)
        .collect();
    let count = data.len();
    Json(json!({ "data": data, "object": "list", "count": count })).into_response()
}
