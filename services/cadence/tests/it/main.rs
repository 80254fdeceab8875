//! Cadence's integration tests, in one binary so the crate
//! links once for them all: one module per story, and [`support`], what they
//! share.

mod cadence_api;
mod due;
mod outcomes;
mod store;
mod support;
mod versions;
