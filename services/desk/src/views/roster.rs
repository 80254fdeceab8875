//! The roster, for supervisors: the coordinators and navigators of their
//! programs with their languages, skills, capacity and shifts (in each
//! person's time zone), and a form that changes them in routing at once.
//! Routing records who made each change (the vouched supervisor) and refuses
//! a change to someone outside the supervisor's programs.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{Html, Redirect};
use minijinja::{Value, context};
use serde::Deserialize;
use touchpoint_proto::v1::{
    Coordinator, Language, ListCoordinatorsRequest, Shift, UpsertCoordinatorRequest,
};

use crate::user::Language as DeskLanguage;
use crate::views::{Desk, PageError, Saved, Signed};

/// The weekdays as routing numbers them, Monday first.
const WEEKDAYS: [u32; 7] = [1, 2, 3, 4, 5, 6, 7];

/// The people of the user's programs (of `program` alone when given), and how
/// many tasks wait unassigned in those programs' queues.
pub async fn people(
    desk: &Desk,
    signed: &Signed,
    program: Option<&str>,
) -> Result<(Vec<Coordinator>, u32), PageError> {
    let answer = desk
        .peers
        .routing
        .clone()
        .list_coordinators(desk.vouched(
            signed,
            ListCoordinatorsRequest {
                program_id: program.unwrap_or_default().to_owned(),
            },
        ))
        .await
        .map_err(|status| PageError::from_status(&status, signed.language()))?
        .into_inner();
    let allowed = &signed.0.user.programs;
    let people = answer
        .coordinators
        .into_iter()
        .filter(|c| allowed.is_empty() || c.program_ids.iter().any(|p| allowed.contains(p)))
        .collect();
    Ok((people, answer.queued))
}

async fn team(desk: &Desk, signed: &Signed) -> Result<Vec<Coordinator>, PageError> {
    Ok(people(desk, signed, None).await?.0)
}

fn shifts_of(c: &Coordinator) -> Vec<Value> {
    WEEKDAYS
        .iter()
        .map(|day| {
            let shift = c.shifts.iter().find(|s| s.weekday == *day);
            context! {
                day => day,
                start => shift.map(|s| s.start.clone()).unwrap_or_default(),
                end => shift.map(|s| s.end.clone()).unwrap_or_default(),
            }
        })
        .collect()
}

/// The roster page.
pub async fn page(
    State(desk): State<Desk>,
    signed: Signed,
    Query(saved): Query<Saved>,
) -> Result<Html<String>, PageError> {
    if !signed.0.user.leads() {
        return Err(PageError::Forbidden(signed.language()));
    }
    let people: Vec<Value> = team(&desk, &signed)
        .await?
        .iter()
        .map(|c| {
            context! {
                id => &c.coordinator_id,
                time_zone => &c.time_zone,
                programs => c.program_ids.join(", "),
                languages => languages_of(c).join(", "),
                skills => c.skills.join(", "),
                capacity => c.capacity,
                shifts => shifts_of(c),
                updated_by => &c.updated_by,
            }
        })
        .collect();
    let flash = (saved.saved.as_deref() == Some("roster"))
        .then(|| desk.pages.catalog.text(signed.language(), "roster.saved"));
    desk.page(
        "roster.html",
        &signed,
        context! { people => people, flash => flash },
    )
}

fn languages_of(c: &Coordinator) -> Vec<&'static str> {
    c.languages
        .iter()
        .filter_map(|l| match Language::try_from(*l) {
            Ok(Language::En) => Some("en"),
            Ok(Language::Es) => Some("es"),
            _ => None,
        })
        .collect()
}

/// The form for one person.
pub async fn edit(
    State(desk): State<Desk>,
    signed: Signed,
    Path(id): Path<String>,
) -> Result<Html<String>, PageError> {
    if !signed.0.user.leads() {
        return Err(PageError::Forbidden(signed.language()));
    }
    let person = team(&desk, &signed)
        .await?
        .into_iter()
        .find(|c| c.coordinator_id == id)
        .ok_or(PageError::NotFound)?;
    let languages = languages_of(&person);
    desk.page(
        "roster_member.html",
        &signed,
        context! {
            id => &person.coordinator_id,
            time_zone => &person.time_zone,
            skills => person.skills.join(", "),
            capacity => person.capacity,
            dial_to => &person.dial_to,
            speaks_en => languages.contains(&"en"),
            speaks_es => languages.contains(&"es"),
            shifts => shifts_of(&person),
        },
    )
}

