//! Fax through Phaxio's v2 API (or anything that speaks it, like the sandbox):
//! `POST /v2/faxes` as `multipart/form-data` with `to`, the PDF as `file`, a
//! `callback_url` carrying the attempt id and the tag `tag[attempt]`; HTTP basic
//! auth with the API key and secret.
//!
//! The tag makes the attempt findable: a hand-off whose answer never came is
//! looked up with `GET /v2/faxes?tag[attempt]=…` before anything is sent again.
//! The provider reports the outcome, with the pages it sent, to the callback
//! ([`crate::callbacks`]), signed with the account's callback token.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::Method;
use serde::Deserialize;
use uuid::Uuid;

use super::http::HttpClient;
use super::{Handoff, Lookup};
use crate::domain::fax::FaxDocument;
use touchpoint_platform::multipart::{self, Part};
use touchpoint_platform::secret::{ExposeSecret as _, SecretString};

/// The provider's name in events and on attempts.
pub const NAME: &str = "fax";

/// One Phaxio-speaking fax provider.
#[derive(Debug, Clone)]
pub struct Phaxio {
    /// The API's base URL, e.g. `https://api.phaxio.com`.
    pub base_url: String,
    /// The API key.
    pub api_key: String,
    /// The API secret.
    pub api_secret: SecretString,
    /// The token callbacks are signed with.
    pub callback_token: SecretString,
    /// Where dispatch takes status callbacks.
    pub callback_base: Option<String>,
    /// The HTTP client.
    pub client: HttpClient,
}

#[derive(Deserialize)]
struct Created {
    #[serde(default)]
    data: Option<CreatedData>,
}

#[derive(Deserialize)]
struct CreatedData {
    id: u64,
}

#[derive(Deserialize)]
struct Listed {
    #[serde(default)]
    data: Vec<CreatedData>,
}

impl Phaxio {
    fn faxes_url(&self) -> String {
        format!("{}/v2/faxes", self.base_url.trim_end_matches('/'))
    }

    fn authorization(&self) -> String {
        let pair = format!("{}:{}", self.api_key, self.api_secret.expose_secret());
        format!("Basic {}", STANDARD.encode(pair))
    }

    /// Where the provider reports the outcome of `attempt_id`.
    pub fn callback_url(&self, attempt_id: Uuid) -> Option<String> {
        self.callback_base
            .as_ref()
            .map(|base| format!("{}/callbacks/fax/{attempt_id}", base.trim_end_matches('/')))
    }

    /// Sends `document` to the fax number `to`.
    pub async fn send(&self, attempt_id: Uuid, to: &str, document: &FaxDocument) -> Handoff {
        let mut parts = vec![
            Part::field("to", to),
            Part::file("file", "fax.pdf", "application/pdf", document.pdf.clone()),
            Part::field("tag[attempt]", &attempt_id.to_string()),
        ];
        if let Some(callback) = self.callback_url(attempt_id) {
            parts.push(Part::field("callback_url", &callback));
        }
        // The boundary cannot occur in the parts: the PDF is text operators and
        // WinAnsi strings, none of which spell this prefix.
        let boundary = format!("touchpoint-{}", attempt_id.simple());
        let (content_type, body) = multipart::encode(&parts, &boundary);
        let authorization = self.authorization();
        let exchange = self
            .client
            .send(
                Method::POST,
                &self.faxes_url(),
                &[
                    ("authorization", &authorization),
                    ("content-type", &content_type),
                ],
                body,
            )
            .await;
        super::taken(NAME, &exchange, |body| {
            let created = serde_json::from_slice::<Created>(body).ok()?.data?;
            Some(created.id.to_string())
        })
    }

    /// Whether the provider took a fax tagged with `attempt_id`.
    pub async fn lookup(&self, attempt_id: Uuid) -> Option<Lookup> {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("tag[attempt]", &attempt_id.to_string())
            .finish();
        let url = format!("{}?{query}", self.faxes_url());
        let authorization = self.authorization();
        super::listed(&self.client, (&url, &authorization), NAME, |body| {
            let listed: Listed = serde_json::from_slice(body).ok()?;
            Some(listed.data.first().map(|found| found.id.to_string()))
        })
        .await
    }
}
