//! Fixtures shared by the cross-process tests, the `spine-peer` process and the
//! benchmarks: cases opened through the cases API ([`fixtures`]); a producer
//! side that appends probe events to an outbox, and a consumer side that
//! applies them to `spine_effects` ([`spine`]).

pub mod fixtures;
pub mod spine;
