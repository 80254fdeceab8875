//! The case page: who the patient is (initials, language, local time), their
//! consents with evidence, the plan, notes and the timeline in plain words.
//! Contact details are masked until the user asks to see them; every view and
//! every reveal is in the access log.
//!
//! A case outside the user's programs is a 404, the same page as a case that
//! does not exist, so its existence is not disclosed either.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{Html, Redirect};
use chrono::DateTime;
use chrono_tz::Tz;
use minijinja::{Value, context};
use serde::Deserialize;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    AddNoteRequest, Case, Channel, CommandMeta, ConsentState, GetCaseRequest, GetPlanRequest,
    GetTimelineRequest, Language as CaseLanguage, Plan, SendMessageRequest, StepState,
    SuppressionReason, TimelineEntry, contact_point,
};

use crate::mask;
use crate::store;
use crate::user::Language;
use crate::views::{Csrf, Desk, PageError, Signed};
use crate::words::{self, instant, local_time};

/// Timeline pages read at most for one case page (1,000 entries each).
const TIMELINE_PAGES: usize = 10;

/// The case `case_id` if the user may see it; otherwise, or if there is no
/// such case, not found.
pub async fn visible_case(desk: &Desk, signed: &Signed, case_id: &str) -> Result<Case, PageError> {
    if case_id.is_empty() || case_id.len() > 128 {
        return Err(PageError::NotFound);
    }
    let case = desk
        .peers
        .cases
        .clone()
        .get_case(desk.vouched(
            signed,
            GetCaseRequest {
                case_id: case_id.to_owned(),
            },
        ))
        .await
        .map_err(|s| PageError::from_status(&s, signed.language()))?
        .into_inner();
    if signed.0.user.sees(&case.program_id) {
        Ok(case)
    } else {
        tracing::info!(user = %signed.0.user.id, case_id, "a case outside the user's programs was asked for");
        Err(PageError::NotFound)
    }
}

/// The patient's time zone, or UTC for one the desk does not know.
pub fn zone_of(case: &Case) -> Tz {
    case.time_zone.parse().unwrap_or(Tz::UTC)
}

/// What every page about a case shows at its top.
pub fn summary(desk: &Desk, language: Language, case: &Case) -> Value {
    let catalog = &desk.pages.catalog;
    let zone = zone_of(case);
    let case_language = match CaseLanguage::try_from(case.language) {
        Ok(CaseLanguage::Es) => "case.lang_es",
        _ => "case.lang_en",
    };
    context! {
        id => &case.case_id,
        initials => mask::initials(case.patient.as_ref()),
        language => catalog.text(language, case_language),
        local_time => local_time(desk.clock.now(), zone),
        program => &case.program_id,
        status => catalog.text(language, words::case_status(case.status)),
        coordinator => &case.coordinator_id,
        navigator => &case.navigator_id,
    }
}

/// `/cases/{id}?saved=note`, `?sent=<state>` or `?refused=<reason>`: what the
/// last form did (codes, never patient data).
#[derive(Debug, Deserialize)]
pub struct Saved {
    saved: Option<String>,
    sent: Option<String>,
    refused: Option<String>,
}

/// The case page, masked.
pub async fn page(
    State(desk): State<Desk>,
    signed: Signed,
    Path(case_id): Path<String>,
    Query(saved): Query<Saved>,
) -> Result<Html<String>, PageError> {
    let language = signed.language();
    let catalog = &desk.pages.catalog;
    let flash = if saved.saved.as_deref() == Some("note") {
        Some(catalog.text(language, "case.note_saved").to_owned())
    } else if let Some(state) = saved.sent.as_deref() {
        let key = match state {
            "sent" | "delivered" => "case.reply_sent",
            "failed" => "case.reply_failed",
            _ => "case.reply_queued",
        };
        Some(catalog.text(language, key).to_owned())
    } else {
        saved.refused.as_deref().map(|reason| {
            let reason = catalog.text(language, words::suppression_by_name(reason));
            catalog.fill(
                language,
                "case.reply_refused",
                &[("reason", reason.to_owned())],
            )
        })
    };
    render(&desk, &signed, &case_id, false, flash).await
}

