//! `touchpoint kpi --export`: the KPIs as OpenTelemetry metrics, pushed over
//! OTLP/gRPC to `OTEL_EXPORTER_OTLP_ENDPOINT` (a collector) every interval,
//! read from cases' KPI projection before each push. Each KPI is a gauge named
//! `touchpoint.kpi.*` over the days asked for; the only attributes are a
//! channel, a backlog age or a suppression reason, never anything about a
//! patient.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, MeterProvider as _, ObservableGauge};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};

use crate::kpi::{self, Ask};
use crate::kpi_summary::{Summary, ratio};

/// One gauge's readings: a value and, for a split KPI, its attribute.
type Readings = Vec<(f64, Option<KeyValue>)>;

/// One KPI's gauge: its name, unit and description, and how to read it off the
/// figures.
struct Gauge(
    &'static str,
    &'static str,
    &'static str,
    fn(&Summary) -> Readings,
);

/// The gauges.
const GAUGES: [Gauge; 17] = [
    Gauge("touchpoint.kpi.cases", "{case}", "cases enrolled", |s| {
        vec![(s.enrolled as f64, None)]
    }),
    Gauge(
        "touchpoint.kpi.attempts_per_case",
        "{attempt}",
        "attempts sent, failed or put to a coordinator, per case enrolled",
        |s| vec![(ratio(s.attempted_total(), s.enrolled), None)],
    ),
    Gauge(
        "touchpoint.kpi.contact_rate",
        "1",
        "attempts answered / attempts made, by channel",
        |s| {
            s.contact_rates()
                .into_iter()
                .map(|(channel, _, _, rate)| {
                    (rate, Some(KeyValue::new("channel", channel.to_owned())))
                })
                .collect()
        },
    ),
    Gauge(
        "touchpoint.kpi.time_to_first_contact",
        "h",
        "mean hours from a case's enrolment to its first answered contact",
        |s| {
            s.first_contact
                .hours()
                .map(|h| (h, None))
                .into_iter()
                .collect()
        },
    ),
    Gauge(
        "touchpoint.kpi.time_to_first_send",
        "h",
        "mean hours from a case's enrolment to the first message sent to it",
        |s| {
            s.first_send
                .hours()
                .map(|h| (h, None))
                .into_iter()
                .collect()
        },
    ),
    Gauge(
        "touchpoint.kpi.backlog",
        "{touchpoint}",
        "touchpoints due and not yet attempted, by age",
        |s| {
            s.backlog
                .iter()
                .map(|(age, n)| (*n as f64, Some(KeyValue::new("age", age.clone()))))
                .collect()
        },
    ),
    Gauge(
        "touchpoint.kpi.suppressed",
        "{attempt}",
        "attempts suppressed, by reason",
        |s| {
            s.suppressed
                .iter()
                .map(|(reason, n)| (*n as f64, Some(KeyValue::new("reason", reason.clone()))))
                .collect()
        },
    ),
    Gauge(
        "touchpoint.kpi.opt_out_rate",
        "1",
        "cases that opted out per case enrolled",
        |s| vec![(ratio(s.opted_out, s.enrolled), None)],
    ),
    Gauge(
        "touchpoint.kpi.time_to_first_response",
        "h",
        "mean hours from an inbound contact to a person's answer",
        |s| {
            s.first_response
                .hours()
                .map(|h| (h, None))
                .into_iter()
                .collect()
        },
    ),
    Gauge(
        "touchpoint.kpi.callbacks",
        "{callback}",
        "callbacks promised",
        |s| vec![(s.callbacks as f64, None)],
    ),
    Gauge(
        "touchpoint.kpi.callbacks_within_sla",
        "1",
        "callbacks done by their due time / callbacks done",
        |s| vec![(ratio(s.callbacks_in_sla, s.callbacks_done), None)],
    ),
    Gauge(
        "touchpoint.kpi.callbacks_past_sla",
        "{callback}",
        "callbacks open past their due time",
        |s| vec![(s.open_of("callback").1 as f64, None)],
    ),
    Gauge(
        "touchpoint.kpi.ae_flags",
        "{flag}",
        "possible adverse events flagged",
        |s| vec![(s.ae_flags as f64, None)],
    ),
    Gauge(
        "touchpoint.kpi.ae_reviewed_within_24h",
        "1",
        "possible adverse events reviewed within 24 hours of receipt / flagged",
        |s| vec![(ratio(s.ae_reviewed_in_24h, s.ae_flags), None)],
    ),
    Gauge(
        "touchpoint.kpi.ae_reported_within_24h",
        "1",
        "possible adverse events reported to the safety database within 24 hours of receipt / flagged",
        |s| vec![(ratio(s.ae_reported_in_24h, s.ae_flags), None)],
    ),
    Gauge(
        "touchpoint.kpi.ae_flags_open",
        "{flag}",
        "possible adverse events whose review is not completed",
        |s| vec![(s.open_of("adverse_event").0 as f64, None)],
    ),
    Gauge(
        "touchpoint.kpi.ae_flags_overdue",
        "{flag}",
        "possible adverse events open past their report due time (24 h)",
        |s| vec![(s.open_of("adverse_event").1 as f64, None)],
    ),
];

