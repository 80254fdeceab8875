//! Working a task: claim it, read the call script in the patient's language,
//! record what happened with a disposition and a note.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{Html, Redirect};
use minijinja::{Value, context};
use serde::Deserialize;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    CallTaskRequested, Case, Channel, ClaimTaskRequest, CompleteTaskRequest, GetTimelineRequest,
    PlaceCallRequest, PreviewFacts, RenderPreviewRequest, ScheduleCallbackRequest, Task, TaskKind,
    TaskOutcome, TaskStatus, TransferTaskRequest, contact_point,
};

use crate::views::case::{summary, verdict_query, visible_case, zone_of};
use crate::views::work::{due, kind_key, tasks};
use crate::views::{Csrf, Desk, PageError, Signed};
use crate::words;

/// What a call can end as, in the order the form offers them.
const CALL_DISPOSITIONS: [&str; 6] = [
    "reached",
    "refused",
    "voicemail",
    "no_answer",
    "wrong_number",
    "opted_out",
];
/// What a review can end as.
const REVIEW_DISPOSITIONS: [&str; 1] = ["resolved"];
/// What a keyword review can end as.
const KEYWORD_DISPOSITIONS: [&str; 2] = ["resolved", "opted_out"];

fn outcome(disposition: &str) -> Option<TaskOutcome> {
    Some(match disposition {
        "reached" => TaskOutcome::Reached,
        "refused" => TaskOutcome::Refused,
        "voicemail" => TaskOutcome::Voicemail,
        "no_answer" => TaskOutcome::NoAnswer,
        "wrong_number" => TaskOutcome::WrongNumber,
        "opted_out" => TaskOutcome::OptedOut,
        "resolved" => TaskOutcome::Resolved,
        _ => return None,
    })
}

fn dispositions(task: &Task) -> &'static [&'static str] {
    match TaskKind::try_from(task.kind) {
        Ok(TaskKind::Call) => &CALL_DISPOSITIONS,
        Ok(TaskKind::KeywordReview) => &KEYWORD_DISPOSITIONS,
        _ => &REVIEW_DISPOSITIONS,
    }
}

/// The task `task_id` from the user's worklist, and its case if the user may
/// see it; not found otherwise.
async fn visible_task(
    desk: &Desk,
    signed: &Signed,
    task_id: &str,
) -> Result<(Task, Case), PageError> {
    let task = tasks(desk, signed)
        .await?
        .into_iter()
        .find(|t| t.task_id == task_id)
        .ok_or(PageError::NotFound)?;
    let case = visible_case(desk, signed, &task.case_id).await?;
    Ok((task, case))
}

/// `/tasks/{id}?saved=callback`, `?called=<state>` or `?refused=<reason>`:
/// what the last form did (codes, never patient data).
#[derive(Debug, Deserialize)]
pub struct Done {
    saved: Option<String>,
    called: Option<String>,
    refused: Option<String>,
}

/// What the page says of the last form.
fn flash(desk: &Desk, language: crate::user::Language, done: &Done) -> Option<String> {
    let catalog = &desk.pages.catalog;
    if done.saved.as_deref() == Some("callback") {
        return Some(catalog.text(language, "task.callback_saved").to_owned());
    }
    if let Some(state) = done.called.as_deref() {
        let key = match state {
            "sent" | "delivered" => "task.call_ringing",
            "failed" => "task.call_failed",
            _ => "task.call_queued",
        };
        return Some(catalog.text(language, key).to_owned());
    }
    done.refused.as_deref().map(|reason| {
        let reason = catalog.text(language, words::suppression_by_name(reason));
        catalog.fill(
            language,
            "task.call_refused",
            &[("reason", reason.to_owned())],
        )
    })
}

