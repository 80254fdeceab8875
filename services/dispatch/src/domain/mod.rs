//! Dispatch's pure rules: message sizes, the last-moment checks before a send,
//! and the life of an attempt. No I/O: values in, decisions out.

pub mod call;
pub mod fax;
pub mod guard;
pub mod sms;
