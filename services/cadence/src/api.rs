//! `CadenceService` over gRPC: requests parsed at the edge, answers built from the
//! enrolment and its program. Error messages name fields, never values.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sqlx::PgPool;
use tonic::{Request, Response, Status};
use touchpoint_platform::access::{Caller, Scope};
use touchpoint_platform::clock::SharedClock;
use touchpoint_platform::envelope::{instant, new_envelope, timestamp};
use touchpoint_platform::grpc::storage_unavailable;
use touchpoint_platform::input;
use touchpoint_platform::outbox::{self, OutgoingEvent};
use touchpoint_proto::v1::cadence_service_server::CadenceService;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    Channel, GetPlanRequest, Language, ListProgramVersionsRequest, ListProgramVersionsResponse,
    ListProgramsRequest, ListProgramsResponse, MigrateEnrolmentsRequest, MigrateEnrolmentsResponse,
    MigrationPreview, PauseOutreachRequest, Plan, PlannedTouchpoint, PreviewCase,
    PreviewProgramRequest, PreviewProgramResponse, PreviewedTouchpoint, ProgramProblem,
    ProgramSummary, ProgramTargets, ProgramVersion, ResumeOutreachRequest, StepPlan, StepState,
    ValidateProgramRequest, ValidateProgramResponse,
};

use crate::enrolment::{CaseStatus, Change, Enrolment, RunState, V7Ids};
use crate::holds;
use crate::library::Library;
use crate::preview::{self, DEFAULT_HORIZON, MAX_HORIZON};
use crate::program::{self, Program};
use crate::store::{self, Saved, StoreError};

/// Most enrolments one `MigrateEnrolments` moves.
const MAX_MIGRATE: usize = 500;

/// Longest program file `ValidateProgram` accepts.
const MAX_PROGRAM_TEXT: usize = 256 * 1024;

/// The gRPC face of the cadence service.
#[derive(Debug, Clone)]
pub struct CadenceApi {
    pool: PgPool,
    library: Arc<Library>,
    clock: SharedClock,
    topic: String,
}

impl CadenceApi {
    /// Serves enrolments in `pool` planned with `library`'s programs; a pause
    /// and its end are published to `topic`.
    pub fn new(pool: PgPool, library: Arc<Library>, clock: SharedClock, topic: String) -> Self {
        Self {
            pool,
            library,
            clock,
            topic,
        }
    }

    /// Refuses a case outside `scope` as if it were not enrolled.
    async fn in_scope(&self, scope: &Scope, case_id: &str) -> Result<(), Status> {
        if scope.programs().is_none() {
            return Ok(());
        }
        store::get(&self.pool, case_id)
            .await?
            .filter(|e| scope.sees(&e.program_id))
            .map(|_| ())
            .ok_or_else(not_enrolled)
    }

    /// Applies `change` to the enrolment of `case_id` under its row lock, with
    /// `note` for the case timeline in the same transaction, and answers with
    /// its plan.
    async fn change(&self, case_id: &str, change: Change, note: Payload) -> Result<Plan, Status> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        let ids = [case_id.to_owned()];
        let mut locked = store::lock(&mut tx, &ids).await?;
        let enrolment = locked.get_mut(case_id).ok_or_else(not_enrolled)?;
        let now = self.clock.now();
        let shelf = self.library.shelf();
        let program = enrolment.program(&shelf);
        enrolment.apply(program, change, now, &mut V7Ids);
        let saved = Saved {
            case_id,
            enrolment,
            wake_at: store::timer(enrolment, program.is_some(), now),
        };
        store::save(&mut tx, &[saved]).await?;
        let envelope = new_envelope(case_id, crate::SPEC.name, now, note, None);
        outbox::append(&mut tx, &[OutgoingEvent::new(self.topic.clone(), envelope)])
            .await
            .map_err(|error| storage_unavailable(&error, "try again"))?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(plan(case_id, enrolment, program))
    }
}

#[tonic::async_trait]
impl CadenceService for CadenceApi {
    async fn list_programs(
        &self,
        _request: Request<ListProgramsRequest>,
    ) -> Result<Response<ListProgramsResponse>, Status> {
        let shelf = self.library.shelf();
        let programs = shelf
            .newest()
            .iter()
            .map(|p| ProgramSummary {
                version: shelf.newest_version(&p.id),
                program_id: p.id.clone(),
                name: p.name.clone(),
                languages: p.languages.iter().map(|l| *l as i32).collect(),
                step_ids: p.steps.iter().map(|s| s.id.clone()).collect(),
                targets: Some(ProgramTargets {
                    contact_rate: p.targets.contact_rate,
                    first_contact_hours: p.targets.first_contact_hours,
                    callbacks_within_sla: p.targets.callbacks_within_sla,
                    ae_reviewed_within_24h: p.targets.ae_reviewed_within_24h,
                    backlog_hours: p.targets.backlog_hours,
                }),
            })
            .collect();
        Ok(Response::new(ListProgramsResponse {
            programs,
            refused_change: self.library.refused().unwrap_or_default(),
        }))
    }

