//! Letters through Lob's print-and-mail API (or anything that speaks it, like
//! the sandbox): `POST /v1/letters` as `multipart/form-data` with the patient's
//! address inline (`to[name]`, `to[address_line1]`, …), the return address as
//! a saved address id (`from`), the PDF as `file`, black and white,
//! `use_type=operational`, an address page inserted in front, and the attempt
//! id both as the `Idempotency-Key` header and as the metadata `attempt`; HTTP
//! basic auth with the API key as the user name.
//!
//! The idempotency key means a repeated request makes no second letter; the
//! metadata makes the attempt findable: a hand-off whose answer never came is
//! looked up with `GET /v1/letters?metadata[attempt]=…` before anything is
//! sent again. Lob refuses an address it cannot deliver to with a 422 whose
//! `error.code` (e.g. `failed_deliverability_strictness`) becomes the attempt's
//! permanent failure code, so the step falls back to its next channel.
//!
//! The letter's journey (mailed, in transit, delivered, returned to sender)
//! comes back as Lob's webhooks, signed with the webhook's secret
//! ([`crate::callbacks`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::Method;
use serde::Deserialize;
use touchpoint_platform::contact::Address;
use touchpoint_platform::multipart::{self, Part};
use touchpoint_platform::secret::{ExposeSecret as _, SecretString};
use uuid::Uuid;

use super::http::{Exchange, HttpClient};
use super::{Handoff, Lookup};
use crate::domain::fax::FaxDocument;

/// The provider's name in events and on attempts.
pub const NAME: &str = "mail";

/// The metadata key that carries the attempt id.
pub const ATTEMPT_METADATA: &str = "attempt";

/// The code of a letter whose destination is not an address (an attempt
/// recorded before letters had addresses, or a broken row).
pub const NOT_AN_ADDRESS: &str = "not_an_address";

/// One Lob-speaking print-and-mail provider.
#[derive(Clone)]
pub struct Lob {
    /// The API's base URL, e.g. `https://api.lob.com`.
    pub base_url: String,
    /// The secret API key.
    pub api_key: SecretString,
    /// The return address: the id (`adr_…`) of an address saved in the account.
    pub from: String,
    /// The secret Lob signs its webhooks with.
    pub webhook_secret: SecretString,
    /// The HTTP client.
    pub client: HttpClient,
}

impl std::fmt::Debug for Lob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lob")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Letter {
    id: String,
}

#[derive(Deserialize)]
struct Listed {
    #[serde(default)]
    data: Vec<Letter>,
}

#[derive(Deserialize)]
struct Refusal {
    error: RefusalDetail,
}

#[derive(Deserialize)]
struct RefusalDetail {
    #[serde(default)]
    code: String,
}

/// A letter to hand over (patient data: `Debug` shows none of it).
#[derive(Clone, Copy)]
pub struct Posted<'a> {
    /// The attempt: the idempotency key.
    pub attempt_id: Uuid,
    /// Who it is addressed to.
    pub addressee: &'a str,
    /// The attempt's destination: the address as JSON.
    pub address: &'a str,
    /// The rendered letter.
    pub document: &'a FaxDocument,
}

impl std::fmt::Debug for Posted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Posted")
            .field("attempt_id", &self.attempt_id)
            .finish_non_exhaustive()
    }
}

impl Lob {
    fn letters_url(&self) -> String {
        format!("{}/v1/letters", self.base_url.trim_end_matches('/'))
    }

    fn authorization(&self) -> String {
        let pair = format!("{}:", self.api_key.expose_secret());
        format!("Basic {}", STANDARD.encode(pair))
    }

    /// Asks for `letter` to be printed and mailed.
    pub async fn send(&self, letter: Posted<'_>) -> Handoff {
        let Some(to) = Address::from_json(letter.address) else {
            return Handoff::Refused {
                provider: NAME.into(),
                code: NOT_AN_ADDRESS.into(),
                permanent: true,
            };
        };
        let attempt = letter.attempt_id.to_string();
        let mut parts = vec![
            Part::field("description", &format!("attempt {attempt}")),
            Part::field("to[name]", letter.addressee),
            Part::field("to[address_line1]", &to.line1),
        ];
        if !to.line2.is_empty() {
            parts.push(Part::field("to[address_line2]", &to.line2));
        }
        parts.extend([
            Part::field("to[address_city]", &to.city),
            Part::field("to[address_state]", &to.region),
            Part::field("to[address_zip]", &to.postal_code),
            Part::field("to[address_country]", &to.country),
            Part::field("from", &self.from),
            Part::file(
                "file",
                "letter.pdf",
                "application/pdf",
                letter.document.pdf.clone(),
            ),
            Part::field("color", "false"),
            Part::field("use_type", "operational"),
            Part::field("address_placement", "insert_blank_page"),
            Part::field(&format!("metadata[{ATTEMPT_METADATA}]"), &attempt),
        ]);
        // The boundary cannot occur in the parts: the PDF is text operators and
        // WinAnsi strings, none of which spell this prefix.
        let boundary = format!("touchpoint-{}", letter.attempt_id.simple());
        let (content_type, body) = multipart::encode(&parts, &boundary);
        let authorization = self.authorization();
        let exchange = self
            .client
            .send(
                Method::POST,
                &self.letters_url(),
                &[
                    ("authorization", &authorization),
                    ("content-type", &content_type),
                    ("idempotency-key", &attempt),
                ],
                body,
            )
            .await;
        match exchange {
            Exchange::Answered { status, body } if status.as_u16() == 422 => {
                // Lob's own code says what it would not take (an address it
                // cannot deliver to, a PDF it cannot print).
                let code = serde_json::from_slice::<Refusal>(&body)
                    .ok()
                    .map(|r| r.error.code)
                    .filter(|c| is_code(c))
                    .unwrap_or_else(|| "http_422".into());
                Handoff::Refused {
                    provider: NAME.into(),
                    code,
                    permanent: true,
                }
            }
            other => super::taken(NAME, &other, |body| {
                let letter = serde_json::from_slice::<Letter>(body).ok()?;
                (!letter.id.is_empty()).then_some(letter.id)
            }),
        }
    }

    /// Whether the provider took a letter for `attempt_id`.
    pub async fn lookup(&self, attempt_id: Uuid) -> Option<Lookup> {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair(
                &format!("metadata[{ATTEMPT_METADATA}]"),
                &attempt_id.to_string(),
            )
            .finish();
        let url = format!("{}?{query}", self.letters_url());
        let authorization = self.authorization();
        super::listed(&self.client, (&url, &authorization), NAME, |body| {
            let listed: Listed = serde_json::from_slice(body).ok()?;
            Some(listed.data.into_iter().next().map(|found| found.id))
        })
        .await
    }
}

/// Whether `code` looks like one of Lob's error codes (lower-case words and
/// underscores), so nothing else from an answer is kept on the attempt.
fn is_code(code: &str) -> bool {
    (1..=64).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_code_of_lob_s_shape_is_kept() {
        assert!(is_code("failed_deliverability_strictness"));
        assert!(!is_code(""));
        assert!(!is_code("12 Elm Street is undeliverable"));
    }
}
