//! `RoutingService` over gRPC: `RouteContact` for the telephony system, the
//! roster (`UpsertCoordinator`, `SetPresence`, `ListCoordinators`) and the
//! worklists (`ListWorklist`, `ClaimTask`, `CompleteTask`). Errors name the
//! field, never a caller's number.

use std::collections::BTreeSet;
use std::sync::{Arc, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sqlx::PgPool;
use tonic::{Request, Response, Status};
use touchpoint_platform::access::{Caller, Scope};
use touchpoint_platform::clock::SharedClock;
use touchpoint_platform::envelope::{instant, timestamp};
use touchpoint_platform::input;
use touchpoint_proto::v1::routing_service_server::RoutingService;
use touchpoint_proto::v1::{
    Channel, ClaimTaskRequest, CompleteTaskRequest, Coordinator, CoordinatorRole, Language,
    ListCoordinatorsRequest, ListCoordinatorsResponse, ListWorklistRequest, ListWorklistResponse,
    Presence as PresenceProto, RouteContactRequest, RouteContactResponse, ScheduleCallbackRequest,
    SetPresenceRequest, Shift as ShiftProto, Task as TaskProto, TaskKind, TaskOutcome, TaskStatus,
    TransferTaskRequest, UpsertCoordinatorRequest,
};
use uuid::Uuid;

use crate::domain::decision::{GENERAL_QUEUE, program_queue};
use crate::domain::roster::{DialTarget, Member, Presence, Role, Roster, Shift};
use crate::inbound::{Contact, Inbound};
use crate::store::{self, time_from, weekday_from};
use crate::tasks::{self, Handover, Kind, Outcome, Task};

/// Most tasks one worklist answer holds.
const MAX_WORKLIST: u32 = 500;

/// The gRPC face of routing.
#[derive(Debug, Clone)]
pub struct RoutingApi {
    pool: PgPool,
    roster: Arc<RwLock<Roster>>,
    inbound: Inbound,
    clock: SharedClock,
    topic: String,
}

impl RoutingApi {
    /// Serves the roster in `pool` (cached in `roster`), contacts through
    /// `inbound`, task events to `topic`.
    pub fn new(
        pool: PgPool,
        roster: Arc<RwLock<Roster>>,
        inbound: Inbound,
        clock: SharedClock,
        topic: String,
    ) -> Self {
        Self {
            pool,
            roster,
            inbound,
            clock,
            topic,
        }
    }
}

fn id(field: &str, value: &str) -> Result<String, Status> {
    Ok(input::id(field, value)?)
}

fn presence_from(raw: i32) -> Result<Presence, Status> {
    match PresenceProto::try_from(raw) {
        Ok(PresenceProto::Available) => Ok(Presence::Available),
        Ok(PresenceProto::Busy) => Ok(Presence::Busy),
        Ok(PresenceProto::Away) => Ok(Presence::Away),
        Ok(PresenceProto::Offline) => Ok(Presence::Offline),
        _ => Err(Status::invalid_argument(
            "presence: available, busy, away or offline",
        )),
    }
}

fn presence_proto(presence: Presence) -> PresenceProto {
    match presence {
        Presence::Available => PresenceProto::Available,
        Presence::Busy => PresenceProto::Busy,
        Presence::Away => PresenceProto::Away,
        Presence::Offline => PresenceProto::Offline,
    }
}

/// A member from a request, checked field by field.
fn member(c: &Coordinator) -> Result<Member, Status> {
    let role = match CoordinatorRole::try_from(c.role) {
        Ok(CoordinatorRole::Coordinator) => Role::Coordinator,
        Ok(CoordinatorRole::Navigator) => Role::Navigator,
        _ => return Err(Status::invalid_argument("role: coordinator or navigator")),
    };
    let time_zone: Tz = c
        .time_zone
        .parse()
        .map_err(|_| Status::invalid_argument("time_zone: an IANA zone such as America/Chicago"))?;
    let programs = c
        .program_ids
        .iter()
        .map(|p| id("program_ids", p))
        .collect::<Result<BTreeSet<_>, _>>()?;
    let languages = c
        .languages
        .iter()
        .map(|l| match Language::try_from(*l) {
            Ok(l @ (Language::En | Language::Es)) => Ok(l),
            _ => Err(Status::invalid_argument("languages: en or es")),
        })
        .collect::<Result<BTreeSet<_>, _>>()?;
    let skills = c
        .skills
        .iter()
        .map(|s| id("skills", s))
        .collect::<Result<BTreeSet<_>, _>>()?;
    let shifts = c
        .shifts
        .iter()
        .map(|s| {
            Ok(Shift {
                day: weekday_from(s.weekday)
                    .ok_or_else(|| Status::invalid_argument("shifts.weekday: 1 (Monday) to 7"))?,
                start: time_from(&s.start)
                    .ok_or_else(|| Status::invalid_argument("shifts.start: HH:MM"))?,
                end: time_from(&s.end)
                    .ok_or_else(|| Status::invalid_argument("shifts.end: HH:MM"))?,
            })
        })
        .collect::<Result<Vec<_>, Status>>()?;
    if c.capacity == 0 || c.capacity > 1000 {
        return Err(Status::invalid_argument("capacity: 1 to 1000"));
    }
    Ok(Member {
        id: id("coordinator_id", &c.coordinator_id)?,
        role,
        time_zone,
        programs,
        languages,
        skills,
        capacity: c.capacity,
        open_tasks: 0,
        presence: match c.presence {
            0 => Presence::Offline,
            raw => presence_from(raw)?,
        },
        shifts,
        last_assigned_at: None,
        updated_by: String::new(),
        dial_to: DialTarget::parse(&c.dial_to)
            .map_err(|what| Status::invalid_argument(format!("dial_to: {what}")))?,
    })
}

fn coordinator(m: &Member, now: DateTime<Utc>) -> Coordinator {
    Coordinator {
        coordinator_id: m.id.clone(),
        role: match m.role {
            Role::Coordinator => CoordinatorRole::Coordinator,
            Role::Navigator => CoordinatorRole::Navigator,
        } as i32,
        time_zone: m.time_zone.name().to_owned(),
        program_ids: m.programs.iter().cloned().collect(),
        languages: m.languages.iter().map(|l| *l as i32).collect(),
        skills: m.skills.iter().cloned().collect(),
        capacity: m.capacity,
        presence: presence_proto(m.presence) as i32,
        shifts: m
            .shifts
            .iter()
            .map(|s| ShiftProto {
                weekday: s.day.number_from_monday(),
                start: s.start.format("%H:%M").to_string(),
                end: s.end.format("%H:%M").to_string(),
            })
            .collect(),
        open_tasks: m.open_tasks,
        on_shift: m.on_shift(now),
        updated_by: m.updated_by.clone(),
        dial_to: m.dial_to.as_stored().to_owned(),
    }
}

fn task_proto(t: &Task, now: DateTime<Utc>) -> TaskProto {
    TaskProto {
        callable_from: t.callable.map(|c| timestamp(c.from)),
        callable_until: t.callable.map(|c| timestamp(c.until)),
        callable_from_local: t.callable.map(|c| c.local(c.from)).unwrap_or_default(),
        callable_until_local: t.callable.map(|c| c.local(c.until)).unwrap_or_default(),
        workable_now: t.workable_at(now),
        task_id: t.task_id.to_string(),
        kind: match t.kind {
            Kind::Call => TaskKind::Call,
            Kind::Inbound => TaskKind::Inbound,
            Kind::Callback => TaskKind::Callback,
            Kind::AdverseEventReview => TaskKind::AdverseEventReview,
            Kind::KeywordReview => TaskKind::KeywordReview,
        } as i32,
        case_id: t.case_id.clone(),
        coordinator_id: t.member_id.clone().unwrap_or_default(),
        queue: t.queue.clone().unwrap_or_default(),
        priority: u32::try_from(t.priority).unwrap_or(0),
        status: match t.status.as_str() {
            "open" => TaskStatus::Open,
            "claimed" => TaskStatus::Claimed,
            "withdrawn" => TaskStatus::Withdrawn,
            _ => TaskStatus::Done,
        } as i32,
        due_at: t.due_at.map(timestamp),
        created_at: Some(timestamp(t.created_at)),
        attempt_id: t.attempt_id.clone().unwrap_or_default(),
        inbound_id: t.inbound_id.map(|i| i.to_string()).unwrap_or_default(),
        outcome: match t.outcome {
            None => TaskOutcome::Unspecified,
            Some(Outcome::Reached) => TaskOutcome::Reached,
            Some(Outcome::NoAnswer) => TaskOutcome::NoAnswer,
            Some(Outcome::Voicemail) => TaskOutcome::Voicemail,
            Some(Outcome::WrongNumber) => TaskOutcome::WrongNumber,
            Some(Outcome::Resolved) => TaskOutcome::Resolved,
            Some(Outcome::OptedOut) => TaskOutcome::OptedOut,
            Some(Outcome::Refused) => TaskOutcome::Refused,
        } as i32,
        channel: Channel::from_str_name(&t.channel).unwrap_or(Channel::Unspecified) as i32,
        withdrawn_reason: t.withdrawn_reason.clone().unwrap_or_default(),
    }
}

fn task_id(raw: &str) -> Result<Uuid, Status> {
    Uuid::parse_str(raw.trim()).map_err(|_| Status::invalid_argument("task_id: must be a UUID"))
}

impl RoutingApi {
    fn known_member(&self, id: &str) -> Result<Member, Status> {
        self.roster
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
            .ok_or_else(|| Status::not_found("coordinator_id: no such coordinator"))
    }

    /// The member a worklist or task call acts as. A caller signed in as a
    /// member of the roster (its certificate's or token's name is the member's
    /// id) acts only as that member: the request may leave `coordinator_id`
    /// empty, and naming anyone else is refused. Any other caller is a service
    /// that fronts people (the CLI, a desk) and names the member in the request.
    /// Refuses a task whose case is outside `scope`, as if it did not exist.
    async fn task_in_scope(&self, scope: &Scope, task_id: Uuid) -> Result<(), Status> {
        if scope.programs().is_none() {
            return Ok(());
        }
        match tasks::program_of_task(&self.pool, task_id).await? {
            Some(program) if scope.sees(&program) => Ok(()),
            _ => Err(Status::not_found("task_id: no such task")),
        }
    }

    /// The member a call acts as: a member signed in (or vouched for) acts
    /// only as themselves; a vouched person who is not on the roster acts as
    /// no one; any other caller names the member.
    fn acting_member(&self, caller: &str, vouched: bool, named: &str) -> Result<Member, Status> {
        let signed_in = self
            .roster
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(caller)
            .cloned();
        match signed_in {
            Some(member) if named.trim().is_empty() || named.trim() == member.id => Ok(member),
            Some(_) => Err(Status::permission_denied(
                "coordinator_id: a coordinator acts only as themselves",
            )),
            None if vouched && (named.trim().is_empty() || named.trim() == caller) => {
                Err(Status::not_found("coordinator_id: no such coordinator"))
            }
            None if vouched => Err(Status::permission_denied(
                "coordinator_id: a person acts only as themselves",
            )),
            None => self.known_member(&id("coordinator_id", named)?),
        }
    }
}

#[tonic::async_trait]
impl RoutingService for RoutingApi {
    async fn route_contact(
        &self,
        request: Request<RouteContactRequest>,
    ) -> Result<Response<RouteContactResponse>, Status> {
        let request = request.into_inner();
        let contact = Contact {
            channel: Channel::Voice,
            from: request.caller_e164,
            provider_message_id: None,
            body: None,
            received_at: self.clock.now(),
        };
        let routed = self.inbound.receive(&contact).await?;
        // A call carries no keyword, so it is always routed.
        let decision = routed
            .decision
            .ok_or_else(|| Status::internal("the call was not routed"))?;
        Ok(Response::new(RouteContactResponse {
            case_ids: routed.case_ids,
            rule: decision.rule.as_str().into(),
            coordinator_id: decision.member_id.unwrap_or_default(),
            queue: decision.queue.unwrap_or_default(),
            inbound_id: routed.inbound_id.to_string(),
            callback_due_at: decision.callback_due_at.map(timestamp),
        }))
    }

    async fn upsert_coordinator(
        &self,
        request: Request<UpsertCoordinatorRequest>,
    ) -> Result<Response<Coordinator>, Status> {
        let caller = Caller::name_of(&request);
        let scope = Scope::of(&request);
        let given = request
            .into_inner()
            .coordinator
            .ok_or_else(|| Status::invalid_argument("coordinator: required"))?;
        let mut member = member(&given)?;
        member.updated_by = caller;
        let known = self
            .roster
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&member.id)
            .cloned();
        // A person (a supervisor through the desk) changes only people of
        // their programs, and gives them only programs of theirs.
        let outside = |programs: &BTreeSet<String>| programs.iter().any(|p| !scope.sees(p));
        if outside(&member.programs) || known.as_ref().is_some_and(|k| outside(&k.programs)) {
            return Err(Status::permission_denied(
                "program_ids: not one of the caller's programs",
            ));
        }
        if let Some(known) = &known {
            member.open_tasks = known.open_tasks;
            member.last_assigned_at = known.last_assigned_at;
            if given.presence == 0 {
                member.presence = known.presence;
            }
        }
        store::save_member(&self.pool, &member).await?;
        let answer = coordinator(&member, self.clock.now());
        self.roster
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .upsert(member);
        Ok(Response::new(answer))
    }

    async fn set_presence(
        &self,
        request: Request<SetPresenceRequest>,
    ) -> Result<Response<Coordinator>, Status> {
        let caller = Caller::name_of(&request);
        let vouched = Scope::of(&request).programs().is_some();
        let request = request.into_inner();
        let member_id = id("coordinator_id", &request.coordinator_id)?;
        if vouched && member_id != caller {
            return Err(Status::permission_denied(
                "coordinator_id: a person sets only their own presence",
            ));
        }
        let presence = presence_from(request.presence)?;
        let found = store::set_presence(&self.pool, &member_id, presence).await?;
        if !found {
            return Err(Status::not_found("coordinator_id: no such coordinator"));
        }
        let mut roster = self.roster.write().unwrap_or_else(PoisonError::into_inner);
        let member = roster
            .get_mut(&member_id)
            .ok_or_else(|| Status::unavailable("the roster is reloading; try again"))?;
        member.presence = presence;
        Ok(Response::new(coordinator(member, self.clock.now())))
    }

    async fn list_coordinators(
        &self,
        request: Request<ListCoordinatorsRequest>,
    ) -> Result<Response<ListCoordinatorsResponse>, Status> {
        let scope = Scope::of(&request);
        let program = request.into_inner().program_id;
        if !program.is_empty() && !scope.sees(&program) {
            return Err(Status::permission_denied(
                "program_id: not one of the caller's programs",
            ));
        }
        let now = self.clock.now();
        let coordinators: Vec<Coordinator> = {
            let roster = self.roster.read().unwrap_or_else(PoisonError::into_inner);
            roster
                .members()
                .iter()
                .filter(|m| program.is_empty() || m.programs.contains(&program))
                .map(|m| coordinator(m, now))
                .collect()
        };
        // The queues the caller may see: the program's, or every one of theirs
        // and the general queue.
        let queues: Option<Vec<String>> = if program.is_empty() {
            scope.programs().map(|programs| {
                programs
                    .iter()
                    .map(|p| program_queue(p))
                    .chain([GENERAL_QUEUE.to_owned()])
                    .collect()
            })
        } else {
            Some(vec![program_queue(&program)])
        };
        let queued = tasks::queued(&self.pool, queues.as_deref()).await?;
        Ok(Response::new(ListCoordinatorsResponse {
            coordinators,
            queued,
        }))
    }

    async fn list_worklist(
        &self,
        request: Request<ListWorklistRequest>,
    ) -> Result<Response<ListWorklistResponse>, Status> {
        let caller = Caller::name_of(&request);
        let scope = Scope::of(&request);
        let request = request.into_inner();
        let member =
            self.acting_member(&caller, scope.programs().is_some(), &request.coordinator_id)?;
        let limit = match request.limit {
            0 => 50,
            n => n.min(MAX_WORKLIST),
        };
        let mut queues: Vec<String> = member.programs.iter().map(|p| program_queue(p)).collect();
        queues.push(GENERAL_QUEUE.to_owned());
        let now = self.clock.now();
        let mut found =
            tasks::worklist(&self.pool, &member.id, &queues, i64::from(limit), now).await?;
        if scope.programs().is_some() {
            let case_ids: Vec<String> = found.iter().map(|t| t.case_id.clone()).collect();
            let programs = tasks::programs_of_cases(&self.pool, &case_ids).await?;
            found.retain(|t| programs.get(&t.case_id).is_some_and(|p| scope.sees(p)));
        }
        Ok(Response::new(ListWorklistResponse {
            tasks: found.iter().map(|t| task_proto(t, now)).collect(),
        }))
    }

    async fn transfer_task(
        &self,
        request: Request<TransferTaskRequest>,
    ) -> Result<Response<TaskProto>, Status> {
        let caller = Caller::name_of(&request);
        let scope = Scope::of(&request);
        let request = request.into_inner();
        let task_id = task_id(&request.task_id)?;
        let member =
            self.acting_member(&caller, scope.programs().is_some(), &request.coordinator_id)?;
        self.task_in_scope(&scope, task_id).await?;
        let to = match (request.to_coordinator_id.trim(), request.to_queue.trim()) {
            (other, "") if !other.is_empty() => Handover::Member(self.known_member(other)?.id),
            ("", queue) if !queue.is_empty() => Handover::Queue(id("to_queue", queue)?),
            _ => {
                return Err(Status::invalid_argument(
                    "name either to_coordinator_id or to_queue",
                ));
            }
        };
        let (moved, released) = tasks::transfer(&self.pool, task_id, &member.id, &to).await?;
        {
            let mut roster = self.roster.write().unwrap_or_else(PoisonError::into_inner);
            if released && let Some(m) = roster.get_mut(&member.id) {
                m.open_tasks = m.open_tasks.saturating_sub(1);
            }
            if let Handover::Member(other) = &to
                && let Some(m) = roster.get_mut(other)
            {
                m.open_tasks = m.open_tasks.saturating_add(1);
            }
        }
        Ok(Response::new(task_proto(&moved, self.clock.now())))
    }

    async fn schedule_callback(
        &self,
        request: Request<ScheduleCallbackRequest>,
    ) -> Result<Response<TaskProto>, Status> {
        let caller = Caller::name_of(&request);
        let scope = Scope::of(&request);
        let request = request.into_inner();
        let member =
            self.acting_member(&caller, scope.programs().is_some(), &request.coordinator_id)?;
        let case_id = id("case_id", &request.case_id)?;
        let (program_id, zone, us_state) = tasks::case_window(&self.pool, &case_id)
            .await?
            .filter(|(program, _, _)| scope.sees(program))
            .ok_or_else(|| Status::not_found("case_id: no such case"))?;
        let now = self.clock.now();
        let due_at = request
            .due_at
            .as_ref()
            .and_then(instant)
            .ok_or_else(|| Status::invalid_argument("due_at: required"))?;
        if due_at <= now {
            return Err(Status::invalid_argument("due_at: must be in the future"));
        }
        let zone: Tz = zone
            .as_deref()
            .and_then(|z| z.parse().ok())
            .ok_or_else(|| {
                Status::failed_precondition("case_id: the patient's time zone is not known yet")
            })?;
        match self
            .inbound
            .callable_at(&program_id, us_state.as_deref(), zone, due_at)
        {
            Some(true) => {}
            Some(false) => {
                return Err(Status::failed_precondition(
                    "due_at: outside the patient's contact window",
                ));
            }
            None => {
                return Err(Status::failed_precondition(
                    "case_id: its program is not loaded",
                ));
            }
        }
        let added =
            tasks::schedule_callback(&self.pool, &case_id, &member.id, due_at, now, &self.topic)
                .await?;
        if let Some(m) = self
            .roster
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&member.id)
        {
            m.open_tasks = m.open_tasks.saturating_add(1);
        }
        Ok(Response::new(task_proto(&added, now)))
    }

    async fn claim_task(
        &self,
        request: Request<ClaimTaskRequest>,
    ) -> Result<Response<TaskProto>, Status> {
        let caller = Caller::name_of(&request);
        let scope = Scope::of(&request);
        let request = request.into_inner();
        let task_id = task_id(&request.task_id)?;
        let member =
            self.acting_member(&caller, scope.programs().is_some(), &request.coordinator_id)?;
        self.task_in_scope(&scope, task_id).await?;
        let now = self.clock.now();
        let claimed = tasks::claim(&self.pool, task_id, &member.id, now).await?;
        Ok(Response::new(task_proto(&claimed, now)))
    }

    async fn complete_task(
        &self,
        request: Request<CompleteTaskRequest>,
    ) -> Result<Response<TaskProto>, Status> {
        let caller = Caller::name_of(&request);
        let scope = Scope::of(&request);
        let request = request.into_inner();
        let task_id = task_id(&request.task_id)?;
        let member =
            self.acting_member(&caller, scope.programs().is_some(), &request.coordinator_id)?;
        self.task_in_scope(&scope, task_id).await?;
        let outcome = match TaskOutcome::try_from(request.outcome) {
            Ok(TaskOutcome::Reached) => Outcome::Reached,
            Ok(TaskOutcome::NoAnswer) => Outcome::NoAnswer,
            Ok(TaskOutcome::Voicemail) => Outcome::Voicemail,
            Ok(TaskOutcome::WrongNumber) => Outcome::WrongNumber,
            Ok(TaskOutcome::Resolved) => Outcome::Resolved,
            Ok(TaskOutcome::OptedOut) => Outcome::OptedOut,
            Ok(TaskOutcome::Refused) => Outcome::Refused,
            _ => {
                return Err(Status::invalid_argument(
                    "outcome: reached, no_answer, voicemail, wrong_number, refused, resolved or opted_out",
                ));
            }
        };
        let (done, released) = tasks::complete(
            &self.pool,
            task_id,
            &member.id,
            outcome,
            self.clock.now(),
            &self.topic,
            self.inbound.opt_out_scope(),
        )
        .await?;
        if released {
            let mut roster = self.roster.write().unwrap_or_else(PoisonError::into_inner);
            if let Some(m) = roster.get_mut(&member.id) {
                m.open_tasks = m.open_tasks.saturating_sub(1);
            }
        }
        Ok(Response::new(task_proto(&done, self.clock.now())))
    }
}
