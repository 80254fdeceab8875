//! The cadence service binary: read config, start telemetry, run.

use touchpoint_platform::config::Env;
use touchpoint_platform::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = touchpoint_cadence::Config::from_env(&Env::Process)?;
    let _telemetry = telemetry::init(&config.platform.telemetry)?;
    touchpoint_cadence::run(config).await?;
    Ok(())
}
