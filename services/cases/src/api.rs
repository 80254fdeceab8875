//! `CaseService` over gRPC: requests parsed into domain commands at the edge, store
//! errors mapped to status codes whose messages name fields, never values.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use touchpoint_platform::access::{Caller, Scope};
use touchpoint_platform::envelope;
use touchpoint_platform::input;
use touchpoint_proto::v1::case_service_server::CaseService;
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::{
    AddNoteRequest, AssignCoordinatorRequest, Case, CaseStatus, Channel, CommandMeta,
    CommandResult, ConsentSource, ContactPoint, ContactPoints, FindCasesByContactRequest,
    FindCasesByContactResponse, GetCaseRequest, GetKpisRequest, GetKpisResponse,
    GetTimelineRequest, GetTimelineResponse, ListAdverseEventsRequest, ListAdverseEventsResponse,
    OpenCaseRequest, Person, RebuildKpisRequest, RebuildKpisResponse, RecordConsentRequest,
    RecordTherapyEventRequest, ReportAdverseEventRequest, RevokeConsentRequest, SetStatusRequest,
    TherapyEventKind, UpdateContactPointsRequest, WatchCaseRequest, WatchEventsRequest,
    contact_point,
};
use uuid::Uuid;

use crate::domain::FieldError;
use crate::domain::adverse_event;
use crate::domain::case::{
    Command, ConsentChange, Contact, ContactUpdate, NewCase, PersonDetails, Rejection,
    StatusChange, TherapyFact,
};
use crate::domain::contact::{ContactKey, EmailAddress, PhoneNumber};
use crate::domain::locale::{Language, TimeZone};
use crate::kpi;
use crate::store::{CaseStore, Meta, StoreError};
use crate::timeline::{self, Cursor, PageToken};
use crate::watch::{self, AllEvents, CaseEvents, EntryStream};

/// Default and largest `GetTimeline` page.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;
/// How often a caught-up watch stream looks for new entries.
const WATCH_POLL: Duration = Duration::from_millis(100);

/// The gRPC face of the case store.
#[derive(Debug, Clone)]
pub struct CaseApi {
    store: CaseStore,
    shutdown: CancellationToken,
    kpi_zone: Tz,
}

impl CaseApi {
    /// Serves `store`, with KPI days in `kpi_zone`; watch streams end when
    /// `shutdown` is cancelled.
    pub fn new(store: CaseStore, kpi_zone: Tz, shutdown: CancellationToken) -> Self {
        Self {
            store,
            shutdown,
            kpi_zone,
        }
    }

    async fn existing_case(&self, raw: &str) -> Result<String, Status> {
        let case_id = case_id(raw)?;
        if timeline::case_exists(self.store.pool(), &case_id).await? {
            Ok(case_id)
        } else {
            Err(StoreError::Rejected(Rejection::NotFound).into())
        }
    }

    /// `case_id` if the case exists and `scope` sees it; otherwise, either
    /// way, not found.
    async fn case_in_scope(&self, scope: &Scope, raw: &str) -> Result<String, Status> {
        if scope.programs().is_none() {
            return self.existing_case(raw).await;
        }
        let case_id = case_id(raw)?;
        match self.store.get(&case_id).await? {
            Some(case) => scope.check(&case.program_id, "case_id").map(|()| case_id),
            None => Err(StoreError::Rejected(Rejection::NotFound).into()),
        }
    }

    async fn run(
        &self,
        scope: &Scope,
        case_id: &str,
        meta: Option<CommandMeta>,
        command: Command,
    ) -> Result<Response<CommandResult>, Status> {
        if scope.programs().is_some() {
            self.case_in_scope(scope, case_id).await?;
        }
        let meta = parse_meta(meta)?;
        let outcome = self.store.execute(case_id, &meta, &command).await?;
        Ok(Response::new(CommandResult {
            case_id: outcome.case_id,
            version: outcome.version,
        }))
    }
}

#[tonic::async_trait]
impl CaseService for CaseApi {
    type WatchCaseStream = EntryStream;
    type WatchEventsStream = EntryStream;

