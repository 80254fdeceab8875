//! The deployment files cannot run here (no container engine, no cluster), so
//! what is checked is that each is valid for the tool that would run it, and
//! says what Touchpoint needs:
//!
//! - `k8s/`: both overlays render with `kubectl kustomize`; every object fits the
//!   Kubernetes schema, strictly (an unknown field fails), and each KafkaTopic
//!   Strimzi's; every service has its Deployment (gRPC probes, limits, non-root,
//!   graceful termination), Service and PodDisruptionBudget; every topic and DLQ
//!   has its KafkaTopic; each service's KafkaUser grants exactly what the service
//!   publishes and consumes (its `TOPIC_USE`), nothing more; the overlays differ
//!   as documented.
//! - `deploy/compose.yaml`: fits the Compose Specification; the services read only
//!   variables the configuration table (docs/operations.md) documents.
//! - `deploy/Dockerfile`: passes hadolint and builds every service binary.
//! - No service is built with the provider sandbox: it is a crate of its own,
//!   which a service may take only as a dev-dependency.
//!
//! The checkers come from `deploy/setup.sh` (`deploy/check/`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use touchpoint_platform::topics::{TopicUse, Topics, dlq_of};

const SERVICES: [&str; 4] = ["cases", "cadence", "dispatch", "routing"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The virtualenv `deploy/setup.sh` installs the checkers into.
fn check_venv() -> PathBuf {
    if let Some(venv) = std::env::var_os("TOUCHPOINT_CHECK_VENV") {
        return PathBuf::from(venv);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("touchpoint").join("check-venv")
}

/// Runs `deploy/check/validate.py KIND FILE`.
fn validate(kind: &str, file: &Path) -> Output {
    let venv = check_venv();
    let python = venv.join("bin").join("python");
    assert!(
        python.exists(),
        "{} is missing: run deploy/setup.sh",
        python.display()
    );
    let path = format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(python)
        .arg(root().join("deploy/check/validate.py"))
        .arg(kind)
        .arg(file)
        .env("PATH", path)
        .output()
        .unwrap_or_else(|e| panic!("validate.py: {e}"))
}

/// The summary a passing check prints; panics with the problems otherwise.
fn passes(kind: &str, file: &Path) -> Value {
    let output = validate(kind, file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{} fails its {kind} check:\n{stdout}{}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("summary {stdout}: {e}"))
}

/// The problems a failing check lists; panics if it passes.
fn refused(kind: &str, file: &Path) -> String {
    let output = validate(kind, file);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{} should fail its {kind} check: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn scratch(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("touchpoint-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    path
}

fn render(overlay: &str) -> PathBuf {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(root().join("k8s/overlays").join(overlay))
        .output()
        .unwrap_or_else(|e| panic!("kubectl (needed for `kubectl kustomize`): {e}"));
    assert!(
        output.status.success(),
        "k8s/overlays/{overlay} does not render: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    scratch(
        &format!("{overlay}.yaml"),
        &String::from_utf8_lossy(&output.stdout),
    )
}

fn strings(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Checks one rendered overlay; returns its summary.
fn overlay_is_valid(overlay: &str, replicas: u64, partitions: u64, topic_replicas: u64) {
    let summary = passes("k8s", &render(overlay));
    let objects = strings(&summary["objects"]);
    for service in SERVICES {
        for kind in ["Deployment", "Service", "PodDisruptionBudget"] {
            assert!(
                objects.contains(&format!("{kind}/{service}")),
                "{overlay}: no {kind} for {service}"
            );
        }
        let deployment = &summary["deployments"][service];
        assert_eq!(deployment["replicas"], replicas, "{overlay}: {service}");
        for check in ["grpc_probes", "limits", "non_root"] {
            assert_eq!(deployment[check], true, "{overlay}: {service} {check}");
        }
        assert!(
            deployment["grace_seconds"]
                .as_u64()
                .is_some_and(|s| s >= 10),
            "{overlay}: {service} has no time to drain"
        );
        assert!(
            strings(&deployment["secrets"]).contains("touchpoint-database"),
            "{overlay}: {service} does not take the database URL from its Secret"
        );
    }
    for kind in ["Deployment", "Service", "PodDisruptionBudget"] {
        assert!(
            objects.contains(&format!("{kind}/desk")),
            "{overlay}: no {kind} for the desk"
        );
    }
    let desk = &summary["deployments"]["desk"];
    for check in ["limits", "non_root"] {
        assert_eq!(desk[check], true, "{overlay}: desk {check}");
    }
    assert!(objects.contains("ConfigMap/touchpoint-programs"));
    let topics = summary["topics"].as_object().cloned().unwrap_or_default();
    let named: BTreeSet<String> = topics.keys().cloned().collect();
    let wanted: BTreeSet<String> = Topics::new("").all().into_iter().collect();
    assert_eq!(
        named, wanted,
        "{overlay}: every topic and DLQ, nothing else"
    );
    for (topic, spec) in &topics {
        assert_eq!(spec["partitions"], partitions, "{overlay}: {topic}");
        assert_eq!(spec["replicas"], topic_replicas, "{overlay}: {topic}");
    }
    for (service, uses) in TOPIC_USES {
        let user = &summary["users"][format!("touchpoint-{service}")];
        assert_eq!(
            user["authentication"], "scram-sha-512",
            "{overlay}: {service} has no SCRAM identity"
        );
        let granted: BTreeMap<String, BTreeSet<String>> = user["grants"]
            .as_object()
            .map(|grants| {
                grants
                    .iter()
                    .map(|(resource, ops)| (resource.clone(), strings(ops)))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            granted,
            least_privilege(&uses),
            "{overlay}: {service}'s KafkaUser grants other than it needs"
        );
    }
}

/// Each service's use of the topics, as it declares it.
const TOPIC_USES: [(&str, TopicUse); 4] = [
    ("cases", touchpoint_cases::TOPIC_USE),
    ("cadence", touchpoint_cadence::TOPIC_USE),
    ("dispatch", touchpoint_dispatch::TOPIC_USE),
    ("routing", touchpoint_routing::TOPIC_USE),
];

/// The grants a service needs, as `validate.py` sums them up: write (and
/// describe) what it publishes and the dead-letter twins of what it consumes,
/// read (and describe) what it consumes, read its group.
fn least_privilege(uses: &TopicUse) -> BTreeMap<String, BTreeSet<String>> {
    let topics = Topics::new("");
    let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut grant = |resource: String, op: &str| {
        let ops = wanted.entry(resource).or_default();
        ops.insert(op.to_owned());
        ops.insert("Describe".to_owned());
    };
    for stream in uses.publishes {
        grant(format!("topic:literal:{}", topics.name(*stream)), "Write");
    }
    for stream in uses.consumes {
        grant(format!("topic:literal:{}", topics.name(*stream)), "Read");
        grant(
            format!("topic:literal:{}", dlq_of(&topics.name(*stream))),
            "Write",
        );
    }
    wanted.insert(
        format!("group:literal:{}", uses.group),
        BTreeSet::from(["Read".to_owned()]),
    );
    wanted
}

#[test]
fn the_dev_overlay_is_valid_kubernetes_with_one_replica_each() {
    overlay_is_valid("dev", 1, 3, 1);
}

#[test]
fn the_prod_overlay_is_valid_kubernetes_with_three_replicas_and_replicated_topics() {
    overlay_is_valid("prod", 3, 12, 3);
}

#[test]
fn a_manifest_with_a_wrong_field_is_refused() {
    let bad = scratch(
        "bad.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: cases\nspec:\n  replicas: three\n  selector:\n    matchLabels: {app: cases}\n  template:\n    metadata:\n      labels: {app: cases}\n    spec:\n      containerz: []\n---\napiVersion: kafka.strimzi.io/v1beta2\nkind: KafkaTopic\nmetadata:\n  name: t\n  labels: {strimzi.io/cluster: touchpoint}\nspec:\n  topicName: t\n  partitions: 0\n  replicas: 1\n---\napiVersion: kafka.strimzi.io/v1beta2\nkind: KafkaUser\nmetadata:\n  name: u\n  labels: {strimzi.io/cluster: touchpoint}\nspec:\n  authentication: {type: scram-sha-512}\n  authorization:\n    type: simple\n    acls:\n      - resource: {type: topic, name: t}\n        operations: [Publish]\n",
    );
    let problems = refused("k8s", &bad);
    assert!(problems.contains("Deployment/cases"), "{problems}");
    assert!(problems.contains("KafkaTopic/t"), "{problems}");
    assert!(problems.contains("KafkaUser/u"), "{problems}");
}

#[test]
fn the_programs_configmap_is_what_the_programs_folder_holds() {
    let programs = root().join("programs");
    let expected = touchpoint_cli::programs::configmap(&programs.to_string_lossy())
        .unwrap_or_else(|e| panic!("{e:#}"));
    let committed = std::fs::read_to_string(root().join("k8s/base/programs-configmap.json"))
        .unwrap_or_default();
    assert!(
        committed == expected,
        "k8s/base/programs-configmap.json is stale: run \
         `touchpoint programs configmap > k8s/base/programs-configmap.json`"
    );
}

/// The variables the configuration table (docs/operations.md) documents. A row may name
/// several, later ones by suffix: `TOUCHPOINT_SMTP_HOST`, `_PORT`.
fn documented(readme: &str, variable: &str) -> bool {
    if readme.contains(&format!("`{variable}`")) {
        return true;
    }
    variable.match_indices('_').any(|(at, _)| {
        let (prefix, tail) = variable.split_at(at);
        readme.lines().any(|row| {
            row.starts_with('|')
                && row.contains(&format!("`{tail}`"))
                && row.contains(&format!("`{prefix}_"))
        })
    })
}

#[test]
fn the_compose_file_fits_the_compose_specification_and_uses_documented_variables() {
    let summary = passes("compose", &root().join("deploy/compose.yaml"));
    let services = strings(&summary["services"]);
    for wanted in
        SERVICES
            .iter()
            .chain(&["kafka", "postgres", "otel-collector", "jaeger", "mailpit"])
    {
        assert!(services.contains(*wanted), "compose has no {wanted}");
    }
    let table = std::fs::read_to_string(root().join("docs/operations.md")).unwrap_or_default();
    for service in SERVICES.iter().chain(&["sandbox"]) {
        for variable in strings(&summary["environment"][*service]) {
            assert!(
                documented(&table, &variable),
                "compose gives {service} {variable}, which docs/operations.md does not document"
            );
        }
    }
    assert!(!documented(&table, "TOUCHPOINT_SMTP_NOPE"));

    let bad = scratch(
        "compose.yaml",
        "services:\n  cases:\n    image: touchpoint\n    restart: sometimes\n    depends_on: [nowhere]\n    bogus: 1\n",
    );
    let problems = refused("compose", &bad);
    assert!(
        problems.contains("nowhere") && problems.contains("bogus"),
        "{problems}"
    );
}

#[test]
fn the_dockerfile_passes_hadolint_and_builds_every_service() {
    let dockerfile = root().join("deploy/Dockerfile");
    let summary = passes("dockerfile", &dockerfile);
    assert_eq!(
        strings(&summary["stages"]).len(),
        2,
        "a build stage and a run stage"
    );
    let text = std::fs::read_to_string(&dockerfile).unwrap_or_default();
    for binary in SERVICES.iter().chain(&["sandbox"]) {
        assert!(text.contains(&format!("-p touchpoint-{binary}")));
        assert!(text.contains(&format!("target/release/touchpoint-{binary}")));
    }
    assert!(
        text.contains("USER 10001"),
        "the image runs as a user without privileges"
    );

    let bad = scratch("Dockerfile", "RUN echo hello\nFROM debian\n");
    refused("dockerfile", &bad);
}

#[test]
fn no_service_binary_is_built_with_the_provider_sandbox() {
    for service in SERVICES {
        // What the service's binary is linked from: its normal dependencies,
        // transitively, as the lock file has them.
        let output = Command::new(env!("CARGO"))
            .current_dir(root())
            .args([
                "tree",
                "--frozen",
                "--edges",
                "normal,build",
                "--prefix",
                "none",
            ])
            .args(["--package", &format!("touchpoint-{service}")])
            .output()
            .unwrap_or_else(|e| panic!("cargo tree: {e}"));
        assert!(
            output.status.success(),
            "cargo tree: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let tree = String::from_utf8_lossy(&output.stdout);
        assert!(
            tree.contains(&format!("touchpoint-{service} ")),
            "the tree names the service: {tree}"
        );
        assert!(
            !tree.contains("touchpoint-sandbox"),
            "touchpoint-{service} is built with the sandbox"
        );
    }
    // The sandbox is still what dispatch's tests run against.
    let output = Command::new(env!("CARGO"))
        .current_dir(root())
        .args([
            "tree", "--frozen", "--edges", "dev", "--depth", "1", "--prefix", "none",
        ])
        .args(["--package", "touchpoint-dispatch"])
        .output()
        .unwrap_or_else(|e| panic!("cargo tree: {e}"));
    assert!(String::from_utf8_lossy(&output.stdout).contains("touchpoint-sandbox"));
}
