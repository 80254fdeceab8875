//! The case domain, free of I/O: values parsed once at the edge, and the case
//! aggregate's rules (which commands are allowed, which events they produce, and how
//! events fold into the case's state).

pub mod adverse_event;
pub mod case;
/// Contact points, shared with routing (which looks cases up by them).
pub mod contact {
    pub use touchpoint_platform::contact::{ContactKey, EmailAddress, PhoneNumber};
}
pub mod locale;

pub use touchpoint_platform::contact::FieldError;
