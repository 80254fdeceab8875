//! A small SMTP server that takes every message and keeps it in memory: the mail
//! server of tests and local runs, so lettre's real SMTP client runs against a
//! real SMTP conversation.
//!
//! It speaks EHLO/HELO, STARTTLS (when given a TLS identity), AUTH PLAIN
//! (checked when credentials are set; with TLS, only once the connection is
//! encrypted), MAIL, RCPT, DATA (with dot-unstuffing), RSET, NOOP and QUIT. It
//! can be told to answer the next message's DATA with a given code (a 451 to
//! defer it, a 550 to refuse it).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use touchpoint_platform::tls::{Identity, TlsError};

/// The longest command or data line taken; a longer one ends the connection.
const MAX_LINE: usize = 4096;
/// The largest message taken, as SIZE advertises it.
const MAX_MESSAGE: usize = 10 * 1024 * 1024;

/// A message the server took (patient data, kept only in memory).
#[derive(Clone, PartialEq, Eq)]
pub struct Mail {
    /// The envelope sender.
    pub from: String,
    /// The envelope recipients.
    pub to: Vec<String>,
    /// The message as sent: headers and body.
    pub data: String,
    /// Whether it arrived over a connection encrypted by STARTTLS.
    pub encrypted: bool,
}

impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail")
            .field("recipients", &self.to.len())
            .field("bytes", &self.data.len())
            .field("encrypted", &self.encrypted)
            .finish()
    }
}

/// How the server is set up.
#[derive(Debug, Clone, Default)]
pub struct SmtpOptions {
    /// When set, AUTH PLAIN must present these, and MAIL needs a login.
    pub credentials: Option<(String, String)>,
    /// When set, STARTTLS is offered with this certificate, and AUTH is only
    /// taken over the encrypted connection.
    pub tls: Option<Identity>,
}

#[derive(Debug, Default)]
struct Recorded {
    mails: Vec<Mail>,
    replies: VecDeque<u16>,
}

/// What every conversation of one server shares.
struct Shared {
    recorded: Arc<Mutex<Recorded>>,
    credentials: Option<(String, String)>,
    tls: Option<TlsAcceptor>,
}

/// A running SMTP server; it stops when dropped.
#[derive(Debug)]
pub struct SmtpServer {
    addr: SocketAddr,
    recorded: Arc<Mutex<Recorded>>,
    stop: CancellationToken,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum SmtpStartError {
    /// It cannot listen.
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    /// Its TLS identity is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl SmtpServer {
    /// Starts a server on a free port of 127.0.0.1.
    pub async fn start(options: SmtpOptions) -> Result<Self, SmtpStartError> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), options).await
    }

    /// Starts a server listening on `addr`.
    pub async fn start_on(addr: SocketAddr, options: SmtpOptions) -> Result<Self, SmtpStartError> {
        let tls = match &options.tls {
            Some(identity) => Some(TlsAcceptor::from(identity.server_config()?)),
            None => None,
        };
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let recorded: Arc<Mutex<Recorded>> = Arc::default();
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            recorded: recorded.clone(),
            credentials: options.credentials,
            tls,
        });
        let stopped = stop.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = stopped.cancelled() => break,
                    accepted = listener.accept() => accepted,
                };
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Err(error) = serve(stream, &shared).await {
                        tracing::debug!(%error, "smtp conversation ended");
                    }
                });
            }
        });
        Ok(Self {
            addr,
            recorded,
            stop,
        })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next message's DATA is answered with `code` (e.g. 451 or 550)
    /// instead of being taken.
    pub fn reply_next(&self, code: u16) {
        self.lock().replies.push_back(code);
    }

    /// Every message taken so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.lock().mails.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How a conversation ended.
enum Ended<S> {
    /// The client left.
    Closed,
    /// The client asked for TLS: the stream, ready for the handshake.
    StartTls(S),
}

/// One connection: in clear, then, after STARTTLS, encrypted.
async fn serve(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let Ended::StartTls(stream) = converse(stream, shared, false).await? else {
        return Ok(());
    };
    let Some(acceptor) = &shared.tls else {
        return Ok(());
    };
    let stream = acceptor.accept(stream).await?;
    converse(stream, shared, true).await?;
    Ok(())
}

