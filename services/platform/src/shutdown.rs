//! Graceful shutdown, passed to every task.
//!
//! One token says "stop"; a task tracker knows what is still running. On SIGTERM or
//! SIGINT the token is cancelled, every loop finishes the batch in hand (the relay
//! marks what it published, consumers commit what they applied) and the process
//! waits for them before exiting.
//!
//! A task the service cannot do without (a consumer, a listener) is
//! *supervised*: when it ends with an error, or ends at all before the stop,
//! the service stops rather than answering health as if it still worked; its
//! process exits with the task's name, and the orchestrator restarts it with
//! backoff.

use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The stop signal and the tasks that must finish before the process exits.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tasks: TaskTracker,
    /// The first supervised task that failed, and why.
    failed: Arc<OnceLock<String>>,
}

impl Shutdown {
    /// A shutdown that only [`Shutdown::trigger`] starts.
    pub fn new() -> Self {
        Self::default()
    }

    /// A shutdown that SIGTERM or SIGINT (Ctrl-C) also starts.
    pub fn on_signals() -> Self {
        let shutdown = Self::new();
        let token = shutdown.token.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received; draining");
            token.cancel();
        });
        shutdown
    }

    /// The token tasks watch to know when to stop.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Starts the shutdown.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Runs `task` as work the shutdown waits for.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Runs `task`, which the service cannot do without, as work the shutdown
    /// waits for. If it returns an error, or returns at all before the
    /// shutdown started, the shutdown starts and [`Shutdown::failure`] names it.
    pub fn supervise<F, E>(&self, name: &'static str, task: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Display,
    {
        let (token, failed) = (self.token.clone(), self.failed.clone());
        self.tasks.spawn(async move {
            let why = match task.await {
                Err(error) => error.to_string(),
                Ok(()) if !token.is_cancelled() => "ended before the stop".to_owned(),
                Ok(()) => return,
            };
            tracing::error!(task = name, error = %why, "essential task stopped; the service stops");
            let _ = failed.set(format!("{name}: {why}"));
            token.cancel();
        });
    }

    /// The first supervised task that stopped the service, and why.
    pub fn failure(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }

    /// Waits for the shutdown to start, then for every task to finish, at most
    /// `limit`. Returns false if some task was still running at the limit.
    pub async fn wait_and_drain(&self, limit: Duration) -> bool {
        self.token.cancelled().await;
        self.drain(limit).await
    }

    /// Starts the shutdown and waits for every task, at most `limit`.
    pub async fn drain(&self, limit: Duration) -> bool {
        self.token.cancel();
        self.tasks.close();
        let drained = tokio::time::timeout(limit, self.tasks.wait()).await.is_ok();
        if !drained {
            tracing::warn!(?limit, "tasks still running at the shutdown limit");
        }
        drained
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "SIGTERM handler unavailable; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_supervised_task_that_fails_or_ends_early_stops_the_service() {
        let shutdown = Shutdown::new();
        shutdown.supervise("consumer", async { Err::<(), _>("cannot subscribe") });
        tokio::time::timeout(Duration::from_secs(5), shutdown.token().cancelled())
            .await
            .unwrap_or_else(|_| panic!("the failure did not stop the service"));
        assert_eq!(shutdown.failure(), Some("consumer: cannot subscribe"));

        let early = Shutdown::new();
        early.supervise("listener", async { Ok::<(), String>(()) });
        tokio::time::timeout(Duration::from_secs(5), early.token().cancelled())
            .await
            .unwrap_or_else(|_| panic!("a task that ended early did not stop the service"));
        assert_eq!(early.failure(), Some("listener: ended before the stop"));

        // Ending after the stop is how it should end.
        let clean = Shutdown::new();
        let token = clean.token();
        clean.supervise("relay", async move {
            token.cancelled().await;
            Ok::<(), String>(())
        });
        assert!(clean.drain(Duration::from_secs(5)).await);
        assert_eq!(clean.failure(), None);
    }

    #[tokio::test]
    async fn drain_waits_for_tasks_to_finish_their_work() {
        let shutdown = Shutdown::new();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let token = shutdown.token();
        shutdown.spawn(async move {
            token.cancelled().await;
            // Work in hand finishes after the stop signal.
            tokio::task::yield_now().await;
            let _ = done_tx.send(());
        });
        assert!(shutdown.drain(Duration::from_secs(5)).await);
        assert!(
            done_rx.await.is_ok(),
            "the task finished before drain returned"
        );
    }
}
