//! Provider status callbacks over HTTP:
//! - `POST /callbacks/sms/{provider}/{attempt}` in Twilio's format (`MessageSid`,
//!   `MessageStatus`, `ErrorCode`), signed with `X-Twilio-Signature`;
//! - `POST /callbacks/fax/{attempt}` in Phaxio's format (a `fax` field holding
//!   the fax as JSON: id, status, pages, recipients with their error), signed
//!   with `X-Phaxio-Signature`;
//! - `POST /callbacks/email/mailgun`: Mailgun's event webhooks (`delivered`,
//!   `permanent_fail`, `temporary_fail`), JSON signed in its `signature`
//!   object with the webhook signing key and refused outside a five-minute
//!   window; the attempt is the `attempt_id` custom variable. A temporary
//!   failure changes nothing: Mailgun retries, and reports a permanent failure
//!   when it gives up. Complaints and unsubscribes are routing's
//!   (`/inbound/email/events`) and are only acknowledged here.
//!
//! - `POST /callbacks/voice/{attempt}/{hook}`: a person's call (click to
//!   call), in Twilio's voice format, signed with `X-Twilio-Signature`
//!   ([`crate::calls`]);
//! - `POST /callbacks/mail/lob`: Lob's letter webhooks (JSON: `event_type.id`,
//!   the letter as `body` with the attempt in `metadata.attempt`), signed with
//!   `Lob-Signature` over `Lob-Signature-Timestamp` and the body and refused
//!   outside a five-minute window. `letter.mailed`, `.in_transit`,
//!   `.in_local_area`, `.processed_for_delivery` and `.re-routed` become
//!   `AttemptInTransit` once each; `letter.delivered` `AttemptDelivered`;
//!   `letter.returned_to_sender` a permanent `AttemptFailed`
//!   (`returned_to_sender`), so the step falls back to its next channel.
//!
//! An unsigned or wrongly signed callback is refused (403) and changes nothing. A
//! body over the size limit is refused (413). A signed callback for an attempt
//! dispatch does not know is logged (ids only) and acknowledged, so the provider
//! stops retrying it. A delivery (`delivered`; a fax's `success`) becomes
//! `AttemptDelivered`, with a fax's pages; a failure (`failed`, `undelivered`; a
//! fax's `failure` or `partialsuccess`) becomes `AttemptFailed` with the
//! provider's code; any news for an attempt still `sending` (its sender died
//! before recording the hand-off) first records it as sent. Repeats change
//! nothing. A signed fax callback whose `fax` field cannot be read is 400.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use sqlx::PgPool;
use touchpoint_platform::clock::SharedClock;
use touchpoint_platform::outbox;
use touchpoint_platform::secret::ExposeSecret as _;
use uuid::Uuid;

use crate::attempts::{self, Settled, State as AttemptState};
use crate::metrics;
use crate::outcomes::{self, Written};
use crate::providers::{Providers, lob, mailgun, phaxio, signature};

/// The largest callback body taken.
pub const MAX_BODY: usize = 64 * 1024;

/// Error codes after which sending to the number again cannot help: not a
/// mobile, not a valid number, unreachable for good, the recipient opted out.
const PERMANENT_CODES: [&str; 5] = ["21211", "21610", "30003", "30005", "30006"];

/// Fax error types after which sending again cannot help: the document was
/// refused, or the number can never take a fax.
const PERMANENT_FAX_ERRORS: [&str; 2] = ["documentConversionError", "fatalError"];

#[derive(Debug, Clone)]
pub(crate) struct Callbacks {
    pub(crate) pool: PgPool,
    pub(crate) providers: Arc<Providers>,
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
        .route("/callbacks/fax/{attempt}", post(fax_status))
        .route("/callbacks/email/mailgun", post(email_event))
        .route("/callbacks/mail/lob", post(letter_event))
        .route(
            "/callbacks/voice/{attempt}/{hook}",
            post(crate::calls::webhook),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Callbacks {
            pool,
            providers,
            clock,
            topic,
        })
}

