//! The `touchpoint` command's library part: the demo, which the end-to-end
//! tests run against services of their own.

pub mod demo;
