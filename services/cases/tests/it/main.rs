//! Cases' integration tests, in one binary so the crate
//! links once for them all: one module per story, and [`support`], what they
//! share.

mod access;
mod case_api;
mod case_timeline;
mod kpis;
mod process;
mod support;
