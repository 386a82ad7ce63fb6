"""batch/v1 Job manifests for attempts: the Job's name, labels, annotations, resources and pod template.

Pure: no I/O, no clock, no randomness. The same attempt always gives the same manifest, so two executors of
one cluster name an attempt's Job the same way and the second create gets 409 Conflict.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import xxhash

from plait.core.kubernetes_options import KubernetesOptions
from plait.errors import DefinitionError

TASK_CONTAINER = "task"
"""The name of the container that runs the task; a pod template override's unnamed container merges into it."""

LABEL_PREFIX = "plait.dev/"
MANAGED_BY_LABELS = {"app.kubernetes.io/managed-by": "plait", "app.kubernetes.io/component": "task"}
"""Labels on every Job plait starts (and on its pods): what an executor lists to adopt its Jobs."""

RUN_AS = 10001
"""The uid and gid tasks run as: the plait image's user (deploy/Dockerfile)."""

MAP_JOB_NAME_LENGTH = 57
"""A map Job's name is shorter than 63 characters: its pods' hostname is the name, ``-`` and the index (up to
99999), and a hostname is at most 63 characters."""
MAP_JOB_MOST_ITEMS = 100_000
"""The largest ``completions`` an Indexed Job with ``backoffLimitPerIndex`` may have."""
ATTEMPTS_ANNOTATION = "plait.dev/attempts"
"""On a map Job: the JSON list of the attempt ids its indexes run, in index order."""

_NAME_PREFIX = "plait-"
_NAME_HASH_LENGTH = 20  # 80 bits of xxh3-128
_LABEL_VALUE_LIMIT = 63
_LABEL_HASH_LENGTH = 10
_VALID_LABEL_VALUE = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_NOT_IN_LABEL_VALUE = re.compile(r"[^-A-Za-z0-9_.]+")
_NOT_IN_DNS_LABEL = re.compile(r"[^a-z0-9]+")
_RUNTIME = ("python", "-m", "plait_executor.kubernetes.runtime")
_NATIVE_RESOURCES = frozenset({"cpu", "memory", "ephemeral-storage"})
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
}
"""Lists merged item by item on these keys (as Kubernetes' strategic merge patch does); other lists are replaced."""


class AttemptIdentity(msgspec.Struct, frozen=True, kw_only=True):
    """Which attempt a Job runs, and where it was routed."""

    project: str
    domain: str
    execution_id: str
    node: str
    attempt_id: str
    attempt: int
    queue: str
    cluster: str


class InvalidKubernetesOptions(DefinitionError):
    """A task's Kubernetes options that no API server would accept in a Job (say, an extended resource requested
    and limited to different amounts)."""


def job_name(attempt_id: str, length: int = 63) -> str:
    """The Job's name: ``plait-`` + the readable tail of ``attempt_id`` + a hash of all of it.

    A valid DNS-1123 label of at most ``length`` (63) characters (a Job's name becomes a label value of its pods),
    the same for the same attempt id, and different for different ones (80 bits of xxh3-128).
    """
    digest = xxhash.xxh3_128_hexdigest(attempt_id.encode())[:_NAME_HASH_LENGTH]
    room = length - len(_NAME_PREFIX) - 1 - _NAME_HASH_LENGTH
    readable = _NOT_IN_DNS_LABEL.sub("-", attempt_id.lower())[-room:].strip("-")
    return f"{_NAME_PREFIX}{readable}-{digest}" if readable else f"{_NAME_PREFIX}{digest}"


def label_value(value: str) -> str:
    """``value`` itself when it is a valid label value; else its valid characters, cut to fit, and 40 bits of a
    hash of it (so that values which sanitize alike still get different labels)."""
    if len(value) <= _LABEL_VALUE_LIMIT and _VALID_LABEL_VALUE.fullmatch(value):
        return value
    digest = xxhash.xxh3_128_hexdigest(value.encode())[:_LABEL_HASH_LENGTH]
    room = _LABEL_VALUE_LIMIT - 1 - _LABEL_HASH_LENGTH
    readable = _NOT_IN_LABEL_VALUE.sub("-", value)[:room].strip("-_.")
    return f"{readable}-{digest}" if readable else digest


