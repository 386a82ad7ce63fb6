"""The API server's defaults for a created Job, and the Job controller's part: the pods a Job needs, and the Job's
status (active, ready, succeeded, failed, completed and failed indexes, conditions) as its pods end."""

from __future__ import annotations

import copy
import uuid
from typing import Any, Literal

from tests.helpers.kube_api import pods
from tests.helpers.kube_api.selectors import LabelSelector
from tests.helpers.kube_api.status import not_found
from tests.helpers.kube_api.store import ObjectStore

FOREVER = 2**31 - 1
PropagationPolicy = Literal["Orphan", "Background", "Foreground"]


def with_defaults(job: dict[str, Any], namespace: str) -> dict[str, Any]:
    """``job`` as the API server stores it on create: identity, defaulted spec, selector and pod labels."""
    job = copy.deepcopy(job)
    metadata, spec = job["metadata"], job["spec"]
    uid = str(uuid.uuid4())
    metadata.update(namespace=namespace, uid=uid, creationTimestamp=pods.now(), generation=1)
    indexed = spec.get("completionMode") == "Indexed"
    if not indexed and "parallelism" not in spec and "completions" not in spec:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", FOREVER if "backoffLimitPerIndex" in spec else 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    name = metadata["name"]
    template_metadata = spec["template"].setdefault("metadata", {})
    template_metadata.setdefault("labels", {}).update(
        {
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": uid,
            "job-name": name,
        }
    )
    if not metadata.get("labels"):
        metadata["labels"] = dict(template_metadata["labels"])
    pod = spec["template"]["spec"]
    pod.setdefault("dnsPolicy", "ClusterFirst")
    pod.setdefault("schedulerName", "default-scheduler")
    pod.setdefault("terminationGracePeriodSeconds", 30)
    pod.setdefault("securityContext", {})
    for container in pod["containers"]:
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        latest = ":" not in container["image"].rsplit("/", 1)[-1] or container["image"].endswith(":latest")
        container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    job["status"] = {}
    return job


