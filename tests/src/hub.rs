//! Cases, dispatch (with Twilio, Mailgun and Lob stand-ins) and routing started in this process
//! on a clock that stands still, on a fresh database and fresh topics: what a
//! test of a patient's text through the three services needs. Cadence joins
//! them when a test follows a program's plan, on a clock that runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use touchpoint_platform::clock::ClockConfig;
use touchpoint_platform::grpc::client::AuthChannel;
use touchpoint_platform::shutdown::Shutdown;
use touchpoint_platform::testkit::{self, TestDatabase, TopicReader, utc};
use touchpoint_platform::topics::{Stream, Topics};
use touchpoint_platform::vouch::TrustedFronts;
use touchpoint_proto::v1::case_service_client::CaseServiceClient;
use touchpoint_routing::domain::opt_out_scope::OptOutScope;
use touchpoint_sandbox::lob::LobSandbox;
use touchpoint_sandbox::mailgun::{MailgunOptions, MailgunSandbox};
use touchpoint_sandbox::{InboundText, Sandbox, post_inbound_text};

/// The auth token routing's SMS webhook checks.
pub const SMS_TOKEN: &str = "inbound-sms-token";

/// The key Mailgun signs its webhooks with (dispatch's and routing's).
pub const MAILGUN_SIGNING_KEY: &str = "mailgun-signing-key";

/// The secret Lob signs its letter webhooks with.
pub const LOB_WEBHOOK_SECRET: &str = "lob-webhook-secret";

/// The program's sending number.
pub const PROGRAM_NUMBER: &str = "+15005550006";

/// The three services, stopped when dropped.
#[derive(Debug)]
pub struct Hub {
    /// Their database.
    pub database: TestDatabase,
    /// Their topics' prefix.
    pub prefix: String,
    /// The cases API.
    pub cases: CaseServiceClient<AuthChannel>,
    /// Cases' gRPC address.
    pub cases_addr: SocketAddr,
    /// Dispatch's gRPC address.
    pub dispatch: SocketAddr,
    /// Routing's gRPC address.
    pub routing: SocketAddr,
    /// Cadence's gRPC address, when started.
    pub cadence: Option<SocketAddr>,
    /// Routing's SMS webhook.
    pub sms_webhook: String,
    /// The SMS provider's stand-in: what was texted.
    pub sms: Sandbox,
    /// The email provider's stand-in: what was emailed. Its delivery and
    /// failure webhooks reach dispatch, its complaint and unsubscribe
    /// webhooks routing.
    pub mailgun: MailgunSandbox,
    /// The print-and-mail provider's stand-in: what was posted. Its letter
    /// webhooks reach dispatch.
    pub lob: LobSandbox,
    /// `touchpoint.attempt.v1`, read from the start.
    pub attempts: TopicReader,
    shutdown: Shutdown,
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

impl Hub {
    /// The services on a clock standing at `now` (RFC 3339).
    pub async fn start(now: &str) -> Self {
        Self::start_on(ClockConfig::Fixed { at: utc(now) }, false).await
    }

    /// The services on `clock`, with cadence when `with_cadence`.
    pub async fn start_on(clock: ClockConfig, with_cadence: bool) -> Self {
        Self::launch(
            clock,
            with_cadence,
            OptOutScope::AllPrograms,
            TrustedFronts::default(),
        )
        .await
    }

    /// All four services on `clock`, with the programs in `programs` instead
    /// of the shipped ones.
    pub async fn start_with_programs(clock: ClockConfig, programs: &Path) -> Self {
        Self::launch_with(
            clock,
            true,
            (OptOutScope::AllPrograms, TrustedFronts::default()),
            programs.to_path_buf(),
        )
        .await
    }

    /// All four services on `clock`, taking the vouches for signed-in people
    /// of the fronts (the desk) whose keys `fronts` holds.
    pub async fn start_trusting(clock: ClockConfig, fronts: TrustedFronts) -> Self {
        Self::launch(clock, true, OptOutScope::AllPrograms, fronts).await
    }

    /// The services on a clock standing at `now` (RFC 3339), in a deployment
    /// whose opt-outs stop only the programs they answer
    /// (`TOUCHPOINT_OPT_OUT_SCOPE=program`).
    pub async fn start_scoped_by_program(now: &str) -> Self {
        let clock = ClockConfig::Fixed { at: utc(now) };
        Self::launch(clock, false, OptOutScope::Program, TrustedFronts::default()).await
    }

    async fn launch(
        clock: ClockConfig,
        with_cadence: bool,
        opt_out_scope: OptOutScope,
        fronts: TrustedFronts,
    ) -> Self {
        let shipped = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../programs"));
        Self::launch_with(clock, with_cadence, (opt_out_scope, fronts), shipped).await
    }