def identity_labels(attempt: AttemptIdentity) -> dict[str, str]:
    """The labels naming the attempt (sanitized); a Job and its pods are found by these."""
    return {**MANAGED_BY_LABELS, **{key: label_value(value) for key, value in _identity(attempt).items()}}


def identity_annotations(attempt: AttemptIdentity) -> dict[str, str]:
    """The same keys as ``identity_labels``, with the full values."""
    return _identity(attempt)


def job_manifest(
    attempt: AttemptIdentity, options: KubernetesOptions, timeout_seconds: float | None = None
) -> dict[str, Any]:
    """The batch/v1 Job that runs one attempt in one pod.

    ``backoffLimit`` is 0: plait owns retries, each of which is a new attempt and a new Job.
    ``timeout_seconds`` becomes ``activeDeadlineSeconds``, the cluster's own backstop for the task's timeout.
    """
    spec: dict[str, Any] = {"backoffLimit": 0, "ttlSecondsAfterFinished": options.ttl_seconds_after_finished}
    return _job(attempt, options, spec, timeout_seconds)


def indexed_job_manifest(
    attempt: AttemptIdentity,
    options: KubernetesOptions,
    items: int,
    concurrency: int = 0,
    timeout_seconds: float | None = None,
) -> dict[str, Any]:
    """The batch/v1 Indexed Job that runs a map's ``items``, one pod per index, ``concurrency`` at a time (0: all).

    Each pod reads its item's index from ``JOB_COMPLETION_INDEX``, which Kubernetes sets. ``backoffLimitPerIndex``
    is 0: a failed item fails its index alone, the other items still run, and plait retries the item.
    """
    if items < 1:
        raise ValueError(f"an indexed Job needs at least one item, not {items}")
    spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": items,
        "parallelism": min(concurrency, items) if concurrency > 0 else items,
        "backoffLimitPerIndex": 0,
        "ttlSecondsAfterFinished": options.ttl_seconds_after_finished,
    }
    return _job(attempt, options, spec, timeout_seconds)


def map_job_manifest(
    batch: AttemptIdentity, options: KubernetesOptions, attempts: Sequence[str], timeout_seconds: float | None = None
) -> dict[str, Any]:
    """The Indexed Job that runs a batch of map item ``attempts``, all at once: pod ``i`` runs ``attempts[i]``.

    ``batch.attempt_id`` names the batch (see ``batches.batch_name_key``); the Job's name is derived from it, at
    most ``MAP_JOB_NAME_LENGTH`` characters. The ``plait.dev/attempts`` annotation lists the attempts by index, and
    the task runtime runs with ``--batch``: it reads its attempt from ``PLAIT_DISPATCH_BATCH`` at its
    ``JOB_COMPLETION_INDEX``. The batch's attempts were all queued by the core within the map's concurrency, so
    they all run at once (``parallelism`` = their number).
    """
    if len(attempts) > MAP_JOB_MOST_ITEMS:
        raise ValueError(f"a map Job runs at most {MAP_JOB_MOST_ITEMS} attempts, not {len(attempts)}")
    job = indexed_job_manifest(batch, options, len(attempts), len(attempts), timeout_seconds)
    job["metadata"]["name"] = job_name(batch.attempt_id, MAP_JOB_NAME_LENGTH)
    job["metadata"]["annotations"][ATTEMPTS_ANNOTATION] = json.dumps(list(attempts), separators=(",", ":"))
    for container in job["spec"]["template"]["spec"]["containers"]:
        if container["name"] == TASK_CONTAINER:
            container["command"] = [*_RUNTIME, "--batch"]
    return job


def _identity(attempt: AttemptIdentity) -> dict[str, str]:
    return {
        f"{LABEL_PREFIX}project": attempt.project,
        f"{LABEL_PREFIX}domain": attempt.domain,
        f"{LABEL_PREFIX}execution": attempt.execution_id,
        f"{LABEL_PREFIX}node": attempt.node,
        f"{LABEL_PREFIX}attempt": attempt.attempt_id,
        f"{LABEL_PREFIX}attempt-number": str(attempt.attempt),
        f"{LABEL_PREFIX}queue": attempt.queue,
        f"{LABEL_PREFIX}cluster": attempt.cluster,
    }


