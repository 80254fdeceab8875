//! The case domain, free of I/O: values parsed once at the edge, and the case
//! aggregate's rules (which commands are allowed, which events they produce, and how
//! events fold into the case's state).

pub mod case;
pub mod contact;
pub mod locale;

/// A field of a request is unusable. Names the field and the problem, never the
/// value (it may be patient data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    /// The field's path in the request, e.g. `patient.contact.mobile_e164`.
    pub field: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl FieldError {
    /// `field` is unusable because of `problem`.
    pub fn new(field: impl Into<String>, problem: &'static str) -> Self {
        Self {
            field: field.into(),
            problem,
        }
    }
}