/// The case page with full contact details.
pub async fn reveal(
    State(desk): State<Desk>,
    signed: Signed,
    Path(case_id): Path<String>,
    Form(form): Form<Csrf>,
) -> Result<Html<String>, PageError> {
    signed.check(&form.csrf)?;
    render(&desk, &signed, &case_id, true, None).await
}

async fn render(
    desk: &Desk,
    signed: &Signed,
    case_id: &str,
    revealed: bool,
    flash: Option<String>,
) -> Result<Html<String>, PageError> {
    let case = visible_case(desk, signed, case_id).await?;
    let what = if revealed { "reveal" } else { "case" };
    let language = signed.language();
    let catalog = &desk.pages.catalog;
    let zone = zone_of(&case);
    // The access log, the timeline and the plan at once: the page waits for
    // the slowest, not the sum.
    let logged = store::log_access(
        &desk.pool,
        &signed.0.user.id,
        &case.case_id,
        what,
        chrono::Utc::now(),
    );
    let plan = async {
        desk.peers
            .cadence
            .clone()
            .get_plan(desk.vouched(
                signed,
                GetPlanRequest {
                    case_id: case.case_id.clone(),
                },
            ))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| tracing::info!(code = ?status.code(), "the plan is unavailable"))
            .ok()
    };
    let (logged, entries, plan) = tokio::join!(logged, timeline(desk, signed, &case.case_id), plan);
    logged?;
    let entries = entries?;
    let rows: Vec<Value> = entries
        .iter()
        .filter_map(|entry| {
            let phrase = words::describe(entry)?;
            let at = entry
                .event
                .as_ref()
                .and_then(|e| instant(e.occurred_at.as_ref()))
                .or_else(|| instant(entry.recorded_at.as_ref()))?;
            Some(context! {
                at => local_time(at, zone),
                kind => entry.kind.rsplit('.').next().unwrap_or_default(),
                text => phrase.render(catalog, language, zone),
            })
        })
        .collect();
    let notes: Vec<Value> = entries
        .iter()
        .filter_map(|entry| {
            let event = entry.event.as_ref()?;
            let Some(Payload::NoteAdded(note)) = &event.payload else {
                return None;
            };
            Some(context! {
                at => instant(event.occurred_at.as_ref()).map(|at| local_time(at, zone)),
                author => &note.author,
                text => &note.text,
            })
        })
        .collect();
    let title = catalog.fill(language, "case.title", &[("id", case.case_id.clone())]);
    desk.page(
        "case.html",
        signed,
        context! {
            title => title,
            flash => flash,
            reply => reply_channels(desk, language, &case),
            request_id => uuid::Uuid::now_v7().to_string(),
            case => summary(desk, language, &case),
            revealed => revealed,
            contacts => contacts(desk, language, &case, revealed),
            consents => consents(desk, language, &case, zone, revealed),
            plan => plan.map(|p| plan_view(desk, language, &p)),
            timeline => rows,
            notes => notes,
        },
    )
}

