//! Provider status callbacks over HTTP: `POST /callbacks/sms/{provider}/{attempt}`
//! in Twilio's format (`MessageSid`, `MessageStatus`, `ErrorCode`), signed with
//! `X-Twilio-Signature`.
//!
//! An unsigned or wrongly signed callback is refused (403) and changes nothing. A
//! body over the size limit is refused (413). A signed callback for an attempt
//! dispatch does not know is logged (ids only) and acknowledged, so the provider
//! stops retrying it. `delivered` becomes `AttemptDelivered`; `failed` and
//! `undelivered` become `AttemptFailed` with the provider's code; `queued` or
//! `sent` for an attempt still `sending` (its sender died before recording the
//! hand-off) record it as sent. Repeats change nothing.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use sqlx::PgPool;
use touchpoint_platform::clock::SharedClock;
use touchpoint_platform::outbox;
use uuid::Uuid;

use crate::attempts::{self, Settled, State as AttemptState};
use crate::outcomes::{self, Written};
use crate::providers::{Providers, signature};

/// The largest callback body taken.
pub const MAX_BODY: usize = 64 * 1024;

/// Error codes after which sending to the number again cannot help: not a
/// mobile, not a valid number, unreachable for good, the recipient opted out.
const PERMANENT_CODES: [&str; 5] = ["21211", "21610", "30003", "30005", "30006"];

#[derive(Debug, Clone)]
struct Callbacks {
    pool: PgPool,
    providers: Arc<Providers>,
    clock: SharedClock,
    topic: String,
}

/// The callback routes.
pub fn router(
    pool: PgPool,
    providers: Arc<Providers>,
    clock: SharedClock,
    topic: String,
) -> Router {
    Router::new()
        .route("/callbacks/sms/{provider}/{attempt}", post(sms_status))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Callbacks {
            pool,
            providers,
            clock,
            topic,
        })
}

async fn sms_status(
    State(callbacks): State<Callbacks>,
    Path((provider, attempt)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let Some(twilio) = callbacks.providers.sms.iter().find(|t| t.name == provider) else {
        return StatusCode::FORBIDDEN; // no provider of that name signs anything
    };
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let signed = headers
        .get(signature::HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(url) = Uuid::parse_str(&attempt)
        .ok()
        .and_then(|id| twilio.callback_url(id))
    else {
        return StatusCode::FORBIDDEN;
    };
    if !signature::verify(&twilio.auth_token, &url, &params, signed) {
        tracing::warn!(provider, "status callback with a bad signature refused");
        return StatusCode::FORBIDDEN;
    }
    let Ok(attempt_id) = Uuid::parse_str(&attempt) else {
        return StatusCode::FORBIDDEN;
    };
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let status = param("MessageStatus").unwrap_or_default().to_owned();
    let message_id = param("MessageSid").unwrap_or_default().to_owned();
    let code = param("ErrorCode").unwrap_or_default().to_owned();
    match apply(
        &callbacks,
        &provider,
        attempt_id,
        &status,
        &message_id,
        &code,
    )
    .await
    {
        Ok(()) => StatusCode::OK,
        Err(error) => {
            tracing::error!(%attempt_id, %error, "status callback not recorded; the provider will retry");
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

async fn apply(
    callbacks: &Callbacks,
    provider: &str,
    attempt_id: Uuid,
    status: &str,
    message_id: &str,
    code: &str,
) -> Result<(), crate::sender::SenderError> {
    let mut tx = callbacks.pool.begin().await?;
    let Some(a) = attempts::lock(&mut tx, attempt_id).await? else {
        tracing::info!(%attempt_id, "status callback for an attempt dispatch does not know; acknowledged");
        return Ok(());
    };
    let now = callbacks.clock.now();
    let topic = callbacks.topic.as_str();
    let mut events = Vec::new();
    // One settlement per attempt: an UPDATE from several rows for one attempt
    // would apply only one of them.
    let mut settled = Settled::to(attempt_id, a.state);
    // Its sender died between the hand-off and recording it: the provider's word
    // is the record.
    if a.state == AttemptState::Sending && !matches!(status, "failed" | "undelivered") {
        let written = Written {
            language: a.language,
            fell_back: false,
            segments: 0,
        };
        events.push(outcomes::sent(
            topic, &a, written, provider, message_id, now,
        ));
        settled = Settled {
            provider: Some(provider.to_owned()),
            provider_message_id: Some(message_id.to_owned()),
            sent_at: Some(now),
            ..Settled::to(attempt_id, AttemptState::Sent)
        };
    }
    let was_out = matches!(a.state, AttemptState::Sending | AttemptState::Sent);
    match status {
        "delivered" if was_out => {
            events.push(outcomes::delivered(topic, &a, now));
            settled.state = AttemptState::Delivered;
        }
        "failed" | "undelivered" if was_out => {
            let code = if code.is_empty() { status } else { code };
            let permanent = PERMANENT_CODES.contains(&code);
            events.push(outcomes::failed(topic, &a, provider, code, permanent, now));
            settled.state = AttemptState::Failed;
            settled.failure_code = Some(code.to_owned());
        }
        _ => {}
    }
    if events.is_empty() {
        return Ok(()); // a repeat, or news about an attempt already settled
    }
    let settled = [settled];
    attempts::settle(&mut tx, &settled).await?;
    outbox::append(&mut tx, &events).await?;
    tx.commit().await?;
    Ok(())
}
