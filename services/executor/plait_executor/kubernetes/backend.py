"""The Kubernetes back end: each attempt runs as one batch/v1 Job whose pod runs the task runtime, which reports
the attempt itself; the executor creates the Job, follows it, and reports only the attempts whose pod was lost.
The item attempts of a map run in batches, each batch one Indexed Job (``batching``), one pod per item.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal

import aiohttp
import anyio
import anyio.abc
import msgspec
import structlog
from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient, BatchV1Api, Configuration, CoreV1Api, V1DeleteOptions
from kubernetes_asyncio.client.exceptions import ApiException
from structlog.typing import FilteringBoundLogger

from plait import codec
from plait.adapters.nats_auth import carries_credential, without_credential
from plait.core.dispatch import Dispatch
from plait.core.kubernetes_options import KubernetesOptions
from plait.protocol.nats_jwt import read_account_key
from plait.settings import VARIABLES
from plait_executor.attempt import AttemptOutcome, system_error
from plait_executor.kubernetes.batches import (
    BATCH_VARIABLE,
    attempts_of_job,
    batch_name_key,
    batch_of,
    encode_batch,
    is_map_item,
)
from plait_executor.kubernetes.batching import MOST_ITEMS, WINDOW_SECONDS, MapBatcher, Placed
from plait_executor.kubernetes.manifests import (
    LABEL_PREFIX,
    MANAGED_BY_LABELS,
    AttemptIdentity,
    job_manifest,
    job_name,
    label_value,
    map_job_manifest,
)
from plait_executor.kubernetes.runtime import DISPATCH_VARIABLE, NATS_URL_VARIABLE
from plait_executor.kubernetes.secret_mounts import with_secrets
from plait_executor.kubernetes.task_credential import credential_secret, with_credential
from plait_executor.kubernetes.verdicts import (
    Lost,
    image_pull_failure,
    indexes,
    item_state,
    job_state,
    lost_after_failure,
    pods_settled,
)
from plait_executor.kubernetes.watching import COMPLETION_INDEX, JOB_NAME_LABEL, ClusterView
from plait_executor.task_grants import grant_for, issue
from plait_executor.tracing import pod_trace_env

log: FilteringBoundLogger = structlog.get_logger("plait.executor.kubernetes")

LOG_TAIL_LINES = 30
IMAGE_PULL_GRACE_SECONDS = 120.0
FIRST_RETRY_SECONDS = 0.1
LONGEST_RETRY_SECONDS = 5.0


class KubernetesTarget(msgspec.Struct, frozen=True, kw_only=True):
    """Where and how an executor starts its Jobs."""

    cluster: str
    queue: str
    namespace: str = "default"
    image: str = ""  # for tasks that name none
    nats_url: str  # what the pods connect to
    context: str = ""  # the kubeconfig context; empty: in-cluster config, else the current context
    image_pull_grace_seconds: float = IMAGE_PULL_GRACE_SECONDS
    log_tail_lines: int = LOG_TAIL_LINES
    env: dict[str, str] = msgspec.field(default_factory=dict)  # more variables for every task container
    map_batch_seconds: float = WINDOW_SECONDS  # how long a batch of map items waits for more items
    map_batch_items: int = MOST_ITEMS  # the most items one map Job runs
    callout_seed_file: str = ""  # the NATS auth callout's account seed: each Job gets a task grant (task_credential)


def selector_of(target: KubernetesTarget) -> str:
    """The label selector of the Jobs (and pods) this executor's cluster and queue own."""
    labels = {
        **MANAGED_BY_LABELS,
        f"{LABEL_PREFIX}cluster": label_value(target.cluster),
        f"{LABEL_PREFIX}queue": label_value(target.queue),
    }
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


async def load_configuration(context: str) -> Configuration:
    """The API server and credentials: the kubeconfig ``context`` when named, else the in-cluster service
    account when running in a pod, else the kubeconfig's current context."""
    configuration = Configuration()
    if not context:
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return configuration
        except config.ConfigException:
            pass
    await config.load_kube_config(context=context or None, client_configuration=configuration)
    return configuration


