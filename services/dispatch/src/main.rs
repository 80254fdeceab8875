//! The dispatch service binary: read config, start telemetry, run.

use touchpoint_platform::config::Env;
use touchpoint_platform::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = touchpoint_dispatch::Config::from_env(&Env::Process)?;
    let _telemetry = telemetry::init(&config.platform.telemetry)?;
    touchpoint_dispatch::run(config).await?;
    Ok(())
}