/// The case's timeline, oldest first.
pub async fn timeline(
    desk: &Desk,
    signed: &Signed,
    case_id: &str,
) -> Result<Vec<TimelineEntry>, PageError> {
    let mut entries = Vec::new();
    let mut page_token = String::new();
    for _ in 0..TIMELINE_PAGES {
        let page = desk
            .peers
            .cases
            .clone()
            .get_timeline(desk.vouched(
                signed,
                GetTimelineRequest {
                    case_id: case_id.to_owned(),
                    kinds: Vec::new(),
                    page_size: 1000,
                    page_token: page_token.clone(),
                },
            ))
            .await
            .map_err(|s| PageError::from_status(&s, signed.language()))?
            .into_inner();
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    Ok(entries)
}

fn contacts(desk: &Desk, language: Language, case: &Case, revealed: bool) -> Vec<Value> {
    let catalog = &desk.pages.catalog;
    let mut shown = Vec::new();
    let Some(contact) = case.patient.as_ref().and_then(|p| p.contact.as_ref()) else {
        return shown;
    };
    let mut add = |key: &str, full: &str, masked: String| {
        if !full.is_empty() {
            let value = if revealed { full.to_owned() } else { masked };
            shown.push(context! { label => catalog.text(language, key), value => value });
        }
    };
    add(
        "case.mobile",
        &contact.mobile_e164,
        mask::phone(&contact.mobile_e164),
    );
    add(
        "case.landline",
        &contact.landline_e164,
        mask::phone(&contact.landline_e164),
    );
    add("case.email", &contact.email, mask::email(&contact.email));
    if let Some(address) = &contact.postal_address {
        add(
            "case.address",
            &mask::address_in_full(address),
            mask::address(address),
        );
    }
    shown
}

fn consents(desk: &Desk, language: Language, case: &Case, zone: Tz, revealed: bool) -> Vec<Value> {
    let catalog = &desk.pages.catalog;
    case.consents
        .iter()
        .map(|consent| {
            let point = match consent
                .contact_point
                .as_ref()
                .and_then(|c| c.value.as_ref())
            {
                None => catalog.text(language, "consent.all").to_owned(),
                Some(contact_point::Value::PhoneE164(p) | contact_point::Value::FaxE164(p)) => {
                    if revealed {
                        p.clone()
                    } else {
                        mask::phone(p)
                    }
                }
                Some(contact_point::Value::Email(e)) => {
                    if revealed {
                        e.clone()
                    } else {
                        mask::email(e)
                    }
                }
                Some(contact_point::Value::PostalAddress(a)) => {
                    if revealed {
                        mask::address_in_full(a)
                    } else {
                        mask::address(a)
                    }
                }
            };
            let state = match ConsentState::try_from(consent.state) {
                Ok(ConsentState::Granted) => "consent.granted",
                _ => "consent.revoked",
            };
            context! {
                channel => catalog.text(language, words::channel(consent.channel)),
                contact_point => point,
                state => catalog.text(language, state),
                source => catalog.text(language, words::consent_source(consent.source)),
                at => instant(consent.at.as_ref()).map(|at| local_time(at, zone)),
                by => &consent.by,
            }
        })
        .collect()
}

fn plan_view(desk: &Desk, language: Language, plan: &Plan) -> Value {
    let catalog = &desk.pages.catalog;
    let steps: Vec<Value> = plan
        .steps
        .iter()
        .map(|step| {
            let state = match StepState::try_from(step.state) {
                Ok(StepState::AwaitingAnchor) => "plan.awaiting_anchor",
                Ok(StepState::Scheduled) => "plan.scheduled",
                Ok(StepState::Running) => "plan.running",
                Ok(StepState::Blocked) => "plan.blocked",
                Ok(StepState::Completed) => "plan.completed",
                Ok(StepState::Exhausted) => "plan.exhausted",
                Ok(StepState::Cancelled) => "plan.cancelled",
                _ => "plan.unknown",
            };
            context! { step_id => &step.step_id, state => catalog.text(language, state) }
        })
        .collect();
    let upcoming: Vec<Value> = plan
        .upcoming
        .iter()
        .map(|touchpoint| {
            let send_at = DateTime::parse_from_rfc3339(&touchpoint.send_at_local)
                .map(|t| t.format("%Y-%m-%d %H:%M (UTC%:z)").to_string())
                .unwrap_or_default();
            context! {
                step_id => &touchpoint.step_id,
                channel => catalog.text(language, words::channel(touchpoint.channel)),
                send_at => send_at,
                held => touchpoint.held,
            }
        })
        .collect();
    context! { steps => steps, upcoming => upcoming }
}

/// The note form.
#[derive(Debug, Deserialize)]
pub struct NoteForm {
    #[serde(default)]
    csrf: String,
    text: String,
}

/// Adds a note to the case.
pub async fn add_note(
    State(desk): State<Desk>,
    signed: Signed,
    Path(case_id): Path<String>,
    Form(form): Form<NoteForm>,
) -> Result<Redirect, PageError> {
    signed.check(&form.csrf)?;
    let case = visible_case(&desk, &signed, &case_id).await?;
    note(&desk, &signed, &case.case_id, &form.text).await?;
    Ok(Redirect::to(&format!("/cases/{}?saved=note", case.case_id)))
}

/// Adds `text` to the case's notes.
pub async fn note(
    desk: &Desk,
    signed: &Signed,
    case_id: &str,
    text: &str,
) -> Result<(), PageError> {
    let language = signed.language();
    let text = text.trim();
    if text.is_empty() {
        return Err(PageError::BadRequest(language, "the note is empty".into()));
    }
    desk.peers
        .cases
        .clone()
        .add_note(desk.vouched(
            signed,
            AddNoteRequest {
                meta: Some(CommandMeta {
                    request_id: uuid::Uuid::now_v7().to_string(),
                    ..CommandMeta::default()
                }),
                case_id: case_id.to_owned(),
                text: text.to_owned(),
            },
        ))
        .await
        .map_err(|s| PageError::from_status(&s, language))?;
    Ok(())
}

/// The channels a reply can go out on: those the patient has a number or
/// address for.
fn reply_channels(desk: &Desk, language: Language, case: &Case) -> Vec<Value> {
    let catalog = &desk.pages.catalog;
    let Some(contact) = case.patient.as_ref().and_then(|p| p.contact.as_ref()) else {
        return Vec::new();
    };
    let mut channels = Vec::new();
    if !contact.mobile_e164.is_empty() {
        channels.push(context! { value => "sms", label => catalog.text(language, "channel.sms") });
    }
    if !contact.email.is_empty() {
        channels
            .push(context! { value => "email", label => catalog.text(language, "channel.email") });
    }
    channels
}

/// Dispatch's verdict on a person's message or call as a redirect's query:
/// `refused=<reason>` when it was suppressed, else `<done>=<state>`. Codes,
/// never patient data.
pub fn verdict_query(done: &str, state: &str, suppression: i32) -> String {
    if state == "suppressed" {
        let reason = SuppressionReason::try_from(suppression)
            .unwrap_or(SuppressionReason::Unspecified)
            .as_str_name();
        format!("refused={reason}")
    } else {
        format!("{done}={state}")
    }
}

/// The reply form.
#[derive(Debug, Deserialize)]
pub struct ReplyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    request_id: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    text: String,
}

