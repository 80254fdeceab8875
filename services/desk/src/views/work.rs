//! My work: the signed-in user's tasks and their queues', what may be worked
//! now first, then by priority and due time (routing's order), kept current
//! by a server-sent event stream; and their presence, which routing uses.

use std::convert::Infallible;

use axum::Form;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, Redirect};
use chrono::{DateTime, TimeDelta, Utc};
use futures::Stream;
use minijinja::{Value, context};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tonic::Code;
use touchpoint_proto::v1::{
    ListWorklistRequest, Presence, SetPresenceRequest, Task, TaskKind, TaskStatus,
};

use crate::i18n::Catalog;
use crate::store;
use crate::user::Language;
use crate::views::{Desk, PageError, Saved, Signed};
use crate::words::instant;

/// Tasks a worklist shows at most.
const LIST_LIMIT: u32 = 200;

/// The worklist page.
pub async fn page(
    State(desk): State<Desk>,
    signed: Signed,
    Query(saved): Query<Saved>,
) -> Result<Html<String>, PageError> {
    let tasks = rows(&desk, &signed).await?;
    let presence = store::presence(&desk.pool, &signed.0.user.id).await?;
    let flash = match saved.saved.as_deref() {
        Some("presence") => Some(desk.pages.catalog.text(signed.language(), "presence.saved")),
        Some("transfer") => Some(
            desk.pages
                .catalog
                .text(signed.language(), "task.transferred"),
        ),
        _ => None,
    };
    desk.page(
        "work.html",
        &signed,
        context! { tasks => tasks, presence => presence, flash => flash },
    )
}

/// The worklist alone, for the page's script to put in place.
pub async fn list(State(desk): State<Desk>, signed: Signed) -> Result<Html<String>, PageError> {
    let tasks = rows(&desk, &signed).await?;
    desk.page("worklist.html", &signed, context! { tasks => tasks })
}

