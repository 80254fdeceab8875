//! Dispatch's integration tests, in one binary so the crate
//! links once for them all: one module per story, and [`support`], what they
//! share.

mod calls;
mod email;
mod fax;
mod letters;
mod mailgun;
mod preview;
mod process;
mod sending;
mod sla;
mod sms;
mod support;
