"""Checks over rendered Kubernetes objects: pod security, disruption budgets, RBAC rules, network policies.

Each check returns the problems it finds (empty when none), so a test can show that it does find them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.helpers.kustomize import Manifest, pod_containers, pod_spec

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


def workloads(objects: Iterable[Manifest]) -> list[Manifest]:
    return [manifest for manifest in objects if manifest["kind"] in WORKLOAD_KINDS]


def of_kind(objects: Iterable[Manifest], kind: str) -> list[Manifest]:
    return [manifest for manifest in objects if manifest["kind"] == kind]


def named(objects: Iterable[Manifest], kind: str, name: str) -> Manifest:
    [found] = [manifest for manifest in of_kind(objects, kind) if manifest["metadata"]["name"] == name]
    return found


def pod_labels(workload: Manifest) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions) selects ``labels``; ``{}`` selects everything."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        matched = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not matched:
            return False
    return True


# --- pod security ------------------------------------------------------------------------------------------


def security_problems(workload: Manifest) -> list[str]:
    """What keeps ``workload``'s containers from running non-root, read-only and unprivileged."""
    spec = pod_spec(workload)
    assert spec is not None, f"{workload['kind']} has no pods"
    name = f"{workload['kind']}/{workload['metadata']['name']}"
    pod_context = spec.get("securityContext", {})
    problems = [f"{name}: {key} is set" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]
    for container in pod_containers(workload):
        context = container.get("securityContext", {})
        where = f"{name} container {container['name']}"

        def effective(key: str, context: Mapping[str, Any] = context) -> Any:
            return context.get(key, pod_context.get(key))

        if effective("runAsNonRoot") is not True:
            problems.append(f"{where}: runAsNonRoot is not true")
        if effective("runAsUser") in (None, 0):
            problems.append(f"{where}: runs as {effective('runAsUser')!r}, not a numeric non-root user")
        if context.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: root filesystem is writable")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: privilege escalation is allowed")
        if context.get("privileged"):
            problems.append(f"{where}: privileged")
        capabilities = context.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []) or capabilities.get("add"):
            problems.append(f"{where}: capabilities are not all dropped ({capabilities})")
        if (effective("seccompProfile") or {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: seccomp profile is not RuntimeDefault")
    return problems


def writable_paths(workload: Manifest, container_name: str) -> dict[str, str]:
    """Mount path -> volume type (``emptyDir``, ``configMap``, ``persistentVolumeClaim``...) for one container."""
    spec = pod_spec(workload)
    assert spec is not None
    volume_types = {volume["name"]: next(key for key in volume if key != "name") for volume in spec.get("volumes", [])}
    for claim in workload["spec"].get("volumeClaimTemplates", []):
        volume_types[claim["metadata"]["name"]] = "persistentVolumeClaim"
    [container] = [c for c in spec["containers"] if c["name"] == container_name]
    return {
        mount["mountPath"]: volume_types[mount["name"]]
        for mount in container.get("volumeMounts", [])
        if not mount.get("readOnly")
    }


# --- disruption budgets ------------------------------------------------------------------------------------


def disruption_budget_problems(objects: list[Manifest]) -> list[str]:
    """Workloads without exactly one PodDisruptionBudget, and budgets that would block every drain."""
    budgets = of_kind(objects, "PodDisruptionBudget")
    problems = []
    for workload in workloads(objects):
        name = f"{workload['kind']}/{workload['metadata']['name']}"
        covering = [
            budget
            for budget in budgets
            if budget["metadata"].get("namespace") == workload["metadata"].get("namespace")
            and selects(budget["spec"]["selector"], pod_labels(workload))
        ]
        if len(covering) != 1:
            problems.append(f"{name}: {len(covering)} PodDisruptionBudgets select its pods, not 1")
            continue
        budget = covering[0]["spec"]
        replicas = workload["spec"].get("replicas", 1)
        if "minAvailable" in budget and budget["minAvailable"] >= replicas:
            problems.append(f"{name}: minAvailable {budget['minAvailable']} of {replicas} blocks every eviction")
        if "maxUnavailable" in budget and budget["maxUnavailable"] < 1:
            problems.append(f"{name}: maxUnavailable {budget['maxUnavailable']} blocks every eviction")
    return problems


# --- RBAC --------------------------------------------------------------------------------------------------


def granted(role: Manifest) -> set[tuple[str, str, str]]:
    """Every (API group, resource, verb) a Role or ClusterRole grants, with wildcards left as written."""
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule["verbs"]
    }


# --- network policies --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """One end of a connection: a pod (namespace, labels) or, with ``ip``, an address outside the pod network."""

    namespace: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    ip: str | None = None


def pod_peer(workload: Manifest, namespace_labels: Mapping[str, str] | None = None) -> Peer:
    namespace = workload["metadata"]["namespace"]
    labels = {"kubernetes.io/metadata.name": namespace, **(namespace_labels or {})}
    return Peer(namespace=namespace, labels=pod_labels(workload), namespace_labels=labels)


def allowed(policies: list[Manifest], source: Peer, destination: Peer, port: int, protocol: str = "TCP") -> bool:
    """Whether NetworkPolicy semantics let ``source`` open ``port`` on ``destination``: the source's egress and
    the destination's ingress must both allow it (a pod no policy of that direction selects is not isolated)."""
    return _direction_allows(policies, "Egress", source, destination, port, protocol) and _direction_allows(
        policies, "Ingress", destination, source, port, protocol
    )


def _direction_allows(
    policies: list[Manifest], direction: str, pod: Peer, peer: Peer, port: int, protocol: str
) -> bool:
    if pod.ip is not None:
        return True
    isolating = [
        policy
        for policy in policies
        if policy["metadata"]["namespace"] == pod.namespace
        and direction in _policy_types(policy)
        and selects(policy["spec"]["podSelector"], pod.labels)
    ]
    if not isolating:
        return True
    rules_key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    return any(
        _rule_allows(rule, peers_key, policy["metadata"]["namespace"], peer, port, protocol)
        for policy in isolating
        for rule in policy["spec"].get(rules_key) or []
    )


def _policy_types(policy: Manifest) -> list[str]:
    spec = policy["spec"]
    if "policyTypes" in spec:
        types: list[str] = spec["policyTypes"]
        return types
    return ["Ingress", "Egress"] if "egress" in spec else ["Ingress"]


def _rule_allows(rule: Manifest, peers_key: str, namespace: str, peer: Peer, port: int, protocol: str) -> bool:
    ports = rule.get("ports") or []
    if ports and not any(_port_matches(entry, port, protocol) for entry in ports):
        return False
    peers = rule.get(peers_key) or []
    return not peers or any(_peer_matches(entry, namespace, peer) for entry in peers)


def _port_matches(entry: Manifest, port: int, protocol: str) -> bool:
    if entry.get("protocol", "TCP") != protocol:
        return False
    if "port" not in entry:
        return True
    if not isinstance(entry["port"], int):
        raise NotImplementedError(f"named port {entry['port']!r} in a NetworkPolicy")
    return bool(entry["port"] <= port <= entry.get("endPort", entry["port"]))


def _peer_matches(entry: Manifest, namespace: str, peer: Peer) -> bool:
    if "ipBlock" in entry:
        if peer.ip is None:
            return False
        address = ipaddress.ip_address(peer.ip)
        block = entry["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(excepted) for excepted in block.get("except", [])
        )
    if peer.ip is not None:
        return False
    if "namespaceSelector" in entry:
        in_namespace = selects(entry["namespaceSelector"], peer.namespace_labels)
    else:
        in_namespace = peer.namespace == namespace
    return in_namespace and selects(entry.get("podSelector", {}), peer.labels)
