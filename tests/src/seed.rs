//! Bulk loads for the benchmarks: what years of traffic leave behind, written
//! straight into a service's tables with set-based SQL instead of through its
//! API, which would take hours.

use chrono::Utc;
use prost::Message as _;
use sqlx::PgPool;
use touchpoint_platform::envelope::{new_envelope, timestamp};
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    Case, CaseStatus, ContactPoints, Language, NoteAdded, Person, PersonName,
};

/// Cases written per transaction.
const LOAD_BATCH: usize = 5_000;

/// A bench patient with `mobile`.
pub fn person(mobile: &str) -> Person {
    Person {
        name: Some(PersonName {
            given_name: "Bench".into(),
            family_name: "Patient".into(),
        }),
        contact: Some(ContactPoints {
            mobile_e164: mobile.into(),
            ..ContactPoints::default()
        }),
        relationship: String::new(),
    }
}

/// Inserts `cases` cases, each with `per_case` timeline events, its projection and
/// its contact index entry (`area` then 2xx xxxx), in the adherence
/// program, straight into the cases schema `pool` is confined to. Returns the
/// case ids.
pub async fn cases_with_notes(
    pool: &PgPool,
    cases: usize,
    per_case: i64,
    area: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let note = new_envelope(
        "x",
        "cases",
        Utc::now(),
        Payload::NoteAdded(NoteAdded {
            author: "bench".into(),
            text: "loaded".into(),
        }),
        None,
    )
    .encode_to_vec();
    let mut all = Vec::with_capacity(cases);
    for start in (0..cases).step_by(LOAD_BATCH) {
        let end = (start + LOAD_BATCH).min(cases);
        let mut ids = Vec::with_capacity(end - start);
        let mut states = Vec::with_capacity(end - start);
        let mut keys = Vec::with_capacity(end - start);
        for n in start..end {
            let case_id = uuid::Uuid::now_v7().to_string();
            let phone = format!("{area}{:07}", 2_000_000 + n);
            let case = Case {
                case_id: case_id.clone(),
                program_id: "adherence".into(),
                patient: Some(person(&phone)),
                language: Language::En as i32,
                time_zone: "America/Chicago".into(),
                status: CaseStatus::Active as i32,
                version: per_case as u64,
                opened_at: Some(timestamp(Utc::now())),
                ..Case::default()
            };
            states.push(case.encode_to_vec());
            keys.push(format!("phone:{phone}"));
            ids.push(case_id);
        }
        let mut tx = pool.begin().await?;
        sqlx::query("INSERT INTO cases (case_id, version, state) SELECT c, $2, s FROM UNNEST($1::text[], $3::bytea[]) AS t(c, s)")
            .bind(&ids)
            .bind(per_case)
            .bind(&states)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO contact_index (contact_key, case_id) SELECT * FROM UNNEST($1::text[], $2::text[])")
            .bind(&keys)
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO timeline (case_id, version, event_id, kind, source, occurred_at, envelope)
             SELECT c, v, gen_random_uuid(), 'touchpoint.v1.NoteAdded', 'cases', now(), $3
             FROM UNNEST($1::text[]) AS c, generate_series(1, $2) AS v",
        )
        .bind(&ids)
        .bind(per_case)
        .bind(&note)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        all.extend(ids);
    }
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(all)
}

/// A year of the KPI projection's daily figures: for each of `programs`, each
/// of the `days` days up to `last_day`, each channel's attempts, answers and
/// inbound contacts and each case figure, as the projection would have
/// counted a busy program. Returns the rows written.
pub async fn kpi_year(
    cases: &PgPool,
    programs: &[String],
    last_day: chrono::NaiveDate,
    days: i32,
) -> Result<u64, sqlx::Error> {
    let written = sqlx::query(
        "INSERT INTO kpi_daily (program_id, day, channel, figure, value)
         SELECT p, $2::date - d, c, f, 1 + (d * 7 + length(f) * 13 + length(p)) % 90
         FROM UNNEST($1::text[]) AS p,
              generate_series(0, $3 - 1) AS d,
              (VALUES ('sms'), ('email'), ('voice'), ('fax')) AS channels(c),
              (VALUES ('requested'), ('attempted'), ('reached'), ('inbound'), ('responded'),
                      ('response_seconds'), ('suppressed:frequency_cap')) AS figures(f)
         UNION ALL
         SELECT p, $2::date - d, '', f, 1 + (d * 11 + length(f) * 5) % 40
         FROM UNNEST($1::text[]) AS p,
              generate_series(0, $3 - 1) AS d,
              (VALUES ('enrolled'), ('first_send'), ('first_send_seconds'), ('first_contact'),
                      ('first_contact_seconds'), ('opted_out'), ('callbacks'),
                      ('callbacks_done'), ('callbacks_in_sla'), ('ae_flags'), ('ae_reviewed'),
                      ('ae_reviewed_in_24h')) AS figures(f)
         ON CONFLICT DO NOTHING",
    )
    .bind(programs)
    .bind(last_day)
    .bind(days)
    .execute(cases)
    .await?
    .rows_affected();
    // The totals over every program and the programs seen, as the projection
    // keeps them beside the figures.
    sqlx::query(
        "INSERT INTO kpi_daily_all (day, channel, figure, value)
         SELECT day, channel, figure, sum(value) FROM kpi_daily GROUP BY 1, 2, 3
         ON CONFLICT (day, figure, channel) DO UPDATE SET value = EXCLUDED.value",
    )
    .execute(cases)
    .await?;
    sqlx::query(
        "INSERT INTO kpi_programs (program_id) SELECT p FROM UNNEST($1::text[]) AS p
         ON CONFLICT DO NOTHING",
    )
    .bind(programs)
    .execute(cases)
    .await?;
    Ok(written)
}
