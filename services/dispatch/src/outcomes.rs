//! The events dispatch publishes about an attempt, to `touchpoint.attempt.v1`.
//! Each is caused by the attempt's request, shares its story (correlation id) and
//! continues its trace, so one outreach attempt reads as one story from cadence
//! to the case timeline.

use chrono::{DateTime, Utc};
use touchpoint_platform::envelope::{new_envelope, timestamp};
use touchpoint_platform::outbox::OutgoingEvent;
use touchpoint_proto::v1::contact_point::Value;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    AttemptDelivered, AttemptFailed, AttemptInTransit, AttemptSent, AttemptSuppressed,
    CallTaskRequested, ContactPoint, Language, SuppressionReason,
};

use crate::attempts::Attempt;
use crate::domain::guard::CallWindow;

/// The `source` of every event this service emits.
pub const SOURCE: &str = "dispatch";

/// What a sent message was written in, for [`sent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The language.
    pub language: Language,
    /// The language asked for had no translation.
    pub fell_back: bool,
    /// SMS segments (0 for other channels).
    pub segments: u32,
    /// Fax pages, the cover included (0 for other channels).
    pub pages: u32,
}

fn event(topic: &str, a: &Attempt, payload: Payload, now: DateTime<Utc>) -> OutgoingEvent {
    let mut envelope = new_envelope(&a.case_id, SOURCE, now, payload, None);
    envelope.causation_id = a.request_event_id.to_string();
    envelope.correlation_id = a.correlation_id.clone();
    OutgoingEvent::new(topic, envelope).with_traceparent(a.traceparent.clone())
}

/// `AttemptSent`.
pub fn sent(
    topic: &str,
    a: &Attempt,
    written: Written,
    provider: &str,
    message_id: &str,
    now: DateTime<Utc>,
) -> OutgoingEvent {
    let payload = Payload::AttemptSent(AttemptSent {
        attempt_id: a.attempt_id.to_string(),
        channel: a.channel as i32,
        provider: provider.to_owned(),
        provider_message_id: message_id.to_owned(),
        sent_at: Some(timestamp(now)),
        language: written.language as i32,
        language_fell_back: written.fell_back,
        segments: written.segments,
        pages: written.pages,
        from_person: a.sent_by.is_some(),
    });
    event(topic, a, payload, now)
}

/// `AttemptDelivered`.
/// `pages`: for a fax, the pages the provider transmitted (else 0).
pub fn delivered(
    topic: &str,
    a: &Attempt,
    (pages, call_seconds): (u32, u32),
    now: DateTime<Utc>,
) -> OutgoingEvent {
    let payload = Payload::AttemptDelivered(AttemptDelivered {
        attempt_id: a.attempt_id.to_string(),
        channel: a.channel as i32,
        delivered_at: Some(timestamp(now)),
        pages,
        call_seconds,
    });
    event(topic, a, payload, now)
}

/// `AttemptInTransit`: a letter reached `stage` of its journey.
pub fn in_transit(
    topic: &str,
    a: &Attempt,
    stage: &str,
    provider: &str,
    now: DateTime<Utc>,
) -> OutgoingEvent {
    let payload = Payload::AttemptInTransit(AttemptInTransit {
        attempt_id: a.attempt_id.to_string(),
        channel: a.channel as i32,
        stage: stage.to_owned(),
        at: Some(timestamp(now)),
        provider: provider.to_owned(),
    });
    event(topic, a, payload, now)
}

/// `AttemptFailed`.
pub fn failed(
    topic: &str,
    a: &Attempt,
    provider: &str,
    code: &str,
    permanent: bool,
    now: DateTime<Utc>,
) -> OutgoingEvent {
    let payload = Payload::AttemptFailed(AttemptFailed {
        attempt_id: a.attempt_id.to_string(),
        channel: a.channel as i32,
        permanent,
        provider: provider.to_owned(),
        provider_code: code.to_owned(),
    });
    event(topic, a, payload, now)
}

/// `AttemptSuppressed`.
pub fn suppressed(
    topic: &str,
    a: &Attempt,
    reason: SuppressionReason,
    now: DateTime<Utc>,
) -> OutgoingEvent {
    let payload = Payload::AttemptSuppressed(AttemptSuppressed {
        attempt_id: a.attempt_id.to_string(),
        channel: a.channel as i32,
        reason: reason as i32,
    });
    event(topic, a, payload, now)
}

/// `CallTaskRequested`, for the case's coordinator, callable in `window`.
pub fn call_task(
    topic: &str,
    a: &Attempt,
    window: CallWindow,
    now: DateTime<Utc>,
) -> OutgoingEvent {
    let payload = Payload::CallTaskRequested(CallTaskRequested {
        attempt_id: a.attempt_id.to_string(),
        coordinator_id: a.coordinator_id.clone(),
        due_at: Some(timestamp(a.due_at)),
        program_id: a.program_id.clone(),
        step_id: a.step_id.clone(),
        template_id: a.template_id.clone(),
        language: a.language as i32,
        destination: Some(ContactPoint {
            value: Some(Value::PhoneE164(a.destination.clone())),
        }),
        not_after: Some(timestamp(window.until)),
        callable_from: Some(timestamp(window.from)),
        time_zone: a
            .view
            .as_ref()
            .map(|v| v.time_zone.name().to_owned())
            .unwrap_or_default(),
    });
    event(topic, a, payload, now)
}
