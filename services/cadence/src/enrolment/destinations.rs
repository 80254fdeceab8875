//! Where each channel reaches a case: the patient's contact points first, the
//! caregiver's when the patient has none, the prescriber's office for fax, the
//! patient's own postal address for a letter; never a number or address that
//! opted out of the channel.
//!
//! These are patient data. `Debug` says only which contact points are known, so
//! an enrolment can be logged or shown in a test failure without them.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use touchpoint_platform::contact::Address;
use touchpoint_programs::{Whereabouts, us_region};
use touchpoint_proto::v1::contact_point::Value;
use touchpoint_proto::v1::{Channel, ContactPoint, ContactPoints};

/// A number or address, as a change carries it: patient data, so `Debug` does
/// not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Point(pub String);

impl fmt::Debug for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Point(…)")
    }
}

/// One person's contact points, as the cases service keeps them (phones in E.164).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonContacts {
    /// Mobile phone.
    pub mobile: Option<String>,
    /// Landline.
    pub landline: Option<String>,
    /// Email address.
    pub email: Option<String>,
    /// The region (state) of a US postal address, for the state rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The postal address, when a letter can be addressed with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
}

impl PersonContacts {
    /// From the event's contact points; empty fields are unknown.
    pub fn from_proto(contact: Option<&ContactPoints>) -> Self {
        let known = |s: &str| (!s.trim().is_empty()).then(|| s.to_owned());
        contact.map_or_else(Self::default, |c| Self {
            mobile: known(&c.mobile_e164),
            landline: known(&c.landline_e164),
            email: known(&c.email),
            region: us_region(c.postal_address.as_ref()).map(str::to_owned),
            address: Address::from_proto(c.postal_address.as_ref()),
        })
    }

    /// Where the person is, as the state rules ask: the postal region, and the
    /// mobile (else landline) for its area code.
    pub fn whereabouts(&self) -> Whereabouts<'_> {
        Whereabouts {
            region: self.region.as_deref(),
            phone: self.mobile.as_deref().or(self.landline.as_deref()),
        }
    }
}

/// Every contact point outreach may use for a case.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destinations {
    /// The patient's.
    pub patient: PersonContacts,
    /// The caregiver's, if the case has one.
    pub caregiver: PersonContacts,
    /// The prescriber office's fax, E.164.
    pub prescriber_fax: Option<String>,
    /// Contact points that opted out, by channel name (`CHANNEL_SMS`): kept
    /// across contact point updates, so a number put back on the case stays
    /// opted out until it opts in.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub opted_out: BTreeSet<(String, String)>,
}

impl Destinations {
    /// Where `channel` reaches the case, if anywhere. Voice tries mobiles before
    /// landlines; a letter goes only to the patient's own address (a caregiver's
    /// letters would need a caregiver text of their own, as SMS and email have).
    pub fn for_channel(&self, channel: Channel) -> Option<ContactPoint> {
        let (p, c) = (&self.patient, &self.caregiver);
        let first = |candidates: &[&Option<String>]| {
            candidates
                .iter()
                .filter_map(|c| c.as_ref())
                .find(|point| !self.is_opted_out(channel, point))
                .cloned()
        };
        let value = match channel {
            Channel::Sms => first(&[&p.mobile, &c.mobile]).map(Value::PhoneE164),
            Channel::Voice => {
                first(&[&p.mobile, &p.landline, &c.mobile, &c.landline]).map(Value::PhoneE164)
            }
            Channel::Email => first(&[&p.email, &c.email]).map(Value::Email),
            Channel::Fax => first(&[&self.prescriber_fax]).map(Value::FaxE164),
            Channel::Mail => p
                .address
                .as_ref()
                .map(|a| Value::PostalAddress(a.to_proto())),
            Channel::Unspecified => None,
        }?;
        Some(ContactPoint { value: Some(value) })
    }

