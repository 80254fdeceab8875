//! Pharmacovigilance: the possible adverse events still waiting for a
//! decision (past 24 hours first), the report form for each, its E2B(R3)
//! export, and the month's reconciliation of every flag with its decision and
//! the hours it took.
//!
//! The form and the list are for the pharmacovigilance role; the
//! reconciliation also for supervisors and site leaders, who report it to the
//! manufacturer. Day zero is the flag's first receipt: shown, never typed.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use minijinja::{Value, context};
use serde::Deserialize;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    AdverseEventFlag, AdverseEventReport, AdverseEventReported, AdverseEventSuspected, Case,
    CommandMeta, GetTimelineRequest, ListAdverseEventsRequest, ListAdverseEventsResponse,
    ListProgramsRequest, ReportAdverseEventRequest,
};

use crate::e2b::{self, Icsr};
use crate::mask;
use crate::user::Role;
use crate::views::case::visible_case;
use crate::views::{Desk, PageError, Signed};
use crate::words::{instant, local_time};

/// What a reporter may be, in the form's order.
const QUALIFICATIONS: [&str; 5] = [
    "consumer",
    "physician",
    "pharmacist",
    "other_health_professional",
    "lawyer",
];
/// What makes an event serious, in the form's order.
const SERIOUSNESS: [&str; 6] = [
    "death",
    "life_threatening",
    "hospitalisation",
    "disabling",
    "congenital_anomaly",
    "other_medically_important",
];
/// The window a flag is to be decided in.
const REPORT_WINDOW: TimeDelta = TimeDelta::hours(24);

fn pharmacovigilance(signed: &Signed) -> Result<(), PageError> {
    if signed.0.user.is(Role::Pharmacovigilance) {
        Ok(())
    } else {
        Err(PageError::Forbidden(signed.language()))
    }
}

async fn flags(
    desk: &Desk,
    signed: &Signed,
    request: ListAdverseEventsRequest,
) -> Result<ListAdverseEventsResponse, PageError> {
    Ok(desk
        .peers
        .cases
        .clone()
        .list_adverse_events(desk.vouched(signed, request))
        .await
        .map_err(|s| PageError::from_status(&s, signed.language()))?
        .into_inner())
}

/// Hours from day zero to `until`, one decimal.
fn hours(flag: &AdverseEventFlag, until: DateTime<Utc>) -> Option<f64> {
    let received = instant(flag.received_at.as_ref())?;
    Some(((until - received).num_minutes().max(0) as f64 / 6.0).round() / 10.0)
}

/// `/safety?saved=<decision>`: the form that sent the user here.
#[derive(Debug, Deserialize)]
pub struct Saved {
    saved: Option<String>,
}

/// The flags waiting for a decision: past due first, then by due time.
pub async fn page(
    State(desk): State<Desk>,
    signed: Signed,
    Query(saved): Query<Saved>,
) -> Result<Html<String>, PageError> {
    pharmacovigilance(&signed)?;
    let language = signed.language();
    let answer = flags(
        &desk,
        &signed,
        ListAdverseEventsRequest {
            open_only: true,
            ..ListAdverseEventsRequest::default()
        },
    )
    .await?;
    let zone: Tz = answer.time_zone.parse().unwrap_or(Tz::UTC);
    let now = desk.clock.now();
    let catalog = &desk.pages.catalog;
    let row = |flag: &AdverseEventFlag| {
        let due = instant(flag.due_at.as_ref());
        context! {
            case_id => &flag.case_id,
            key => &flag.review_task_id,
            program => &flag.program_id,
            received => instant(flag.received_at.as_ref()).map(|t| local_time(t, zone)),
            due => due.map(|t| local_time(t, zone)),
            hours => hours(flag, now).map(|h| format!("{h:.1}")),
        }
    };
    let (overdue, due): (Vec<&AdverseEventFlag>, Vec<&AdverseEventFlag>) = answer
        .flags
        .iter()
        .partition(|f| instant(f.due_at.as_ref()).is_some_and(|d| d < now));
    let flash = match saved.saved.as_deref() {
        Some("reported") => Some(catalog.text(language, "safety.saved_reported")),
        Some("not_adverse_event") => Some(catalog.text(language, "safety.saved_not_ae")),
        _ => None,
    };
    desk.page(
        "safety.html",
        &signed,
        context! {
            overdue => overdue.into_iter().map(row).collect::<Vec<_>>(),
            due => due.into_iter().map(row).collect::<Vec<_>>(),
            flash => flash,
            time_zone => zone.name(),
            month => month_of(now, zone),
        },
    )
}