async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    shared: &Shared,
    encrypted: bool,
) -> std::io::Result<Ended<S>> {
    let mut lines = BufReader::new(stream);
    if !encrypted {
        send(&mut lines, b"220 sandbox ESMTP ready\r\n").await?;
    }
    let offers_tls = shared.tls.is_some() && !encrypted;
    // With TLS on offer, credentials travel only once it is in place.
    let takes_auth = shared.credentials.is_some() && (encrypted || shared.tls.is_none());
    let mut authenticated = shared.credentials.is_none();
    let mut from = None;
    let mut to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 || line.len() > MAX_LINE {
            return Ok(Ended::Closed);
        }
        let command = line.trim_end();
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => {
                let starttls = if offers_tls { "250-STARTTLS\r\n" } else { "" };
                let auth = if takes_auth { "250-AUTH PLAIN\r\n" } else { "" };
                let greeting = format!(
                    "250-sandbox\r\n{starttls}{auth}250-8BITMIME\r\n250 SIZE {MAX_MESSAGE}\r\n"
                );
                send(&mut lines, greeting.as_bytes()).await?;
                continue;
            }
            "HELO" => b"250 sandbox\r\n",
            "STARTTLS" if offers_tls => {
                send(&mut lines, b"220 2.0.0 Ready to start TLS\r\n").await?;
                // Whatever the client sent past STARTTLS is dropped with the
                // buffer, as RFC 3207 asks.
                return Ok(Ended::StartTls(lines.into_inner()));
            }
            "AUTH" if shared.credentials.is_some() && !takes_auth => {
                b"538 5.7.11 Encryption required for requested authentication mechanism\r\n"
            }
            "AUTH" => {
                if shared
                    .credentials
                    .as_ref()
                    .is_some_and(|c| plain_login(command).as_ref() == Some(c))
                {
                    authenticated = true;
                    b"235 2.7.0 Authentication successful\r\n"
                } else {
                    b"535 5.7.8 Authentication credentials invalid\r\n"
                }
            }
            "MAIL" if !authenticated => b"530 5.7.0 Authentication required\r\n",
            "MAIL" => {
                from = Some(address(command));
                to.clear();
                b"250 2.1.0 Ok\r\n"
            }
            "RCPT" if from.is_some() => {
                to.push(address(command));
                b"250 2.1.5 Ok\r\n"
            }
            "RCPT" => b"503 5.5.1 MAIL first\r\n",
            "DATA" if to.is_empty() => b"503 5.5.1 RCPT first\r\n",
            "DATA" => {
                send(&mut lines, b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0
                        || line.len() > MAX_LINE
                        || data.len() > MAX_MESSAGE
                    {
                        return Ok(Ended::Closed);
                    }
                    if line.trim_end_matches(['\r', '\n']) == "." {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                let reply = {
                    let mut recorded = shared
                        .recorded
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    match recorded.replies.pop_front() {
                        Some(code) => format!("{code} sandbox says {code}\r\n"),
                        None => {
                            recorded.mails.push(Mail {
                                from: from.take().unwrap_or_default(),
                                to: std::mem::take(&mut to),
                                data,
                                encrypted,
                            });
                            format!("250 2.0.0 Ok: queued as {}\r\n", recorded.mails.len())
                        }
                    }
                };
                from = None;
                to.clear();
                send(&mut lines, reply.as_bytes()).await?;
                continue;
            }
            "RSET" => {
                from = None;
                to.clear();
                b"250 2.0.0 Ok\r\n"
            }
            "NOOP" => b"250 2.0.0 Ok\r\n",
            "QUIT" => {
                send(&mut lines, b"221 2.0.0 Bye\r\n").await?;
                return Ok(Ended::Closed);
            }
            _ => b"502 5.5.2 Command not recognized\r\n",
        };
        send(&mut lines, reply).await?;
    }
}

/// Writes a reply and flushes it (a TLS stream holds writes until flushed).
async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    lines: &mut BufReader<S>,
    reply: &[u8],
) -> std::io::Result<()> {
    let stream = lines.get_mut();
    stream.write_all(reply).await?;
    stream.flush().await
}

/// The user name and password of `AUTH PLAIN <base64>`.
fn plain_login(command: &str) -> Option<(String, String)> {
    let b64 = command.split_whitespace().nth(2)?;
    let decoded = STANDARD.decode(b64).ok()?;
    let parts: Vec<&[u8]> = decoded.split(|b| *b == 0).collect();
    match parts.as_slice() {
        [_, user, pass] => Some((
            String::from_utf8_lossy(user).into_owned(),
            String::from_utf8_lossy(pass).into_owned(),
        )),
        _ => None,
    }
}

/// The address inside `MAIL FROM:<…>` or `RCPT TO:<…>`.
fn address(command: &str) -> String {
    command
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(address, _)| address.to_owned())
        .unwrap_or_default()
}