    async fn get_timeline(
        &self,
        request: Request<GetTimelineRequest>,
    ) -> Result<Response<GetTimelineResponse>, Status> {
        let scope = Scope::of(&request);
        let r = request.into_inner();
        let kinds = r
            .kinds
            .iter()
            .map(|k| kind(k))
            .collect::<Result<Vec<_>, _>>()?;
        let page_size = match r.page_size {
            0 => DEFAULT_PAGE,
            n if n <= MAX_PAGE => n,
            _ => {
                return Err(invalid(FieldError::new(
                    "page_size",
                    "must be at most 1000",
                )));
            }
        };
        let after = PageToken::parse(&r.page_token, "page_token").map_err(invalid)?;
        let case_id = self.case_in_scope(&scope, &r.case_id).await?;
        let (entries, next) = timeline::page(
            self.store.pool(),
            &case_id,
            &kinds,
            after,
            page_size as usize,
        )
        .await?;
        let next_page_token = next.map(|t| t.encode()).unwrap_or_default();
        Ok(Response::new(GetTimelineResponse {
            entries,
            next_page_token,
        }))
    }

    async fn watch_case(
        &self,
        request: Request<WatchCaseRequest>,
    ) -> Result<Response<EntryStream>, Status> {
        let scope = Scope::of(&request);
        let r = request.into_inner();
        let case_id = self.case_in_scope(&scope, &r.case_id).await?;
        let after_version = i64::try_from(r.after_version)
            .map_err(|_| invalid(FieldError::new("after_version", "is too large")))?;
        let source = CaseEvents {
            pool: self.store.pool().clone(),
            case_id,
            after_version,
        };
        Ok(Response::new(watch::stream(
            source,
            self.shutdown.clone(),
            WATCH_POLL,
        )))
    }

    async fn watch_events(
        &self,
        request: Request<WatchEventsRequest>,
    ) -> Result<Response<EntryStream>, Status> {
        let request = request.into_inner();
        let mut cursor = Cursor::parse(&request.after_cursor, "after_cursor").map_err(invalid)?;
        if request.from_now && request.after_cursor.is_empty() {
            cursor = timeline::latest_cursor(self.store.pool()).await?;
        }
        let source = AllEvents {
            pool: self.store.pool().clone(),
            cursor,
        };
        Ok(Response::new(watch::stream(
            source,
            self.shutdown.clone(),
            WATCH_POLL,
        )))
    }

    async fn get_kpis(
        &self,
        request: Request<GetKpisRequest>,
    ) -> Result<Response<GetKpisResponse>, Status> {
        let scope = Scope::of(&request);
        let now = self.store.now();
        kpi::query::answer(
            self.store.pool(),
            self.kpi_zone,
            now,
            request.get_ref(),
            &scope,
        )
        .await
        .map(Response::new)
    }

    async fn rebuild_kpis(
        &self,
        request: Request<RebuildKpisRequest>,
    ) -> Result<Response<RebuildKpisResponse>, Status> {
        if Scope::of(&request).programs().is_some() {
            return Err(Status::permission_denied(
                "a caller scoped to programs may not rebuild every program's KPIs",
            ));
        }
        kpi::store::reset(self.store.pool()).await?;
        let (_, entries) = kpi::store::position(self.store.pool(), i64::MAX).await?;
        tracing::info!(
            entries,
            "KPI projection emptied; rebuilding from the timeline"
        );
        Ok(Response::new(RebuildKpisResponse {
            entries: entries.max(0) as u64,
        }))
    }

    async fn report_adverse_event(
        &self,
        request: Request<ReportAdverseEventRequest>,
    ) -> Result<Response<CommandResult>, Status> {
        let scope = Scope::of(&request);
        let by = Caller::name_of(&request);
        let r = request.into_inner();
        let case_id = self.case_in_scope(&scope, &r.case_id).await?;
        let key = input::id("review_task_id", &r.review_task_id)?;
        let today = self.store.now().with_timezone(&self.kpi_zone).date_naive();
        let decision = adverse_event::decision(&r, today)?;
        let mut flag = None;
        for event in timeline::events_of(
            self.store.pool(),
            &case_id,
            &[
                "touchpoint.v1.AdverseEventSuspected",
                "touchpoint.v1.AdverseEventReported",
            ],
        )
        .await?
        {
            match event.payload {
                Some(Payload::AdverseEventSuspected(raised)) if raised.flag_key() == key => {
                    flag = Some(adverse_event::Flag {
                        received_at: raised
                            .received_at
                            .as_ref()
                            .and_then(envelope::instant)
                            .or_else(|| event.occurred_at.as_ref().and_then(envelope::instant))
                            .ok_or(StoreError::Corrupt)?,
                        review_task_id: raised.review_task_id,
                        inbound_id: raised.inbound_id,
                    });
                }
                Some(Payload::AdverseEventReported(decided)) if decided.flag_key() == key => {
                    return Err(Status::failed_precondition(
                        "review_task_id: the flag already has a decision",
                    ));
                }
                _ => {}
            }
        }
        let flag = flag.ok_or_else(|| {
            Status::failed_precondition("review_task_id: the case has no such adverse-event flag")
        })?;
        let event = adverse_event::reported(&flag, decision, &by);
        self.run(
            &scope,
            &case_id,
            r.meta,
            Command::DecideAdverseEvent(Box::new(event)),
        )
        .await
    }

