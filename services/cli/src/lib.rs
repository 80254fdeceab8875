//! The `touchpoint` command's library part: the demo, which the end-to-end
//! tests run against services of their own, and the operator's reports.

pub mod demo;
pub mod events;
pub mod kpi;
pub mod show;
pub mod tally;
