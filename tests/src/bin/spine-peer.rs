//! A second process for the spine tests: `spine-peer relay` publishes the producer
//! schema's outbox; `spine-peer consume` applies the topic to the consumer schema.
//!
//! Configuration comes from the usual variables (`DATABASE_URL`, `KAFKA_BROKERS`,
//! `TOUCHPOINT_TOPIC_PREFIX`, ...). `SPINE_CRASH_AFTER_PUBLISH=1` makes the relay
//! abort — like `kill -9` — right after its first publish, before marking sent.

use std::sync::Arc;

use anyhow::Context as _;
use touchpoint_platform::config::{Env, PlatformConfig};
use touchpoint_platform::shutdown::Shutdown;
use touchpoint_platform::{db, telemetry};
use touchpoint_tests::spine;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let role = std::env::args().nth(1).unwrap_or_default();
    let config = PlatformConfig::from_env(&Env::Process, "spine-peer", 0)?;
    let _telemetry = telemetry::init(&config.telemetry)?;
    let shutdown = Shutdown::on_signals();
    match role.as_str() {
        "relay" => {
            let pool = db::connect(
                &config.database,
                spine::PRODUCER_SCHEMA,
                &spine::PRODUCER_MIGRATIONS,
            )
            .await?;
            let mut relay = spine::relay(&pool, &config)?;
            if std::env::var("SPINE_CRASH_AFTER_PUBLISH").as_deref() == Ok("1") {
                relay = relay.with_after_publish(Arc::new(|published| {
                    if published > 0 {
                        std::process::abort();
                    }
                }));
            }
            relay.run(shutdown.token()).await;
        }
        "consume" => {
            let pool = db::connect(
                &config.database,
                spine::CONSUMER_SCHEMA,
                &spine::CONSUMER_MIGRATIONS,
            )
            .await?;
            spine::consumer(&pool, &config)
                .run(shutdown.token())
                .await
                .context("consumer stopped")?;
        }
        other => anyhow::bail!("unknown role {other:?}: expected relay or consume"),
    }
    Ok(())
}
