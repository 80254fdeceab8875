//! Where messages are handed over. One adapter per channel (SMS and fax over their
//! providers' HTTP APIs, email over SMTP), chosen by configuration; a channel
//! with none configured refuses every hand-off permanently, so its attempts fail
//! with a clear code instead of waiting forever.
//!
//! Every hand-off carries the attempt id, as the provider's idempotency key where
//! it takes one and in the status-callback address where it does not, so an
//! attempt left `sending` by a crash can be looked up before anything is resent.

use touchpoint_programs::Message;
use touchpoint_proto::v1::Channel;
use uuid::Uuid;

/// A message to hand over (patient data: `Debug` omits the destination).
#[derive(Clone, Copy)]
pub struct Outgoing<'a> {
    /// The attempt: the idempotency key.
    pub attempt_id: Uuid,
    /// The channel.
    pub channel: Channel,
    /// Where to (phone, email address or fax number).
    pub destination: &'a str,
    /// What to send.
    pub message: &'a Message,
}

impl std::fmt::Debug for Outgoing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing")
            .field("attempt_id", &self.attempt_id)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

/// What a provider said to a hand-off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handoff {
    /// It took the message.
    Accepted {
        /// Which provider.
        provider: String,
        /// Its id for the message.
        message_id: String,
    },
    /// It did not.
    Refused {
        /// Which provider.
        provider: String,
        /// Its code (or dispatch's own).
        code: String,
        /// Retrying cannot help (a wrong number, a rejected address).
        permanent: bool,
    },
}

/// What a provider knows of an attempt that may have reached it before a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// It took the message: record it as sent, do not send again.
    Accepted {
        /// Which provider.
        provider: String,
        /// Its id for the message.
        message_id: String,
    },
    /// It never saw the attempt: sending it is safe.
    NotFound,
    /// The channel cannot tell (SMTP keeps no record to ask): never resend.
    Unknowable,
}

/// The adapters of every channel.
#[derive(Debug, Clone, Default)]
pub struct Providers {}

/// The code of a hand-off refused because no provider serves the channel.
pub const NO_PROVIDER: &str = "no_provider";

impl Providers {
    /// No provider on any channel.
    pub fn none() -> Self {
        Self {}
    }

    /// Hands `outgoing` over to its channel's provider.
    pub async fn hand_over(&self, outgoing: Outgoing<'_>) -> Handoff {
        let _ = outgoing;
        Handoff::Refused {
            provider: "none".into(),
            code: NO_PROVIDER.into(),
            permanent: true,
        }
    }

    /// Asks the provider of `channel` what it knows of `attempt_id`.
    pub async fn lookup(&self, channel: Channel, attempt_id: Uuid) -> Lookup {
        let _ = (channel, attempt_id);
        Lookup::NotFound
    }
}