/// The flag `key` of a case and its decision, if one was made, from the
/// case's timeline.
async fn flag_of(
    desk: &Desk,
    signed: &Signed,
    case: &Case,
    key: &str,
) -> Result<
    (
        AdverseEventSuspected,
        Option<(AdverseEventReported, DateTime<Utc>)>,
    ),
    PageError,
> {
    let entries = desk
        .peers
        .cases
        .clone()
        .get_timeline(desk.vouched(
            signed,
            GetTimelineRequest {
                case_id: case.case_id.clone(),
                kinds: vec![
                    "AdverseEventSuspected".into(),
                    "AdverseEventReported".into(),
                ],
                page_size: 1000,
                page_token: String::new(),
            },
        ))
        .await
        .map_err(|s| PageError::from_status(&s, signed.language()))?
        .into_inner()
        .entries;
    let mut flag = None;
    let mut decided = None;
    for entry in entries {
        let Some(event) = entry.event else { continue };
        let at = instant(event.occurred_at.as_ref());
        match event.payload {
            Some(Payload::AdverseEventSuspected(raised)) if raised.flag_key() == key => {
                flag = Some(raised);
            }
            Some(Payload::AdverseEventReported(d)) if d.flag_key() == key => {
                decided = at.map(|at| (d, at));
            }
            _ => {}
        }
    }
    Ok((flag.ok_or(PageError::NotFound)?, decided))
}

/// The name of the case's program, as the suspect product's first guess.
async fn program_name(desk: &Desk, signed: &Signed, program_id: &str) -> String {
    desk.peers
        .cadence
        .clone()
        .list_programs(desk.vouched(signed, ListProgramsRequest {}))
        .await
        .ok()
        .and_then(|r| {
            r.into_inner()
                .programs
                .into_iter()
                .find(|p| p.program_id == program_id)
                .map(|p| p.name)
        })
        .unwrap_or_default()
}

/// The report form of one flag, or its decision once made.
pub async fn form(
    State(desk): State<Desk>,
    signed: Signed,
    Path((case_id, key)): Path<(String, String)>,
) -> Result<Html<String>, PageError> {
    pharmacovigilance(&signed)?;
    let case = visible_case(&desk, &signed, &case_id).await?;
    let (flag, decided) = flag_of(&desk, &signed, &case, &key).await?;
    let site: Tz = flags(
        &desk,
        &signed,
        ListAdverseEventsRequest {
            open_only: true,
            program_ids: vec![case.program_id.clone()],
            ..ListAdverseEventsRequest::default()
        },
    )
    .await?
    .time_zone
    .parse()
    .unwrap_or(Tz::UTC);
    let received = instant(flag.received_at.as_ref());
    let language = signed.language();
    let catalog = &desk.pages.catalog;
    let decided = decided.map(|(d, at)| {
        context! {
            reported => d.decision == "reported",
            by => d.decided_by,
            at => local_time(at, site),
            reference => d.safety_reference,
            reason => d.reason,
        }
    });
    let options = |keys: &[&str], prefix: &str| -> Vec<Value> {
        keys.iter()
            .map(|k| context! { value => k, label => catalog.text(language, &format!("{prefix}.{k}")) })
            .collect()
    };
    desk.page(
        "safety_report.html",
        &signed,
        context! {
            case_id => &case.case_id,
            key => &key,
            program => &case.program_id,
            received => received.map(|t| local_time(t, site)),
            received_utc => received.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()),
            due => received.map(|t| local_time(t + REPORT_WINDOW, site)),
            initials => mask::initials(case.patient.as_ref()),
            product => program_name(&desk, &signed, &case.program_id).await,
            qualifications => options(&QUALIFICATIONS, "ae_qualification"),
            criteria => options(&SERIOUSNESS, "ae_criterion"),
            decided => decided,
        },
    )
}

