//! A case enrolled in a program: what cadence knows of the case, one run of each
//! step, the touchpoint each run is waiting to send, and how all of it reacts to
//! what happens on the case.
//!
//! The consumers [`Enrolment::apply`] changes; the due loop calls
//! [`Enrolment::wake`] when [`Enrolment::wake_at`] has come, and appends the
//! requests it returns to the outbox; the preview runs the same code on a
//! simulated clock. Pure: every method takes the program, a `now` and a source of
//! attempt ids, and touches nothing else.
//!
//! A run is one pass through a step, measured from its anchor's instant. A run is
//! *live* while it is scheduled, running (an attempt was requested) or blocked (no
//! channel is reachable); it ends completed (the patient responded), exhausted
//! (its last attempt went unanswered for its wait) or cancelled (an exit rule, an
//! opt-out, closure). Steps anchored `after:` another start when that one
//! completes or is exhausted.

mod destinations;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use touchpoint_proto::v1::{Channel, ContactPoint, Language};
use uuid::Uuid;

pub use destinations::{Destinations, PersonContacts, Point};

use crate::library::Shelf;
use crate::plan::{
    Attempt, CaseFacts, anchor_instant, answer_wait, deliverable_at, first_attempt, follow_up,
    next_attempt, next_channel,
};
use crate::program::{Anchor, ExitRule, Program, Step};

/// How long sends are remembered for the frequency cap (its week, and a margin).
const SENT_MEMORY: TimeDelta = TimeDelta::days(8);
/// How much later an attempt dispatch held back for timing is tried again, so a
/// clock that disagrees with dispatch's cannot make the two bounce it at once.
pub const DEFERRED_RETRY_AFTER: TimeDelta = TimeDelta::minutes(15);
/// Passes of one wake: each sends, moves a touchpoint later or ends a run, so a
/// program's steps are far fewer; the bound only guards against a loop.
const MAX_PASSES: usize = 256;

/// Where new attempt ids come from.
pub trait AttemptIds {
    /// A fresh attempt id.
    fn next_id(&mut self) -> Uuid;
}

/// UUIDv7 attempt ids, for the service.
#[derive(Debug, Default, Clone, Copy)]
pub struct V7Ids;

impl AttemptIds for V7Ids {
    fn next_id(&mut self) -> Uuid {
        Uuid::now_v7()
    }
}

/// 1, 2, 3… as ids, for previews and tests that compare whole states.
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingIds(u128);

impl AttemptIds for CountingIds {
    fn next_id(&mut self) -> Uuid {
        self.0 += 1;
        Uuid::from_u128(self.0)
    }
}

/// The case's status as the cases service last said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CaseStatus {
    /// Outreach goes on.
    Active,
    /// Outreach is held, until `until` if set.
    Paused {
        /// When the pause ends by itself.
        until: Option<DateTime<Utc>>,
    },
    /// Nothing more is sent.
    Closed,
}

/// A hold on outreach put by `PauseOutreach`, apart from the case's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// When it ends by itself; None: when released.
    pub until: Option<DateTime<Utc>>,
}

/// Why a run was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The patient opted out and the step lists `opted_out`.
    OptedOut,
    /// The case was paused and the step lists `paused`.
    Paused,
    /// The case was closed.
    Closed,
    /// Therapy stopped and the step lists `therapy_stopped`.
    TherapyStopped,
    /// The program no longer has the step.
    StepRemoved,
    /// The contact window has no open day within a year.
    NoOpenDay,
    /// Its touchpoint was no longer true when it could go out (a refill
    /// reminder after the refill date, a step past its `expires`).
    Expired,
}

impl EndReason {
    /// The reason as `GetPlan` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::OptedOut => "opted_out",
            EndReason::Paused => "paused",
            EndReason::Closed => "closed",
            EndReason::TherapyStopped => "therapy_stopped",
            EndReason::StepRemoved => "step_removed",
            EndReason::NoOpenDay => "no_open_day",
            EndReason::Expired => "expired",
        }
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RunState {
    /// Its first touchpoint is planned.
    Scheduled,
    /// An attempt was requested; more may follow.
    Running,
    /// No channel of the step is reachable; it starts when one becomes so.
    Blocked,
    /// The patient responded.
    Completed {
        /// When.
        at: DateTime<Utc>,
    },
    /// Every attempt was made and the last went unanswered for its wait.
    Exhausted {
        /// When the last one's wait ran out.
        at: DateTime<Utc>,
    },
    /// Ended early.
    Cancelled {
        /// When.
        at: DateTime<Utc>,
        /// Why.
        reason: EndReason,
    },
}