    async fn launch_with(
        clock: ClockConfig,
        with_cadence: bool,
        (opt_out_scope, fronts): (OptOutScope, TrustedFronts),
        programs: PathBuf,
    ) -> Self {
        testkit::init_tracing();
        let database = TestDatabase::fresh().await;
        let prefix = testkit::unique_prefix();
        let config = |name: &str| {
            let mut config = testkit::platform_config(name, &database, &prefix);
            config.clock = clock.clone();
            config.access.fronts = fronts.clone();
            config
        };
        let shutdown = Shutdown::new();
        let cases_addr =
            touchpoint_cases::start(touchpoint_cases::Config::new(config("cases")), &shutdown)
                .await
                .unwrap_or_else(|e| panic!("cases did not start: {e}"));
        let sms = Sandbox::start("ACtest", "test-token")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let cadence = if with_cadence {
            let config = touchpoint_cadence::Config::new(config("cadence"), &programs);
            let addr = touchpoint_cadence::start(config, &shutdown)
                .await
                .unwrap_or_else(|e| panic!("cadence did not start: {e}"));
            Some(addr)
        } else {
            None
        };
        let mailgun = MailgunSandbox::start(MailgunOptions {
            domain: "mg.hub.example",
            api_key: "mailgun-key",
            signing_key: MAILGUN_SIGNING_KEY,
            search_delay: Duration::from_millis(500),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let lob = LobSandbox::start("lob-key", LOB_WEBHOOK_SECRET)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut dispatch = touchpoint_dispatch::Config::new(config("dispatch"), &programs);
        dispatch.sender.poll = Duration::from_millis(50);
        let dispatch_http = testkit::free_port();
        dispatch.http_addr = SocketAddr::from(([127, 0, 0, 1], dispatch_http));
        dispatch.mailgun = Some(touchpoint_dispatch::MailgunProvider {
            base_url: mailgun.url(),
            domain: "mg.hub.example".into(),
            api_key: "mailgun-key".into(),
            from: "Care Team <care@hub.example>"
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
            signing_key: MAILGUN_SIGNING_KEY.into(),
            rate: None,
            unsubscribe: touchpoint_dispatch::providers::email::Unsubscribe {
                url: "https://hub.example/unsubscribe/email".into(),
                key: "unsubscribe-key".into(),
            },
        });
        dispatch.sms = vec![touchpoint_dispatch::SmsProvider {
            name: "primary".into(),
            base_url: sms.url(),
            account_sid: "ACtest".into(),
            auth_token: "test-token".into(),
            from: PROGRAM_NUMBER.into(),
            rate: None,
        }];
        // One Twilio account: its voice API places people's calls.
        dispatch.voice = Some(touchpoint_dispatch::VoiceProvider {
            base_url: sms.url(),
            account_sid: "ACtest".into(),
            auth_token: "test-token".into(),
            caller_id: PROGRAM_NUMBER.into(),
        });
        dispatch.mail = Some(touchpoint_dispatch::MailProvider {
            base_url: lob.url(),
            api_key: "lob-key".into(),
            from: "adr_hub_return".into(),
            webhook_secret: LOB_WEBHOOK_SECRET.into(),
            rate: None,
        });
        lob.webhook(&format!(
            "http://127.0.0.1:{dispatch_http}/callbacks/mail/lob"
        ));
        let dispatch_addr = touchpoint_dispatch::start(dispatch, &shutdown)
            .await
            .unwrap_or_else(|e| panic!("dispatch did not start: {e}"));
        let mut routing = touchpoint_routing::Config::new(config("routing"), &programs);
        routing.secrets.sms_auth_token = Some(SMS_TOKEN.into());
        routing.secrets.email_signing_key = Some(MAILGUN_SIGNING_KEY.into());
        routing.settings.opt_out_scope = opt_out_scope;
        let routing_addrs = touchpoint_routing::start(routing, &shutdown)
            .await
            .unwrap_or_else(|e| panic!("routing did not start: {e}"));
        for kind in ["delivered", "permanent_fail", "temporary_fail"] {
            let url = format!("http://127.0.0.1:{dispatch_http}/callbacks/email/mailgun");
            mailgun.webhook(kind, &url);
        }
        for kind in ["complained", "unsubscribed"] {
            let url = format!("http://{}/inbound/email/events", routing_addrs.http);
            mailgun.webhook(kind, &url);
        }
        let attempts =
            TopicReader::start(&prefix, &Topics::new(prefix.clone()).name(Stream::Attempt));
        Self {
            cases: CaseServiceClient::new(testkit::channel(cases_addr).await),
            cases_addr,
            dispatch: dispatch_addr,
            routing: routing_addrs.grpc,
            cadence,
            sms_webhook: format!("http://{}/inbound/sms", routing_addrs.http),
            database,
            prefix,
            sms,
            mailgun,
            lob,
            attempts,
            shutdown,
        }
    }

    /// Texts `body` from `from` to the program, through routing's signed
    /// webhook; returns the HTTP status.
    pub async fn text(&self, from: &str, body: &str, sid: &str) -> u16 {
        let text = InboundText {
            from,
            to: PROGRAM_NUMBER,
            body,
            sid,
        };
        post_inbound_text(&self.sms_webhook, SMS_TOKEN, &text)
            .await
            .unwrap_or_else(|| panic!("routing did not answer"))
    }
}
