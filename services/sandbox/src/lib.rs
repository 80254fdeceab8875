//! Stand-ins for outside providers, for tests and local runs: an SMS provider
//! speaking Twilio's API (here), a fax provider speaking Phaxio's ([`fax`]), an
//! email provider speaking Mailgun's ([`mailgun`]), a print-and-mail provider
//! speaking Lob's ([`lob`]) and an SMTP server ([`smtp`]).
//!
//! The SMS stand-in: It speaks the part of
//! Twilio's Programmable Messaging API dispatch uses, so the adapter's real HTTP
//! code runs against it:
//! - `POST /2010-04-01/Accounts/{sid}/Messages.json` (basic auth; `To`, `From` or
//!   `MessagingServiceSid`, `Body`, `StatusCallback`), answering 201 with the
//!   message, or Twilio's error shape;
//! - `GET` on the same path with `To` and `DateSent>` filters.
//!
//! It records what it received, can be told to fail, refuse or stall the next
//! requests, and reports statuses to a message's callback signed as Twilio signs
//! them. [`post_inbound_text`] plays a patient texting back. The same account
//! places calls ([`voice`]).

pub mod fax;
pub mod https;
pub mod lob;
pub mod mailgun;
pub mod smtp;
pub mod voice;

/// The sandbox process's addresses and development credentials, shared by
/// `touchpoint-sandbox` and `touchpoint up` (which points dispatch at it).
pub mod local {
    /// The SMS provider's address.
    pub const SMS_ADDR: &str = "127.0.0.1:8081";
    /// The fax provider's address.
    pub const FAX_ADDR: &str = "127.0.0.1:8082";
    /// The SMTP server's address.
    pub const SMTP_ADDR: &str = "127.0.0.1:2525";
    /// The Mailgun stand-in's address.
    pub const MAILGUN_ADDR: &str = "127.0.0.1:8083";
    /// The Mailgun sending domain.
    pub const MAILGUN_DOMAIN: &str = "mg.touchpoint.local";
    /// The Mailgun API key (development only).
    pub const MAILGUN_API_KEY: &str = "sandbox-mailgun-key";
    /// The key Mailgun's webhooks are signed with (development only; dispatch
    /// and routing hold the same).
    pub const MAILGUN_SIGNING_KEY: &str = "sandbox-mailgun-signing-key";
    /// Where the Mailgun stand-in reports deliveries and failures: dispatch's
    /// callbacks on its default HTTP address.
    pub const MAILGUN_DELIVERY_WEBHOOK: &str = "http://127.0.0.1:8053/callbacks/email/mailgun";
    /// Where it reports complaints and unsubscribes: routing's webhook on the
    /// address `touchpoint up` gives it.
    pub const MAILGUN_COMPLAINT_WEBHOOK: &str = "http://127.0.0.1:8054/inbound/email/events";
    /// The print-and-mail stand-in's address.
    pub const LOB_ADDR: &str = "127.0.0.1:8084";
    /// Its API key (development only).
    pub const LOB_API_KEY: &str = "sandbox-lob-key";
    /// The secret its webhooks are signed with (development only; dispatch
    /// holds the same).
    pub const LOB_WEBHOOK_SECRET: &str = "sandbox-lob-webhook-secret";
    /// The return address saved in the account.
    pub const LOB_FROM: &str = "adr_sandbox_return";
    /// Where it reports letters' journeys: dispatch's callbacks on their
    /// default address.
    pub const LOB_WEBHOOK: &str = "http://127.0.0.1:8053/callbacks/mail/lob";
    /// The SMS account.
    pub const ACCOUNT_SID: &str = "ACsandbox0000000000000000000000000";
    /// The SMS account's token (development only).
    pub const AUTH_TOKEN: &str = "sandbox-auth-token";
    /// The SMS sender.
    pub const SMS_FROM: &str = "+15005550006";
    /// The caller id patients see on a person's call.
    pub const VOICE_CALLER_ID: &str = "+12125550199";
    /// The fax API key.
    pub const FAX_API_KEY: &str = "sandbox-fax-key";
    /// The fax API secret (development only).
    pub const FAX_API_SECRET: &str = "sandbox-fax-secret";
    /// The fax callback token (development only).
    pub const FAX_CALLBACK_TOKEN: &str = "sandbox-fax-callback-token";
    /// The key one-click unsubscribe links are signed with (development only;
    /// routing holds the same).
    pub const UNSUBSCRIBE_KEY: &str = "sandbox-unsubscribe-key";
    /// The email sender.
    pub const MAIL_FROM: &str = "Care Team <care@touchpoint.local>";
    /// The SMTP login, taken only over STARTTLS.
    pub const SMTP_USER: &str = "dispatch";
    /// The SMTP password (development only).
    pub const SMTP_PASSWORD: &str = "sandbox-smtp-password";
    /// Where the sandbox writes its development CA's certificate, so dispatch
    /// can verify the SMTP server's and the HTTPS providers' certificates:
    /// `TOUCHPOINT_SANDBOX_CA_FILE`.
    pub const CA_FILE_VAR: &str = "TOUCHPOINT_SANDBOX_CA_FILE";

