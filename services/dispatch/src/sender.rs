//! The sender: takes queued attempts and hands each over once.
//!
//! A round, in two transactions around the hand-offs:
//! 1. claim ready attempts (`FOR UPDATE SKIP LOCKED`, so replicas share them),
//!    run the last-moment checks, and settle what can be settled at once:
//!    suppressed (with the reason), waiting for a case not yet seen, a call task
//!    for voice, a failure to render. An attempt to hand over is rendered and
//!    marked `sending`, and this is committed *before* any provider is called;
//! 2. hand the `sending` ones over, outside any transaction;
//! 3. record each outcome with its event: sent, retried later with backoff (a
//!    channel's next provider once one has had its tries), or failed. A hand-off
//!    whose answer never came is looked up at once, and sent again only if the
//!    provider never saw it.
//!
//! A crash between 1 and 3 leaves attempts `sending`. Once they are older than
//! the sending timeout (longer than any hand-off takes), a round asks their
//! provider: if it took the message they are recorded as sent; if it never saw
//! them they are queued again; if the channel cannot tell (SMTP), they fail as
//! `outcome_unknown` rather than risk a second message to the patient. Email
//! through Mailgun can tell: it is sent exactly once, as SMS is.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::join_all;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use touchpoint_platform::clock::SharedClock;
use touchpoint_platform::outbox::{self, OutboxError};
use touchpoint_platform::rounds;
use touchpoint_programs::{Audience, LiveCatalogue, Message, MessageFacts};
use touchpoint_proto::v1::{Channel, SuppressionReason};

use crate::attempts::{self, Attempt, AttemptsError, Settled, State};
use crate::domain::fax::{self, Cover, FaxDocument};
use crate::domain::guard::{CallWindow, DestinationCap, Sends, Verdict, call_window, check};
use crate::domain::sms;
use crate::metrics;
use crate::outcomes::{self, Written};
use crate::providers::{Handoff, Lookup, Outgoing, Providers};

/// The provider name recorded for call tasks.
pub const WORKLIST: &str = "worklist";
/// How soon an attempt for a case dispatch has not heard of is looked at again.
const WAIT_FOR_CASE: TimeDelta = TimeDelta::seconds(5);
/// The least an attempt waits for its provider's pace.
const MIN_PACE_WAIT: TimeDelta = TimeDelta::milliseconds(10);
/// The first retry's backoff; it doubles each try, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: TimeDelta = TimeDelta::seconds(2);
const MAX_BACKOFF: TimeDelta = TimeDelta::minutes(5);

/// How the sender runs.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Attempts claimed per round.
    pub batch: usize,
    /// How often an idle sender looks for work.
    pub poll: Duration,
    /// Hand-off tries before a transient failure is final.
    pub max_tries: u32,
    /// How long an attempt may stay `sending` before it is reconciled.
    pub sending_timeout: Duration,
    /// The most contacts of one number or address in any 24 hours, whatever
    /// the case or program.
    pub destination_cap: DestinationCap,
}

