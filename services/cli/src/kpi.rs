//! `touchpoint kpi` and `touchpoint cases timeline`: reports read from the
//! cases service, which records every case's events in order.

use std::time::Duration;

use anyhow::Context as _;
use touchpoint_proto::v1::case_service_client::CaseServiceClient;
use touchpoint_proto::v1::{GetCaseRequest, TimelineEntry, WatchEventsRequest};

use crate::demo;
use crate::mesh::Peer;
use crate::show;
use crate::tally::Tally;

/// Reads every case event cases has recorded, from the first, until none has
/// come for `quiet` (the stream then only waits for new ones), and counts them.
pub async fn tally_all(cases: &Peer, quiet: Duration) -> anyhow::Result<Tally> {
    let mut events = watch(cases).await?;
    let mut tally = Tally::default();
    loop {
        match tokio::time::timeout(quiet, events.message()).await {
            Err(_) => return Ok(tally), // Caught up.
            Ok(Ok(Some(entry))) => {
                if let Some(event) = &entry.event {
                    tally.add(event);
                }
            }
            Ok(Ok(None)) => return Ok(tally),
            Ok(Err(status)) => anyhow::bail!("the event stream broke: {}", status.code()),
        }
    }
}

/// Every case event cases has recorded, from the first, then each new one.
pub async fn watch(cases: &Peer) -> anyhow::Result<tonic::Streaming<TimelineEntry>> {
    let mut client = CaseServiceClient::new(cases.channel().await?);
    Ok(client
        .watch_events(WatchEventsRequest::default())
        .await
        .context("WatchEvents")?
        .into_inner())
}

/// Prints the KPI table over every case cases knows.
pub async fn report(cases: &Peer) -> anyhow::Result<()> {
    let tally = tally_all(cases, Duration::from_secs(1)).await?;
    print!(
        "{}",
        show::kpi_table(&tally.kpis(tally.cases(), chrono::Utc::now()))
    );
    Ok(())
}

/// Prints case `case_id`'s timeline in the patient's time zone.
pub async fn timeline(cases: &Peer, case_id: &str) -> anyhow::Result<()> {
    let mut client = CaseServiceClient::new(cases.channel().await?);
    let case = client
        .get_case(GetCaseRequest {
            case_id: case_id.to_owned(),
        })
        .await
        .map_err(|status| anyhow::anyhow!("GetCase: {}", status.message()))?
        .into_inner();
    let entries = demo::timeline(&mut client, case_id).await?;
    println!("{case_id} ({}, {})", case.program_id, case.time_zone);
    print!("{}", show::timeline(&case.time_zone, &entries));
    Ok(())
}
