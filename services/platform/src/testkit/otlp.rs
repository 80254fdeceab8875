//! An OTLP/gRPC collector in the test's process: services started as processes
//! export to it (`OTEL_EXPORTER_OTLP_ENDPOINT`), and the test reads back which
//! service recorded which span in which trace, and the metrics' latest values.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::{NumberDataPoint, number_data_point};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// One span as a service exported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedSpan {
    /// The exporting service's `service.name`.
    pub service: String,
    /// 32 hex digits.
    pub trace_id: String,
    /// The span's name.
    pub name: String,
    /// The span's attributes, as text.
    pub attributes: Vec<(String, String)>,
}

impl ExportedPoint {
    /// The attribute `key`, if the point has it.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl ExportedSpan {
    /// The attribute `key`, if the span has it.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// One gauge or sum data point as it was exported; for a histogram, its count.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedPoint {
    /// The exporting service's `service.name`.
    pub service: String,
    /// The metric's name.
    pub metric: String,
    /// The point's attributes, as text.
    pub attributes: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
}

/// A running collector; clones share what it received.
#[derive(Debug, Clone, Default)]
pub struct Collector {
    spans: Arc<Mutex<Vec<ExportedSpan>>>,
    points: Arc<Mutex<Vec<ExportedPoint>>>,
    addr: Option<SocketAddr>,
}

impl Collector {
    /// Listens on a free loopback port until the test's runtime ends.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("collector cannot listen: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("collector address: {e}"));
        let collector = Self {
            spans: Arc::default(),
            points: Arc::default(),
            addr: Some(addr),
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(collector.clone()))
                .add_service(MetricsServiceServer::new(collector.clone()))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        collector
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        self.addr
            .map_or_else(String::new, |a| format!("http://{a}"))
    }

    /// The latest value exported for `metric` with exactly `attributes`.
    pub fn latest(&self, metric: &str, attributes: &[(&str, &str)]) -> Option<f64> {
        let wanted: Vec<(String, String)> = attributes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.points
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .rev()
            .find(|p| p.metric == metric && p.attributes == wanted)
            .map(|p| p.value)
    }

    /// Every point received so far for `metric`.
    pub fn points(&self, metric: &str) -> Vec<ExportedPoint> {
        self.points
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|p| p.metric == metric)
            .cloned()
            .collect()
    }

    /// Every point received so far.
    pub fn all_points(&self) -> Vec<ExportedPoint> {
        self.points
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ExportedSpan> {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// A resource's `service.name`.
fn service_name(resource: Option<&Resource>) -> String {
    resource
        .map(|r| pairs(&r.attributes))
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == "service.name")
        .map(|(_, v)| v)
        .unwrap_or_default()
}

/// Gauge and sum points as (attributes, value).
fn numbers(points: Vec<NumberDataPoint>) -> Vec<(Vec<(String, String)>, f64)> {
    points
        .into_iter()
        .filter_map(|point| {
            let value = match point.value? {
                number_data_point::Value::AsDouble(v) => v,
                number_data_point::Value::AsInt(v) => v as f64,
            };
            Some((pairs(&point.attributes), value))
        })
        .collect()
}

fn pairs(attributes: &[KeyValue]) -> Vec<(String, String)> {
    attributes
        .iter()
        .map(|kv| {
            let value = kv.value.as_ref().and_then(|v| v.value.as_ref());
            (kv.key.clone(), text(value))
        })
        .collect()
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let service = service_name(resource_spans.resource.as_ref());
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.push(ExportedSpan {
                        service: service.clone(),
                        trace_id: hex::encode(&span.trace_id),
                        name: span.name,
                        attributes: pairs(&span.attributes),
                    });
                }
            }
        }
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(received);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource in request.into_inner().resource_metrics {
            let service = service_name(resource.resource.as_ref());
            for scope in resource.scope_metrics {
                for metric in scope.metrics {
                    let points: Vec<(Vec<(String, String)>, f64)> = match metric.data {
                        Some(Data::Gauge(g)) => numbers(g.data_points),
                        Some(Data::Sum(s)) => numbers(s.data_points),
                        Some(Data::Histogram(h)) => h
                            .data_points
                            .into_iter()
                            .map(|p| (pairs(&p.attributes), p.count as f64))
                            .collect(),
                        _ => continue,
                    };
                    for (attributes, value) in points {
                        received.push(ExportedPoint {
                            service: service.clone(),
                            metric: metric.name.clone(),
                            attributes,
                            value,
                        });
                    }
                }
            }
        }
        self.points
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(received);
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}
