//! librdkafka settings shared by the relay, the consumers and the admin client.

use rdkafka::ClientConfig;

use crate::config::KafkaConfig;

/// Settings every client shares: brokers, and IPv4 loopback preferred.
pub fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        // `localhost` may resolve to ::1 where the broker listens on IPv4 only.
        .set("broker.address.family", "v4")
        .set("log_level", "4");
    client
}

/// An idempotent producer: `acks=all`, in-order retries, no duplicates per session.
///
/// lz4, not snappy: snappy batches cannot be fetched back from some brokers' storage.
pub fn idempotent_producer_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = client_config(config);
    client
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "5")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .set("message.timeout.ms", "30000");
    client
}

/// A consumer in `group` that stores offsets only when told to.
///
/// `enable.auto.offset.store=false`: an offset is stored after the database
/// transaction that applied its record has committed; auto-commit then writes the
/// stored offsets to the broker.
pub fn consumer_config(config: &KafkaConfig, group: &str) -> ClientConfig {
    let mut client = client_config(config);
    client
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        // A broker may hold a fetch this long before answering; the default 500 ms
        // would add half a second to every hop of an outreach story.
        .set("fetch.wait.max.ms", "100")
        .set("enable.partition.eof", "false");
    client
}
