//! What routing's tests share: the real service on free ports on a clock that
//! stands still, case and attempt events published as the other services would,
//! signed webhooks, and a reader of what routing publishes to
//! `touchpoint.inbound.v1`.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::Utc;
use http::{Method, StatusCode};
use touchpoint_platform::access::{ApiToken, Role};
use touchpoint_platform::clock::ClockConfig;
use touchpoint_platform::envelope::timestamp;
use touchpoint_platform::grpc::client::AuthChannel as GrpcChannel;
use touchpoint_platform::http_client::{Exchange, HttpClient};
use touchpoint_platform::shutdown::Shutdown;
use touchpoint_platform::signature;
pub use touchpoint_platform::testkit::events::{self, EMAIL, MOBILE, NewCase, event, person};
pub use touchpoint_platform::testkit::utc;
use touchpoint_platform::testkit::{self, TestDatabase, TopicReader};
use touchpoint_platform::topics::{Stream, Topics};
use touchpoint_proto::v1::envelope::Payload;
use touchpoint_proto::v1::routing_service_client::RoutingServiceClient;
use touchpoint_proto::v1::{
    CallTaskRequested, Channel, Coordinator, CoordinatorAssigned, CoordinatorRole, Envelope,
    Language, ListWorklistRequest, Presence, SetPresenceRequest, Shift, Task, TaskKind,
    UpsertCoordinatorRequest,
};
use touchpoint_routing::webhooks::Secrets;

pub const WAIT: Duration = Duration::from_secs(60);
/// Tuesday 2026-11-24, 10:00 in New York.
pub const NOW: &str = "2026-11-24T15:00:00Z";
pub const SMS_TOKEN: &str = "inbound-sms-token";
pub const EMAIL_KEY: &str = "inbound-email-key";
pub const FAX_TOKEN: &str = "inbound-fax-token";
pub const UNSUBSCRIBE_KEY: &str = "unsubscribe-key";
/// The shipped programs and state rules.
pub const PROGRAMS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../programs");
/// The API token of the coordinator `carla` herself.
pub const CARLA_TOKEN: &str = "carla-own-token";
/// Rita's: a supervisor of the refill program only.
pub const RITA_TOKEN: &str = "rita-refill-token";

/// A test's database, topics and the running service.
pub struct World {
    pub database: TestDatabase,
    pub prefix: String,
    pub client: RoutingServiceClient<GrpcChannel>,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub events: TopicReader,
    pub web: HttpClient,
    shutdown: Shutdown,
}

impl Drop for World {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

impl World {
    /// Routing on a clock standing at `now`, with every webhook secret set.
    pub async fn at(now: &str) -> Self {
        testkit::init_tracing();
        let database = TestDatabase::fresh().await;
        let prefix = testkit::unique_prefix();
        let mut platform = testkit::platform_config("routing", &database, &prefix);
        platform.clock = ClockConfig::Fixed { at: utc(now) };
        // Carla's own credential: as a member of the roster she acts only as
        // herself.
        platform
            .access
            .tokens
            .push(ApiToken::new("carla", Role::Write, CARLA_TOKEN));
        platform
            .access
            .tokens
            .push(ApiToken::new("rita", Role::Write, RITA_TOKEN).scoped_to(&["refill-reminder"]));
        let mut config = touchpoint_routing::Config::new(platform, PROGRAMS);
        config.secrets = Secrets {
            sms_auth_token: Some(SMS_TOKEN.into()),
            email_signing_key: Some(EMAIL_KEY.into()),
            fax_callback_token: Some(FAX_TOKEN.into()),
            unsubscribe_key: Some(UNSUBSCRIBE_KEY.into()),
        };
        let shutdown = Shutdown::new();
        let addresses = touchpoint_routing::start(config, &shutdown)
            .await
            .unwrap_or_else(|e| panic!("routing did not start: {e}"));
        let client = RoutingServiceClient::new(testkit::channel(addresses.grpc).await);
        let events =
            TopicReader::start(&prefix, &Topics::new(prefix.clone()).name(Stream::Inbound));
        Self {
            database,
            prefix,
            client,
            http: addresses.http,
            grpc: addresses.grpc,
            events,
            web: HttpClient::new(Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}")),
            shutdown,
        }
    }

