//! `DispatchService` over gRPC: where each attempt stands, and what a step would
//! send. Attempt answers carry ids, states and provider references, never a
//! destination or a message; a preview renders only the facts its caller gave.

use std::sync::Arc;

use sqlx::PgPool;
use tonic::{Request, Response, Status};
use touchpoint_platform::access::{Caller, Scope};
use touchpoint_platform::clock::SharedClock;
use touchpoint_platform::contact::{EmailAddress, PhoneNumber};
use touchpoint_platform::envelope::timestamp;
use touchpoint_platform::input;
use touchpoint_programs::{Audience, Catalogue, LiveCatalogue, MessageFacts, RenderError};
use touchpoint_proto::v1::dispatch_service_server::DispatchService;
use touchpoint_proto::v1::{
    Channel, GetAttemptRequest, GetAttemptResponse, Language, ListAttemptsRequest,
    ListAttemptsResponse, PlaceCallRequest, PlaceCallResponse, RenderPreviewRequest,
    RenderPreviewResponse, RenderedMessage, SendMessageRequest, SendMessageResponse,
    SuppressionReason,
};
use uuid::Uuid;

use crate::attempts::{self, CallRefused, OwnCall, OwnMessage, Summary};
use crate::domain::fax::{self, Cover, Kind};
use crate::domain::sms::{self, Encoding};

/// The gRPC face of dispatch.
#[derive(Debug, Clone)]
pub struct DispatchApi {
    pool: PgPool,
    catalogue: Arc<LiveCatalogue>,
    clock: SharedClock,
    places_calls: bool,
}

impl DispatchApi {
    /// Serves the attempts in `pool` and previews of `catalogue`'s templates;
    /// places people's calls if `places_calls` (a voice provider is set).
    pub fn new(
        pool: PgPool,
        catalogue: Arc<LiveCatalogue>,
        clock: SharedClock,
        places_calls: bool,
    ) -> Self {
        Self {
            pool,
            catalogue,
            clock,
            places_calls,
        }
    }

