"""How an attempt's Job ended, read from the Job and its pods (pure).

A Job that completed, or failed after its runtime stored a failing result (exit code ``REPORTED_FAILURE_EXIT``),
was reported by the runtime itself. Any other failure (OOMKilled, evicted, deadline exceeded, a crash before a
result was stored) is a system failure the executor reports, with its reason.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from plait_executor.kubernetes.manifests import TASK_CONTAINER
from plait_executor.kubernetes.runtime import REPORTED_FAILURE_EXIT

IMAGE_PULL_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})


class Lost(msgspec.Struct, frozen=True):
    """The attempt's pod ended without the runtime reporting: why, in a word (``reason``) and a sentence."""

    reason: str
    message: str
    pod: str | None = None  # the pod whose log tells more


def job_state(job: dict[str, Any]) -> Literal["running", "complete", "failed"]:
    for condition in job.get("status", {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") in ("Complete", "SuccessCriteriaMet"):
            return "complete"
        if condition.get("type") in ("Failed", "FailureTarget"):
            return "failed"
    return "running"


def item_state(job: dict[str, Any], index: int) -> Literal["running", "complete", "failed"]:
    """How the item at completion ``index`` of a map Job stands: its index completed, failed (its pod failed: with
    ``backoffLimitPerIndex`` 0 no other pod runs it), or the whole Job failed before it completed (its deadline)."""
    status = job.get("status", {})
    if index in indexes(status.get("completedIndexes")):
        return "complete"
    if index in indexes(status.get("failedIndexes")) or job_state(job) == "failed":
        return "failed"
    return "running"


def indexes(compressed: str | None) -> set[int]:
    """``"0,2-4"`` → {0, 2, 3, 4}: how a Job's status writes its completed and failed indexes."""
    found: set[int] = set()
    for part in (compressed or "").split(","):
        first, _, last = part.strip().partition("-")
        if first.isdecimal() and (not last or last.isdecimal()):
            found.update(range(int(first), int(last or first) + 1))
    return found


def lost_after_failure(job: dict[str, Any], pods: list[dict[str, Any]]) -> Lost | None:
    """Why a failed Job's attempt was lost (``pods``: the pods that ran it); None when its runtime reported the
    failure itself."""
    name = job["metadata"]["name"]
    failed = _job_failure(job)
    pod = pods[-1] if pods else None
    if pod is None:
        reason, message = failed or ("PodLost", "no pod left to tell why")
        return Lost(reason, f"Job {name} failed ({reason}): {message}")
    pod_name = pod["metadata"]["name"]
    status = pod.get("status", {})
    terminated = _terminated(pod)
    if status.get("reason") == "Evicted":
        return Lost("Evicted", f"pod {pod_name} was evicted: {status.get('message', '')}".rstrip(": "), pod_name)
    if terminated is not None:
        code, why = terminated.get("exitCode"), terminated.get("reason", "")
        if why == "OOMKilled":
            return Lost(
                "OOMKilled", f"pod {pod_name}: the task container ran out of memory (exit code {code})", pod_name
            )
        if code == REPORTED_FAILURE_EXIT:
            return None  # the runtime stored the task's failure
        if failed is not None and failed[0] == "DeadlineExceeded":
            return Lost("DeadlineExceeded", f"Job {name}: {failed[1]}", pod_name)
        return Lost("PodFailed", f"pod {pod_name}: the task container exited with code {code} ({why})", pod_name)
    reason, message = failed or ("PodFailed", f"pod {pod_name} failed ({status.get('phase')})")
    return Lost(reason, f"Job {name} failed ({reason}): {message}", pod_name)


def image_pull_failure(pods: list[dict[str, Any]]) -> Lost | None:
    """The image pull failure the Job's latest pod is waiting on, if any."""
    if not pods:
        return None
    pod = pods[-1]
    for container in pod.get("status", {}).get("containerStatuses") or []:
        waiting = container.get("state", {}).get("waiting") or {}
        if waiting.get("reason") in IMAGE_PULL_FAILURES:
            image = container.get("image", "")
            detail = waiting.get("message") or f"cannot pull image {image}"
            return Lost(waiting["reason"], f"pod {pod['metadata']['name']}: {detail}", pod["metadata"]["name"])
    return None


def pods_settled(pods: list[dict[str, Any]]) -> bool:
    """Whether the last pod says how it ended (its task container terminated, or the pod evicted or failed): the
    pods' watch may lag behind the Jobs', so a failed Job's pod may not say so yet."""
    if not pods:
        return False
    status = pods[-1].get("status", {})
    return _terminated(pods[-1]) is not None or status.get("reason") == "Evicted" or status.get("phase") == "Failed"


def _job_failure(job: dict[str, Any]) -> tuple[str, str] | None:
    for condition in job.get("status", {}).get("conditions") or []:
        if condition.get("type") in ("Failed", "FailureTarget") and condition.get("status") == "True":
            return condition.get("reason", "Failed"), condition.get("message", "")
    return None


def _terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    for container in pod.get("status", {}).get("containerStatuses") or []:
        if container.get("name") == TASK_CONTAINER:
            terminated: dict[str, Any] | None = container.get("state", {}).get("terminated")
            return terminated
    return None
