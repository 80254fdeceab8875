//! Ids and texts that come in from outside (request fields), checked the same
//! way in every service, so a case id one service takes another does not
//! refuse:
//!
//! - an id is 1 to [`MAX_ID_CHARS`] letters, digits, `-`, `_`, `.` or `:`;
//! - a text is trimmed and at most [`MAX_TEXT_CHARS`] characters (a note,
//!   [`MAX_NOTE_CHARS`]), with no control characters but a note's line breaks.
//!
//! An error names the field and the rule, never the value (it may be patient
//! data), and reaches a gRPC client as `INVALID_ARGUMENT`.

/// The longest id.
pub const MAX_ID_CHARS: usize = 128;

/// The longest text field (a name, a reason, a request id).
pub const MAX_TEXT_CHARS: usize = 200;

/// The longest note.
pub const MAX_NOTE_CHARS: usize = 10_000;

/// A field that breaks its rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct InputError {
    /// The field, as the request names it.
    pub field: String,
    /// What it must be.
    pub rule: String,
}

impl InputError {
    /// `field` breaks `rule`.
    pub fn new(field: &str, rule: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            rule: rule.into(),
        }
    }
}

impl From<InputError> for tonic::Status {
    fn from(error: InputError) -> Self {
        tonic::Status::invalid_argument(error.to_string())
    }
}

/// `raw` as an id, trimmed.
pub fn id(field: &str, raw: &str) -> Result<String, InputError> {
    let value = raw.trim();
    let fits = !value.is_empty()
        && value.chars().count() <= MAX_ID_CHARS
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if fits {
        Ok(value.to_owned())
    } else {
        Err(InputError::new(
            field,
            format!("1 to {MAX_ID_CHARS} letters, digits, '-', '_', '.' or ':'"),
        ))
    }
}

/// `raw` as a text field, trimmed; empty unless `required`.
pub fn text(field: &str, raw: &str, required: bool) -> Result<String, InputError> {
    bounded(field, raw, required, MAX_TEXT_CHARS, false)
}

/// `raw` as a note, trimmed: line breaks and tabs are kept.
pub fn note(field: &str, raw: &str) -> Result<String, InputError> {
    bounded(field, raw, true, MAX_NOTE_CHARS, true)
}

fn bounded(
    field: &str,
    raw: &str,
    required: bool,
    max: usize,
    multiline: bool,
) -> Result<String, InputError> {
    let value = raw.trim();
    if required && value.is_empty() {
        return Err(InputError::new(field, "is required"));
    }
    let allowed = |c: char| !c.is_control() || (multiline && matches!(c, '\n' | '\r' | '\t'));
    if value.chars().count() > max || !value.chars().all(allowed) {
        return Err(InputError::new(
            field,
            format!("must be at most {max} printable characters"),
        ));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_trimmed_and_keeps_to_its_characters_and_length() {
        assert_eq!(
            id("case_id", " 0192f-ab.c:1_2 "),
            Ok("0192f-ab.c:1_2".into())
        );
        let long = "a".repeat(MAX_ID_CHARS + 1);
        for bad in [
            "",
            "  ",
            "case 1",
            "case/1",
            "case\n1",
            "caso-ñ",
            long.as_str(),
        ] {
            let error = id("case_id", bad).err();
            assert!(
                error
                    .as_ref()
                    .is_some_and(|e| e.to_string().starts_with("case_id: 1 to 128")),
                "{bad:?}: {error:?}"
            );
        }
        assert!(id("case_id", &"a".repeat(MAX_ID_CHARS)).is_ok());
    }

    #[test]
    fn a_text_is_bounded_and_its_error_never_shows_the_value() {
        assert_eq!(
            text("reason", "  moved away ", true),
            Ok("moved away".into())
        );
        assert_eq!(text("request_id", "", false), Ok(String::new()));
        assert_eq!(
            text("reason", " ", true).map_err(|e| e.to_string()),
            Err("reason: is required".into())
        );
        let secret = format!("Ana Ruiz {}", "x".repeat(MAX_TEXT_CHARS));
        let error = text("name", &secret, true).map_err(|e| e.to_string());
        assert_eq!(
            error,
            Err("name: must be at most 200 printable characters".into())
        );
        assert!(text("name", "Ana\u{7}", true).is_err());
    }

    #[test]
    fn a_note_keeps_its_lines_and_may_be_long() {
        let note_text = "Called back.\nPrefers mornings.";
        assert_eq!(note("body", note_text), Ok(note_text.into()));
        assert!(note("body", &"x".repeat(MAX_NOTE_CHARS)).is_ok());
        assert!(note("body", &"x".repeat(MAX_NOTE_CHARS + 1)).is_err());
        assert!(text("reason", "two\nlines", true).is_err());
    }

    #[test]
    fn an_input_error_reaches_a_client_as_invalid_argument() {
        let status = tonic::Status::from(InputError::new("case_id", "is required"));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "case_id: is required");
    }
}
