//! The metrics operators watch, through OpenTelemetry. They are exported over
//! OTLP beside the traces when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (every
//! `OTEL_METRIC_EXPORT_INTERVAL` milliseconds, 60 000 by default), and cost
//! nothing otherwise. Attributes name things (a topic, a channel, a method),
//! never a patient.
//!
//! | metric | kind | attributes |
//! | --- | --- | --- |
//! | `touchpoint.outbox.waiting` | gauge, rows not yet published | — |
//! | `touchpoint.outbox.oldest_age` | gauge, seconds the oldest has waited | — |
//! | `touchpoint.consumer.lag` | gauge, records behind the partition's end | `consumer`, `topic` |
//! | `touchpoint.dlq.records` | counter | `consumer`, `topic` |
//! | `touchpoint.attempts` | counter | `channel`, `outcome` (dispatch) |
//! | `touchpoint.provider.duration` | histogram, seconds | `provider`, `channel`, `result` (dispatch) |
//! | `rpc.server.call.duration` | histogram, seconds | `rpc.method`, `rpc.grpc.status_code` |
//!
//! The service is the resource's `service.name`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tower_layer::Layer;
use tower_service::Service;

/// The meter every Touchpoint instrument is made by.
pub fn meter() -> Meter {
    opentelemetry::global::meter("touchpoint")
}

/// How often the outbox backlog is read while metrics are exported.
const OUTBOX_SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Reads the outbox's backlog every few seconds and reports it as
/// `touchpoint.outbox.waiting` and `touchpoint.outbox.oldest_age`, until
/// `stop`. One statement on the partial index of unsent rows.
pub async fn watch_outbox(pool: PgPool, stop: CancellationToken) {
    let waiting = Arc::new(AtomicI64::new(0));
    let oldest_ms = Arc::new(AtomicI64::new(0));
    let meter = meter();
    let _waiting = {
        let waiting = waiting.clone();
        meter
            .i64_observable_gauge("touchpoint.outbox.waiting")
            .with_description("Outbox rows not yet published")
            .with_unit("{row}")
            .with_callback(move |gauge| gauge.observe(waiting.load(Ordering::Relaxed), &[]))
            .build()
    };
    let _oldest = {
        let oldest_ms = oldest_ms.clone();
        meter
            .f64_observable_gauge("touchpoint.outbox.oldest_age")
            .with_description("How long the oldest unpublished outbox row has waited")
            .with_unit("s")
            .with_callback(move |gauge| {
                gauge.observe(oldest_ms.load(Ordering::Relaxed) as f64 / 1000.0, &[])
            })
            .build()
    };
    let mut tick = tokio::time::interval(OUTBOX_SAMPLE_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let sampled: Result<(i64, Option<i64>), sqlx::Error> = sqlx::query_as(
            "SELECT count(*), (EXTRACT(EPOCH FROM now() - min(created_at)) * 1000)::bigint
             FROM outbox WHERE sent_at IS NULL",
        )
        .fetch_one(&pool)
        .await;
        match sampled {
            Ok((rows, oldest)) => {
                waiting.store(rows, Ordering::Relaxed);
                oldest_ms.store(oldest.unwrap_or(0).max(0), Ordering::Relaxed);
            }
            Err(error) => tracing::debug!(%error, "outbox backlog not read"),
        }
    }
}

/// Each topic's lag, as librdkafka's statistics last reported it, for
/// `touchpoint.consumer.lag`.
#[derive(Debug, Clone, Default)]
pub struct ConsumerLag {
    by_topic: Arc<Mutex<HashMap<String, i64>>>,
}

impl ConsumerLag {
    /// Reports the lag of `consumer` for as long as the returned gauge lives.
    pub fn gauge(&self, consumer: &str) -> opentelemetry::metrics::ObservableGauge<i64> {
        let by_topic = self.by_topic.clone();
        let consumer = consumer.to_owned();
        meter()
            .i64_observable_gauge("touchpoint.consumer.lag")
            .with_description("Records on the consumed partitions not yet applied")
            .with_unit("{record}")
            .with_callback(move |gauge| {
                let lags = by_topic.lock().unwrap_or_else(PoisonError::into_inner);
                for (topic, lag) in lags.iter() {
                    gauge.observe(
                        *lag,
                        &[
                            KeyValue::new("consumer", consumer.clone()),
                            KeyValue::new("topic", topic.clone()),
                        ],
                    );
                }
            })
            .build()
    }

    /// Takes a statistics report: the lag of a topic is the sum over its
    /// partitions assigned here (librdkafka reports -1 for one not known yet).
    pub fn record(&self, statistics: &rdkafka::Statistics) {
        let mut lags = self.by_topic.lock().unwrap_or_else(PoisonError::into_inner);
        for (name, topic) in &statistics.topics {
            let known: Vec<i64> = topic
                .partitions
                .values()
                .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
                .map(|p| p.consumer_lag)
                .collect();
            if !known.is_empty() {
                lags.insert(name.clone(), known.iter().sum());
            }
        }
    }
}

static DEAD_LETTERS: LazyLock<Counter<u64>> = LazyLock::new(|| {
    meter()
        .u64_counter("touchpoint.dlq.records")
        .with_description("Records a consumer gave up on and dead-lettered")
        .with_unit("{record}")
        .build()
});

/// Counts a record `consumer` dead-lettered from `topic`.
pub fn dead_lettered(consumer: &str, topic: &str) {
    DEAD_LETTERS.add(
        1,
        &[
            KeyValue::new("consumer", consumer.to_owned()),
            KeyValue::new("topic", topic.to_owned()),
        ],
    );
}

/// The tower layer that times every gRPC call: `rpc.server.call.duration`
/// by method and status. A path no route serves (answered UNIMPLEMENTED) is
/// recorded as `unknown`, so no caller can grow the set of method names.
#[derive(Debug, Clone)]
pub struct GrpcMetricsLayer {
    duration: Histogram<f64>,
}

impl Default for GrpcMetricsLayer {
    fn default() -> Self {
        Self {
            duration: meter()
                .f64_histogram("rpc.server.call.duration")
                .with_description("gRPC calls served, by method and status")
                .with_unit("s")
                .build(),
        }
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            duration: self.duration.clone(),
        }
    }
}

/// A service timed by [`GrpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    duration: Histogram<f64>,
}

/// gRPC's status code for UNIMPLEMENTED.
const UNIMPLEMENTED: &str = "12";

impl<S, B, R> Service<http::Request<B>> for GrpcMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    R: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let duration = self.duration.clone();
        let started = Instant::now();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            // A call that fails is answered "trailers only": its status is in
            // the headers. One that succeeds carries it in the trailers.
            let status = match &answer {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("0")
                    .to_owned(),
                Err(_) => "2".to_owned(),
            };
            let method = if status == UNIMPLEMENTED {
                "unknown".to_owned()
            } else {
                method
            };
            duration.record(
                started.elapsed().as_secs_f64(),
                &[
                    KeyValue::new("rpc.method", method),
                    KeyValue::new("rpc.grpc.status_code", status),
                ],
            );
            answer
        })
    }
}
