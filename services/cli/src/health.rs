//! gRPC health checks of running services.

use std::time::Duration;

use anyhow::Context as _;
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The default addresses of the four services.
pub const SERVICES: [(&str, u16); 4] = [
    ("cases", 50051),
    ("cadence", 50052),
    ("dispatch", 50053),
    ("routing", 50054),
];

/// The serving status of the service at `addr`, or why it could not be asked.
pub async fn status(addr: &str) -> anyhow::Result<ServingStatus> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .context("not a host:port")?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .context("unreachable")?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .context("health check failed")?;
    Ok(ServingStatus::try_from(response.into_inner().status).unwrap_or(ServingStatus::Unknown))
}

/// Prints the health of `addrs` (default: the four services on their local ports).
pub async fn report(addrs: &[String]) -> anyhow::Result<()> {
    let targets: Vec<String> = if addrs.is_empty() {
        SERVICES
            .iter()
            .map(|(_, port)| format!("127.0.0.1:{port}"))
            .collect()
    } else {
        addrs.to_vec()
    };
    let mut all_serving = true;
    for addr in &targets {
        let line = match status(addr).await {
            Ok(ServingStatus::Serving) => "SERVING".to_owned(),
            Ok(other) => {
                all_serving = false;
                other.as_str_name().to_owned()
            }
            Err(error) => {
                all_serving = false;
                format!("DOWN ({error:#})")
            }
        };
        println!("{addr:<22} {line}");
    }
    if !all_serving {
        anyhow::bail!("not every service is serving");
    }
    Ok(())
}
