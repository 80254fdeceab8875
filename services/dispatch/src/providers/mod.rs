//! Where messages are handed over. Adapters per channel (SMS and fax over their
//! providers' HTTP APIs, email over Mailgun's HTTP API with SMTP behind it,
//! people's calls over Twilio's voice API, letters over Lob's print-and-mail
//! API),
//! chosen by configuration; a channel with none configured refuses every
//! hand-off permanently, so its attempts fail with a clear code instead of
//! waiting forever.
//!
//! Every hand-off carries the attempt id, as the provider's idempotency key where
//! it takes one and in the status-callback address where it does not, so an
//! attempt left `sending` by a crash can be looked up before anything is resent.

pub mod email;
pub mod lob;
pub mod mailgun;
pub mod phaxio;
pub mod throttle;
pub mod twilio;
pub mod twilio_voice;

use std::time::Instant;

use chrono::{DateTime, Utc};
use touchpoint_programs::Message;
use touchpoint_proto::v1::Channel;
use uuid::Uuid;

use crate::domain::fax::FaxDocument;
use crate::metrics;

pub use email::Mailer;
pub use lob::Lob;
pub use mailgun::Mailgun;
pub use phaxio::Phaxio;
pub use throttle::Throttle;
/// The HTTP client adapters share.
pub use touchpoint_platform::http_client as http;
/// Provider signature schemes, shared with routing's inbound webhooks.
pub use touchpoint_platform::signature;
pub use twilio::Twilio;
pub use twilio_voice::TwilioVoice;

/// A message to hand over (patient data: `Debug` omits the destination).
#[derive(Clone, Copy)]
pub struct Outgoing<'a> {
    /// The attempt: the idempotency key.
    pub attempt_id: Uuid,
    /// The case (an email's unsubscribe link names it).
    pub case_id: &'a str,
    /// The channel.
    pub channel: Channel,
    /// Where to (phone, email address, fax number, or a postal address as
    /// JSON).
    pub destination: &'a str,
    /// Given and family name: who a letter is addressed to.
    pub addressee: (&'a str, &'a str),
    /// What to send.
    pub message: &'a Message,
    /// For a fax or a letter: the document, cover page included.
    pub document: Option<&'a FaxDocument>,
    /// For a person's call: whose client rings first.
    pub caller: Option<&'a str>,
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

/// What a hand-off over HTTP that did not succeed means (Phaxio's and
/// Mailgun's APIs): a 429 (over the account's rate) or a 5xx is tried again
/// later, any other status (a key, a number or address, a document it will not
/// take) is final; a request that never left is tried again; one that got no
/// answer may have been taken, and is looked up before anything is resent.
fn not_taken(provider: &str, exchange: &http::Exchange) -> Handoff {
    let refused = |code: String, permanent: bool| Handoff::Refused {
        provider: provider.into(),
        code,
        permanent,
    };
    match exchange {
        http::Exchange::Answered { status, .. } => {
            let retry = status.as_u16() == 429 || status.is_server_error();
            refused(format!("http_{}", status.as_u16()), !retry)
        }
        http::Exchange::NotSent => refused("connect".into(), false),
        http::Exchange::Unanswered => Handoff::Ambiguous {
            provider: provider.into(),
            code: "timeout".into(),
        },
    }
}

/// What a provider's answer to a hand-off over HTTP means (Phaxio's, Mailgun's
/// and Lob's APIs): a success is taken, under the id `id_of` reads from its
/// body; a success without a readable id was taken by its status but cannot
/// be recorded, so it is looked up (`no_id`); anything else is
/// [`not_taken`]'s.
fn taken(
    provider: &str,
    exchange: &http::Exchange,
    id_of: impl FnOnce(&[u8]) -> Option<String>,
) -> Handoff {
    match exchange {
        http::Exchange::Answered { status, body } if status.is_success() => match id_of(body) {
            Some(message_id) => Handoff::Accepted {
                provider: provider.into(),
                message_id,
            },
            None => Handoff::Ambiguous {
                provider: provider.into(),
                code: "no_id".into(),
            },
        },
        other => not_taken(provider, other),
    }
}

