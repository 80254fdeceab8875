//! Logs, traces and metrics.
//!
//! Logs are JSON lines on stdout. Spans always carry OpenTelemetry trace ids (so a
//! trace id can travel in Kafka headers and gRPC metadata even with no collector);
//! they are exported over OTLP/gRPC only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set,
//! and so are the metrics ([`crate::metrics`]).
//! Fields logged anywhere are ids, counts and reasons — never patient data.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::TelemetryConfig;

/// Telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built from its endpoint.
    #[error("OTLP exporter could not start: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// A global subscriber is already installed.
    #[error("a tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Keeps the tracer and meter providers alive; dropping it flushes pending
/// spans and the metrics' last values.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    meters: Option<SdkMeterProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        // Nothing useful can be done with a flush failure at exit.
        let _ = self.provider.shutdown();
        if let Some(meters) = &self.meters {
            let _ = meters.shutdown();
        }
    }
}

/// Installs JSON logging and tracing for the whole process.
pub fn init(config: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource.clone());
    let mut meters = None;
    if let Some(endpoint) = &config.otlp_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()?;
        builder = builder.with_batch_exporter(exporter);
        // Pushed every OTEL_METRIC_EXPORT_INTERVAL ms (60 000 by default).
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()?;
        let provider = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(PeriodicReader::builder(exporter).build())
            .build();
        opentelemetry::global::set_meter_provider(provider.clone());
        meters = Some(provider);
    }
    let provider = builder.build();
    let tracer = provider.tracer(config.service_name.clone());

    // The filter was validated when the configuration was read.
    let filter = EnvFilter::try_new(&config.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_filter(filter);
    tracing_subscriber::registry()
        .with(logs)
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                // Traces follow the info spans whatever the log level, so trace
                // ids travel even with RUST_LOG=warn; debug and trace spans (the
                // HTTP/2 stack's own, one per frame) are not traced.
                .with_filter(LevelFilter::INFO),
        )
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(Telemetry { provider, meters })
}
