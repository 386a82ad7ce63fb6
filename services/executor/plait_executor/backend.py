"""Where an executor runs its attempts: the seam between the attempt runner and a back end (local worker
processes, or Kubernetes Jobs)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Protocol

from plait.adapters.nats_auth import carries_credential
from plait.core.dispatch import Dispatch
from plait.core.events import TaskError
from plait.core.values import DEFAULT_INLINE_VALUE_LIMIT
from plait.errors import InputError
from plait.sdk import secrets
from plait.settings import VARIABLES, Settings
from plait_executor.attempt import AttemptOutcome
from plait_executor.capture import DEFAULT_OUTPUT_LIMITS, OutputLimits
from plait_executor.live_output import LiveOutput
from plait_executor.pool import WorkerPool
from plait_executor.worker_wear import MIB, NO_LIMITS, WorkerLimits

TIMEOUT_BACKSTOP_GRACE_SECONDS = 5.0
"""How long past its task's timeout an attempt may run before its executor kills it on its own: the scheduler's
timeout timer decides first (it fires on a whole second), and the executor kills the attempt once it reads that
decision; this is the backstop for when the scheduler is away or the read misses it."""


class AttemptBackend(Protocol):
    """Runs one attempt and says how it ended.

    ``reports_itself``: the attempt reports its own ``started`` and result (a Kubernetes pod's runtime does);
    ``run`` then returns None once the attempt has ended so, and an outcome only for an attempt that ended
    without reporting (its pod was lost), which the executor reports.
    """

    reports_itself: bool

    async def run(self, dispatch: Dispatch, *, on_start: Callable[[], None]) -> AttemptOutcome | None:
        """Run the attempt; ``on_start`` is called just before it is started (an exception it raises propagates,
        and the attempt is not started)."""
        ...

    async def stop(self, dispatch: Dispatch) -> str:
        """The attempt's execution ended while it ran: end what is left of it, and say how (recorded in the log)."""
        ...


BackendFactory = Callable[[], AbstractAsyncContextManager[AttemptBackend]]
"""Makes the back end an executor runs its attempts on, for as long as it serves."""


class LocalBackend:
    """Each attempt in a warm local worker process of a ``WorkerPool``; the executor reports it."""

    reports_itself = False

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self.live: LiveOutput | None = None  # publishes each attempt's output while it runs, when set
        self.scratch_root: str | None = None  # where the workers keep their tasks' temporary files, when set

    async def run(
        self, dispatch: Dispatch, *, on_start: Callable[[], None], code_root: str | None = None
    ) -> AttemptOutcome | None:
        try:
            values = {name: secrets.resolve(name) for name in dispatch.task.secrets or ()}
        except secrets.SecretMissing as exc:
            on_start()  # it ends here, without a worker, but it started
            return AttemptOutcome(error=TaskError(kind="user", message=str(exc), error_type="SecretMissing"))
        async with contextlib.AsyncExitStack() as stack:
            live_path = None
            if self.live is not None:
                live_path = await stack.enter_async_context(self.live.tailing(dispatch, values.values()))
            return await self.pool.run(
                dispatch.task.target,
                dispatch.inputs,
                version=dispatch.task.version,
                timeout_seconds=dispatch.task.timeout_seconds,
                grace_seconds=TIMEOUT_BACKSTOP_GRACE_SECONDS,
                on_start=on_start,
                code_root=code_root,
                live_path=live_path,
                project=dispatch.project,
                secrets=values,
                scratch=self.scratch_root,
            )
        raise AssertionError("unreachable")  # mypy: an exit stack may swallow exceptions

    async def stop(self, dispatch: Dispatch) -> str:
        """Nothing left: cancelling ``run`` killed the worker process."""
        return "its worker process was killed"


@asynccontextmanager
async def local_backend(
    size: int,
    output_limits: OutputLimits = DEFAULT_OUTPUT_LIMITS,
    limits: WorkerLimits = NO_LIMITS,
) -> AsyncIterator[AttemptBackend]:
    async with WorkerPool(size, output_limits=output_limits, limits=limits) as pool:
        yield LocalBackend(pool)


def backend_from_settings(settings: Settings, concurrency: int) -> BackendFactory:
    """The back end ``PLAIT_EXECUTOR_BACKEND`` names: ``local`` worker processes, or ``kubernetes`` Jobs."""
    if settings.executor_backend == "kubernetes":
        from plait_executor.kubernetes.backend import KubernetesTarget, kubernetes_backend

        target = KubernetesTarget(
            cluster=settings.cluster,
            queue=settings.queue,
            namespace=settings.kubernetes_namespace,
            image=settings.kubernetes_image,
            nats_url=_nats_url_for_pods(settings),
            context=settings.kubernetes_context,
            env=_runtime_env(settings),
            map_batch_seconds=settings.kubernetes_map_batch_seconds,
            callout_seed_file=settings.nats_callout_seed_file,
        )
        return partial(kubernetes_backend, target)
    limits = WorkerLimits(settings.worker_max_memory_mb * MIB, settings.worker_max_attempts)
    return partial(local_backend, concurrency, (settings.task_output_head, settings.task_output_tail), limits)


def _nats_url_for_pods(settings: Settings) -> str:
    """``PLAIT_KUBERNETES_NATS_URL``, else the executor's own URL, unless that one holds the executor's credential
    and the pods get no grant of their own: they would connect with it, written in every Job."""
    if settings.kubernetes_nats_url:
        return settings.kubernetes_nats_url
    url = settings.required("nats_url")
    if carries_credential(url) and not settings.nats_callout_seed_file:
        raise InputError(
            f"{VARIABLES['nats_url']} holds the executor's NATS credential, which the Kubernetes task pods would "
            f"connect with (written in every Job): set {VARIABLES['kubernetes_nats_url']} to the URL the pods "
            f"connect to, or {VARIABLES['nats_callout_seed_file']} to give each Job its own grant"
        )
    return url


def _runtime_env(settings: Settings) -> dict[str, str]:
    """What the task runtime in a pod must share with this executor's settings: the inline value limit, when not
    the default."""
    env = {}
    if settings.inline_value_limit != DEFAULT_INLINE_VALUE_LIMIT:
        env[VARIABLES["inline_value_limit"]] = str(settings.inline_value_limit)
    if (settings.task_output_head, settings.task_output_tail) != DEFAULT_OUTPUT_LIMITS:
        env[VARIABLES["task_output_head"]] = str(settings.task_output_head)
        env[VARIABLES["task_output_tail"]] = str(settings.task_output_tail)
    return env


def with_scratch(backend: AttemptBackend, root: str) -> AttemptBackend:
    """``backend``, its local workers keeping their tasks' temporary files under ``root`` (``plait_executor.scratch``;
    a pod is removed whole)."""
    if isinstance(backend, LocalBackend):
        backend.scratch_root = backend.pool.scratch_root = root
    return backend


def with_live_output(backend: AttemptBackend, live: LiveOutput) -> AttemptBackend:
    """``backend``, publishing each attempt's output while it runs when its attempts run in local workers (a pod's
    output is read when its attempt ends)."""
    if isinstance(backend, LocalBackend):
        backend.live = live
    return backend
