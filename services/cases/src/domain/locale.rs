//! The patient's language and time zone.

use std::str::FromStr;

use touchpoint_proto::v1::Language as ProtoLanguage;

use super::FieldError;

/// A language Touchpoint writes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// English.
    En,
    /// Spanish.
    Es,
}

impl Language {
    /// From the wire enum; unspecified or unknown is an error.
    pub fn from_proto(value: i32, field: &str) -> Result<Self, FieldError> {
        match ProtoLanguage::try_from(value) {
            Ok(ProtoLanguage::En) => Ok(Language::En),
            Ok(ProtoLanguage::Es) => Ok(Language::Es),
            _ => Err(FieldError::new(field, "must be en or es")),
        }
    }

    /// To the wire enum.
    pub fn to_proto(self) -> ProtoLanguage {
        match self {
            Language::En => ProtoLanguage::En,
            Language::Es => ProtoLanguage::Es,
        }
    }
}

/// An IANA time zone, e.g. `America/Chicago`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeZone(chrono_tz::Tz);

impl TimeZone {
    /// Parses an IANA name.
    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldError> {
        chrono_tz::Tz::from_str(raw.trim())
            .map(TimeZone)
            .map_err(|_| FieldError::new(field, "not an IANA time zone such as America/Chicago"))
    }

    /// The IANA name.
    pub fn name(&self) -> &'static str {
        self.0.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iana_zones_parse_and_others_do_not() -> Result<(), FieldError> {
        assert_eq!(
            TimeZone::parse("America/Chicago", "tz")?.name(),
            "America/Chicago"
        );
        for bad in ["", "CST6CDT7", "Mars/Olympus", "america chicago"] {
            assert!(TimeZone::parse(bad, "tz").is_err(), "{bad:?} accepted");
        }
        Ok(())
    }

    #[test]
    fn only_english_and_spanish() {
        assert_eq!(
            Language::from_proto(ProtoLanguage::Es as i32, "l"),
            Ok(Language::Es)
        );
        assert!(Language::from_proto(0, "l").is_err());
        assert!(Language::from_proto(99, "l").is_err());
    }
}
