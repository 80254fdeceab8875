//! What the desk's tests share: the four services (in this process, on a clock
//! standing still), a real OpenID provider (npm's oidc-provider, a node
//! process), the desk binary as its own process with its log in a file, and
//! helpers that read like what a coordinator does.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use touchpoint_platform::clock::ClockConfig;
use touchpoint_platform::grpc::client::AuthChannel;
use touchpoint_platform::http_client::{Exchange, HttpClient};
use touchpoint_platform::testkit::events::{EMAIL, MOBILE, person};
use touchpoint_platform::testkit::{self, WRITE_TOKEN, utc};
use touchpoint_platform::vouch::{TrustedFronts, Voucher};
use touchpoint_proto::v1::routing_service_client::RoutingServiceClient;
use touchpoint_proto::v1::{
    AssignCoordinatorRequest, Channel, Coordinator, CoordinatorRole, Language, OpenCaseRequest,
    Presence, RecordConsentRequest, Shift, UpsertCoordinatorRequest,
};
use touchpoint_tests::fixtures::meta;
use touchpoint_tests::hub::Hub;

use crate::browser::{Browser, WAIT};

/// The desk's registration at the provider.
const CLIENT_ID: &str = "touchpoint-desk";
const CLIENT_SECRET: &str = "desk-test-secret";

/// Where the provider's script and its npm packages are.
pub fn browser_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/browser"))
}

/// The services, the provider and the desk, stopped when dropped.
#[derive(Debug)]
pub struct Rig {
    /// The four services.
    pub hub: Hub,
    /// `http://127.0.0.1:<port>`.
    pub desk: String,
    /// Routing's API, as the test's operator.
    pub routing: RoutingServiceClient<AuthChannel>,
    /// The desk's stdout and stderr.
    pub log: PathBuf,
    _provider: Child,
    _desk: Child,
}

/// A patient to enrol, in New York.
#[derive(Debug, Clone)]
pub struct NewPatient<'a> {
    /// Makes the commands' request ids unique.
    pub key: &'a str,
    /// The program.
    pub program: &'a str,
    /// Name and contact points.
    pub person: touchpoint_proto::v1::Person,
    /// Their language.
    pub language: Language,
    /// When they enrolled (RFC 3339).
    pub enrolled: &'a str,
    /// The channels they consent to.
    pub channels: &'a [Channel],
    /// Their coordinator.
    pub coordinator: &'a str,
}

/// One account at the provider.
#[derive(Debug, Clone)]
pub struct Account {
    /// Roster id.
    pub id: &'static str,
    /// Display name.
    pub name: &'static str,
    /// Desk roles.
    pub roles: &'static [&'static str],
    /// Programs they may see.
    pub programs: &'static [&'static str],
    /// Their language.
    pub locale: &'static str,
}

/// Carla: a bilingual coordinator of the adherence program.
pub const CARLA: Account = Account {
    id: "carla",
    name: "Carla Reyes",
    roles: &["coordinator"],
    programs: &["adherence"],
    locale: "en-US",
};

/// Olu: a coordinator of the refill program only.
pub const OLU: Account = Account {
    id: "olu",
    name: "Olu Adeyemi",
    roles: &["coordinator"],
    programs: &["refill-reminder"],
    locale: "en-US",
};

/// Cora: compliance, sees every program's access log.
pub const CORA: Account = Account {
    id: "cora",
    name: "Cora Lind",
    roles: &["compliance"],
    programs: &["adherence", "refill-reminder"],
    locale: "en-US",
};

/// Sam: supervises the adherence program.
pub const SAM: Account = Account {
    id: "sam",
    name: "Sam Okafor",
    roles: &["supervisor"],
    programs: &["adherence"],
    locale: "en-US",
};

