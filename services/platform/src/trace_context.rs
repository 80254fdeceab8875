//! W3C trace context carried across process boundaries.
//!
//! One outreach attempt is one trace across services: the `traceparent` of the span
//! that appended an event travels with it through the outbox into the Kafka record
//! headers, and the consumer continues the trace from there. gRPC calls carry it in
//! metadata the same way.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The header and metadata key of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// The `traceparent` of the current span, if it belongs to a trace.
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// The trace id (32 hex digits) of the current span, if it belongs to a trace.
pub fn current_trace_id() -> Option<String> {
    let context = tracing::Span::current().context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// The remote context described by a `traceparent` value (empty if malformed).
pub fn context_from_traceparent(traceparent: &str) -> opentelemetry::Context {
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    TraceContextPropagator::new().extract(&carrier)
}

/// Makes `span` a child of the trace described by `traceparent`, when it is valid.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let context = context_from_traceparent(traceparent);
    if context.span().span_context().is_valid() {
        // Fails only when the span is disabled; then there is no trace to continue.
        let _ = span.set_parent(context);
    }
}

/// Adds the current `traceparent` to outgoing gRPC metadata.
pub fn inject_into_metadata(metadata: &mut MetadataMap) {
    if let Some(traceparent) = current_traceparent()
        && let Ok(value) = MetadataValue::try_from(traceparent.as_str())
    {
        metadata.insert(MetadataKey::from_static(TRACEPARENT), value);
    }
}

/// A tonic client interceptor that propagates the caller's trace.
#[derive(Debug, Clone, Copy, Default)]
pub struct PropagateTrace;

impl tonic::service::Interceptor for PropagateTrace {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        inject_into_metadata(request.metadata_mut());
        Ok(request)
    }
}

/// The server-side span for an incoming gRPC request, continuing the caller's trace.
pub fn grpc_server_span(request: &tonic::codegen::http::Request<()>) -> tracing::Span {
    let span = tracing::info_span!("grpc.request", rpc = %request.uri().path());
    let traceparent = request
        .headers()
        .get(TRACEPARENT)
        .and_then(|value| value.to_str().ok());
    continue_trace(&span, traceparent);
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_round_trips_through_the_propagator() {
        let context = context_from_traceparent(PARENT);
        let span = context.span();
        let span_context = span.span_context();
        assert!(span_context.is_valid());
        assert_eq!(
            span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn malformed_traceparent_gives_no_trace() {
        for bad in ["", "garbage", "00-zz-00f067aa0ba902b7-01"] {
            let context = context_from_traceparent(bad);
            assert!(!context.span().span_context().is_valid(), "{bad}");
        }
    }

    fn with_tracing<T>(f: impl FnOnce() -> T) -> T {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f)
    }

    #[test]
    fn grpc_trace_survives_client_metadata_and_server_span() {
        with_tracing(|| {
            // Client side: a span continuing PARENT injects its context into metadata.
            let client_span = tracing::info_span!("client");
            continue_trace(&client_span, Some(PARENT));
            let mut metadata = MetadataMap::new();
            client_span.in_scope(|| inject_into_metadata(&mut metadata));
            let sent = metadata
                .get(TRACEPARENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .unwrap_or_default();
            assert!(sent.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{sent}");

            // Server side: the request span continues the same trace.
            let request = tonic::codegen::http::Request::builder()
                .uri("/touchpoint.v1.CaseService/GetCase")
                .header(TRACEPARENT, sent)
                .body(())
                .unwrap_or_default();
            let server_span = grpc_server_span(&request);
            let trace_id = server_span.in_scope(current_trace_id);
            assert_eq!(
                trace_id.as_deref(),
                Some("4bf92f3577b34da6a3ce929d0e0e4736")
            );
        });
    }

    #[test]
    fn request_without_traceparent_starts_a_new_trace() {
        with_tracing(|| {
            let span = grpc_server_span(&tonic::codegen::http::Request::new(()));
            let trace_id = span.in_scope(current_trace_id).unwrap_or_default();
            assert_eq!(trace_id.len(), 32);
            assert_ne!(trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        });
    }
}
