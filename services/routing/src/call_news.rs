//! What became of a patient's call after routing answered it, as events on its
//! cases: who took it and for how long (`CallAnswered`), and the voicemail a
//! caller left for their callback (`VoicemailLeft`, naming the task and the
//! provider's recording). Each piece of news is recorded once, however often
//! the provider reports it; what was recorded is forgotten after the inbox's
//! retention.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use touchpoint_platform::envelope::{new_envelope, timestamp};
use touchpoint_platform::outbox::{self, OutgoingEvent};
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{CallAnswered, VoicemailLeft};
use uuid::Uuid;

use crate::store::StoreError;

/// Forgets news recorded longer than `retention` ago; returns how many. A
/// provider repeats a report for hours at most, so the inbox's retention
/// (`TOUCHPOINT_INBOX_RETENTION_DAYS`) is ample.
pub async fn purge(pool: &PgPool, retention: std::time::Duration) -> Result<u64, StoreError> {
    let purged =
        sqlx::query("DELETE FROM call_news WHERE recorded_at < now() - make_interval(secs => $1)")
            .bind(retention.as_secs_f64())
            .execute(pool)
            .await?
            .rows_affected();
    Ok(purged)
}

/// What the provider reported of a call routing took in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallNews {
    /// `member` took the call and spoke `seconds`.
    Answered {
        /// Their roster id.
        member: String,
        /// How long.
        seconds: u32,
    },
    /// The caller left a voicemail, kept by the provider as `recording_id`.
    Voicemail {
        /// The provider's recording id.
        recording_id: String,
        /// How long.
        seconds: u32,
    },
}

/// Records `news` of the call `call_sid` at `at`, publishing its events to
/// `topic` for each case the call reached; a report seen before changes
/// nothing. Returns whether anything was recorded (a call routing never took
/// in has nothing to tell).
pub async fn record(
    pool: &PgPool,
    topic: &str,
    call_sid: &str,
    news: &CallNews,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let call_key = format!("call:{call_sid}");
    let missed_key = format!("missed:{call_sid}");
    // The call as it was taken in, and the callback a voicemail belongs to (the
    // after-hours one, or the missed dial's).
    let taken: Option<(Uuid, Vec<String>)> =
        sqlx::query_as("SELECT inbound_id, case_ids FROM inbound WHERE provider_message_id = $1")
            .bind(&call_key)
            .fetch_optional(pool)
            .await?;
    let Some((inbound_id, case_ids)) = taken else {
        return Ok(false);
    };
    let (key, payloads) = match news {
        CallNews::Answered { member, seconds } => (
            format!("answered:{call_sid}"),
            case_ids
                .iter()
                .map(|case_id| {
                    let payload = Payload::CallAnswered(CallAnswered {
                        inbound_id: inbound_id.to_string(),
                        answered_by: member.clone(),
                        seconds: *seconds,
                        ended_at: Some(timestamp(at)),
                    });
                    (case_id.clone(), payload)
                })
                .collect::<Vec<_>>(),
        ),
        CallNews::Voicemail {
            recording_id,
            seconds,
        } => {
            let callback: Option<(Uuid, String)> = sqlx::query_as(
                "SELECT t.task_id, t.case_id FROM tasks t JOIN inbound i USING (inbound_id)
                 WHERE i.provider_message_id IN ($1, $2) AND t.kind = 'callback'
                 ORDER BY t.created_at DESC LIMIT 1",
            )
            .bind(&call_key)
            .bind(&missed_key)
            .fetch_optional(pool)
            .await?;
            let task_id = callback.as_ref().map(|(t, _)| t.to_string());
            let cases = match &callback {
                Some((_, case_id)) if !case_id.is_empty() => vec![case_id.clone()],
                _ => case_ids.clone(),
            };
            (
                format!("voicemail:{recording_id}"),
                cases
                    .into_iter()
                    .map(|case_id| {
                        let payload = Payload::VoicemailLeft(VoicemailLeft {
                            inbound_id: inbound_id.to_string(),
                            task_id: task_id.clone().unwrap_or_default(),
                            recording_id: recording_id.clone(),
                            seconds: *seconds,
                            left_at: Some(timestamp(at)),
                        });
                        (case_id, payload)
                    })
                    .collect(),
            )
        }
    };
    let mut tx = pool.begin().await?;
    let fresh = sqlx::query("INSERT INTO call_news (key) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(&key)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        == 1;
    if !fresh {
        return Ok(false);
    }
    let events: Vec<OutgoingEvent> = payloads
        .into_iter()
        .map(|(case_id, payload)| {
            OutgoingEvent::new(
                topic.to_owned(),
                new_envelope(&case_id, crate::SPEC.name, at, payload, None),
            )
        })
        .collect();
    outbox::append(&mut tx, &events).await?;
    tx.commit().await?;
    Ok(true)
}
