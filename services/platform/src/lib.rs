//! What every Touchpoint service shares: configuration, telemetry, the database,
//! the event plumbing (envelopes, outbox relay, inbox consumer, dead letters),
//! gRPC bootstrap, the clock and graceful shutdown.

pub mod access;
pub mod clock;
pub mod config;
pub mod contact;
pub mod db;
pub mod dlq;
pub mod envelope;
pub mod grpc;
pub mod http_client;
pub mod inbox;
pub mod input;
pub mod kafka;
pub mod metrics;
pub mod multipart;
pub mod outbox;
pub mod rounds;
pub mod secret;
pub mod service;
pub mod shutdown;
pub mod signature;
pub mod tansu;
pub mod telemetry;
pub mod tls;
pub mod topics;
pub mod trace_context;
pub mod vouch;
pub mod xml;

#[cfg(feature = "testkit")]
pub mod testkit;
