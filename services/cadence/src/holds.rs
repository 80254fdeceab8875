//! What the case timeline is told when automated outreach is held or goes on:
//! a person's `PauseOutreach` and `ResumeOutreach`, and the hold an
//! adverse-event flag puts until its review task is completed.
//!
//! Pure: the events a change means for an enrolment as it stands before the
//! change.

use chrono::{DateTime, Utc};
use touchpoint_platform::envelope::timestamp;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{OutreachHeld, OutreachResumed};

use crate::enrolment::{Change, Enrolment};

/// The event `change` means for `enrolment` (as it is before the change), if
/// it puts or lifts a review hold; a repeat of either means nothing.
pub fn review_note(enrolment: &Enrolment, change: &Change) -> Option<Payload> {
    match change {
        Change::AdverseEventFlagged { review_task_id }
            if !enrolment.safety_reviews.contains(review_task_id) =>
        {
            Some(Payload::OutreachHeld(OutreachHeld {
                reason: "adverse_event_review".into(),
                by: String::new(),
                until: None,
                review_task_id: review_task_id.clone(),
            }))
        }
        Change::ReviewCompleted { task_id, by } if enrolment.safety_reviews.contains(task_id) => {
            Some(Payload::OutreachResumed(OutreachResumed {
                reason: "adverse_event_reviewed".into(),
                by: by.clone(),
                review_task_id: task_id.clone(),
            }))
        }
        _ => None,
    }
}

/// A person's pause, until `until` if set.
pub fn paused(by: &str, until: Option<DateTime<Utc>>) -> Payload {
    Payload::OutreachHeld(OutreachHeld {
        reason: "paused".into(),
        by: by.to_owned(),
        until: until.map(timestamp),
        review_task_id: String::new(),
    })
}

/// A person's resumption.
pub fn resumed(by: &str) -> Payload {
    Payload::OutreachResumed(OutreachResumed {
        reason: "resumed".into(),
        by: by.to_owned(),
        review_task_id: String::new(),
    })
}