/// The task page.
pub async fn page(
    State(desk): State<Desk>,
    signed: Signed,
    Path(task_id): Path<String>,
    Query(done): Query<Done>,
) -> Result<Html<String>, PageError> {
    let (task, case) = visible_task(&desk, &signed, &task_id).await?;
    let language = signed.language();
    let catalog = &desk.pages.catalog;
    let is_call = TaskKind::try_from(task.kind) == Ok(TaskKind::Call);
    let script = if is_call {
        script(&desk, &signed, &task, &case).await?
    } else {
        None
    };
    let claimed = TaskStatus::try_from(task.status) == Ok(TaskStatus::Claimed);
    let (due_text, _) = due(&task, catalog, language, desk.clock.now());
    let status = if claimed {
        "task_status.claimed"
    } else {
        "task_status.open"
    };
    desk.page(
        "task.html",
        &signed,
        context! {
            task => context! {
                task_id => &task.task_id,
                case_id => &task.case_id,
                kind => catalog.text(language, kind_key(&task)),
                due => due_text,
                status => catalog.text(language, status),
                claimed => claimed,
                mine => claimed && task.coordinator_id == signed.0.user.id,
                is_call => is_call,
                workable_now => task.workable_now,
            },
            flash => flash(&desk, language, &done),
            request_id => uuid::Uuid::now_v7().to_string(),
            case => summary(&desk, language, &case),
            script => script,
            dispositions => dispositions(&task),
            navigator => (!case.navigator_id.is_empty() && case.navigator_id != signed.0.user.id)
                .then_some(&case.navigator_id),
            queue => format!("program:{}", case.program_id),
            callback_from => local_input(desk.clock.now(), zone_of(&case)),
        },
    )
}

/// The request a call task was made from, as the case's timeline holds it.
async fn call_request(
    desk: &Desk,
    signed: &Signed,
    task: &Task,
    case: &Case,
) -> Result<Option<CallTaskRequested>, PageError> {
    let language = signed.language();
    Ok(desk
        .peers
        .cases
        .clone()
        .get_timeline(desk.vouched(
            signed,
            GetTimelineRequest {
                case_id: case.case_id.clone(),
                kinds: vec!["CallTaskRequested".into()],
                page_size: 1000,
                page_token: String::new(),
            },
        ))
        .await
        .map_err(|s| PageError::from_status(&s, language))?
        .into_inner()
        .entries
        .into_iter()
        .filter_map(|entry| match entry.event?.payload? {
            Payload::CallTaskRequested(call) if call.attempt_id == task.attempt_id => Some(call),
            _ => None,
        })
        .next_back())
}

/// The call script of the step a call task is for, in the patient's language.
async fn script(
    desk: &Desk,
    signed: &Signed,
    task: &Task,
    case: &Case,
) -> Result<Option<Value>, PageError> {
    let language = signed.language();
    let Some(call) = call_request(desk, signed, task, case).await? else {
        return Ok(None);
    };
    let name = case
        .patient
        .as_ref()
        .and_then(|p| p.name.clone())
        .unwrap_or_default();
    let rendered = desk
        .peers
        .dispatch
        .clone()
        .render_preview(desk.vouched(
            signed,
            RenderPreviewRequest {
                program_id: call.program_id,
                step_id: call.step_id,
                language: call.language,
                facts: Some(PreviewFacts {
                    first_name: name.given_name,
                    last_name: name.family_name,
                }),
            },
        ))
        .await
        .map_err(|s| PageError::from_status(&s, language))?
        .into_inner();
    Ok(rendered
        .messages
        .into_iter()
        .find(|m| m.channel == Channel::Voice as i32)
        .map(|m| {
            let lang = match touchpoint_proto::v1::Language::try_from(m.language) {
                Ok(touchpoint_proto::v1::Language::Es) => "es",
                _ => "en",
            };
            context! { text => m.text, lang => lang, fell_back => m.language_fell_back }
        }))
}

/// The call form: a request id, so a double click places one call.
#[derive(Debug, Deserialize)]
pub struct CallForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    request_id: String,
}

