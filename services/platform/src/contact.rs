//! Contact points: phone numbers in E.164 and email addresses, normalised so the
//! same number typed three ways finds the same case; postal addresses a letter
//! can be sent to. Cases stores them; routing
//! looks cases up by them.

use phonenumber::Mode;
use phonenumber::country::Id;
use touchpoint_proto::v1::{Channel, ContactPoint, PostalAddress, contact_point};

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

/// A postal address a letter can be sent to, as cadence keeps it on an
/// enrolment and dispatch on a letter's attempt (patient data: `Debug` shows
/// none of it).
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Address {
    /// First line.
    pub line1: String,
    /// Second line, or empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub line2: String,
    /// City.
    pub city: String,
    /// State or region.
    pub region: String,
    /// ZIP or postal code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
}

impl Address {
    /// From the event's address, when a letter can be addressed with it.
    pub fn from_proto(address: Option<&PostalAddress>) -> Option<Self> {
        let a = address.filter(|a| a.is_mailable())?;
        Some(Self {
            line1: a.line1.trim().to_owned(),
            line2: a.line2.trim().to_owned(),
            city: a.city.trim().to_owned(),
            region: a.region.trim().to_owned(),
            postal_code: a.postal_code.trim().to_owned(),
            country: a.country.trim().to_owned(),
        })
    }

    /// As a letter's attempt keeps it: JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// From a letter's attempt; None when it is not an address.
    pub fn from_json(json: &str) -> Option<Self> {
        serde_json::from_str(json).ok()
    }

    /// As events carry it.
    pub fn to_proto(&self) -> PostalAddress {
        PostalAddress {
            line1: self.line1.clone(),
            line2: self.line2.clone(),
            city: self.city.clone(),
            region: self.region.clone(),
            postal_code: self.postal_code.clone(),
            country: self.country.clone(),
        }
    }
}

impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Address(…)")
    }
}

/// A valid phone number in E.164 form, e.g. `+13125550123`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parses a number in any common format; national numbers are taken as US.
    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldError> {
        let number = phonenumber::parse(Some(Id::US), raw.trim())
            .map_err(|_| FieldError::new(field, "not a phone number"))?;
        if !phonenumber::is_valid(&number) {
            return Err(FieldError::new(field, "not a valid phone number"));
        }
        Ok(Self(number.format().mode(Mode::E164).to_string()))
    }

    /// Parses an optional number: empty means none.
    pub fn parse_optional(raw: &str, field: &str) -> Result<Option<Self>, FieldError> {
        optional(raw, field, Self::parse)
    }

    /// The E.164 form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For logs: the country code and last two digits only, e.g. `+1******23`.
    pub fn masked(&self) -> String {
        mask(&self.0, 2, 2)
    }
}

/// An email address, with its domain lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Parses an address of the form `local@domain.tld`.
    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldError> {
        let raw = raw.trim();
        let invalid = || FieldError::new(field, "not a valid email address");
        if raw.len() > 254 || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = raw.split_once('@').ok_or_else(invalid)?;
        let labels_ok = domain.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
        if local.is_empty()
            || local.len() > 64
            || local.contains('@')
            || !domain.contains('.')
            || !labels_ok
        {
            return Err(invalid());
        }
        Ok(Self(format!("{local}@{}", domain.to_ascii_lowercase())))
    }

    /// Parses an optional address: empty means none.
    pub fn parse_optional(raw: &str, field: &str) -> Result<Option<Self>, FieldError> {
        optional(raw, field, Self::parse)
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key contact lookups use: [`mailbox`].
    pub fn lookup_key(&self) -> String {
        mailbox(&self.0)
    }
}

/// One mailbox however its address was typed: the whole address lower-cased
/// (mailbox names are case-insensitive at every provider a hub meets). What
/// lookups, opt-outs and unsubscribe proofs compare.
pub fn mailbox(address: &str) -> String {
    address.to_lowercase()
}

/// What a caller looks a case up by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ContactKey {
    /// A phone or fax number.
    Phone(PhoneNumber),
    /// An email address.
    Email(EmailAddress),
}

impl ContactKey {
    /// A phone number in any format, or an email address.
    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldError> {
        if raw.contains('@') {
            EmailAddress::parse(raw, field).map(ContactKey::Email)
        } else {
            PhoneNumber::parse(raw, field).map(ContactKey::Phone)
        }
    }

    /// The normalised key stored in the contact index.
    pub fn index_key(&self) -> String {
        match self {
            ContactKey::Phone(phone) => format!("phone:{}", phone.as_str()),
            ContactKey::Email(email) => format!("email:{}", email.lookup_key()),
        }
    }

