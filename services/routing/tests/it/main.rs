//! Routing's integration tests, in one binary so the crate
//! links once for them all: one module per story, and [`support`], what they
//! share.

mod inbound;
mod opt_out;
mod roster;
mod support;
mod tasks;
mod voice;
mod withdrawn;
