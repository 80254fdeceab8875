//! A stand-in for PostgreSQL's autovacuum, for benchmarks on a server that runs
//! without it (a CI machine's server may turn it off).
//!
//! Every enrolment, attempt and outbox row is updated or deleted as a soak goes
//! on, so without vacuuming the tables fill with dead rows: on the 2-core
//! machine, `cadence.enrolments` held 76,800 live rows and 300,000 dead ones
//! (490 MB) four minutes into a soak, and each statement reads more of them
//! every minute. A production server vacuums them; a benchmark that measured
//! their bloat would measure the server's configuration, not the system.

use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Autovacuum's own throttle (PostgreSQL 12 and later): it sleeps 2 ms each
/// time it has done 200 units of work, so it takes a share of the machine
/// rather than all of it, as an unthrottled manual `VACUUM` would.
const SET_COST_DELAY: &str = "SET vacuum_cost_delay = '2ms'";
const SET_COST_LIMIT: &str = "SET vacuum_cost_limit = 200";

/// Whether the server's autovacuum launcher runs.
pub async fn autovacuum_on(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let setting: String = sqlx::query_scalar("SELECT current_setting('autovacuum')")
        .fetch_one(pool)
        .await?;
    Ok(setting == "on")
}

/// What the stand-in did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Passes {
    /// Passes over the database that finished.
    pub done: u32,
    /// The longest of them.
    pub longest: Duration,
}

/// The stand-in, running until [`Vacuum::stop`].
#[derive(Debug)]
pub struct Vacuum {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Passes>,
}

impl Vacuum {
    /// Vacuums and analyzes the whole database on `pool` every `every`,
    /// throttled as autovacuum is. A pass that fails is reported on stderr and
    /// the next one tried.
    pub fn every(pool: PgPool, every: Duration) -> Self {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut passes = Passes::default();
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => return passes,
                    _ = ticks.tick() => {}
                }
                let started = Instant::now();
                match pass(&pool).await {
                    Ok(()) => {
                        passes.done += 1;
                        passes.longest = passes.longest.max(started.elapsed());
                    }
                    Err(error) => eprintln!("vacuum: a pass failed: {error}"),
                }
            }
        });
        Self { stop, task }
    }

    /// Stops it once a pass under way has finished, and says what it did.
    pub async fn stop(self) -> Passes {
        // A task that has already ended has nothing left to stop.
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

async fn pass(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut session = pool.acquire().await?;
    // Each statement on its own: VACUUM cannot run in a transaction block.
    for statement in [SET_COST_DELAY, SET_COST_LIMIT, "VACUUM (ANALYZE)"] {
        sqlx::query(statement)
            .persistent(false)
            .execute(&mut *session)
            .await?;
    }
    Ok(())
}
