//! SLA alerts by email: a callback past its due time, or a possible adverse
//! event not reviewed within its 24 hours, is mailed to the program's
//! supervisors through the SMTP relay that carries patient mail.
//!
//! Intake watches what routing promises (`CallbackRequested`,
//! `AdverseEventSuspected`) and stops watching when its task is done or
//! withdrawn (`TaskCompleted`, `TaskWithdrawn`). A loop claims what has come
//! due (`SKIP LOCKED`, so replicas share it), mails one message per program
//! and marks it sent. An alert carries case ids, what is late and since when,
//! and links to the desk: never a name, a number, an address or a message.
//! A claim found unsent after a crash is mailed again: an alert twice is
//! better than none.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use touchpoint_platform::clock::SharedClock;
use touchpoint_platform::config::ConfigError;

use crate::providers::email::Mailer;

/// Alerts claimed per round.
const BATCH: i64 = 200;
/// How long a mailed or closed watch is kept after its due time.
const KEPT: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// Who is told of each program's alerts: `TOUCHPOINT_SLA_ALERT_TO`, e.g.
/// `adherence=lead@hub.example+nurse@hub.example,*=ops@hub.example` (`*`:
/// every program without its own list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipients(BTreeMap<String, Vec<String>>);

impl Recipients {
    /// Parses the variable's value; a bad entry names the variable.
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        const VAR: &str = "TOUCHPOINT_SLA_ALERT_TO";
        let bad = |reason: &str| ConfigError {
            var: VAR.into(),
            reason: reason.into(),
        };
        let mut map = BTreeMap::new();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (program, addresses) = entry
                .split_once('=')
                .ok_or_else(|| bad("each entry is program=address+address"))?;
            let addresses: Vec<String> = addresses
                .split('+')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect();
            if addresses.is_empty()
                || addresses
                    .iter()
                    .any(|a| a.parse::<lettre::message::Mailbox>().is_err())
            {
                return Err(bad("an address is not a valid mailbox"));
            }
            map.insert(program.trim().to_owned(), addresses);
        }
        Ok(Self(map))
    }

    /// The addresses for `program_id`'s alerts.
    pub fn of(&self, program_id: &str) -> &[String] {
        self.0
            .get(program_id)
            .or_else(|| self.0.get("*"))
            .map_or(&[], Vec::as_slice)
    }

    /// Whether anyone is told of anything.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One late piece of work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Late {
    /// `callback` or `adverse_event`.
    pub kind: String,
    /// The case.
    pub case_id: String,
    /// The program.
    pub program_id: String,
    /// When it was due.
    pub due_at: DateTime<Utc>,
}

/// The message for `program_id`'s late work: subject and text. Case ids,
/// times and links only.
pub fn message(program_id: &str, late: &[&Late], desk_url: Option<&str>) -> (String, String) {
    let subject = format!("Touchpoint: {} SLA alert(s) in {program_id}", late.len());
    let mut text = format!("Work in the {program_id} program is late (times in UTC):\n\n");
    for l in late {
        let what = match l.kind.as_str() {
            "callback" => "Callback past its due time",
            "adverse_event" => "Possible adverse event not reviewed within 24 hours",
            _ => "Late work",
        };
        let _ = write!(
            text,
            "- {what}, due {}: case {}",
            l.due_at.format("%Y-%m-%d %H:%M"),
            l.case_id
        );
        if let Some(url) = desk_url {
            let _ = write!(text, " {}/cases/{}", url.trim_end_matches('/'), l.case_id);
        }
        text.push('\n');
    }
    text.push_str(
        "\nThis message holds case ids and links only. Open the case in the desk to act on it.\n",
    );
    (subject, text)
}

/// The loop that mails alerts.
#[derive(Debug, Clone)]
pub struct SlaAlerts {
    /// Dispatch's schema.
    pub pool: PgPool,
    /// What "due" is judged by.
    pub clock: SharedClock,
    /// The relay; without one, alerts are only logged.
    pub mailer: Option<Mailer>,
    /// Who is told.
    pub recipients: Recipients,
    /// The desk's URL, for links.
    pub desk_url: Option<String>,
}

