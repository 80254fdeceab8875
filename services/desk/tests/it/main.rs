//! The desk's tests, in a real headless Chromium against the real services,
//! a real OpenID provider and the desk binary: one module per story, with
//! [`support`] and [`browser`], what they share.

mod access;
mod browser;
mod coordinator;
mod handover;
mod live;
mod operations;
mod reply;
mod roster;
mod safety;
mod support;