    /// Whether `point` reaches the caregiver and not the patient: a message to
    /// it is the caregiver's, with no more than the minimum necessary.
    pub fn is_caregivers(&self, point: &ContactPoint) -> bool {
        let Some(value) = point.text() else {
            return false;
        };
        let holds = |p: &PersonContacts| {
            [&p.mobile, &p.landline, &p.email]
                .into_iter()
                .any(|v| v.as_deref() == Some(value))
        };
        holds(&self.caregiver) && !holds(&self.patient)
    }

    /// Whether `point` opted out of `channel`.
    pub fn is_opted_out(&self, channel: Channel, point: &str) -> bool {
        self.opted_out
            .contains(&(channel.as_str_name().to_owned(), point.to_owned()))
    }

    /// Records that `point` opted out of `channel` (true) or back in (false).
    pub fn set_opted_out(&mut self, channel: Channel, point: &str, opted_out: bool) {
        let key = (channel.as_str_name().to_owned(), point.to_owned());
        if opted_out {
            self.opted_out.insert(key);
        } else {
            self.opted_out.remove(&key);
        }
    }

    /// New contact points, keeping what was said about opting out.
    pub fn replaced_by(&self, new: Destinations) -> Destinations {
        Destinations {
            opted_out: self.opted_out.clone(),
            ..new
        }
    }

    /// Placeholder contact points on every channel, for previews, which need no
    /// patient data.
    pub fn placeholders() -> Self {
        let person = PersonContacts {
            mobile: Some("+15550000000".into()),
            landline: Some("+15550000001".into()),
            email: Some("patient@example.invalid".into()),
            region: None,
            address: Some(Address {
                line1: "1 Example Street".into(),
                city: "Springfield".into(),
                region: "IL".into(),
                postal_code: "62701".into(),
                country: "US".into(),
                ..Address::default()
            }),
        };
        Self {
            patient: person,
            caregiver: PersonContacts::default(),
            prescriber_fax: Some("+15550000002".into()),
            opted_out: BTreeSet::new(),
        }
    }
}

impl fmt::Debug for PersonContacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersonContacts")
            .field("mobile", &self.mobile.is_some())
            .field("landline", &self.landline.is_some())
            .field("email", &self.email.is_some())
            .field("region", &self.region.is_some())
            .field("address", &self.address.is_some())
            .finish()
    }
}

