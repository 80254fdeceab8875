//! Finding a case, and the access log compliance reads.
//!
//! A search is a POST: a phone number or address typed into it must not end
//! up in a URL, a browser's history or a proxy's log. It finds only cases of
//! the user's programs.

use axum::Form;
use axum::extract::State;
use axum::response::Html;
use minijinja::{Value, context};
use serde::Deserialize;
use tonic::Code;
use touchpoint_proto::v1::FindCasesByContactRequest;

use crate::mask;
use crate::store;
use crate::user::Role;
use crate::views::case::visible_case;
use crate::views::{Desk, PageError, Signed};
use crate::words::local_time;

/// Cases a search shows at most.
const RESULTS: usize = 50;

/// The search page.
pub async fn search_page(
    State(desk): State<Desk>,
    signed: Signed,
) -> Result<Html<String>, PageError> {
    desk.page("search.html", &signed, context! { searched => false })
}

/// The search form.
#[derive(Debug, Deserialize)]
pub struct SearchForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    q: String,
}

/// Cases matching a case id, phone number or email address that the user may see.
pub async fn search(
    State(desk): State<Desk>,
    signed: Signed,
    Form(form): Form<SearchForm>,
) -> Result<Html<String>, PageError> {
    signed.check(&form.csrf)?;
    let q = form.q.trim();
    let language = signed.language();
    let mut ids = Vec::new();
    if !q.is_empty() && q.len() <= 200 {
        if !q.contains('@') && !q.starts_with('+') {
            ids.push(q.to_owned());
        }
        let found = desk
            .peers
            .cases
            .clone()
            .find_cases_by_contact(desk.vouched(
                &signed,
                FindCasesByContactRequest {
                    contact: q.to_owned(),
                },
            ))
            .await;
        match found {
            Ok(found) => ids.extend(found.into_inner().case_ids),
            // Not a number or address: it was a case id, or nothing.
            Err(status) if matches!(status.code(), Code::InvalidArgument | Code::NotFound) => {}
            Err(status) => return Err(PageError::from_status(&status, language)),
        }
    }
    ids.dedup();
    let mut results: Vec<Value> = Vec::new();
    for id in ids.iter().take(RESULTS) {
        match visible_case(&desk, &signed, id).await {
            Ok(case) => results.push(context! {
                case_id => &case.case_id,
                program => &case.program_id,
                initials => mask::initials(case.patient.as_ref()),
            }),
            Err(PageError::NotFound | PageError::BadRequest(..)) => {}
            Err(other) => return Err(other),
        }
    }
    desk.page(
        "search.html",
        &signed,
        context! { searched => true, results => results },
    )
}

/// The access log, for compliance.
pub async fn log(State(desk): State<Desk>, signed: Signed) -> Result<Html<String>, PageError> {
    let language = signed.language();
    if !signed.0.user.is(Role::Compliance) {
        return Err(PageError::Forbidden(language));
    }
    let catalog = &desk.pages.catalog;
    let entries: Vec<Value> = store::access_log(&desk.pool, None, 500)
        .await?
        .iter()
        .map(|entry| {
            let what = if entry.what == "reveal" {
                "access.reveal"
            } else {
                "access.case_page"
            };
            context! {
                at => local_time(entry.at, chrono_tz::Tz::UTC),
                user_id => &entry.user_id,
                case_id => &entry.case_id,
                what => catalog.text(language, what),
            }
        })
        .collect();
    desk.page("access_log.html", &signed, context! { entries => entries })
}
