//! `DispatchService` over gRPC: where each attempt stands. Answers carry ids,
//! states and provider references, never a destination or a message.

use sqlx::PgPool;
use tonic::{Request, Response, Status};
use touchpoint_platform::envelope::timestamp;
use touchpoint_proto::v1::dispatch_service_server::DispatchService;
use touchpoint_proto::v1::{
    Channel, GetAttemptRequest, GetAttemptResponse, ListAttemptsRequest, ListAttemptsResponse,
    SuppressionReason,
};
use uuid::Uuid;

use crate::attempts::{self, AttemptsError, Summary};

/// Longest case id accepted.
const MAX_CASE_ID: usize = 100;

/// The gRPC face of dispatch.
#[derive(Debug, Clone)]
pub struct DispatchApi {
    pool: PgPool,
}

impl DispatchApi {
    /// Serves the attempts in `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[tonic::async_trait]
impl DispatchService for DispatchApi {
    async fn get_attempt(
        &self,
        request: Request<GetAttemptRequest>,
    ) -> Result<Response<GetAttemptResponse>, Status> {
        let attempt_id = Uuid::parse_str(request.get_ref().attempt_id.trim())
            .map_err(|_| Status::invalid_argument("attempt_id: must be a UUID"))?;
        let found = attempts::get(&self.pool, attempt_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                Status::not_found("attempt_id: dispatch was not asked for this attempt")
            })?;
        Ok(Response::new(response(found)))
    }

    async fn list_attempts(
        &self,
        request: Request<ListAttemptsRequest>,
    ) -> Result<Response<ListAttemptsResponse>, Status> {
        let case_id = request.get_ref().case_id.trim();
        if case_id.is_empty()
            || case_id.len() > MAX_CASE_ID
            || case_id.chars().any(char::is_control)
        {
            return Err(Status::invalid_argument("case_id: must be a case id"));
        }
        let found = attempts::of_case(&self.pool, case_id)
            .await
            .map_err(internal)?;
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

fn internal(error: AttemptsError) -> Status {
    tracing::error!(%error, "dispatch request failed");
    Status::internal("dispatch storage is unavailable; try again")
}
