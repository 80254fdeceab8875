//! gRPC health checks of running services.

use std::time::Duration;

use anyhow::Context as _;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use touchpoint_platform::config::Env;
use touchpoint_platform::grpc::client::{self, ClientAccess};

/// The default addresses of the four services.
pub const SERVICES: [(&str, u16); 4] = [
    ("cases", 50051),
    ("cadence", 50052),
    ("dispatch", 50053),
    ("routing", 50054),
];

/// The serving status of the service at `addr`, or why it could not be asked.
/// The health service asks no credentials, but a service on TLS is reached
/// with the authority in `access`.
pub async fn status(addr: &str, access: &ClientAccess) -> anyhow::Result<ServingStatus> {
    let channel = client::connect_within(&format!("http://{addr}"), access, Duration::from_secs(2))
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
    let access = ClientAccess::from_env(&Env::Process)?;
    let mut all_serving = true;
    for addr in &targets {
        let line = match status(addr, &access).await {
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
