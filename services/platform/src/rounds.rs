//! A worker that polls in rounds (cadence's due loop, dispatch's sender): a round
//! that filled its batch is followed at once by the next, an idle one waits the
//! poll interval, and a failed one waits twice as long as the last, up to five
//! seconds. The round in hand is finished before `shutdown` stops the loop.

use std::fmt::Display;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The longest wait after failed rounds.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs `round` until `shutdown`; each round returns how much it claimed, a
/// full `batch` meaning more is waiting. `name` names the worker in logs.
pub async fn run<F, Fut, E>(
    name: &str,
    poll: Duration,
    batch: usize,
    shutdown: CancellationToken,
    mut round: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<usize, E>>,
    E: Display,
{
    let mut backoff = poll;
    while !shutdown.is_cancelled() {
        let pause = match round().await {
            Ok(claimed) if claimed >= batch => {
                backoff = poll;
                continue;
            }
            Ok(_) => {
                backoff = poll;
                poll
            }
            Err(error) => {
                tracing::warn!(%error, "{name} round failed; retrying");
                backoff = (backoff * 2).min(MAX_BACKOFF);
                backoff
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
    tracing::info!("{name} stopped");
}
