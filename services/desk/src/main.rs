//! The desk binary: read config, start telemetry, run.

use touchpoint_platform::config::Env;
use touchpoint_platform::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = touchpoint_desk::Config::from_env(&Env::Process)?;
    let _telemetry = telemetry::init(&config.telemetry)?;
    touchpoint_desk::run(config).await?;
    Ok(())
}