/// Click to call: the user's own phone rings, then the number the task is
/// for (the patient's or a caregiver's) through dispatch, which checks
/// consent, opt-out, the patient's hours and the caps at dial time.
pub async fn call(
    State(desk): State<Desk>,
    signed: Signed,
    Path(task_id): Path<String>,
    Form(form): Form<CallForm>,
) -> Result<Redirect, PageError> {
    signed.check(&form.csrf)?;
    let language = signed.language();
    let (task, case) = visible_task(&desk, &signed, &task_id).await?;
    let mine = TaskStatus::try_from(task.status) == Ok(TaskStatus::Claimed)
        && task.coordinator_id == signed.0.user.id;
    if TaskKind::try_from(task.kind) != Ok(TaskKind::Call) || !mine {
        return Err(PageError::BadRequest(
            language,
            "claim this call task before calling".into(),
        ));
    }
    let requested = call_request(&desk, &signed, &task, &case).await?;
    let number = requested
        .as_ref()
        .and_then(|r| r.destination.as_ref()?.value.as_ref())
        .and_then(|v| match v {
            contact_point::Value::PhoneE164(number) => Some(number.clone()),
            _ => None,
        })
        .or_else(|| {
            let contact = case.patient.as_ref()?.contact.as_ref()?;
            (!contact.mobile_e164.is_empty()).then(|| contact.mobile_e164.clone())
        })
        .ok_or_else(|| PageError::BadRequest(language, "the case has no number to call".into()))?;
    let answer = desk
        .peers
        .dispatch
        .clone()
        .place_call(desk.vouched(
            &signed,
            PlaceCallRequest {
                request_id: form.request_id,
                case_id: case.case_id.clone(),
                to: number,
                task_attempt_id: requested.map(|r| r.attempt_id).unwrap_or_default(),
            },
        ))
        .await
        .map_err(|s| PageError::from_status(&s, language))?
        .into_inner();
    let done = verdict_query("called", &answer.state, answer.suppression);
    Ok(Redirect::to(&format!("/tasks/{}?{done}", task.task_id)))
}

/// Claims the task for the user.
pub async fn claim(
    State(desk): State<Desk>,
    signed: Signed,
    Path(task_id): Path<String>,
    Form(form): Form<Csrf>,
) -> Result<Redirect, PageError> {
    signed.check(&form.csrf)?;
    let (task, _) = visible_task(&desk, &signed, &task_id).await?;
    desk.peers
        .routing
        .clone()
        .claim_task(desk.vouched(
            &signed,
            ClaimTaskRequest {
                task_id: task.task_id.clone(),
                coordinator_id: signed.0.user.id.clone(),
            },
        ))
        .await
        .map_err(|s| PageError::from_status(&s, signed.language()))?;
    Ok(Redirect::to(&format!("/tasks/{}", task.task_id)))
}

/// The outcome form.
#[derive(Debug, Deserialize)]
pub struct OutcomeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    disposition: String,
    #[serde(default)]
    note: String,
}

/// Records what happened: the task's outcome, and the note on the case.
pub async fn complete(
    State(desk): State<Desk>,
    signed: Signed,
    Path(task_id): Path<String>,
    Form(form): Form<OutcomeForm>,
) -> Result<Redirect, PageError> {
    signed.check(&form.csrf)?;
    let language = signed.language();
    let (task, case) = visible_task(&desk, &signed, &task_id).await?;
    let outcome = outcome(&form.disposition)
        .filter(|_| dispositions(&task).contains(&form.disposition.as_str()))
        .ok_or_else(|| PageError::BadRequest(language, "choose what happened".into()))?;
    if !form.note.trim().is_empty() {
        crate::views::case::note(&desk, &signed, &case.case_id, &form.note).await?;
    }
    desk.peers
        .routing
        .clone()
        .complete_task(desk.vouched(
            &signed,
            CompleteTaskRequest {
                task_id: task.task_id.clone(),
                coordinator_id: signed.0.user.id.clone(),
                outcome: outcome as i32,
            },
        ))
        .await
        .map_err(|s| PageError::from_status(&s, language))?;
    Ok(Redirect::to(&format!("/cases/{}", case.case_id)))
}