@asynccontextmanager
async def kubernetes_backend(
    target: KubernetesTarget, configuration: Configuration | None = None
) -> AsyncIterator[KubernetesBackend]:
    """The back end, once its Jobs and pods are listed (the Jobs an earlier executor started are known then)."""
    configuration = configuration or await load_configuration(target.context)
    async with ApiClient(configuration) as client, anyio.create_task_group() as group:
        view = ClusterView(client, target.namespace, selector_of(target))
        await group.start(view.run)
        log.info("kubernetes_backend_started", namespace=target.namespace, jobs=len(view.jobs))
        try:
            yield KubernetesBackend(client, view, target, group)
        finally:
            group.cancel_scope.cancel()


class KubernetesBackend:
    """Runs each attempt as the Job ``job_name(attempt_id)``: created unless it exists (an executor restarted, or
    another one, started it: then it is followed), then followed until it ends.

    With ``group`` (a task group to make map Jobs in), map item attempts run in batches: each batch one Indexed
    Job, each item followed through its completion index.
    """

    reports_itself = True

    def __init__(
        self,
        client: ApiClient,
        view: ClusterView,
        target: KubernetesTarget,
        group: anyio.abc.TaskGroup | None = None,
    ) -> None:
        self.view = view
        self.target = target
        self._batch = BatchV1Api(client)
        self._core = CoreV1Api(client)
        self.created = 0
        self.adopted = 0
        self._batcher = (
            None
            if group is None
            else MapBatcher(
                group,
                self._make_map_job,
                window_seconds=target.map_batch_seconds,
                most_items=target.map_batch_items,
            )
        )
        self._placed: dict[str, tuple[str, int]] = {}  # item attempts running in a map Job, before the view shows it
        self._grant_key = (
            read_account_key(target.callout_seed_file, VARIABLES["nats_callout_seed_file"])
            if target.callout_seed_file
            else None
        )
        self._ended_items: dict[str, set[int]] = {}  # indexes of map Jobs whose pods this executor deleted
        self._pod_nats_url = self._nats_url_for_pods()

    def _nats_url_for_pods(self) -> str:
        """The NATS URL put in each Job: without the credential it may hold when each Job gets its own grant."""
        url = self.target.nats_url
        if self._grant_key is None or not carries_credential(url):
            return url
        url = without_credential(url)
        log.warning("nats_url_credential_removed", url=url, why="task pods connect with their Job's grant")
        return url

    async def run(self, dispatch: Dispatch, *, on_start: Callable[[], None]) -> AttemptOutcome | None:
        if self._batcher is not None and is_map_item(dispatch):
            return await self._run_item(dispatch, self._batcher, on_start)
        name = job_name(dispatch.attempt_id)
        attempt_log = log.bind(attempt=dispatch.attempt_id, job=name)
        on_start()
        with self.view.following(name):
            return await self._run_job(name, dispatch, attempt_log)

    async def _run_job(self, name: str, dispatch: Dispatch, attempt_log: FilteringBoundLogger) -> AttemptOutcome | None:
        """Create (or adopt) Job ``name`` of the one-attempt ``dispatch``, give it its credential, and follow it."""
        job: dict[str, Any] | None = None
        if name in self.view.jobs:
            self.adopted += 1
            attempt_log.info("job_adopted")
        else:
            try:
                manifest = self.manifest(dispatch)
            except Exception as exc:  # invalid options: no Job can run this attempt
                return AttemptOutcome(error=system_error(f"cannot make the attempt's Job: {exc}", "JobInvalid", exc))
            created = await self._create(manifest, attempt_log)
            if isinstance(created, AttemptOutcome):
                return created
            job = created
        refused = await self._give_credential(job or await self._job_now(name), [dispatch], attempt_log, map_job=False)
        if refused is not None:
            return refused
        return await self._follow(name, attempt_log)

    async def _run_item(
        self, dispatch: Dispatch, batcher: MapBatcher, on_start: Callable[[], None]
    ) -> AttemptOutcome | None:
        """Run a map item attempt at its index of a map Job: the one the view knows runs it (adopted), else the Job
        of the batch it joins."""
        attempt_log = log.bind(attempt=dispatch.attempt_id)
        on_start()
        placement = self.view.items.get(dispatch.attempt_id) or self._placed.get(dispatch.attempt_id)
        adopted = placement is not None
        if placement is not None:
            self.adopted += 1
            attempt_log.info("job_adopted", job=placement[0], index=placement[1])
        else:
            placed = await batcher.place(dispatch)
            if isinstance(placed, AttemptOutcome):
                return placed
            placement = placed
        name, index = placement
        self._placed[dispatch.attempt_id] = placement
        with self.view.following(name):
            refused = await self._give_adopted_map_job_credential(name, dispatch, attempt_log) if adopted else None
            outcome = refused or await self._follow(name, attempt_log.bind(job=name, index=index), index)
        self._placed.pop(dispatch.attempt_id, None)
        return outcome

    async def _make_map_job(self, dispatches: Sequence[Dispatch]) -> dict[str, Placed]:
        """Create the map Job of a batch (or follow the one that exists): where each of its attempts runs."""
        attempts = [dispatch.attempt_id for dispatch in dispatches]
        try:
            manifest = self.map_manifest(dispatches)
        except Exception as exc:  # invalid options: no Job can run these attempts
            outcome = AttemptOutcome(error=system_error(f"cannot make the attempts' Job: {exc}", "JobInvalid", exc))
            return dict.fromkeys(attempts, outcome)
        name = manifest["metadata"]["name"]
        first = dispatches[0]
        batch_log = log.bind(execution=first.execution_id, node=first.node, job=name, items=len(attempts))
        with self.view.following(name):
            return await self._start_map_job(manifest, dispatches, batch_log)

    async def _start_map_job(
        self, manifest: dict[str, Any], dispatches: Sequence[Dispatch], batch_log: FilteringBoundLogger
    ) -> dict[str, Placed]:
        name = manifest["metadata"]["name"]
        attempts = [dispatch.attempt_id for dispatch in dispatches]
        created = await self._create(manifest, batch_log)
        if isinstance(created, AttemptOutcome):
            return dict.fromkeys(attempts, created)
        job = created or await self._job_now(name)
        listed = attempts if created else attempts_of_job(job) or []
        ran = {dispatch.attempt_id: dispatch for dispatch in dispatches}
        items = [ran[a] for a in listed if a in ran] or dispatches
        refused = await self._give_credential(job, items, batch_log, map_job=True)
        if refused is not None:
            return dict.fromkeys(attempts, refused)
        where = {attempt: index for index, attempt in enumerate(listed)}
        conflict = AttemptOutcome(error=system_error(f"Job {name} exists and runs other attempts", "JobConflict"))
        return {attempt: (name, where[attempt]) if attempt in where else conflict for attempt in attempts}

    async def _give_adopted_map_job_credential(
        self, name: str, dispatch: Dispatch, attempt_log: FilteringBoundLogger
    ) -> AttemptOutcome | None:
        """Give adopted map Job ``name`` its credential Secret, in case the executor that created the Job died before
        it did. The Secret is immutable and shared by all the Job's pods, so its grant names every attempt of the
        Job's ``plait.dev/attempts``, not only the redelivered ``dispatch``."""
        if self._grant_key is None:
            return None
        job = await self._job_now(name)
        listed = attempts_of_job(job) or [dispatch.attempt_id]
        items = [msgspec.structs.replace(dispatch, attempt_id=attempt) for attempt in listed]
        return await self._give_credential(job, items, attempt_log.bind(job=name), map_job=True)

    async def _job_now(self, name: str) -> dict[str, Any]:
        """Job ``name`` as the view has it, else as the API server has it now (empty when it cannot be read)."""
        if name in self.view.jobs:
            return self.view.jobs[name]
        try:
            response: Any = await self._batch.read_namespaced_job(name, self.target.namespace, _preload_content=False)
            job: dict[str, Any] = json.loads(await response.read())
        except (ApiException, aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("job_unreadable", job=name, error=repr(exc))
            return {}
        return job

    async def stop(self, dispatch: Dispatch) -> str:
        """Delete the attempt's Job and its pods (its execution ended); for a map item, the pod of its index (and
        the Job once none of its items is left running)."""
        if self._batcher is not None and is_map_item(dispatch):
            placement = self._placed.pop(dispatch.attempt_id, None) or self.view.items.get(dispatch.attempt_id)
            if placement is None:
                return "its map Job was not made"
            name, index = placement
            with anyio.CancelScope(shield=True):
                item_log = log.bind(attempt=dispatch.attempt_id, job=name, index=index)
                await self._end_item(name, index, item_log, "its execution ended")
            return f"its pod of Kubernetes Job {name} (index {index}) was deleted"
        name = job_name(dispatch.attempt_id)
        with anyio.CancelScope(shield=True):
            await self._delete(name, log.bind(attempt=dispatch.attempt_id, job=name), "its execution ended")
        return f"its Kubernetes Job {name} was deleted"

    def manifest(self, dispatch: Dispatch) -> dict[str, Any]:
        options = self._options(dispatch, _environment(DISPATCH_VARIABLE, codec.encode(dispatch).decode()))
        identity = self._identity(dispatch, dispatch.attempt_id)
        job = with_secrets(job_manifest(identity, options, dispatch.task.timeout_seconds), dispatch.task.secrets or ())
        return job if self._grant_key is None else with_credential(job)

    def map_manifest(self, dispatches: Sequence[Dispatch]) -> dict[str, Any]:
        """The Indexed Job of a batch of item attempts of one map node."""
        batch = batch_of(dispatches)
        options = self._options(batch.first, _environment(BATCH_VARIABLE, encode_batch(batch)))
        identity = self._identity(batch.first, batch_name_key(batch.attempts))
        job = map_job_manifest(identity, options, batch.attempts, batch.first.task.timeout_seconds)
        job = with_secrets(job, batch.first.task.secrets or ())
        return job if self._grant_key is None else with_credential(job)

    async def _give_credential(
        self, job: dict[str, Any], dispatches: Sequence[Dispatch], attempt_log: FilteringBoundLogger, *, map_job: bool
    ) -> AttemptOutcome | None:
        """Create the credential Secret of ``job`` (running ``dispatches``), owned by it, unless it exists (an
        adopted Job's); a system failure when the API server refuses it (the Job is then deleted: its pod would wait
        for the Secret until its deadline)."""
        if self._grant_key is None:
            return None
        if not job:
            return AttemptOutcome(
                error=system_error("the attempt's Job cannot be read to give it a credential", "JobLost")
            )
        grant = issue(grant_for(list(dispatches), time.time(), map_job=map_job), self._grant_key)
        created = await self._create(credential_secret(job, grant), attempt_log, kind="Secret")
        if isinstance(created, AttemptOutcome):
            await self._delete(job["metadata"]["name"], attempt_log, "its credential Secret was refused")
            return created
        return None

    def _options(self, dispatch: Dispatch, variables: dict[str, str]) -> KubernetesOptions:
        options = dispatch.task.kubernetes if isinstance(dispatch.task.kubernetes, KubernetesOptions) else None
        options = options or KubernetesOptions()
        env = {
            **options.env,
            **self.target.env,
            NATS_URL_VARIABLE: self._pod_nats_url,
            **pod_trace_env(),
            **variables,
        }
        return msgspec.structs.replace(options, image=options.image or self.target.image or None, env=env)

    def _identity(self, dispatch: Dispatch, attempt_id: str) -> AttemptIdentity:
        return AttemptIdentity(
            project=dispatch.project,
            domain=dispatch.domain,
            execution_id=dispatch.execution_id,
            node=dispatch.node,
            attempt_id=attempt_id,
            attempt=dispatch.attempt,
            queue=self.target.queue,
            cluster=self.target.cluster,
        )

    async def _create(
        self, manifest: dict[str, Any], attempt_log: FilteringBoundLogger, kind: Literal["Job", "Secret"] = "Job"
    ) -> AttemptOutcome | dict[str, Any] | None:
        """Create ``manifest`` (a Job, or a Secret), retrying what may pass: the object as created, None when it
        exists already, a system failure when the API server refuses it."""
        what = kind.lower()
        delay = FIRST_RETRY_SECONDS
        while True:
            try:
                if kind == "Job":
                    made: Any = await self._batch.create_namespaced_job(self.target.namespace, manifest)  # type: ignore[arg-type]
                    self.created += 1
                else:
                    made = await self._core.create_namespaced_secret(self.target.namespace, manifest)  # type: ignore[arg-type]
                attempt_log.info(f"{what}_created")
                return {**manifest, "metadata": {**manifest["metadata"], "uid": made.metadata.uid}}
            except ApiException as exc:
                if exc.status == 409:
                    if kind == "Job":
                        self.adopted += 1
                        attempt_log.info("job_adopted", why="it exists already")
                    return None
                if exc.status in (400, 403, 422):
                    body = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else str(exc.body)
                    attempt_log.error(f"{what}_refused", status=exc.status, body=body)
                    message = f"the API server refused the attempt's {kind} ({exc.status} {exc.reason}): {body}"
                    return AttemptOutcome(error=system_error(message, f"{kind}Refused"))
                attempt_log.warning(f"{what}_create_retry", status=exc.status, retry_in=delay)
            except (aiohttp.ClientError, TimeoutError) as exc:
                attempt_log.warning(f"{what}_create_retry", error=repr(exc), retry_in=delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, LONGEST_RETRY_SECONDS)

    async def _follow(
        self, name: str, attempt_log: FilteringBoundLogger, index: int | None = None
    ) -> AttemptOutcome | None:
        """Wait for the Job (its completion ``index``, for a map item) to end: None when its runtime reported the
        attempt, else the system failure."""
        pulling_since: float | None = None
        while True:
            changed = self.view.changed
            job = self.view.jobs.get(name)
            if job is None and self.view.was_deleted(name):
                return await self._lost(Lost("JobDeleted", f"Job {name} was deleted before it ended"), attempt_log)
            if job is not None:
                state = job_state(job) if index is None else item_state(job, index)
                if state == "complete":
                    return None
                pods = self.view.pods_of(name, index)
                if state == "failed":
                    if not pods_settled(pods):
                        pods = await self._pods_now(name, pods, index)
                    lost = lost_after_failure(job, pods)
                    return None if lost is None else await self._lost(lost, attempt_log)
                pull = image_pull_failure(pods)
                if pull is None:
                    pulling_since = None
                elif pulling_since is None:
                    pulling_since = anyio.current_time()
                elif anyio.current_time() - pulling_since >= self.target.image_pull_grace_seconds:
                    if index is None:
                        await self._delete(name, attempt_log, pull.reason)
                    else:
                        await self._end_item(name, index, attempt_log, pull.reason)
                    return await self._lost(pull, attempt_log)
            wait = self.target.image_pull_grace_seconds if pulling_since is not None else None
            with anyio.move_on_after(wait):
                await changed.wait()

    async def _pods_now(self, job: str, known: list[dict[str, Any]], index: int | None = None) -> list[dict[str, Any]]:
        """The Job's pods (of its completion ``index`` when given) as the API server has them now (``known`` when it
        cannot be asked)."""
        selector = f"{JOB_NAME_LABEL}={job}" + ("" if index is None else f",{COMPLETION_INDEX}={index}")
        try:
            listed: Any = await self._core.list_namespaced_pod(
                self.target.namespace, label_selector=selector, _preload_content=False
            )  # the raw response: the pods as JSON, like the view's
            items: list[dict[str, Any]] = json.loads(await listed.read())["items"]
        except (ApiException, aiohttp.ClientError, TimeoutError, ValueError, KeyError):
            return known
        return sorted(items, key=lambda pod: pod["metadata"].get("creationTimestamp", "")) or known

    async def _lost(self, lost: Lost, attempt_log: FilteringBoundLogger) -> AttemptOutcome:
        attempt_log.warning("attempt_lost", reason=lost.reason, message=lost.message)
        tail = await self._log_tail(lost.pod) if lost.pod else ""
        return AttemptOutcome(error=msgspec.structs.replace(system_error(lost.message, lost.reason), traceback=tail))

    async def _log_tail(self, pod: str) -> str:
        try:
            text = await self._core.read_namespaced_pod_log(
                pod, self.target.namespace, tail_lines=self.target.log_tail_lines
            )
        except ApiException as exc:
            return f"(the log of pod {pod} cannot be read: {exc.status} {exc.reason})"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"(the log of pod {pod} cannot be read: {exc!r})"
        lines = str(text).rstrip("\n")
        return f"last {self.target.log_tail_lines} lines of the log of pod {pod}:\n{lines}" if lines else ""

    async def _end_item(self, name: str, index: int, item_log: FilteringBoundLogger, why: str) -> None:
        """End the map item at ``index`` of Job ``name``: delete its pod (with ``backoffLimitPerIndex`` 0, that fails
        its index alone), or the whole Job once none of its items is left running."""
        ended = self._ended_indexes(name)
        ended.add(index)
        job = self.view.jobs.get(name) or await self._job_now(name)
        if not job:
            self._ended_items.pop(name, None)
            return
        status = job.get("status", {})
        done = ended | indexes(status.get("completedIndexes")) | indexes(status.get("failedIndexes"))
        if len(done) >= len(attempts_of_job(job) or ()):
            self._ended_items.pop(name, None)
            await self._delete(name, item_log, why)
            return
        for pod in await self._pods_now(name, [], index):
            pod_name = pod["metadata"]["name"]
            try:
                await self._core.delete_namespaced_pod(pod_name, self.target.namespace)
                item_log.info("pod_deleted", pod=pod_name, why=why)
            except ApiException as exc:
                if exc.status != 404:
                    item_log.warning("pod_delete_failed", pod=pod_name, status=exc.status, reason=exc.reason)
            except (aiohttp.ClientError, TimeoutError) as exc:
                item_log.warning("pod_delete_failed", pod=pod_name, error=repr(exc))

    def _ended_indexes(self, name: str) -> set[int]:
        """The indexes of map Job ``name`` this executor ended; those of the Jobs gone since are forgotten (they end
        by themselves, and their TTL deletes them), so what is kept is bounded by the Jobs that exist."""
        for gone in [job for job in self._ended_items if job != name and job not in self.view.jobs]:
            del self._ended_items[gone]
        return self._ended_items.setdefault(name, set())

    async def _delete(self, name: str, attempt_log: FilteringBoundLogger, why: str) -> None:
        try:
            await self._batch.delete_namespaced_job(
                name, self.target.namespace, body=V1DeleteOptions(propagation_policy="Background")
            )
            attempt_log.info("job_deleted", why=why)
        except ApiException as exc:
            if exc.status != 404:
                attempt_log.warning("job_delete_failed", status=exc.status, reason=exc.reason)
        except (aiohttp.ClientError, TimeoutError) as exc:
            attempt_log.warning("job_delete_failed", error=repr(exc))


ENVIRONMENT_STRING_MOST = 128 * 1024
"""The most bytes of one ``NAME=value`` string of a process's environment (Linux's MAX_ARG_STRLEN, with its NUL):
a container given a longer one cannot be started."""


def _environment(name: str, value: str) -> dict[str, str]:
    """``{name: value}`` for a Job's container; ``ValueError`` when the container could not start with it."""
    size = len(name) + 1 + len(value.encode()) + 1
    if size > ENVIRONMENT_STRING_MOST:
        raise ValueError(
            f"the attempt's dispatch takes {size:,} bytes of the container's environment ({name}), over the "
            f"{ENVIRONMENT_STRING_MOST:,} a variable may hold: pass its large inputs as a File, or lower "
            "PLAIT_INLINE_VALUE_LIMIT so that they travel through the values bucket"
        )
    return {name: value}
