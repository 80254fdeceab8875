//! An inbound contact, whatever its channel: identify the cases its sender
//! reaches, read keywords (SMS), screen free text for possible adverse events,
//! decide where it goes, and record it all with its events in one transaction.
//!
//! - A keyword message (STOP, START, HELP…) is handled as the keyword and not
//!   routed to a person; a message naming an opt-out word among other words is
//!   routed, with a review task.
//! - A keyword gets its answer (the opt-out confirmation, the opt-in
//!   confirmation, the program's help text) through dispatch's SMS path: an
//!   `OutreachRequested` for a keyword reply on `touchpoint.outreach.v1`.
//! - An opt-out (STOP, a clear phrase) is published for each case holding the
//!   sender of the programs it stops (`domain::opt_out_scope`): every case, or
//!   under `TOUCHPOINT_OPT_OUT_SCOPE=program` those of the programs it answers.
//! - A possible adverse event gives `AdverseEventSuspected` (due 24 hours after
//!   receipt) and a high-priority review task for the case's owner.
//! - A provider message id seen before is the same contact: nothing is recorded
//!   twice, and the first routing is answered again.
//!
//! The sender's number and the text are patient data: they are used here and
//! never logged.

use std::sync::{Arc, PoisonError, RwLock};

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use sqlx::{PgPool, Row as _};
use touchpoint_platform::contact::ContactKey;
use touchpoint_platform::envelope::{NO_CASE, new_envelope, timestamp};
use touchpoint_platform::outbox::OutgoingEvent;
use touchpoint_platform::trace_context::current_traceparent;
use touchpoint_programs::{ContactWindow, LiveCatalogue};
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    AdverseEventSuspected, CallbackRequested, Channel, ContactPoint, ContactRouted,
    InboundReceived, Language, OptInReceived, OptOutReceived, OutreachPurpose, OutreachRequested,
    contact_point,
};
use uuid::Uuid;

use crate::batcher::Batcher;
use crate::call_news::{self, CallNews};
use crate::domain::decision::{Decision, GENERAL_QUEUE, Rule, decide, missed_call, program_queue};
use crate::domain::keywords::{self, Intent, Phrases, Reading};
use crate::domain::opt_out_scope::{Holder, OptOutScope, Reach};
use crate::domain::roster::{DialTarget, Roster};
use crate::domain::screening::Lexicon;
use crate::domain::text::email_reply;
use crate::recorder::{self, Record, Recorder};
use crate::store::{self, FoundCase, Lookup, StoreError};
use crate::tasks::{HIGH_PRIORITY, Kind, NewTask};

/// How long after receipt a possible adverse event must be reported.
pub const REPORT_WITHIN: TimeDelta = TimeDelta::hours(24);

/// How long a keyword's answer may wait for dispatch. Carriers require the
/// answer, so a late one beats none (an hour lost STOP confirmations to a
/// dispatch backlog); a day later it would only puzzle.
const REPLY_WITHIN: TimeDelta = TimeDelta::hours(24);

/// The most senders one lookup statement identifies.
const MAX_LOOKUPS: usize = 256;

/// The step id keyword answers carry.
pub const KEYWORD_REPLY_STEP: &str = "keyword-reply";

/// A contact as it arrived.
#[derive(Clone)]
pub struct Contact {
    /// How it came.
    pub channel: Channel,
    /// Who sent it: a phone number or an email address (patient data).
    pub from: String,
    /// The provider's id for it, when it has one (deduplicates redeliveries).
    pub provider_message_id: Option<String>,
    /// Its text, for SMS and email (patient data).
    pub body: Option<String>,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
}

impl std::fmt::Debug for Contact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contact")
            .field("channel", &self.channel)
            .field("received_at", &self.received_at)
            .finish_non_exhaustive()
    }
}

/// What became of a contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// Its id.
    pub inbound_id: Uuid,
    /// The cases its sender reaches.
    pub case_ids: Vec<String>,
    /// Where it went; None for a keyword message.
    pub decision: Option<Decision>,
    /// The keyword it was, or the listed phrase it matched.
    pub keyword: Option<String>,
    /// Whether it had been received before.
    pub repeat: bool,
    /// The language of the first case it reaches (unknown for a repeat).
    pub language: Option<Language>,
}

/// Routing's settings for contacts.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// A callback is due this long after the next shift starts.
    pub callback_after: TimeDelta,
    /// A reply within this long of an attempt answers it.
    pub reply_window: TimeDelta,
    /// Which programs' messages an opt-out stops.
    pub opt_out_scope: OptOutScope,
}

