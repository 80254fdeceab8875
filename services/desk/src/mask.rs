//! What a page shows of a patient's contact details until someone asks to
//! see them in full (a reveal, which is logged): enough to tell two numbers
//! apart, never enough to dial or write to.

use touchpoint_proto::v1::{Person, PostalAddress};

/// `+15551234567` as `•••• 4567`: the last four digits only.
pub fn phone(e164: &str) -> String {
    if e164.is_empty() {
        return String::new();
    }
    let digits: Vec<char> = e164.chars().filter(char::is_ascii_digit).collect();
    let tail: String = digits[digits.len().saturating_sub(4)..].iter().collect();
    format!("•••• {tail}")
}

/// `ana.lopez@example.com` as `a•••@example.com`.
pub fn email(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}•••@{domain}")
        }
        None if address.is_empty() => String::new(),
        None => "•••".to_owned(),
    }
}

/// A postal address as its region and country only.
pub fn address(address: &PostalAddress) -> String {
    [address.region.as_str(), address.country.as_str()]
        .iter()
        .filter(|part| !part.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

/// A postal address in full, for a reveal.
pub fn address_in_full(address: &PostalAddress) -> String {
    [
        address.line1.as_str(),
        address.line2.as_str(),
        address.city.as_str(),
        address.region.as_str(),
        address.postal_code.as_str(),
        address.country.as_str(),
    ]
    .iter()
    .filter(|part| !part.is_empty())
    .copied()
    .collect::<Vec<_>>()
    .join(", ")
}

/// A person's initials: `Ana López` as `A. L.`.
pub fn initials(person: Option<&Person>) -> String {
    let Some(name) = person.and_then(|p| p.name.as_ref()) else {
        return "—".to_owned();
    };
    [name.given_name.as_str(), name.family_name.as_str()]
        .iter()
        .filter_map(|part| part.chars().next())
        .map(|c| format!("{}.", c.to_uppercase()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use touchpoint_proto::v1::PersonName;

    #[test]
    fn masked_details_keep_too_little_to_reach_anyone() {
        assert_eq!(phone("+15551234567"), "•••• 4567");
        assert_eq!(phone("+12"), "•••• 12");
        assert_eq!(phone(""), "");
        assert_eq!(email("ana.lopez@example.com"), "a•••@example.com");
        assert_eq!(email("not-an-address"), "•••");
        let home = PostalAddress {
            line1: "12 Elm St".into(),
            city: "Albany".into(),
            region: "NY".into(),
            postal_code: "12207".into(),
            country: "US".into(),
            ..PostalAddress::default()
        };
        assert_eq!(address(&home), "NY, US");
        assert_eq!(address_in_full(&home), "12 Elm St, Albany, NY, 12207, US");
        let ana = Person {
            name: Some(PersonName {
                given_name: "ana".into(),
                family_name: "López".into(),
            }),
            ..Person::default()
        };
        assert_eq!(initials(Some(&ana)), "A. L.");
        assert_eq!(initials(None), "—");
    }
}