    /// Dispatch's provider settings for the sandbox process, as environment
    /// variables; `ca_file` is where the sandbox wrote its CA certificate.
    pub fn dispatch_env(ca_file: &std::path::Path) -> Vec<(&'static str, String)> {
        let (smtp_host, smtp_port) = SMTP_ADDR.split_once(':').unwrap_or((SMTP_ADDR, "25"));
        vec![
            ("TOUCHPOINT_SMS_PRIMARY_URL", format!("https://{SMS_ADDR}")),
            ("TOUCHPOINT_SMS_PRIMARY_ACCOUNT_SID", ACCOUNT_SID.into()),
            ("TOUCHPOINT_SMS_PRIMARY_AUTH_TOKEN", AUTH_TOKEN.into()),
            ("TOUCHPOINT_SMS_PRIMARY_FROM", SMS_FROM.into()),
            ("TOUCHPOINT_VOICE_URL", format!("https://{SMS_ADDR}")),
            ("TOUCHPOINT_VOICE_ACCOUNT_SID", ACCOUNT_SID.into()),
            ("TOUCHPOINT_VOICE_AUTH_TOKEN", AUTH_TOKEN.into()),
            ("TOUCHPOINT_VOICE_CALLER_ID", VOICE_CALLER_ID.into()),
            ("TOUCHPOINT_FAX_URL", format!("https://{FAX_ADDR}")),
            ("TOUCHPOINT_FAX_API_KEY", FAX_API_KEY.into()),
            ("TOUCHPOINT_FAX_API_SECRET", FAX_API_SECRET.into()),
            ("TOUCHPOINT_FAX_CALLBACK_TOKEN", FAX_CALLBACK_TOKEN.into()),
            ("TOUCHPOINT_MAILGUN_URL", format!("https://{MAILGUN_ADDR}")),
            ("TOUCHPOINT_MAILGUN_DOMAIN", MAILGUN_DOMAIN.into()),
            ("TOUCHPOINT_MAILGUN_API_KEY", MAILGUN_API_KEY.into()),
            ("TOUCHPOINT_MAILGUN_FROM", MAIL_FROM.into()),
            ("TOUCHPOINT_MAILGUN_SIGNING_KEY", MAILGUN_SIGNING_KEY.into()),
            ("TOUCHPOINT_MAIL_URL", format!("https://{LOB_ADDR}")),
            ("TOUCHPOINT_MAIL_API_KEY", LOB_API_KEY.into()),
            ("TOUCHPOINT_MAIL_FROM", LOB_FROM.into()),
            ("TOUCHPOINT_MAIL_WEBHOOK_SECRET", LOB_WEBHOOK_SECRET.into()),
            ("TOUCHPOINT_SMTP_HOST", smtp_host.into()),
            ("TOUCHPOINT_SMTP_PORT", smtp_port.into()),
            ("TOUCHPOINT_SMTP_FROM", MAIL_FROM.into()),
            ("TOUCHPOINT_SMTP_USERNAME", SMTP_USER.into()),
            ("TOUCHPOINT_SMTP_PASSWORD", SMTP_PASSWORD.into()),
            ("TOUCHPOINT_SMTP_TLS", "required".into()),
            ("TOUCHPOINT_SMTP_CA_FILE", ca_file.display().to_string()),
            ("TOUCHPOINT_PROVIDER_CA_FILE", ca_file.display().to_string()),
        ]
    }
}

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use http::Method;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use touchpoint_platform::http_client::{Exchange, HttpClient};
use touchpoint_platform::signature;
use touchpoint_platform::tls::Identity;

