//! Enrolments are saved whole whatever their size: a batch whose states outgrow
//! one statement is split, and every row reads back as it was written.

use chrono::{TimeDelta, Utc};
use chrono_tz::America::New_York;
use touchpoint_cadence::SPEC;
use touchpoint_cadence::enrolment::{Enrolment, NewEnrolment};
use touchpoint_cadence::store::{self, Saved};
use touchpoint_platform::db;
use touchpoint_platform::testkit::TestDatabase;
use touchpoint_proto::v1::Language;

/// An enrolment whose state is large: `sends` requests in its frequency window,
/// as a state grows with the attempts it has made.
fn enrolment(i: usize, sends: usize) -> Enrolment {
    let enrolled_at = Utc::now();
    let mut enrolment = Enrolment::open(NewEnrolment {
        program_id: format!("program-{}", i % 3),
        language: Language::En,
        time_zone: New_York,
        enrolled_at,
        destinations: Default::default(),
    });
    enrolment.sent = (0..sends)
        .map(|n| enrolled_at + TimeDelta::seconds(n as i64))
        .collect();
    enrolment
}

#[tokio::test]
async fn a_batch_larger_than_one_statement_is_saved_whole_and_reads_back() {
    let database = TestDatabase::fresh().await;
    let pool = db::connect(&database.config(), SPEC.schema, SPEC.migrations)
        .await
        .unwrap_or_else(|e| panic!("cadence schema: {e}"));
    // 300 states of some 12 KiB each: 3.6 MB, far over what one statement takes.
    let cases: Vec<(String, Enrolment, usize)> = (0..300)
        .map(|i| (format!("case-{i:03}"), enrolment(i, 300 + i), 300 + i))
        .collect();
    let wake_at = Some(Utc::now() + TimeDelta::hours(1));
    let rows: Vec<Saved<'_>> = cases
        .iter()
        .map(|(case_id, enrolment, _)| Saved {
            case_id,
            enrolment,
            wake_at,
        })
        .collect();
    let state_bytes: usize = cases
        .iter()
        .map(|(_, e, _)| serde_json::to_string(e).map_or(0, |s| s.len()))
        .sum();
    assert!(state_bytes > 3_000_000, "states of {state_bytes} bytes");

    let mut tx = pool.begin().await.unwrap_or_else(|e| panic!("begin: {e}"));
    store::save(&mut tx, &rows)
        .await
        .unwrap_or_else(|e| panic!("save: {e}"));
    tx.commit().await.unwrap_or_else(|e| panic!("commit: {e}"));

    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM enrolments WHERE wake_at IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("count: {e}"));
    assert_eq!(stored, 300, "every enrolment saved with its timer");
    for (case_id, enrolment, sends) in &cases {
        let read = store::get(&pool, case_id)
            .await
            .unwrap_or_else(|e| panic!("get: {e}"));
        let read = read.unwrap_or_else(|| panic!("{case_id} not saved"));
        assert_eq!(read.sent.len(), *sends, "{case_id}");
        assert_eq!(&read, enrolment, "{case_id} reads back as written");
    }

    // Saving again replaces each row instead of adding one.
    let mut tx = pool.begin().await.unwrap_or_else(|e| panic!("begin: {e}"));
    store::save(&mut tx, &rows[..150])
        .await
        .unwrap_or_else(|e| panic!("save again: {e}"));
    tx.commit().await.unwrap_or_else(|e| panic!("commit: {e}"));
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM enrolments")
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|e| panic!("count: {e}"));
    assert_eq!(stored, 300);
}