impl Rig {
    /// Everything, on a clock standing at `now`, with `accounts` at the provider.
    pub async fn start(now: &str, accounts: &[Account]) -> Self {
        let (voucher, key) = Voucher::generate().unwrap_or_else(|e| panic!("{e}"));
        let fronts = TrustedFronts::of(vec![voucher.public_key_bytes()]);
        let hub = Hub::start_trusting(ClockConfig::Fixed { at: utc(now) }, fronts).await;
        let port = testkit::free_port();
        let key_file = std::env::temp_dir().join(format!("touchpoint-desk-{port}.key"));
        std::fs::write(&key_file, key).unwrap_or_else(|e| panic!("{e}"));
        let desk = format!("http://127.0.0.1:{port}");
        let accounts_json: serde_json::Map<String, serde_json::Value> = accounts
            .iter()
            .map(|a| {
                (
                    a.id.to_owned(),
                    serde_json::json!({
                        "name": a.name, "roles": a.roles, "programs": a.programs, "locale": a.locale,
                    }),
                )
            })
            .collect();
        let mut provider = Command::new("node")
            .arg(browser_dir().join("identity-provider.mjs"))
            .env("DESK_IDP_CLIENT_ID", CLIENT_ID)
            .env("DESK_IDP_CLIENT_SECRET", CLIENT_SECRET)
            .env("DESK_IDP_REDIRECT_URI", format!("{desk}/signin/callback"))
            .env(
                "DESK_IDP_ACCOUNTS",
                serde_json::Value::Object(accounts_json).to_string(),
            )
            .stdout(Stdio::piped())
            .stderr(
                std::fs::File::create(
                    std::env::temp_dir().join(format!("touchpoint-idp-{port}.log")),
                )
                .map_or_else(|_| Stdio::null(), Stdio::from),
            )
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("node did not start the identity provider: {e}"));
        let stdout = provider
            .stdout
            .take()
            .unwrap_or_else(|| panic!("the identity provider has no stdout"));
        let mut lines = BufReader::new(stdout).lines();
        let issuer = tokio::time::timeout(WAIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(ready) = serde_json::from_str::<serde_json::Value>(&line) {
                    return ready["issuer"].as_str().map(str::to_owned);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!("the identity provider did not start (deploy/setup.sh installs its packages)")
        });
        // The provider prints notices later too: keep reading, or it dies
        // writing to a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let log = std::env::temp_dir().join(format!("touchpoint-desk-{port}.log"));
        let log_file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}"));
        let err_file = log_file.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let cadence = hub
            .cadence
            .unwrap_or_else(|| panic!("cadence is not running"));
        let desk_process = Command::new(env!("CARGO_BIN_EXE_touchpoint-desk"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &hub.database.url)
            .env("TOUCHPOINT_DESK_ADDR", format!("127.0.0.1:{port}"))
            .env("TOUCHPOINT_CASES_URL", format!("http://{}", hub.cases_addr))
            .env("TOUCHPOINT_CADENCE_URL", format!("http://{cadence}"))
            .env(
                "TOUCHPOINT_DISPATCH_URL",
                format!("http://{}", hub.dispatch),
            )
            .env("TOUCHPOINT_ROUTING_URL", format!("http://{}", hub.routing))
            .env("TOUCHPOINT_API_TOKEN", WRITE_TOKEN)
            .env("TOUCHPOINT_DESK_VOUCH_KEY_FILE", &key_file)
            .env("TOUCHPOINT_CLOCK", "fixed")
            .env("TOUCHPOINT_CLOCK_START", now)
            .env("TOUCHPOINT_OIDC_ISSUER", &issuer)
            .env("TOUCHPOINT_OIDC_CLIENT_ID", CLIENT_ID)
            .env("TOUCHPOINT_OIDC_CLIENT_SECRET", CLIENT_SECRET)
            .env("RUST_LOG", "info")
            .stdout(log_file)
            .stderr(err_file)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("the desk did not start: {e}"));
        let http = HttpClient::new(Duration::from_secs(5)).unwrap_or_else(|e| panic!("{e}"));
        testkit::eventually("the desk to answer", WAIT, || {
            let http = http.clone();
            let url = format!("{desk}/signin");
            async move {
                match http.send(http::Method::GET, &url, &[], Vec::new()).await {
                    Exchange::Answered { status, .. } if status.is_success() => Some(()),
                    _ => None,
                }
            }
        })
        .await;
        let routing = RoutingServiceClient::new(testkit::channel(hub.routing).await);
        Self {
            hub,
            desk,
            routing,
            log,
            _provider: provider,
            _desk: desk_process,
        }
    }

    /// Carla on the roster, her English patient Ben (SMS consent, enrolled an
    /// hour before `now`, so nothing of the program is due), and Carla signed
    /// in on her worklist: the case id and her browser.
    pub async fn carla_and_ben(now: &str) -> (Self, String, Browser) {
        let mut rig = Rig::start(now, &[CARLA]).await;
        let case_id = rig.ben_with_carla(now).await;
        let browser = Browser::start().await;
        rig.sign_in(&browser, &CARLA).await;
        (rig, case_id, browser)
    }

    /// Carla on the roster and her English patient Ben (SMS consent,
    /// enrolled an hour before `now`); Ben's case id.
    pub async fn ben_with_carla(&mut self, now: &str) -> String {
        self.on_roster(&CARLA).await;
        let enrolled = (utc(now) - chrono::TimeDelta::hours(1)).to_rfc3339();
        self.open_case(NewPatient {
            key: "ben",
            program: "adherence",
            person: person("Ben", "Okafor", MOBILE, EMAIL),
            language: Language::En,
            enrolled: &enrolled,
            channels: &[Channel::Sms],
            coordinator: CARLA.id,
        })
        .await
    }

    /// Waits until routing has taken in `case_id` with its number and its
    /// coordinator: a text from the patient then finds the case.
    pub async fn routing_knows(&self, case_id: &str) {
        let pool = sqlx::PgPool::connect(&self.hub.database.url)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        testkit::eventually("routing to know the case", WAIT, || {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, bool>(
                    "SELECT EXISTS (SELECT 1 FROM routing.case_views v
                         JOIN routing.case_contacts c USING (case_id)
                         WHERE v.case_id = $1 AND v.coordinator_id <> '')",
                )
                .bind(case_id)
                .fetch_one(&pool)
                .await
                .ok()
                .filter(|known| *known)
            }
        })
        .await;
    }

    /// `path` on the desk.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.desk)
    }

    /// Signs `who` in through the provider's login page; ends on their worklist.
    pub async fn sign_in(&self, browser: &Browser, who: &Account) {
        browser.goto(&self.url("/signin")).await;
        browser.click_on("#sign-in").await;
        // The provider's own login form.
        browser.type_into("input[name=login]", who.id).await;
        browser.type_into("input[name=password]", "any").await;
        browser.click_on("button[type=submit]").await;
        browser.find("#worklist").await;
    }

    /// What the desk wrote to its log so far.
    pub fn desk_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Puts `who` on the roster: a coordinator of their programs speaking
    /// English and Spanish, available around the clock.
    pub async fn on_roster(&mut self, who: &Account) {
        let shifts = (1..=7)
            .map(|weekday| Shift {
                weekday,
                start: "00:00".into(),
                end: "00:00".into(),
            })
            .collect();
        self.routing
            .upsert_coordinator(UpsertCoordinatorRequest {
                coordinator: Some(Coordinator {
                    coordinator_id: who.id.into(),
                    role: CoordinatorRole::Coordinator as i32,
                    time_zone: "America/New_York".into(),
                    program_ids: who.programs.iter().map(|p| (*p).to_owned()).collect(),
                    languages: vec![Language::En as i32, Language::Es as i32],
                    skills: vec![],
                    capacity: 50,
                    presence: Presence::Available as i32,
                    shifts,
                    open_tasks: 0,
                    on_shift: false,
                    updated_by: String::new(),
                    dial_to: String::new(),
                }),
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Opens `patient`'s case, records their consents and assigns it.
    pub async fn open_case(&mut self, patient: NewPatient<'_>) -> String {
        let NewPatient {
            key,
            program,
            person: patient,
            language,
            enrolled,
            channels,
            coordinator,
        } = patient;
        let case_id = self
            .hub
            .cases
            .open_case(OpenCaseRequest {
                meta: meta(&format!("open-{key}")),
                program_id: program.into(),
                language: language as i32,
                time_zone: "America/New_York".into(),
                patient: Some(patient),
                enrolled_at: Some(touchpoint_platform::envelope::timestamp(utc(enrolled))),
                ..OpenCaseRequest::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .into_inner()
            .case_id;
        for channel in channels {
            self.hub
                .cases
                .record_consent(RecordConsentRequest {
                    meta: meta(&format!("consent-{key}-{}", *channel as i32)),
                    case_id: case_id.clone(),
                    channel: *channel as i32,
                    source: touchpoint_proto::v1::ConsentSource::WrittenForm as i32,
                    contact_point: String::new(),
                })
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        self.hub
            .cases
            .assign_coordinator(AssignCoordinatorRequest {
                meta: meta(&format!("assign-{key}")),
                case_id: case_id.clone(),
                coordinator_id: coordinator.into(),
                navigator_id: String::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        case_id
    }
}
