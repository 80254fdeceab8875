//! Email over SMTP with lettre: a plain-text part, an HTML part when the template
//! has one, the subject the template set, a `Message-ID` made of the attempt
//! id, and a one-click unsubscribe (RFC 8058: `List-Unsubscribe` pointing at
//! routing, and `List-Unsubscribe-Post`) whose link names the case and proves
//! the address without showing it. A 5xx reply is a permanent failure, a 4xx is retried; an answer that never
//! came cannot be looked up (SMTP keeps no record to ask), so such an attempt is
//! never sent again.
//!
//! The connection is upgraded with STARTTLS when the relay offers it (or must
//! be, when TLS is required), verified against the public roots plus any
//! configured authority; a relay whose certificate does not verify gets
//! nothing, not even in clear.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};
use tokio::sync::Semaphore;
use touchpoint_platform::secret::{ExposeSecret as _, SecretString};
use touchpoint_platform::signature::unsubscribe;
use touchpoint_programs::Message;
use uuid::Uuid;

use super::Handoff;

/// The provider name recorded for email.
pub const SMTP: &str = "smtp";
/// The subject when a template sets none.
pub(crate) const DEFAULT_SUBJECT: &str = "A message from your support program";

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
    unsubscribe: Unsubscribe,
}

/// Where an email's one-click unsubscribe goes and the key its links are
/// signed with (shared with routing).
#[derive(Debug, Clone)]
pub struct Unsubscribe {
    /// `TOUCHPOINT_UNSUBSCRIBE_URL`: routing's `/unsubscribe/email` as
    /// recipients reach it (https in production).
    pub url: String,
    /// `TOUCHPOINT_UNSUBSCRIBE_KEY`.
    pub key: SecretString,
}

impl Unsubscribe {
    /// The one-click link for `address` of `case_id`: it names the case and
    /// proves the address without showing it.
    pub fn link(&self, case_id: &str, address: &str) -> String {
        unsubscribe::link(&self.url, self.key.expose_secret(), case_id, address)
    }
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").finish_non_exhaustive()
    }
}

/// The SMTP settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    /// The sender.
    #[error("TOUCHPOINT_SMTP_FROM is not a valid mailbox")]
    From,
    /// The extra certificate authorities.
    #[error("TOUCHPOINT_SMTP_CA_FILE holds no usable PEM certificate")]
    Authority,
    /// The TLS settings as a whole.
    #[error("the SMTP TLS settings are unusable: {0}")]
    Tls(String),
}

/// When the SMTP conversation is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTls {
    /// STARTTLS when the relay offers it; in clear when it does not.
    Opportunistic,
    /// STARTTLS or nothing: a relay that does not offer it gets no mail.
    Required,
    /// Never (a relay on the same host, reached over loopback).
    Never,
}

/// How email is encrypted.
#[derive(Debug, Clone)]
pub struct MailTls {
    /// When.
    pub mode: StartTls,
    /// PEM certificates of authorities trusted beside the public roots.
    pub extra_roots: Option<Vec<u8>>,
}

impl Default for MailTls {
    fn default() -> Self {
        Self {
            mode: StartTls::Opportunistic,
            extra_roots: None,
        }
    }
}

impl MailTls {
    /// lettre's setting for a relay named `host`.
    fn for_host(&self, host: &str) -> Result<Tls, MailerError> {
        if self.mode == StartTls::Never {
            return Ok(Tls::None);
        }
        let mut parameters = TlsParameters::builder(host.to_owned());
        if let Some(pem) = &self.extra_roots {
            let authority = Certificate::from_pem(pem).map_err(|_| MailerError::Authority)?;
            parameters = parameters.add_root_certificate(authority);
        }
        let parameters = parameters
            .build_rustls()
            .map_err(|e| MailerError::Tls(e.to_string()))?;
        Ok(match self.mode {
            StartTls::Required => Tls::Required(parameters),
            StartTls::Opportunistic | StartTls::Never => Tls::Opportunistic(parameters),
        })
    }
}