/// What a provider reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Report {
    /// Taken or on its way; nothing settled yet.
    Underway,
    /// A letter reached a stage of its journey.
    InTransit {
        /// `mailed`, `in_transit`, `in_local_area`, `processed_for_delivery`
        /// or `re_routed`.
        stage: &'static str,
    },
    /// It arrived (a fax: with so many pages; a call: answered, and spoken
    /// for so many seconds).
    Delivered {
        /// Pages transmitted (0 for SMS).
        pages: u32,
        /// A call's length.
        call_seconds: u32,
    },
    /// It did not arrive.
    Failed {
        /// The provider's code.
        code: String,
        /// Sending again cannot help.
        permanent: bool,
    },
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
    let Some((attempt_id, url)) = Uuid::parse_str(&attempt)
        .ok()
        .and_then(|id| Some((id, twilio.callback_url(id)?)))
    else {
        return StatusCode::FORBIDDEN;
    };
    if !signature::verify(twilio.auth_token.expose_secret(), &url, &params, signed) {
        tracing::warn!(provider, "status callback with a bad signature refused");
        return StatusCode::FORBIDDEN;
    }
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let message_id = param("MessageSid").unwrap_or_default();
    let report = match param("MessageStatus").unwrap_or_default() {
        "delivered" => Report::Delivered {
            pages: 0,
            call_seconds: 0,
        },
        status @ ("failed" | "undelivered") => {
            let code = param("ErrorCode")
                .filter(|c| !c.is_empty())
                .unwrap_or(status);
            Report::Failed {
                code: code.to_owned(),
                permanent: PERMANENT_CODES.contains(&code),
            }
        }
        _ => Report::Underway,
    };
    answer(&callbacks, &provider, attempt_id, message_id, report).await
}

/// The `fax` field of a Phaxio callback: the parts dispatch reads.
#[derive(Debug, serde::Deserialize)]
struct FaxReport {
    id: u64,
    status: String,
    #[serde(default)]
    num_pages: u32,
    #[serde(default)]
    recipients: Vec<FaxRecipient>,
}

#[derive(Debug, serde::Deserialize)]
struct FaxRecipient {
    #[serde(default)]
    error_type: Option<String>,
}

async fn fax_status(
    State(callbacks): State<Callbacks>,
    Path(attempt): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let Some(fax) = callbacks.providers.fax.as_ref() else {
        return StatusCode::FORBIDDEN; // no fax provider: nobody signs these
    };
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let signed = headers
        .get(signature::fax::HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some((attempt_id, url)) = Uuid::parse_str(&attempt)
        .ok()
        .and_then(|id| Some((id, fax.callback_url(id)?)))
    else {
        return StatusCode::FORBIDDEN;
    };
    if !signature::fax::verify(fax.callback_token.expose_secret(), &url, &params, signed) {
        tracing::warn!("fax callback with a bad signature refused");
        return StatusCode::FORBIDDEN;
    }
    let Some(report) = params
        .iter()
        .find(|(k, _)| k == "fax")
        .and_then(|(_, v)| serde_json::from_str::<FaxReport>(v).ok())
    else {
        tracing::warn!(%attempt_id, "signed fax callback without a readable fax field");
        return StatusCode::BAD_REQUEST;
    };
    let error_type = report
        .recipients
        .iter()
        .find_map(|r| r.error_type.clone())
        .filter(|e| !e.is_empty());
    let outcome = match report.status.as_str() {
        "success" => Report::Delivered {
            pages: report.num_pages,
            call_seconds: 0,
        },
        "failure" | "partialsuccess" => {
            let code = error_type.unwrap_or_else(|| report.status.clone());
            Report::Failed {
                permanent: PERMANENT_FAX_ERRORS.contains(&code.as_str()),
                code,
            }
        }
        _ => Report::Underway,
    };
    answer(
        &callbacks,
        phaxio::NAME,
        attempt_id,
        &report.id.to_string(),
        outcome,
    )
    .await
}

async fn email_event(State(callbacks): State<Callbacks>, body: Bytes) -> StatusCode {
    let Some(mailgun) = callbacks.providers.mailgun.as_ref() else {
        return StatusCode::FORBIDDEN; // no Mailgun: nobody signs these
    };
    // Mailgun's timestamp is real time, whatever clock the service runs on.
    let event = match signature::email::verified_event(
        mailgun.signing_key.expose_secret(),
        &body,
        chrono::Utc::now(),
    ) {
        Ok(event) => event,
        Err(refused) => {
            tracing::warn!(%refused, "email event webhook refused");
            return StatusCode::FORBIDDEN;
        }
    };
    let Some((attempt_id, message_id, report)) = email_report(&event) else {
        // Not about an attempt of ours, or news that settles nothing: taken, so
        // Mailgun stops sending it.
        let kind = event
            .get("event")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        tracing::info!(event = kind, "email event acknowledged without effect");
        return StatusCode::OK;
    };
    answer(&callbacks, mailgun::NAME, attempt_id, &message_id, report).await
}

/// The attempt, Mailgun's message id and the report a verified email event
/// carries; None for an event that settles nothing (accepted, a temporary
/// failure, opens and clicks, complaints and unsubscribes) or names no
/// attempt.
fn email_report(event: &serde_json::Value) -> Option<(Uuid, String, Report)> {
    fn text<'a>(event: &'a serde_json::Value, pointer: &str) -> Option<&'a str> {
        event.pointer(pointer).and_then(serde_json::Value::as_str)
    }
    let variable = format!("/user-variables/{}", mailgun::ATTEMPT_VARIABLE);
    let attempt_id = text(event, &variable).and_then(|id| Uuid::parse_str(id).ok())?;
    let message_id = text(event, "/message/headers/message-id")
        .unwrap_or_default()
        .to_owned();
    let report = match (text(event, "/event")?, text(event, "/severity")) {
        ("delivered", _) => Report::Delivered {
            pages: 0,
            call_seconds: 0,
        },
        ("failed", Some("permanent")) => {
            let code = event
                .pointer("/delivery-status/code")
                .and_then(serde_json::Value::as_u64)
                .map(|c| format!("smtp_{c}"))
                .or_else(|| text(event, "/reason").map(|r| format!("mailgun_{r}")))
                .unwrap_or_else(|| "failed".into());
            Report::Failed {
                code,
                permanent: true,
            }
        }
        _ => return None,
    };
    Some((attempt_id, message_id, report))
}