    /// A client holding `token` instead of the test's service token.
    pub async fn client_with(&self, token: &str) -> RoutingServiceClient<GrpcChannel> {
        let access = touchpoint_platform::grpc::client::ClientAccess::token(token);
        let channel =
            touchpoint_platform::grpc::client::connect(&format!("http://{}", self.grpc), &access)
                .await
                .unwrap_or_else(|e| panic!("cannot reach routing: {e}"));
        RoutingServiceClient::new(channel)
    }

    pub async fn publish(&self, events: &[(Stream, Envelope)]) {
        testkit::publish(&self.prefix, events).await;
    }

    /// Sets `coordinator`'s presence.
    pub async fn set_presence(&self, coordinator: &str, presence: Presence) {
        self.client
            .clone()
            .set_presence(SetPresenceRequest {
                coordinator_id: coordinator.into(),
                presence: presence as i32,
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Adds a member to the roster.
    pub async fn upsert(&self, coordinator: Coordinator) {
        self.client
            .clone()
            .upsert_coordinator(UpsertCoordinatorRequest {
                coordinator: Some(coordinator),
            })
            .await
            .unwrap_or_else(|e| panic!("upsert: {e}"));
    }

    /// The whole roster, as ListCoordinators shows it.
    pub async fn roster(&self) -> Vec<Coordinator> {
        self.client
            .clone()
            .list_coordinators(touchpoint_proto::v1::ListCoordinatorsRequest::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .into_inner()
            .coordinators
    }

    /// An adherence case in Spanish whose patient has `mobile`, assigned to
    /// `coordinator` and `navigator`; returns once routing has it.
    pub async fn open_case(&self, case_id: &str, mobile: &str, coordinator: &str, navigator: &str) {
        self.publish(&[
            (Stream::Case, case_opened(case_id, mobile)),
            (
                Stream::Case,
                event(
                    case_id,
                    Payload::CoordinatorAssigned(CoordinatorAssigned {
                        coordinator_id: coordinator.into(),
                        navigator_id: navigator.into(),
                    }),
                ),
            ),
        ])
        .await;
        let expected = coordinator.to_owned();
        self.until_row(
            "the case's coordinator in routing",
            "SELECT coordinator_id FROM routing.case_views WHERE case_id = $1",
            case_id,
            move |found: String| found == expected,
        )
        .await;
    }

    /// Waits until `query` (one text parameter, one column) answers a value
    /// `accept` takes.
    pub async fn until_row<T>(
        &self,
        what: &str,
        query: &str,
        param: &str,
        accept: impl Fn(T) -> bool,
    ) where
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
    {
        let pool = sqlx::PgPool::connect(&self.database.url)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        testkit::eventually(what, WAIT, || async {
            let found: Option<T> = sqlx::query_scalar(query)
                .bind(param)
                .fetch_optional(&pool)
                .await
                .ok()
                .flatten();
            found.map(&accept).filter(|ok| *ok)
        })
        .await;
    }

    /// `coordinator`'s worklist, as `ListWorklist` gives it (default limit).
    pub async fn worklist(&self, coordinator: &str) -> Vec<Task> {
        self.client
            .clone()
            .list_worklist(ListWorklistRequest {
                coordinator_id: coordinator.into(),
                limit: 0,
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .into_inner()
            .tasks
    }

    /// Carla's call task making `attempt`, once it is on her worklist.
    pub async fn call_task_on_worklist(&self, attempt: &str) -> Task {
        testkit::eventually("the call task", WAIT, || async {
            self.worklist("carla")
                .await
                .into_iter()
                .find(|t| t.kind() == TaskKind::Call && t.attempt_id == attempt)
        })
        .await
    }

    /// Posts a Twilio inbound message; `signed` false sends a wrong signature.
    pub async fn text(
        &self,
        from: &str,
        body: &str,
        sid: &str,
        signed: bool,
    ) -> (StatusCode, String) {
        let params = vec![
            ("AccountSid".to_owned(), "ACtest".to_owned()),
            ("Body".to_owned(), body.to_owned()),
            ("From".to_owned(), from.to_owned()),
            ("MessageSid".to_owned(), sid.to_owned()),
            ("To".to_owned(), "+15005550006".to_owned()),
        ];
        let url = format!("http://{}/inbound/sms", self.http);
        let token = if signed { SMS_TOKEN } else { "wrong-token" };
        let signature = signature::sign(token, &url, &params);
        self.post(&url, &params, &[(signature::HEADER, signature.as_str())])
            .await
    }

    /// Posts a signed Mailgun route form: an email from `from` with `subject`
    /// and `body`, message id `id`.
    pub async fn email(&self, from: &str, subject: &str, body: &str, id: &str) -> StatusCode {
        let timestamp = Utc::now().timestamp().to_string();
        let token = format!("token-{id}");
        let signed = signature::email::sign(EMAIL_KEY, &timestamp, &token);
        let params = vec![
            ("sender".to_owned(), from.to_owned()),
            ("recipient".to_owned(), "care@hub.example".to_owned()),
            ("subject".to_owned(), subject.to_owned()),
            ("body-plain".to_owned(), body.to_owned()),
            ("Message-Id".to_owned(), format!("<{id}@example.com>")),
            ("timestamp".to_owned(), timestamp),
            ("token".to_owned(), token),
            ("signature".to_owned(), signed),
        ];
        let url = format!("http://{}/inbound/email", self.http);
        self.post(&url, &params, &[]).await.0
    }

    /// Posts a form to `url` with `headers`.
    pub async fn post(
        &self,
        url: &str,
        params: &[(String, String)],
        headers: &[(&str, &str)],
    ) -> (StatusCode, String) {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let mut all = vec![("content-type", "application/x-www-form-urlencoded")];
        all.extend_from_slice(headers);
        self.post_raw(url, &all, body.into_bytes()).await
    }

    /// Posts `body` to `url` as is.
    pub async fn post_raw(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, String) {
        match self.web.send(Method::POST, url, headers, body).await {
            Exchange::Answered { status, body } => {
                (status, String::from_utf8_lossy(&body).into_owned())
            }
            other => panic!("no answer from routing: {other:?}"),
        }
    }

    /// The first event on the inbound topic `pick` finds something in.
    pub async fn first<T>(&self, what: &str, pick: impl Fn(&Envelope) -> Option<T>) -> T {
        self.events.wait_for(what, WAIT, pick).await
    }
}

/// Dispatch's `CallTaskRequested` for `case_id`'s welcome step, making
/// `attempt`, for carla, due now.
pub fn call_requested(case_id: &str, attempt: &str) -> Envelope {
    event(
        case_id,
        Payload::CallTaskRequested(CallTaskRequested {
            attempt_id: attempt.into(),
            coordinator_id: "carla".into(),
            due_at: Some(timestamp(utc(NOW))),
            program_id: "adherence".into(),
            step_id: "welcome".into(),
            ..CallTaskRequested::default()
        }),
    )
}

/// Ana's adherence case, enrolled on 2026-11-01, reached at `mobile` and her
/// email.
pub fn case_opened(case_id: &str, mobile: &str) -> Envelope {
    NewCase::default()
        .enrolled_at(utc("2026-11-01T14:00:00Z"))
        .patient(person("Ana", "Ruiz", mobile, EMAIL))
        .event(case_id)
}

/// The primary provider took `attempt_id` on `channel` at `at`.
pub fn attempt_sent(case_id: &str, attempt_id: &str, channel: Channel, at: &str) -> Envelope {
    events::attempt_sent(case_id, attempt_id, channel, utc(at))
}

/// A member working the adherence program in English and Spanish, Monday to
/// Friday 9:00 to 17:00 in New York, available.
pub fn member(id: &str, role: CoordinatorRole) -> Coordinator {
    weekly(id, role, &[1, 2, 3, 4, 5])
}

/// The same, working only on `days` (1 = Monday).
pub fn weekly(id: &str, role: CoordinatorRole, days: &[u32]) -> Coordinator {
    Coordinator {
        coordinator_id: id.into(),
        role: role as i32,
        time_zone: "America/New_York".into(),
        program_ids: vec!["adherence".into()],
        languages: vec![Language::En as i32, Language::Es as i32],
        skills: vec![],
        capacity: 10,
        presence: Presence::Available as i32,
        shifts: days
            .iter()
            .map(|day| Shift {
                weekday: *day,
                start: "09:00".into(),
                end: "17:00".into(),
            })
            .collect(),
        open_tasks: 0,
        on_shift: false,
        updated_by: String::new(),
        dial_to: String::new(),
    }
}
