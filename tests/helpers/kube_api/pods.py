"""Pods as the Job controller creates them and as a kubelet reports them: the manifest from a Job's template and
the status of each step of a pod's life (scheduled, running, terminated, evicted, image pull failing)."""

from __future__ import annotations

import copy
import secrets
from datetime import UTC, datetime
from typing import Any

NODE_NAME = "stand-in-node"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the API server's generateName alphabet


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_of(job: dict[str, Any], index: int | None, uid: str) -> dict[str, Any]:
    """A new pod of ``job`` (for completion ``index`` of an Indexed Job), as the Job controller creates it."""
    template = copy.deepcopy(job["spec"]["template"])
    job_name = job["metadata"]["name"]
    metadata = template.get("metadata", {})
    labels = metadata.setdefault("labels", {})
    annotations = metadata.setdefault("annotations", {})
    spec = template["spec"]
    prefix = job_name if index is None else f"{job_name}-{index}"
    if index is not None:
        labels[COMPLETION_INDEX] = annotations[COMPLETION_INDEX] = str(index)
        spec.setdefault("hostname", prefix)
        for container in spec["containers"]:
            field = {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}
            container["env"] = [
                *container.get("env", []),
                {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": field}},
            ]
    spec["nodeName"] = NODE_NAME
    started = now()
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            **metadata,
            "name": f"{prefix}-{''.join(secrets.choice(_NAME_ALPHABET) for _ in range(5))}",
            "generateName": f"{prefix}-",
            "namespace": job["metadata"]["namespace"],
            "uid": uid,
            "creationTimestamp": started,
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": job_name,
                    "uid": job["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
        "status": {
            "phase": "Pending",
            "conditions": [_condition("PodScheduled", True, started)],
            "hostIP": "10.0.0.1",
            "startTime": started,
            "containerStatuses": [
                _container_status(container, {"waiting": {"reason": "ContainerCreating"}})
                for container in spec["containers"]
            ],
        },
    }


def index_of(pod: dict[str, Any]) -> int | None:
    index = pod["metadata"].get("annotations", {}).get(COMPLETION_INDEX)
    return int(index) if index is not None else None


def is_finished(pod: dict[str, Any]) -> bool:
    return pod["status"]["phase"] in ("Succeeded", "Failed")


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"]["conditions"])


def waiting_reason(pod: dict[str, Any]) -> str | None:
    state = pod["status"]["containerStatuses"][0]["state"]
    return state["waiting"]["reason"] if "waiting" in state else None


def started(pod: dict[str, Any]) -> None:
    at = now()
    status = pod["status"]
    status.update(phase="Running", podIP="10.1.0.1")
    status["conditions"] = [
        _condition(kind, True, at) for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    ]
    for container in status["containerStatuses"]:
        container.update(ready=True, started=True, state={"running": {"startedAt": at}})


def terminated(pod: dict[str, Any], exit_code: int, reason: str) -> None:
    """The containers ended with ``exit_code``; the pod succeeded when it is 0."""
    at = now()
    status = pod["status"]
    status["phase"] = "Succeeded" if exit_code == 0 else "Failed"
    not_ready = "PodCompleted" if exit_code == 0 else "PodFailed"
    status["conditions"] = [
        _condition("PodScheduled", True, at),
        _condition("Initialized", True, at),
        _condition("ContainersReady", False, at, not_ready),
        _condition("Ready", False, at, not_ready),
    ]
    for container in status["containerStatuses"]:
        began = container["state"].get("running", {}).get("startedAt", at)
        ended = {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": began,
            "finishedAt": at,
            "containerID": f"containerd://{secrets.token_hex(32)}",
        }
        container.update(ready=False, started=False, state={"terminated": ended})


def evicted(pod: dict[str, Any]) -> None:
    """The kubelet evicted the pod under memory pressure: its containers killed, the pod Failed, reason Evicted."""
    message = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 40Mi. "
    terminated(pod, 137, "Error")
    pod["status"].update(reason="Evicted", message=message)
    disruption = _condition("DisruptionTarget", True, now(), "TerminationByKubelet")
    pod["status"]["conditions"].append({**disruption, "message": message})


def image_pull_failed(pod: dict[str, Any]) -> None:
    """The kubelet failed to pull the image: ErrImagePull, then ImagePullBackOff on the next failure."""
    for container in pod["status"]["containerStatuses"]:
        image = container["image"]
        if container["state"].get("waiting", {}).get("reason") == "ErrImagePull":
            waiting = {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}"'}
        else:
            message = f'failed to pull and unpack image "{image}": not found'
            waiting = {"reason": "ErrImagePull", "message": message}
        container["state"] = {"waiting": waiting}


def _container_status(container: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": container["name"],
        "image": container["image"],
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "started": False,
        "state": state,
    }


def _condition(kind: str, true: bool, at: str, reason: str | None = None) -> dict[str, Any]:
    condition = {"type": kind, "status": "True" if true else "False", "lastTransitionTime": at}
    return {**condition, "reason": reason} if reason else condition
