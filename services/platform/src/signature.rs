//! Twilio's request signature, `X-Twilio-Signature`: base64 of the HMAC-SHA1, keyed
//! with the account's auth token, of the full URL followed by every POST
//! parameter's name and value, sorted by name. Dispatch checks it on status
//! callbacks and routing on inbound messages; the sandbox signs the same way.
//!
//! Phaxio signs its fax callbacks the same way, keyed with the account's callback
//! token, but sends the HMAC as hex in `X-Phaxio-Signature` ([`fax`]).
//!
//! Inbound email arrives in Mailgun's route format, signed in the body: a hex
//! HMAC-SHA256 of `timestamp` and `token`, keyed with the webhook signing key
//! ([`email`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac as _};
use sha1::Sha1;

/// The header that carries the signature.
pub const HEADER: &str = "X-Twilio-Signature";

fn mac(auth_token: &str, url: &str, params: &[(String, String)]) -> Hmac<Sha1> {
    // HMAC takes a key of any length; the error arm cannot happen.
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(url.as_bytes());
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// The signature of a POST to `url` with `params`.
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    STANDARD.encode(mac(auth_token, url, params).finalize().into_bytes())
}

/// Whether `signature` is the signature of this request (compared in constant
/// time).
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    let Ok(given) = STANDARD.decode(signature.trim()) else {
        return false;
    };
    mac(auth_token, url, params).verify_slice(&given).is_ok()
}

/// Phaxio's signature: the same HMAC, as lowercase hex.
pub mod fax {
    use super::mac;
    use hmac::Mac as _;

    /// The header that carries it.
    pub const HEADER: &str = "X-Phaxio-Signature";

    /// The signature of a POST to `url` with `params`.
    pub fn sign(token: &str, url: &str, params: &[(String, String)]) -> String {
        mac(token, url, params)
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether `signature` is the signature of this request (compared in
    /// constant time).
    pub fn verify(token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
        let signature = signature.trim();
        if signature.len() != 40 || !signature.is_ascii() {
            return false;
        }
        let given: Option<Vec<u8>> = (0..signature.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&signature[i..i + 2], 16).ok())
            .collect();
        given.is_some_and(|given| mac(token, url, params).verify_slice(&given).is_ok())
    }
}

/// Mailgun's webhook signature: `signature` is the hex HMAC-SHA256, keyed with
/// the webhook signing key, of `timestamp` followed by `token`.
pub mod email {
    use hmac::{Hmac, Mac as _};
    use sha2::Sha256;

    fn mac(key: &str, timestamp: &str, token: &str) -> Hmac<Sha256> {
        // HMAC takes a key of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(timestamp.as_bytes());
        mac.update(token.as_bytes());
        mac
    }

    /// The signature of `timestamp` and `token`.
    pub fn sign(key: &str, timestamp: &str, token: &str) -> String {
        hex::encode(mac(key, timestamp, token).finalize().into_bytes())
    }

    /// Whether `signature` signs `timestamp` and `token` (compared in constant
    /// time).
    pub fn verify(key: &str, timestamp: &str, token: &str, signature: &str) -> bool {
        hex::decode(signature.trim())
            .is_ok_and(|given| mac(key, timestamp, token).verify_slice(&given).is_ok())
    }

    /// How far a webhook's timestamp may be from now before it is refused as
    /// a replay.
    pub const REPLAY_WINDOW_SECS: i64 = 300;

    /// Whether a Mailgun `timestamp` (seconds since the epoch) is within the
    /// replay window of `now`.
    pub fn is_fresh(timestamp: &str, now: chrono::DateTime<chrono::Utc>) -> bool {
        timestamp
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(|secs| chrono::DateTime::<chrono::Utc>::from_timestamp(secs, 0))
            .is_some_and(|at| (now - at).num_seconds().abs() <= REPLAY_WINDOW_SECS)
    }

    /// Why a webhook was refused.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
    pub enum Refused {
        /// Not what Mailgun posts, or not signed with the key.
        #[error("the webhook is not signed with the webhook signing key")]
        Unsigned,
        /// Signed, but its timestamp is outside the replay window.
        #[error("the webhook's timestamp is outside the replay window")]
        Stale,
    }

