//! Dispatch's own metrics (see `touchpoint_platform::metrics`): attempts by
//! channel and outcome, counted once the transaction that records them has
//! committed, and how long each provider takes to answer a hand-off.

use std::sync::LazyLock;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};
use touchpoint_platform::metrics::meter;
use touchpoint_platform::outbox::OutgoingEvent;
use touchpoint_proto::v1::Channel;
use touchpoint_proto::v1::envelope::Payload;

static ATTEMPTS: LazyLock<Counter<u64>> = LazyLock::new(|| {
    meter()
        .u64_counter("touchpoint.attempts")
        .with_description("Attempts sent, delivered, failed or suppressed")
        .with_unit("{attempt}")
        .build()
});

static PROVIDER_DURATION: LazyLock<Histogram<f64>> = LazyLock::new(|| {
    meter()
        .f64_histogram("touchpoint.provider.duration")
        .with_description("How long a provider took to answer a hand-off")
        .with_unit("s")
        .build()
});

/// An attempt's outcome as an event says it: its channel and `sent`,
/// `delivered`, `failed`, `failed_permanently` or `suppressed`.
pub fn outcome(payload: &Payload) -> Option<(Channel, &'static str)> {
    let (channel, outcome) = match payload {
        Payload::AttemptSent(e) => (e.channel, "sent"),
        Payload::AttemptDelivered(e) => (e.channel, "delivered"),
        Payload::AttemptFailed(e) if e.permanent => (e.channel, "failed_permanently"),
        Payload::AttemptFailed(e) => (e.channel, "failed"),
        Payload::AttemptSuppressed(e) => (e.channel, "suppressed"),
        _ => return None,
    };
    Some((
        Channel::try_from(channel).unwrap_or(Channel::Unspecified),
        outcome,
    ))
}

/// Counts the outcomes among `events`, whose transaction has committed.
pub fn committed(events: &[OutgoingEvent]) {
    for (channel, outcome) in events
        .iter()
        .filter_map(|e| e.envelope.payload.as_ref().and_then(outcome))
    {
        ATTEMPTS.add(
            1,
            &[
                KeyValue::new("channel", channel.short_name()),
                KeyValue::new("outcome", outcome),
            ],
        );
    }
}

/// Records that `provider` answered a hand-off on `channel` with `result`
/// (`accepted`, `refused` or `no_answer`) after `took`.
pub fn provider_answered(provider: &str, channel: Channel, result: &'static str, took: Duration) {
    PROVIDER_DURATION.record(
        took.as_secs_f64(),
        &[
            KeyValue::new("provider", provider.to_owned()),
            KeyValue::new("channel", channel.short_name()),
            KeyValue::new("result", result),
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use touchpoint_proto::v1::{AttemptFailed, AttemptSent, CaseOpened};

    #[test]
    fn each_outcome_is_named_with_its_channel_and_other_events_are_not_outcomes() {
        let sent = Payload::AttemptSent(AttemptSent {
            channel: Channel::Sms as i32,
            ..AttemptSent::default()
        });
        assert_eq!(outcome(&sent), Some((Channel::Sms, "sent")));
        let refused = Payload::AttemptFailed(AttemptFailed {
            channel: Channel::Fax as i32,
            permanent: true,
            ..AttemptFailed::default()
        });
        assert_eq!(
            outcome(&refused),
            Some((Channel::Fax, "failed_permanently"))
        );
        assert_eq!(outcome(&Payload::CaseOpened(CaseOpened::default())), None);
    }
}
