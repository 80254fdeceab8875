//! What a run cost PostgreSQL, measured where it does not depend on the
//! machine: WAL bytes written, rows inserted, updated and deleted in each
//! service's schema, and transactions committed, read before and after and
//! divided by the attempts made.
//!
//! WAL is the server's: run a benchmark alone on its server. Row and commit
//! counts are the benchmark database's. A backend reports its counts when it
//! goes idle or exits, so the `after` reading is taken once the services have
//! stopped.

use std::collections::BTreeMap;

use sqlx::PgPool;

/// Rows inserted, updated and deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rows {
    /// Inserted.
    pub inserted: i64,
    /// Updated (HOT or not).
    pub updated: i64,
    /// Deleted.
    pub deleted: i64,
}

impl Rows {
    fn minus(self, before: Rows) -> Rows {
        Rows {
            inserted: self.inserted - before.inserted,
            updated: self.updated - before.updated,
            deleted: self.deleted - before.deleted,
        }
    }

    fn total(self) -> i64 {
        self.inserted + self.updated + self.deleted
    }
}

/// One reading of the counters.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    wal_lsn: String,
    rows: BTreeMap<String, Rows>,
    commits: i64,
}

/// Reads the counters of `pool`'s database (and its server's WAL position).
pub async fn read(pool: &PgPool) -> anyhow::Result<Reading> {
    let wal_lsn: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(pool)
        .await?;
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT schemaname::text, coalesce(sum(n_tup_ins), 0)::bigint,
                coalesce(sum(n_tup_upd), 0)::bigint, coalesce(sum(n_tup_del), 0)::bigint
         FROM pg_stat_user_tables GROUP BY schemaname",
    )
    .fetch_all(pool)
    .await?;
    let commits: i64 = sqlx::query_scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(pool)
    .await?;
    Ok(Reading {
        wal_lsn,
        rows: rows
            .into_iter()
            .map(|(schema, inserted, updated, deleted)| {
                (
                    schema,
                    Rows {
                        inserted,
                        updated,
                        deleted,
                    },
                )
            })
            .collect(),
        commits,
    })
}

/// What happened between two readings.
#[derive(Debug, Clone, Default)]
pub struct Work {
    /// WAL bytes written.
    pub wal_bytes: i64,
    /// Rows changed, by schema.
    pub rows: BTreeMap<String, Rows>,
    /// Transactions committed.
    pub commits: i64,
}

/// The work between `before` and `after`.
pub async fn between(pool: &PgPool, before: &Reading, after: &Reading) -> anyhow::Result<Work> {
    let wal_bytes: i64 =
        sqlx::query_scalar("SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)::bigint")
            .bind(&after.wal_lsn)
            .bind(&before.wal_lsn)
            .fetch_one(pool)
            .await?;
    let rows = after
        .rows
        .iter()
        .map(|(schema, rows)| {
            let earlier = before.rows.get(schema).copied().unwrap_or_default();
            (schema.clone(), rows.minus(earlier))
        })
        .filter(|(_, rows)| rows.total() != 0)
        .collect();
    Ok(Work {
        wal_bytes,
        rows,
        commits: after.commits - before.commits,
    })
}

impl Work {
    /// Prints the work per attempt, in all and by schema.
    pub fn print_per_attempt(&self, attempts: usize) {
        let per = |n: i64| n as f64 / attempts.max(1) as f64;
        let all = self.rows.values().fold(Rows::default(), |sum, r| Rows {
            inserted: sum.inserted + r.inserted,
            updated: sum.updated + r.updated,
            deleted: sum.deleted + r.deleted,
        });
        println!(
            "database work per attempt: {:.0} WAL bytes, {:.1} rows inserted, {:.1} updated, \
             {:.1} deleted, {:.1} transactions",
            per(self.wal_bytes),
            per(all.inserted),
            per(all.updated),
            per(all.deleted),
            per(self.commits)
        );
        for (schema, rows) in &self.rows {
            println!(
                "  {schema:<9} {:>5.1} inserted {:>5.1} updated {:>5.1} deleted",
                per(rows.inserted),
                per(rows.updated),
                per(rows.deleted)
            );
        }
    }
}
