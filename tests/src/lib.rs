//! Fixtures shared by the cross-process tests, the `spine-peer` process and the
//! benchmarks: cases opened through the cases API ([`fixtures`]); cases,
//! dispatch and routing started in the test's process ([`hub`]); a producer
//! side that appends probe events to an outbox, and a consumer side that
//! applies them to `spine_effects` ([`spine`]); the services as processes
//! ([`system`]); percentiles and process readings ([`bench`]); a proxy that
//! cuts the services off the broker ([`outage`]); bulk loads for benchmarks
//! ([`seed`]); a stand-in for autovacuum on
//! a server that runs without it ([`vacuum`]).

pub mod bench;
pub mod db_work;
pub mod fixtures;
pub mod hub;
pub mod outage;
pub mod seed;
pub mod spine;
pub mod system;
pub mod vacuum;