    async fn list_adverse_events(
        &self,
        request: Request<ListAdverseEventsRequest>,
    ) -> Result<Response<ListAdverseEventsResponse>, Status> {
        let scope = Scope::of(&request);
        kpi::flags::answer(self.store.pool(), self.kpi_zone, request.get_ref(), &scope)
            .await
            .map(Response::new)
    }

    async fn open_case(
        &self,
        request: Request<OpenCaseRequest>,
    ) -> Result<Response<CommandResult>, Status> {
        let scope = Scope::of(&request);
        let r = request.into_inner();
        if !scope.sees(r.program_id.trim()) {
            return Err(Status::permission_denied(
                "program_id: not one of the caller's programs",
            ));
        }
        let new_case = NewCase {
            program_id: input::id("program_id", &r.program_id)?,
            language: Language::from_proto(r.language, "language").map_err(invalid)?,
            time_zone: TimeZone::parse(&r.time_zone, "time_zone").map_err(invalid)?,
            patient: person(r.patient, "patient")?.ok_or_else(|| missing("patient"))?,
            caregiver: person(r.caregiver, "caregiver")?,
            prescriber_fax: PhoneNumber::parse_optional(&r.prescriber_fax, "prescriber_fax")
                .map_err(invalid)?,
            enrolled_at: r
                .enrolled_at
                .map(|t| instant(t, "enrolled_at"))
                .transpose()?,
        };
        let case_id = Uuid::now_v7().to_string();
        // A new case has no program yet to scope by: checked above.
        self.run(
            &Scope::all(),
            &case_id,
            r.meta,
            Command::Open(Box::new(new_case)),
        )
        .await
    }

    async fn update_contact_points(
        &self,
        request: Request<UpdateContactPointsRequest>,
    ) -> Result<Response<CommandResult>, Status> {
        let scope = Scope::of(&request);
        let r = request.into_inner();
        let case_id = case_id(&r.case_id)?;
        let command = Command::UpdateContactPoints(Box::new(ContactUpdate {
            patient: contact(r.patient.unwrap_or_default(), "patient")?,
            caregiver: r.caregiver.map(|c| contact(c, "caregiver")).transpose()?,
            prescriber_fax: PhoneNumber::parse_optional(&r.prescriber_fax, "prescriber_fax")
                .map_err(invalid)?,
        }));
        self.run(&scope, &case_id, r.meta, command).await
    }

    async fn record_consent(
        &self,
        request: Request<RecordConsentRequest>,
    ) -> Result<Response<CommandResult>, Status> {
        let scope = Scope::of(&request);
        let by = Caller::name_of(&request);
        let r = request.into_inner();
        let case_id = case_id(&r.case_id)?;
        let channel = channel(r.channel)?;
        let command = Command::RecordConsent(ConsentChange {
            point: consent_point(&r.contact_point, channel)?,
            ..ConsentChange::channel(channel, consent_source(r.source)?, by)
        });
        self.run(&scope, &case_id, r.meta, command).await
    }

    async fn revoke_consent(
        &self,
        request: Request<RevokeConsentRequest>,
    ) -> Result<Response<CommandResult>, Status> {
        let scope = Scope::of(&request);
        let by = Caller::name_of(&request);
        let r = request.into_inner();
        let case_id = case_id(&r.case_id)?;
        let channel = channel(r.channel)?;
        let command = Command::RevokeConsent(ConsentChange {
            point: consent_point(&r.contact_point, channel)?,
            ..ConsentChange::channel(channel, consent_source(r.source)?, by)
        });
        self.run(&scope, &case_id, r.meta, command).await
    }