    /// Where `attempt_id` stands once the sender has given its verdict, or
    /// after [`VERDICT_WAIT`] if it has not yet.
    async fn verdict(&self, attempt_id: Uuid) -> Result<(String, SuppressionReason), Status> {
        let deadline = tokio::time::Instant::now() + VERDICT_WAIT;
        loop {
            let found = attempts::get(&self.pool, attempt_id).await?;
            let settled = found
                .as_ref()
                .is_some_and(|a| !matches!(a.state.as_str(), "queued" | "sending"));
            if settled || tokio::time::Instant::now() >= deadline {
                let found =
                    found.ok_or_else(|| Status::internal("the attempt was not recorded"))?;
                let suppression = found
                    .suppression
                    .as_deref()
                    .and_then(SuppressionReason::from_str_name)
                    .unwrap_or(SuppressionReason::Unspecified);
                return Ok((found.state, suppression));
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }
}

/// What `request`'s step would send on each written channel.
pub fn preview(
    catalogue: &Catalogue,
    request: &RenderPreviewRequest,
    today: chrono::NaiveDate,
) -> Result<Vec<RenderedMessage>, Status> {
    let program = catalogue
        .get(request.program_id.trim())
        .ok_or_else(|| Status::not_found("program_id: no such program is loaded"))?;
    let templates = catalogue
        .templates(&program.id)
        .ok_or_else(|| Status::not_found("program_id: no such program is loaded"))?;
    let step = program
        .steps
        .iter()
        .find(|s| s.id == request.step_id.trim())
        .ok_or_else(|| Status::not_found("step_id: the program has no such step"))?;
    let language = match Language::try_from(request.language) {
        Ok(l @ (Language::En | Language::Es)) => l,
        _ => return Err(Status::invalid_argument("language: must be en or es")),
    };
    let given = request.facts.clone().unwrap_or_default();
    let facts = MessageFacts {
        first_name: input::text("facts.first_name", &given.first_name, false)?,
        last_name: input::text("facts.last_name", &given.last_name, false)?,
        program_name: program.name.clone(),
        audience: Audience::Patient,
    };
    let mut messages = Vec::new();
    for plan in &step.channels {
        if !matches!(
            plan.channel,
            Channel::Sms | Channel::Email | Channel::Fax | Channel::Voice
        ) || messages
            .iter()
            .any(|m: &RenderedMessage| m.channel == plan.channel as i32)
        {
            continue;
        }
        let message = match templates.render(&step.template, language, plan.channel, &facts) {
            Ok(message) => message,
            // A call without a script of its own is a call all the same.
            Err(RenderError::Missing { .. }) if plan.channel == Channel::Voice => continue,
            Err(e) => return Err(Status::failed_precondition(e.to_string())),
        };
        let mut rendered = RenderedMessage {
            channel: plan.channel as i32,
            language: message.language as i32,
            language_fell_back: message.fell_back,
            ..RenderedMessage::default()
        };
        match plan.channel {
            Channel::Sms => {
                let size = sms::measure(&message.text);
                rendered.sms_encoding = match size.encoding {
                    Encoding::Gsm7 => "GSM-7",
                    Encoding::Ucs2 => "UCS-2",
                }
                .into();
                rendered.sms_segments = size.segments as u32;
            }
            Channel::Fax | Channel::Mail => {
                let to = format!("{} {}", facts.first_name, facts.last_name);
                let cover = Cover {
                    kind: if plan.channel == Channel::Mail {
                        Kind::Letter
                    } else {
                        Kind::Fax
                    },
                    to: to.trim(),
                    from: &program.name,
                    subject: message.subject.as_deref(),
                    date: today,
                    language: message.language,
                };
                rendered.fax_pages = fax::render(&cover, &message.text).pages;
            }
            _ => {}
        }
        rendered.text = message.text;
        rendered.html = message.html.unwrap_or_default();
        rendered.subject = message.subject.unwrap_or_default();
        messages.push(rendered);
    }
    Ok(messages)
}

/// The most characters a coordinator's message may hold: ten SMS segments.
const MAX_MESSAGE_CHARS: usize = 1600;

/// How long a coordinator's message may wait for its verdict before the
/// answer says it is still on its way.
const VERDICT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long after it is asked for a coordinator's message may still go out.
const MESSAGE_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// How long after it is asked for a person's call may still be placed.
const CALL_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::minutes(2);

/// The attempt id of `request_id`'s `kind` (`send-message`, `place-call`) on
/// `case_id`: the same request is the same attempt, so a retry sends nothing
/// more.
fn own_attempt_id(kind: &str, case_id: &str, request_id: &str) -> Uuid {
    use sha2::{Digest as _, Sha256};
    let digest = Sha256::digest(format!("{kind}\n{case_id}\n{request_id}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

#[tonic::async_trait]
impl DispatchService for DispatchApi {
    async fn send_message(
        &self,
        request: Request<SendMessageRequest>,
    ) -> Result<Response<SendMessageResponse>, Status> {
        let sent_by = Caller::name_of(&request);
        let scope = Scope::of(&request);
        let r = request.into_inner();
        let request_id = input::id("request_id", &r.request_id)?;
        let case_id = input::id("case_id", &r.case_id)?;
        let (channel, destination) = match Channel::try_from(r.channel) {
            Ok(Channel::Sms) => (
                Channel::Sms,
                PhoneNumber::parse(&r.to, "to")
                    .map_err(|e| Status::invalid_argument(e.to_string()))?
                    .as_str()
                    .to_owned(),
            ),
            Ok(Channel::Email) => (
                Channel::Email,
                EmailAddress::parse(&r.to, "to")
                    .map_err(|e| Status::invalid_argument(e.to_string()))?
                    .as_str()
                    .to_owned(),
            ),
            _ => return Err(Status::invalid_argument("channel: must be SMS or EMAIL")),
        };
        let body = input::note("text", &r.text)?;
        if body.chars().count() > MAX_MESSAGE_CHARS {
            return Err(Status::invalid_argument(format!(
                "text: at most {MAX_MESSAGE_CHARS} characters"
            )));
        }
        let subject = input::text("subject", &r.subject, false)?;
        let now = self.clock.now();
        let message = OwnMessage {
            attempt_id: own_attempt_id("send-message", &case_id, &request_id),
            case_id,
            channel,
            destination,
            body,
            subject: (!subject.is_empty()).then_some(subject),
            sent_by,
            at: now,
            not_after: now + MESSAGE_LIFETIME,
        };
        match attempts::program_of_case(&self.pool, &message.case_id).await? {
            Some(program) if scope.sees(&program) => {
                attempts::record_own_message(&self.pool, &message, &program).await?;
            }
            _ => return Err(Status::not_found("case_id: no such case")),
        }
        // The sender takes it within its poll; the answer waits for its verdict.
        let (state, suppression) = self.verdict(message.attempt_id).await?;
        Ok(Response::new(SendMessageResponse {
            attempt_id: message.attempt_id.to_string(),
            state,
            suppression: suppression as i32,
        }))
    }

    async fn place_call(
        &self,
        request: Request<PlaceCallRequest>,
    ) -> Result<Response<PlaceCallResponse>, Status> {
        // The person is the one the gate admitted: their client rings first.
        let caller = Caller::name_of(&request);
        let scope = Scope::of(&request);
        let r = request.into_inner();
        let request_id = input::id("request_id", &r.request_id)?;
        let case_id = input::id("case_id", &r.case_id)?;
        let destination = PhoneNumber::parse(&r.to, "to")
            .map_err(|e| Status::invalid_argument(e.to_string()))?
            .as_str()
            .to_owned();
        let calls_for = match r.task_attempt_id.trim() {
            "" => None,
            id => Some(Uuid::parse_str(id).map_err(|_| {
                Status::invalid_argument("task_attempt_id: must be a UUID, or empty")
            })?),
        };
        if !self.places_calls {
            return Err(Status::failed_precondition(
                "no voice provider is configured: calls cannot be placed",
            ));
        }
        if caller == "unauthenticated" || input::id("caller", &caller).is_err() {
            return Err(Status::permission_denied(
                "only a signed-in person can place a call: their own phone rings first",
            ));
        }
        let now = self.clock.now();
        let call = OwnCall {
            attempt_id: own_attempt_id("place-call", &case_id, &request_id),
            case_id,
            destination,
            caller,
            calls_for,
            at: now,
            not_after: now + CALL_LIFETIME,
        };
        let program = match attempts::program_of_case(&self.pool, &call.case_id).await? {
            Some(program) if scope.sees(&program) => program,
            _ => return Err(Status::not_found("case_id: no such case")),
        };
        if let Some(task) = calls_for
            && !attempts::is_call_task(&self.pool, task, &call.case_id).await?
        {
            return Err(Status::not_found(
                "task_attempt_id: no call task of this case on the worklist",
            ));
        }
        match attempts::record_own_call(&self.pool, &call, &program).await {
            Ok(()) => {}
            Err(CallRefused::Busy) => {
                return Err(Status::failed_precondition(CallRefused::Busy.to_string()));
            }
            Err(CallRefused::Store(e)) => return Err(e.into()),
        }
        let (state, suppression) = self.verdict(call.attempt_id).await?;
        Ok(Response::new(PlaceCallResponse {
            attempt_id: call.attempt_id.to_string(),
            state,
            suppression: suppression as i32,
        }))
    }

    async fn get_attempt(
        &self,
        request: Request<GetAttemptRequest>,
    ) -> Result<Response<GetAttemptResponse>, Status> {
        let attempt_id = Uuid::parse_str(request.get_ref().attempt_id.trim())
            .map_err(|_| Status::invalid_argument("attempt_id: must be a UUID"))?;
        let scope = Scope::of(&request);
        let found = attempts::get(&self.pool, attempt_id)
            .await?
            .filter(|a| scope.sees(&a.program_id))
            .ok_or_else(|| {
                Status::not_found("attempt_id: dispatch was not asked for this attempt")
            })?;
        Ok(Response::new(response(found)))
    }

    async fn render_preview(
        &self,
        request: Request<RenderPreviewRequest>,
    ) -> Result<Response<RenderPreviewResponse>, Status> {
        if !Scope::of(&request).sees(request.get_ref().program_id.trim()) {
            return Err(Status::not_found("program_id: no such program is loaded"));
        }
        let today = self.clock.now().date_naive();
        let messages = preview(&self.catalogue.current(), request.get_ref(), today)?;
        Ok(Response::new(RenderPreviewResponse { messages }))
    }

    async fn list_attempts(
        &self,
        request: Request<ListAttemptsRequest>,
    ) -> Result<Response<ListAttemptsResponse>, Status> {
        let scope = Scope::of(&request);
        let case_id = input::id("case_id", &request.get_ref().case_id)?;
        let mut found = attempts::of_case(&self.pool, &case_id).await?;
        found.retain(|a| scope.sees(&a.program_id));
        Ok(Response::new(ListAttemptsResponse {
            attempts: found.into_iter().map(response).collect(),
        }))
    }
}

fn response(s: Summary) -> GetAttemptResponse {
    GetAttemptResponse {
        attempt_id: s.attempt_id.to_string(),
        case_id: s.case_id,
        channel: Channel::from_str_name(&s.channel).unwrap_or(Channel::Unspecified) as i32,
        state: s.state,
        program_id: s.program_id,
        step_id: s.step_id,
        attempt_number: u32::try_from(s.attempt_number).unwrap_or_default(),
        provider: s.provider.unwrap_or_default(),
        provider_message_id: s.provider_message_id.unwrap_or_default(),
        failure_code: s.failure_code.unwrap_or_default(),
        suppression: s
            .suppression
            .as_deref()
            .and_then(SuppressionReason::from_str_name)
            .unwrap_or(SuppressionReason::Unspecified) as i32,
        requested_at: Some(timestamp(s.requested_at)),
        sent_at: s.sent_at.map(timestamp),
        tries: u32::try_from(s.tries).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use touchpoint_proto::v1::PreviewFacts;

    #[test]
    fn a_fax_step_is_previewed_with_its_pages() {
        let dir = std::env::temp_dir().join(format!("touchpoint-preview-{}", Uuid::now_v7()));
        let program = dir.join("fax-only");
        std::fs::create_dir_all(program.join("templates")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            program.join("program.toml"),
            r#"id = "fax-only"
name = "Fax only"
languages = ["en"]
[contact_window]
start = "09:00"
end = "17:00"
[[steps]]
id = "letter"
anchor = "enrolled"
offset = "1d"
template = "letter"
channels = [{ channel = "fax", attempts = 1 }]
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(
            program.join("templates/letter.en.txt"),
            "Dear {{ first_name }} {{ last_name }},\n\nYour program starts.",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let loaded =
            touchpoint_programs::load_dir_with_templates(&dir).unwrap_or_else(|e| panic!("{e:?}"));
        let _ = std::fs::remove_dir_all(&dir);
        let catalogue = Catalogue::with_templates(loaded);
        let request = RenderPreviewRequest {
            program_id: "fax-only".into(),
            step_id: "letter".into(),
            language: Language::En as i32,
            facts: Some(PreviewFacts {
                first_name: "Ana".into(),
                last_name: "Ruiz".into(),
            }),
        };
        let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap_or_default();
        let shown = preview(&catalogue, &request, today).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(shown.len(), 1);
        assert_eq!(shown[0].channel, Channel::Fax as i32);
        assert_eq!(shown[0].fax_pages, 2);
        assert!(shown[0].text.starts_with("Dear Ana Ruiz,"));
    }
}