    async fn validate_program(
        &self,
        request: Request<ValidateProgramRequest>,
    ) -> Result<Response<ValidateProgramResponse>, Status> {
        let r = request.into_inner();
        if r.program_toml.len() > MAX_PROGRAM_TEXT {
            return Err(invalid("program_toml", "must be at most 256 KiB"));
        }
        let templates = r.template_ids.into_iter().collect();
        let problems = match program::parse("program.toml", &r.program_toml, &templates) {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .into_iter()
                .map(|e| ProgramProblem {
                    file: e.file,
                    step_id: e.step.unwrap_or_default(),
                    field: e.field,
                    problem: e.problem,
                })
                .collect(),
        };
        Ok(Response::new(ValidateProgramResponse {
            valid: problems.is_empty(),
            problems,
        }))
    }

    async fn get_plan(&self, request: Request<GetPlanRequest>) -> Result<Response<Plan>, Status> {
        let scope = Scope::of(&request);
        let case_id = case_id(&request.into_inner().case_id)?;
        let enrolment = store::get(&self.pool, &case_id)
            .await?
            .filter(|e| scope.sees(&e.program_id))
            .ok_or_else(not_enrolled)?;
        let shelf = self.library.shelf();
        let program = enrolment.program(&shelf);
        Ok(Response::new(plan(&case_id, &enrolment, program)))
    }

    async fn list_program_versions(
        &self,
        request: Request<ListProgramVersionsRequest>,
    ) -> Result<Response<ListProgramVersionsResponse>, Status> {
        let scope = Scope::of(&request);
        let only = request.into_inner().program_id;
        let shelf = self.library.shelf();
        let cases = self
            .library
            .cases_by_version()
            .await
            .map_err(StoreError::from)?;
        let versions = shelf
            .published()
            .iter()
            .filter(|v| scope.sees(&v.program_id))
            .filter(|v| only.trim().is_empty() || v.program_id == only.trim())
            .map(|v| ProgramVersion {
                program_id: v.program_id.clone(),
                version: v.version,
                published_at: Some(timestamp(v.published_at)),
                published_by: v.published_by.clone(),
                cases: cases
                    .get(&(v.program_id.clone(), v.version))
                    .copied()
                    .unwrap_or(0),
                newest: shelf.newest_version(&v.program_id) == v.version,
                step_ids: v.step_ids.clone(),
            })
            .collect();
        Ok(Response::new(ListProgramVersionsResponse { versions }))
    }

    async fn migrate_enrolments(
        &self,
        request: Request<MigrateEnrolmentsRequest>,
    ) -> Result<Response<MigrateEnrolmentsResponse>, Status> {
        let scope = Scope::of(&request);
        let by = Caller::name_of(&request);
        let r = request.into_inner();
        let program_id = input::id("program_id", &r.program_id)?;
        if !scope.sees(&program_id) {
            return Err(Status::permission_denied(
                "program_id: not one of the caller's programs",
            ));
        }
        let shelf = self.library.shelf();
        let to = match r.to_version {
            0 => shelf.newest_version(&program_id),
            v => v,
        };
        if shelf.at(&program_id, to).is_none() {
            return Err(Status::not_found(
                "to_version: no such version of the program is loaded",
            ));
        }
        if r.case_ids.len() > MAX_MIGRATE {
            return Err(invalid("case_ids", "at most 500 at a time"));
        }
        let asked = r
            .case_ids
            .iter()
            .map(|c| case_id(c))
            .collect::<Result<Vec<_>, _>>()?;
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        let ids = if asked.is_empty() {
            store::on_other_versions(&mut tx, &program_id, to, MAX_MIGRATE).await?
        } else {
            asked
        };
        let mut locked = store::lock(&mut tx, &ids).await?;
        let now = self.clock.now();
        let mut cases = Vec::with_capacity(locked.len());
        for (case_id, enrolment) in &mut locked {
            if enrolment.program_id != program_id || enrolment.program_version == to {
                continue;
            }
            let from_version = enrolment.program_version;
            enrolment.program_version = to;
            let program = enrolment.program(&shelf);
            if let Some(program) = program {
                enrolment.replan(program, now, &mut V7Ids);
            }
            cases.push(MigrationPreview {
                case_id: case_id.clone(),
                from_version,
                plan: Some(plan(case_id, enrolment, program)),
            });
        }
        let mut migrated = 0;
        if r.apply {
            let rows: Vec<Saved<'_>> = locked
                .iter()
                .filter(|(id, _)| cases.iter().any(|c| c.case_id == **id))
                .map(|(case_id, enrolment)| Saved {
                    case_id,
                    enrolment,
                    wake_at: store::timer(enrolment, true, now),
                })
                .collect();
            store::save(&mut tx, &rows).await?;
            tx.commit().await.map_err(StoreError::from)?;
            migrated = u32::try_from(rows.len()).unwrap_or(u32::MAX);
            self.library.forget_counts();
            tracing::info!(program = %program_id, to, migrated, by = %by, "enrolments migrated");
        }
        Ok(Response::new(MigrateEnrolmentsResponse {
            to_version: to,
            cases,
            migrated,
        }))
    }