impl fmt::Debug for Destinations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Destinations")
            .field("patient", &self.patient)
            .field("caregiver", &self.caregiver)
            .field("prescriber_fax", &self.prescriber_fax.is_some())
            .field("opted_out", &self.opted_out.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use touchpoint_proto::v1::PostalAddress;

    fn phone(point: Option<ContactPoint>) -> Option<String> {
        match point?.value? {
            Value::PhoneE164(p) | Value::FaxE164(p) | Value::Email(p) => Some(p),
            Value::PostalAddress(_) => None,
        }
    }

    #[test]
    fn the_patient_comes_first_then_the_caregiver() {
        let mut d = Destinations {
            caregiver: PersonContacts {
                mobile: Some("+13125550199".into()),
                ..PersonContacts::default()
            },
            ..Destinations::default()
        };
        assert_eq!(
            phone(d.for_channel(Channel::Sms)).as_deref(),
            Some("+13125550199")
        );
        d.patient.landline = Some("+13125550100".into());
        assert_eq!(
            phone(d.for_channel(Channel::Voice)).as_deref(),
            Some("+13125550100"),
            "a patient's landline before a caregiver's mobile"
        );
        assert_eq!(
            phone(d.for_channel(Channel::Sms)).as_deref(),
            Some("+13125550199")
        );
        assert_eq!(d.for_channel(Channel::Email), None);
        assert_eq!(d.for_channel(Channel::Fax), None);
        assert_eq!(d.for_channel(Channel::Mail), None);
        d.caregiver.address = Some(Address {
            line1: "9 Oak Avenue".into(),
            city: "Chicago".into(),
            region: "IL".into(),
            postal_code: "60601".into(),
            country: "US".into(),
            ..Address::default()
        });
        assert_eq!(
            d.for_channel(Channel::Mail),
            None,
            "a letter goes to the patient's own address, never the caregiver's"
        );
    }

    #[test]
    fn a_letter_needs_an_address_it_can_be_sent_to() {
        let mut incomplete = PostalAddress {
            line1: "12 Elm Street".into(),
            city: "Tulsa".into(),
            ..PostalAddress::default()
        };
        assert_eq!(Address::from_proto(Some(&incomplete)), None, "no country");
        incomplete.country = "US".into();
        let d = Destinations {
            patient: PersonContacts::from_proto(Some(&ContactPoints {
                postal_address: Some(incomplete.clone()),
                ..ContactPoints::default()
            })),
            ..Destinations::default()
        };
        let point = d.for_channel(Channel::Mail);
        assert_eq!(
            point.as_ref().and_then(ContactPoint::postal),
            Some(&incomplete)
        );
    }

    #[test]
    fn a_message_to_the_caregivers_number_is_the_caregivers() {
        let d = Destinations {
            patient: PersonContacts {
                email: Some("ana@example.com".into()),
                ..PersonContacts::default()
            },
            caregiver: PersonContacts {
                mobile: Some("+13125550199".into()),
                email: Some("ana@example.com".into()),
                ..PersonContacts::default()
            },
            ..Destinations::default()
        };
        let sms = d.for_channel(Channel::Sms);
        assert!(sms.as_ref().is_some_and(|p| d.is_caregivers(p)));
        let email = d.for_channel(Channel::Email);
        assert!(
            email.as_ref().is_some_and(|p| !d.is_caregivers(p)),
            "an address both share is the patient's"
        );
    }

    #[test]
    fn an_opted_out_number_is_passed_over_and_stays_so_across_updates() {
        let mut d = Destinations {
            patient: PersonContacts {
                mobile: Some("+13125550142".into()),
                ..PersonContacts::default()
            },
            caregiver: PersonContacts {
                mobile: Some("+13125550199".into()),
                ..PersonContacts::default()
            },
            ..Destinations::default()
        };
        d.set_opted_out(Channel::Sms, "+13125550142", true);
        assert_eq!(
            phone(d.for_channel(Channel::Sms)).as_deref(),
            Some("+13125550199")
        );
        assert_eq!(
            phone(d.for_channel(Channel::Voice)).as_deref(),
            Some("+13125550142"),
            "an SMS opt-out leaves calls to the number alone"
        );
        let d = d.replaced_by(Destinations {
            patient: PersonContacts {
                mobile: Some("+13125550142".into()),
                ..PersonContacts::default()
            },
            ..Destinations::default()
        });
        assert_eq!(d.for_channel(Channel::Sms), None);
    }

    #[test]
    fn debug_output_names_no_contact_point() {
        let d = Destinations {
            patient: PersonContacts {
                mobile: Some("+13125550142".into()),
                landline: None,
                email: Some("ana.ruiz@example.com".into()),
                region: Some("OK".into()),
                address: Address::from_proto(Some(&PostalAddress {
                    line1: "12 Elm Street".into(),
                    city: "Tulsa".into(),
                    region: "OK".into(),
                    postal_code: "74103".into(),
                    country: "US".into(),
                    ..PostalAddress::default()
                })),
            },
            caregiver: PersonContacts::default(),
            prescriber_fax: Some("+13125550111".into()),
            opted_out: [("CHANNEL_SMS".to_owned(), "+13125550142".to_owned())].into(),
        };
        let shown = format!("{d:?}");
        assert!(d.for_channel(Channel::Mail).is_some());
        for secret in ["3125550142", "ana.ruiz", "3125550111", "Elm", "74103"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("mobile: true"), "{shown}");
    }
}
