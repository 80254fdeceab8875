//! Where messages are handed over. One adapter per channel (SMS and fax over their
//! providers' HTTP APIs, email over SMTP), chosen by configuration; a channel
//! with none configured refuses every hand-off permanently, so its attempts fail
//! with a clear code instead of waiting forever.
//!
//! Every hand-off carries the attempt id, as the provider's idempotency key where
//! it takes one and in the status-callback address where it does not, so an
//! attempt left `sending` by a crash can be looked up before anything is resent.

pub mod email;
pub mod phaxio;
pub mod throttle;
pub mod twilio;

use std::time::Instant;

use chrono::{DateTime, Utc};
use touchpoint_programs::Message;
use touchpoint_proto::v1::Channel;
use uuid::Uuid;

use crate::domain::fax::FaxDocument;
use crate::metrics;

pub use email::Mailer;
pub use phaxio::Phaxio;
pub use throttle::Throttle;
/// The HTTP client adapters share.
pub use touchpoint_platform::http_client as http;
/// Provider signature schemes, shared with routing's inbound webhooks.
pub use touchpoint_platform::signature;
pub use twilio::Twilio;

/// A message to hand over (patient data: `Debug` omits the destination).
#[derive(Clone, Copy)]
pub struct Outgoing<'a> {
    /// The attempt: the idempotency key.
    pub attempt_id: Uuid,
    /// The case (an email's unsubscribe link names it).
    pub case_id: &'a str,
    /// The channel.
    pub channel: Channel,
    /// Where to (phone, email address or fax number).
    pub destination: &'a str,
    /// What to send.
    pub message: &'a Message,
    /// For a fax: the document, cover page included.
    pub document: Option<&'a FaxDocument>,
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
    /// No answer came: it may or may not have taken the message. Look it up
    /// before sending again.
    Ambiguous {
        /// Which provider.
        provider: String,
        /// What happened (`timeout`).
        code: String,
    },
}

/// What a provider knows of an attempt that may have reached it.
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

/// The code of a hand-off refused because no provider serves the channel.
pub const NO_PROVIDER: &str = "no_provider";

/// The adapters of every channel.
#[derive(Debug, Clone, Default)]
pub struct Providers {
    /// SMS providers in failover order.
    pub sms: Vec<Twilio>,
    /// The SMTP relay.
    pub email: Option<Mailer>,
    /// The fax provider.
    pub fax: Option<Phaxio>,
    /// The pace of each SMS provider (by index), where one is set.
    pub sms_pace: Vec<Option<Throttle>>,
    /// The pace of the SMTP relay, where one is set.
    pub email_pace: Option<Throttle>,
    /// The pace of the fax provider, where one is set.
    pub fax_pace: Option<Throttle>,
}

impl Providers {
    /// No provider on any channel.
    pub fn none() -> Self {
        Self::default()
    }

    /// How many providers serve `channel`, in failover order.
    pub fn count(&self, channel: Channel) -> usize {
        match channel {
            Channel::Sms => self.sms.len(),
            Channel::Email => usize::from(self.email.is_some()),
            Channel::Fax => usize::from(self.fax.is_some()),
            _ => 0,
        }
    }

    /// Takes a token from the pace of `channel`'s provider `index`, or says how
    /// long until one is due. A provider with no pace set always admits.
    pub fn admit(&self, channel: Channel, index: usize) -> Result<(), std::time::Duration> {
        let pace = match channel {
            Channel::Sms => self.sms_pace.get(index).and_then(Option::as_ref),
            Channel::Email => self.email_pace.as_ref(),
            Channel::Fax => self.fax_pace.as_ref(),
            _ => None,
        };
        pace.map_or(Ok(()), Throttle::admit)
    }

    /// The name of `channel`'s provider number `index`, as events record it.
    pub fn name(&self, channel: Channel, index: usize) -> String {
        match (channel, self.sms.get(index), &self.email) {
            (Channel::Sms, Some(twilio), _) => twilio.name.clone(),
            (Channel::Email, _, Some(_)) if index == 0 => email::SMTP.into(),
            (Channel::Fax, _, _) if index == 0 && self.fax.is_some() => phaxio::NAME.into(),
            _ => "none".into(),
        }
    }

    /// Hands `outgoing` to its channel's provider number `index` (0: the primary).
    pub async fn hand_over(&self, outgoing: Outgoing<'_>, index: usize) -> Handoff {
        let started = Instant::now();
        let answer = self.hand_over_to(outgoing, index).await;
        let (provider, result) = match &answer {
            Handoff::Accepted { provider, .. } => (provider, "accepted"),
            Handoff::Refused { provider, .. } => (provider, "refused"),
            Handoff::Ambiguous { provider, .. } => (provider, "no_answer"),
        };
        metrics::provider_answered(provider, outgoing.channel, result, started.elapsed());
        answer
    }

    async fn hand_over_to(&self, outgoing: Outgoing<'_>, index: usize) -> Handoff {
        match (outgoing.channel, self.sms.get(index), &self.email) {
            (Channel::Sms, Some(twilio), _) => {
                twilio
                    .send(
                        outgoing.attempt_id,
                        outgoing.destination,
                        &outgoing.message.text,
                    )
                    .await
            }
            (Channel::Email, _, Some(mailer)) if index == 0 => {
                mailer
                    .send(
                        outgoing.attempt_id,
                        outgoing.case_id,
                        outgoing.destination,
                        outgoing.message,
                    )
                    .await
            }
            (Channel::Fax, _, _) if index == 0 => match (&self.fax, outgoing.document) {
                (Some(fax), Some(document)) => {
                    fax.send(outgoing.attempt_id, outgoing.destination, document)
                        .await
                }
                _ => Handoff::Refused {
                    provider: "none".into(),
                    code: NO_PROVIDER.into(),
                    permanent: true,
                },
            },
            _ => Handoff::Refused {
                provider: "none".into(),
                code: NO_PROVIDER.into(),
                permanent: true,
            },
        }
    }

    /// Asks `provider` whether it took `outgoing` since `since`. None: it cannot
    /// be asked now (ask again later).
    pub async fn lookup(
        &self,
        provider: Option<&str>,
        outgoing: Outgoing<'_>,
        since: DateTime<Utc>,
    ) -> Option<Lookup> {
        match outgoing.channel {
            Channel::Sms => {
                let twilio = self
                    .sms
                    .iter()
                    .find(|t| Some(t.name.as_str()) == provider)?;
                twilio
                    .lookup(outgoing.destination, &outgoing.message.text, since)
                    .await
            }
            Channel::Fax if provider == Some(phaxio::NAME) => {
                self.fax.as_ref()?.lookup(outgoing.attempt_id).await
            }
            // Nothing was handed to a provider that does not exist.
            _ if provider.is_none_or(|p| p == "none") => Some(Lookup::NotFound),
            _ => Some(Lookup::Unknowable),
        }
    }
}