/// The touchpoint a run is waiting to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Its attempt id, chosen now so `GetPlan` can show it and outcomes find it.
    pub attempt_id: Uuid,
    /// Its channel, try and due time.
    pub attempt: Attempt,
    /// When it is next looked at: the due time moved into the contact window, or
    /// later under the cap or a pause.
    pub send_at: DateTime<Utc>,
    /// Held by an open-ended pause: not looked at until the pause ends.
    pub held: bool,
}

/// An attempt that was requested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Made {
    /// Its attempt id.
    pub attempt_id: Uuid,
    /// Its channel, try and due time.
    pub attempt: Attempt,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
}

/// One pass through a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRun {
    /// The instant its anchor happened.
    pub anchor_at: DateTime<Utc>,
    /// Where it stands.
    pub state: RunState,
    /// The touchpoint it waits to send.
    pub pending: Option<Pending>,
    /// The attempts requested so far, oldest first.
    pub made: Vec<Made>,
    /// With nothing left to send: when the last attempt, unanswered, is given up
    /// on. The run then moves to a channel that has become reachable, or is
    /// exhausted; until then a reply completes it.
    #[serde(default)]
    pub answer_by: Option<DateTime<Utc>>,
}

impl StepRun {
    /// Scheduled, running or blocked.
    pub fn is_live(&self) -> bool {
        matches!(
            self.state,
            RunState::Scheduled | RunState::Running | RunState::Blocked
        )
    }

    fn started(&self) -> bool {
        !self.made.is_empty()
    }

    /// When the run ended in its own course (answered, exhausted, or expired):
    /// what an `after:` step follows.
    fn finished_at(&self) -> Option<DateTime<Utc>> {
        match self.state {
            RunState::Completed { at }
            | RunState::Exhausted { at }
            | RunState::Cancelled {
                at,
                reason: EndReason::Expired,
            } => Some(at),
            _ => None,
        }
    }

    fn cancel(&mut self, at: DateTime<Utc>, reason: EndReason) {
        self.state = RunState::Cancelled { at, reason };
        self.pending = None;
        self.answer_by = None;
    }

    /// What the run waits for, and when: its touchpoint's send time, or (nothing
    /// left to send) the end of the last attempt's answer wait. None while held
    /// or ended.
    fn next_look(&self) -> Option<DateTime<Utc>> {
        if !self.is_live() {
            return None;
        }
        match &self.pending {
            Some(p) if p.held => None,
            Some(p) => Some(p.send_at),
            None => self.answer_by,
        }
    }
}

/// An outreach request the due loop emits: an `OutreachRequested`.
#[derive(Clone, PartialEq)]
pub struct Request {
    /// Unique per attempt; dispatch's idempotency key.
    pub attempt_id: Uuid,
    /// The step.
    pub step_id: String,
    /// The template to render.
    pub template: String,
    /// The channel.
    pub channel: Channel,
    /// 1-based attempt number on the channel.
    pub number: u32,
    /// The language to write in.
    pub language: Language,
    /// Where to send it (patient data).
    pub destination: ContactPoint,
    /// The destination is the caregiver's: the caregiver's text goes, which
    /// names neither the patient nor their condition.
    pub to_caregiver: bool,
    /// When the program made it due.
    pub due_at: DateTime<Utc>,
    /// When it was requested.
    pub requested_at: DateTime<Utc>,
    /// The contact window's close that day: dispatch must not hand it over later.
    pub not_after: DateTime<Utc>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("attempt_id", &self.attempt_id)
            .field("step_id", &self.step_id)
            .field("channel", &self.channel)
            .field("number", &self.number)
            .field("due_at", &self.due_at)
            .field("requested_at", &self.requested_at)
            .finish_non_exhaustive()
    }
}

/// What a case is enrolled with, from its `CaseOpened`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEnrolment {
    /// The program.
    pub program_id: String,
    /// The case's preferred language.
    pub language: Language,
    /// The patient's time zone.
    pub time_zone: Tz,
    /// When the case was enrolled.
    pub enrolled_at: DateTime<Utc>,
    /// Its contact points.
    pub destinations: Destinations,
}