    async fn preview_program(
        &self,
        request: Request<PreviewProgramRequest>,
    ) -> Result<Response<PreviewProgramResponse>, Status> {
        let r = request.into_inner();
        let shelf = self.library.shelf();
        let program = shelf
            .newest()
            .get(&r.program_id)
            .ok_or_else(|| Status::not_found("program_id: no such program is loaded"))?;
        let case = preview_case(r.case_facts.as_ref())?;
        let responses = r
            .responses
            .iter()
            .map(|t| instant(t).ok_or_else(|| invalid("responses", "must be valid instants")))
            .collect::<Result<Vec<_>, _>>()?;
        let until = match &r.until {
            None => case.enrolled_at + DEFAULT_HORIZON,
            Some(t) => instant(t)
                .filter(|u| *u > case.enrolled_at && *u <= case.enrolled_at + MAX_HORIZON)
                .ok_or_else(|| {
                    invalid(
                        "until",
                        "must be after enrolled_at and within two years of it",
                    )
                })?,
        };
        let tz = case.time_zone;
        let touchpoints = preview::preview(program, &case, &responses, until)
            .into_iter()
            .map(|request| PreviewedTouchpoint {
                send_at: Some(timestamp(request.requested_at)),
                send_at_local: local(tz, request.requested_at),
                step_id: request.step_id,
                channel: request.channel as i32,
                attempt_number: request.number,
                template_id: request.template,
                language: request.language as i32,
                due_at: Some(timestamp(request.due_at)),
            })
            .collect();
        Ok(Response::new(PreviewProgramResponse { touchpoints }))
    }

    async fn pause_outreach(
        &self,
        request: Request<PauseOutreachRequest>,
    ) -> Result<Response<Plan>, Status> {
        let by = Caller::name_of(&request);
        let scope = Scope::of(&request);
        let r = request.into_inner();
        let case_id = case_id(&r.case_id)?;
        self.in_scope(&scope, &case_id).await?;
        let until = match &r.until {
            None => None,
            Some(t) => Some(
                instant(t)
                    .filter(|u| *u > self.clock.now())
                    .ok_or_else(|| invalid("until", "must be in the future"))?,
            ),
        };
        Ok(Response::new(
            self.change(&case_id, Change::Hold { until }, holds::paused(&by, until))
                .await?,
        ))
    }

    async fn resume_outreach(
        &self,
        request: Request<ResumeOutreachRequest>,
    ) -> Result<Response<Plan>, Status> {
        let by = Caller::name_of(&request);
        let scope = Scope::of(&request);
        let case_id = case_id(&request.into_inner().case_id)?;
        self.in_scope(&scope, &case_id).await?;
        Ok(Response::new(
            self.change(&case_id, Change::ReleaseHold, holds::resumed(&by))
                .await?,
        ))
    }
}