async fn letter_event(
    State(callbacks): State<Callbacks>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let Some(mail) = callbacks.providers.mail.as_ref() else {
        return StatusCode::FORBIDDEN; // no print-and-mail provider: nobody signs these
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let signed = (
        header(signature::mail::TIMESTAMP_HEADER),
        header(signature::mail::HEADER),
    );
    // Lob's timestamp is real time, whatever clock the service runs on.
    let checked = signature::mail::check(
        mail.webhook_secret.expose_secret(),
        signed,
        &body,
        chrono::Utc::now(),
    );
    if let Err(refused) = checked {
        tracing::warn!(%refused, "letter webhook refused");
        return StatusCode::FORBIDDEN;
    }
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(&body) else {
        tracing::warn!("signed letter webhook that is not JSON");
        return StatusCode::BAD_REQUEST;
    };
    let Some((attempt_id, letter_id, report)) = letter_report(&event) else {
        let kind = event
            .pointer("/event_type/id")
            .and_then(|v| v.as_str())
            .filter(|k| k.len() <= 64)
            .unwrap_or_default();
        tracing::info!(event = kind, "letter webhook acknowledged without effect");
        return StatusCode::OK;
    };
    answer(&callbacks, lob::NAME, attempt_id, &letter_id, report).await
}

/// The attempt, the letter's id and the report a verified letter webhook
/// carries; None for news that changes nothing (created, rendered) or names no
/// attempt.
fn letter_report(event: &serde_json::Value) -> Option<(Uuid, String, Report)> {
    let text = |pointer: &str| event.pointer(pointer).and_then(serde_json::Value::as_str);
    let attempt_id = text(&format!("/body/metadata/{}", lob::ATTEMPT_METADATA))
        .and_then(|id| Uuid::parse_str(id).ok())?;
    let letter_id = text("/body/id").unwrap_or_default().to_owned();
    let stage = |stage| Report::InTransit { stage };
    let report = match text("/event_type/id")? {
        "letter.mailed" => stage("mailed"),
        "letter.in_transit" => stage("in_transit"),
        "letter.in_local_area" => stage("in_local_area"),
        "letter.processed_for_delivery" => stage("processed_for_delivery"),
        "letter.re-routed" => stage("re_routed"),
        "letter.delivered" => Report::Delivered {
            pages: 0,
            call_seconds: 0,
        },
        "letter.returned_to_sender" => Report::Failed {
            code: "returned_to_sender".into(),
            permanent: true,
        },
        _ => return None,
    };
    Some((attempt_id, letter_id, report))
}

pub(crate) async fn answer(
    callbacks: &Callbacks,
    provider: &str,
    attempt_id: Uuid,
    message_id: &str,
    report: Report,
) -> StatusCode {
    match apply(callbacks, provider, attempt_id, message_id, report).await {
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
    message_id: &str,
    report: Report,
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
    if a.state == AttemptState::Sending && !matches!(report, Report::Failed { .. }) {
        let written = Written {
            language: a.language,
            fell_back: false,
            segments: 0,
            pages: 0,
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
    match report {
        Report::Delivered {
            pages,
            call_seconds,
        } if was_out => {
            events.push(outcomes::delivered(topic, &a, (pages, call_seconds), now));
            settled.state = AttemptState::Delivered;
        }
        Report::Failed { code, permanent } if was_out => {
            events.push(outcomes::failed(topic, &a, provider, &code, permanent, now));
            settled.state = AttemptState::Failed;
            settled.failure_code = Some(code);
        }
        // A stage already published (a repeated webhook) is not again.
        Report::InTransit { stage }
            if was_out && attempts::record_stage(&mut tx, attempt_id, stage).await? =>
        {
            events.push(outcomes::in_transit(topic, &a, stage, provider, now));
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
    metrics::committed(&events);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn letter_webhooks_track_the_journey_and_a_return_fails_the_attempt_for_good() {
        let attempt = Uuid::now_v7();
        let event = |kind: &str| {
            json!({
                "id": "evt_1",
                "event_type": { "id": kind, "resource": "letters" },
                "body": { "id": "ltr_1", "metadata": { "attempt": attempt.to_string() } },
            })
        };
        let report = |kind: &str| letter_report(&event(kind)).map(|(_, _, r)| r);
        assert_eq!(
            letter_report(&event("letter.mailed")),
            Some((
                attempt,
                "ltr_1".into(),
                Report::InTransit { stage: "mailed" }
            ))
        );
        assert_eq!(
            report("letter.re-routed"),
            Some(Report::InTransit { stage: "re_routed" })
        );
        assert_eq!(
            report("letter.delivered"),
            Some(Report::Delivered {
                pages: 0,
                call_seconds: 0
            })
        );
        assert_eq!(
            report("letter.returned_to_sender"),
            Some(Report::Failed {
                code: "returned_to_sender".into(),
                permanent: true
            })
        );
        assert_eq!(report("letter.rendered_pdf"), None);
        assert_eq!(
            letter_report(&json!({ "event_type": { "id": "letter.mailed" }, "body": {} })),
            None,
            "no attempt named"
        );
    }

    #[test]
    fn mailgun_events_settle_only_deliveries_and_permanent_failures_of_an_attempt() {
        let attempt = Uuid::now_v7();
        let event = |kind: &str, severity: Option<&str>| {
            json!({
                "event": kind,
                "severity": severity,
                "delivery-status": { "code": 550 },
                "user-variables": { "attempt_id": attempt.to_string() },
                "message": { "headers": { "message-id": "1.2@mg.example" } },
            })
        };
        assert_eq!(
            email_report(&event("delivered", None)),
            Some((
                attempt,
                "1.2@mg.example".into(),
                Report::Delivered {
                    pages: 0,
                    call_seconds: 0
                }
            ))
        );
        assert_eq!(
            email_report(&event("failed", Some("permanent"))).map(|(_, _, r)| r),
            Some(Report::Failed {
                code: "smtp_550".into(),
                permanent: true
            })
        );
        for settles_nothing in [
            event("failed", Some("temporary")),
            event("accepted", None),
            event("complained", None),
            event("opened", None),
            json!({ "event": "delivered", "user-variables": { "attempt_id": "not-a-uuid" } }),
            json!({ "event": "delivered" }),
        ] {
            assert_eq!(email_report(&settles_nothing), None, "{settles_nothing}");
        }
    }
}