/// The form's fields: one start and end per weekday (`start_1` … `end_7`,
/// empty for no shift).
#[derive(Debug, Deserialize)]
pub struct MemberForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    time_zone: String,
    #[serde(default)]
    capacity: String,
    #[serde(default)]
    skills: String,
    #[serde(default)]
    en: Option<String>,
    #[serde(default)]
    es: Option<String>,
    /// Where their calls ring; absent: as before.
    #[serde(default)]
    dial_to: Option<String>,
    #[serde(flatten)]
    times: std::collections::HashMap<String, String>,
}

/// The shifts a form holds: a weekday with both times; one with only one of
/// them is refused, by field.
fn shifts_from(form: &MemberForm) -> Result<Vec<Shift>, String> {
    let mut shifts = Vec::new();
    for day in WEEKDAYS {
        let time = |which: &str| {
            form.times
                .get(&format!("{which}_{day}"))
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
        };
        match (time("start"), time("end")) {
            (None, None) => {}
            (Some(start), Some(end)) => shifts.push(Shift {
                weekday: day,
                start,
                end,
            }),
            _ => {
                return Err(format!(
                    "start_{day}: give both times of the shift, or neither"
                ));
            }
        }
    }
    Ok(shifts)
}

/// Saves the form in routing, as the signed-in supervisor.
pub async fn save(
    State(desk): State<Desk>,
    signed: Signed,
    Path(id): Path<String>,
    Form(form): Form<MemberForm>,
) -> Result<Redirect, PageError> {
    signed.check(&form.csrf)?;
    let language: DeskLanguage = signed.language();
    if !signed.0.user.leads() {
        return Err(PageError::Forbidden(language));
    }
    let bad = |reason: String| PageError::BadRequest(language, reason);
    let mut person = team(&desk, &signed)
        .await?
        .into_iter()
        .find(|c| c.coordinator_id == id)
        .ok_or(PageError::NotFound)?;
    person.shifts = shifts_from(&form).map_err(bad)?;
    person.capacity = form
        .capacity
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|c| (1..=500).contains(c))
        .ok_or_else(|| bad("capacity: a number from 1 to 500".into()))?;
    person.time_zone = form.time_zone.trim().to_owned();
    if let Some(dial_to) = &form.dial_to {
        // Routing checks it: a client, a sip: address or a number.
        person.dial_to = dial_to.trim().to_owned();
    }
    person.skills = form
        .skills
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    person.languages = [
        (form.en.is_some(), Language::En),
        (form.es.is_some(), Language::Es),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, l)| l as i32)
    .collect();
    if person.languages.is_empty() {
        return Err(bad("languages: at least one".into()));
    }
    // Presence is the person's own to set: left as it is.
    person.presence = 0;
    desk.peers
        .routing
        .clone()
        .upsert_coordinator(desk.vouched(
            &signed,
            UpsertCoordinatorRequest {
                coordinator: Some(person),
            },
        ))
        .await
        .map_err(|status| PageError::from_status(&status, language))?;
    Ok(Redirect::to("/roster?saved=roster"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(times: &[(&str, &str)]) -> MemberForm {
        MemberForm {
            csrf: String::new(),
            time_zone: "America/Chicago".into(),
            capacity: "10".into(),
            skills: String::new(),
            en: Some("on".into()),
            es: None,
            dial_to: None,
            times: times
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn a_weekday_with_both_times_is_a_shift_and_one_with_one_time_is_refused() {
        let shifts = shifts_from(&form(&[
            ("start_1", "09:00"),
            ("end_1", "17:00"),
            ("start_2", ""),
            ("end_2", ""),
        ]));
        assert_eq!(
            shifts.map(|s| s.iter().map(|s| s.weekday).collect::<Vec<_>>()),
            Ok(vec![1])
        );
        assert_eq!(
            shifts_from(&form(&[("start_3", "09:00")])),
            Err("start_3: give both times of the shift, or neither".into())
        );
    }
}