/// The plan `GetPlan` shows: every step in program order, and the touchpoints
/// waiting, soonest first.
fn plan(case_id: &str, enrolment: &Enrolment, program: Option<&Program>) -> Plan {
    let tz = enrolment.time_zone;
    let steps = program.map_or_else(Vec::new, |program| {
        program
            .steps
            .iter()
            .map(|step| match enrolment.runs.get(&step.id) {
                None => StepPlan {
                    step_id: step.id.clone(),
                    state: StepState::AwaitingAnchor as i32,
                    ..StepPlan::default()
                },
                Some(run) => {
                    let (state, ended_at, end_reason) = match run.state {
                        RunState::Scheduled => (StepState::Scheduled, None, ""),
                        RunState::Running => (StepState::Running, None, ""),
                        RunState::Blocked => (StepState::Blocked, None, ""),
                        RunState::Completed { at } => (StepState::Completed, Some(at), ""),
                        RunState::Exhausted { at } => (StepState::Exhausted, Some(at), ""),
                        RunState::Cancelled { at, reason } => {
                            (StepState::Cancelled, Some(at), reason.as_str())
                        }
                    };
                    StepPlan {
                        step_id: step.id.clone(),
                        state: state as i32,
                        anchor_at: Some(timestamp(run.anchor_at)),
                        attempts_made: run.made.len() as u32,
                        ended_at: ended_at.map(timestamp),
                        end_reason: end_reason.to_owned(),
                    }
                }
            })
            .collect()
    });
    let mut upcoming: Vec<PlannedTouchpoint> = enrolment
        .runs
        .iter()
        .filter(|(_, run)| run.is_live())
        .filter_map(|(step_id, run)| {
            let p = run.pending.as_ref()?;
            Some(PlannedTouchpoint {
                step_id: step_id.clone(),
                attempt_id: p.attempt_id.to_string(),
                channel: p.attempt.channel as i32,
                attempt_number: p.attempt.number,
                due_at: Some(timestamp(p.attempt.due_at)),
                send_at: Some(timestamp(p.send_at)),
                send_at_local: local(tz, p.send_at),
                held: p.held,
                due_at_local: local(tz, p.attempt.due_at),
            })
        })
        .collect();
    upcoming.sort_by_key(|t| t.send_at.as_ref().map(|s| (s.seconds, s.nanos)));
    let case_status = match enrolment.status {
        CaseStatus::Active => "active",
        CaseStatus::Paused { .. } => "paused",
        CaseStatus::Closed => "closed",
    };
    Plan {
        case_id: case_id.to_owned(),
        program_id: enrolment.program_id.clone(),
        time_zone: tz.name().to_owned(),
        case_status: case_status.to_owned(),
        outreach_held: enrolment.hold.is_some(),
        held_until: enrolment.hold.and_then(|h| h.until).map(timestamp),
        adverse_event_reviews: enrolment.safety_reviews.iter().cloned().collect(),
        steps,
        upcoming,
        program_version: enrolment.program_version,
    }
}

fn preview_case(raw: Option<&PreviewCase>) -> Result<preview::PreviewCase, Status> {
    let raw = raw.ok_or_else(|| invalid("case_facts", "is required"))?;
    let time_zone: Tz = raw.time_zone.parse().map_err(|_| {
        invalid(
            "case_facts.time_zone",
            "must be an IANA time zone such as America/Chicago",
        )
    })?;
    let language = Language::try_from(raw.language)
        .map_err(|_| invalid("case_facts.language", "must be a known language"))?;
    let enrolled_at = raw
        .enrolled_at
        .as_ref()
        .and_then(instant)
        .ok_or_else(|| invalid("case_facts.enrolled_at", "is required"))?;
    let optional_instant = |t: &Option<touchpoint_proto::Timestamp>, field| match t {
        None => Ok(None),
        Some(t) => instant(t)
            .map(Some)
            .ok_or_else(|| invalid(field, "must be a valid instant")),
    };
    let therapy_start = optional_instant(&raw.therapy_start, "case_facts.therapy_start")?;
    let last_fill = match optional_instant(&raw.last_fill_at, "case_facts.last_fill_at")? {
        None => None,
        Some(_) if raw.days_supply == 0 || raw.days_supply > 365 => {
            return Err(invalid(
                "case_facts.days_supply",
                "must be 1 to 365 with a last fill",
            ));
        }
        Some(at) => Some((at, raw.days_supply)),
    };
    let consented = raw
        .consented_channels
        .iter()
        .map(|c| {
            Channel::try_from(*c)
                .ok()
                .filter(|c| *c != Channel::Unspecified)
                .ok_or_else(|| invalid("case_facts.consented_channels", "must be known channels"))
        })
        .collect::<Result<_, _>>()?;
    Ok(preview::PreviewCase {
        time_zone,
        language,
        enrolled_at,
        therapy_start,
        last_fill,
        consented,
    })
}

fn case_id(raw: &str) -> Result<String, Status> {
    Ok(input::id("case_id", raw)?)
}

/// `at` in the patient's local time, RFC 3339 with the offset.
fn local(tz: Tz, at: DateTime<Utc>) -> String {
    at.with_timezone(&tz).to_rfc3339()
}

fn invalid(field: &str, problem: &str) -> Status {
    Status::invalid_argument(format!("{field}: {problem}"))
}

fn not_enrolled() -> Status {
    Status::not_found("case_id: the case is not enrolled in a program")
}
