//! The webhooks of a person's call (click to call), in Twilio's voice format,
//! each signed with `X-Twilio-Signature` and the voice account's auth token,
//! under `POST /callbacks/voice/{attempt}/{hook}`:
//! - `connect`: the person answered their own phone; the answer is TwiML that
//!   dials the patient's number (read from the attempt, never from the
//!   request) with the program's caller id, so the call is recorded as placed
//!   if its sender died before recording it. A call dispatch does not know, or
//!   one already settled, is hung up;
//! - `answered-by`: the answering-machine verdict on the patient's leg;
//! - `dialled`: the dial to the patient ended. Answered by a person, the
//!   attempt is delivered with the minutes spoken; a machine is `voicemail`;
//!   `no-answer`, `busy`, `canceled` and `failed` fail it with that code. The
//!   answer hangs up;
//! - `status`: the person's own leg ended. If they never answered, the patient
//!   was never called: the attempt fails `caller_unreached`.
//!
//! Every outcome is settled once, as other callbacks are: repeats change
//! nothing.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use touchpoint_platform::secret::ExposeSecret as _;
use touchpoint_platform::xml;
use uuid::Uuid;

use crate::attempts::{self, State as AttemptState};
use crate::callbacks::{Callbacks, Report, answer};
use crate::domain::call::{self, Outcome};
use crate::providers::twilio_voice::{Hook, NAME};
use crate::providers::{TwilioVoice, signature};

/// One of a call's webhooks.
pub(crate) async fn webhook(
    State(callbacks): State<Callbacks>,
    Path((attempt, hook)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(voice) = callbacks.providers.voice.as_ref() else {
        return StatusCode::FORBIDDEN.into_response(); // no voice provider signs these
    };
    let hook = match hook.as_str() {
        "connect" => Hook::Connect,
        "dialled" => Hook::Dialled,
        "answered-by" => Hook::AnsweredBy,
        "status" => Hook::Status,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let Ok(attempt_id) = Uuid::parse_str(&attempt) else {
        return StatusCode::FORBIDDEN.into_response();
    };
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let signed = headers
        .get(signature::HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let url = voice.hook_url(attempt_id, hook);
    if !signature::verify(voice.auth_token.expose_secret(), &url, &params, signed) {
        tracing::warn!(
            hook = hook.segment(),
            "call webhook with a bad signature refused"
        );
        return StatusCode::FORBIDDEN.into_response();
    }
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let call_sid = param("CallSid").unwrap_or_default();
    match hook {
        Hook::Connect => connect(&callbacks, voice, attempt_id, call_sid).await,
        Hook::AnsweredBy => {
            let Some(answered_by) = param("AnsweredBy") else {
                return StatusCode::OK.into_response();
            };
            match attempts::record_answered_by(&callbacks.pool, attempt_id, answered_by).await {
                Ok(()) => StatusCode::OK.into_response(),
                Err(error) => {
                    tracing::error!(%attempt_id, %error, "answering-machine verdict not recorded");
                    StatusCode::SERVICE_UNAVAILABLE.into_response()
                }
            }
        }
        Hook::Dialled => {
            let seconds = param("DialCallDuration")
                .and_then(|d| d.parse().ok())
                .unwrap_or(0);
            let answered_by = match attempts::get_answered_by(&callbacks.pool, attempt_id).await {
                Ok(answered_by) => answered_by,
                Err(error) => {
                    tracing::error!(%attempt_id, %error, "dial outcome not recorded");
                    return StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
            };
            let status = param("DialCallStatus").unwrap_or_default();
            let report = match call::outcome(status, answered_by.as_deref(), seconds) {
                Some(Outcome::Answered { seconds }) => Report::Delivered {
                    pages: 0,
                    call_seconds: seconds,
                },
                Some(Outcome::NotReached { code, permanent }) => Report::Failed {
                    code: code.to_owned(),
                    permanent,
                },
                None => Report::Underway,
            };
            match answer(&callbacks, NAME, attempt_id, call_sid, report).await {
                StatusCode::OK => twiml(xml::twiml_hang_up()),
                refused => refused.into_response(),
            }
        }
        Hook::Status => {
            let report = match call::caller_unreached(param("CallStatus").unwrap_or_default()) {
                Some(code) => Report::Failed {
                    code: code.to_owned(),
                    permanent: false,
                },
                None => Report::Underway,
            };
            answer(&callbacks, NAME, attempt_id, call_sid, report)
                .await
                .into_response()
        }
    }
}

/// The person answered: the call is placed (recorded so if its sender died
/// first), and the patient is dialled, unless the attempt is unknown or over.
async fn connect(
    callbacks: &Callbacks,
    voice: &TwilioVoice,
    attempt_id: Uuid,
    call_sid: &str,
) -> Response {
    let recorded = answer(callbacks, NAME, attempt_id, call_sid, Report::Underway).await;
    if recorded != StatusCode::OK {
        return recorded.into_response();
    }
    match attempts::call_to_connect(&callbacks.pool, attempt_id).await {
        Ok(Some((number, state))) if state == AttemptState::Sent.as_str() => twiml(call::connect(
            &number,
            &voice.caller_id,
            (
                &voice.hook_url(attempt_id, Hook::Dialled),
                &voice.hook_url(attempt_id, Hook::AnsweredBy),
            ),
        )),
        Ok(_) => {
            tracing::info!(%attempt_id, "a call with nobody to connect was hung up");
            twiml(xml::twiml_hang_up())
        }
        Err(error) => {
            tracing::error!(%attempt_id, %error, "call not connected");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

fn twiml(document: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml")], document).into_response()
}
