//! `touchpoint kpi --export`: the KPIs as OpenTelemetry metrics, pushed over
//! OTLP/gRPC to `OTEL_EXPORTER_OTLP_ENDPOINT` (a collector) every interval,
//! from cases' event stream as it grows. Each KPI is a gauge named
//! `touchpoint.kpi.*`; the only attributes are a channel or a suppression
//! reason, never anything about a patient.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, MeterProvider as _, ObservableGauge};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};

use crate::tally::{Figures, Tally};

/// One gauge's readings: a value and, for a split KPI, its attribute.
type Readings = Vec<(f64, Option<KeyValue>)>;

/// One KPI's gauge: its name, unit and description, and how to read it off the
/// figures.
struct Gauge(
    &'static str,
    &'static str,
    &'static str,
    fn(&Figures) -> Readings,
);

/// The gauges.
const GAUGES: [Gauge; 12] = [
    Gauge("touchpoint.kpi.cases", "{case}", "cases counted", |f| {
        vec![(f.cases as f64, None)]
    }),
    Gauge(
        "touchpoint.kpi.attempts_per_case",
        "{attempt}",
        "attempts sent, failed or put to a coordinator, per case",
        |f| vec![(f.attempts_per_case, None)],
    ),
    Gauge(
        "touchpoint.kpi.contact_rate",
        "1",
        "attempts answered by a reply / attempts sent, by channel",
        |f| {
            f.contact_rates
                .iter()
                .map(|(channel, reached, sent)| {
                    let rate = crate::tally::ratio(*reached, *sent);
                    (rate, Some(KeyValue::new("channel", *channel)))
                })
                .collect()
        },
    ),
    Gauge(
        "touchpoint.kpi.time_to_first_contact",
        "h",
        "mean hours from a case's opening to its first attempt sent",
        |f| {
            f.first_contact_hours
                .map(|h| (h, None))
                .into_iter()
                .collect()
        },
    ),
    Gauge(
        "touchpoint.kpi.backlog",
        "{touchpoint}",
        "touchpoints asked for and not yet attempted or suppressed",
        |f| vec![(f.backlog as f64, None)],
    ),
    Gauge(
        "touchpoint.kpi.suppressed",
        "{attempt}",
        "attempts suppressed, by reason",
        |f| {
            f.suppressed
                .iter()
                .map(|(reason, n)| (*n as f64, Some(KeyValue::new("reason", *reason))))
                .collect()
        },
    ),
    Gauge(
        "touchpoint.kpi.opt_out_rate",
        "1",
        "opt-outs per case",
        |f| vec![(f.opt_out_rate, None)],
    ),
    Gauge(
        "touchpoint.kpi.callbacks",
        "{callback}",
        "callbacks promised",
        |f| vec![(f.callbacks as f64, None)],
    ),
    Gauge(
        "touchpoint.kpi.callbacks_past_sla",
        "{callback}",
        "callbacks completed after their due time or open past it",
        |f| vec![(f.callbacks_past_sla as f64, None)],
    ),
    Gauge(
        "touchpoint.kpi.ae_flags",
        "{flag}",
        "possible adverse events flagged",
        |f| vec![(f.ae_flags as f64, None)],
    ),
    Gauge(
        "touchpoint.kpi.ae_flags_open",
        "{flag}",
        "possible adverse events whose review is not completed",
        |f| vec![(f.ae_flags_open as f64, None)],
    ),
    Gauge(
        "touchpoint.kpi.ae_flags_overdue",
        "{flag}",
        "possible adverse events open past their report due time (24 h)",
        |f| vec![(f.ae_flags_overdue as f64, None)],
    ),
];

fn register(meter: &Meter, tally: &Arc<Mutex<Tally>>) -> Vec<ObservableGauge<f64>> {
    GAUGES
        .iter()
        .map(|Gauge(name, unit, description, read)| {
            let tally = tally.clone();
            let read = *read;
            meter
                .f64_observable_gauge(*name)
                .with_unit(*unit)
                .with_description(*description)
                .with_callback(move |observer| {
                    let figures = {
                        let tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
                        tally.figures(tally.cases(), chrono::Utc::now())
                    };
                    for (value, attribute) in read(&figures) {
                        observer.observe(value, attribute.as_slice());
                    }
                })
                .build()
        })
        .collect()
}

/// Counts cases' events from the first and exports the KPIs to `endpoint` every
/// `every`, until `stop` resolves; pushes once more before returning.
pub async fn export(
    cases: &crate::mesh::Peer,
    endpoint: &str,
    every: Duration,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut events = crate::kpi::watch(cases).await?;
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .context("the OTLP metric exporter could not start")?;
    let provider = SdkMeterProvider::builder()
        .with_resource(
            Resource::builder()
                .with_service_name("touchpoint-kpi")
                .build(),
        )
        .with_reader(
            PeriodicReader::builder(exporter)
                .with_interval(every)
                .build(),
        )
        .build();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let _gauges = register(&provider.meter("touchpoint-kpi"), &tally);

    tokio::pin!(stop);
    let outcome = loop {
        tokio::select! {
            () = &mut stop => break Ok(()),
            message = events.message() => match message {
                Ok(Some(entry)) => {
                    if let Some(event) = &entry.event {
                        tally.lock().unwrap_or_else(PoisonError::into_inner).add(event);
                    }
                }
                Ok(None) => break Err(anyhow::anyhow!("cases ended the event stream")),
                Err(status) => break Err(anyhow::anyhow!("the event stream broke: {}", status.code())),
            },
        }
    };
    // The exporter's own thread sends the last push; it must not hold up the
    // runtime's threads.
    let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    outcome?;
    flushed
        .context("the metric exporter's shutdown panicked")?
        .context("the last push of the KPIs failed")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn readings(name: &str, figures: &Figures) -> Readings {
        GAUGES
            .iter()
            .find(|gauge| gauge.0 == name)
            .map(|gauge| (gauge.3)(figures))
            .unwrap_or_else(|| panic!("no gauge {name}"))
    }

    #[test]
    fn each_kpi_is_a_gauge_split_only_by_channel_or_reason() {
        let figures = Figures {
            cases: 6,
            attempts_per_case: 2.5,
            contact_rates: vec![("email", 0, 2), ("sms", 1, 4)],
            first_contact_hours: None,
            backlog: 3,
            suppressed: BTreeMap::from([("expired", 2), ("frequency cap", 1)]),
            opt_outs: 1,
            opt_out_rate: 1.0 / 6.0,
            callbacks: 0,
            callbacks_past_sla: 0,
            ae_flags: 1,
            ae_flags_open: 1,
            ae_flags_overdue: 0,
        };
        assert_eq!(
            readings("touchpoint.kpi.cases", &figures),
            vec![(6.0, None)]
        );
        assert_eq!(
            readings("touchpoint.kpi.contact_rate", &figures),
            vec![
                (0.0, Some(KeyValue::new("channel", "email"))),
                (0.25, Some(KeyValue::new("channel", "sms")))
            ]
        );
        assert_eq!(
            readings("touchpoint.kpi.suppressed", &figures)[1],
            (1.0, Some(KeyValue::new("reason", "frequency cap")))
        );
        // Nothing sent yet: no mean to report, rather than a made-up zero.
        assert!(readings("touchpoint.kpi.time_to_first_contact", &figures).is_empty());
        let names: Vec<&str> = GAUGES.iter().map(|gauge| gauge.0).collect();
        assert!(names.iter().all(|n| n.starts_with("touchpoint.kpi.")));
    }
}
