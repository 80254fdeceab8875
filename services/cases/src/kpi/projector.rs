//! Keeps the projection current: reads the timeline after its cursor in
//! WatchEvents' gap-free order, folds a batch, and writes the facts, the
//! figures and the new cursor in one transaction, so each entry counts once
//! even when a pass fails halfway or two replicas run it (the cursor's row
//! lock takes them in turn).

use std::time::Duration;

use chrono_tz::Tz;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use touchpoint_platform::envelope::instant;

use super::store;
use crate::store::StoreError;
use crate::timeline;

/// Entries folded per transaction.
const BATCH: i64 = 1000;
/// How long an attempt made is remembered: an answer after this is not
/// credited to it (the table would otherwise grow with every attempt ever).
const ATTEMPT_RETENTION: chrono::TimeDelta = chrono::TimeDelta::days(90);
/// How often the forgetting runs.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Folds the timeline into the projection until `shutdown`, polling every
/// `poll` when caught up.
pub async fn run(
    pool: PgPool,
    zone: Tz,
    poll: Duration,
    shutdown: CancellationToken,
) -> Result<(), std::convert::Infallible> {
    let mut pruned_at: Option<tokio::time::Instant> = None;
    loop {
        if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            match store::prune_attempts(&pool, chrono::Utc::now() - ATTEMPT_RETENTION).await {
                Ok(removed) if removed > 0 => {
                    tracing::info!(removed, "KPI projection forgot attempts past retention");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "KPI attempt retention failed"),
            }
            pruned_at = Some(tokio::time::Instant::now());
        }
        let wait = match pass(&pool, zone).await {
            Ok(folded) if folded as i64 == BATCH => Duration::ZERO,
            Ok(_) => poll,
            Err(error) => {
                tracing::warn!(%error, "KPI projection pass failed; retrying");
                poll * 10
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Folds the next batch of entries; returns how many.
pub async fn pass(pool: &PgPool, zone: Tz) -> Result<usize, StoreError> {
    // Caught up (the common case): a look without a transaction, so an idle
    // projection takes no row lock and writes no WAL four times a second.
    let seen = store::cursor(pool).await?;
    if timeline::stream_after(pool, seen, 1).await?.is_empty() {
        return Ok(0);
    }
    let mut tx = pool.begin().await?;
    let cursor = store::lock_cursor(&mut tx).await?;
    let rows = timeline::stream_after(&mut *tx, cursor, BATCH).await?;
    let Some((last, last_cursor)) = rows.last() else {
        return Ok(0);
    };
    let through = last
        .recorded_at
        .as_ref()
        .and_then(instant)
        .unwrap_or_default();
    let last_cursor = *last_cursor;
    let events: Vec<_> = rows.iter().filter_map(|(e, _)| e.event.as_ref()).collect();
    let (mut fold, loaded) = store::load(&mut tx, &events).await?;
    for event in &events {
        fold.add(zone, event);
    }
    if fold.unknown_case > 0 {
        tracing::warn!(
            events = fold.unknown_case,
            "KPI projection skipped events of cases it has no opening for"
        );
    }
    store::save(&mut tx, &fold, &loaded).await?;
    store::advance(&mut tx, last_cursor, through).await?;
    tx.commit().await?;
    Ok(rows.len())
}