/// A message the sandbox took (patient data, kept only in memory).
#[derive(Clone, PartialEq, Eq)]
pub struct Received {
    /// The SID it gave the message.
    pub sid: String,
    /// The recipient.
    pub to: String,
    /// The sender or messaging service.
    pub from: String,
    /// The text.
    pub body: String,
    /// Where to report statuses.
    pub status_callback: Option<String>,
    /// When it took the message.
    pub date_created: DateTime<Utc>,
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received")
            .field("sid", &self.sid)
            .finish_non_exhaustive()
    }
}

/// What the sandbox does with a create request, instead of taking it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and Twilio's error shape, taking nothing.
    Status(u16),
    /// Refuse with this status and Twilio error code (e.g. 400 and 21211).
    Refuse {
        /// The HTTP status.
        status: u16,
        /// Twilio's error code.
        code: i64,
    },
    /// Take the message, then answer only after this long (longer than the
    /// client waits: an answer that never comes).
    AcceptThenStall(Duration),
    /// Take nothing, and answer (503) only after this long: a request lost on
    /// its way, as the client sees it.
    Stall(Duration),
}

#[derive(Debug, Default)]
struct Recorded {
    messages: Vec<Received>,
    calls: Vec<voice::PlacedCall>,
    faults: VecDeque<Fault>,
    next_sid: u64,
}

#[derive(Debug, Clone)]
struct Shared {
    account_sid: String,
    auth_token: String,
    recorded: Arc<Mutex<Recorded>>,
}

impl Shared {
    fn recorded(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running sandbox; it stops when dropped.
#[derive(Debug)]
pub struct Sandbox {
    url: String,
    shared: Shared,
    stop: CancellationToken,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Sandbox {
    /// Starts a sandbox on a free port of 127.0.0.1 for the account `account_sid`
    /// with `auth_token`.
    pub async fn start(account_sid: &str, auth_token: &str) -> std::io::Result<Self> {
        Self::start_on(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            account_sid,
            auth_token,
            None,
        )
        .await
    }

    /// Starts a sandbox on a free port of 127.0.0.1 serving HTTPS with
    /// `identity` (its certificate should name 127.0.0.1).
    pub async fn start_tls(
        account_sid: &str,
        auth_token: &str,
        identity: &Identity,
    ) -> std::io::Result<Self> {
        Self::start_on(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            account_sid,
            auth_token,
            Some(identity),
        )
        .await
    }

    /// Starts a sandbox listening on `addr`, over TLS with `tls` when given.
    pub async fn start_on(
        addr: SocketAddr,
        account_sid: &str,
        auth_token: &str,
        tls: Option<&Identity>,
    ) -> std::io::Result<Self> {
        let shared = Shared {
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
            recorded: Arc::default(),
        };
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{account}/Messages.json",
                post(create).get(list),
            )
            .route(
                "/2010-04-01/Accounts/{account}/Calls.json",
                post(voice::create).get(voice::list),
            )
            .with_state(shared.clone());
        let (url, stop) = serve(addr, tls, app).await?;
        Ok(Self { url, shared, stop })
    }

    /// Its base URL (`http://` or `https://`), for an adapter's configuration.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The next create request meets `fault` instead of being taken.
    pub fn inject(&self, fault: Fault) {
        self.shared.recorded().faults.push_back(fault);
    }

    /// Forgets the faults not yet met.
    pub fn clear_faults(&self) {
        self.shared.recorded().faults.clear();
    }

    /// How many messages it has taken so far, without copying them.
    pub fn received_count(&self) -> usize {
        self.shared.recorded().messages.len()
    }

    /// Every message taken so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.recorded().messages.clone()
    }

    /// Reports `status` (e.g. `delivered`) for message `sid` to its callback,
    /// signed; returns the HTTP status the callback answered.
    pub async fn report(&self, sid: &str, status: &str, error_code: Option<&str>) -> Option<u16> {
        let message = self.received().into_iter().find(|m| m.sid == sid)?;
        let url = message.status_callback.clone()?;
        let mut params = vec![
            ("MessageSid".to_owned(), message.sid.clone()),
            ("MessageStatus".to_owned(), status.to_owned()),
            ("AccountSid".to_owned(), self.shared.account_sid.clone()),
            ("To".to_owned(), message.to.clone()),
        ];
        if let Some(code) = error_code {
            params.push(("ErrorCode".to_owned(), code.to_owned()));
        }
        let signed = signature::sign(&self.shared.auth_token, &url, &params);
        post_callback(&url, &params, signature::HEADER, &signed).await
    }

    /// Reports delivered every message taken after the first `*reported`, as a
    /// provider reports a text that reached its handset, and counts them in.
    pub async fn deliver_new(&self, reported: &mut usize) {
        let received = self.received();
        for message in received.iter().skip(*reported) {
            self.report(&message.sid, "delivered", None).await;
        }
        *reported = received.len();
    }
}

/// A text a patient sends to the program's number.
#[derive(Debug, Clone, Copy)]
pub struct InboundText<'a> {
    /// The patient's number.
    pub from: &'a str,
    /// The program's number.
    pub to: &'a str,
    /// What they wrote.
    pub body: &'a str,
    /// The provider's id for the message.
    pub sid: &'a str,
}