/// The report form as sent.
#[derive(Debug, Default, Deserialize)]
pub struct ReportForm {
    #[serde(default)]
    csrf: String,
    /// `report` or `not_adverse_event`.
    #[serde(default)]
    decision: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    patient_initials: String,
    #[serde(default)]
    patient_sex: String,
    #[serde(default)]
    patient_age: String,
    #[serde(default)]
    patient_birth_date: String,
    #[serde(default)]
    reporter_name: String,
    #[serde(default)]
    reporter_qualification: String,
    #[serde(default)]
    suspect_product: String,
    #[serde(default)]
    event_description: String,
    #[serde(default)]
    event_onset_date: String,
    #[serde(default)]
    serious: String,
    #[serde(default)]
    death: Option<String>,
    #[serde(default)]
    life_threatening: Option<String>,
    #[serde(default)]
    hospitalisation: Option<String>,
    #[serde(default)]
    disabling: Option<String>,
    #[serde(default)]
    congenital_anomaly: Option<String>,
    #[serde(default)]
    other_medically_important: Option<String>,
    #[serde(default)]
    safety_reference: String,
}

impl ReportForm {
    /// The request the form asks for; the cases service checks the rest.
    fn request(
        &self,
        case_id: &str,
        key: &str,
        signed: &Signed,
    ) -> Result<ReportAdverseEventRequest, PageError> {
        let bad = |what: &str| PageError::BadRequest(signed.language(), what.to_owned());
        let meta = Some(CommandMeta {
            // One decision per flag: a second press of the button is the same
            // request.
            request_id: format!("adverse-event:{key}"),
            ..CommandMeta::default()
        });
        let base = ReportAdverseEventRequest {
            meta,
            case_id: case_id.to_owned(),
            review_task_id: key.to_owned(),
            ..ReportAdverseEventRequest::default()
        };
        match self.decision.as_str() {
            "not_adverse_event" => Ok(ReportAdverseEventRequest {
                not_adverse_event: true,
                reason: self.reason.clone(),
                ..base
            }),
            "report" => {
                let age = match self.patient_age.trim() {
                    "" => 0,
                    raw => raw
                        .parse::<u32>()
                        .map_err(|_| bad("report.patient_age_years: a whole number of years"))?,
                };
                let ticked = [
                    ("death", &self.death),
                    ("life_threatening", &self.life_threatening),
                    ("hospitalisation", &self.hospitalisation),
                    ("disabling", &self.disabling),
                    ("congenital_anomaly", &self.congenital_anomaly),
                    ("other_medically_important", &self.other_medically_important),
                ];
                Ok(ReportAdverseEventRequest {
                    report: Some(AdverseEventReport {
                        patient_initials: self.patient_initials.clone(),
                        patient_sex: self.patient_sex.clone(),
                        patient_age_years: age,
                        patient_birth_date: self.patient_birth_date.clone(),
                        reporter_name: self.reporter_name.clone(),
                        reporter_qualification: self.reporter_qualification.clone(),
                        suspect_product: self.suspect_product.clone(),
                        event_description: self.event_description.clone(),
                        event_onset_date: self.event_onset_date.clone(),
                        serious: self.serious == "yes",
                        seriousness_criteria: ticked
                            .iter()
                            .filter(|(_, on)| on.is_some())
                            .map(|(name, _)| (*name).to_owned())
                            .collect(),
                    }),
                    safety_reference: self.safety_reference.clone(),
                    ..base
                })
            }
            _ => Err(bad("decision: report or not_adverse_event")),
        }
    }
}

/// Records the decision on the flag: the cases service checks the four
/// criteria and takes day zero from the flag itself.
pub async fn submit(
    State(desk): State<Desk>,
    signed: Signed,
    Path((case_id, key)): Path<(String, String)>,
    Form(form): Form<ReportForm>,
) -> Result<Redirect, PageError> {
    signed.check(&form.csrf)?;
    pharmacovigilance(&signed)?;
    let case = visible_case(&desk, &signed, &case_id).await?;
    let request = form.request(&case.case_id, &key, &signed)?;
    let saved = if request.not_adverse_event {
        "not_adverse_event"
    } else {
        "reported"
    };
    desk.peers
        .cases
        .clone()
        .report_adverse_event(desk.vouched(&signed, request))
        .await
        .map_err(|s| PageError::from_status(&s, signed.language()))?;
    tracing::info!(user = %signed.0.user.id, case_id = %case.case_id, decision = saved, "adverse-event decision recorded");
    Ok(Redirect::to(&format!("/safety?saved={saved}")))
}