/// `at` in `zone` as a `datetime-local` input holds it.
fn local_input(at: chrono::DateTime<chrono::Utc>, zone: chrono_tz::Tz) -> String {
    at.with_timezone(&zone).format("%Y-%m-%dT%H:%M").to_string()
}

/// The callback form.
#[derive(Debug, Deserialize)]
pub struct CallbackForm {
    #[serde(default)]
    csrf: String,
    /// The patient's local date and time, `YYYY-MM-DDTHH:MM`.
    #[serde(default)]
    at: String,
}

/// Promises the patient a callback at a time in their window: a callback task
/// on the user's worklist.
pub async fn callback(
    State(desk): State<Desk>,
    signed: Signed,
    Path(task_id): Path<String>,
    Form(form): Form<CallbackForm>,
) -> Result<Redirect, PageError> {
    signed.check(&form.csrf)?;
    let language = signed.language();
    let (task, case) = visible_task(&desk, &signed, &task_id).await?;
    let local = chrono::NaiveDateTime::parse_from_str(form.at.trim(), "%Y-%m-%dT%H:%M")
        .map_err(|_| PageError::BadRequest(language, "the callback's date and time".into()))?;
    let due = local
        .and_local_timezone(zone_of(&case))
        .earliest()
        .ok_or_else(|| PageError::BadRequest(language, "that time does not exist there".into()))?
        .with_timezone(&chrono::Utc);
    desk.peers
        .routing
        .clone()
        .schedule_callback(desk.vouched(
            &signed,
            ScheduleCallbackRequest {
                case_id: case.case_id.clone(),
                coordinator_id: signed.0.user.id.clone(),
                due_at: Some(touchpoint_proto::Timestamp {
                    seconds: due.timestamp(),
                    nanos: 0,
                }),
            },
        ))
        .await
        .map_err(|s| PageError::from_status(&s, language))?;
    Ok(Redirect::to(&format!(
        "/tasks/{}?saved=callback",
        task.task_id
    )))
}

/// The transfer form.
#[derive(Debug, Deserialize)]
pub struct TransferForm {
    #[serde(default)]
    csrf: String,
    /// `navigator` or `queue`.
    #[serde(default)]
    to: String,
    #[serde(default)]
    note: String,
}

/// Hands the task on to the case's navigator or the program's queue, with a
/// note on the case saying why.
pub async fn transfer(
    State(desk): State<Desk>,
    signed: Signed,
    Path(task_id): Path<String>,
    Form(form): Form<TransferForm>,
) -> Result<Redirect, PageError> {
    signed.check(&form.csrf)?;
    let language = signed.language();
    let (task, case) = visible_task(&desk, &signed, &task_id).await?;
    let (to_coordinator_id, to_queue) = match form.to.as_str() {
        "navigator" if !case.navigator_id.is_empty() => (case.navigator_id.clone(), String::new()),
        "queue" => (String::new(), format!("program:{}", case.program_id)),
        _ => {
            return Err(PageError::BadRequest(
                language,
                "hand it to the case's navigator or the program's queue".into(),
            ));
        }
    };
    if !form.note.trim().is_empty() {
        crate::views::case::note(&desk, &signed, &case.case_id, &form.note).await?;
    }
    desk.peers
        .routing
        .clone()
        .transfer_task(desk.vouched(
            &signed,
            TransferTaskRequest {
                task_id: task.task_id.clone(),
                coordinator_id: signed.0.user.id.clone(),
                to_coordinator_id,
                to_queue,
            },
        ))
        .await
        .map_err(|s| PageError::from_status(&s, language))?;
    Ok(Redirect::to("/work?saved=transfer"))
}
