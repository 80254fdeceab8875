//! The voice side of the Twilio stand-in, on the same account and server as
//! its messages: the part of Programmable Voice dispatch's click to call uses.
//! - `POST /2010-04-01/Accounts/{sid}/Calls.json` (basic auth; `To` a
//!   `client:<identity>` or an E.164 number, `From`, `Url`, `StatusCallback`),
//!   answering 201 with the call, or Twilio's error shape; the same faults as
//!   messages;
//! - `GET` on the same path with a `To` filter, newest first.
//!
//! A test plays the people on the line: [`Sandbox::pick_up`] answers the
//! person's phone (the call's `Url` is fetched, signed, and its `<Dial>` read),
//! [`Sandbox::end_dial`] ends the patient's leg as asked, and
//! [`Sandbox::not_picked_up`] lets the person's phone ring out.

use axum::Form;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::json;
use std::collections::HashMap;

use touchpoint_platform::signature;

use super::{Fault, Sandbox, Shared, admit, authorized, error, is_e164, post_form};

/// A call the stand-in placed (patient data, kept only in memory).
#[derive(Clone, PartialEq, Eq)]
pub struct PlacedCall {
    /// Its SID.
    pub sid: String,
    /// Whom it rang first (`client:<identity>` or a number).
    pub to: String,
    /// The caller id.
    pub from: String,
    /// Where its TwiML is fetched once answered.
    pub url: String,
    /// Where the first leg's end is reported.
    pub status_callback: Option<String>,
    /// When it was created.
    pub date_created: DateTime<Utc>,
    /// The patient's leg, once the TwiML asked for one.
    pub dialled: Option<Dial>,
}

impl std::fmt::Debug for PlacedCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlacedCall")
            .field("sid", &self.sid)
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

/// A `<Dial>` a call's TwiML asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dial {
    /// The number dialled.
    pub number: String,
    /// The caller id shown.
    pub caller_id: String,
    /// Where the dial's end is reported.
    pub action: String,
    /// Where the answering-machine verdict is reported.
    pub amd_callback: Option<String>,
}

/// How the patient's leg ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialEnd {
    /// A person answered and spoke this long.
    Answered {
        /// Seconds.
        seconds: u32,
    },
    /// Voicemail answered.
    Voicemail,
    /// Nobody answered.
    NoAnswer,
    /// The line was busy.
    Busy,
}

/// The `name` attribute of the first `element` tag in `xml`, unescaped.
fn attribute(xml: &str, element: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{element} "))?;
    let tag = &xml[start..start + xml[start..].find('>')?];
    let key = format!(" {name}=\"");
    let from = tag.find(&key)? + key.len();
    let value = &tag[from..from + tag[from..].find('"')?];
    Some(unescape(value))
}