/// Something that happened to the case, as cadence needs to know it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// New contact points (boxed: they hold two postal addresses).
    ContactPoints(Box<Destinations>),
    /// Consent was recorded on a channel (also a new consent after an opt-out).
    ConsentGranted(Channel),
    /// Consent was revoked on a channel: nothing more is sent there.
    ConsentRevoked(Channel),
    /// The patient opted out on a channel (STOP): nothing more is sent there, and
    /// steps listing `opted_out` end.
    OptedOut(Channel),
    /// One number or address opted out of a channel. When it is where the
    /// channel reaches the case now, that is the case's opt-out (as
    /// `OptedOut`); otherwise only that contact point is passed over.
    DestinationOptedOut {
        /// The channel.
        channel: Channel,
        /// The number or address.
        point: Point,
    },
    /// One number or address opted back in.
    DestinationOptedIn {
        /// The channel.
        channel: Channel,
        /// The number or address.
        point: Point,
    },
    /// Therapy started.
    TherapyStarted(DateTime<Utc>),
    /// A fill: the next refill is due `days_supply` days after it.
    Filled {
        /// When.
        at: DateTime<Utc>,
        /// Days of supply.
        days_supply: u32,
    },
    /// Therapy stopped.
    TherapyStopped(DateTime<Utc>),
    /// The case was paused.
    Paused {
        /// When the pause ends by itself.
        until: Option<DateTime<Utc>>,
    },
    /// The case is active again.
    Resumed,
    /// The case was closed.
    Closed,
    /// The patient answered, to a known attempt or not.
    Responded {
        /// The attempt answered, when known.
        in_reply_to: Option<Uuid>,
    },
    /// An attempt cannot reach the patient on its channel: a permanent failure,
    /// or dispatch found no consent or an opt-out. The step moves to its next
    /// channel at once.
    ChannelFailed {
        /// The attempt.
        attempt_id: Uuid,
    },
    /// An attempt failed after dispatch's own retries: the step goes on by its
    /// plan (another try after the wait, else the next channel).
    AttemptFailed {
        /// The attempt.
        attempt_id: Uuid,
    },
    /// Dispatch held an attempt back for timing (outside the window, over the cap,
    /// too late): it never went out, so the same attempt is tried again later
    /// under a new id.
    AttemptDeferred {
        /// The attempt.
        attempt_id: Uuid,
    },
    /// `PauseOutreach`.
    Hold {
        /// When the hold ends by itself.
        until: Option<DateTime<Utc>>,
    },
    /// `ResumeOutreach`.
    ReleaseHold,
    /// A possible adverse event was flagged: automated outreach waits until a
    /// person has completed its review task.
    AdverseEventFlagged {
        /// The review task.
        review_task_id: String,
    },
    /// An adverse-event review task was completed.
    ReviewCompleted {
        /// The task.
        task_id: String,
        /// Who completed it.
        by: String,
    },
}

/// A case enrolled in a program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enrolment {
    /// The program.
    pub program_id: String,
    /// The version of the program it runs on (enrolments from before versions:
    /// the first).
    #[serde(default = "first_version")]
    pub program_version: u32,
    /// The case's preferred language.
    #[serde(with = "crate::stored::language")]
    pub language: Language,
    /// The patient's time zone.
    pub time_zone: Tz,
    /// When the case was enrolled.
    pub enrolled_at: DateTime<Utc>,
    /// When therapy started, once known.
    pub therapy_start: Option<DateTime<Utc>>,
    /// When the next refill is due, once a fill is known.
    pub refill_due: Option<DateTime<Utc>>,
    /// When therapy stopped, if it did.
    pub therapy_stopped: Option<DateTime<Utc>>,
    /// Channels with consent recorded and not revoked.
    #[serde(with = "crate::stored::channels")]
    pub consented: BTreeSet<Channel>,
    /// Channels the patient opted out of.
    #[serde(with = "crate::stored::channels")]
    pub opted_out: BTreeSet<Channel>,
    /// Contact points.
    pub destinations: Destinations,
    /// The case's status.
    pub status: CaseStatus,
    /// A hold by `PauseOutreach`.
    pub hold: Option<Hold>,
    /// Adverse-event reviews not yet completed, by task id: while any is open,
    /// automated outreach is held.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub safety_reviews: BTreeSet<String>,
    /// One run per step that has started, by step id.
    pub runs: BTreeMap<String, StepRun>,
    /// When messages were requested in the last days, for the frequency cap.
    pub sent: Vec<DateTime<Utc>>,
}

fn first_version() -> u32 {
    1
}

impl Enrolment {
    /// A new enrolment on the program's first version; set
    /// [`Enrolment::program_version`] to the newest, then call
    /// [`Enrolment::replan`] to plan its steps.
    pub fn open(new: NewEnrolment) -> Self {
        Self {
            program_id: new.program_id,
            program_version: first_version(),
            language: new.language,
            time_zone: new.time_zone,
            enrolled_at: new.enrolled_at,
            therapy_start: None,
            refill_due: None,
            therapy_stopped: None,
            consented: BTreeSet::new(),
            opted_out: BTreeSet::new(),
            destinations: new.destinations,
            status: CaseStatus::Active,
            hold: None,
            safety_reviews: BTreeSet::new(),
            runs: BTreeMap::new(),
            sent: Vec::new(),
        }
    }

