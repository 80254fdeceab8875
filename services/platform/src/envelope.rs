//! Building and reading event envelopes.

use chrono::{DateTime, Utc};
use prost::Message as _;
use touchpoint_proto::v1::Envelope;
use touchpoint_proto::v1::envelope::Payload;
use uuid::Uuid;

/// A record's bytes are not a usable envelope.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    /// The record has no value.
    #[error("record has no value")]
    Empty,
    /// The bytes are not a protobuf `Envelope`.
    #[error("not a touchpoint.v1.Envelope: {0}")]
    Decode(String),
    /// `event_id` is not a UUID.
    #[error("envelope event_id is not a UUID")]
    EventId,
    /// `case_id` is empty.
    #[error("envelope has no case_id")]
    CaseId,
}

/// A new envelope with a fresh UUIDv7 event id.
///
/// `causation` is the event that led to this one, if any; the correlation id is
/// inherited from it, else it starts a new story with this event's id.
pub fn new_envelope(
    case_id: &str,
    source: &str,
    occurred_at: DateTime<Utc>,
    payload: Payload,
    causation: Option<&Envelope>,
) -> Envelope {
    let event_id = Uuid::now_v7().to_string();
    let (causation_id, correlation_id) = match causation {
        Some(cause) => (cause.event_id.clone(), cause.correlation_id.clone()),
        None => (String::new(), event_id.clone()),
    };
    Envelope {
        event_id,
        case_id: case_id.to_owned(),
        occurred_at: Some(timestamp(occurred_at)),
        source: source.to_owned(),
        causation_id,
        correlation_id,
        payload: Some(payload),
    }
}

/// A protobuf timestamp for `at`.
pub fn timestamp(at: DateTime<Utc>) -> touchpoint_proto::Timestamp {
    touchpoint_proto::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

/// The case id of an event about no case: an opt-out or opt-in from a number
/// or address no case holds yet. Such an event is keyed by this id (so it keeps
/// its order with the others like it) and kept by contact point, so the word
/// is honoured when the number is later put on a case. Case ids are UUIDs, so
/// none is ever this.
pub const NO_CASE: &str = "no-case";

/// The instant a protobuf timestamp names, or None if it names none (nanos out of
/// range, or a year chrono cannot hold). The inverse of [`timestamp`].
pub fn instant(at: &touchpoint_proto::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(at.seconds, u32::try_from(at.nanos).ok()?)
}

/// Decodes a record value into an envelope with a usable event id and case id.
///
/// An unknown payload case (from a newer producer) decodes with `payload: None`;
/// the consumer decides what that means for it.
pub fn decode(bytes: Option<&[u8]>) -> Result<(Envelope, Uuid), EnvelopeError> {
    let bytes = bytes.ok_or(EnvelopeError::Empty)?;
    let envelope = Envelope::decode(bytes).map_err(|e| EnvelopeError::Decode(e.to_string()))?;
    let event_id = Uuid::parse_str(&envelope.event_id).map_err(|_| EnvelopeError::EventId)?;
    if envelope.case_id.is_empty() {
        return Err(EnvelopeError::CaseId);
    }
    Ok((envelope, event_id))
}

/// The `event-type` header value of an envelope.
pub fn event_type(envelope: &Envelope) -> &'static str {
    envelope
        .payload
        .as_ref()
        .map_or("touchpoint.v1.Unknown", Payload::type_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use touchpoint_proto::v1::Probe;

    fn probe(sequence: u64) -> Payload {
        Payload::Probe(Probe {
            sequence,
            note: String::new(),
        })
    }

    #[test]
    fn an_envelope_round_trips() -> Result<(), EnvelopeError> {
        let envelope = new_envelope("case-1", "cases", Utc::now(), probe(7), None);
        let (decoded, event_id) = decode(Some(&envelope.encode_to_vec()))?;
        assert_eq!(decoded, envelope);
        assert_eq!(event_id.get_version_num(), 7);
        assert_eq!(decoded.correlation_id, decoded.event_id);
        Ok(())
    }

    #[test]
    fn a_caused_event_keeps_the_story_together() {
        let first = new_envelope("case-1", "cadence", Utc::now(), probe(1), None);
        let second = new_envelope("case-1", "dispatch", Utc::now(), probe(2), Some(&first));
        assert_eq!(second.causation_id, first.event_id);
        assert_eq!(second.correlation_id, first.correlation_id);
        assert_ne!(second.event_id, first.event_id);
    }

    #[test]
    fn timestamps_convert_both_ways_and_nonsense_is_none() {
        let at = DateTime::from_timestamp(1_767_225_600, 123_456_789).unwrap_or_default();
        assert_eq!(instant(&timestamp(at)), Some(at));
        let negative_nanos = touchpoint_proto::Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert_eq!(instant(&negative_nanos), None);
        let beyond = touchpoint_proto::Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        };
        assert_eq!(instant(&beyond), None);
    }

    #[test]
    fn garbage_is_a_clear_error_not_a_panic() {
        assert_eq!(decode(None), Err(EnvelopeError::Empty));
        assert!(matches!(
            decode(Some(&[0xff, 0xff, 0xff])),
            Err(EnvelopeError::Decode(_))
        ));
        let no_id = Envelope {
            case_id: "c".into(),
            ..Envelope::default()
        };
        assert_eq!(
            decode(Some(&no_id.encode_to_vec())),
            Err(EnvelopeError::EventId)
        );
    }

    #[test]
    fn an_unknown_payload_from_a_newer_producer_still_decodes() -> Result<(), EnvelopeError> {
        let mut bytes = new_envelope("case-1", "cases", Utc::now(), probe(1), None).encode_to_vec();
        // Field 4000, length-delimited, 2 bytes: a payload case this build does not know.
        bytes.extend_from_slice(&[0x82, 0xfa, 0x01, 0x02, b'h', b'i']);
        let (decoded, _) = decode(Some(&bytes))?;
        assert_eq!(decoded.case_id, "case-1");
        Ok(())
    }
}
