//! The whole system as processes, for the end-to-end tests and the load
//! benchmark: the four service binaries this build made, configured against
//! the test database and broker and an SMS provider's stand-in.

use std::path::{Path, PathBuf};

use touchpoint_cli::mesh;
use touchpoint_cli::stack::{self, Services};
use touchpoint_platform::testkit::{self, TestDatabase};

/// The SMS provider's account the stand-in and dispatch share.
pub const SMS_ACCOUNT: &str = "ACdemo";
/// The SMS provider's auth token the stand-in and dispatch share.
pub const SMS_AUTH_TOKEN: &str = "provider-token";
/// The number dispatch texts from.
pub const SMS_FROM: &str = "+15005550006";

/// The folder of the service binaries this build made (`target/<profile>`),
/// built first if missing: a run of this package alone does not build them.
///
/// # Panics
/// When the running executable cannot be located or the build fails: there is
/// nothing to run then.
pub fn service_binaries() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("no current executable: {e}"));
    // Tests run from target/<profile>/deps, binaries from target/<profile>.
    let mut dir = exe
        .parent()
        .unwrap_or_else(|| panic!("{} has no folder", exe.display()))
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let missing = stack::SERVICES
        .iter()
        .any(|s| !dir.join(format!("touchpoint-{s}")).exists());
    if missing {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = std::process::Command::new(cargo);
        build.arg("build").arg("--bins");
        for service in stack::SERVICES {
            build.arg("-p").arg(format!("touchpoint-{service}"));
        }
        if dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build
            .status()
            .unwrap_or_else(|e| panic!("cargo build: {e}"));
        assert!(status.success(), "the service binaries did not build");
    }
    dir
}

/// A program `id` in English of SMS steps: (step id, offset after enrolment,
/// template), capped at `per_day` texts a day and 100 a week.
pub fn sms_program(id: &str, per_day: usize, steps: &[(String, String, String)]) -> String {
    let mut program = format!(
        "id = \"{id}\"\nname = \"{id}\"\nlanguages = [\"en\"]\n\n\
         [frequency_cap]\nper_day = {per_day}\nper_week = 100\n"
    );
    for (step, offset, template) in steps {
        program.push_str(&format!(
            "\n[[steps]]\nid = \"{step}\"\nanchor = \"enrolled\"\noffset = \"{offset}\"\n\
             template = \"{template}\"\nchannels = [{{ channel = \"sms\" }}]\n"
        ));
    }
    program
}

/// A free local address to listen on.
pub fn local_addr() -> String {
    format!("127.0.0.1:{}", testkit::free_port())
}

/// The four services on free ports against `database` and the test broker,
/// with topics under `prefix`, the programs in `programs_dir`, texts sent to the
/// stand-in at `sms_url`, and their logs in `log_dir`. The system's clock;
/// callers set [`Services::clock`] and add to [`Services::own`] as they need.
pub fn services(
    database: &TestDatabase,
    prefix: &str,
    programs_dir: &Path,
    sms_url: String,
    log_dir: &Path,
) -> Services {
    let common = [
        ("DATABASE_URL", database.url.clone()),
        ("KAFKA_BROKERS", testkit::broker()),
        ("TOUCHPOINT_TOPIC_PREFIX", prefix.to_owned()),
        (
            "TOUCHPOINT_PROGRAMS_DIR",
            programs_dir.display().to_string(),
        ),
    ];
    let dispatch = [
        ("TOUCHPOINT_HTTP_ADDR", local_addr()),
        ("TOUCHPOINT_SMS_PRIMARY_URL", sms_url),
        ("TOUCHPOINT_SMS_PRIMARY_ACCOUNT_SID", SMS_ACCOUNT.into()),
        ("TOUCHPOINT_SMS_PRIMARY_AUTH_TOKEN", SMS_AUTH_TOKEN.into()),
        ("TOUCHPOINT_SMS_PRIMARY_FROM", SMS_FROM.into()),
        // The harness's programs text each number more often than a hub may
        // (the fault suite six a day, the soak one an hour) to load the
        // system; the deployment-wide cap per number would hold them back.
        ("TOUCHPOINT_DESTINATION_CAP_PER_DAY", "100".into()),
    ];
    Services {
        bin_dir: service_binaries(),
        log_dir: log_dir.to_path_buf(),
        grpc: [local_addr(), local_addr(), local_addr(), local_addr()],
        common: common.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        own: dispatch
            .into_iter()
            .map(|(k, v)| ("dispatch", k.to_owned(), v))
            .collect(),
        clock: None,
        // Every call between the processes is mutual TLS, on a mesh of its own.
        mesh: Some(
            mesh::write_dev_mesh(&log_dir.join("tls"))
                .unwrap_or_else(|e| panic!("cannot make the test mesh: {e:#}")),
        ),
    }
}
