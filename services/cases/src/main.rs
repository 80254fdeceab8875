//! The cases service binary: read config, start telemetry, run.

use touchpoint_platform::config::Env;
use touchpoint_platform::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = touchpoint_cases::Config::from_env(&Env::Process)?;
    let _telemetry = telemetry::init(&config.platform.telemetry)?;
    touchpoint_cases::run(config).await?;
    Ok(())
}