/// The report as an E2B(R3)-shaped XML document.
pub async fn export(
    State(desk): State<Desk>,
    signed: Signed,
    Path((case_id, key)): Path<(String, String)>,
) -> Result<Response, PageError> {
    pharmacovigilance(&signed)?;
    let case = visible_case(&desk, &signed, &case_id).await?;
    let (_, decided) = flag_of(&desk, &signed, &case, &key).await?;
    let (decided, at) = decided.ok_or(PageError::NotFound)?;
    let message_id = uuid::Uuid::now_v7().to_string();
    let xml = e2b::document(&Icsr {
        case_id: &case.case_id,
        program_id: &case.program_id,
        decided: &decided,
        decided_at: at,
        message_id: &message_id,
        now: chrono::Utc::now(),
    })
    .ok_or(PageError::NotFound)?;
    tracing::info!(user = %signed.0.user.id, case_id = %case.case_id, "adverse-event report exported");
    let disposition = format!("attachment; filename=\"icsr-{}.xml\"", case.case_id);
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "application/xml; charset=utf-8".to_owned(),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        xml,
    )
        .into_response())
}

/// `?month=YYYY-MM` (this month when absent).
#[derive(Debug, Default, Deserialize)]
pub struct Month {
    #[serde(default)]
    month: String,
}

/// The month `at` falls in, in `zone`, as `YYYY-MM`.
fn month_of(at: DateTime<Utc>, zone: Tz) -> String {
    at.with_timezone(&zone).format("%Y-%m").to_string()
}

/// The first and last day of `raw` (`YYYY-MM`).
fn month_days(raw: &str) -> Option<(NaiveDate, NaiveDate)> {
    let first = NaiveDate::parse_from_str(&format!("{}-01", raw.trim()), "%Y-%m-%d").ok()?;
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)?
    };
    Some((first, next.pred_opt()?))
}

/// One reconciled flag: its decision and the hours it took (or has waited).
struct Reconciled<'a> {
    flag: &'a AdverseEventFlag,
    hours: Option<f64>,
    in_time: bool,
}

fn reconcile(flags: &[AdverseEventFlag], now: DateTime<Utc>) -> Vec<Reconciled<'_>> {
    flags
        .iter()
        .map(|flag| {
            let until = instant(flag.decided_at.as_ref()).unwrap_or(now);
            let hours = hours(flag, until);
            let decided = !flag.decision.is_empty();
            Reconciled {
                flag,
                hours,
                in_time: decided && hours.is_some_and(|h| h <= 24.0),
            }
        })
        .collect()
}

async fn month_flags(
    desk: &Desk,
    signed: &Signed,
    month: &Month,
) -> Result<(String, ListAdverseEventsResponse), PageError> {
    if !(signed.0.user.is(Role::Pharmacovigilance) || signed.0.user.leads()) {
        return Err(PageError::Forbidden(signed.language()));
    }
    let month = if month.month.trim().is_empty() {
        month_of(desk.clock.now(), Tz::UTC)
    } else {
        month.month.trim().to_owned()
    };
    let (first, last) = month_days(&month)
        .ok_or_else(|| PageError::BadRequest(signed.language(), "month: YYYY-MM".into()))?;
    let answer = flags(
        desk,
        signed,
        ListAdverseEventsRequest {
            from_day: first.to_string(),
            to_day: last.to_string(),
            ..ListAdverseEventsRequest::default()
        },
    )
    .await?;
    Ok((month, answer))
}

