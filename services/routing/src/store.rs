//! Routing's tables: the roster, what it knows of cases, and the worklists.
//! Text columns hold the domain's values by name ('coordinator', 'available',
//! 'en'); a row that does not read back is an error naming the column.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool, Row as _};
use touchpoint_proto::v1::Language;

use crate::domain::decision::CaseRouting;
use crate::domain::roster::{DialTarget, Member, Presence, Role, Shift};

/// A stored row does not read back.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database.
    #[error("routing database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Events could not be queued.
    #[error(transparent)]
    Outbox(#[from] touchpoint_platform::outbox::OutboxError),
    /// The batch the contact was written in failed.
    #[error("routing batch failed: {0}")]
    Batch(String),
    /// The writer has stopped (the service is shutting down).
    #[error("routing is shutting down")]
    Stopped,
    /// A column holds a value this build does not know.
    #[error("routing store: column {0} holds an unknown value")]
    Corrupt(&'static str),
}

/// A storage failure reaches a client as `UNAVAILABLE`, which it retries.
impl From<StoreError> for tonic::Status {
    fn from(error: StoreError) -> Self {
        touchpoint_platform::grpc::storage_unavailable(&error, "try again")
    }
}

/// A shift as stored in `members.shifts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredShift {
    day: u8,
    start: String,
    end: String,
}

/// The role's stored name.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Coordinator => "coordinator",
        Role::Navigator => "navigator",
    }
}

fn role_from(name: &str) -> Option<Role> {
    match name {
        "coordinator" => Some(Role::Coordinator),
        "navigator" => Some(Role::Navigator),
        _ => None,
    }
}

/// The presence's stored name.
pub fn presence_name(presence: Presence) -> &'static str {
    match presence {
        Presence::Available => "available",
        Presence::Busy => "busy",
        Presence::Away => "away",
        Presence::Offline => "offline",
    }
}

fn presence_from(name: &str) -> Option<Presence> {
    match name {
        "available" => Some(Presence::Available),
        "busy" => Some(Presence::Busy),
        "away" => Some(Presence::Away),
        "offline" => Some(Presence::Offline),
        _ => None,
    }
}

/// The language's stored name.
pub fn language_name(language: Language) -> &'static str {
    match language {
        Language::Es => "es",
        Language::En | Language::Unspecified => "en",
    }
}

fn language_from(name: &str) -> Option<Language> {
    match name {
        "en" => Some(Language::En),
        "es" => Some(Language::Es),
        _ => None,
    }
}

/// ISO weekday number (1 = Monday).
pub fn weekday_from(number: u32) -> Option<Weekday> {
    match number {
        1 => Some(Weekday::Mon),
        2 => Some(Weekday::Tue),
        3 => Some(Weekday::Wed),
        4 => Some(Weekday::Thu),
        5 => Some(Weekday::Fri),
        6 => Some(Weekday::Sat),
        7 => Some(Weekday::Sun),
        _ => None,
    }
}

/// `HH:MM`.
pub fn time_from(text: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(text.trim(), "%H:%M").ok()
}

/// Writes `member` (its open work and last assignment are kept).
pub async fn save_member(pool: &PgPool, member: &Member) -> Result<(), StoreError> {
    let shifts: Vec<StoredShift> = member
        .shifts
        .iter()
        .map(|s| StoredShift {
            day: s.day.number_from_monday() as u8,
            start: s.start.format("%H:%M").to_string(),
            end: s.end.format("%H:%M").to_string(),
        })
        .collect();
    let shifts = serde_json::to_value(shifts).map_err(|_| StoreError::Corrupt("shifts"))?;
    // The member and the record of the change, in one statement.
    sqlx::query(
        "WITH saved AS (
             INSERT INTO members (member_id, role, time_zone, programs, languages, skills,
                                  capacity, presence, shifts, updated_by, dial_to)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (member_id) DO UPDATE SET
                 role = $2, time_zone = $3, programs = $4, languages = $5, skills = $6,
                 capacity = $7, presence = $8, shifts = $9, updated_by = $10, dial_to = $11,
                 updated_at = now()
             RETURNING member_id)
         INSERT INTO roster_changes (member_id, changed_by, settings)
         SELECT member_id, $10, jsonb_build_object('role', $2::text, 'time_zone', $3::text,
                    'programs', $4::text[], 'languages', $5::text[], 'skills', $6::text[],
                    'capacity', $7::int, 'presence', $8::text, 'shifts', $9::jsonb,
                    'dial_to', $11::text)
         FROM saved",
    )
    .bind(&member.id)
    .bind(role_name(member.role))
    .bind(member.time_zone.name())
    .bind(member.programs.iter().collect::<Vec<_>>())
    .bind(
        member
            .languages
            .iter()
            .map(|l| language_name(*l))
            .collect::<Vec<_>>(),
    )
    .bind(member.skills.iter().collect::<Vec<_>>())
    .bind(member.capacity as i32)
    .bind(presence_name(member.presence))
    .bind(shifts)
    .bind(&member.updated_by)
    .bind(member.dial_to.as_stored())
    .execute(pool)
    .await?;
    Ok(())
}