/// A round failed; what it had not committed is done again next round.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    /// The attempts store.
    #[error(transparent)]
    Attempts(#[from] AttemptsError),
    /// The outbox.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// A transaction.
    #[error("sender database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Hands queued attempts over, once each.
#[derive(Debug, Clone)]
pub struct Sender {
    pool: PgPool,
    catalogue: Arc<LiveCatalogue>,
    clock: SharedClock,
    topic: String,
    providers: Arc<Providers>,
    config: SenderConfig,
}

/// An attempt marked `sending` in this round, with what to send and to which of
/// its channel's providers.
struct Handing {
    attempt: Attempt,
    message: Message,
    document: Option<FaxDocument>,
    index: usize,
}

impl Sender {
    /// A sender over `pool`'s attempts, publishing outcomes to `topic`.
    pub fn new(
        pool: PgPool,
        catalogue: Arc<LiveCatalogue>,
        clock: SharedClock,
        topic: String,
        providers: Arc<Providers>,
        config: SenderConfig,
    ) -> Self {
        Self {
            pool,
            catalogue,
            clock,
            topic,
            providers,
            config,
        }
    }

    /// Runs until `shutdown`; the round in hand is finished first.
    pub async fn run(self, shutdown: CancellationToken) {
        let (poll, batch) = (self.config.poll, self.config.batch);
        rounds::run("sender", poll, batch, shutdown, || self.round()).await;
    }

    /// One round: reconciles stale `sending` attempts, then hands over ready ones.
    /// Returns how many attempts it claimed.
    pub async fn round(&self) -> Result<usize, SenderError> {
        let reconciled = self.reconcile().await?;
        let now = self.clock.now();
        let mut tx = self.pool.begin().await?;
        let claimed = attempts::claim_ready(&mut tx, now, self.config.batch).await?;
        if claimed.is_empty() {
            return Ok(reconciled);
        }
        let cases: BTreeSet<String> = claimed.iter().map(|a| a.case_id.clone()).collect();
        let numbers: BTreeSet<String> = claimed
            .iter()
            .filter_map(|a| a.counted_number().map(str::to_owned))
            .collect();
        let mut sends = attempts::recent_sends(&mut tx, &cases, &numbers, now).await?;
        let mut settled = Vec::with_capacity(claimed.len());
        let mut events = Vec::new();
        let mut handing = Vec::new();
        let count = claimed.len();
        let topic = self.topic.as_str();
        let catalogue = self.catalogue.current();
        for attempt in claimed {
            // The program as it applies in the patient's state, if a rule does.
            let us_state = attempt.view.as_ref().and_then(|v| v.us_state.as_deref());
            let program = catalogue.in_state(&attempt.program_id, us_state);
            let verdict = if attempt.keyword_reply {
                // Carrier rules require the answer to STOP, START and HELP,
                // whatever consent, opt-out, window or cap say.
                match attempt.view {
                    Some(_) if now <= attempt.not_after => Verdict::Send,
                    Some(_) => Verdict::Suppress(SuppressionReason::Expired),
                    None => Verdict::WaitForCase,
                }
            } else {
                let number = attempt.counted_number();
                let same_contact = attempt.calls_for;
                let case_or_destination = sends.for_attempt(&attempt.case_id, number, same_contact);
                let to_destination = sends.to_destination(number, same_contact);
                check(
                    attempt.view.as_ref(),
                    program,
                    attempt.channel,
                    attempt.not_after,
                    Sends {
                        case_or_destination: &case_or_destination,
                        to_destination: &to_destination,
                    },
                    self.config.destination_cap,
                    now,
                )
            };
            let verdict = match verdict {
                Verdict::WaitForCase if now > attempt.not_after => {
                    Verdict::Suppress(SuppressionReason::Expired)
                }
                other => other,
            };
            match verdict {
                Verdict::WaitForCase => settled.push(Settled {
                    next_try_at: Some(now + WAIT_FOR_CASE),
                    ..Settled::to(attempt.attempt_id, State::Queued)
                }),
                Verdict::Suppress(reason) => {
                    settled.push(Settled {
                        suppression: Some(reason),
                        ..Settled::to(attempt.attempt_id, State::Suppressed)
                    });
                    events.push(outcomes::suppressed(topic, &attempt, reason, now));
                }
                // A call the program asks for is made by a person: a task.
                Verdict::Send
                    if attempt.channel == Channel::Voice && attempt.caller().is_none() =>
                {
                    sends.record(
                        attempt.attempt_id,
                        &attempt.case_id,
                        attempt.counted_number(),
                        now,
                    );
                    settled.push(Settled {
                        provider: Some(WORKLIST.into()),
                        sent_at: Some(now),
                        tried: true,
                        ..Settled::to(attempt.attempt_id, State::Sent)
                    });
                    let window = attempt.view.as_ref().map_or(
                        CallWindow {
                            from: now,
                            until: attempt.not_after,
                        },
                        |view| call_window(view, program, attempt.not_after, now),
                    );
                    events.push(outcomes::call_task(topic, &attempt, window, now));
                }
                Verdict::Send => match self.render(&attempt) {
                    Ok(message) => {
                        let index = self.provider_index(&attempt);
                        // The provider's pace: without a token it waits queued, not
                        // `sending`, so no hand-off is ever held up by it.
                        if let Err(wait) = self.providers.admit(attempt.channel, index) {
                            let wait = TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX);
                            settled.push(Settled {
                                next_try_at: Some(now + wait.max(MIN_PACE_WAIT)),
                                ..Settled::to(attempt.attempt_id, State::Queued)
                            });
                            continue;
                        }
                        sends.record(
                            attempt.attempt_id,
                            &attempt.case_id,
                            attempt.counted_number(),
                            now,
                        );
                        settled.push(Settled {
                            tried: true,
                            provider: Some(self.providers.name(attempt.channel, index)),
                            ..Settled::to(attempt.attempt_id, State::Sending)
                        });
                        let document = self.document(&attempt, &message, now);
                        handing.push(Handing {
                            attempt,
                            message,
                            document,
                            index,
                        });
                    }
                    Err(code) => {
                        tracing::warn!(attempt_id = %attempt.attempt_id, code, "attempt cannot be written");
                        settled.push(Settled {
                            failure_code: Some(code.to_owned()),
                            ..Settled::to(attempt.attempt_id, State::Failed)
                        });
                        events.push(outcomes::failed(
                            topic, &attempt, "dispatch", code, true, now,
                        ));
                    }
                },
            }
        }
        attempts::settle(&mut tx, &settled).await?;
        outbox::append(&mut tx, &events).await?;
        // The rule: `sending` is committed before any provider hears of it.
        tx.commit().await?;
        metrics::committed(&events);
        if !handing.is_empty() {
            // Providers keep real time, whatever clock the program runs on.
            self.hand_over(handing, Utc::now()).await?;
        }
        Ok(count + reconciled)
    }

    /// Which of its channel's providers an attempt goes to: each has
    /// `max_tries` tries before the next takes over.
    fn provider_index(&self, attempt: &Attempt) -> usize {
        (attempt.tries / self.config.max_tries.max(1)) as usize
    }

    /// Hands every `sending` attempt over at once and records the outcomes.
    async fn hand_over(
        &self,
        handing: Vec<Handing>,
        since: DateTime<Utc>,
    ) -> Result<(), SenderError> {
        let outcomes = join_all(handing.iter().map(|h| async move {
            let outgoing = h.outgoing();
            match self.providers.hand_over(outgoing, h.index).await {
                // No answer: the provider may have taken it. Ask before anything
                // is sent again (a provider whose records lag is asked by the
                // reconciler, after the sending timeout).
                Handoff::Ambiguous { provider, code }
                    if self.providers.searchable_at_once(&provider) =>
                {
                    match self
                        .providers
                        .lookup(Some(&provider), outgoing, since)
                        .await
                    {
                        Some(Lookup::Accepted {
                            provider,
                            message_id,
                        }) => Handoff::Accepted {
                            provider,
                            message_id,
                        },
                        Some(Lookup::NotFound) => Handoff::Refused {
                            provider,
                            code,
                            permanent: false,
                        },
                        _ => Handoff::Ambiguous { provider, code },
                    }
                }
                other => other,
            }
        }))
        .await;
        let now = self.clock.now();
        let topic = self.topic.as_str();
        let mut settled = Vec::with_capacity(handing.len());
        let mut events = Vec::with_capacity(handing.len());
        for (h, outcome) in handing.iter().zip(outcomes) {
            let a = &h.attempt;
            match outcome {
                Handoff::Accepted {
                    provider,
                    message_id,
                } => {
                    events.push(outcomes::sent(
                        topic,
                        a,
                        h.written(),
                        &provider,
                        &message_id,
                        now,
                    ));
                    settled.push(Settled {
                        provider: Some(provider),
                        provider_message_id: Some(message_id),
                        sent_at: Some(now),
                        ..Settled::to(a.attempt_id, State::Sent)
                    });
                }
                Handoff::Refused {
                    provider,
                    code,
                    permanent,
                } => {
                    let tries = a.tries + 1;
                    let providers = self.providers.count(a.channel).max(1) as u32;
                    if !permanent && tries < self.config.max_tries * providers {
                        // The next provider takes over at once; the same one after a
                        // backoff.
                        let next_try_at = if tries % self.config.max_tries == 0 {
                            now
                        } else {
                            now + backoff(a, tries)
                        };
                        settled.push(Settled {
                            provider: Some(provider),
                            failure_code: Some(code),
                            next_try_at: Some(next_try_at),
                            ..Settled::to(a.attempt_id, State::Queued)
                        });
                    } else {
                        events.push(outcomes::failed(topic, a, &provider, &code, permanent, now));
                        settled.push(Settled {
                            provider: Some(provider),
                            failure_code: Some(code),
                            ..Settled::to(a.attempt_id, State::Failed)
                        });
                    }
                }
                // Still no way to know: it stays `sending` until the reconciler can
                // ask.
                Handoff::Ambiguous { provider, code } => {
                    tracing::warn!(attempt_id = %a.attempt_id, provider, code, "hand-off unanswered; left sending");
                    settled.push(Settled {
                        provider: Some(provider),
                        failure_code: Some(code),
                        ..Settled::to(a.attempt_id, State::Sending)
                    });
                }
            }
        }
        let mut tx = self.pool.begin().await?;
        attempts::settle(&mut tx, &settled).await?;
        outbox::append(&mut tx, &events).await?;
        tx.commit().await?;
        metrics::committed(&events);
        Ok(())
    }

    /// Settles attempts left `sending` past the timeout by asking their provider.
    async fn reconcile(&self) -> Result<usize, SenderError> {
        let now = self.clock.now();
        let timeout = TimeDelta::from_std(self.config.sending_timeout).unwrap_or(TimeDelta::MAX);
        let mut tx = self.pool.begin().await?;
        let stale =
            attempts::claim_stale_sending(&mut tx, self.config.sending_timeout, self.config.batch)
                .await?;
        if stale.is_empty() {
            return Ok(0);
        }
        // The message as it was written, to recognise it at the provider.
        let rendered: Vec<Option<Message>> = stale.iter().map(|a| self.render(a).ok()).collect();
        // Providers keep real time, whatever clock the program runs on.
        let since = Utc::now() - timeout - TimeDelta::days(1);
        let lookups = join_all(stale.iter().zip(&rendered).map(|(a, message)| async move {
            match message {
                Some(message) => {
                    let outgoing = Outgoing {
                        attempt_id: a.attempt_id,
                        case_id: &a.case_id,
                        channel: a.channel,
                        destination: &a.destination,
                        addressee: (&a.first_name, &a.last_name),
                        message,
                        // A fax or a letter is looked up by its attempt id alone.
                        document: None,
                        caller: a.caller(),
                    };
                    // A person's call is looked for among the calls placed
                    // since it was asked for.
                    let since = a.asked_at.unwrap_or(since);
                    self.providers
                        .lookup(a.provider.as_deref(), outgoing, since)
                        .await
                }
                None => Some(Lookup::Unknowable),
            }
        }))
        .await;
        let topic = self.topic.as_str();
        let mut settled = Vec::with_capacity(stale.len());
        let mut events = Vec::new();
        for ((a, lookup), message) in stale.iter().zip(lookups).zip(&rendered) {
            tracing::info!(attempt_id = %a.attempt_id, ?lookup, "reconciling an attempt left sending");
            match lookup {
                Some(Lookup::Accepted {
                    provider,
                    message_id,
                }) => {
                    let written = message.as_ref().map_or(
                        Written {
                            language: a.language,
                            fell_back: false,
                            segments: 0,
                            pages: 0,
                        },
                        |m| written(a.channel, m, self.document(a, m, now).as_ref()),
                    );
                    events.push(outcomes::sent(
                        topic,
                        a,
                        written,
                        &provider,
                        &message_id,
                        now,
                    ));
                    settled.push(Settled {
                        provider: Some(provider),
                        provider_message_id: Some(message_id),
                        sent_at: Some(now),
                        ..Settled::to(a.attempt_id, State::Sent)
                    });
                }
                Some(Lookup::NotFound) => settled.push(Settled {
                    next_try_at: Some(now),
                    ..Settled::to(a.attempt_id, State::Queued)
                }),
                Some(Lookup::Unknowable) => {
                    let provider = a.provider.clone().unwrap_or_else(|| "unknown".into());
                    events.push(outcomes::failed(
                        topic,
                        a,
                        &provider,
                        "outcome_unknown",
                        false,
                        now,
                    ));
                    settled.push(Settled {
                        failure_code: Some("outcome_unknown".into()),
                        ..Settled::to(a.attempt_id, State::Failed)
                    });
                }
                // The provider cannot be asked now: leave it for a later round.
                None => settled.push(Settled::to(a.attempt_id, State::Sending)),
            }
        }
        attempts::settle(&mut tx, &settled).await?;
        outbox::append(&mut tx, &events).await?;
        tx.commit().await?;
        metrics::committed(&events);
        Ok(stale.len())
    }

    /// The message for `attempt`, or the code of why it cannot be written.
    fn render(&self, attempt: &Attempt) -> Result<Message, &'static str> {
        let catalogue = self.catalogue.current();
        let program = catalogue
            .get(&attempt.program_id)
            .ok_or("program_not_loaded")?;
        // A person's call says nothing of its own: the person speaks.
        if attempt.caller().is_some() {
            return Ok(Message {
                text: String::new(),
                html: None,
                subject: None,
                language: attempt.language,
                fell_back: false,
            });
        }
        // A coordinator's own words go out as written.
        if let Some(body) = &attempt.body {
            return Ok(Message {
                text: body.clone(),
                html: None,
                subject: Some(
                    attempt
                        .subject
                        .clone()
                        .unwrap_or_else(|| program.name.clone()),
                ),
                language: attempt.language,
                fell_back: false,
            });
        }
        let templates = catalogue
            .templates(&attempt.program_id)
            .ok_or("program_not_loaded")?;
        // A caregiver's message is written without the patient's name.
        let facts = if attempt.to_caregiver {
            MessageFacts {
                audience: Audience::Caregiver,
                program_name: program.name.clone(),
                ..MessageFacts::default()
            }
        } else {
            MessageFacts {
                first_name: attempt.first_name.clone(),
                last_name: attempt.last_name.clone(),
                program_name: program.name.clone(),
                audience: Audience::Patient,
            }
        };
        templates
            .render(
                &attempt.template_id,
                attempt.language,
                attempt.channel,
                &facts,
            )
            .map_err(|_| "render")
    }

    /// For a fax or a letter, `message` as the document that goes out: a cover
    /// page naming the patient and the program, then the text.
    fn document(
        &self,
        attempt: &Attempt,
        message: &Message,
        now: DateTime<Utc>,
    ) -> Option<FaxDocument> {
        let kind = match attempt.channel {
            Channel::Fax => fax::Kind::Fax,
            Channel::Mail => fax::Kind::Letter,
            _ => return None,
        };
        let catalogue = self.catalogue.current();
        let program = catalogue.get(&attempt.program_id)?;
        let to = format!("{} {}", attempt.first_name, attempt.last_name);
        let cover = Cover {
            kind,
            to: to.trim(),
            from: &program.name,
            subject: message.subject.as_deref(),
            date: now.date_naive(),
            language: message.language,
        };
        Some(fax::render(&cover, &message.text))
    }
}