class JobController:
    """Plays the Job controller over the store: call ``sync`` after anything that changes a Job or its pods."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        self._counted: set[str] = set()  # uids of ended pods already in their Job's status
        self._index_failures: dict[tuple[str, int], int] = {}  # failed pods of an index, by Job uid and index

    def pods_of(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        namespace, uid = job["metadata"]["namespace"], job["metadata"]["uid"]
        selector = LabelSelector(f"batch.kubernetes.io/controller-uid={uid}")
        return self._store.list("pods", namespace, selector)

    def sync(self, namespace: str, name: str) -> None:
        job = self._store.get("jobs", namespace, name)
        if job is None or "deletionTimestamp" in job["metadata"] or _finished(job):
            return
        before = copy.deepcopy(job)
        spec, status = job["spec"], job["status"]
        owned = self.pods_of(job)
        self._count_ended(job, owned)
        active = [pod for pod in owned if not pods.is_finished(pod)]
        if status.get("failed", 0) > spec["backoffLimit"]:
            self._finish(job, active, "BackoffLimitExceeded", "Job has reached the specified backoff limit")
        elif spec["completionMode"] == "Indexed":
            self._sync_indexed(job, active)
        else:
            self._sync_non_indexed(job, active)
        if job != before:
            self._store.put("jobs", job)

    def expire_deadline(self, namespace: str, name: str) -> None:
        job = self._job(namespace, name)
        if _finished(job):
            return
        active = [pod for pod in self.pods_of(job) if not pods.is_finished(pod)]
        job["status"]["failed"] = job["status"].get("failed", 0) + len(active)
        self._finish(job, active, "DeadlineExceeded", "Job was active longer than specified deadline")
        self._store.put("jobs", job)

    def delete(self, namespace: str, name: str, policy: PropagationPolicy) -> dict[str, Any]:
        """Delete the Job; its pods too unless ``policy`` is Orphan. Returns the Job as it was."""
        job = self._job(namespace, name)
        owned = self.pods_of(job)
        if policy == "Foreground":
            job["metadata"].update(deletionTimestamp=pods.now(), deletionGracePeriodSeconds=0)
            job["metadata"]["finalizers"] = ["foregroundDeletion"]
            job = self._store.put("jobs", job)
            for pod in owned:
                self.delete_pod(pod)
            self._collect_owned_secrets(job, orphan=False)
            self._store.remove("jobs", namespace, name)
            return job
        self._store.remove("jobs", namespace, name)
        for pod in owned:
            if policy == "Orphan":
                del pod["metadata"]["ownerReferences"]
                self._store.put("pods", pod)
            else:
                self.delete_pod(pod)
        self._collect_owned_secrets(job, orphan=policy == "Orphan")
        return job

    def _collect_owned_secrets(self, job: dict[str, Any], orphan: bool) -> None:
        """The garbage collector's part for the Secrets ``job`` owns: deleted with it, or left without their owner
        reference (Orphan)."""
        uid, namespace = job["metadata"]["uid"], job["metadata"]["namespace"]
        for secret in self._store.list("secrets", namespace, LabelSelector("")):
            owners = secret["metadata"].get("ownerReferences", [])
            if not any(owner.get("uid") == uid for owner in owners):
                continue
            if orphan:
                secret["metadata"]["ownerReferences"] = [owner for owner in owners if owner.get("uid") != uid]
                self._store.put("secrets", secret)
            else:
                self._store.remove("secrets", namespace, secret["metadata"]["name"])

    def delete_pod(self, pod: dict[str, Any], kill: bool = False) -> None:
        """A graceful deletion: the pod is marked, then gone. ``kill``: a deletion through the API of a pod whose
        Job goes on: its kubelet ends its containers first (SIGTERM: exit code 143), and its Job counts it as
        failed before it is gone."""
        metadata = pod["metadata"]
        metadata.update(deletionTimestamp=pods.now(), deletionGracePeriodSeconds=30)
        pod = self._store.put("pods", pod)
        if kill and not pods.is_finished(pod):
            if pod["status"]["phase"] == "Pending":
                pods.started(pod)
            pods.terminated(pod, 143, "Error")
            self._store.put("pods", pod)
            for owner in metadata.get("ownerReferences", []):
                self.sync(metadata["namespace"], owner["name"])
        self._store.remove("pods", metadata["namespace"], metadata["name"])

    def _job(self, namespace: str, name: str) -> dict[str, Any]:
        job = self._store.get("jobs", namespace, name)
        if job is None:
            raise not_found("jobs", "batch", name)
        return job

    def _count_ended(self, job: dict[str, Any], owned: list[dict[str, Any]]) -> None:
        status, per_index = job["status"], job["spec"].get("backoffLimitPerIndex")
        completed, failed = _indexes(status.get("completedIndexes")), _indexes(status.get("failedIndexes"))
        for pod in owned:
            uid = pod["metadata"]["uid"]
            if not pods.is_finished(pod) or uid in self._counted:
                continue
            self._counted.add(uid)
            index = pods.index_of(pod)
            if pod["status"]["phase"] == "Succeeded":
                status["succeeded"] = status.get("succeeded", 0) + 1
                completed |= {index} if index is not None else set()
            else:
                status["failed"] = status.get("failed", 0) + 1
                if index is not None and per_index is not None:
                    key = (job["metadata"]["uid"], index)
                    self._index_failures[key] = self._index_failures.get(key, 0) + 1
                    failed |= {index} if self._index_failures[key] > per_index else set()
        if job["spec"]["completionMode"] == "Indexed":
            status["completedIndexes"] = _compressed(completed)
            if per_index is not None:
                status["failedIndexes"] = _compressed(failed)

    def _sync_indexed(self, job: dict[str, Any], active: list[dict[str, Any]]) -> None:
        spec, status = job["spec"], job["status"]
        done = _indexes(status["completedIndexes"]) | _indexes(status.get("failedIndexes"))
        if len(done) == spec["completions"]:
            if status.get("failedIndexes"):
                self._finish(job, active, "FailedIndexes", "Job has failed indexes")
            else:
                self._finish(job, active)
            return
        running = {pods.index_of(pod) for pod in active}
        waiting = [index for index in range(spec["completions"]) if index not in done | running]
        for index in waiting[: max(0, spec["parallelism"] - len(active))]:
            active.append(self._create_pod(job, index))
        self._show_active(job, active)

    def _sync_non_indexed(self, job: dict[str, Any], active: list[dict[str, Any]]) -> None:
        spec, succeeded = job["spec"], job["status"].get("succeeded", 0)
        completions = spec.get("completions")
        if completions is None:  # a work queue: done once a pod succeeded and the others ended
            done, wanted = bool(succeeded and not active), 0 if succeeded else spec["parallelism"]
        else:
            done, wanted = succeeded >= completions, min(spec["parallelism"], completions - succeeded)
        if done:
            self._finish(job, active)
            return
        for _ in range(wanted - len(active)):
            active.append(self._create_pod(job, None))
        self._show_active(job, active)

    def _create_pod(self, job: dict[str, Any], index: int | None) -> dict[str, Any]:
        return self._store.put("pods", pods.pod_of(job, index, str(uuid.uuid4())))

    def _show_active(self, job: dict[str, Any], active: list[dict[str, Any]]) -> None:
        status = job["status"]
        status.setdefault("startTime", pods.now())
        status.update(active=len(active), ready=sum(pods.is_ready(pod) for pod in active), terminating=0)
        status["uncountedTerminatedPods"] = {}

    def _finish(self, job: dict[str, Any], active: list[dict[str, Any]], failure: str = "", message: str = "") -> None:
        for pod in active:
            self.delete_pod(pod)
        at, status = pods.now(), job["status"]
        status.setdefault("startTime", at)
        status.update(active=0, ready=0, terminating=0, uncountedTerminatedPods={})
        if failure:
            steps = [("FailureTarget", failure, message), ("Failed", failure, message)]
        else:
            done = "Reached expected number of succeeded pods"
            steps = [("SuccessCriteriaMet", "CompletionsReached", done), ("Complete", "CompletionsReached", done)]
            status["completionTime"] = at
        status["conditions"] = [
            *status.get("conditions", []),
            *(
                {
                    "type": kind,
                    "status": "True",
                    "lastProbeTime": at,
                    "lastTransitionTime": at,
                    "reason": reason,
                    "message": text,
                }
                for kind, reason, text in steps
            ),
        ]


def _finished(job: dict[str, Any]) -> bool:
    return any(
        condition["type"] in ("Complete", "Failed") and condition["status"] == "True"
        for condition in job["status"].get("conditions", [])
    )


def _indexes(compressed: str | None) -> set[int]:
    """``"0,2-4"`` → {0, 2, 3, 4}: how a Job's status writes sets of indexes."""
    found: set[int] = set()
    for part in (compressed or "").split(","):
        if part:
            first, _, last = part.partition("-")
            found |= set(range(int(first), int(last or first) + 1))
    return found


def _compressed(indexes: set[int]) -> str:
    ranges: list[list[int]] = []
    for index in sorted(indexes):
        if ranges and ranges[-1][1] == index - 1:
            ranges[-1][1] = index
        else:
            ranges.append([index, index])
    return ",".join(str(first) if first == last else f"{first}-{last}" for first, last in ranges)