    /// Whether `signature` signs `timestamp` and `token` with `key`, and
    /// `timestamp` is within the replay window of `now` (real time): what
    /// every Mailgun webhook, form or JSON, is checked for.
    pub fn check(
        key: &str,
        (timestamp, token, signature): (&str, &str, &str),
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), Refused> {
        if !verify(key, timestamp, token, signature) {
            return Err(Refused::Unsigned);
        }
        if !is_fresh(timestamp, now) {
            return Err(Refused::Stale);
        }
        Ok(())
    }

    /// The `event-data` of a Mailgun event webhook (`{"signature": {timestamp,
    /// token, signature}, "event-data": {...}}`), once its signature and
    /// freshness are checked against `key` and `now` (real time).
    pub fn verified_event(
        key: &str,
        body: &[u8],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<serde_json::Value, Refused> {
        let mut posted: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| Refused::Unsigned)?;
        let field = |name: &str| -> String {
            match posted.pointer(&format!("/signature/{name}")) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                _ => String::new(),
            }
        };
        let (timestamp, token, signature) =
            (field("timestamp"), field("token"), field("signature"));
        if token.is_empty() {
            return Err(Refused::Unsigned);
        }
        check(key, (&timestamp, &token, &signature), now)?;
        posted
            .get_mut("event-data")
            .map(serde_json::Value::take)
            .filter(serde_json::Value::is_object)
            .ok_or(Refused::Unsigned)
    }
}

/// Lob's webhook signature: `Lob-Signature` is the hex HMAC-SHA256, keyed with
/// the webhook's secret, of `Lob-Signature-Timestamp`, a dot and the raw body.
/// The timestamp (milliseconds or seconds since the epoch) must be within the
/// replay window of now, as Mailgun's is.
pub mod mail {
    use hmac::{Hmac, Mac as _};
    use sha2::Sha256;

    pub use super::email::{REPLAY_WINDOW_SECS, Refused};

    /// The signature header.
    pub const HEADER: &str = "Lob-Signature";
    /// The timestamp header.
    pub const TIMESTAMP_HEADER: &str = "Lob-Signature-Timestamp";

    fn mac(secret: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        // HMAC takes a key of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The signature of `body` sent at `timestamp`.
    pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    }

    /// Whether `signature` signs `body` at `timestamp` with `secret`
    /// (compared in constant time), and `timestamp` is within the replay
    /// window of `now` (real time).
    pub fn check(
        secret: &str,
        (timestamp, signature): (&str, &str),
        body: &[u8],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), Refused> {
        let signed = hex::decode(signature.trim())
            .is_ok_and(|given| mac(secret, timestamp, body).verify_slice(&given).is_ok());
        if !signed {
            return Err(Refused::Unsigned);
        }
        let at = timestamp.trim().parse::<i64>().ok().and_then(|n| {
            // Milliseconds from 2001 on, else seconds.
            if n > 100_000_000_000 {
                chrono::DateTime::<chrono::Utc>::from_timestamp_millis(n)
            } else {
                chrono::DateTime::<chrono::Utc>::from_timestamp(n, 0)
            }
        });
        match at {
            Some(at) if (now - at).num_seconds().abs() <= REPLAY_WINDOW_SECS => Ok(()),
            _ => Err(Refused::Stale),
        }
    }
}

/// One-click unsubscribe links: `<base>?case=<case id>&sig=<hex HMAC-SHA256 of
/// the case id and the address, lower-cased, keyed with the deployment's
/// unsubscribe key>`. Dispatch writes them into every email; routing, holding
/// the same key, finds which of the case's addresses the link was for.
pub mod unsubscribe {
    use hmac::{Hmac, Mac as _};
    use sha2::Sha256;

    fn mac(key: &str, case_id: &str, address: &str) -> Hmac<Sha256> {
        // HMAC takes a key of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(case_id.as_bytes());
        mac.update(b"\0");
        mac.update(crate::contact::mailbox(address).as_bytes());
        mac
    }

    /// The proof for `case_id`'s `address`.
    pub fn sign(key: &str, case_id: &str, address: &str) -> String {
        hex::encode(mac(key, case_id, address).finalize().into_bytes())
    }

    /// Whether `sig` is the proof for `case_id`'s `address` (compared in
    /// constant time).
    pub fn verify(key: &str, case_id: &str, address: &str, sig: &str) -> bool {
        hex::decode(sig.trim())
            .is_ok_and(|given| mac(key, case_id, address).verify_slice(&given).is_ok())
    }

