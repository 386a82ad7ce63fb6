"""deploy/k8s and deploy/compose, checked offline: every rendered object is valid for the Kubernetes API (strict
schemas of kubernetes-validate), and the properties deploy/README.md promises hold in every environment."""

from __future__ import annotations

import copy
import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from plait.settings import VARIABLES
from tests.helpers.kustomize import (
    Manifest,
    UnsupportedKustomization,
    image_name,
    load_documents,
    pod_containers,
    pod_spec,
    render,
    strategic_merge,
)
from tests.helpers.manifest_checks import (
    Peer,
    allowed,
    disruption_budget_problems,
    granted,
    named,
    of_kind,
    pod_labels,
    pod_peer,
    security_problems,
    workloads,
    writable_paths,
)
from tests.helpers.processes import REPO

DEPLOY = REPO / "deploy"
ENVIRONMENTS = {
    "base": DEPLOY / "k8s" / "base",
    "dev": DEPLOY / "k8s" / "overlays" / "dev",
    "production": DEPLOY / "k8s" / "overlays" / "production",
}
KUBERNETES_VERSION = "1.31"  # the oldest release the manifests are checked against; kubernetes-validate ships it
SERVICES = ("scheduler", "executor", "catalog")

EXPECTED_REPLICAS = {
    "base": {"scheduler": 2, "executor": 2, "catalog": 2, "nats": 3, "postgres": 1},
    "dev": {"scheduler": 1, "executor": 1, "catalog": 1, "nats": 1, "postgres": 1},
    "production": {"scheduler": 3, "executor": 3, "catalog": 3, "nats": 3, "postgres": 1},
}
EXPECTED_STREAM_REPLICAS = {"base": "3", "dev": "1", "production": "3"}

EXECUTOR_GRANTS = {
    ("batch", "jobs", "create"),
    ("batch", "jobs", "get"),
    ("batch", "jobs", "list"),
    ("batch", "jobs", "watch"),
    ("batch", "jobs", "delete"),
    ("", "pods", "get"),
    ("", "pods", "list"),
    ("", "pods", "watch"),
    ("", "pods/log", "get"),
    ("", "secrets", "create"),  # each Job's credential; it reads no Secret
}

# (from, to, port): every connection between the namespace's pods that the policies allow, and no other.
ALLOWED_CONNECTIONS = {
    ("scheduler", "nats", 4222),
    ("executor", "nats", 4222),
    ("catalog", "nats", 4222),
    ("nats", "nats", 6222),
    ("catalog", "postgres", 5432),
}
PROBED_PORTS = (4222, 6222, 8222, 5432, 8080, 9090)
PLAIT_SERVICES = ("scheduler", "executor", "catalog")
PROMETHEUS = Peer(
    namespace="monitoring",
    labels={"app.kubernetes.io/name": "prometheus"},
    namespace_labels={"kubernetes.io/metadata.name": "monitoring"},
)
KUBE_DNS = Peer(
    namespace="kube-system",
    labels={"k8s-app": "kube-dns"},
    namespace_labels={"kubernetes.io/metadata.name": "kube-system"},
)
API_SERVER = Peer(ip="203.0.113.10")  # outside the pod network, as an API server is


@functools.cache
def _rendered(environment: str) -> tuple[Manifest, ...]:
    return tuple(render(ENVIRONMENTS[environment]))


def rendered(environment: str) -> list[Manifest]:
    """A fresh copy of an environment's objects, which a test may change."""
    return copy.deepcopy(list(_rendered(environment)))


def dockerfile_value(pattern: str) -> str:
    found = re.search(pattern, (DEPLOY / "Dockerfile").read_text(), flags=re.M)
    assert found is not None, pattern
    return found.group(1)


def schema_errors(objects: list[Manifest]) -> list[str]:
    errors = []
    for manifest in objects:
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            errors.append(f"{manifest['kind']}/{manifest['metadata']['name']} {path}: {error.message}")
    return errors


