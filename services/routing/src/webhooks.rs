//! Inbound webhooks over HTTP:
//! - `POST /inbound/sms`: Twilio's incoming-message format (`MessageSid`,
//!   `From`, `To`, `Body`), signed with `X-Twilio-Signature`; answered with an
//!   empty TwiML response;
//! - `POST /inbound/voice`: Twilio's incoming-call webhook (`CallSid`, `From`,
//!   `To`), signed with `X-Twilio-Signature` and the account's auth token (the
//!   SMS one); routed by the same rules and answered with TwiML
//!   (`domain::voice`): the chosen person's client is rung, else the queue,
//!   else after hours a message in the case's language and a voicemail (the
//!   callback is on the worklist already). `POST /inbound/voice/dial?member=…`
//!   takes the dial's outcome: answered, the call ends there and who took it
//!   and for how long (`DialCallDuration`) is `CallAnswered` on the case; not
//!   answered (`no-answer`, `busy`, `failed`), the call becomes a callback for
//!   the one rung and the caller may leave a voicemail. `POST
//!   /inbound/voice/recorded` ends the call once the voicemail is taken, and
//!   `VoicemailLeft` names the callback task and the provider's recording
//!   (`RecordingSid`, `RecordingDuration`);
//! - `POST /inbound/email`: a parsed message in Mailgun's route format
//!   (`sender`, `recipient`, `subject`, `body-plain`, `Message-Id`), signed in
//!   the body (`timestamp`, `token`, `signature`); a timestamp more than five
//!   minutes from now is refused as a replay;
//! - `POST /inbound/email/events`: Mailgun's event webhooks for `complained`
//!   and `unsubscribed` (JSON, signed in its `signature` object as above): the
//!   recipient's address opts out of email as its one-click unsubscribe does.
//!   Mailgun's other events (delivered, failed) are dispatch's and are
//!   acknowledged here without effect;
//! - `POST /inbound/fax`: Phaxio's received-fax callback (a `fax` field holding
//!   `id`, `from_number`, `num_pages` and the document's URL), signed with
//!   `X-Phaxio-Signature`;
//! - `POST /unsubscribe/email?case=…&sig=…`: an email's one-click unsubscribe
//!   (RFC 8058, body `List-Unsubscribe=One-Click`), the link signed by dispatch
//!   with the key the two share. It opts the address out of email the way an
//!   emailed "unsubscribe" does. `GET` on the same link (a person following it,
//!   or a mail scanner) changes nothing: it shows a button that posts.
//!
//! Unsigned or wrongly signed: 403, nothing recorded. Over 64 KiB: 413. A
//! sender that is not a phone number or an address is routed as unknown. When
//! recording fails the provider gets a 503 and sends again; the provider's
//! message id makes the second delivery the same contact.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Html;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use touchpoint_platform::clock::SharedClock;
use touchpoint_platform::secret::{ExposeSecret, SecretString};
use touchpoint_platform::{signature, xml};
use touchpoint_proto::v1::{Channel, Language};

use crate::call_news::CallNews;
use crate::domain::voice;
use crate::inbound::{Contact, Inbound};

/// The largest webhook body taken.
pub const MAX_BODY: usize = 64 * 1024;

/// The secrets webhooks are signed with; an unset one refuses its webhook.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// Twilio's auth token.
    pub sms_auth_token: Option<SecretString>,
    /// Mailgun's webhook signing key.
    pub email_signing_key: Option<SecretString>,
    /// Phaxio's callback token.
    pub fax_callback_token: Option<SecretString>,
    /// The key emails' one-click unsubscribe links are signed with.
    pub unsubscribe_key: Option<SecretString>,
}

#[derive(Debug, Clone)]
struct Webhooks {
    inbound: Inbound,
    clock: SharedClock,
    secrets: Secrets,
    base_url: String,
}