    async fn assign_coordinator(
        &self,
        request: Request<AssignCoordinatorRequest>,
    ) -> Result<Response<CommandResult>, Status> {
        let scope = Scope::of(&request);
        let r = request.into_inner();
        let case_id = case_id(&r.case_id)?;
        let command = Command::AssignCoordinator {
            coordinator_id: input::id("coordinator_id", &r.coordinator_id)?,
            navigator_id: input::text("navigator_id", &r.navigator_id, false)?,
        };
        self.run(&scope, &case_id, r.meta, command).await
    }

    async fn record_therapy_event(
        &self,
        request: Request<RecordTherapyEventRequest>,
    ) -> Result<Response<CommandResult>, Status> {
        let scope = Scope::of(&request);
        let r = request.into_inner();
        let case_id = case_id(&r.case_id)?;
        let fact = match TherapyEventKind::try_from(r.kind) {
            Ok(TherapyEventKind::TherapyStart) => TherapyFact::Started,
            Ok(TherapyEventKind::TherapyStopped) => TherapyFact::Stopped,
            Ok(TherapyEventKind::Fill) if (1..=366).contains(&r.days_supply) => TherapyFact::Fill {
                days_supply: r.days_supply,
            },
            Ok(TherapyEventKind::Fill) => {
                return Err(invalid(FieldError::new("days_supply", "must be 1 to 366")));
            }
            _ => {
                return Err(invalid(FieldError::new(
                    "kind",
                    "must be THERAPY_START, FILL or THERAPY_STOPPED",
                )));
            }
        };
        let at = instant(r.at.ok_or_else(|| missing("at"))?, "at")?;
        self.run(
            &scope,
            &case_id,
            r.meta,
            Command::RecordTherapyEvent { fact, at },
        )
        .await
    }

    async fn set_status(
        &self,
        request: Request<SetStatusRequest>,
    ) -> Result<Response<CommandResult>, Status> {
        let scope = Scope::of(&request);
        let r = request.into_inner();
        let case_id = case_id(&r.case_id)?;
        let change = match CaseStatus::try_from(r.status) {
            Ok(CaseStatus::Active) => StatusChange::Resume,
            Ok(CaseStatus::Paused) => StatusChange::Pause {
                reason: input::text("reason", &r.reason, true)?,
                until: r
                    .paused_until
                    .map(|t| instant(t, "paused_until"))
                    .transpose()?,
            },
            Ok(CaseStatus::Closed) => StatusChange::Close {
                reason: input::text("reason", &r.reason, true)?,
            },
            _ => {
                return Err(invalid(FieldError::new(
                    "status",
                    "must be ACTIVE, PAUSED or CLOSED",
                )));
            }
        };
        self.run(&scope, &case_id, r.meta, Command::SetStatus(change))
            .await
    }

    async fn add_note(
        &self,
        request: Request<AddNoteRequest>,
    ) -> Result<Response<CommandResult>, Status> {
        let scope = Scope::of(&request);
        let by = Caller::name_of(&request);
        let r = request.into_inner();
        let case_id = case_id(&r.case_id)?;
        let command = Command::AddNote {
            author: by,
            text: input::note("text", &r.text)?,
        };
        self.run(&scope, &case_id, r.meta, command).await
    }

    async fn get_case(&self, request: Request<GetCaseRequest>) -> Result<Response<Case>, Status> {
        let scope = Scope::of(&request);
        let case_id = case_id(&request.into_inner().case_id)?;
        match self.store.get(&case_id).await? {
            Some(case) => scope
                .check(&case.program_id, "case_id")
                .map(|()| Response::new(case)),
            None => Err(StoreError::Rejected(Rejection::NotFound).into()),
        }
    }

    async fn find_cases_by_contact(
        &self,
        request: Request<FindCasesByContactRequest>,
    ) -> Result<Response<FindCasesByContactResponse>, Status> {
        let scope = Scope::of(&request);
        let key = ContactKey::parse(&request.into_inner().contact, "contact").map_err(invalid)?;
        let mut case_ids = self.store.find_by_contact(&key).await?;
        if scope.programs().is_some() {
            let mut seen = Vec::with_capacity(case_ids.len());
            for case_id in case_ids {
                if let Some(case) = self.store.get(&case_id).await?
                    && scope.sees(&case.program_id)
                {
                    seen.push(case_id);
                }
            }
            case_ids = seen;
        }
        Ok(Response::new(FindCasesByContactResponse { case_ids }))
    }
}