/// The text inside the first `element` in `xml`, unescaped.
fn text(xml: &str, element: &str) -> Option<String> {
    let start = xml.find(&format!("<{element}"))?;
    let open_end = start + xml[start..].find('>')? + 1;
    let close = open_end + xml[open_end..].find(&format!("</{element}>"))?;
    Some(unescape(xml[open_end..close].trim()))
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The `<Dial><Number>` in a TwiML document, if it holds one.
fn read_dial(twiml: &str) -> Option<Dial> {
    Some(Dial {
        number: text(twiml, "Number")?,
        caller_id: attribute(twiml, "Dial", "callerId")?,
        action: attribute(twiml, "Dial", "action")?,
        amd_callback: attribute(twiml, "Number", "amdStatusCallback"),
    })
}

impl Sandbox {
    /// Every call placed so far.
    pub fn calls(&self) -> Vec<PlacedCall> {
        self.shared.recorded().calls.clone()
    }

    async fn signed_post(&self, url: &str, params: &[(String, String)]) -> Option<(u16, String)> {
        let signed = signature::sign(&self.shared.auth_token, url, params);
        post_form(url, params, signature::HEADER, &signed).await
    }

    fn call(&self, sid: &str) -> Option<PlacedCall> {
        self.calls().into_iter().find(|c| c.sid == sid)
    }

    fn call_params(&self, call: &PlacedCall, status: &str) -> Vec<(String, String)> {
        vec![
            ("AccountSid".to_owned(), self.shared.account_sid.clone()),
            ("CallSid".to_owned(), call.sid.clone()),
            ("CallStatus".to_owned(), status.to_owned()),
            ("Direction".to_owned(), "outbound-api".to_owned()),
            ("From".to_owned(), call.from.clone()),
            ("To".to_owned(), call.to.clone()),
        ]
    }

    /// The person answers call `sid`: its TwiML is fetched (signed) and a
    /// `<Dial>` in it is recorded. Returns the status and the TwiML.
    pub async fn pick_up(&self, sid: &str) -> Option<(u16, String)> {
        let call = self.call(sid)?;
        let params = self.call_params(&call, "in-progress");
        let (status, twiml) = self.signed_post(&call.url, &params).await?;
        if let Some(dial) = read_dial(&twiml) {
            let mut recorded = self.shared.recorded();
            if let Some(placed) = recorded.calls.iter_mut().find(|c| c.sid == sid) {
                placed.dialled = Some(dial);
            }
        }
        Some((status, twiml))
    }

    /// The patient's leg of call `sid` ends as `end`: the answering-machine
    /// verdict, the dial's end, then the first leg's end are reported, each
    /// signed. Returns the status the dial's report got, and its TwiML.
    pub async fn end_dial(&self, sid: &str, end: DialEnd) -> Option<(u16, String)> {
        let call = self.call(sid)?;
        let dial = call.dialled.clone()?;
        let answered_by = match end {
            DialEnd::Answered { .. } => Some("human"),
            DialEnd::Voicemail => Some("machine_end_beep"),
            DialEnd::NoAnswer | DialEnd::Busy => None,
        };
        if let (Some(answered_by), Some(url)) = (answered_by, &dial.amd_callback) {
            let mut params = self.call_params(&call, "in-progress");
            params.push(("AnsweredBy".to_owned(), answered_by.to_owned()));
            self.signed_post(url, &params).await?;
        }
        let (status, seconds) = match end {
            DialEnd::Answered { seconds } => ("completed", seconds),
            DialEnd::Voicemail => ("completed", 20),
            DialEnd::NoAnswer => ("no-answer", 0),
            DialEnd::Busy => ("busy", 0),
        };
        let mut params = self.call_params(&call, "in-progress");
        params.push(("DialCallStatus".to_owned(), status.to_owned()));
        params.push(("DialCallDuration".to_owned(), seconds.to_string()));
        params.push(("DialCallSid".to_owned(), format!("{}-dial", call.sid)));
        let answered = self.signed_post(&dial.action, &params).await?;
        if let Some(url) = &call.status_callback {
            self.signed_post(url, &self.call_params(&call, "completed"))
                .await?;
        }
        Some(answered)
    }

    /// Plays every call placed after the first `*answered`: the person picks
    /// up, the patient answers and they speak a minute, as a local run shows
    /// a call; and counts them in.
    pub async fn answer_new(&self, answered: &mut usize) {
        let calls = self.calls();
        for call in calls.iter().skip(*answered) {
            if self.pick_up(&call.sid).await.is_some() {
                self.end_dial(&call.sid, DialEnd::Answered { seconds: 60 })
                    .await;
            }
        }
        *answered = calls.len();
    }

    /// The person's own phone rings out on call `sid`: the first leg's end is
    /// reported `no-answer`. Returns the status the report got.
    pub async fn not_picked_up(&self, sid: &str) -> Option<u16> {
        let call = self.call(sid)?;
        let url = call.status_callback.clone()?;
        let params = self.call_params(&call, "no-answer");
        self.signed_post(&url, &params)
            .await
            .map(|(status, _)| status)
    }
}

pub(crate) async fn create(
    State(shared): State<Shared>,
    Path(account): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let fault = match admit(&shared, &account, &headers).await {
        Ok(fault) => fault,
        Err(refused) => return refused,
    };
    let to = form.get("To").cloned().unwrap_or_default();
    let client = to.strip_prefix("client:").is_some_and(|id| {
        !id.is_empty()
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    });
    if !client && !is_e164(&to) {
        return error(
            StatusCode::BAD_REQUEST,
            21201,
            "No 'To' number is specified",
        );
    }
    let Some(url) = form.get("Url").filter(|u| u.starts_with("http")).cloned() else {
        return error(StatusCode::BAD_REQUEST, 21205, "Url parameter is required");
    };
    let from = form.get("From").cloned().unwrap_or_default();
    if !is_e164(&from) {
        return error(StatusCode::BAD_REQUEST, 21212, "Invalid 'From' number");
    }
    let call = {
        let mut recorded = shared.recorded();
        recorded.next_sid += 1;
        let call = PlacedCall {
            sid: format!("CA{:032x}", recorded.next_sid),
            to,
            from,
            url,
            status_callback: form.get("StatusCallback").cloned(),
            date_created: Utc::now(),
            dialled: None,
        };
        recorded.calls.push(call.clone());
        call
    };
    if let Some(Fault::AcceptThenStall(stall)) = fault {
        tokio::time::sleep(stall).await;
    }
    (StatusCode::CREATED, Json(resource(&call))).into_response()
}

pub(crate) async fn list(
    State(shared): State<Shared>,
    Path(account): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&shared, &account, &headers) {
        return error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let calls: Vec<serde_json::Value> = shared
        .recorded()
        .calls
        .iter()
        .rev()
        .filter(|c| query.get("To").is_none_or(|to| *to == c.to))
        .map(resource)
        .collect();
    Json(json!({ "calls": calls })).into_response()
}

fn resource(c: &PlacedCall) -> serde_json::Value {
    json!({
        "sid": c.sid,
        "status": "queued",
        "direction": "outbound-api",
        "to": c.to,
        "from": c.from,
        "date_created": c.date_created.to_rfc2822(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dial_is_read_from_twiml_with_its_markup_unescaped() {
        let twiml = "<?xml version=\"1.0\"?><Response><Dial callerId=\"+12125550199\" \
                     timeout=\"25\" action=\"https://hub/d?a=1&amp;b=2\"><Number \
                     machineDetection=\"Enable\" amdStatusCallback=\"https://hub/amd\">\
                     +12125550100</Number></Dial></Response>";
        assert_eq!(
            read_dial(twiml),
            Some(Dial {
                number: "+12125550100".into(),
                caller_id: "+12125550199".into(),
                action: "https://hub/d?a=1&b=2".into(),
                amd_callback: Some("https://hub/amd".into()),
            })
        );
        assert_eq!(read_dial("<Response><Hangup/></Response>"), None);
    }
}
