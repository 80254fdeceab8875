//! Any body a provider (or anyone) might POST to routing's webhooks: the
//! signature checks, the form parsers for SMS, email and fax, Mailgun's signed
//! event JSON (routing's complaints, dispatch's deliveries), and the sender's
//! identification. Each refuses or reads; none panics.
#![no_main]

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use touchpoint_platform::contact::ContactKey;
use touchpoint_platform::signature;
use touchpoint_routing::webhooks::{email_contact, fax_contact, form, sms_contact};

fuzz_target!(|data: &[u8]| {
    let now = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap_or_default();
    let params = form(data);
    let value = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let url = "https://routing.example/inbound/sms";
    let _ = signature::verify("token", url, &params, value("sig"));
    let _ = signature::fax::verify("token", url, &params, value("sig"));
    let _ = signature::email::verify(
        "key",
        value("timestamp"),
        value("token"),
        value("signature"),
    );
    let _ = signature::email::is_fresh(value("timestamp"), now);
    let _ = signature::email::verified_event("key", data, now);
    let mut contacts = vec![sms_contact(&params, now), email_contact(&params, now)];
    contacts.extend(fax_contact(&params, now));
    for contact in contacts {
        let _ = ContactKey::parse(&contact.from, "from");
    }
});
