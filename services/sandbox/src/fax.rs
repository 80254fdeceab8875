//! The fax stand-in: it speaks the part of Phaxio's v2 API dispatch uses, so the
//! adapter's real HTTP code runs against it:
//! - `POST /v2/faxes` (basic auth; `multipart/form-data` with `to`, `file`,
//!   `callback_url` and `tag[…]` fields), answering with the fax's id, or
//!   Phaxio's error shape (`success: false` and a message);
//! - `GET /v2/faxes` with a `tag[…]` filter.
//!
//! It records what it received (the PDF too), can be told to fail or stall the
//! next requests, and reports a fax's outcome to its callback signed as Phaxio
//! signs them (`X-Phaxio-Signature`).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{Fault, Refused, basic_auth, is_e164, post_callback, refusal, serve};
use touchpoint_platform::multipart;
use touchpoint_platform::signature;
use touchpoint_platform::tls::Identity;

/// The largest document taken.
const MAX_BODY: usize = 20 * 1024 * 1024;

/// A fax the sandbox took (patient data, kept only in memory).
#[derive(Clone, PartialEq, Eq)]
pub struct ReceivedFax {
    /// The id it gave the fax.
    pub id: u64,
    /// The number it goes to.
    pub to: String,
    /// The document.
    pub pdf: Vec<u8>,
    /// Its tags (`attempt` → the attempt id).
    pub tags: HashMap<String, String>,
    /// Where to report the outcome.
    pub callback_url: Option<String>,
}

impl std::fmt::Debug for ReceivedFax {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceivedFax")
            .field("id", &self.id)
            .field("bytes", &self.pdf.len())
            .finish_non_exhaustive()
    }
}

impl ReceivedFax {
    /// The document's pages, counted from its page objects.
    pub fn pages(&self) -> u32 {
        let marker = b"/Type /Page";
        self.pdf
            .windows(marker.len() + 1)
            .filter(|w| w.starts_with(marker) && w[marker.len()] != b's')
            .count() as u32
    }
}

#[derive(Debug, Default)]
struct Recorded {
    faxes: Vec<ReceivedFax>,
    faults: VecDeque<Fault>,
    next_id: u64,
}

#[derive(Debug, Clone)]
struct Shared {
    api_key: String,
    api_secret: String,
    callback_token: String,
    recorded: Arc<Mutex<Recorded>>,
}