/// The webhook routes; `base_url` is where providers reach them (signatures
/// cover the full URL).
pub fn router(inbound: Inbound, clock: SharedClock, secrets: Secrets, base_url: String) -> Router {
    Router::new()
        .route("/inbound/sms", post(sms))
        .route("/inbound/voice", post(voice))
        .route("/inbound/voice/dial", post(voice_dialled))
        .route("/inbound/voice/recorded", post(voice_recorded))
        .route("/inbound/email", post(email))
        .route("/inbound/email/events", post(email_event))
        .route("/inbound/fax", post(fax))
        .route(
            "/unsubscribe/email",
            post(unsubscribe).get(unsubscribe_page),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Webhooks {
            inbound,
            clock,
            secrets,
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
}

/// A form body's fields, in order (invalid UTF-8 is replaced, never refused).
pub fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// The contact a (verified) Twilio incoming-message form describes.
pub fn sms_contact(params: &[(String, String)], received_at: DateTime<Utc>) -> Contact {
    Contact {
        channel: Channel::Sms,
        from: param(params, "From").unwrap_or_default().to_owned(),
        provider_message_id: param(params, "MessageSid")
            .filter(|s| !s.is_empty())
            .map(|s| format!("sms:{s}")),
        body: Some(param(params, "Body").unwrap_or_default().to_owned()),
        received_at,
    }
}

/// The contact a (verified) Mailgun route form describes.
pub fn email_contact(params: &[(String, String)], received_at: DateTime<Utc>) -> Contact {
    let subject = param(params, "subject").unwrap_or_default();
    let text = param(params, "body-plain").unwrap_or_default();
    Contact {
        channel: Channel::Email,
        from: sender_address(param(params, "sender").unwrap_or_default()),
        provider_message_id: param(params, "Message-Id")
            .filter(|s| !s.is_empty())
            .map(|s| format!("email:{s}")),
        body: Some(format!("{subject}\n{text}")),
        received_at,
    }
}

/// The contact a (verified) Phaxio received-fax form describes; `None` when
/// its `fax` field is missing or not the JSON Phaxio sends.
pub fn fax_contact(params: &[(String, String)], received_at: DateTime<Utc>) -> Option<Contact> {
    let received = serde_json::from_str::<ReceivedFax>(param(params, "fax")?).ok()?;
    tracing::debug!(pages = received.num_pages, "inbound fax");
    Some(Contact {
        channel: Channel::Fax,
        from: received.from_number,
        provider_message_id: Some(format!("fax:{}", received.id)),
        body: None,
        received_at,
    })
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn header_value<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

async fn take(webhooks: &Webhooks, contact: Contact) -> Result<(), StatusCode> {
    match webhooks.inbound.receive(&contact).await {
        Ok(routed) => {
            tracing::info!(
                inbound_id = %routed.inbound_id,
                channel = contact.channel.as_str_name(),
                cases = routed.case_ids.len(),
                rule = routed.decision.as_ref().map_or("keyword", |d| d.rule.as_str()),
                repeat = routed.repeat,
                "inbound contact routed"
            );
            Ok(())
        }
        Err(error) => {
            tracing::error!(%error, "inbound contact not recorded");
            Err(StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}

/// A webhook's secret; unset, the webhook is refused (403).
fn secret(secret: &Option<SecretString>) -> Result<&str, StatusCode> {
    secret
        .as_ref()
        .map(ExposeSecret::expose_secret)
        .ok_or(StatusCode::FORBIDDEN)
}

/// The form of a request Twilio signed for `path` (with its query, as Twilio
/// signs the full URL), or 403.
fn twilio_form(
    webhooks: &Webhooks,
    (path, query): (&str, Option<&str>),
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<(String, String)>, StatusCode> {
    let token = secret(&webhooks.secrets.sms_auth_token)?;
    let params = form(body);
    let url = match query {
        Some(query) => format!("{}{path}?{query}", webhooks.base_url),
        None => format!("{}{path}", webhooks.base_url),
    };
    if signature::verify(
        token,
        &url,
        &params,
        header_value(headers, signature::HEADER),
    ) {
        Ok(params)
    } else {
        tracing::warn!(path, "Twilio webhook with a bad signature refused");
        Err(StatusCode::FORBIDDEN)
    }
}

fn twiml_response(twiml: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml")], twiml).into_response()
}

/// Where Twilio reports how a dial to `member` ended, and where it posts a
/// voicemail.
fn voice_urls(webhooks: &Webhooks, member: &str) -> (String, String) {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("member", member)
        .finish();
    (
        format!("{}/inbound/voice/dial?{query}", webhooks.base_url),
        format!("{}/inbound/voice/recorded", webhooks.base_url),
    )
}

/// The contact a (verified) Twilio call webhook describes; `kind` tells the
/// call from its missed dial.
fn call_contact(params: &[(String, String)], kind: &str, at: DateTime<Utc>) -> Contact {
    Contact {
        channel: Channel::Voice,
        from: param(params, "From").unwrap_or_default().to_owned(),
        provider_message_id: param(params, "CallSid")
            .filter(|s| !s.is_empty())
            .map(|s| format!("{kind}:{s}")),
        body: None,
        received_at: at,
    }
}

/// A call rings: routed by the rules, answered with TwiML.
async fn voice(State(webhooks): State<Webhooks>, headers: HeaderMap, body: Bytes) -> Response {
    let params = match twilio_form(&webhooks, ("/inbound/voice", None), &headers, &body) {
        Ok(params) => params,
        Err(status) => return status.into_response(),
    };
    let contact = call_contact(&params, "call", webhooks.clock.now());
    let routed = match webhooks.inbound.receive(&contact).await {
        Ok(routed) => routed,
        Err(error) => {
            tracing::error!(%error, "inbound call not recorded");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let Some(decision) = routed.decision else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response(); // calls carry no keyword
    };
    tracing::info!(
        inbound_id = %routed.inbound_id,
        cases = routed.case_ids.len(),
        rule = decision.rule.as_str(),
        repeat = routed.repeat,
        "inbound call routed"
    );
    let member = decision.member_id.clone().unwrap_or_default();
    let (dial, recorded) = voice_urls(&webhooks, &member);
    let target = webhooks.inbound.dial_target(&member);
    let answer = voice::answer(&decision, routed.language, target, (&dial, &recorded));
    twiml_response(voice::twiml(&answer))
}

/// How a dial ended: answered, the call is over; otherwise a callback for the
/// one rung, and a voicemail.
async fn voice_dialled(
    State(webhooks): State<Webhooks>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = ("/inbound/voice/dial", query.as_deref());
    let params = match twilio_form(&webhooks, path, &headers, &body) {
        Ok(params) => params,
        Err(status) => return status.into_response(),
    };
    let member = query.as_deref().and_then(dialled_member);
    if param(&params, "DialCallStatus") == Some("completed") {
        // Who took the call and for how long, on the case's timeline.
        let news = CallNews::Answered {
            member: member.unwrap_or_default(),
            seconds: seconds(&params, "DialCallDuration"),
        };
        return match record_news(&webhooks, &params, &news).await {
            Ok(()) => twiml_response(xml::twiml_hang_up()),
            Err(status) => status.into_response(),
        };
    }
    let contact = call_contact(&params, "missed", webhooks.clock.now());
    let routed = match webhooks.inbound.missed(&contact, member.as_deref()).await {
        Ok(routed) => routed,
        Err(error) => {
            tracing::error!(%error, "missed call not recorded");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    tracing::info!(
        inbound_id = %routed.inbound_id,
        cases = routed.case_ids.len(),
        repeat = routed.repeat,
        "missed call made a callback"
    );
    let (_, recorded) = voice_urls(&webhooks, "");
    twiml_response(voice::twiml(&voice::Answer::Voicemail {
        language: routed.language.unwrap_or(Language::En),
        recorded,
    }))
}

/// Who a dial rang, from its query (`member=…`); None when nobody was.
fn dialled_member(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "member")
        .map(|(_, v)| v.into_owned())
        .filter(|m| !m.is_empty())
}

/// The voicemail is taken (the recording stays with the provider; its
/// callback is on the worklist): the call ends.
async fn voice_recorded(
    State(webhooks): State<Webhooks>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match twilio_form(
        &webhooks,
        ("/inbound/voice/recorded", None),
        &headers,
        &body,
    ) {
        Ok(params) => {
            let Some(recording_id) = param(&params, "RecordingSid").filter(|r| !r.is_empty())
            else {
                return twiml_response(xml::twiml_hang_up());
            };
            let news = CallNews::Voicemail {
                recording_id: recording_id.to_owned(),
                seconds: seconds(&params, "RecordingDuration"),
            };
            match record_news(&webhooks, &params, &news).await {
                Ok(()) => twiml_response(xml::twiml_hang_up()),
                Err(status) => status.into_response(),
            }
        }
        Err(status) => status.into_response(),
    }
}

/// A duration field of a (verified) Twilio form, in whole seconds; 0 when
/// absent or unreadable.
fn seconds(params: &[(String, String)], name: &str) -> u32 {
    param(params, name)
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Records `news` of the call a (verified) Twilio form names, once.
async fn record_news(
    webhooks: &Webhooks,
    params: &[(String, String)],
    news: &CallNews,
) -> Result<(), StatusCode> {
    let Some(call_sid) = param(params, "CallSid").filter(|s| !s.is_empty()) else {
        return Ok(()); // nothing to tie it to
    };
    match webhooks
        .inbound
        .call_news(call_sid, news, webhooks.clock.now())
        .await
    {
        Ok(recorded) => {
            tracing::info!(recorded, "call news taken");
            Ok(())
        }
        Err(error) => {
            tracing::error!(%error, "call news not recorded; the provider may send it again");
            Err(StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}

async fn sms(State(webhooks): State<Webhooks>, headers: HeaderMap, body: Bytes) -> Response {
    let params = match twilio_form(&webhooks, ("/inbound/sms", None), &headers, &body) {
        Ok(params) => params,
        Err(status) => return status.into_response(),
    };
    let contact = sms_contact(&params, webhooks.clock.now());
    match take(&webhooks, contact).await {
        Ok(()) => ([(header::CONTENT_TYPE, "text/xml")], xml::twiml("")).into_response(),
        Err(status) => status.into_response(),
    }
}

async fn email(State(webhooks): State<Webhooks>, body: Bytes) -> StatusCode {
    let key = match secret(&webhooks.secrets.email_signing_key) {
        Ok(key) => key,
        Err(status) => return status,
    };
    let params = form(&body);
    let field = |name: &str| param(&params, name).unwrap_or_default();
    let signed = (field("timestamp"), field("token"), field("signature"));
    // The provider's timestamp is real time, whatever clock the service runs on.
    if let Err(refused) = signature::email::check(key, signed, Utc::now()) {
        tracing::warn!(%refused, "inbound email refused");
        return StatusCode::FORBIDDEN;
    }
    let contact = email_contact(&params, webhooks.clock.now());
    take(&webhooks, contact)
        .await
        .map_or_else(|status| status, |()| StatusCode::OK)
}

/// A Mailgun event webhook: a complaint (the recipient marked the email as
/// spam) or an unsubscribe at Mailgun opts the address out of email, for every
/// case that holds it, as its one-click unsubscribe does. Mailgun's event id
/// makes a redelivery the same contact.
async fn email_event(State(webhooks): State<Webhooks>, body: Bytes) -> StatusCode {
    let key = match secret(&webhooks.secrets.email_signing_key) {
        Ok(key) => key,
        Err(status) => return status,
    };
    // The provider's timestamp is real time, whatever clock the service runs on.
    let event = match signature::email::verified_event(key, &body, Utc::now()) {
        Ok(event) => event,
        Err(refused) => {
            tracing::warn!(%refused, "email event webhook refused");
            return StatusCode::FORBIDDEN;
        }
    };
    fn text<'a>(event: &'a serde_json::Value, name: &str) -> &'a str {
        event.get(name).and_then(|v| v.as_str()).unwrap_or_default()
    }
    let kind = text(&event, "event");
    if !matches!(kind, "complained" | "unsubscribed") {
        tracing::info!(event = kind, "email event that is dispatch's acknowledged");
        return StatusCode::OK;
    }
    let Some(contact) = opt_out_contact(
        text(&event, "recipient"),
        text(&event, "id"),
        webhooks.clock.now(),
    ) else {
        tracing::warn!(
            event = kind,
            "signed email event without a recipient or an id"
        );
        return StatusCode::BAD_REQUEST;
    };
    take(&webhooks, contact)
        .await
        .map_or_else(|status| status, |()| StatusCode::OK)
}

/// The contact a complaint or an unsubscribe at the email provider stands for:
/// the recipient saying the one-click word; None without a recipient or an
/// event id.
fn opt_out_contact(recipient: &str, event_id: &str, at: DateTime<Utc>) -> Option<Contact> {
    let recipient = sender_address(recipient);
    if recipient.is_empty() || event_id.trim().is_empty() {
        return None;
    }
    Some(Contact {
        channel: Channel::Email,
        from: recipient,
        provider_message_id: Some(format!("email-event:{}", event_id.trim())),
        body: Some(ONE_CLICK_WORD.to_owned()),
        received_at: at,
    })
}

/// The address in `Name <address>`, or the whole value.
fn sender_address(sender: &str) -> String {
    sender
        .rsplit_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map_or(sender, |(address, _)| address)
        .trim()
        .to_owned()
}

/// The `fax` field of a received-fax callback: the parts routing reads.
#[derive(Debug, serde::Deserialize)]
struct ReceivedFax {
    id: u64,
    #[serde(default)]
    from_number: String,
    #[serde(default)]
    num_pages: u32,
}

async fn fax(State(webhooks): State<Webhooks>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let token = match secret(&webhooks.secrets.fax_callback_token) {
        Ok(token) => token,
        Err(status) => return status,
    };
    let params = form(&body);
    let url = format!("{}/inbound/fax", webhooks.base_url);
    if !signature::fax::verify(
        token,
        &url,
        &params,
        header_value(&headers, signature::fax::HEADER),
    ) {
        tracing::warn!("inbound fax with a bad signature refused");
        return StatusCode::FORBIDDEN;
    }
    let Some(contact) = fax_contact(&params, webhooks.clock.now()) else {
        tracing::warn!("signed inbound fax without a readable fax field");
        return StatusCode::BAD_REQUEST;
    };
    take(&webhooks, contact)
        .await
        .map_or_else(|status| status, |()| StatusCode::OK)
}

/// A one-click link's query: the case and the proof of the address.
#[derive(Debug, serde::Deserialize)]
struct UnsubscribeLink {
    #[serde(default)]
    case: String,
    #[serde(default)]
    sig: String,
}

/// The address of `link`'s case that its proof was made for, if any.
async fn unsubscribing(webhooks: &Webhooks, link: &UnsubscribeLink) -> Result<String, StatusCode> {
    let key = secret(&webhooks.secrets.unsubscribe_key)?;
    if touchpoint_platform::input::id("case", &link.case).is_err() || link.sig.len() != 64 {
        return Err(StatusCode::FORBIDDEN);
    }
    let addresses = webhooks
        .inbound
        .addresses_of(&link.case)
        .await
        .map_err(|error| {
            tracing::error!(%error, "unsubscribe: the case's addresses could not be read");
            StatusCode::SERVICE_UNAVAILABLE
        })?;
    addresses
        .iter()
        .map(|key| key.to_contact_point(Channel::Email))
        .filter_map(|point| point.text().map(str::to_owned))
        .find(|address| signature::unsubscribe::verify(key, &link.case, address, &link.sig))
        .ok_or_else(|| {
            tracing::warn!("unsubscribe link that proves no address of its case refused");
            StatusCode::FORBIDDEN
        })
}

/// One click: the address opts out of email, for every case that holds it.
async fn unsubscribe(
    State(webhooks): State<Webhooks>,
    Query(link): Query<UnsubscribeLink>,
    body: Bytes,
) -> StatusCode {
    let params = form(&body);
    if param(&params, "List-Unsubscribe") != Some("One-Click") {
        return StatusCode::BAD_REQUEST;
    }
    let address = match unsubscribing(&webhooks, &link).await {
        Ok(address) => address,
        Err(status) => return status,
    };
    // Read as the word it is, with no quote to cut: every click counts (an
    // address that opted back in may click an old email's link again).
    let contact = Contact {
        channel: Channel::Email,
        from: address,
        provider_message_id: None,
        body: Some(ONE_CLICK_WORD.to_owned()),
        received_at: webhooks.clock.now(),
    };
    take(&webhooks, contact)
        .await
        .map_or_else(|status| status, |()| StatusCode::OK)
}

/// What a one-click unsubscribe says, as an emailed reply would.
const ONE_CLICK_WORD: &str = "UNSUBSCRIBE";

/// A person (or a scanner) following the link: a button that posts the
/// one-click form; nothing changes until it is pressed.
async fn unsubscribe_page(
    State(webhooks): State<Webhooks>,
    Query(link): Query<UnsubscribeLink>,
) -> Response {
    if let Err(status) = unsubscribing(&webhooks, &link).await {
        return status.into_response();
    }
    Html(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Unsubscribe</title></head><body><main>\
         <h1>Stop these emails?</h1>\
         <p>You will get no more email from this support program at this address.</p>\
         <form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" \
         value=\"One-Click\"><button type=\"submit\">Unsubscribe</button></form>\
         </main></body></html>",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_complaint_is_the_recipient_saying_the_one_click_word_once_per_event() {
        let at = Utc::now();
        let contact = opt_out_contact("Ana <ana@example.com>", "ev-1", at);
        let contact = contact.unwrap_or_else(|| panic!("no contact"));
        assert_eq!(contact.from, "ana@example.com");
        assert_eq!(contact.body.as_deref(), Some(ONE_CLICK_WORD));
        assert_eq!(
            contact.provider_message_id.as_deref(),
            Some("email-event:ev-1")
        );
        assert!(opt_out_contact("", "ev-1", at).is_none());
        assert!(opt_out_contact("ana@example.com", " ", at).is_none());
    }

    #[test]
    fn the_sender_address_is_taken_from_a_display_name() {
        assert_eq!(
            sender_address("Ana Ruiz <ana@example.com>"),
            "ana@example.com"
        );
        assert_eq!(sender_address(" ana@example.com "), "ana@example.com");
        assert_eq!(sender_address("broken <"), "broken <");
    }
}