/// Posts `text` to the inbound-message webhook at `url` as the provider does:
/// a form signed with the account's `auth_token`. Returns the HTTP status the
/// webhook answered, or None when it did not answer.
pub async fn post_inbound_text(url: &str, auth_token: &str, text: &InboundText<'_>) -> Option<u16> {
    let params = vec![
        ("Body".to_owned(), text.body.to_owned()),
        ("From".to_owned(), text.from.to_owned()),
        ("MessageSid".to_owned(), text.sid.to_owned()),
        ("To".to_owned(), text.to.to_owned()),
    ];
    let signed = signature::sign(auth_token, url, &params);
    post_callback(url, &params, signature::HEADER, &signed).await
}

/// Lets a create request in: refused (the answer) if its account or basic
/// auth is wrong or the next fault refuses it; otherwise the fault it meets,
/// if any (an accept-then-stall).
async fn admit(
    shared: &Shared,
    account: &str,
    headers: &HeaderMap,
) -> Result<Option<Fault>, Response> {
    if !authorized(shared, account, headers) {
        return Err(error(StatusCode::UNAUTHORIZED, 20003, "Authenticate"));
    }
    let fault = shared.recorded().faults.pop_front();
    let answer = |status, why: Refused| {
        let code = match why {
            Refused::Internal => 20500,
            Refused::Coded(code) => code,
            Refused::Stalled => 20503,
        };
        error(status, code, why.message())
    };
    match refusal(fault.as_ref(), answer).await {
        Some(refused) => Err(refused),
        None => Ok(fault),
    }
}

/// Why a fault refused a request, for each stand-in to answer in its
/// provider's error shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// A server error ([`Fault::Status`]).
    Internal,
    /// A refusal with the provider's code ([`Fault::Refuse`]).
    Coded(i64),
    /// No answer in time ([`Fault::Stall`]).
    Stalled,
}

impl Refused {
    /// What the provider says.
    fn message(self) -> &'static str {
        match self {
            Refused::Internal => "Internal server error",
            Refused::Coded(_) => "Refused by the sandbox",
            Refused::Stalled => "Stalled by the sandbox",
        }
    }
}

/// The answer, made by `answer`, to a create request that meets `fault`, if
/// the fault refuses it (after stalling, for [`Fault::Stall`]); None: the
/// request is taken.
async fn refusal(
    fault: Option<&Fault>,
    answer: impl FnOnce(StatusCode, Refused) -> Response,
) -> Option<Response> {
    let (status, why) = match fault? {
        Fault::Status(status) => (
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            Refused::Internal,
        ),
        Fault::Refuse { status, code } => (
            StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST),
            Refused::Coded(*code),
        ),
        Fault::Stall(stall) => {
            // Nothing taken, and no answer in time.
            tokio::time::sleep(*stall).await;
            (StatusCode::SERVICE_UNAVAILABLE, Refused::Stalled)
        }
        Fault::AcceptThenStall(_) => return None,
    };
    Some(answer(status, why))
}

/// Serves `app` on `addr`, over TLS with `tls` when given, until the returned
/// token is cancelled; returns its base URL.
async fn serve(
    addr: SocketAddr,
    tls: Option<&Identity>,
    app: Router,
) -> std::io::Result<(String, CancellationToken)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let url = match tls {
        None => {
            tokio::spawn(run(listener, app, stopped));
            format!("http://{addr}")
        }
        Some(identity) => {
            let config = identity.server_config().map_err(std::io::Error::other)?;
            tokio::spawn(run(https::TlsListener::new(listener, config), app, stopped));
            format!("https://{addr}")
        }
    };
    Ok((url, stop))
}

