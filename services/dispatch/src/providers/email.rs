//! Email over SMTP with lettre: a plain-text part, an HTML part when the template
//! has one, the subject the template set, and a `Message-ID` made of the attempt
//! id. A 5xx reply is a permanent failure, a 4xx is retried; an answer that never
//! came cannot be looked up (SMTP keeps no record to ask), so such an attempt is
//! never sent again.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};
use tokio::sync::Semaphore;
use touchpoint_programs::Message;
use uuid::Uuid;

use super::Handoff;

/// The provider name recorded for email.
pub const SMTP: &str = "smtp";
/// The subject when a template sets none.
const DEFAULT_SUBJECT: &str = "A message from your support program";

/// An SMTP relay.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// One permit per pooled connection: lettre's pool opens a new connection
    /// for every send beyond its idle ones, and hundreds at once were seen to
    /// stall; so sends queue for a connection instead.
    connections: Arc<Semaphore>,
    timeout: Duration,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").finish_non_exhaustive()
    }
}

/// The SMTP settings are unusable.
#[derive(Debug, thiserror::Error)]
#[error("the sender address is not a valid mailbox")]
pub struct MailerError;

/// SMTP connections kept open to the relay, and sends in flight at once.
const POOL_SIZE: u32 = 32;

impl Mailer {
    /// A relay at `host:port` sending as `from` (e.g. `Care Team
    /// <care@hub.example>`), logging in with `credentials` when given. The
    /// connection is plain SMTP for now (no STARTTLS).
    pub fn new(
        host: &str,
        port: u16,
        from: &str,
        credentials: Option<(String, String)>,
        timeout: Duration,
    ) -> Result<Self, MailerError> {
        let from: Mailbox = from.parse().map_err(|_| MailerError)?;
        // Connections are kept and reused: a conversation per message would cost
        // a connect and an EHLO each.
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .timeout(Some(timeout))
            .pool_config(PoolConfig::new().max_size(POOL_SIZE));
        if let Some((user, password)) = credentials {
            builder = builder.credentials(Credentials::new(user, password));
        }
        Ok(Self {
            transport: builder.build(),
            from,
            connections: Arc::new(Semaphore::new(POOL_SIZE as usize)),
            timeout,
        })
    }

    /// Sends `message` to `to` for `attempt_id`.
    pub async fn send(&self, attempt_id: Uuid, to: &str, message: &Message) -> Handoff {
        let refused = |code: String, permanent: bool| Handoff::Refused {
            provider: SMTP.into(),
            code,
            permanent,
        };
        let Ok(recipient) = to.parse::<Mailbox>() else {
            return refused("invalid_address".into(), true);
        };
        let message_id = format!("<{attempt_id}@touchpoint>");
        let builder = lettre::Message::builder()
            .from(self.from.clone())
            .to(recipient)
            .subject(message.subject.as_deref().unwrap_or(DEFAULT_SUBJECT))
            .message_id(Some(message_id.clone()));
        let text = SinglePart::builder()
            .header(ContentType::TEXT_PLAIN)
            .body(message.text.clone());
        let email = match &message.html {
            Some(html) => builder.multipart(
                MultiPart::alternative().singlepart(text).singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html.clone()),
                ),
            ),
            None => builder.singlepart(text),
        };
        let Ok(email) = email else {
            return refused("unbuildable".into(), true);
        };
        let Ok(_permit) = self.connections.acquire().await else {
            return refused("connect".into(), false); // closed: never, in practice
        };
        // A conversation that outlives the deadline may have handed the message
        // over: never sent again.
        let Ok(sent) = tokio::time::timeout(self.timeout, self.transport.send(email)).await else {
            return Handoff::Ambiguous {
                provider: SMTP.into(),
                code: "timeout".into(),
            };
        };
        match sent {
            Ok(_) => Handoff::Accepted {
                provider: SMTP.into(),
                message_id,
            },
            Err(error) => {
                let code = error
                    .status()
                    .map_or_else(|| "smtp".to_owned(), |c| format!("smtp_{c}"));
                if error.is_permanent() {
                    refused(code, true)
                } else if error.is_transient() {
                    refused(code, false)
                } else if error.is_timeout() {
                    // It may have been taken: never sent again.
                    Handoff::Ambiguous {
                        provider: SMTP.into(),
                        code: "timeout".into(),
                    }
                } else {
                    // The conversation failed before the message was taken.
                    refused("connect".into(), false)
                }
            }
        }
    }
}
