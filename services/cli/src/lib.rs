//! The `touchpoint` command's library part: the demo, which the end-to-end
//! tests run against services of their own, and the operator's reports.

pub mod cases;
pub mod demo;
pub mod dlq;
pub mod events;
pub mod health;
pub mod kpi;
pub mod kpi_metrics;
pub mod kpi_summary;
pub mod mesh;
pub mod programs;
pub mod show;
pub mod stack;
pub mod tally;