/// Sends the user's message to the patient through dispatch, to the case's
/// own number or address; says whether it went out or why not.
pub async fn reply(
    State(desk): State<Desk>,
    signed: Signed,
    Path(case_id): Path<String>,
    Form(form): Form<ReplyForm>,
) -> Result<Redirect, PageError> {
    signed.check(&form.csrf)?;
    let language = signed.language();
    let case = visible_case(&desk, &signed, &case_id).await?;
    let contact = case
        .patient
        .as_ref()
        .and_then(|p| p.contact.clone())
        .unwrap_or_default();
    let (channel, to) = match form.channel.as_str() {
        "sms" if !contact.mobile_e164.is_empty() => (Channel::Sms, contact.mobile_e164),
        "email" if !contact.email.is_empty() => (Channel::Email, contact.email),
        _ => {
            return Err(PageError::BadRequest(
                language,
                "channel: a text message or email the patient has".into(),
            ));
        }
    };
    let answer = desk
        .peers
        .dispatch
        .clone()
        .send_message(desk.vouched(
            &signed,
            SendMessageRequest {
                request_id: form.request_id,
                case_id: case.case_id.clone(),
                channel: channel as i32,
                to,
                text: form.text,
                subject: String::new(),
            },
        ))
        .await
        .map_err(|s| PageError::from_status(&s, language))?
        .into_inner();
    let outcome = verdict_query("sent", &answer.state, answer.suppression);
    Ok(Redirect::to(&format!("/cases/{}?{outcome}", case.case_id)))
}