/// `List-Unsubscribe: <link>`, as written: a link is printable ASCII without
/// spaces (the base URL is checked at start, the query is URL-encoded), which
/// RFC 2047 encoding would only break for mail clients.
fn list_unsubscribe(link: &str) -> HeaderValue {
    let value = format!("<{link}>");
    HeaderValue::dangerous_new_pre_encoded(
        HeaderName::new_from_ascii_str("List-Unsubscribe"),
        value.clone(),
        value,
    )
}

/// SMTP connections kept open to the relay, and sends in flight at once.
const POOL_SIZE: u32 = 32;

impl Mailer {
    /// A relay at `host:port` sending as `from` (e.g. `Care Team
    /// <care@hub.example>`), logging in with `credentials` when given, encrypted
    /// as `tls` says.
    pub fn new(
        host: &str,
        port: u16,
        from: &str,
        credentials: Option<(String, SecretString)>,
        (tls, unsubscribe): (&MailTls, Unsubscribe),
        timeout: Duration,
    ) -> Result<Self, MailerError> {
        let from: Mailbox = from.parse().map_err(|_| MailerError::From)?;
        // Connections are kept and reused: a conversation per message would cost
        // a connect and an EHLO each.
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .tls(tls.for_host(host)?)
            .timeout(Some(timeout))
            .pool_config(PoolConfig::new().max_size(POOL_SIZE));
        if let Some((user, password)) = credentials {
            let password = password.expose_secret().to_owned();
            builder = builder.credentials(Credentials::new(user, password));
        }
        Ok(Self {
            transport: builder.build(),
            from,
            connections: Arc::new(Semaphore::new(POOL_SIZE as usize)),
            timeout,
            unsubscribe,
        })
    }

    /// Sends a notice to staff (`to`): plain text, no unsubscribe (it is not
    /// marketing, and its readers are the hub's own people). An error says
    /// what the relay answered, never the recipients.
    pub async fn send_notice(
        &self,
        to: &[String],
        subject: &str,
        text: &str,
    ) -> Result<(), String> {
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .subject(subject);
        for address in to {
            let mailbox: Mailbox = address
                .parse()
                .map_err(|_| "a recipient is not a valid mailbox".to_owned())?;
            builder = builder.to(mailbox);
        }
        let email = builder
            .header(ContentType::TEXT_PLAIN)
            .body(text.to_owned())
            .map_err(|e| format!("the notice could not be built: {e}"))?;
        let _permit = self
            .connections
            .acquire()
            .await
            .map_err(|_| "the mailer is shutting down".to_owned())?;
        match tokio::time::timeout(self.timeout, self.transport.send(email)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(format!(
                "the relay refused: {}",
                error
                    .status()
                    .map_or_else(|| "no reply".to_owned(), |c| c.to_string())
            )),
            Err(_) => Err("the relay did not answer in time".to_owned()),
        }
    }

    /// Sends `message` to `to` for `attempt_id` of `case_id`.
    pub async fn send(
        &self,
        attempt_id: Uuid,
        case_id: &str,
        to: &str,
        message: &Message,
    ) -> Handoff {
        let refused = |code: String, permanent: bool| Handoff::Refused {
            provider: SMTP.into(),
            code,
            permanent,
        };
        let Ok(recipient) = to.parse::<Mailbox>() else {
            return refused("invalid_address".into(), true);
        };
        let message_id = format!("<{attempt_id}@touchpoint>");
        let link = self.unsubscribe.link(case_id, to);
        let builder = lettre::Message::builder()
            .from(self.from.clone())
            .to(recipient)
            .subject(message.subject.as_deref().unwrap_or(DEFAULT_SUBJECT))
            .message_id(Some(message_id.clone()))
            .raw_header(list_unsubscribe(&link))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".to_owned(),
            ));
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
                } else if error.is_tls() || tls_failure(&error) {
                    // The relay's certificate did not verify, or the handshake
                    // failed: nothing was handed over.
                    refused("tls".into(), false)
                } else {
                    // The conversation failed before the message was taken (a
                    // relay without STARTTLS when it is required lands here).
                    refused("connect".into(), false)
                }
            }
        }
    }
}

/// Whether a failed conversation failed in its TLS handshake (an untrusted or
/// mismatched certificate): lettre reports those as connection errors, with
/// rustls's error underneath.
fn tls_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        let inner_rustls = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
        if inner_rustls || e.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        current = e.source();
    }
    false
}