/// A `worklist` event each time the user's worklist may have changed.
pub async fn live(
    State(desk): State<Desk>,
    signed: Signed,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let user_id = signed.0.user.id;
    let changes = desk.live.subscribe();
    let stream = futures::stream::unfold(changes, move |mut changes| {
        let user_id = user_id.clone();
        async move {
            loop {
                match changes.recv().await {
                    Ok(changed) if changed.concerns(&user_id) => break,
                    Ok(_) => {}
                    // Missed some: the list may have changed.
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return None,
                }
            }
            Some((
                Ok(Event::default().event("worklist").data("changed")),
                changes,
            ))
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The presence form.
#[derive(Debug, Deserialize)]
pub struct PresenceForm {
    #[serde(default)]
    csrf: String,
    presence: String,
}

/// Sets the user's presence in routing.
pub async fn presence(
    State(desk): State<Desk>,
    signed: Signed,
    Form(form): Form<PresenceForm>,
) -> Result<Redirect, PageError> {
    signed.check(&form.csrf)?;
    let language = signed.language();
    let presence = match form.presence.as_str() {
        "available" => Presence::Available,
        "busy" => Presence::Busy,
        "away" => Presence::Away,
        _ => {
            return Err(PageError::BadRequest(
                language,
                "presence: available, busy or away".into(),
            ));
        }
    };
    desk.peers
        .routing
        .clone()
        .set_presence(desk.vouched(
            &signed,
            SetPresenceRequest {
                coordinator_id: signed.0.user.id.clone(),
                presence: presence as i32,
            },
        ))
        .await
        .map_err(|s| PageError::from_status(&s, language))?;
    store::set_presence(&desk.pool, &signed.0.user.id, &form.presence).await?;
    Ok(Redirect::to("/work?saved=presence"))
}

/// The user's open tasks from routing; none for a user who is not on the
/// roster (a compliance officer, say).
pub async fn tasks(desk: &Desk, signed: &Signed) -> Result<Vec<Task>, PageError> {
    let answer = desk
        .peers
        .routing
        .clone()
        .list_worklist(desk.vouched(
            signed,
            ListWorklistRequest {
                coordinator_id: signed.0.user.id.clone(),
                limit: LIST_LIMIT,
            },
        ))
        .await;
    match answer {
        Ok(list) => Ok(list.into_inner().tasks),
        Err(status) if status.code() == Code::NotFound => Ok(Vec::new()),
        Err(status) => Err(PageError::from_status(&status, signed.language())),
    }
}

async fn rows(desk: &Desk, signed: &Signed) -> Result<Vec<Value>, PageError> {
    let now = desk.clock.now();
    let language = signed.language();
    Ok(tasks(desk, signed)
        .await?
        .iter()
        .map(|task| row(task, &desk.pages.catalog, language, now, &signed.0.user.id))
        .collect())
}

/// The key naming a task's kind.
pub fn kind_key(task: &Task) -> &'static str {
    match TaskKind::try_from(task.kind) {
        Ok(TaskKind::Call) => "kind.call",
        Ok(TaskKind::Inbound) => "kind.inbound",
        Ok(TaskKind::Callback) => "kind.callback",
        Ok(TaskKind::AdverseEventReview) => "kind.adverse_event_review",
        Ok(TaskKind::KeywordReview) => "kind.keyword_review",
        _ => "kind.other",
    }
}

/// When the task is due, in words, and whether it is late.
pub fn due(
    task: &Task,
    catalog: &Catalog,
    language: Language,
    now: DateTime<Utc>,
) -> (String, bool) {
    let due_at = instant(task.due_at.as_ref());
    match TaskKind::try_from(task.kind) {
        Ok(TaskKind::Call) => {
            let hour = |local: &str| {
                DateTime::parse_from_rfc3339(local)
                    .map(|t| t.format("%H:%M").to_string())
                    .unwrap_or_default()
            };
            let text = catalog.fill(
                language,
                "work.callable",
                &[
                    ("from", hour(&task.callable_from_local)),
                    ("until", hour(&task.callable_until_local)),
                ],
            );
            if task.workable_now {
                (text, false)
            } else {
                let outside = catalog.text(language, "work.not_callable_now");
                (format!("{text} · {outside}"), false)
            }
        }
        Ok(TaskKind::Callback) => match due_at {
            Some(due) if due >= now => {
                let left = span(due - now, catalog, language);
                (
                    catalog.fill(language, "work.callback_due", &[("left", left)]),
                    false,
                )
            }
            Some(due) => {
                let late = span(now - due, catalog, language);
                (
                    catalog.fill(language, "work.callback_late", &[("left", late)]),
                    true,
                )
            }
            None => (String::new(), false),
        },
        Ok(TaskKind::AdverseEventReview) => match due_at {
            Some(due) if due >= now => {
                let left = span(due - now, catalog, language);
                (
                    catalog.fill(language, "work.ae_due", &[("left", left)]),
                    false,
                )
            }
            Some(_) => (catalog.text(language, "work.ae_late").to_owned(), true),
            None => (String::new(), false),
        },
        _ => (
            due_at.map_or_else(String::new, |at| {
                crate::words::local_time(at, chrono_tz::Tz::UTC)
            }),
            false,
        ),
    }
}

/// A length of time as a person reads it: minutes, hours and minutes, or
/// days and hours.
pub fn span(length: TimeDelta, catalog: &Catalog, language: Language) -> String {
    let minutes = length.num_minutes().max(0);
    let (d, h, m) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    let (key, args) = if minutes < 60 {
        ("span.minutes", vec![("m", m.to_string())])
    } else if minutes < 1440 {
        (
            "span.hours",
            vec![("h", (minutes / 60).to_string()), ("m", m.to_string())],
        )
    } else {
        (
            "span.days",
            vec![("d", d.to_string()), ("h", h.to_string())],
        )
    };
    catalog.fill(language, key, &args)
}

fn row(
    task: &Task,
    catalog: &Catalog,
    language: Language,
    now: DateTime<Utc>,
    user_id: &str,
) -> Value {
    let (due, late) = due(task, catalog, language, now);
    let status = match TaskStatus::try_from(task.status) {
        Ok(TaskStatus::Claimed) => "task_status.claimed",
        _ => "task_status.open",
    };
    let css = if late {
        "late"
    } else if !task.workable_now {
        "waiting"
    } else {
        ""
    };
    context! {
        task_id => &task.task_id,
        case_id => &task.case_id,
        kind => catalog.text(language, kind_key(task)),
        due => due,
        status => catalog.text(language, status),
        css => css,
        mine => task.coordinator_id == user_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use touchpoint_proto::Timestamp;

    #[test]
    fn callbacks_count_down_and_reviews_show_their_24_hour_clock() {
        let catalog = Catalog::load().unwrap_or_else(|e| panic!("{e}"));
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let at = |secs: i64| {
            Some(Timestamp {
                seconds: 1_800_000_000 + secs,
                nanos: 0,
            })
        };
        let callback = Task {
            kind: TaskKind::Callback as i32,
            due_at: at(25 * 60),
            ..Task::default()
        };
        assert_eq!(
            due(&callback, &catalog, Language::En, now),
            ("Call back within 25 min".to_owned(), false)
        );
        let late = Task {
            due_at: at(-10 * 60),
            ..callback
        };
        assert!(due(&late, &catalog, Language::Es, now).1);
        let review = Task {
            kind: TaskKind::AdverseEventReview as i32,
            due_at: at(23 * 3600 + 10 * 60),
            ..Task::default()
        };
        assert_eq!(
            due(&review, &catalog, Language::En, now).0,
            "Report within 23 h 10 min"
        );
        let call = Task {
            kind: TaskKind::Call as i32,
            callable_from_local: "2027-01-05T09:00:00-05:00".into(),
            callable_until_local: "2027-01-05T20:00:00-05:00".into(),
            workable_now: true,
            ..Task::default()
        };
        assert_eq!(
            due(&call, &catalog, Language::En, now).0,
            "Callable 09:00 to 20:00 (patient's time)"
        );
    }
}