/// The month's reconciliation.
pub async fn reconciliation(
    State(desk): State<Desk>,
    signed: Signed,
    Query(month): Query<Month>,
) -> Result<Html<String>, PageError> {
    let (month, answer) = month_flags(&desk, &signed, &month).await?;
    let zone: Tz = answer.time_zone.parse().unwrap_or(Tz::UTC);
    let language = signed.language();
    let catalog = &desk.pages.catalog;
    let rows = reconcile(&answer.flags, desk.clock.now());
    let in_time = rows.iter().filter(|r| r.in_time).count();
    let open = rows.iter().filter(|r| r.flag.decision.is_empty()).count();
    let pv = signed.0.user.is(Role::Pharmacovigilance);
    let shown: Vec<Value> = rows
        .iter()
        .map(|r| {
            let f = r.flag;
            let decision = if f.decision.is_empty() {
                "open"
            } else {
                f.decision.as_str()
            };
            context! {
                case_id => &f.case_id,
                key => &f.review_task_id,
                program => &f.program_id,
                received => instant(f.received_at.as_ref()).map(|t| local_time(t, zone)),
                decision => catalog.text(language, &format!("ae_decision.{decision}")),
                decided_at => instant(f.decided_at.as_ref()).map(|t| local_time(t, zone)),
                by => &f.decided_by,
                reference => &f.safety_reference,
                hours => r.hours.map(|h| format!("{h:.1}")),
                in_time => r.in_time,
                exportable => pv && f.decision == "reported",
            }
        })
        .collect();
    desk.page(
        "reconciliation.html",
        &signed,
        context! {
            month => month,
            time_zone => zone.name(),
            rows => shown,
            total => rows.len(),
            in_time => in_time,
            open => open,
        },
    )
}

/// The month's reconciliation as CSV.
pub async fn reconciliation_csv(
    State(desk): State<Desk>,
    signed: Signed,
    Query(month): Query<Month>,
) -> Result<Response, PageError> {
    let (month, answer) = month_flags(&desk, &signed, &month).await?;
    let mut out = String::from(
        "case_id,program,received_utc,decision,decided_utc,decided_by,safety_reference,hours,within_24h\r\n",
    );
    let utc = |ts: Option<&touchpoint_proto::Timestamp>| {
        instant(ts).map_or_else(String::new, |t| t.to_rfc3339())
    };
    for r in reconcile(&answer.flags, desk.clock.now()) {
        let f = r.flag;
        let cells = [
            f.case_id.clone(),
            f.program_id.clone(),
            utc(f.received_at.as_ref()),
            if f.decision.is_empty() {
                "open".into()
            } else {
                f.decision.clone()
            },
            utc(f.decided_at.as_ref()),
            f.decided_by.clone(),
            f.safety_reference.clone(),
            r.hours.map_or_else(String::new, |h| format!("{h:.1}")),
            r.in_time.to_string(),
        ];
        let cells: Vec<String> = cells
            .iter()
            .map(|c| crate::views::operations::csv_cell(c))
            .collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    let disposition = format!("attachment; filename=\"touchpoint-ae-reconciliation-{month}.csv\"");
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        out,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use touchpoint_proto::Timestamp;

    use super::*;

    fn at(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos: 0 })
    }

    #[test]
    fn a_month_runs_from_its_first_day_to_its_last() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default();
        assert_eq!(
            month_days("2026-02"),
            Some((day(2026, 2, 1), day(2026, 2, 28)))
        );
        assert_eq!(
            month_days("2026-12"),
            Some((day(2026, 12, 1), day(2026, 12, 31)))
        );
        assert_eq!(month_days("2026-13"), None);
        assert_eq!(month_days("December"), None);
    }

    #[test]
    fn a_flag_is_in_time_when_decided_within_24_hours_and_an_open_one_never_is() {
        let flags = vec![
            AdverseEventFlag {
                received_at: at(0),
                decided_at: at(5 * 3600 + 30 * 60),
                decision: "reported".into(),
                ..AdverseEventFlag::default()
            },
            AdverseEventFlag {
                received_at: at(0),
                decided_at: at(30 * 3600),
                decision: "not_adverse_event".into(),
                ..AdverseEventFlag::default()
            },
            AdverseEventFlag {
                received_at: at(0),
                ..AdverseEventFlag::default()
            },
        ];
        let now = DateTime::from_timestamp(2 * 3600, 0).unwrap_or_default();
        let rows = reconcile(&flags, now);
        let seen: Vec<(Option<f64>, bool)> = rows.iter().map(|r| (r.hours, r.in_time)).collect();
        assert_eq!(
            seen,
            vec![(Some(5.5), true), (Some(30.0), false), (Some(2.0), false)]
        );
    }
}
