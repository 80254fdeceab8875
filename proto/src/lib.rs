//! Touchpoint's event contract and gRPC APIs, generated from `touchpoint/v1/*.proto`.
//!
//! The package is versioned (`touchpoint.v1`) and only ever grows: fields are added,
//! never renumbered or removed.

/// Generated code of the `touchpoint.v1` package.
#[allow(clippy::all, missing_debug_implementations)]
pub mod v1 {
    tonic::include_proto!("touchpoint.v1");
}

/// The encoded `FileDescriptorSet` of every Touchpoint proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("touchpoint_descriptor");

pub use prost::Message;
pub use prost_types::Timestamp;

use v1::envelope::Payload;

impl Payload {
    /// The fully qualified protobuf name of the payload, used as the Kafka
    /// `event-type` header so a subscriber can filter without decoding.
    pub fn type_name(&self) -> &'static str {
        match self {
            Payload::CaseOpened(_) => "touchpoint.v1.CaseOpened",
            Payload::ContactPointsUpdated(_) => "touchpoint.v1.ContactPointsUpdated",
            Payload::ConsentRecorded(_) => "touchpoint.v1.ConsentRecorded",
            Payload::ConsentRevoked(_) => "touchpoint.v1.ConsentRevoked",
            Payload::CoordinatorAssigned(_) => "touchpoint.v1.CoordinatorAssigned",
            Payload::TherapyEventRecorded(_) => "touchpoint.v1.TherapyEventRecorded",
            Payload::CaseStatusChanged(_) => "touchpoint.v1.CaseStatusChanged",
            Payload::NoteAdded(_) => "touchpoint.v1.NoteAdded",
            Payload::AdverseEventReported(_) => "touchpoint.v1.AdverseEventReported",
            Payload::OutreachRequested(_) => "touchpoint.v1.OutreachRequested",
            Payload::OutreachHeld(_) => "touchpoint.v1.OutreachHeld",
            Payload::OutreachResumed(_) => "touchpoint.v1.OutreachResumed",
            Payload::OutreachExpired(_) => "touchpoint.v1.OutreachExpired",
            Payload::AttemptSent(_) => "touchpoint.v1.AttemptSent",
            Payload::AttemptDelivered(_) => "touchpoint.v1.AttemptDelivered",
            Payload::AttemptFailed(_) => "touchpoint.v1.AttemptFailed",
            Payload::AttemptSuppressed(_) => "touchpoint.v1.AttemptSuppressed",
            Payload::CallTaskRequested(_) => "touchpoint.v1.CallTaskRequested",
            Payload::AttemptInTransit(_) => "touchpoint.v1.AttemptInTransit",
            Payload::InboundReceived(_) => "touchpoint.v1.InboundReceived",
            Payload::ContactRouted(_) => "touchpoint.v1.ContactRouted",
            Payload::OptOutReceived(_) => "touchpoint.v1.OptOutReceived",
            Payload::AdverseEventSuspected(_) => "touchpoint.v1.AdverseEventSuspected",
            Payload::OptInReceived(_) => "touchpoint.v1.OptInReceived",
            Payload::CallbackRequested(_) => "touchpoint.v1.CallbackRequested",
            Payload::TaskCompleted(_) => "touchpoint.v1.TaskCompleted",
            Payload::TaskWithdrawn(_) => "touchpoint.v1.TaskWithdrawn",
            Payload::CallAnswered(_) => "touchpoint.v1.CallAnswered",
            Payload::VoicemailLeft(_) => "touchpoint.v1.VoicemailLeft",
            Payload::Probe(_) => "touchpoint.v1.Probe",
        }
    }
}

impl v1::ContactPoint {
    /// The number or address it holds; None when it holds none, an empty one,
    /// or a postal address (which is not one string: see [`Self::postal`]).
    pub fn text(&self) -> Option<&str> {
        match self.value.as_ref()? {
            v1::contact_point::Value::PhoneE164(v)
            | v1::contact_point::Value::Email(v)
            | v1::contact_point::Value::FaxE164(v) => (!v.trim().is_empty()).then_some(v.as_str()),
            v1::contact_point::Value::PostalAddress(_) => None,
        }
    }

    /// The postal address it holds, if it holds one a letter can be sent to.
    pub fn postal(&self) -> Option<&v1::PostalAddress> {
        match self.value.as_ref()? {
            v1::contact_point::Value::PostalAddress(a) if a.is_mailable() => Some(a),
            _ => None,
        }
    }
}

impl v1::PostalAddress {
    /// Whether a letter can be addressed with it: a first line, a city or a
    /// postal code, and a country.
    pub fn is_mailable(&self) -> bool {
        let known = |s: &str| !s.trim().is_empty();
        known(&self.line1)
            && (known(&self.city) || known(&self.postal_code))
            && known(&self.country)
    }
}

impl v1::AdverseEventSuspected {
    /// The flag's key: its review task, or its message when it has none.
    pub fn flag_key(&self) -> &str {
        if self.review_task_id.is_empty() {
            &self.inbound_id
        } else {
            &self.review_task_id
        }
    }
}

impl v1::AdverseEventReported {
    /// The key of the flag it decides ([`v1::AdverseEventSuspected::flag_key`]).
    pub fn flag_key(&self) -> &str {
        if self.review_task_id.is_empty() {
            &self.inbound_id
        } else {
            &self.review_task_id
        }
    }
}

impl v1::Channel {
    /// Every channel outreach uses: what an opt-out that names none covers.
    pub const ALL: [v1::Channel; 5] = [
        v1::Channel::Sms,
        v1::Channel::Voice,
        v1::Channel::Email,
        v1::Channel::Fax,
        v1::Channel::Mail,
    ];

    /// The channel in lower case: `sms`, `voice`, `email`, `fax`, `mail`,
    /// `unspecified` (template file names, metric labels, KPI figures).
    pub fn short_name(self) -> &'static str {
        match self {
            v1::Channel::Sms => "sms",
            v1::Channel::Voice => "voice",
            v1::Channel::Email => "email",
            v1::Channel::Fax => "fax",
            v1::Channel::Mail => "mail",
            v1::Channel::Unspecified => "unspecified",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::v1::{ContactPoint, contact_point::Value};

    #[test]
    fn a_contact_point_gives_its_number_or_address_and_nothing_for_an_empty_one() {
        let point = |value| ContactPoint { value };
        assert_eq!(
            point(Some(Value::FaxE164("+13125550111".into()))).text(),
            Some("+13125550111")
        );
        assert_eq!(point(Some(Value::Email(" ".into()))).text(), None);
        assert_eq!(point(None).text(), None);
    }
}
