//! A small SMTP server that takes every message and keeps it in memory: the mail
//! server of tests and local runs, so lettre's real SMTP client runs against a
//! real SMTP conversation.
//!
//! It speaks EHLO/HELO, AUTH PLAIN (checked when credentials are set), MAIL, RCPT,
//! DATA (with dot-unstuffing), RSET, NOOP and QUIT. It can be told to answer the
//! next message's DATA with a given code (a 451 to defer it, a 550 to refuse it).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

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
}

impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail")
            .field("recipients", &self.to.len())
            .field("bytes", &self.data.len())
            .finish()
    }
}

#[derive(Debug, Default)]
struct Recorded {
    mails: Vec<Mail>,
    replies: VecDeque<u16>,
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

impl SmtpServer {
    /// Starts a server on a free port of 127.0.0.1; with `credentials`, AUTH PLAIN
    /// must present them.
    pub async fn start(credentials: Option<(String, String)>) -> std::io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), credentials).await
    }

    /// Starts a server listening on `addr`.
    pub async fn start_on(
        addr: SocketAddr,
        credentials: Option<(String, String)>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let recorded: Arc<Mutex<Recorded>> = Arc::default();
        let stop = CancellationToken::new();
        let (shared, stopped) = (recorded.clone(), stop.clone());
        let credentials = Arc::new(credentials);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = stopped.cancelled() => break,
                    accepted = listener.accept() => accepted,
                };
                let Ok((stream, _)) = accepted else { continue };
                let (shared, credentials) = (shared.clone(), credentials.clone());
                tokio::spawn(async move {
                    if let Err(error) =
                        converse(stream, &shared, credentials.as_ref().as_ref()).await
                    {
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

async fn converse(
    stream: TcpStream,
    recorded: &Mutex<Recorded>,
    credentials: Option<&(String, String)>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sandbox ESMTP ready\r\n").await?;
    let mut authenticated = credentials.is_none();
    let mut from = None;
    let mut to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 || line.len() > MAX_LINE {
            return Ok(());
        }
        let command = line.trim_end();
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => {
                let auth = if credentials.is_some() {
                    "250-AUTH PLAIN\r\n"
                } else {
                    ""
                };
                let greeting =
                    format!("250-sandbox\r\n{auth}250-8BITMIME\r\n250 SIZE {MAX_MESSAGE}\r\n");
                write.write_all(greeting.as_bytes()).await?;
                continue;
            }
            "HELO" => b"250 sandbox\r\n",
            "AUTH" => {
                let given = command.split_whitespace().nth(2).and_then(|b64| {
                    let decoded = STANDARD.decode(b64).ok()?;
                    let parts: Vec<&[u8]> = decoded.split(|b| *b == 0).collect();
                    match parts.as_slice() {
                        [_, user, pass] => Some((
                            String::from_utf8_lossy(user).into_owned(),
                            String::from_utf8_lossy(pass).into_owned(),
                        )),
                        _ => None,
                    }
                });
                if credentials.is_some_and(|c| given.as_ref() == Some(c)) {
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
                write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0
                        || line.len() > MAX_LINE
                        || data.len() > MAX_MESSAGE
                    {
                        return Ok(());
                    }
                    if line.trim_end_matches(['\r', '\n']) == "." {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                let reply = {
                    let mut recorded = recorded.lock().unwrap_or_else(PoisonError::into_inner);
                    match recorded.replies.pop_front() {
                        Some(code) => format!("{code} sandbox says {code}\r\n"),
                        None => {
                            recorded.mails.push(Mail {
                                from: from.take().unwrap_or_default(),
                                to: std::mem::take(&mut to),
                                data,
                            });
                            format!("250 2.0.0 Ok: queued as {}\r\n", recorded.mails.len())
                        }
                    }
                };
                from = None;
                to.clear();
                write.write_all(reply.as_bytes()).await?;
                continue;
            }
            "RSET" => {
                from = None;
                to.clear();
                b"250 2.0.0 Ok\r\n"
            }
            "NOOP" => b"250 2.0.0 Ok\r\n",
            "QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 5.5.2 Command not recognized\r\n",
        };
        write.write_all(reply).await?;
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