fn register(meter: &Meter, latest: &Arc<Mutex<Summary>>) -> Vec<ObservableGauge<f64>> {
    GAUGES
        .iter()
        .map(|Gauge(name, unit, description, read)| {
            let latest = latest.clone();
            let read = *read;
            meter
                .f64_observable_gauge(*name)
                .with_unit(*unit)
                .with_description(*description)
                .with_callback(move |observer| {
                    let summary = latest
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone();
                    for (value, attribute) in read(&summary) {
                        observer.observe(value, attribute.as_slice());
                    }
                })
                .build()
        })
        .collect()
}

/// Reads the KPIs for `ask` from the projection and exports them to
/// `endpoint` every `every`, until `stop` resolves; pushes once more before
/// returning.
pub async fn export(
    cases: &crate::mesh::Peer,
    ask: &Ask,
    endpoint: &str,
    every: Duration,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let first = Summary::of(&kpi::fetch(cases, ask).await?);
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
    let latest = Arc::new(Mutex::new(first));
    let _gauges = register(&provider.meter("touchpoint-kpi"), &latest);

    tokio::pin!(stop);
    let mut ticker = tokio::time::interval(every);
    let outcome = loop {
        tokio::select! {
            () = &mut stop => break Ok(()),
            _ = ticker.tick() => match kpi::fetch(cases, ask).await {
                Ok(answer) => {
                    *latest.lock().unwrap_or_else(PoisonError::into_inner) = Summary::of(&answer);
                }
                Err(error) => break Err(error),
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
    use crate::kpi_summary::Mean;

    fn readings(name: &str, summary: &Summary) -> Readings {
        GAUGES
            .iter()
            .find(|gauge| gauge.0 == name)
            .map(|gauge| (gauge.3)(summary))
            .unwrap_or_else(|| panic!("no gauge {name}"))
    }

    #[test]
    fn each_kpi_is_a_gauge_split_only_by_channel_age_or_reason() {
        let summary = Summary {
            enrolled: 6,
            attempted: BTreeMap::from([("email".into(), 2), ("sms".into(), 4)]),
            reached: BTreeMap::from([("sms".into(), 1)]),
            first_contact: Mean {
                count: 2,
                seconds: 7200,
            },
            suppressed: BTreeMap::from([("expired".into(), 2), ("frequency_cap".into(), 1)]),
            open: BTreeMap::from([("adverse_event".into(), (1, 0))]),
            ..Summary::default()
        };
        assert_eq!(
            readings("touchpoint.kpi.cases", &summary),
            vec![(6.0, None)]
        );
        assert_eq!(
            readings("touchpoint.kpi.contact_rate", &summary),
            vec![
                (0.0, Some(KeyValue::new("channel", "email"))),
                (0.25, Some(KeyValue::new("channel", "sms")))
            ]
        );
        assert_eq!(
            readings("touchpoint.kpi.suppressed", &summary)[1],
            (1.0, Some(KeyValue::new("reason", "frequency_cap")))
        );
        assert_eq!(
            readings("touchpoint.kpi.time_to_first_contact", &summary),
            vec![(1.0, None)]
        );
        // Nothing sent yet: no mean to report, rather than a made-up zero.
        assert!(readings("touchpoint.kpi.time_to_first_send", &summary).is_empty());
        assert_eq!(
            readings("touchpoint.kpi.ae_flags_open", &summary),
            vec![(1.0, None)]
        );
        let names: Vec<&str> = GAUGES.iter().map(|gauge| gauge.0).collect();
        assert!(names.iter().all(|n| n.starts_with("touchpoint.kpi.")));
    }
}
