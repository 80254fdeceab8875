//! Open work whose reason is gone is withdrawn: a call task after the patient
//! opted out, was answered on another channel, or was flagged for a possible
//! adverse event; a call task or callback after voice consent was revoked or
//! the case was closed or paused.
//!
//! A task nobody is working becomes `withdrawn` (it leaves every worklist, and
//! its member's capacity is freed). A task a coordinator has claimed is not
//! taken from them mid-call: it stays theirs, marked with the reason. Either
//! way `TaskWithdrawn` goes on the case timeline, caused by the event that
//! took the reason away.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row as _};
use touchpoint_platform::envelope::new_envelope;
use touchpoint_platform::outbox::OutgoingEvent;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{CaseStatus, Channel, Envelope, TaskWithdrawn};

use crate::store::StoreError;
use crate::tasks::Kind;

/// Why open work was withdrawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The patient opted out.
    OptedOut,
    /// Voice consent was revoked.
    ConsentRevoked,
    /// The case was closed.
    CaseClosed,
    /// The case was paused.
    CasePaused,
    /// A reply answered the step the call was for.
    StepAnswered,
    /// A possible adverse event was flagged: a person reviews before outreach.
    AdverseEvent,
}

impl Reason {
    /// The published and stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::OptedOut => "opted_out",
            Reason::ConsentRevoked => "consent_revoked",
            Reason::CaseClosed => "case_closed",
            Reason::CasePaused => "case_paused",
            Reason::StepAnswered => "step_answered",
            Reason::AdverseEvent => "adverse_event",
        }
    }
}

/// What an event withdraws: the open tasks of these kinds on its case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Withdrawal {
    /// Why.
    pub reason: Reason,
    /// Which kinds of task.
    pub kinds: &'static [Kind],
}

const CALLS: &[Kind] = &[Kind::Call];
const CALLS_AND_CALLBACKS: &[Kind] = &[Kind::Call, Kind::Callback];

/// What `payload` withdraws, if anything. A callback the patient asked for
/// stays after a text's STOP or an adverse-event flag (a person still calls
/// them back); it goes when calls themselves may no longer be made.
pub fn withdrawal(payload: &Payload) -> Option<Withdrawal> {
    let voice = |channel: i32| {
        matches!(
            Channel::try_from(channel),
            Ok(Channel::Voice | Channel::Unspecified) | Err(_)
        )
    };
    let (reason, kinds) = match payload {
        Payload::OptOutReceived(o) if voice(o.channel) => (Reason::OptedOut, CALLS_AND_CALLBACKS),
        Payload::OptOutReceived(_) => (Reason::OptedOut, CALLS),
        Payload::ConsentRevoked(c) if c.channel == Channel::Voice as i32 => {
            (Reason::ConsentRevoked, CALLS_AND_CALLBACKS)
        }
        Payload::CaseStatusChanged(s) => match CaseStatus::try_from(s.status) {
            Ok(CaseStatus::Closed) => (Reason::CaseClosed, CALLS_AND_CALLBACKS),
            Ok(CaseStatus::Paused) => (Reason::CasePaused, CALLS_AND_CALLBACKS),
            _ => return None,
        },
        Payload::InboundReceived(r) if !r.in_reply_to_attempt_id.is_empty() => {
            (Reason::StepAnswered, CALLS)
        }
        Payload::AdverseEventSuspected(_) => (Reason::AdverseEvent, CALLS),
        _ => return None,
    };
    Some(Withdrawal { reason, kinds })
}

