//! The operations page, for supervisors and site leaders: each program's
//! figures today against its targets, each figure as a line over the days
//! chosen (drawn here as SVG), the SLA alerts, the queue and who is available
//! now; and any of its tables as CSV.
//!
//! Everything comes from the KPI projection (`GetKpis`), the programs
//! (`ListPrograms`) and the roster (`ListCoordinators`), asked as the signed-in
//! user: they see only their programs. Nothing on it is patient data.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::NaiveDate;
use minijinja::{Value, context};
use serde::Deserialize;
use touchpoint_proto::v1::{
    GetKpisRequest, GetKpisResponse, ListProgramVersionsRequest, ListProgramsRequest,
    MigrateEnrolmentsRequest, MigrateEnrolmentsResponse, Presence, ProgramTargets,
};

use crate::chart::{self, Chart};
use crate::ops::{self, Kpi};
use crate::views::{Desk, PageError, Saved, Signed, roster};

/// The ranges a supervisor may choose, in days.
const RANGES: [i64; 4] = [7, 30, 90, 365];
/// Team members on shift the page lists at most.
const TEAM_SHOWN: usize = 100;
/// The channels a supervisor may narrow to.
const CHANNELS: [&str; 4] = ["sms", "email", "voice", "fax"];

/// What the page shows: a program (all of the user's when none), a channel
/// (every one when none) and how many days up to today.
#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    #[serde(default)]
    program: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    days: Option<i64>,
    /// For the CSV: `daily` (the default) or `programs`.
    #[serde(default)]
    table: String,
}

/// The filter checked: unknown values are refused, not guessed.
struct Chosen {
    program: Option<String>,
    channel: Option<&'static str>,
    days: i64,
}

impl Filter {
    fn check(&self, programs: &[String], signed: &Signed) -> Result<Chosen, PageError> {
        let bad = |what: &str| PageError::BadRequest(signed.language(), what.to_owned());
        let program = match self.program.trim() {
            "" => None,
            p if programs.iter().any(|known| known == p) => Some(p.to_owned()),
            _ => return Err(bad("program: not one of yours")),
        };
        let channel = match self.channel.trim() {
            "" => None,
            c => Some(
                *CHANNELS
                    .iter()
                    .find(|known| **known == c)
                    .ok_or_else(|| bad("channel: sms, email, voice or fax"))?,
            ),
        };
        let days = self.days.unwrap_or(30);
        if !RANGES.contains(&days) {
            return Err(bad("days: 7, 30, 90 or 365"));
        }
        Ok(Chosen {
            program,
            channel,
            days,
        })
    }
}

/// The programs the user may see, with their targets.
async fn programs(
    desk: &Desk,
    signed: &Signed,
) -> Result<BTreeMap<String, (String, ProgramTargets)>, PageError> {
    let listed = desk
        .peers
        .cadence
        .clone()
        .list_programs(desk.vouched(signed, ListProgramsRequest {}))
        .await
        .map_err(|status| PageError::from_status(&status, signed.language()))?
        .into_inner()
        .programs;
    let allowed = &signed.0.user.programs;
    Ok(listed
        .into_iter()
        .filter(|p| allowed.is_empty() || allowed.contains(&p.program_id))
        .map(|p| (p.program_id, (p.name, p.targets.unwrap_or_default())))
        .collect())
}

async fn kpis(
    desk: &Desk,
    signed: &Signed,
    request: GetKpisRequest,
) -> Result<GetKpisResponse, PageError> {
    Ok(desk
        .peers
        .cases
        .clone()
        .get_kpis(desk.vouched(signed, request))
        .await
        .map_err(|status| PageError::from_status(&status, signed.language()))?
        .into_inner())
}

/// Today in the site's zone, as the projection counts days.
fn today(answer: &GetKpisResponse) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(&answer.to_day, "%Y-%m-%d").ok()
}

/// What the page and the CSV share: the range's figures by day (summed over
/// the programs chosen) and today's by program.
struct Figures {
    from: NaiveDate,
    to: NaiveDate,
    daily: Vec<(NaiveDate, ops::Sums)>,
    today: BTreeMap<String, ops::Sums>,
    now: GetKpisResponse,
}