def connection_problems(objects: list[Manifest]) -> list[str]:
    """Where the network policies differ from ALLOWED_CONNECTIONS, DNS for all and the API for the executor."""
    policies = of_kind(objects, "NetworkPolicy")
    pods = {workload["metadata"]["name"]: pod_peer(workload) for workload in workloads(objects)}
    problems = []
    for source, source_peer in pods.items():
        for destination, destination_peer in pods.items():
            for port in PROBED_PORTS:
                expected = (source, destination, port) in ALLOWED_CONNECTIONS
                if allowed(policies, source_peer, destination_peer, port) != expected:
                    problems.append(f"{source} -> {destination}:{port} should be {'allowed' if expected else 'denied'}")
        for protocol in ("UDP", "TCP"):
            if not allowed(policies, source_peer, KUBE_DNS, 53, protocol):
                problems.append(f"{source} -> DNS {protocol}/53 should be allowed")
        expected_api = "allowed" if source == "executor" else "denied"
        for port in (443, 6443):
            if allowed(policies, source_peer, API_SERVER, port) != (expected_api == "allowed"):
                problems.append(f"{source} -> the API server :{port} should be {expected_api}")
        if allowed(policies, source_peer, API_SERVER, 80):
            problems.append(f"{source} -> outside :80 should be denied")
    for destination, destination_peer in pods.items():
        scraped = destination in PLAIT_SERVICES
        if allowed(policies, PROMETHEUS, destination_peer, 9090) != scraped:
            problems.append(f"prometheus -> {destination}:9090 should be {'allowed' if scraped else 'denied'}")
        if allowed(policies, PROMETHEUS, destination_peer, 4222):
            problems.append(f"prometheus -> {destination}:4222 should be denied")
    outsider = Peer(namespace="elsewhere", labels=pod_labels(named(objects, "Deployment", "scheduler")))
    for destination, destination_peer in pods.items():
        for port in PROBED_PORTS:
            if allowed(policies, outsider, destination_peer, port):
                problems.append(f"a pod of another namespace -> {destination}:{port} should be denied")
    return problems


# --- rendering and schemas ---------------------------------------------------------------------------------


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_object_is_valid_for_the_kubernetes_api(environment: str) -> None:
    objects = rendered(environment)
    assert {manifest["kind"] for manifest in objects} >= {"Deployment", "StatefulSet", "NetworkPolicy", "Role"}
    assert schema_errors(objects) == []


def test_strict_validation_rejects_an_unknown_or_misplaced_field() -> None:
    objects = rendered("base")
    scheduler = named(objects, "Deployment", "scheduler")
    scheduler["spec"]["template"]["spec"]["containers"][0]["runAsUser"] = 10001  # belongs in securityContext
    budget = named(objects, "PodDisruptionBudget", "scheduler")
    budget["spec"]["maxUnavailable"] = [1]
    errors = schema_errors([scheduler, budget])
    assert len(errors) == 2, errors
    assert "runAsUser" in errors[0]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_renderer_agrees_with_kubectl_kustomize(environment: str) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: tests/helpers/kustomize.py is not compared with kustomize here")
    output = subprocess.run(
        [kubectl, "kustomize", str(ENVIRONMENTS[environment])], check=True, capture_output=True, text=True
    ).stdout
    expected = [document for document in yaml.safe_load_all(output) if document is not None]
    assert _by_identity(rendered(environment)) == _by_identity(expected)


def _by_identity(objects: list[Manifest]) -> dict[tuple[str, str, str], Any]:
    return {(m["kind"], m["metadata"].get("namespace", ""), m["metadata"]["name"]): _unordered(m) for m in objects}


def _unordered(value: Any) -> Any:
    """Lists of named items sorted by name: kustomize orders a merged list's items differently, to no effect."""
    if isinstance(value, dict):
        return {key: _unordered(item) for key, item in value.items()}
    if isinstance(value, list):
        items = [_unordered(item) for item in value]
        if items and all(isinstance(item, dict) and "name" in item for item in items):
            return sorted(items, key=lambda item: str(item["name"]))
        return items
    return value


