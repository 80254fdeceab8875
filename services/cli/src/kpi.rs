//! `touchpoint kpi` and `touchpoint cases timeline`: reports read from the
//! cases service: its KPI projection, and every case's events in order.

use std::time::Duration;

use touchpoint_proto::v1::case_service_client::CaseServiceClient;
use touchpoint_proto::v1::{GetCaseRequest, GetKpisRequest, GetKpisResponse, RebuildKpisRequest};

use crate::demo;
use crate::kpi_summary::Summary;
use crate::mesh::Peer;
use crate::show;

/// The days and programs `touchpoint kpi` asks for.
#[derive(Debug, Clone, Default)]
pub struct Ask {
    /// First day, YYYY-MM-DD; empty: 30 days before `to`.
    pub from: String,
    /// Last day; empty: today in the site's zone.
    pub to: String,
    /// Only these programs; empty: every one the caller may see.
    pub programs: Vec<String>,
}

/// The KPI projection's answer for `ask`.
pub async fn fetch(cases: &Peer, ask: &Ask) -> anyhow::Result<GetKpisResponse> {
    let mut client = CaseServiceClient::new(cases.channel().await?);
    Ok(client
        .get_kpis(GetKpisRequest {
            program_ids: ask.programs.clone(),
            from_day: ask.from.clone(),
            to_day: ask.to.clone(),
            ..GetKpisRequest::default()
        })
        .await
        .map_err(|status| anyhow::anyhow!("GetKpis: {}", status.message()))?
        .into_inner())
}

/// The answer for `ask` once the projection has counted everything recorded,
/// or after `patience` as it stands.
pub async fn settled(
    cases: &Peer,
    ask: &Ask,
    patience: Duration,
) -> anyhow::Result<GetKpisResponse> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let answer = fetch(cases, ask).await?;
        if answer.behind == 0 || tokio::time::Instant::now() >= deadline {
            return Ok(answer);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Prints the KPI table for `ask`.
pub async fn report(cases: &Peer, ask: &Ask) -> anyhow::Result<()> {
    let answer = settled(cases, ask, Duration::from_secs(5)).await?;
    print!("{}", show::kpi_table(&Summary::of(&answer).rows()));
    Ok(())
}

/// Empties the projection, waits while it is rebuilt from the timeline, and
/// prints the table for `ask`.
pub async fn rebuild(cases: &Peer, ask: &Ask) -> anyhow::Result<()> {
    let mut client = CaseServiceClient::new(cases.channel().await?);
    let entries = client
        .rebuild_kpis(RebuildKpisRequest {})
        .await
        .map_err(|status| anyhow::anyhow!("RebuildKpis: {}", status.message()))?
        .into_inner()
        .entries;
    println!("rebuilding the KPIs from {entries} timeline entries");
    let answer = settled(cases, ask, Duration::from_secs(3600)).await?;
    print!("{}", show::kpi_table(&Summary::of(&answer).rows()));
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