async fn figures(desk: &Desk, signed: &Signed, chosen: &Chosen) -> Result<Figures, PageError> {
    let programs: Vec<String> = chosen.program.iter().cloned().collect();
    let channels: Vec<String> = chosen.channel.iter().map(|c| (*c).to_owned()).collect();
    let names: Vec<String> = Kpi::ALL
        .iter()
        .flat_map(|k| k.figures())
        .map(|f| (*f).to_owned())
        .collect();
    let ask = |days: u32, sum_programs: bool| GetKpisRequest {
        program_ids: programs.clone(),
        channels: channels.clone(),
        figures: names.clone(),
        sum_channels: true,
        sum_programs,
        days,
        ..GetKpisRequest::default()
    };
    // Both at once, each counting its days back from the site's today:
    // today by program (with the backlog and the open work as they are now),
    // and the range summed in the database over the programs and channels.
    let days = u32::try_from(chosen.days).unwrap_or(30);
    let (now, range) = tokio::try_join!(
        kpis(desk, signed, ask(1, false)),
        kpis(desk, signed, ask(days, true)),
    )?;
    let to = today(&range).ok_or(PageError::Unavailable)?;
    let from = NaiveDate::parse_from_str(&range.from_day, "%Y-%m-%d")
        .map_err(|_| PageError::Unavailable)?;
    Ok(Figures {
        from,
        to,
        daily: ops::by_day(&range.figures, from, to, None),
        today: ops::by_program(&now.figures, None),
        now,
    })
}

/// What the CSV starts from, for a supervisor or site leader: their programs
/// with targets, the filter checked, the figures.
async fn prepare(
    desk: &Desk,
    signed: &Signed,
    filter: &Filter,
) -> Result<(BTreeMap<String, (String, ProgramTargets)>, Chosen, Figures), PageError> {
    if !signed.0.user.leads() {
        return Err(PageError::Forbidden(signed.language()));
    }
    let programs = programs(desk, signed).await?;
    let ids: Vec<String> = programs.keys().cloned().collect();
    let chosen = filter.check(&ids, signed)?;
    let figures = figures(desk, signed, &chosen).await?;
    Ok((programs, chosen, figures))
}

/// The operations page.
pub async fn page(
    State(desk): State<Desk>,
    signed: Signed,
    Query(filter): Query<Filter>,
    Query(saved): Query<Saved>,
) -> Result<Html<String>, PageError> {
    let language = signed.language();
    if !signed.0.user.leads() {
        return Err(PageError::Forbidden(language));
    }
    let programs = programs(&desk, &signed).await?;
    let ids: Vec<String> = programs.keys().cloned().collect();
    let chosen = filter.check(&ids, &signed)?;
    let (figures, (team, queued), versions) = tokio::try_join!(
        figures(&desk, &signed, &chosen),
        team(&desk, &signed, chosen.program.as_deref()),
        versions(&desk, &signed, chosen.program.as_deref()),
    )?;
    let catalog = &desk.pages.catalog;
    let targets_of = |program: &str| programs.get(program).map(|(_, t)| t);
    // The chosen program's targets are drawn on its lines.
    let drawn_targets = chosen.program.as_deref().and_then(targets_of);

    let charts: Vec<Value> = Kpi::ALL
        .iter()
        .map(|kpi| {
            let points: Vec<(String, Option<f64>)> = figures
                .daily
                .iter()
                .map(|(day, sums)| (day.to_string(), kpi.of(sums)))
                .collect();
            let key = format!("ops.{}", kpi.name());
            let title = catalog.text(language, &key);
            let id = format!("chart-{}", kpi.name().replace('_', "-"));
            let svg = chart::svg(&Chart {
                title,
                id: &id,
                points: &points,
                target: kpi.target(drawn_targets),
                unit: kpi.unit(),
            });
            context! { title => title, svg => Value::from_safe_string(svg) }
        })
        .collect();

    let rows: Vec<Value> = programs
        .iter()
        .filter(|(id, _)| chosen.program.as_ref().is_none_or(|p| p == *id))
        .map(|(id, (name, targets))| {
            let sums = figures.today.get(id).cloned().unwrap_or_default();
            let cells: Vec<Value> = Kpi::ALL
                .iter()
                .map(|kpi| {
                    let value = kpi.of(&sums);
                    let target = kpi.target(Some(targets));
                    context! {
                        value => value.map(|v| chart::label(v, kpi.unit())),
                        target => target.map(|t| chart::label(t, kpi.unit())),
                        misses => matches!((value, target), (Some(v), Some(t)) if kpi.misses(v, t)),
                    }
                })
                .collect();
            context! { id => id, name => name, cells => cells }
        })
        .collect();

    let target_map: BTreeMap<String, ProgramTargets> = programs
        .iter()
        .map(|(id, (_, t))| (id.clone(), *t))
        .collect();
    let alerts: Vec<Value> = ops::alerts(&figures.now.open_work, &figures.now.backlog, &target_map)
        .into_iter()
        .map(|a| {
            context! {
                program => a.program_id,
                kind => a.kind,
                text => catalog.fill(language, &format!("alert.{}", a.kind), &[("count", a.count.to_string())]),
            }
        })
        .collect();

    let backlog: u64 = figures.now.backlog.iter().map(|b| b.count).sum();
    let kpi_names: Vec<Value> = Kpi::ALL
        .iter()
        .map(|k| Value::from(catalog.text(language, &format!("ops.{}", k.name()))))
        .collect();
    desk.page(
        "operations.html",
        &signed,
        context! {
            programs => programs.iter().map(|(id, (name, _))| context! { id => id, name => name }).collect::<Vec<_>>(),
            channels => CHANNELS,
            ranges => RANGES,
            program => chosen.program,
            channel => chosen.channel,
            days => chosen.days,
            from => figures.from.to_string(),
            to => figures.to.to_string(),
            time_zone => &figures.now.time_zone,
            kpi_names => kpi_names,
            rows => rows,
            charts => charts,
            alerts => alerts,
            team => team,
            queued => queued,
            backlog => backlog,
            behind => figures.now.behind,
            versions => versions,
            flash => (saved.saved.as_deref() == Some("migrated"))
                .then(|| catalog.text(language, "ops.migrated")),
        },
    )
}