def test_the_renderer_refuses_what_it_does_not_render(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\ncommonLabels: {team: data}\n")
    with pytest.raises(UnsupportedKustomization, match="commonLabels"):
        render(tmp_path)
    with pytest.raises(UnsupportedKustomization, match="ports"):
        strategic_merge({"ports": [{"containerPort": 1}]}, {"ports": [{"containerPort": 2}]})


def test_the_renderer_sets_images_by_name() -> None:
    assert image_name("registry.example.com:5000/team/plait:0.1.0") == "registry.example.com:5000/team/plait"
    assert image_name("plait@sha256:abc") == "plait"
    containers = [container for workload in workloads(rendered("production")) for container in pod_containers(workload)]
    images = {container["image"] for container in containers}
    assert images == {"plait:latest", "nats:2.12-alpine", "postgres:16"}


# --- pod security ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_container_is_non_root_read_only_and_unprivileged(environment: str) -> None:
    found = workloads(rendered(environment))
    assert len(found) == 5
    assert [problem for workload in found for problem in security_problems(workload)] == []


def test_the_security_check_rejects_a_root_writable_privileged_container() -> None:
    scheduler = named(rendered("base"), "Deployment", "scheduler")
    assert security_problems(scheduler) == []
    spec = scheduler["spec"]["template"]["spec"]
    container = spec["containers"][0]
    container["securityContext"].update(runAsUser=0, allowPrivilegeEscalation=True, readOnlyRootFilesystem=False)
    container["securityContext"]["capabilities"] = {"add": ["NET_ADMIN"], "drop": ["ALL"]}
    spec["securityContext"]["runAsNonRoot"] = False
    del spec["securityContext"]["seccompProfile"]
    problems = "\n".join(security_problems(scheduler))
    for expected in ("runAsNonRoot", "runs as 0", "writable", "escalation", "capabilities", "seccomp"):
        assert expected in problems


def test_the_security_check_rejects_a_container_that_sets_no_user() -> None:
    catalog = named(rendered("base"), "Deployment", "catalog")
    del catalog["spec"]["template"]["spec"]["securityContext"]
    problems = security_problems(catalog)
    assert any("runAsNonRoot" in problem for problem in problems)
    assert any("runs as None" in problem for problem in problems)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_plait_runs_as_the_images_user_and_writes_only_to_empty_dirs(environment: str) -> None:
    user, group = dockerfile_value(r"^USER (\d+):(\d+)$"), dockerfile_value(r"^USER \d+:(\d+)$")
    plait_home = dockerfile_value(r"PLAIT_HOME=(\S+)")
    for service in SERVICES:
        deployment = named(rendered(environment), "Deployment", service)
        pod_context = deployment["spec"]["template"]["spec"]["securityContext"]
        assert (str(pod_context["runAsUser"]), str(pod_context["runAsGroup"])) == (user, group)
        assert writable_paths(deployment, service) == {"/tmp": "emptyDir", plait_home: "emptyDir"}


# --- disruption budgets, RBAC, references ------------------------------------------------------------------


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_workload_has_one_disruption_budget_that_allows_drains(environment: str) -> None:
    assert disruption_budget_problems(rendered(environment)) == []


def test_the_budget_check_finds_a_missing_budget_and_one_that_blocks_drains() -> None:
    objects = rendered("dev")
    without_executor_budget = [m for m in objects if m != named(objects, "PodDisruptionBudget", "executor")]
    assert disruption_budget_problems(without_executor_budget) == [
        "Deployment/executor: 0 PodDisruptionBudgets select its pods, not 1"
    ]
    blocking = named(objects, "PodDisruptionBudget", "scheduler")["spec"]
    del blocking["maxUnavailable"]
    blocking["minAvailable"] = 1  # of 1 replica in dev
    assert disruption_budget_problems(objects) == ["Deployment/scheduler: minAvailable 1 of 1 blocks every eviction"]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_only_the_executor_may_use_the_kubernetes_api_only_for_jobs_pods_logs_and_credentials(environment: str) -> None:
    objects = rendered(environment)
    assert of_kind(objects, "ClusterRole") == [] and of_kind(objects, "ClusterRoleBinding") == []
    [role] = of_kind(objects, "Role")
    assert granted(role) == EXECUTOR_GRANTS
    [binding] = of_kind(objects, "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "plait-executor"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "plait-executor", "namespace": "plait"}]
    assert {role["metadata"]["namespace"], binding["metadata"]["namespace"]} == {"plait"}
    for workload in workloads(objects):
        spec = pod_spec(workload)
        assert spec is not None
        account = spec.get("serviceAccountName", "default")
        assert (account == "plait-executor") == (workload["metadata"]["name"] == "executor")
        # The executor's token too, until the Kubernetes back end that uses it exists: its attempts run in its pods.
        assert spec["automountServiceAccountToken"] is False


def test_the_grants_check_sees_one_verb_too_many() -> None:
    role = named(rendered("base"), "Role", "plait-executor")
    role["rules"][-1]["verbs"].append("list")
    assert granted(role) - EXECUTOR_GRANTS == {("", "secrets", "list")}


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_reference_names_an_object_of_the_same_namespace(environment: str) -> None:
    objects = rendered(environment)
    present = {(m["kind"], m["metadata"].get("namespace"), m["metadata"]["name"]) for m in objects}
    for workload in workloads(objects):
        namespace = workload["metadata"]["namespace"]
        spec = pod_spec(workload)
        assert spec is not None
        wanted = {("ServiceAccount", spec.get("serviceAccountName", "default"))} - {("ServiceAccount", "default")}
        wanted |= {("ConfigMap", v["configMap"]["name"]) for v in spec.get("volumes", []) if "configMap" in v}
        for container in pod_containers(workload):
            wanted |= {("ConfigMap", e["configMapRef"]["name"]) for e in container.get("envFrom", [])}
            for variable in container.get("env", []):
                if "secretKeyRef" in variable.get("valueFrom", {}):
                    wanted.add(("Secret", variable["valueFrom"]["secretKeyRef"]["name"]))
        if workload["kind"] == "StatefulSet":
            wanted.add(("Service", workload["spec"]["serviceName"]))
        assert {(kind, namespace, name) for kind, name in wanted} <= present
    for service in of_kind(objects, "Service"):
        assert any(service["spec"]["selector"].items() <= pod_labels(w).items() for w in workloads(objects))


# --- network policies --------------------------------------------------------------------------------------


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_network_policies_deny_all_but_the_documented_connections(environment: str) -> None:
    objects = rendered(environment)
    default_deny = named(objects, "NetworkPolicy", "default-deny")["spec"]
    assert default_deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    assert connection_problems(objects) == []


@pytest.mark.parametrize(
    ("removed", "now_wrong"),
    [
        ("plait-to-nats", "scheduler -> nats:4222 should be allowed"),
        ("executor-to-kubernetes-api", "executor -> the API server :6443 should be allowed"),
        ("dns", "catalog -> DNS UDP/53 should be allowed"),
        ("prometheus-scrapes-plait", "prometheus -> catalog:9090 should be allowed"),
    ],
)
def test_the_connection_check_sees_each_policy_missing(removed: str, now_wrong: str) -> None:
    """(Not default-deny: every pod is selected by some ingress and some egress policy besides, so removing it opens
    nothing; the test above checks it is there.)"""
    objects = rendered("base")
    objects.remove(named(objects, "NetworkPolicy", removed))
    assert now_wrong in connection_problems(objects)


# --- environments ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_each_environment_runs_its_documented_replicas(environment: str) -> None:
    objects = rendered(environment)
    replicas = {workload["metadata"]["name"]: workload["spec"]["replicas"] for workload in workloads(objects)}
    assert replicas == EXPECTED_REPLICAS[environment]
    stream_replicas = named(objects, "ConfigMap", "plait-config")["data"]["PLAIT_STREAM_REPLICAS"]
    assert stream_replicas == EXPECTED_STREAM_REPLICAS[environment]
    # Streams can have no more replicas than there are NATS nodes, and every node routes to every node.
    assert int(stream_replicas) <= replicas["nats"]
    nats_conf = named(objects, "ConfigMap", "nats-config")["data"]["nats.conf"]
    routes = re.findall(r"nats://(nats-\d+)\.nats-headless:6222", nats_conf)
    assert routes == ([f"nats-{i}" for i in range(replicas["nats"])] if replicas["nats"] > 1 else [])


# --- compose -----------------------------------------------------------------------------------------------


def plait_variables(environment: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in environment.items() if name.startswith("PLAIT_")}


def test_compose_sets_the_same_plait_settings_as_kubernetes() -> None:
    [compose] = load_documents(DEPLOY / "compose" / "compose.yaml")
    compose_env: dict[str, Any] = {}
    for service in SERVICES:
        service_env = compose["services"][service]["environment"]
        assert service_env.items() >= compose["x-plait-env"].items()
        compose_env |= plait_variables(service_env)
    objects = rendered("base")
    config = named(objects, "ConfigMap", "plait-config")["data"]
    kubernetes_env = plait_variables(config)
    for service in SERVICES:
        for container in pod_containers(named(objects, "Deployment", service)):
            kubernetes_env |= plait_variables({v["name"]: v.get("value") for v in container.get("env", [])})
    known = set(VARIABLES.values())
    assert set(compose_env) <= known and set(kubernetes_env) <= known
    # Compose leaves PLAIT_REPLICA at its default (<hostname>-<pid>); Kubernetes sets it to the pod's name.
    assert set(compose_env) == set(kubernetes_env) - {"PLAIT_REPLICA"}
    for name, value in compose_env.items():
        if "${" not in value and name in config:
            assert config[name] == value, name
    assert "PGPASSWORD" in compose["services"]["catalog"]["environment"]
