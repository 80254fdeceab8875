"""Checks the deployment files against the schemas their tools use.

    validate.py k8s FILE        rendered kustomize output: every object against the
                                Kubernetes 1.32 schema (strict: an unknown field
                                is an error), KafkaTopic and KafkaUser against
                                Strimzi's fields
    validate.py compose FILE    a compose file against the Compose Specification
    validate.py dockerfile FILE a Dockerfile through hadolint (errors fail)

On success it prints one JSON line summing up what it checked, for the test that
calls it to assert on; on failure, each problem on its own line, and exits 1.
"""

import json
import pathlib
import subprocess
import sys
import sysconfig

import jsonschema
import kubernetes_validate
import yaml

HERE = pathlib.Path(__file__).parent
KUBERNETES_VERSION = "1.32.0"


def k8s(path):
    problems, objects, topics, deployments, users = [], [], {}, {}, {}
    topic_schema = json.loads((HERE / "kafkatopic.schema.json").read_text())
    user_schema = json.loads((HERE / "kafkauser.schema.json").read_text())
    with open(path) as f:
        documents = [d for d in yaml.safe_load_all(f) if d is not None]
    for doc in documents:
        kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
        objects.append(f"{kind}/{name}")
        try:
            if kind == "KafkaTopic":
                jsonschema.validate(doc, topic_schema)
                spec = doc["spec"]
                topics[spec["topicName"]] = {
                    "partitions": spec["partitions"],
                    "replicas": spec["replicas"],
                }
            elif kind == "KafkaUser":
                jsonschema.validate(doc, user_schema)
                users[name] = user_summary(doc)
            else:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            if kind == "Deployment":
                deployments[name] = deployment_summary(doc)
        except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as e:
            where = "/".join(str(p) for p in e.path)
            problems.append(f"{kind}/{name}: {where}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{kind}/{name}: no schema for {doc.get('apiVersion')}")
    summary = {
        "objects": sorted(objects),
        "topics": topics,
        "deployments": deployments,
        "users": users,
    }
    return problems, summary


def user_summary(doc):
    """A KafkaUser's grants, as `type:pattern:name` -> sorted operations."""
    grants = {}
    for acl in doc["spec"]["authorization"]["acls"]:
        if acl.get("type", "allow") != "allow":
            continue
        resource = acl["resource"]
        key = ":".join(
            [resource["type"], resource.get("patternType", "literal"), resource.get("name", "")]
        )
        grants[key] = sorted(set(grants.get(key, [])) | set(acl["operations"]))
    return {"authentication": doc["spec"]["authentication"]["type"], "grants": grants}


def deployment_summary(doc):
    """What the test asserts about each Deployment beyond its schema."""
    pod = doc["spec"]["template"]["spec"]
    containers = pod.get("containers", []) + pod.get("initContainers", [])
    main = pod.get("containers", [{}])[0]
    return {
        "replicas": doc["spec"].get("replicas", 1),
        "grpc_probes": all(
            "grpc" in main.get(probe, {}) for probe in ("readinessProbe", "livenessProbe")
        ),
        "limits": all(
            {"cpu", "memory"} <= set(c.get("resources", {}).get(part, {}))
            for c in containers
            for part in ("requests", "limits")
        ),
        "non_root": pod.get("securityContext", {}).get("runAsNonRoot") is True
        and all(
            c.get("securityContext", {}).get("allowPrivilegeEscalation") is False
            for c in containers
        ),
        "grace_seconds": pod.get("terminationGracePeriodSeconds"),
        "secrets": sorted(
            {
                e["valueFrom"]["secretKeyRef"]["name"]
                for e in main.get("env", [])
                if "secretKeyRef" in e.get("valueFrom", {})
            }
        ),
    }


def compose(path):
    # The Compose Specification's schema, as docker-compose ships it.
    schema_file = pathlib.Path(sysconfig.get_paths()["purelib"]) / "compose/config/compose_spec.json"
    schema = json.loads(schema_file.read_text())
    with open(path) as f:
        doc = yaml.safe_load(f)
    validator = jsonschema.Draft7Validator(schema)
    problems = [
        f"{'/'.join(str(p) for p in e.path)}: {e.message}" for e in validator.iter_errors(doc)
    ]
    services = doc.get("services", {}) if isinstance(doc, dict) else {}
    for name, service in services.items():
        for dependency in service.get("depends_on", {}) or {}:
            if dependency not in services:
                problems.append(f"services/{name}: depends on unknown service {dependency}")
    env = {
        name: sorted((service.get("environment") or {}).keys())
        for name, service in services.items()
    }
    return problems, {"services": sorted(services), "environment": env}


def dockerfile(path):
    run = subprocess.run(
        ["hadolint", "--no-color", "--failure-threshold", "error", str(path)],
        capture_output=True,
        text=True,
    )
    problems = [line for line in run.stdout.splitlines() if " DL" in line or " SC" in line]
    errors = [p for p in problems if " error:" in p]
    stages = [
        line.split()[3] if len(line.split()) > 3 else ""
        for line in pathlib.Path(path).read_text().splitlines()
        if line.upper().startswith("FROM ")
    ]
    return errors if run.returncode != 0 else [], {"stages": stages, "warnings": problems}


def main(argv):
    checks = {"k8s": k8s, "compose": compose, "dockerfile": dockerfile}
    if len(argv) != 3 or argv[1] not in checks:
        print(__doc__, file=sys.stderr)
        return 2
    problems, summary = checks[argv[1]](argv[2])
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