def _job(
    attempt: AttemptIdentity, options: KubernetesOptions, spec: dict[str, Any], timeout_seconds: float | None
) -> dict[str, Any]:
    if timeout_seconds is not None:
        spec["activeDeadlineSeconds"] = max(1, math.ceil(timeout_seconds))
    template = {"metadata": _metadata(attempt), "spec": _pod_spec(attempt, options)}
    if options.pod_template is not None:
        template = _merged(copy.deepcopy(options.pod_template), template)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(attempt.attempt_id), **_metadata(attempt)},
        "spec": {**spec, "template": template},
    }


def _metadata(attempt: AttemptIdentity) -> dict[str, Any]:
    return {"labels": identity_labels(attempt), "annotations": identity_annotations(attempt)}


def _pod_spec(attempt: AttemptIdentity, options: KubernetesOptions) -> dict[str, Any]:
    if options.image is None:
        raise InvalidKubernetesOptions(f"no image for attempt {attempt.attempt_id}: set @task(image=...) or a default")
    container: dict[str, Any] = {
        "name": TASK_CONTAINER,
        "image": options.image,
        # The task runtime: it reads the attempt's dispatch, runs the task and reports its result itself.
        "command": [*_RUNTIME, "--attempt", attempt.attempt_id],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    if options.env:
        container["env"] = [{"name": name, "value": value} for name, value in sorted(options.env.items())]
    if resources := _resources(options.requests, options.limits):
        container["resources"] = resources
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
    }
    if options.service_account is not None:
        pod["serviceAccountName"] = options.service_account
    if options.node_selector:
        pod["nodeSelector"] = dict(options.node_selector)
    if options.tolerations:
        pod["tolerations"] = [toleration.as_manifest() for toleration in options.tolerations]
    return pod


def _resources(requests: Mapping[str, str | int], limits: Mapping[str, str | int]) -> dict[str, dict[str, str]]:
    wanted = {name: str(amount) for name, amount in requests.items()}
    capped = {name: str(amount) for name, amount in limits.items()}
    for name in (wanted.keys() | capped.keys()) - _NATIVE_RESOURCES:
        if name.startswith("hugepages-"):
            continue
        if name in wanted and name in capped and wanted[name] != capped[name]:
            raise InvalidKubernetesOptions(
                f"resource {name!r} cannot be overcommitted: its request ({wanted[name]}) must equal its limit "
                f"({capped[name]})"
            )
        wanted[name] = capped[name] = wanted.get(name) or capped[name]
    return {kind: amounts for kind, amounts in (("requests", wanted), ("limits", capped)) if amounts}


def _merged(base: Any, top: Any, key: str = "") -> Any:
    """``top`` over ``base``: maps merge, lists in ``_MERGE_KEYS`` merge item by item, anything else ``top`` wins;
    base's unnamed containers are the task's container."""
    if isinstance(base, Mapping) and isinstance(top, Mapping):
        merged = dict(base)
        for name, value in top.items():
            merged[name] = _merged(base[name], value, name) if name in base else value
        return merged
    if isinstance(base, list) and isinstance(top, list):
        if key == "tolerations":
            return [*base, *(item for item in top if item not in base)]
        if key in _MERGE_KEYS:
            return _merged_by(_MERGE_KEYS[key], base, top, TASK_CONTAINER if key == "containers" else None)
    return top


def _merged_by(field: str, base: list[Any], top: list[Any], unnamed: str | None) -> list[Any]:
    def key_of(item: Mapping[str, Any]) -> Any:
        return item.get(field, unnamed)

    below = {key_of(item): item for item in base}
    tops = {key_of(item) for item in top}
    return [
        *(_merged(below[key_of(item)], item) if key_of(item) in below else item for item in top),
        *(item for item in base if key_of(item) not in tops),
    ]