    /// The link to `base` for `case_id`'s `address`.
    pub fn link(base: &str, key: &str, case_id: &str, address: &str) -> String {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("case", case_id)
            .append_pair("sig", &sign(key, case_id, address))
            .finish();
        format!("{base}?{query}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_letter_webhook_is_taken_only_signed_over_its_body_and_fresh() {
        let now = chrono::Utc::now();
        let millis = now.timestamp_millis().to_string();
        let body = br#"{"event_type":{"id":"letter.delivered"}}"#;
        let signature = mail::sign("whsec", &millis, body);
        assert_eq!(
            mail::check("whsec", (&millis, &signature), body, now),
            Ok(())
        );
        let seconds = now.timestamp().to_string();
        let by_seconds = mail::sign("whsec", &seconds, body);
        assert_eq!(
            mail::check("whsec", (&seconds, &by_seconds), body, now),
            Ok(())
        );
        let tampered = br#"{"event_type":{"id":"letter.returned_to_sender"}}"#;
        assert_eq!(
            mail::check("whsec", (&millis, &signature), tampered, now),
            Err(mail::Refused::Unsigned)
        );
        assert_eq!(
            mail::check("other", (&millis, &signature), body, now),
            Err(mail::Refused::Unsigned)
        );
        let later = now + chrono::TimeDelta::minutes(6);
        assert_eq!(
            mail::check("whsec", (&millis, &signature), body, later),
            Err(mail::Refused::Stale)
        );
    }

    #[test]
    fn an_unsubscribe_link_names_the_case_and_proves_only_its_address() {
        let link = unsubscribe::link(
            "https://hub.example/unsubscribe/email",
            "k",
            "case-1",
            "Ana@Example.com",
        );
        assert!(link.starts_with("https://hub.example/unsubscribe/email?case=case-1&sig="));
        assert!(
            !link.to_lowercase().contains("ana"),
            "no address in the link"
        );
        let sig = unsubscribe::sign("k", "case-1", "ana@example.com");
        assert!(unsubscribe::verify("k", "case-1", "ANA@example.com", &sig));
        assert!(!unsubscribe::verify("k", "case-1", "bo@example.com", &sig));
        assert!(!unsubscribe::verify("k", "case-2", "ana@example.com", &sig));
        assert!(!unsubscribe::verify(
            "other",
            "case-1",
            "ana@example.com",
            &sig
        ));
        assert!(!unsubscribe::verify("k", "case-1", "ana@example.com", "zz"));
    }

    #[test]
    fn an_email_signature_checks_key_timestamp_and_token() {
        let signed = email::sign("key", "1700000000", "token");
        assert!(email::verify("key", "1700000000", "token", &signed));
        assert!(!email::verify("other", "1700000000", "token", &signed));
        assert!(!email::verify("key", "1700000001", "token", &signed));
        assert!(!email::verify("key", "1700000000", "token", "not hex"));
    }

    fn params() -> Vec<(String, String)> {
        vec![
            ("MessageStatus".into(), "delivered".into()),
            ("MessageSid".into(), "SM123".into()),
        ]
    }

    const URL: &str = "https://hub.example/callbacks/sms/primary/0190";

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let signature = sign("secret", URL, &params());
        assert!(verify("secret", URL, &params(), &signature));
        assert!(
            !verify("other", URL, &params(), &signature),
            "another token"
        );
        assert!(
            !verify("secret", &format!("{URL}x"), &params(), &signature),
            "another URL"
        );
        let mut changed = params();
        changed[0].1 = "failed".into();
        assert!(
            !verify("secret", URL, &changed, &signature),
            "another status"
        );
        assert!(!verify("secret", URL, &params(), "not base64!"));
        assert!(!verify("secret", URL, &params(), ""));
    }

    #[test]
    fn parameters_are_signed_in_name_order_whatever_order_they_came_in() {
        let mut reversed = params();
        reversed.reverse();
        assert_eq!(
            sign("secret", URL, &params()),
            sign("secret", URL, &reversed)
        );
    }

    #[test]
    fn a_fax_signature_is_hex_and_verifies_only_unchanged() {
        let signature = fax::sign("token", URL, &params());
        assert_eq!(signature.len(), 40);
        assert!(fax::verify("token", URL, &params(), &signature));
        assert!(!fax::verify("other", URL, &params(), &signature));
        assert!(!fax::verify(
            "token",
            URL,
            &params(),
            &signature.to_uppercase()[..39]
        ));
        assert!(!fax::verify("token", URL, &params(), "zz"));
        assert!(!fax::verify("token", URL, &params(), &"é".repeat(20)));
    }
}
