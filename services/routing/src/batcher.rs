//! One task with a database connection of its own that does callers' work in
//! batches: whatever arrives while a batch is in flight goes in the next, so a
//! burst costs one statement instead of one each. Routing's lookups and writes
//! both go this way.
//!
//! The connection plans each statement once (`plan_cache_mode =
//! force_generic_plan`): the batch statements take longer to plan than to run,
//! and their best plan does not depend on their arrays. A connection that
//! fails is replaced for the next batch.

use std::future::Future;
use std::pin::Pin;

use sqlx::{ConnectOptions as _, PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};

use crate::store::StoreError;

/// Calls waiting for a batch before callers wait to queue.
const QUEUE: usize = 4096;

/// A batch's work: one answer per input, in order.
pub type Work<In, Out> =
    for<'c> fn(
        &'c mut PgConnection,
        &'c [In],
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Out>, StoreError>> + Send + 'c>>;

type Job<In, Out> = (In, oneshot::Sender<Result<Out, String>>);

/// The handle callers go through.
#[derive(Debug)]
pub struct Batcher<In, Out> {
    jobs: mpsc::Sender<Job<In, Out>>,
}

impl<In, Out> Clone for Batcher<In, Out> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
        }
    }
}

impl<In: Send + 'static, Out: Send + 'static> Batcher<In, Out> {
    /// Starts `name`'s task on a connection to `pool`'s database, doing up to
    /// `max_batch` inputs with `work` at a time; it stops when every handle is
    /// dropped.
    pub fn start(pool: &PgPool, name: &'static str, max_batch: usize, work: Work<In, Out>) -> Self {
        let options = pool
            .connect_options()
            .as_ref()
            .clone()
            .options([("plan_cache_mode", "force_generic_plan")]);
        let (jobs, mut queue) = mpsc::channel::<Job<In, Out>>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(max_batch);
            let mut connection: Option<PgConnection> = None;
            while queue.recv_many(&mut batch, max_batch).await > 0 {
                let (inputs, replies): (Vec<In>, Vec<_>) = batch.drain(..).unzip();
                let done = match &mut connection {
                    Some(connection) => work(connection, &inputs).await,
                    None => match options.connect().await {
                        Ok(fresh) => work(connection.insert(fresh), &inputs).await,
                        Err(error) => Err(error.into()),
                    },
                };
                match done {
                    Ok(outputs) if outputs.len() == inputs.len() => {
                        for (reply, output) in replies.into_iter().zip(outputs) {
                            let _ = reply.send(Ok(output));
                        }
                    }
                    outcome => {
                        let error = match outcome {
                            Err(error) => error.to_string(),
                            Ok(_) => "a batch answered the wrong number of calls".to_owned(),
                        };
                        tracing::error!(%error, batch = name, calls = inputs.len(), "batch failed");
                        connection = None; // Replaced for the next batch.
                        for reply in replies {
                            let _ = reply.send(Err(error.clone()));
                        }
                    }
                }
            }
        });
        Self { jobs }
    }

    /// Does `input` with the next batch.
    pub async fn call(&self, input: In) -> Result<Out, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send((input, reply))
            .await
            .map_err(|_| StoreError::Stopped)?;
        answer
            .await
            .map_err(|_| StoreError::Stopped)?
            .map_err(StoreError::Batch)
    }
}