/// Takes contacts in.
#[derive(Debug, Clone)]
pub struct Inbound {
    pool: PgPool,
    roster: Arc<RwLock<Roster>>,
    lexicon: Arc<Lexicon>,
    phrases: Arc<Phrases>,
    catalogue: Arc<LiveCatalogue>,
    topic: String,
    outreach_topic: String,
    settings: Settings,
    recorder: Recorder,
    finder: Batcher<Lookup, Vec<FoundCase>>,
}

impl Inbound {
    /// Contacts recorded in `pool`, routed over `roster`, screened with
    /// `lexicon`, read for opt-outs with `phrases`, their events published to
    /// `topic`, keyword answers asked of dispatch on `outreach_topic`;
    /// callbacks kept inside the contact windows of `catalogue`'s programs.
    pub fn new(
        pool: PgPool,
        (roster, catalogue): (Arc<RwLock<Roster>>, Arc<LiveCatalogue>),
        (lexicon, phrases): (Arc<Lexicon>, Arc<Phrases>),
        topics: (String, String),
        settings: Settings,
    ) -> Self {
        let (topic, outreach_topic) = topics;
        Self {
            recorder: recorder::start(&pool),
            finder: Batcher::start(
                &pool,
                "sender lookups",
                MAX_LOOKUPS,
                |connection, lookups| Box::pin(store::cases_reached(connection, lookups)),
            ),
            pool,
            roster,
            lexicon,
            phrases,
            catalogue,
            topic,
            outreach_topic,
            settings,
        }
    }

    /// The patient's zone and contact window for `case`: the program's,
    /// narrowed by the patient's state's rule.
    fn window_of(&self, case: &FoundCase) -> Option<(Tz, ContactWindow)> {
        let catalogue = self.catalogue.current();
        let program = catalogue.in_state(&case.routing.program_id, case.us_state.as_deref())?;
        Some((case.time_zone?, program.window.clone()))
    }

