//! SLA alerts by email: a callback past its due time, or a possible adverse
//! event not reviewed within its 24 hours, is mailed to the program's
//! supervisors through the SMTP relay that carries patient mail; so is each,
//! once, when it comes within two hours of its due time, and a program's
//! backlog (attempts due and still not made) older than its `backlog_hours`,
//! at most every six hours while it lasts.
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
/// Work this close to its due time is warned of.
const SOON: chrono::TimeDelta = chrono::TimeDelta::hours(2);
/// A backlog that lasts is mailed again after this.
const BACKLOG_AGAIN: chrono::TimeDelta = chrono::TimeDelta::hours(6);
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
    /// Not late yet: due within two hours.
    pub soon: bool,
}

/// The message for `program_id`'s late work: subject and text. Case ids,
/// times and links only.
pub fn message(program_id: &str, late: &[&Late], desk_url: Option<&str>) -> (String, String) {
    let subject = format!("Touchpoint: {} SLA alert(s) in {program_id}", late.len());
    let mut text =
        format!("Work in the {program_id} program is late or due soon (times in UTC):\n\n");
    for l in late {
        let what = match (l.kind.as_str(), l.soon) {
            ("callback", false) => "Callback past its due time",
            ("callback", true) => "Callback due within 2 hours",
            ("adverse_event", false) => "Possible adverse event not reviewed within 24 hours",
            ("adverse_event", true) => "Possible adverse event to review within 2 hours",
            (_, false) => "Late work",
            (_, true) => "Work due within 2 hours",
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

/// The message for a program's backlog: `count` attempts due and not made
/// for longer than `limit_hours`, the oldest due at `oldest`.
pub fn backlog_message(
    program_id: &str,
    count: i64,
    oldest: DateTime<Utc>,
    limit_hours: f64,
    desk_url: Option<&str>,
) -> (String, String) {
    let subject = format!("Touchpoint: backlog SLA alert in {program_id}");
    let mut text = format!(
        "{count} touchpoint(s) of the {program_id} program have been due for longer than \
         {limit_hours} hours and are not made yet; the oldest was due {} UTC.\n",
        oldest.format("%Y-%m-%d %H:%M")
    );
    if let Some(url) = desk_url {
        let _ = writeln!(
            text,
            "The operations page: {}/operations?program={program_id}",
            url.trim_end_matches('/')
        );
    }
    text.push_str("\nThis message holds counts and links only.\n");
    (subject, text)
}

/// The programs whose queued attempts are older than their limit, with how
/// many and the oldest due time; `queued` holds, by program, how many of its
/// attempts are past its `limit` hours and the oldest due time.
pub fn backlogs(
    queued: &[(String, i64, DateTime<Utc>)],
    limit: impl Fn(&str) -> Option<f64>,
    now: DateTime<Utc>,
) -> Vec<(&str, i64, DateTime<Utc>, f64)> {
    queued
        .iter()
        .filter_map(|(program, count, oldest)| {
            let hours = limit(program)?;
            let over = chrono::TimeDelta::seconds((hours * 3600.0) as i64);
            (*count > 0 && *oldest + over < now).then_some((
                program.as_str(),
                *count,
                *oldest,
                hours,
            ))
        })
        .collect()
}

/// A claimed row of `sla_watch`: kind, key, case, program, due time.
type Claimed = (String, String, String, String, DateTime<Utc>);

/// Claimed rows by program, each with its key; `soon`: warnings, not late.
fn by_program(claimed: Vec<Claimed>, soon: bool) -> BTreeMap<String, Vec<(String, Late)>> {
    let mut by_program: BTreeMap<String, Vec<(String, Late)>> = BTreeMap::new();
    for (kind, key, case_id, program_id, due_at) in claimed {
        by_program.entry(program_id.clone()).or_default().push((
            key,
            Late {
                kind,
                case_id,
                program_id,
                due_at,
                soon,
            },
        ));
    }
    by_program
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
    /// The programs, for their backlog limits.
    pub catalogue: std::sync::Arc<touchpoint_programs::LiveCatalogue>,
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
        let claimed: Vec<Claimed> = sqlx::query_as(
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
        let count = claimed.len();
        for (program_id, items) in &by_program(claimed, false) {
            let late: Vec<&Late> = items.iter().map(|(_, l)| l).collect();
            let (subject, text) = message(program_id, &late, self.desk_url.as_deref());
            let sent = self.mail(program_id, &subject, &text, late.len()).await;
            let (kinds, keys): (Vec<&str>, Vec<&str>) = items
                .iter()
                .map(|(key, l)| (l.kind.as_str(), key.as_str()))
                .unzip();
            let state = if sent.is_ok() { "sent" } else { "watching" };
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
        self.warn(now).await?;
        self.backlog(now).await?;
        Ok(count)
    }

    /// Mails, once, what comes within two hours of its due time.
    async fn warn(&self, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        let claimed: Vec<Claimed> = sqlx::query_as(
            "UPDATE sla_watch w SET warned = true
             FROM (SELECT kind, key FROM sla_watch
                   WHERE state = 'watching' AND NOT warned AND due_at > $1 AND due_at <= $2
                   ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED) soon
             WHERE w.kind = soon.kind AND w.key = soon.key
             RETURNING w.kind, w.key, w.case_id, w.program_id, w.due_at",
        )
        .bind(now)
        .bind(now + SOON)
        .bind(BATCH)
        .fetch_all(&self.pool)
        .await?;
        for (program_id, items) in &by_program(claimed, true) {
            let soon: Vec<&Late> = items.iter().map(|(_, l)| l).collect();
            let (subject, text) = message(program_id, &soon, self.desk_url.as_deref());
            if self
                .mail(program_id, &subject, &text, soon.len())
                .await
                .is_err()
            {
                let (kinds, keys): (Vec<&str>, Vec<&str>) = items
                    .iter()
                    .map(|(key, l)| (l.kind.as_str(), key.as_str()))
                    .unzip();
                sqlx::query(
                    "UPDATE sla_watch w SET warned = false
                     FROM UNNEST($1::text[], $2::text[]) AS a(kind, key)
                     WHERE w.kind = a.kind AND w.key = a.key",
                )
                .bind(&kinds)
                .bind(&keys)
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(())
    }

    /// Mails each program whose backlog is older than its `backlog_hours`, at
    /// most every six hours while it lasts.
    async fn backlog(&self, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
        let catalogue = self.catalogue.current();
        let limits: BTreeMap<String, f64> = catalogue
            .iter()
            .filter_map(|p| Some((p.id.clone(), p.targets.backlog_hours?)))
            .collect();
        if limits.is_empty() {
            return Ok(());
        }
        let (programs, hours): (Vec<&str>, Vec<f64>) =
            limits.iter().map(|(p, h)| (p.as_str(), *h)).unzip();
        let queued: Vec<(String, i64, DateTime<Utc>)> = sqlx::query_as(
            "SELECT a.program_id, count(*), min(a.due_at)
             FROM attempts a
             JOIN UNNEST($2::text[], $3::float8[]) AS l(program_id, hours) USING (program_id)
             WHERE a.state = 'queued' AND a.due_at < $1 - make_interval(secs => l.hours * 3600)
             GROUP BY a.program_id",
        )
        .bind(now)
        .bind(&programs)
        .bind(&hours)
        .fetch_all(&self.pool)
        .await?;
        for (program_id, count, oldest, hours) in backlogs(&queued, |p| limits.get(p).copied(), now)
        {
            // Claimed for this round unless mailed within six hours.
            let claimed: Option<String> = sqlx::query_scalar(
                "INSERT INTO sla_backlog (program_id, notified_at) VALUES ($1, $2)
                 ON CONFLICT (program_id) DO UPDATE SET notified_at = $2
                 WHERE sla_backlog.notified_at <= $3
                 RETURNING program_id",
            )
            .bind(program_id)
            .bind(now)
            .bind(now - BACKLOG_AGAIN)
            .fetch_optional(&self.pool)
            .await?;
            if claimed.is_none() {
                continue;
            }
            let (subject, text) =
                backlog_message(program_id, count, oldest, hours, self.desk_url.as_deref());
            if self.mail(program_id, &subject, &text, 1).await.is_err() {
                sqlx::query("DELETE FROM sla_backlog WHERE program_id = $1")
                    .bind(program_id)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Mails `program_id`'s supervisors; without a relay or recipients, logs.
    async fn mail(
        &self,
        program_id: &str,
        subject: &str,
        text: &str,
        alerts: usize,
    ) -> Result<(), ()> {
        let to = self.recipients.of(program_id);
        match (&self.mailer, to.is_empty()) {
            (Some(mailer), false) => mailer.send_notice(to, subject, text).await.map_err(|error| {
                tracing::warn!(program = %program_id, %error, "an SLA alert was not mailed; retrying");
            }),
            _ => {
                tracing::warn!(
                    program = %program_id,
                    alerts,
                    "SLA alerts with no relay or no recipients (TOUCHPOINT_SLA_ALERT_TO)"
                );
                Ok(())
            }
        }
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
            soon: false,
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

    #[test]
    fn a_backlog_is_an_alert_only_past_its_programs_limit() {
        let now = DateTime::from_timestamp(1_799_168_400, 0).unwrap_or_default();
        let hours = |h: i64| now - chrono::TimeDelta::hours(h);
        let queued = vec![
            ("adherence".to_owned(), 3, hours(30)),
            ("refill-reminder".to_owned(), 2, hours(6)),
            ("no-limit".to_owned(), 9, hours(100)),
        ];
        let limit = |p: &str| match p {
            "adherence" => Some(24.0),
            "refill-reminder" => Some(12.0),
            _ => None,
        };
        let over: Vec<(&str, i64)> = backlogs(&queued, limit, now)
            .into_iter()
            .map(|(p, n, ..)| (p, n))
            .collect();
        assert_eq!(over, [("adherence", 3)]);
        let (subject, text) = backlog_message(
            "adherence",
            3,
            hours(30),
            24.0,
            Some("https://desk.hub.example"),
        );
        assert_eq!(subject, "Touchpoint: backlog SLA alert in adherence");
        assert!(
            text.contains(
                "3 touchpoint(s) of the adherence program have been due for longer than 24 hours"
            ),
            "{text}"
        );
        assert!(text.contains("https://desk.hub.example/operations?program=adherence"));
    }
}
