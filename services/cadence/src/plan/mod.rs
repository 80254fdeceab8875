//! Cadence math, free of I/O: when each step of a program is due for a case, which
//! attempt comes after a failed one, when a step ends, and when a message may
//! actually go out given the contact window and the frequency cap.
//!
//! Times are instants (UTC); the patient's time zone only matters for the window
//! and the cap's days.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use touchpoint_proto::v1::Channel;

use crate::program::{Anchor, ExitRule, Program, Step};

/// What the cadence knows about a case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseFacts {
    /// The patient's time zone.
    pub time_zone: Tz,
    /// When the case was enrolled.
    pub enrolled_at: DateTime<Utc>,
    /// When therapy started, once known.
    pub therapy_start: Option<DateTime<Utc>>,
    /// The next refill due date, once known.
    pub refill_due: Option<DateTime<Utc>>,
    /// Channels the patient has consented to and not opted out of.
    pub reachable: BTreeSet<Channel>,
}

/// One attempt of a step: which channel, which try on it, and when it is due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Index into the step's channels.
    pub channel_index: usize,
    /// The channel.
    #[serde(with = "crate::stored::channel")]
    pub channel: Channel,
    /// 1-based attempt number on this channel.
    pub number: u32,
    /// When it is due by the program (before window and cap).
    pub due_at: DateTime<Utc>,
}

/// The instant a step's anchor happened, if it has. `completed` holds the steps
/// that are done and when.
pub fn anchor_instant(
    step: &Step,
    facts: &CaseFacts,
    completed: &BTreeMap<String, DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    match &step.anchor {
        Anchor::Enrolled => Some(facts.enrolled_at),
        Anchor::TherapyStart => facts.therapy_start,
        Anchor::RefillDue => facts.refill_due,
        Anchor::AfterStep(earlier) => completed.get(earlier).copied(),
    }
}

/// The first attempt of `step`: on its first reachable channel, at anchor + offset.
/// None while the anchor is unknown, or if no channel of the step is reachable.
pub fn first_attempt(
    step: &Step,
    facts: &CaseFacts,
    completed: &BTreeMap<String, DateTime<Utc>>,
) -> Option<Attempt> {
    let due_at = anchor_instant(step, facts, completed)? + step.offset;
    let channel_index = reachable_from(step, facts, 0)?;
    Some(Attempt {
        channel_index,
        channel: step.channels[channel_index].channel,
        number: 1,
        due_at,
    })
}

/// After `failed` (failed, unanswered, or its channel became unreachable) at
/// `now`: another try on the same channel after its wait, else the next reachable
/// channel at once, else None (the step is exhausted).
pub fn next_attempt(
    step: &Step,
    failed: &Attempt,
    facts: &CaseFacts,
    now: DateTime<Utc>,
) -> Option<Attempt> {
    let plan = step.channels.get(failed.channel_index)?;
    if failed.number < plan.attempts && facts.reachable.contains(&plan.channel) {
        return Some(Attempt {
            number: failed.number + 1,
            due_at: now + plan.wait,
            ..failed.clone()
        });
    }
    next_channel(step, failed, facts, now)
}

/// How long an attempt on a channel with no `wait` is given to be answered before
/// the step falls back to its next channel.
pub const DEFAULT_ANSWER_WAIT: TimeDelta = TimeDelta::days(1);

/// After `made` was requested at `at`, if it goes unanswered: another try on the
/// same channel after its wait, else the next reachable channel once the answer
/// wait has passed (the channel's `wait`, or [`DEFAULT_ANSWER_WAIT`]). None when the
/// step has no attempt left.
pub fn follow_up(
    step: &Step,
    made: &Attempt,
    facts: &CaseFacts,
    at: DateTime<Utc>,
) -> Option<Attempt> {
    let plan = step.channels.get(made.channel_index)?;
    if made.number < plan.attempts && facts.reachable.contains(&plan.channel) {
        return Some(Attempt {
            number: made.number + 1,
            due_at: at + plan.wait,
            ..made.clone()
        });
    }
    next_channel(step, made, facts, at + answer_wait(step, made))
}

/// How long `made` is given to be answered before the step moves past its
/// channel: the channel's `wait`, or [`DEFAULT_ANSWER_WAIT`] when it has none.
pub fn answer_wait(step: &Step, made: &Attempt) -> TimeDelta {
    step.channels
        .get(made.channel_index)
        .map(|plan| plan.wait)
        .filter(|wait| *wait > TimeDelta::zero())
        .unwrap_or(DEFAULT_ANSWER_WAIT)
}

/// The first attempt on the next reachable channel after `current`'s, due at
/// `due_at`: where a step goes when a channel can no longer be used (a permanent
/// failure, consent revoked, an opt-out).
pub fn next_channel(
    step: &Step,
    current: &Attempt,
    facts: &CaseFacts,
    due_at: DateTime<Utc>,
) -> Option<Attempt> {
    let channel_index = reachable_from(step, facts, current.channel_index + 1)?;
    Some(Attempt {
        channel_index,
        channel: step.channels[channel_index].channel,
        number: 1,
        due_at,
    })
}

/// Whether `happened` ends `step` (its remaining attempts are cancelled).
pub fn ends_step(step: &Step, happened: ExitRule) -> bool {
    step.exit_when.contains(&happened)
}

fn reachable_from(step: &Step, facts: &CaseFacts, from: usize) -> Option<usize> {
    (from..step.channels.len()).find(|i| facts.reachable.contains(&step.channels[*i].channel))
}

/// The earliest instant at or after `due` when a message may go out: inside the
/// program's contact window in the patient's time zone, with fewer than the cap's
/// messages on that local day and in the 7 days before it. `sent` lists when
/// earlier messages to this patient went out. None if no such instant within a year.
pub fn deliverable_at(
    program: &Program,
    tz: Tz,
    sent: &[DateTime<Utc>],
    due: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let mut at = program.window.next_open(tz, due)?;
    for _ in 0..400 {
        match program.cap.blocks_until(tz, sent, at) {
            None => return Some(at),
            Some(free) => {
                at = program
                    .window
                    .next_open(tz, free.max(at + TimeDelta::seconds(1)))?
            }
        }
    }
    None
}

#[cfg(test)]
mod tests;