    /// Whether a patient of `program_id` in `time_zone` (under `us_state`'s
    /// rule) may be called at `at`; `None` when the program is not loaded.
    pub fn callable_at(
        &self,
        program_id: &str,
        us_state: Option<&str>,
        time_zone: Tz,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Option<bool> {
        let catalogue = self.catalogue.current();
        let program = catalogue.in_state(program_id, us_state)?;
        Some(program.window.allows(time_zone, at))
    }

    /// Which programs' messages an opt-out stops.
    pub fn opt_out_scope(&self) -> OptOutScope {
        self.settings.opt_out_scope
    }

    /// The email addresses `case_id` holds now (patient data).
    pub async fn addresses_of(&self, case_id: &str) -> Result<Vec<ContactKey>, StoreError> {
        let keys: Vec<String> = sqlx::query_scalar(
            "SELECT contact_key FROM case_contacts
             WHERE case_id = $1 AND contact_key LIKE 'email:%'",
        )
        .bind(case_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(keys
            .iter()
            .filter_map(|k| ContactKey::parse_index_key(k))
            .collect())
    }

    /// Records `contact`, routes it and publishes its events.
    pub async fn receive(&self, contact: &Contact) -> Result<Routed, StoreError> {
        self.take_in(contact, None).await
    }

    /// A call that rang `member` (None: nobody) and was not answered: a
    /// callback on their worklist inside the patient's window and their
    /// shifts, with `CallbackRequested` on the case. `contact` is the missed
    /// dial, its provider message id its own, so a repeated report is the same
    /// callback; the call itself was received already.
    pub async fn missed(
        &self,
        contact: &Contact,
        member: Option<&str>,
    ) -> Result<Routed, StoreError> {
        self.take_in(contact, Some(member)).await
    }

    /// Where `member`'s calls ring, as the roster says (their client when the
    /// roster does not know them).
    pub fn dial_target(&self, member: &str) -> DialTarget {
        let roster = self.roster.read().unwrap_or_else(PoisonError::into_inner);
        roster
            .get(member)
            .map(|m| m.dial_to.clone())
            .unwrap_or_default()
    }

    /// Records what the provider reported of the call `call_sid` after it was
    /// routed ([`CallNews`]), once, as events on its cases.
    pub async fn call_news(
        &self,
        call_sid: &str,
        news: &CallNews,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        call_news::record(&self.pool, &self.topic, call_sid, news, at).await
    }

    /// `contact` routed by the rules, or, for a missed call (`missed` names
    /// who was rung), as a callback.
    async fn take_in(
        &self,
        contact: &Contact,
        missed: Option<Option<&str>>,
    ) -> Result<Routed, StoreError> {
        let channel_name = contact.channel.as_str_name();
        let sender = ContactKey::parse(&contact.from, "from").ok();
        let cases = match &sender {
            Some(key) => {
                let since = contact.received_at - self.settings.reply_window;
                self.finder
                    .call(Lookup {
                        contact_key: key.index_key(),
                        channel: channel_name,
                        since,
                    })
                    .await?
            }
            None => Vec::new(),
        };
        let reading = match (&contact.body, contact.channel) {
            (Some(body), Channel::Sms) => self.phrases.read(body),
            (Some(body), Channel::Email) => self.phrases.read(&email_reply(body)),
            _ => Reading::Text,
        };
        let keyword = match &reading {
            Reading::Keyword(k) => Some(k.clone()),
            _ => None,
        };
        let screening = match (&contact.body, &keyword) {
            (Some(body), None) => self.lexicon.screen(body),
            _ => Default::default(),
        };
        let owner = cases.first();
        let decision = keyword.is_none().then(|| {
            let roster = self.roster.read().unwrap_or_else(PoisonError::into_inner);
            let window = owner.and_then(|c| self.window_of(c));
            let window = window.as_ref().map(|(zone, window)| (*zone, window));
            match missed {
                Some(member) => missed_call(
                    member.and_then(|m| roster.get(m)),
                    roster.members().iter(),
                    owner.map_or_else(
                        || GENERAL_QUEUE.to_owned(),
                        |c| program_queue(&c.routing.program_id),
                    ),
                    contact.received_at,
                    (self.settings.callback_after, window),
                ),
                None => decide(
                    owner.map(|c| &c.routing),
                    &roster,
                    contact.received_at,
                    self.settings.callback_after,
                    window,
                ),
            }
        });

        let inbound_id = Uuid::now_v7();
        // What an opt-out or opt-in keyword says of the sender's number.
        let word = keyword.as_ref().map(|k| Word {
            intent: k.intent,
            inbound_id,
            channel: contact.channel,
            keyword: k.word.clone(),
            received_at: contact.received_at,
        });
        // Written by the batch writer's task: the events carry this request's
        // trace explicitly.
        let traceparent = current_traceparent();
        let mut events = Vec::new();
        let mut new_tasks = Vec::new();
        let event = |case_id: &str, payload: Payload| {
            OutgoingEvent::new(
                self.topic.clone(),
                new_envelope(
                    case_id,
                    crate::SPEC.name,
                    contact.received_at,
                    payload,
                    None,
                ),
            )
            .with_traceparent(traceparent.clone())
        };
        // The programs an opt-out stops; START lifts what the number said of
        // any.
        let reach = match &word {
            Some(w) if w.intent == Intent::OptOut => {
                self.settings
                    .opt_out_scope
                    .reach(cases.iter().map(|c| Holder {
                        program_id: &c.routing.program_id,
                        answered: c.in_reply_to.is_some(),
                    }))
            }
            _ => Reach::Every,
        };
        for (i, case) in cases.iter().enumerate() {
            let received = event(
                &case.case_id,
                Payload::InboundReceived(InboundReceived {
                    inbound_id: inbound_id.to_string(),
                    channel: contact.channel as i32,
                    received_at: Some(timestamp(contact.received_at)),
                    in_reply_to_attempt_id: case.in_reply_to.clone().unwrap_or_default(),
                }),
            );
            // One answer per keyword, on the first case's program.
            let reply = match (i, &keyword) {
                (0, Some(keyword)) => self
                    .keyword_reply(sender.as_ref(), contact, case, keyword, &received.envelope)
                    .map(|e| e.with_traceparent(traceparent.clone())),
                _ => None,
            };
            // A missed call was received when it rang.
            if missed.is_none() {
                events.push(received);
            }
            events.extend(reply);
            events.extend(
                word.as_ref()
                    .zip(reach.for_case(&case.routing.program_id))
                    .and_then(|(w, program_id)| w.payload(sender.as_ref(), program_id))
                    .map(|payload| event(&case.case_id, payload)),
            );
        }
        // A number no case holds yet keeps its word: cases honours it when the
        // number is put on a case, dispatch at once.
        let unheld = sender.as_ref().filter(|_| cases.is_empty());
        if let (Some(key), Some(word)) = (unheld, &word) {
            events.extend(
                word.payload(Some(key), String::new())
                    .map(|payload| event(NO_CASE, payload)),
            );
        }
        let task = |kind, case: Option<&FoundCase>, member_id, queue, priority, due_at| NewTask {
            task_id: Uuid::now_v7(),
            kind,
            case_id: case.map(|c| c.case_id.clone()).unwrap_or_default(),
            channel: channel_name.to_owned(),
            member_id,
            queue,
            priority,
            due_at,
            attempt_id: None,
            inbound_id: Some(inbound_id),
            created_at: contact.received_at,
            correlation_id: String::new(),
            callable: None,
            contact_key: None,
        };
        if let Some(decision) = &decision {
            let callback = decision.rule == Rule::Callback;
            // A live call is put through by the telephony system; only a missed
            // one needs a task. Every written contact gets one.
            if callback || contact.channel != Channel::Voice {
                let kind = if callback {
                    Kind::Callback
                } else {
                    Kind::Inbound
                };
                new_tasks.push(task(
                    kind,
                    owner,
                    decision.member_id.clone(),
                    decision.queue.clone(),
                    0,
                    decision.callback_due_at,
                ));
            }
            if matches!(reading, Reading::Unclear(_)) {
                new_tasks.push(task(
                    Kind::KeywordReview,
                    owner,
                    decision.member_id.clone(),
                    decision.queue.clone(),
                    0,
                    None,
                ));
            }
            for case in &cases {
                events.push(event(
                    &case.case_id,
                    Payload::ContactRouted(ContactRouted {
                        inbound_id: inbound_id.to_string(),
                        rule: decision.rule.as_str().into(),
                        coordinator_id: decision.member_id.clone().unwrap_or_default(),
                        queue: decision.queue.clone().unwrap_or_default(),
                        callback_due_at: decision.callback_due_at.map(timestamp),
                    }),
                ));
                if let (true, Some(first)) = (callback, new_tasks.first()) {
                    events.push(event(
                        &case.case_id,
                        Payload::CallbackRequested(CallbackRequested {
                            inbound_id: inbound_id.to_string(),
                            task_id: first.task_id.to_string(),
                            queue: decision.queue.clone().unwrap_or_default(),
                            due_at: decision.callback_due_at.map(timestamp),
                        }),
                    ));
                }
            }
        }
        if screening.flagged() {
            let due = contact.received_at + REPORT_WITHIN;
            // The case's owner reviews it; without one, whoever the contact went
            // to, else its queue.
            let member = owner
                .and_then(|c| c.routing.coordinator_id.clone())
                .or_else(|| decision.as_ref().and_then(|d| d.member_id.clone()));
            let queue = member
                .is_none()
                .then(|| decision.as_ref().and_then(|d| d.queue.clone()))
                .flatten();
            let review = task(
                Kind::AdverseEventReview,
                owner,
                member,
                queue,
                HIGH_PRIORITY,
                Some(due),
            );
            for case in &cases {
                events.push(event(
                    &case.case_id,
                    Payload::AdverseEventSuspected(AdverseEventSuspected {
                        inbound_id: inbound_id.to_string(),
                        matched_terms: screening.terms.clone(),
                        received_at: Some(timestamp(contact.received_at)),
                        report_due_at: Some(timestamp(due)),
                        review_task_id: review.task_id.to_string(),
                    }),
                ));
            }
            new_tasks.push(review);
        }
        let skills_pick = decision
            .as_ref()
            .filter(|d| d.rule == Rule::Skills)
            .and_then(|d| d.member_id.clone());
        let assigned: Vec<String> = new_tasks
            .iter()
            .filter_map(|t| t.member_id.clone())
            .collect();
        let written = self
            .recorder
            .call(Record {
                inbound_id,
                channel: channel_name,
                provider_message_id: contact.provider_message_id.clone(),
                case_ids: cases.iter().map(|c| c.case_id.clone()).collect(),
                rule: decision.as_ref().map_or("keyword", |d| d.rule.as_str()),
                member_id: decision.as_ref().and_then(|d| d.member_id.clone()),
                queue: decision.as_ref().and_then(|d| d.queue.clone()),
                received_at: contact.received_at,
                sender: sender
                    .as_ref()
                    .filter(|_| matches!(reading, Reading::Unclear(_)))
                    .map(ContactKey::index_key),
                tasks: new_tasks,
                skills_pick: skills_pick.clone(),
                events,
            })
            .await?;
        if !written {
            return self.earlier(contact).await;
        }

        // The cache follows what was just committed; the periodic reload
        // catches up with other replicas.
        {
            let mut roster = self.roster.write().unwrap_or_else(PoisonError::into_inner);
            for member in &assigned {
                if let Some(member) = roster.get_mut(member) {
                    member.open_tasks += 1;
                }
            }
            if let Some(member) = skills_pick.as_deref().and_then(|m| roster.get_mut(m)) {
                member.last_assigned_at = Some(contact.received_at);
            }
        }
        Ok(Routed {
            inbound_id,
            language: cases.first().map(|c| c.routing.language),
            case_ids: cases.into_iter().map(|c| c.case_id).collect(),
            decision,
            keyword: keyword.map(|k| k.word),
            repeat: false,
        })
    }

    /// The answer dispatch sends to `keyword`, texted by `sender` about `case`;
    /// None when the sender is not a phone number.
    fn keyword_reply(
        &self,
        sender: Option<&ContactKey>,
        contact: &Contact,
        case: &FoundCase,
        keyword: &keywords::Keyword,
        cause: &touchpoint_proto::v1::Envelope,
    ) -> Option<OutgoingEvent> {
        let Some(ContactKey::Phone(number)) = sender else {
            return None;
        };
        let template = match keyword.intent {
            Intent::OptOut => "keyword-stop",
            Intent::OptIn => "keyword-start",
            Intent::Help => "keyword-help",
        };
        let request = OutreachRequested {
            attempt_id: Uuid::now_v7().to_string(),
            program_id: case.routing.program_id.clone(),
            step_id: KEYWORD_REPLY_STEP.into(),
            channel: Channel::Sms as i32,
            template_id: template.into(),
            language: keyword.language.unwrap_or(case.routing.language) as i32,
            destination: Some(ContactPoint {
                value: Some(contact_point::Value::PhoneE164(number.as_str().to_owned())),
            }),
            due_at: Some(timestamp(contact.received_at)),
            not_after: Some(timestamp(contact.received_at + REPLY_WITHIN)),
            attempt_number: 1,
            purpose: OutreachPurpose::KeywordReply as i32,
            // Keyword answers name only the program, whoever texted.
            to_caregiver: false,
        };
        Some(OutgoingEvent::new(
            self.outreach_topic.clone(),
            new_envelope(
                &case.case_id,
                crate::SPEC.name,
                contact.received_at,
                Payload::OutreachRequested(request),
                Some(cause),
            ),
        ))
    }

    /// The contact with `contact`'s provider message id, as first routed.
    async fn earlier(&self, contact: &Contact) -> Result<Routed, StoreError> {
        let row = sqlx::query(
            "SELECT inbound_id, case_ids, rule, member_id, queue FROM inbound
             WHERE provider_message_id = $1",
        )
        .bind(&contact.provider_message_id)
        .fetch_one(&self.pool)
        .await?;
        let rule: String = row.try_get("rule")?;
        let rule = Rule::from_name(&rule);
        Ok(Routed {
            inbound_id: row.try_get("inbound_id")?,
            case_ids: row.try_get("case_ids")?,
            decision: rule
                .map(|rule| -> Result<Decision, sqlx::Error> {
                    Ok(Decision {
                        rule,
                        member_id: row.try_get("member_id")?,
                        queue: row.try_get("queue")?,
                        callback_due_at: None,
                    })
                })
                .transpose()?,
            keyword: None,
            repeat: true,
            language: None,
        })
    }
}

/// A sender's opt-out or opt-in: a keyword, or a review a person completed.
#[derive(Debug, Clone)]
pub struct Word {
    /// What it asks for.
    pub intent: Intent,
    /// The message it came in.
    pub inbound_id: Uuid,
    /// The channel it came on.
    pub channel: Channel,
    /// The keyword or listed phrase (never the sender's own words).
    pub keyword: String,
    /// When the message arrived: it counts from then.
    pub received_at: DateTime<Utc>,
}

impl Word {
    /// The event it is for a case, or about no case, from `sender`, an
    /// opt-out stopping `program_id`'s messages ("" for every program's); None
    /// for HELP, which asks nothing of the number.
    pub fn payload(&self, sender: Option<&ContactKey>, program_id: String) -> Option<Payload> {
        let (inbound_id, channel, keyword) = (
            self.inbound_id.to_string(),
            self.channel as i32,
            self.keyword.clone(),
        );
        let contact_point = sender.map(|key| key.to_contact_point(self.channel));
        let received_at = Some(timestamp(self.received_at));
        match self.intent {
            Intent::OptOut => Some(Payload::OptOutReceived(OptOutReceived {
                inbound_id,
                channel,
                keyword,
                contact_point,
                received_at,
                program_id,
            })),
            Intent::OptIn => Some(Payload::OptInReceived(OptInReceived {
                inbound_id,
                channel,
                keyword,
                contact_point,
                received_at,
            })),
            Intent::Help => None,
        }
    }
}