/// Withdraws `withdrawal`'s tasks of `cause`'s case at `now`; returns the
/// `TaskWithdrawn` events to publish on `topic`.
pub async fn withdraw(
    tx: &mut PgConnection,
    withdrawal: Withdrawal,
    cause: &Envelope,
    now: DateTime<Utc>,
    topic: &str,
) -> Result<Vec<OutgoingEvent>, StoreError> {
    let kinds: Vec<&str> = withdrawal.kinds.iter().map(|k| k.as_str()).collect();
    let rows = sqlx::query(
        "WITH hit AS (
             SELECT task_id, status AS was FROM tasks
             WHERE case_id = $1 AND kind = ANY($2) AND status IN ('open', 'claimed')
               AND withdrawn_reason IS NULL
             FOR UPDATE)
         UPDATE tasks t SET
             status = CASE WHEN hit.was = 'open' THEN 'withdrawn' ELSE t.status END,
             completed_at = CASE WHEN hit.was = 'open' THEN $4 ELSE t.completed_at END,
             withdrawn_reason = $3
         FROM hit WHERE t.task_id = hit.task_id
         RETURNING t.task_id, t.kind, hit.was, t.member_id, t.attempt_id",
    )
    .bind(&cause.case_id)
    .bind(&kinds)
    .bind(withdrawal.reason.as_str())
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    let mut freed = Vec::new();
    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let was: String = row.try_get("was")?;
        let member: Option<String> = row.try_get("member_id")?;
        let claimed = was == "claimed";
        if !claimed && let Some(member) = member {
            freed.push(member);
        }
        let task_id: uuid::Uuid = row.try_get("task_id")?;
        let payload = Payload::TaskWithdrawn(TaskWithdrawn {
            task_id: task_id.to_string(),
            kind: row.try_get("kind")?,
            reason: withdrawal.reason.as_str().into(),
            attempt_id: row
                .try_get::<Option<String>, _>("attempt_id")?
                .unwrap_or_default(),
            claimed,
        });
        events.push(OutgoingEvent::new(
            topic,
            new_envelope(&cause.case_id, crate::SPEC.name, now, payload, Some(cause)),
        ));
    }
    if !freed.is_empty() {
        // One decrement per freed task, several of one member's included.
        sqlx::query(
            "UPDATE members m SET open_tasks = GREATEST(m.open_tasks - f.n, 0)
             FROM (SELECT id, count(*)::int AS n FROM UNNEST($1::text[]) AS id GROUP BY id) AS f
             WHERE m.member_id = f.id",
        )
        .bind(&freed)
        .execute(&mut *tx)
        .await?;
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use touchpoint_proto::v1::{
        AdverseEventSuspected, CaseStatusChanged, ConsentRevoked, InboundReceived, OptOutReceived,
    };

    use super::*;

    #[test]
    fn each_reason_withdraws_what_it_takes_away() {
        let sms_stop = Payload::OptOutReceived(OptOutReceived {
            channel: Channel::Sms as i32,
            ..OptOutReceived::default()
        });
        let voice_stop = Payload::OptOutReceived(OptOutReceived {
            channel: Channel::Voice as i32,
            ..OptOutReceived::default()
        });
        let closed = Payload::CaseStatusChanged(CaseStatusChanged {
            status: CaseStatus::Closed as i32,
            ..CaseStatusChanged::default()
        });
        let resumed = Payload::CaseStatusChanged(CaseStatusChanged {
            status: CaseStatus::Active as i32,
            ..CaseStatusChanged::default()
        });
        let reply = Payload::InboundReceived(InboundReceived {
            in_reply_to_attempt_id: "a-1".into(),
            ..InboundReceived::default()
        });
        let unprompted = Payload::InboundReceived(InboundReceived::default());
        let sms_revoked = Payload::ConsentRevoked(ConsentRevoked {
            channel: Channel::Sms as i32,
            ..ConsentRevoked::default()
        });
        let voice_revoked = Payload::ConsentRevoked(ConsentRevoked {
            channel: Channel::Voice as i32,
            ..ConsentRevoked::default()
        });
        let flag = Payload::AdverseEventSuspected(AdverseEventSuspected::default());
        let found = |p: &Payload| withdrawal(p).map(|w| (w.reason, w.kinds));
        assert_eq!(found(&sms_stop), Some((Reason::OptedOut, CALLS)));
        assert_eq!(
            found(&voice_stop),
            Some((Reason::OptedOut, CALLS_AND_CALLBACKS))
        );
        assert_eq!(
            found(&closed),
            Some((Reason::CaseClosed, CALLS_AND_CALLBACKS))
        );
        assert_eq!(found(&resumed), None);
        assert_eq!(found(&reply), Some((Reason::StepAnswered, CALLS)));
        assert_eq!(found(&unprompted), None, "a reply that answers nothing");
        assert_eq!(
            found(&sms_revoked),
            None,
            "a text's consent is not a call's"
        );
        assert_eq!(
            found(&voice_revoked),
            Some((Reason::ConsentRevoked, CALLS_AND_CALLBACKS))
        );
        assert_eq!(found(&flag), Some((Reason::AdverseEvent, CALLS)));
    }
}