impl SlaAlerts {
    /// Mails what comes due, every `poll`, until `shutdown`.
    pub async fn run(
        self,
        poll: Duration,
        shutdown: CancellationToken,
    ) -> Result<(), std::convert::Infallible> {
        // A claim a crash left unsent is mailed again.
        if let Err(error) =
            sqlx::query("UPDATE sla_watch SET state = 'watching' WHERE state = 'sending'")
                .execute(&self.pool)
                .await
        {
            tracing::warn!(%error, "could not release unsent SLA alerts");
        }
        loop {
            let wait = match self.round().await {
                Ok(n) if n as i64 == BATCH => Duration::ZERO,
                Ok(_) => poll,
                Err(error) => {
                    tracing::warn!(%error, "SLA alert round failed");
                    poll
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Claims what is due, mails it by program, marks it sent; returns how
    /// many were claimed. Forgets what was mailed or closed a month ago.
    pub async fn round(&self) -> Result<usize, sqlx::Error> {
        let now = self.clock.now();
        sqlx::query("DELETE FROM sla_watch WHERE state IN ('sent', 'closed') AND due_at < $1")
            .bind(now - KEPT)
            .execute(&self.pool)
            .await?;
        let claimed: Vec<(String, String, String, String, DateTime<Utc>)> = sqlx::query_as(
            "UPDATE sla_watch w SET state = 'sending'
             FROM (SELECT kind, key FROM sla_watch
                   WHERE state = 'watching' AND due_at <= $1
                   ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED) due
             WHERE w.kind = due.kind AND w.key = due.key
             RETURNING w.kind, w.key, w.case_id, w.program_id, w.due_at",
        )
        .bind(now)
        .bind(BATCH)
        .fetch_all(&self.pool)
        .await?;
        let mut by_program: BTreeMap<String, Vec<(String, Late)>> = BTreeMap::new();
        for (kind, key, case_id, program_id, due_at) in claimed.iter().cloned() {
            by_program.entry(program_id.clone()).or_default().push((
                key,
                Late {
                    kind,
                    case_id,
                    program_id,
                    due_at,
                },
            ));
        }
        for (program_id, items) in &by_program {
            let to = self.recipients.of(program_id);
            let late: Vec<&Late> = items.iter().map(|(_, l)| l).collect();
            let sent = match (&self.mailer, to.is_empty()) {
                (Some(mailer), false) => {
                    let (subject, text) = message(program_id, &late, self.desk_url.as_deref());
                    mailer.send_notice(to, &subject, &text).await
                }
                _ => {
                    tracing::warn!(
                        program = %program_id,
                        alerts = late.len(),
                        "SLA alerts with no relay or no recipients (TOUCHPOINT_SLA_ALERT_TO)"
                    );
                    Ok(())
                }
            };
            let (kinds, keys): (Vec<&str>, Vec<&str>) = items
                .iter()
                .map(|(key, l)| (l.kind.as_str(), key.as_str()))
                .unzip();
            let state = match sent {
                Ok(()) => "sent",
                Err(error) => {
                    tracing::warn!(program = %program_id, %error, "an SLA alert was not mailed; retrying");
                    "watching"
                }
            };
            sqlx::query(
                "UPDATE sla_watch w SET state = $3, notified_at = CASE WHEN $3 = 'sent' THEN $4 END
                 FROM UNNEST($1::text[], $2::text[]) AS a(kind, key)
                 WHERE w.kind = a.kind AND w.key = a.key",
            )
            .bind(&kinds)
            .bind(&keys)
            .bind(state)
            .bind(now)
            .execute(&self.pool)
            .await?;
        }
        Ok(claimed.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_read_per_program_with_a_fallback_and_a_bad_address_is_refused() {
        let r =
            Recipients::parse("adherence=lead@hub.example+nurse@hub.example, *=ops@hub.example")
                .unwrap_or_default();
        assert_eq!(r.of("adherence"), ["lead@hub.example", "nurse@hub.example"]);
        assert_eq!(r.of("refill-reminder"), ["ops@hub.example"]);
        assert!(Recipients::parse("adherence=not an address").is_err());
        assert!(Recipients::parse("adherence").is_err());
        assert!(Recipients::parse("").is_ok_and(|r| r.is_empty()));
    }

    #[test]
    fn an_alert_names_cases_and_links_only() {
        let late = Late {
            kind: "callback".into(),
            case_id: "case-1".into(),
            program_id: "adherence".into(),
            due_at: DateTime::from_timestamp(1_799_168_400, 0).unwrap_or_default(),
        };
        let (subject, text) = message("adherence", &[&late], Some("https://desk.hub.example/"));
        assert_eq!(subject, "Touchpoint: 1 SLA alert(s) in adherence");
        assert!(
            text.contains(
                "- Callback past its due time, due 2027-01-05 17:00: case case-1 https://desk.hub.example/cases/case-1"
            ),
            "{text}"
        );
    }
}