/// Sets a member's presence; false when there is no such member.
pub async fn set_presence(pool: &PgPool, id: &str, presence: Presence) -> Result<bool, StoreError> {
    let done =
        sqlx::query("UPDATE members SET presence = $2, updated_at = now() WHERE member_id = $1")
            .bind(id)
            .bind(presence_name(presence))
            .execute(pool)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// The whole roster, as stored.
pub async fn load_members(pool: &PgPool) -> Result<Vec<Member>, StoreError> {
    let rows = sqlx::query(
        "SELECT member_id, role, time_zone, programs, languages, skills, capacity, presence,
                shifts, open_tasks, last_assigned_at, updated_by, dial_to
         FROM members ORDER BY member_id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let role: String = row.try_get("role")?;
            let zone: String = row.try_get("time_zone")?;
            let presence: String = row.try_get("presence")?;
            let languages: Vec<String> = row.try_get("languages")?;
            let shifts: serde_json::Value = row.try_get("shifts")?;
            let shifts: Vec<StoredShift> =
                serde_json::from_value(shifts).map_err(|_| StoreError::Corrupt("shifts"))?;
            Ok(Member {
                id: row.try_get("member_id")?,
                role: role_from(&role).ok_or(StoreError::Corrupt("role"))?,
                time_zone: zone
                    .parse::<Tz>()
                    .map_err(|_| StoreError::Corrupt("time_zone"))?,
                programs: row
                    .try_get::<Vec<String>, _>("programs")?
                    .into_iter()
                    .collect(),
                languages: languages
                    .iter()
                    .map(|l| language_from(l).ok_or(StoreError::Corrupt("languages")))
                    .collect::<Result<BTreeSet<_>, _>>()?,
                skills: row
                    .try_get::<Vec<String>, _>("skills")?
                    .into_iter()
                    .collect(),
                capacity: u32::try_from(row.try_get::<i32, _>("capacity")?).unwrap_or(0),
                open_tasks: u32::try_from(row.try_get::<i32, _>("open_tasks")?).unwrap_or(0),
                presence: presence_from(&presence).ok_or(StoreError::Corrupt("presence"))?,
                shifts: shifts
                    .iter()
                    .map(|s| {
                        Some(Shift {
                            day: weekday_from(u32::from(s.day))?,
                            start: time_from(&s.start)?,
                            end: time_from(&s.end)?,
                        })
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or(StoreError::Corrupt("shifts"))?,
                last_assigned_at: row.try_get("last_assigned_at")?,
                updated_by: row.try_get("updated_by")?,
                dial_to: DialTarget::parse(&row.try_get::<String, _>("dial_to")?)
                    .map_err(|_| StoreError::Corrupt("dial_to"))?,
            })
        })
        .collect()
}

/// A case a contact point reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundCase {
    /// Its id.
    pub case_id: String,
    /// What routing needs of it.
    pub routing: CaseRouting,
    /// The latest attempt sent to it on the contact's channel inside the reply
    /// window, which the contact answers.
    pub in_reply_to: Option<String>,
    /// The patient's zone, when known.
    pub time_zone: Option<chrono_tz::Tz>,
    /// The patient's state when a state rule applies to it (USPS code).
    pub us_state: Option<String>,
}

/// One sender to identify.
#[derive(Clone)]
pub struct Lookup {
    /// The sender's contact key (patient data).
    pub contact_key: String,
    /// The channel the contact came by.
    pub channel: &'static str,
    /// The start of the reply window.
    pub since: DateTime<Utc>,
}

impl std::fmt::Debug for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The contact key is a phone number or an address: never shown.
        f.debug_struct("Lookup")
            .field("channel", &self.channel)
            .field("since", &self.since)
            .finish_non_exhaustive()
    }
}

/// For each lookup, the cases its contact key reaches, by case id, each with
/// the latest attempt sent to it on the lookup's channel since `since` (which
/// the contact answers). One statement for the lot.
pub async fn cases_reached(
    connection: &mut PgConnection,
    lookups: &[Lookup],
) -> Result<Vec<Vec<FoundCase>>, StoreError> {
    let rows = sqlx::query(
        "SELECT x.n, v.case_id, v.program_id, v.language, v.coordinator_id, v.navigator_id,
                v.time_zone, v.us_state, a.attempt_id
         FROM UNNEST($1::text[], $2::text[], $3::timestamptz[])
              WITH ORDINALITY AS x(contact_key, channel, since, n)
         JOIN case_contacts c ON c.contact_key = x.contact_key
         JOIN case_views v ON v.case_id = c.case_id
         LEFT JOIN last_attempts a
                ON a.case_id = v.case_id AND a.channel = x.channel AND a.sent_at >= x.since
         ORDER BY x.n, v.case_id",
    )
    .bind(
        lookups
            .iter()
            .map(|l| l.contact_key.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(lookups.iter().map(|l| l.channel).collect::<Vec<_>>())
    .bind(lookups.iter().map(|l| l.since).collect::<Vec<_>>())
    .fetch_all(connection)
    .await?;
    let mut found = vec![Vec::new(); lookups.len()];
    for row in &rows {
        let n: i64 = row.try_get("n")?;
        let language: String = row.try_get("language")?;
        let assigned = |column| -> Result<Option<String>, StoreError> {
            let id: String = row.try_get(column)?;
            Ok(Some(id).filter(|id| !id.is_empty()))
        };
        let case = FoundCase {
            case_id: row.try_get("case_id")?,
            routing: CaseRouting {
                program_id: row.try_get("program_id")?,
                language: language_from(&language).ok_or(StoreError::Corrupt("language"))?,
                coordinator_id: assigned("coordinator_id")?,
                navigator_id: assigned("navigator_id")?,
            },
            in_reply_to: row.try_get("attempt_id")?,
            // A zone this build does not know is no window, not a lost contact.
            time_zone: row
                .try_get::<Option<String>, _>("time_zone")?
                .and_then(|zone| zone.parse().ok()),
            us_state: row.try_get("us_state")?,
        };
        // ORDINALITY counts from 1.
        let slot = usize::try_from(n - 1)
            .ok()
            .and_then(|i| found.get_mut(i))
            .ok_or(StoreError::Corrupt("lookup number"))?;
        slot.push(case);
    }
    Ok(found)
}
