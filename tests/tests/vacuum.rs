//! The soak's stand-in for autovacuum clears the dead rows a run leaves, on the
//! real server.

use std::time::Duration;

use sqlx::PgPool;
use touchpoint_platform::testkit::{TestDatabase, eventually};
use touchpoint_tests::vacuum::{self, Vacuum};

#[tokio::test]
async fn the_stand_in_vacuums_the_dead_rows_away_and_counts_its_passes() {
    let database = TestDatabase::fresh().await;
    let pool = PgPool::connect(&database.url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for statement in [
        "CREATE TABLE churn (id bigint PRIMARY KEY, n bigint NOT NULL)",
        "INSERT INTO churn SELECT i, 0 FROM generate_series(1, 5000) AS i",
        // Every row rewritten twice: 10,000 dead versions.
        "UPDATE churn SET n = n + 1",
        "UPDATE churn SET n = n + 1",
    ] {
        sqlx::query(statement)
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    let server_runs_autovacuum: String = sqlx::query_scalar("SHOW autovacuum")
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        vacuum::autovacuum_on(&pool)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        server_runs_autovacuum == "on"
    );

    // The first pass starts at once; the next would be an hour later. Only
    // manual vacuums count: a server with autovacuum on may vacuum it too.
    let stand_in = Vacuum::every(pool.clone(), Duration::from_secs(3600));
    let vacuumed = eventually(
        "a vacuum of the churned table",
        Duration::from_secs(60),
        || {
            let pool = pool.clone();
            async move {
                let (vacuums, dead): (i64, i64) = sqlx::query_as(
                    "SELECT vacuum_count, n_dead_tup
                 FROM pg_stat_user_tables WHERE relname = 'churn'",
                )
                .fetch_one(&pool)
                .await
                .ok()?;
                (vacuums > 0).then_some(dead)
            }
        },
    )
    .await;
    assert_eq!(vacuumed, 0, "dead rows left after the pass");
    let passes = stand_in.stop().await;
    assert_eq!(passes.done, 1, "one pass in the first hour");
}