impl Shared {
    fn recorded(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running fax sandbox; it stops when dropped.
#[derive(Debug)]
pub struct FaxSandbox {
    url: String,
    shared: Shared,
    stop: CancellationToken,
}

impl Drop for FaxSandbox {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FaxSandbox {
    /// Starts a sandbox on a free port of 127.0.0.1 taking `api_key` and
    /// `api_secret`, signing callbacks with `callback_token`.
    pub async fn start(
        api_key: &str,
        api_secret: &str,
        callback_token: &str,
    ) -> std::io::Result<Self> {
        Self::start_on(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            (api_key, api_secret),
            callback_token,
            None,
        )
        .await
    }

    /// Starts a sandbox listening on `addr` for the key pair `(key, secret)`,
    /// over TLS with `tls` when given.
    pub async fn start_on(
        addr: SocketAddr,
        (api_key, api_secret): (&str, &str),
        callback_token: &str,
        tls: Option<&Identity>,
    ) -> std::io::Result<Self> {
        let shared = Shared {
            api_key: api_key.to_owned(),
            api_secret: api_secret.to_owned(),
            callback_token: callback_token.to_owned(),
            recorded: Arc::default(),
        };
        let app = Router::new()
            .route("/v2/faxes", post(create).get(list))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(shared.clone());
        let (url, stop) = serve(addr, tls, app).await?;
        Ok(Self { url, shared, stop })
    }

    /// Its base URL, for the adapter's configuration.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The next send request meets `fault` instead of being taken.
    pub fn inject(&self, fault: Fault) {
        self.shared.recorded().faults.push_back(fault);
    }

    /// Every fax taken so far.
    pub fn received(&self) -> Vec<ReceivedFax> {
        self.shared.recorded().faxes.clone()
    }

    /// Reports fax `id`'s outcome (`success` or `failure`, with Phaxio's error
    /// type for a failure) to its callback, signed; returns the HTTP status the
    /// callback answered.
    pub async fn report(&self, id: u64, status: &str, error_type: Option<&str>) -> Option<u16> {
        let fax = self.received().into_iter().find(|f| f.id == id)?;
        let url = fax.callback_url.clone()?;
        let pages = fax.pages();
        let fax_json = json!({
            "id": fax.id,
            "direction": "sent",
            "status": status,
            "num_pages": pages,
            "tags": fax.tags,
            "recipients": [{
                "phone_number": fax.to,
                "status": status,
                "error_type": error_type,
            }],
        });
        let params = vec![
            ("success".to_owned(), (status == "success").to_string()),
            ("is_test".to_owned(), "true".to_owned()),
            ("direction".to_owned(), "sent".to_owned()),
            ("fax".to_owned(), fax_json.to_string()),
        ];
        let signed = signature::fax::sign(&self.shared.callback_token, &url, &params);
        post_callback(&url, &params, signature::fax::HEADER, &signed).await
    }
}

fn refused(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({ "success": false, "message": message })),
    )
        .into_response()
}

fn tag_name(field: &str) -> Option<&str> {
    field.strip_prefix("tag[")?.strip_suffix(']')
}

async fn create(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if !basic_auth(&headers, &shared.api_key, &shared.api_secret) {
        return refused(StatusCode::UNAUTHORIZED, "Invalid API credentials");
    }
    let fault = shared.recorded().faults.pop_front();
    let answer = |status, why: Refused| refused(status, why.message());
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
            "Expected multipart/form-data",
        );
    };
    let field = |name: &str| {
        parts
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.text())
            .map(str::to_owned)
    };
    let to = field("to").unwrap_or_default();
    if !is_e164(&to) {
        return refused(StatusCode::UNPROCESSABLE_ENTITY, "Invalid recipient number");
    }
    let Some(pdf) = parts
        .iter()
        .find(|p| p.name == "file" && p.data.starts_with(b"%PDF-"))
        .map(|p| p.data.clone())
    else {
        return refused(StatusCode::UNPROCESSABLE_ENTITY, "A PDF file is required");
    };
    let tags = parts
        .iter()
        .filter_map(|p| Some((tag_name(&p.name)?.to_owned(), p.text()?.to_owned())))
        .collect();
    let id = {
        let mut recorded = shared.recorded();
        recorded.next_id += 1;
        let id = recorded.next_id;
        recorded.faxes.push(ReceivedFax {
            id,
            to,
            pdf,
            tags,
            callback_url: field("callback_url"),
        });
        id
    };
    if let Some(Fault::AcceptThenStall(stall)) = fault {
        tokio::time::sleep(stall).await;
    }
    Json(json!({
        "success": true,
        "message": "Fax queued for sending",
        "data": { "id": id },
    }))
    .into_response()
}

async fn list(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !basic_auth(&headers, &shared.api_key, &shared.api_secret) {
        return refused(StatusCode::UNAUTHORIZED, "Invalid API credentials");
    }
    let wanted: Vec<(&str, &String)> = query
        .iter()
        .filter_map(|(k, v)| Some((tag_name(k)?, v)))
        .collect();
    let data: Vec<serde_json::Value> = shared
        .recorded()
        .faxes
        .iter()
        .filter(|f| wanted.iter().all(|(k, v)| f.tags.get(*k) == Some(*v)))
        .map(|f| json!({ "id": f.id, "status": "queued", "num_pages": f.pages() }))
        .collect();
    Json(json!({ "success": true, "data": data })).into_response()
}