impl Handing {
    fn outgoing(&self) -> Outgoing<'_> {
        Outgoing {
            attempt_id: self.attempt.attempt_id,
            case_id: &self.attempt.case_id,
            channel: self.attempt.channel,
            destination: &self.attempt.destination,
            addressee: (&self.attempt.first_name, &self.attempt.last_name),
            message: &self.message,
            document: self.document.as_ref(),
            caller: self.attempt.caller(),
        }
    }

    fn written(&self) -> Written {
        written(self.attempt.channel, &self.message, self.document.as_ref())
    }
}

/// What `message` was written in, for its `AttemptSent`.
fn written(channel: Channel, message: &Message, document: Option<&FaxDocument>) -> Written {
    Written {
        pages: document.map_or(0, |d| d.pages),
        language: message.language,
        fell_back: message.fell_back,
        segments: match channel {
            Channel::Sms => sms::measure(&message.text).segments as u32,
            _ => 0,
        },
    }
}

/// The wait before try `tries + 1`: doubling from [`FIRST_BACKOFF`] up to
/// [`MAX_BACKOFF`], spread by up to a fifth so attempts that failed together do
/// not all come back together. The spread is taken from the attempt id, so it is
/// the same for a given attempt and try.
fn backoff(attempt: &Attempt, tries: u32) -> TimeDelta {
    let doubled = FIRST_BACKOFF * 2_i32.saturating_pow(tries.saturating_sub(1).min(16));
    let base = doubled.min(MAX_BACKOFF);
    let seed = attempt
        .attempt_id
        .as_u128()
        .wrapping_mul(u128::from(tries) + 1);
    let spread_ms = base.num_milliseconds() / 5;
    let jitter = if spread_ms > 0 {
        (seed % spread_ms as u128) as i64
    } else {
        0
    };
    base + TimeDelta::milliseconds(jitter)
}