async fn run<L>(listener: L, app: Router, stopped: CancellationToken)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stopped.cancelled().await })
        .await;
    if let Err(error) = served {
        tracing::warn!(%error, "sandbox stopped");
    }
}

/// Whether `headers` carry HTTP basic auth for `user` and `password`.
fn basic_auth(headers: &HeaderMap, user: &str, password: &str) -> bool {
    let expected = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected)
}

/// Whether `number` is in E.164 form.
fn is_e164(number: &str) -> bool {
    number.len() > 2
        && number.len() <= 16
        && number.starts_with('+')
        && number[1..].chars().all(|c| c.is_ascii_digit())
}

/// POSTs `params` form-encoded to `url` with the signature header `signed`;
/// returns the status the callback answered.
async fn post_callback(
    url: &str,
    params: &[(String, String)],
    header: &str,
    signed: &str,
) -> Option<u16> {
    post_form(url, params, header, signed)
        .await
        .map(|(status, _)| status)
}

/// POSTs `params` form-encoded to `url` with the signature header `signed`;
/// returns the status and body the callback answered with.
async fn post_form(
    url: &str,
    params: &[(String, String)],
    header: &str,
    signed: &str,
) -> Option<(u16, String)> {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    let Ok(client) = HttpClient::new(Duration::from_secs(10)) else {
        return None;
    };
    match client
        .send(
            Method::POST,
            url,
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                (header, signed),
            ],
            body.into_bytes(),
        )
        .await
    {
        Exchange::Answered { status, body } => {
            Some((status.as_u16(), String::from_utf8_lossy(&body).into_owned()))
        }
        _ => None,
    }
}

fn error(status: StatusCode, code: i64, message: &str) -> Response {
    let body = json!({ "code": code, "message": message, "status": status.as_u16() });
    (status, Json(body)).into_response()
}

fn authorized(shared: &Shared, account: &str, headers: &HeaderMap) -> bool {
    account == shared.account_sid && basic_auth(headers, &shared.account_sid, &shared.auth_token)
}

async fn create(
    State(shared): State<Shared>,
    Path(account): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let fault = match admit(&shared, &account, &headers).await {
        Ok(fault) => fault,
        Err(refused) => return refused,
    };
    let to = form.get("To").cloned().unwrap_or_default();
    if !is_e164(&to) {
        return error(
            StatusCode::BAD_REQUEST,
            21211,
            "The 'To' number is not a valid phone number.",
        );
    }
    let Some(body) = form.get("Body").filter(|b| !b.is_empty()).cloned() else {
        return error(StatusCode::BAD_REQUEST, 21602, "Message body is required.");
    };
    let from = form
        .get("From")
        .or_else(|| form.get("MessagingServiceSid"))
        .cloned()
        .unwrap_or_default();
    let message = {
        let mut recorded = shared.recorded();
        recorded.next_sid += 1;
        let message = Received {
            sid: format!("SM{:032x}", recorded.next_sid),
            to,
            from,
            body,
            status_callback: form.get("StatusCallback").cloned(),
            date_created: Utc::now(),
        };
        recorded.messages.push(message.clone());
        message
    };
    if let Some(Fault::AcceptThenStall(stall)) = fault {
        tokio::time::sleep(stall).await;
    }
    (StatusCode::CREATED, Json(resource(&message))).into_response()
}

async fn list(
    State(shared): State<Shared>,
    Path(account): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&shared, &account, &headers) {
        return error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let since = query
        .get("DateSent>")
        .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
    let messages: Vec<serde_json::Value> = shared
        .recorded()
        .messages
        .iter()
        .filter(|m| query.get("To").is_none_or(|to| *to == m.to))
        .filter(|m| since.is_none_or(|d| m.date_created.date_naive() >= d))
        .map(resource)
        .collect();
    Json(json!({ "messages": messages })).into_response()
}

fn resource(m: &Received) -> serde_json::Value {
    json!({
        "sid": m.sid,
        "status": "queued",
        "to": m.to,
        "from": m.from,
        "body": m.body,
        "date_created": m.date_created.to_rfc2822(),
    })
}