/// Each version of the programs shown: when, by whom, how many cases run on
/// it; and, for a program with cases on an older version, the migration to
/// offer.
async fn versions(
    desk: &Desk,
    signed: &Signed,
    program: Option<&str>,
) -> Result<Vec<Value>, PageError> {
    let listed = desk
        .peers
        .cadence
        .clone()
        .list_program_versions(desk.vouched(
            signed,
            ListProgramVersionsRequest {
                program_id: program.unwrap_or_default().to_owned(),
            },
        ))
        .await
        .map_err(|status| PageError::from_status(&status, signed.language()))?
        .into_inner()
        .versions;
    let behind: BTreeMap<&str, u64> =
        listed
            .iter()
            .filter(|v| !v.newest)
            .fold(BTreeMap::new(), |mut behind, v| {
                *behind.entry(v.program_id.as_str()).or_default() += v.cases;
                behind
            });
    Ok(listed
        .iter()
        .map(|v| {
            context! {
                program => &v.program_id,
                version => v.version,
                published_at => crate::words::instant(v.published_at.as_ref())
                    .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()),
                published_by => &v.published_by,
                cases => v.cases,
                newest => v.newest,
                migrate => v.newest && behind.get(v.program_id.as_str()).is_some_and(|n| *n > 0),
            }
        })
        .collect())
}

/// `/operations/migrate?program=<id>`: the program whose cases to move.
#[derive(Debug, Deserialize)]
pub struct MigrateQuery {
    #[serde(default)]
    program: String,
}

/// What moving a program's running cases to its newest version would do:
/// each case, the version it runs on, and what it would receive next.
pub async fn migration_preview(
    State(desk): State<Desk>,
    signed: Signed,
    Query(query): Query<MigrateQuery>,
) -> Result<Html<String>, PageError> {
    let language = signed.language();
    if !signed.0.user.leads() {
        return Err(PageError::Forbidden(language));
    }
    let preview = migrate(&desk, &signed, &query.program, 0, false).await?;
    let cases: Vec<Value> = preview
        .cases
        .iter()
        .map(|c| {
            let plan = c.plan.clone().unwrap_or_default();
            let next = plan.upcoming.first().map(|t| {
                context! {
                    step => &t.step_id,
                    channel => desk.pages.catalog.text(language, crate::words::channel(t.channel)),
                    at => &t.send_at_local,
                }
            });
            context! { case_id => &c.case_id, from => c.from_version, next => next }
        })
        .collect();
    desk.page(
        "migrate.html",
        &signed,
        context! {
            program => &query.program,
            to => preview.to_version,
            cases => cases,
        },
    )
}

/// The migration form: the program and the version previewed.
#[derive(Debug, Deserialize)]
pub struct MigrateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    program: String,
    #[serde(default)]
    to_version: u32,
}