fn parse_meta(meta: Option<CommandMeta>) -> Result<Meta, Status> {
    let meta = meta.unwrap_or_default();
    let request_id = input::text("meta.request_id", &meta.request_id, false)?;
    Ok(Meta {
        request_id: (!request_id.is_empty()).then_some(request_id),
        expected_version: meta.expected_version,
    })
}

fn case_id(raw: &str) -> Result<String, Status> {
    Ok(input::id("case_id", raw)?)
}

fn person(person: Option<Person>, field: &str) -> Result<Option<PersonDetails>, Status> {
    let Some(person) = person else {
        return Ok(None);
    };
    let name = person.name.unwrap_or_default();
    Ok(Some(PersonDetails {
        given_name: input::text(&format!("{field}.name.given_name"), &name.given_name, true)?,
        family_name: input::text(
            &format!("{field}.name.family_name"),
            &name.family_name,
            true,
        )?,
        contact: contact(
            person.contact.unwrap_or_default(),
            &format!("{field}.contact"),
        )?,
        relationship: input::text(
            &format!("{field}.relationship"),
            &person.relationship,
            false,
        )?,
    }))
}

fn contact(points: ContactPoints, field: &str) -> Result<Contact, Status> {
    Ok(Contact {
        mobile: PhoneNumber::parse_optional(&points.mobile_e164, &format!("{field}.mobile_e164"))
            .map_err(invalid)?,
        landline: PhoneNumber::parse_optional(
            &points.landline_e164,
            &format!("{field}.landline_e164"),
        )
        .map_err(invalid)?,
        email: EmailAddress::parse_optional(&points.email, &format!("{field}.email"))
            .map_err(invalid)?,
        postal_address: points.postal_address,
    })
}

/// A payload type name: `AttemptSent` or `touchpoint.v1.AttemptSent`.
fn kind(raw: &str) -> Result<String, Status> {
    let raw = raw.trim();
    let plain = !raw.is_empty()
        && raw.len() <= 100
        && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '.');
    if !plain {
        return Err(invalid(FieldError::new(
            "kinds",
            "must be payload type names such as AttemptSent",
        )));
    }
    Ok(if raw.contains('.') {
        raw.to_owned()
    } else {
        format!("touchpoint.v1.{raw}")
    })
}

fn channel(value: i32) -> Result<Channel, Status> {
    match Channel::try_from(value) {
        Ok(Channel::Unspecified) | Err(_) => Err(invalid(FieldError::new(
            "channel",
            "must be SMS, VOICE, EMAIL, FAX or MAIL",
        ))),
        Ok(channel) => Ok(channel),
    }
}

/// The contact point a consent change names, in the form `channel` uses; None
/// when it names none.
fn consent_point(raw: &str, channel: Channel) -> Result<Option<ContactPoint>, Status> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    let value = match (
        ContactKey::parse(raw, "contact_point").map_err(invalid)?,
        channel,
    ) {
        (ContactKey::Email(address), Channel::Email) => {
            contact_point::Value::Email(address.as_str().to_owned())
        }
        (ContactKey::Phone(number), Channel::Fax) => {
            contact_point::Value::FaxE164(number.as_str().to_owned())
        }
        (ContactKey::Phone(number), Channel::Sms | Channel::Voice) => {
            contact_point::Value::PhoneE164(number.as_str().to_owned())
        }
        _ => {
            return Err(invalid(FieldError::new(
                "contact_point",
                "is not a contact point of the channel's kind",
            )));
        }
    };
    Ok(Some(ContactPoint { value: Some(value) }))
}

fn consent_source(value: i32) -> Result<ConsentSource, Status> {
    match ConsentSource::try_from(value) {
        Ok(ConsentSource::Unspecified) | Err(_) => Err(invalid(FieldError::new(
            "source",
            "must name how consent was given",
        ))),
        Ok(source) => Ok(source),
    }
}

fn instant(t: touchpoint_proto::Timestamp, field: &str) -> Result<DateTime<Utc>, Status> {
    envelope::instant(&t).ok_or_else(|| invalid(FieldError::new(field, "not a valid timestamp")))
}

fn missing(field: &str) -> Status {
    invalid(FieldError::new(field, "is required"))
}

fn invalid(error: FieldError) -> Status {
    Status::invalid_argument(error.to_string())
}