/// Asks a provider's list of messages (a `GET` of `url`, filtered by the
/// attempt, with `authorization`) whether it took an attempt's message.
/// `first_id` reads the first listed message's id from the answer (`Some(None)`:
/// the list is empty). None: the provider could not be asked, or its answer
/// could not be read; ask again later.
async fn listed(
    client: &http::HttpClient,
    (url, authorization): (&str, &str),
    provider: &str,
    first_id: impl FnOnce(&[u8]) -> Option<Option<String>>,
) -> Option<Lookup> {
    let headers = [("authorization", authorization)];
    match client
        .send(::http::Method::GET, url, &headers, Vec::new())
        .await
    {
        http::Exchange::Answered { status, body } if status.is_success() => {
            Some(match first_id(&body)? {
                Some(message_id) => Lookup::Accepted {
                    provider: provider.into(),
                    message_id,
                },
                None => Lookup::NotFound,
            })
        }
        _ => None,
    }
}

/// The code of a hand-off refused because no provider serves the channel.
pub const NO_PROVIDER: &str = "no_provider";

/// The adapters of every channel.
#[derive(Debug, Clone, Default)]
pub struct Providers {
    /// SMS providers in failover order.
    pub sms: Vec<Twilio>,
    /// The HTTP email provider: email's first, when set.
    pub mailgun: Option<Mailgun>,
    /// The SMTP relay: email's fallback behind Mailgun, or its only provider.
    pub email: Option<Mailer>,
    /// The fax provider.
    pub fax: Option<Phaxio>,
    /// The voice provider, for people's calls (click to call).
    pub voice: Option<TwilioVoice>,
    /// The print-and-mail provider, for letters.
    pub mail: Option<Lob>,
    /// The pace of each SMS provider (by index), where one is set.
    pub sms_pace: Vec<Option<Throttle>>,
    /// The pace of the HTTP email provider, where one is set.
    pub mailgun_pace: Option<Throttle>,
    /// The pace of the SMTP relay, where one is set.
    pub email_pace: Option<Throttle>,
    /// The pace of the fax provider, where one is set.
    pub fax_pace: Option<Throttle>,
    /// The pace of the print-and-mail provider, where one is set.
    pub mail_pace: Option<Throttle>,
}