/// Moves the program's running cases to the version the preview showed.
pub async fn migrate_apply(
    State(desk): State<Desk>,
    signed: Signed,
    Form(form): Form<MigrateForm>,
) -> Result<Redirect, PageError> {
    signed.check(&form.csrf)?;
    if !signed.0.user.leads() {
        return Err(PageError::Forbidden(signed.language()));
    }
    if form.to_version == 0 {
        return Err(PageError::BadRequest(
            signed.language(),
            "to_version: the version previewed".into(),
        ));
    }
    let done = migrate(&desk, &signed, &form.program, form.to_version, true).await?;
    tracing::info!(user = %signed.0.user.id, program = %form.program, to = done.to_version, migrated = done.migrated, "cases migrated");
    Ok(Redirect::to(&format!(
        "/operations?program={}&saved=migrated",
        form.program
    )))
}

async fn migrate(
    desk: &Desk,
    signed: &Signed,
    program: &str,
    to_version: u32,
    apply: bool,
) -> Result<MigrateEnrolmentsResponse, PageError> {
    if !signed.0.user.sees(program) {
        return Err(PageError::NotFound);
    }
    Ok(desk
        .peers
        .cadence
        .clone()
        .migrate_enrolments(desk.vouched(
            signed,
            MigrateEnrolmentsRequest {
                program_id: program.to_owned(),
                to_version,
                case_ids: vec![],
                apply,
            },
        ))
        .await
        .map_err(|status| PageError::from_status(&status, signed.language()))?
        .into_inner())
}

/// Who works the program (every program: the user's), whether they can take
/// work now, and how many tasks wait in its queue.
async fn team(
    desk: &Desk,
    signed: &Signed,
    program: Option<&str>,
) -> Result<(Vec<Value>, u32), PageError> {
    let (people, queued) = roster::people(desk, signed, program).await?;
    let team = people
        .iter()
        // Who is on shift now, up to a page's worth.
        .filter(|c| c.on_shift)
        .take(TEAM_SHOWN)
        .map(|c| {
            let available = c.on_shift && c.presence == Presence::Available as i32;
            context! {
                id => &c.coordinator_id,
                available => available,
                presence => presence_name(c.presence),
                open_tasks => c.open_tasks,
                capacity => c.capacity,
            }
        })
        .collect();
    Ok((team, queued))
}

/// The locale key under `presence.` of `presence`.
fn presence_name(presence: i32) -> &'static str {
    match Presence::try_from(presence) {
        Ok(Presence::Available) => "available",
        Ok(Presence::Busy) => "busy",
        Ok(Presence::Away) => "away",
        _ => "offline",
    }
}

/// A table of the page as CSV: `daily` (each day's figures over the range) or
/// `programs` (today's figures by program).
pub async fn csv(
    State(desk): State<Desk>,
    signed: Signed,
    Query(filter): Query<Filter>,
) -> Result<Response, PageError> {
    let language = signed.language();
    let (programs, chosen, figures) = prepare(&desk, &signed, &filter).await?;
    let header: Vec<&str> = Kpi::ALL.iter().map(|k| k.name()).collect();
    let value =
        |kpi: &Kpi, sums: &ops::Sums| kpi.of(sums).map_or_else(String::new, |v| format!("{v:.4}"));
    let mut out = String::new();
    let name = match filter.table.as_str() {
        "" | "daily" => {
            out.push_str(&format!("day,{}\r\n", header.join(",")));
            for (day, sums) in &figures.daily {
                let cells: Vec<String> = Kpi::ALL.iter().map(|k| value(k, sums)).collect();
                out.push_str(&format!("{day},{}\r\n", cells.join(",")));
            }
            "daily"
        }
        "programs" => {
            out.push_str(&format!("program,{}\r\n", header.join(",")));
            for id in programs.keys() {
                if chosen.program.as_ref().is_some_and(|p| p != id) {
                    continue;
                }
                let sums = figures.today.get(id).cloned().unwrap_or_default();
                let cells: Vec<String> = Kpi::ALL.iter().map(|k| value(k, &sums)).collect();
                out.push_str(&format!("{},{}\r\n", csv_cell(id), cells.join(",")));
            }
            "programs"
        }
        _ => {
            return Err(PageError::BadRequest(
                language,
                "table: daily or programs".into(),
            ));
        }
    };
    let disposition = format!(
        "attachment; filename=\"touchpoint-{name}-{}-{}.csv\"",
        figures.from, figures.to
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        out,
    )
        .into_response())
}

/// A program id as a CSV cell: quoted when it holds a separator or quote,
/// and never read as a formula by a spreadsheet.
pub(crate) fn csv_cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}