    /// The key [`index_key`](Self::index_key) made, read back (an address
    /// comes back lower-cased, as the key holds it); None for anything else.
    pub fn parse_index_key(key: &str) -> Option<Self> {
        match key.split_once(':')? {
            ("phone", number) => PhoneNumber::parse(number, "").ok().map(ContactKey::Phone),
            ("email", address) => EmailAddress::parse(address, "").ok().map(ContactKey::Email),
            _ => None,
        }
    }

    /// The contact point as events carry it on `channel` (a number on the fax
    /// channel is a fax number; an address lower-cased).
    pub fn to_contact_point(&self, channel: Channel) -> ContactPoint {
        let value = match self {
            ContactKey::Phone(number) if channel == Channel::Fax => {
                contact_point::Value::FaxE164(number.as_str().to_owned())
            }
            ContactKey::Phone(number) => {
                contact_point::Value::PhoneE164(number.as_str().to_owned())
            }
            // As lookups key it: the same mailbox however it was typed.
            ContactKey::Email(address) => contact_point::Value::Email(address.lookup_key()),
        };
        ContactPoint { value: Some(value) }
    }
}

/// An empty field is none; anything else must parse.
fn optional<T>(
    raw: &str,
    field: &str,
    parse: fn(&str, &str) -> Result<T, FieldError>,
) -> Result<Option<T>, FieldError> {
    if raw.trim().is_empty() {
        Ok(None)
    } else {
        parse(raw, field).map(Some)
    }
}

fn mask(value: &str, keep_start: usize, keep_end: usize) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() <= keep_start + keep_end {
        return "*".repeat(chars.len());
    }
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i < keep_start || i >= chars.len() - keep_end {
                *c
            } else {
                '*'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_number_typed_three_ways_is_one_e164() -> Result<(), FieldError> {
        let forms = ["(312) 555-0142", "312.555.0142", "+1 312 555 0142"];
        let parsed: Vec<String> = forms
            .iter()
            .map(|f| PhoneNumber::parse(f, "phone").map(|p| p.as_str().to_owned()))
            .collect::<Result<_, _>>()?;
        assert!(parsed.iter().all(|p| p == "+13125550142"), "{parsed:?}");
        Ok(())
    }

    #[test]
    fn a_bad_phone_names_the_field_not_the_value() {
        for bad in ["", "hello", "555", "+1 000 000 0000"] {
            let err = PhoneNumber::parse(bad, "patient.contact.mobile_e164").err();
            let text = err.as_ref().map(ToString::to_string).unwrap_or_default();
            assert!(
                text.starts_with("patient.contact.mobile_e164:"),
                "{bad:?} -> {text}"
            );
            assert!(bad.is_empty() || !text.contains(bad), "{text}");
        }
    }

    #[test]
    fn emails_are_checked_and_their_domain_lowercased() -> Result<(), FieldError> {
        assert_eq!(
            EmailAddress::parse(" Ana.Ruiz@Example.COM ", "email")?.as_str(),
            "Ana.Ruiz@example.com"
        );
        for bad in [
            "",
            "no-at-sign",
            "a@b",
            "a b@c.com",
            "@c.com",
            "a@-c.com",
            "a@c..com",
            "a@b@c.com",
        ] {
            assert!(
                EmailAddress::parse(bad, "email").is_err(),
                "{bad:?} accepted"
            );
        }
        Ok(())
    }

    #[test]
    fn lookup_keys_tell_phones_from_emails() -> Result<(), FieldError> {
        assert_eq!(
            ContactKey::parse("312-555-0142", "c")?.index_key(),
            "phone:+13125550142"
        );
        assert_eq!(
            ContactKey::parse("Ana@Example.com", "c")?.index_key(),
            "email:ana@example.com"
        );
        Ok(())
    }

    #[test]
    fn an_index_key_reads_back_as_the_contact_point_it_was() -> Result<(), FieldError> {
        for raw in ["(312) 555-0142", "Ana.Ruiz@Example.com"] {
            let key = ContactKey::parse(raw, "c")?.index_key();
            let read = ContactKey::parse_index_key(&key).map(|k| k.index_key());
            assert_eq!(read, Some(key));
        }
        assert_eq!(ContactKey::parse_index_key("fax:+13125550142"), None);
        let fax = ContactKey::parse("+13125550142", "c")?.to_contact_point(Channel::Fax);
        assert_eq!(
            fax.value,
            Some(contact_point::Value::FaxE164("+13125550142".into()))
        );
        Ok(())
    }

    #[test]
    fn masked_phone_keeps_only_the_edges() -> Result<(), FieldError> {
        assert_eq!(
            PhoneNumber::parse("312 555 0142", "p")?.masked(),
            "+1********42"
        );
        Ok(())
    }
}