/// One of email's providers.
#[derive(Debug, Clone, Copy)]
enum EmailProvider<'a> {
    Mailgun(&'a Mailgun),
    Smtp(&'a Mailer),
}

impl Providers {
    /// Email's provider number `index`: Mailgun first when set, then SMTP.
    fn email_provider(&self, index: usize) -> Option<EmailProvider<'_>> {
        let mailgun = self.mailgun.as_ref().map(EmailProvider::Mailgun);
        let smtp = self.email.as_ref().map(EmailProvider::Smtp);
        mailgun.into_iter().chain(smtp).nth(index)
    }

    /// Whether `provider` can be asked about a hand-off the moment its answer
    /// failed to come (Mailgun's events are searchable only later: its
    /// unanswered hand-offs wait for the reconciler).
    pub fn searchable_at_once(&self, provider: &str) -> bool {
        provider != mailgun::NAME || Mailgun::SEARCHABLE_AT_ONCE
    }

    /// No provider on any channel.
    pub fn none() -> Self {
        Self::default()
    }

    /// How many providers serve `channel`, in failover order.
    pub fn count(&self, channel: Channel) -> usize {
        match channel {
            Channel::Sms => self.sms.len(),
            Channel::Email => {
                usize::from(self.mailgun.is_some()) + usize::from(self.email.is_some())
            }
            Channel::Fax => usize::from(self.fax.is_some()),
            Channel::Voice => usize::from(self.voice.is_some()),
            Channel::Mail => usize::from(self.mail.is_some()),
            Channel::Unspecified => 0,
        }
    }

    /// Takes a token from the pace of `channel`'s provider `index`, or says how
    /// long until one is due. A provider with no pace set always admits.
    pub fn admit(&self, channel: Channel, index: usize) -> Result<(), std::time::Duration> {
        let pace = match channel {
            Channel::Sms => self.sms_pace.get(index).and_then(Option::as_ref),
            Channel::Email => match self.email_provider(index) {
                Some(EmailProvider::Mailgun(_)) => self.mailgun_pace.as_ref(),
                _ => self.email_pace.as_ref(),
            },
            Channel::Fax => self.fax_pace.as_ref(),
            Channel::Mail => self.mail_pace.as_ref(),
            _ => None,
        };
        pace.map_or(Ok(()), Throttle::admit)
    }

    /// The name of `channel`'s provider number `index`, as events record it.
    pub fn name(&self, channel: Channel, index: usize) -> String {
        match (channel, self.sms.get(index), self.email_provider(index)) {
            (Channel::Sms, Some(twilio), _) => twilio.name.clone(),
            (Channel::Email, _, Some(EmailProvider::Mailgun(_))) => mailgun::NAME.into(),
            (Channel::Email, _, Some(EmailProvider::Smtp(_))) => email::SMTP.into(),
            (Channel::Fax, _, _) if index == 0 && self.fax.is_some() => phaxio::NAME.into(),
            (Channel::Voice, _, _) if index == 0 && self.voice.is_some() => {
                twilio_voice::NAME.into()
            }
            (Channel::Mail, _, _) if index == 0 && self.mail.is_some() => lob::NAME.into(),
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
        match (
            outgoing.channel,
            self.sms.get(index),
            self.email_provider(index),
        ) {
            (Channel::Sms, Some(twilio), _) => {
                twilio
                    .send(
                        outgoing.attempt_id,
                        outgoing.destination,
                        &outgoing.message.text,
                    )
                    .await
            }
            (Channel::Email, _, Some(EmailProvider::Mailgun(mailgun))) => {
                mailgun
                    .send(
                        outgoing.attempt_id,
                        outgoing.case_id,
                        outgoing.destination,
                        outgoing.message,
                    )
                    .await
            }
            (Channel::Email, _, Some(EmailProvider::Smtp(mailer))) => {
                mailer
                    .send(
                        outgoing.attempt_id,
                        outgoing.case_id,
                        outgoing.destination,
                        outgoing.message,
                    )
                    .await
            }
            (Channel::Voice, _, _) if index == 0 => match (&self.voice, outgoing.caller) {
                (Some(voice), Some(caller)) => voice.place(outgoing.attempt_id, caller).await,
                _ => Handoff::Refused {
                    provider: "none".into(),
                    code: NO_PROVIDER.into(),
                    permanent: true,
                },
            },
            (Channel::Mail, _, _) if index == 0 => match (&self.mail, outgoing.document) {
                (Some(mail), Some(document)) => {
                    let (given, family) = outgoing.addressee;
                    let addressee = format!("{given} {family}");
                    mail.send(lob::Posted {
                        attempt_id: outgoing.attempt_id,
                        addressee: addressee.trim(),
                        address: outgoing.destination,
                        document,
                    })
                    .await
                }
                _ => Handoff::Refused {
                    provider: "none".into(),
                    code: NO_PROVIDER.into(),
                    permanent: true,
                },
            },
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
            Channel::Voice if provider == Some(twilio_voice::NAME) => {
                match (&self.voice, outgoing.caller) {
                    (Some(voice), Some(caller)) => voice.lookup(caller, since).await,
                    // Configured away since: nobody left to ask.
                    _ => Some(Lookup::Unknowable),
                }
            }
            Channel::Mail if provider == Some(lob::NAME) => match &self.mail {
                Some(mail) => mail.lookup(outgoing.attempt_id).await,
                // Configured away since: nobody left to ask.
                None => Some(Lookup::Unknowable),
            },
            Channel::Email if provider == Some(mailgun::NAME) => match &self.mailgun {
                Some(mailgun) => mailgun.lookup(outgoing.attempt_id, since).await,
                // Configured away since: nobody left to ask.
                None => Some(Lookup::Unknowable),
            },
            // Nothing was handed to a provider that does not exist.
            _ if provider.is_none_or(|p| p == "none") => Some(Lookup::NotFound),
            _ => Some(Lookup::Unknowable),
        }
    }
}