    /// The case opted out of `channel`: nothing more is sent there, and steps
    /// listing `opted_out` end.
    fn opt_out(&mut self, program: Option<&Program>, channel: Channel, now: DateTime<Utc>) {
        self.opted_out.insert(channel);
        if let Some(program) = program {
            self.exit(program, ExitRule::OptedOut, now);
        }
    }

    /// The version of its program the enrolment runs on, from `shelf`, as it
    /// applies in the patient's state (the strictest of the program and the
    /// state's rule).
    pub fn program<'s>(&self, shelf: &'s Shelf) -> Option<&'s Program> {
        shelf
            .at(&self.program_id, self.program_version)?
            .for_patient(&self.program_id, self.destinations.patient.whereabouts())
    }

    /// Whether `channel` may be used now: consented, not opted out, and with a
    /// contact point.
    pub fn reachable(&self, channel: Channel) -> bool {
        self.consented.contains(&channel)
            && !self.opted_out.contains(&channel)
            && self.destinations.for_channel(channel).is_some()
    }

    /// The facts the plan math reads.
    pub fn facts(&self) -> CaseFacts {
        CaseFacts {
            time_zone: self.time_zone,
            enrolled_at: self.enrolled_at,
            therapy_start: self.therapy_start,
            refill_due: self.refill_due,
            reachable: self
                .consented
                .iter()
                .copied()
                .filter(|c| self.reachable(*c))
                .collect(),
        }
    }

    /// The language messages are written in: the case's, if the program writes in
    /// it, else the program's first.
    pub fn language_for(&self, program: &Program) -> Language {
        if program.languages.contains(&self.language) {
            self.language
        } else {
            program.languages.first().copied().unwrap_or(self.language)
        }
    }

    /// When the due loop must next look at this case: the soonest touchpoint not
    /// held. None when nothing is waiting.
    pub fn wake_at(&self) -> Option<DateTime<Utc>> {
        if self.status == CaseStatus::Closed {
            return None;
        }
        self.runs.values().filter_map(StepRun::next_look).min()
    }

    /// If outreach is paused at `now`: `Some(None)` until told, `Some(Some(t))`
    /// until `t`. A pause whose end has passed no longer holds; an open
    /// adverse-event review holds until it is completed.
    pub fn paused_at(&self, now: DateTime<Utc>) -> Option<Option<DateTime<Utc>>> {
        if !self.safety_reviews.is_empty() {
            return Some(None);
        }
        let case_pause = match self.status {
            CaseStatus::Paused { until } => Some(until),
            _ => None,
        };
        let hold = self.hold.map(|h| h.until);
        let mut latest: Option<DateTime<Utc>> = None;
        for pause in [case_pause, hold].into_iter().flatten() {
            match pause {
                None => return Some(None),
                Some(until) if until > now => latest = latest.max(Some(until)),
                Some(_) => {}
            }
        }
        latest.map(Some)
    }

    /// Applies `change` at `now`, then plans what it made possible. Without the
    /// program (not loaded here) only the facts are kept.
    pub fn apply(
        &mut self,
        program: Option<&Program>,
        change: Change,
        now: DateTime<Utc>,
        ids: &mut impl AttemptIds,
    ) {
        match change {
            Change::ContactPoints(destinations) => {
                self.destinations = self.destinations.replaced_by(*destinations);
            }
            Change::DestinationOptedOut { channel, point } => {
                let reaches_now = self
                    .destinations
                    .for_channel(channel)
                    .is_some_and(|p| p.text() == Some(point.0.as_str()));
                self.destinations.set_opted_out(channel, &point.0, true);
                if reaches_now {
                    self.opt_out(program, channel, now);
                }
            }
            Change::DestinationOptedIn { channel, point } => {
                self.destinations.set_opted_out(channel, &point.0, false);
            }
            Change::ConsentGranted(channel) => {
                self.consented.insert(channel);
                self.opted_out.remove(&channel);
            }
            Change::ConsentRevoked(channel) => {
                self.consented.remove(&channel);
            }
            Change::OptedOut(channel) => self.opt_out(program, channel, now),
            Change::TherapyStarted(at) => self.therapy_start = Some(at),
            Change::Filled { at, days_supply } => {
                self.refill_due = Some(at + TimeDelta::days(i64::from(days_supply)));
            }
            Change::TherapyStopped(at) => {
                self.therapy_stopped = Some(at);
                if let Some(program) = program {
                    self.exit(program, ExitRule::TherapyStopped, now);
                }
            }
            Change::Paused { until } => {
                self.status = CaseStatus::Paused { until };
                if let Some(program) = program {
                    self.exit(program, ExitRule::Paused, now);
                }
            }
            Change::Resumed => self.status = CaseStatus::Active,
            Change::Closed => {
                self.status = CaseStatus::Closed;
                for run in self.runs.values_mut().filter(|r| r.is_live()) {
                    run.cancel(now, EndReason::Closed);
                }
            }
            Change::Hold { until } => self.hold = Some(Hold { until }),
            Change::ReleaseHold => self.hold = None,
            Change::AdverseEventFlagged { review_task_id } => {
                self.safety_reviews.insert(review_task_id);
            }
            Change::ReviewCompleted { task_id, .. } => {
                self.safety_reviews.remove(&task_id);
            }
            Change::Responded { in_reply_to } => {
                if let Some(program) = program {
                    self.respond(program, in_reply_to, now);
                }
            }
            Change::ChannelFailed { attempt_id } => {
                if let Some(program) = program {
                    self.after_failure(program, attempt_id, true, now, ids);
                }
            }
            Change::AttemptFailed { attempt_id } => {
                if let Some(program) = program {
                    self.after_failure(program, attempt_id, false, now, ids);
                }
            }
            Change::AttemptDeferred { attempt_id } => {
                if let Some(program) = program {
                    self.defer(program, attempt_id, now, ids);
                }
            }
        }
        if let Some(program) = program {
            // Whatever became unreachable moves on; whatever became possible starts.
            self.leave_unreachable_channels(program, now, ids);
            self.replan(program, now, ids);
        }
        if self.paused_at(now).is_none() {
            for pending in self.runs.values_mut().filter_map(|r| r.pending.as_mut()) {
                pending.held = false;
            }
        }
    }

    /// Starts the runs whose anchors are known and restarts those whose anchor
    /// moved: a new refill cycle, a corrected therapy start before anything was
    /// sent, an `after:` step whose predecessor ended again.
    pub fn replan(&mut self, program: &Program, now: DateTime<Utc>, ids: &mut impl AttemptIds) {
        if self.status == CaseStatus::Closed {
            return;
        }
        let facts = self.facts();
        // Program order: an `after:` step sees its predecessor as this pass left it.
        for step in &program.steps {
            let finished: BTreeMap<String, DateTime<Utc>> = self
                .runs
                .iter()
                .filter_map(|(id, run)| Some((id.clone(), run.finished_at()?)))
                .collect();
            let Some(anchor_at) = anchor_instant(step, &facts, &finished) else {
                continue;
            };
            if let Some(run) = self.runs.get_mut(&step.id) {
                if run.anchor_at == anchor_at {
                    // Before anything was sent, the run follows consent: a newly
                    // consented channel it prefers takes over, and a blocked run
                    // starts once a channel is reachable.
                    if run.is_live() && !run.started() {
                        let first = first_attempt(step, &facts, &finished);
                        let planned = run.pending.as_ref().map(|p| p.attempt.channel_index);
                        if first.as_ref().map(|a| a.channel_index) != planned {
                            match first {
                                Some(first) => {
                                    run.pending = Some(pending(
                                        ids.next_id(),
                                        &first,
                                        program,
                                        &facts,
                                        &self.sent,
                                    ));
                                    run.state = RunState::Scheduled;
                                }
                                None => {
                                    run.pending = None;
                                    run.state = RunState::Blocked;
                                }
                            }
                        }
                    }
                    continue;
                }
                if !restarts_when_moved(&step.anchor, run) {
                    continue;
                }
            }
            if !self.may_start(step) {
                continue;
            }
            let run = match first_attempt(step, &facts, &finished) {
                Some(first) => StepRun {
                    anchor_at,
                    state: RunState::Scheduled,
                    pending: Some(pending(ids.next_id(), &first, program, &facts, &self.sent)),
                    made: Vec::new(),
                    answer_by: None,
                },
                None => StepRun {
                    anchor_at,
                    state: RunState::Blocked,
                    pending: None,
                    made: Vec::new(),
                    answer_by: None,
                },
            };
            self.runs.insert(step.id.clone(), run);
        }
        self.forget_old_sends(now);
    }

    /// Requests every touchpoint due at `now` that the window, the cap and any
    /// pause allow; moves the others to when they may go. Without the program
    /// nothing is sent.
    pub fn wake(
        &mut self,
        program: &Program,
        now: DateTime<Utc>,
        ids: &mut impl AttemptIds,
    ) -> Vec<Request> {
        let mut requests = Vec::new();
        for _ in 0..MAX_PASSES {
            // Soonest first; at the same instant, the step that comes first in the
            // program, so the cap lets through the one the designer put first.
            let due = program
                .steps
                .iter()
                .enumerate()
                .filter_map(|(order, step)| {
                    let at = self.runs.get(&step.id)?.next_look()?;
                    (at <= now).then(|| ((at, order), step.id.clone()))
                })
                .chain(self.orphans(program, now))
                .min()
                .map(|(_, id)| id);
            let Some(step_id) = due else { break };
            let waiting = self.runs.get(&step_id).is_some_and(|r| r.pending.is_some());
            if !waiting {
                self.give_up_waiting(program, &step_id, now, ids);
            } else if let Some(request) = self.fire(program, &step_id, now, ids) {
                requests.push(request);
            }
        }
        self.forget_old_sends(now);
        requests
    }

    /// The steps whose run ended expired, with when.
    pub fn expired(&self) -> Vec<(String, DateTime<Utc>)> {
        self.runs
            .iter()
            .filter_map(|(id, run)| match run.state {
                RunState::Cancelled {
                    at,
                    reason: EndReason::Expired,
                } => Some((id.clone(), at)),
                _ => None,
            })
            .collect()
    }

    /// Looks at one due touchpoint: sends it, moves it, or ends its run.
    fn fire(
        &mut self,
        program: &Program,
        step_id: &str,
        now: DateTime<Utc>,
        ids: &mut impl AttemptIds,
    ) -> Option<Request> {
        let Some(step) = program.steps.iter().find(|s| s.id == step_id) else {
            self.run_mut(step_id)?.cancel(now, EndReason::StepRemoved);
            return None;
        };
        if self.status == CaseStatus::Closed {
            self.run_mut(step_id)?.cancel(now, EndReason::Closed);
            return None;
        }
        // A touchpoint that is no longer true is never sent: not after a pause,
        // not on a retry under a new attempt id.
        let expires_at = self
            .runs
            .get(step_id)
            .and_then(|run| step.expires_at(run.anchor_at));
        if expires_at.is_some_and(|at| now >= at) {
            self.run_mut(step_id)?.cancel(now, EndReason::Expired);
            return None;
        }
        if let Some(until) = self.paused_at(now) {
            let pending = self.run_mut(step_id)?.pending.as_mut()?;
            match until {
                Some(until) => pending.send_at = until,
                None => pending.held = true,
            }
            return None;
        }
        let waiting = self.runs.get(step_id)?.pending.clone()?;
        let channel = waiting.attempt.channel;
        let Some(destination) = self
            .reachable(channel)
            .then(|| self.destinations.for_channel(channel))
            .flatten()
        else {
            self.move_to_next_channel(program, step, now, ids);
            return None;
        };
        let tz = self.time_zone;
        match deliverable_at(program, tz, &self.sent, now) {
            None => {
                self.run_mut(step_id)?.cancel(now, EndReason::NoOpenDay);
                return None;
            }
            Some(at) if expires_at.is_some_and(|expires| at >= expires) => {
                self.run_mut(step_id)?.cancel(now, EndReason::Expired);
                return None;
            }
            Some(at) if at > now => {
                self.run_mut(step_id)?.pending.as_mut()?.send_at = at;
                return None;
            }
            Some(_) => {}
        }
        let request = Request {
            attempt_id: waiting.attempt_id,
            step_id: step.id.clone(),
            template: step.template.clone(),
            channel,
            number: waiting.attempt.number,
            language: self.language_for(program),
            to_caregiver: self.destinations.is_caregivers(&destination),
            destination,
            due_at: waiting.attempt.due_at,
            requested_at: now,
            not_after: program.window.closes_on(tz, now).unwrap_or(now),
        };
        self.sent.push(now);
        let facts = self.facts();
        let made = Made {
            attempt_id: waiting.attempt_id,
            attempt: waiting.attempt,
            requested_at: now,
        };
        let next = follow_up(step, &made.attempt, &facts, now);
        let answer_by = now + answer_wait(step, &made.attempt);
        let run = self.runs.get_mut(step_id)?;
        run.made.push(made);
        run.state = RunState::Running;
        match next {
            Some(next) => {
                run.pending = Some(pending(ids.next_id(), &next, program, &facts, &self.sent));
            }
            None => {
                run.pending = None;
                run.answer_by = Some(answer_by);
            }
        }
        Some(request)
    }

    /// The last attempt of a run went unanswered for its wait: the run moves to a
    /// channel that has become reachable meanwhile, or is exhausted.
    fn give_up_waiting(
        &mut self,
        program: &Program,
        step_id: &str,
        now: DateTime<Utc>,
        ids: &mut impl AttemptIds,
    ) {
        let Some(step) = program.steps.iter().find(|s| s.id == step_id) else {
            if let Some(run) = self.runs.get_mut(step_id) {
                run.cancel(now, EndReason::StepRemoved);
            }
            return;
        };
        let facts = self.facts();
        let Some(run) = self.runs.get_mut(step_id) else {
            return;
        };
        let (Some(answer_by), Some(last)) = (run.answer_by.take(), run.made.last()) else {
            return;
        };
        match next_channel(step, &last.attempt, &facts, now) {
            Some(next) => {
                run.pending = Some(pending(ids.next_id(), &next, program, &facts, &self.sent));
            }
            None => {
                run.state = RunState::Exhausted { at: answer_by };
                self.replan(program, now, ids);
            }
        }
    }

    /// Ends the live runs whose step lists `rule`.
    fn exit(&mut self, program: &Program, rule: ExitRule, now: DateTime<Utc>) {
        let reason = match rule {
            ExitRule::OptedOut => EndReason::OptedOut,
            ExitRule::Paused => EndReason::Paused,
            ExitRule::TherapyStopped => EndReason::TherapyStopped,
            ExitRule::Closed => EndReason::Closed,
            ExitRule::Responded => return, // ends a run as completed: see `respond`
        };
        for step in program.steps.iter().filter(|s| s.exit_when.contains(&rule)) {
            if let Some(run) = self.runs.get_mut(&step.id).filter(|r| r.is_live()) {
                run.cancel(now, reason);
            }
        }
    }

    /// Completes the running step the response answers (all running steps when it
    /// answers no known attempt), where the step lists `responded`.
    fn respond(&mut self, program: &Program, in_reply_to: Option<Uuid>, now: DateTime<Utc>) {
        let answered: Option<String> = in_reply_to.and_then(|id| {
            self.runs
                .iter()
                .find(|(_, run)| run.made.iter().any(|m| m.attempt_id == id))
                .map(|(step_id, _)| step_id.clone())
        });
        for step in &program.steps {
            if answered.as_ref().is_some_and(|a| *a != step.id)
                || !step.exit_when.contains(&ExitRule::Responded)
            {
                continue;
            }
            if let Some(run) = self.runs.get_mut(&step.id)
                && run.state == RunState::Running
            {
                run.state = RunState::Completed { at: now };
                run.pending = None;
                run.answer_by = None;
            }
        }
    }

    /// After the latest attempt of a run failed: the next channel at once when the
    /// channel cannot be used, else the step's plan.
    fn after_failure(
        &mut self,
        program: &Program,
        attempt_id: Uuid,
        channel_unusable: bool,
        now: DateTime<Utc>,
        ids: &mut impl AttemptIds,
    ) {
        let Some((step, failed)) = self.latest_attempt(program, attempt_id) else {
            return;
        };
        let facts = self.facts();
        let next = if channel_unusable {
            next_channel(step, &failed.attempt, &facts, now)
        } else {
            next_attempt(step, &failed.attempt, &facts, now)
        };
        let Some(run) = self.runs.get_mut(&step.id) else {
            return;
        };
        run.answer_by = None;
        match next {
            Some(next) => {
                run.state = RunState::Running;
                run.pending = Some(pending(ids.next_id(), &next, program, &facts, &self.sent));
            }
            None if run.is_live() => {
                run.state = RunState::Exhausted { at: now };
                run.pending = None;
            }
            None => {}
        }
    }

    /// The same attempt again later, under a new id: it never went out, so it no
    /// longer counts against the cap.
    fn defer(
        &mut self,
        program: &Program,
        attempt_id: Uuid,
        now: DateTime<Utc>,
        ids: &mut impl AttemptIds,
    ) {
        let Some((step, deferred)) = self.latest_attempt(program, attempt_id) else {
            return;
        };
        if let Some(i) = self.sent.iter().position(|s| *s == deferred.requested_at) {
            self.sent.remove(i);
        }
        let tz = self.time_zone;
        let later = now + DEFERRED_RETRY_AFTER;
        let send_at = deliverable_at(program, tz, &self.sent, later).unwrap_or(later);
        let Some(run) = self.runs.get_mut(&step.id) else {
            return;
        };
        run.state = RunState::Running;
        run.answer_by = None;
        run.pending = Some(Pending {
            attempt_id: ids.next_id(),
            attempt: deferred.attempt,
            send_at,
            held: false,
        });
    }

    /// The step of a run whose latest attempt is `attempt_id`, and that attempt,
    /// while the run is running or was exhausted by it. Outcomes of older attempts
    /// change nothing: the run has moved on.
    fn latest_attempt<'p>(
        &self,
        program: &'p Program,
        attempt_id: Uuid,
    ) -> Option<(&'p Step, Made)> {
        let (step_id, run) = self.runs.iter().find(|(_, run)| {
            run.made.last().is_some_and(|m| m.attempt_id == attempt_id)
                && matches!(run.state, RunState::Running | RunState::Exhausted { .. })
        })?;
        let step = program.steps.iter().find(|s| s.id == *step_id)?;
        Some((step, run.made.last()?.clone()))
    }

    /// Live runs waiting on a channel that can no longer be used move on.
    fn leave_unreachable_channels(
        &mut self,
        program: &Program,
        now: DateTime<Utc>,
        ids: &mut impl AttemptIds,
    ) {
        for step in &program.steps {
            let stuck = self
                .runs
                .get(&step.id)
                .filter(|r| r.is_live())
                .and_then(|r| r.pending.as_ref())
                .is_some_and(|p| !self.reachable(p.attempt.channel));
            if stuck {
                self.move_to_next_channel(program, step, now, ids);
            }
        }
    }

    /// The run of `step` leaves its pending channel for the next reachable one, at
    /// once; with none left it waits out its last attempt's answer (then is
    /// exhausted), or is blocked if nothing was sent yet.
    fn move_to_next_channel(
        &mut self,
        program: &Program,
        step: &Step,
        now: DateTime<Utc>,
        ids: &mut impl AttemptIds,
    ) {
        let facts = self.facts();
        let Some(run) = self.runs.get_mut(&step.id) else {
            return;
        };
        let Some(current) = run.pending.as_ref() else {
            return;
        };
        let current = current.attempt.clone();
        // The next channel takes the touchpoint's place: due when it was, or now if
        // that has passed.
        match next_channel(step, &current, &facts, now.max(current.due_at)) {
            Some(next) => {
                run.pending = Some(pending(ids.next_id(), &next, program, &facts, &self.sent))
            }
            None => {
                run.pending = None;
                match run.made.last() {
                    // Nothing more can go out; the last attempt out may still be
                    // answered, so the run waits out its answer wait as usual.
                    Some(last) => {
                        let waited = last.requested_at + answer_wait(step, &last.attempt);
                        run.answer_by = Some(waited.max(now));
                    }
                    None => run.state = RunState::Blocked,
                }
            }
        }
    }

    /// Whether a new run of `step` may start now.
    fn may_start(&self, step: &Step) -> bool {
        let stopped =
            self.therapy_stopped.is_some() && step.exit_when.contains(&ExitRule::TherapyStopped);
        let paused = matches!(self.status, CaseStatus::Paused { .. })
            && step.exit_when.contains(&ExitRule::Paused);
        !(stopped || paused)
    }

    /// Due runs of steps the program no longer has, so a wake can end them.
    fn orphans(
        &self,
        program: &Program,
        now: DateTime<Utc>,
    ) -> Vec<((DateTime<Utc>, usize), String)> {
        self.runs
            .iter()
            .filter(|(id, run)| run.is_live() && !program.steps.iter().any(|s| s.id == **id))
            .filter_map(|(id, run)| {
                let at = run.next_look().filter(|at| *at <= now)?;
                Some(((at, usize::MAX), id.clone()))
            })
            .collect()
    }

    fn run_mut(&mut self, step_id: &str) -> Option<&mut StepRun> {
        self.runs.get_mut(step_id)
    }

    fn forget_old_sends(&mut self, now: DateTime<Utc>) {
        self.sent.retain(|s| *s > now - SENT_MEMORY);
    }
}

/// Whether a run starts over when its anchor's instant moves. A new fill starts a
/// new refill cycle whatever the old one did; other anchors move a run only before
/// it sent anything, or (an `after:` step) once it has ended.
fn restarts_when_moved(anchor: &Anchor, run: &StepRun) -> bool {
    match anchor {
        Anchor::RefillDue => true,
        Anchor::AfterStep(_) => !run.is_live() || !run.started(),
        Anchor::Enrolled | Anchor::TherapyStart => run.is_live() && !run.started(),
    }
}

/// A touchpoint waiting to send `attempt`, first looked at when the window and
/// the cap (given what was `sent`) would let it go. A wake checks both again.
fn pending(
    attempt_id: Uuid,
    attempt: &Attempt,
    program: &Program,
    facts: &CaseFacts,
    sent: &[DateTime<Utc>],
) -> Pending {
    Pending {
        attempt_id,
        attempt: attempt.clone(),
        send_at: deliverable_at(program, facts.time_zone, sent, attempt.due_at)
            .unwrap_or(attempt.due_at),
        held: false,
    }
}
