"""A warm pool of worker processes, each running one attempt at a time.

Not ``concurrent.futures.ProcessPoolExecutor``: when one of its workers dies it fails every pending future
and stops the other workers, so a task calling ``os._exit`` would also fail the attempts running beside it;
and it cannot stop one worker whose attempt timed out. Here each worker is on its own, and is replaced alone.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Mapping
from multiprocessing.context import BaseContext
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.to_thread
import structlog
from structlog.typing import FilteringBoundLogger

from plait.core.events import TaskError
from plait.core.model import TaskTarget
from plait.metrics.names import WORKERS_REPLACED
from plait.telemetry import current_traceparent
from plait_executor.attempt import CODE_VERSION_MISMATCH, TASK_NOT_LOADABLE, AttemptOutcome, system_error
from plait_executor.capture import DEFAULT_OUTPUT_LIMITS, OutputLimits
from plait_executor.folders import remove_folder
from plait_executor.worker import AttemptRequest, WorkerLost, WorkerProcess
from plait_executor.worker_wear import NO_LIMITS, WorkerLimits, WorkerWear

log: FilteringBoundLogger = structlog.get_logger("plait.executor")


def default_start_method() -> str:
    """'forkserver' where the platform has it (workers fork from a clean, preloaded server), else 'spawn'."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


class WorkerPool:
    """``size`` warm worker processes: an attempt runs alone in one of them, so a crash or a timeout costs
    only that attempt, and only that worker is replaced.

    Use it as an async context manager; ``run`` waits for an idle worker.
    """

    def __init__(
        self,
        size: int,
        *,
        start_method: str | None = None,
        output_limits: OutputLimits = DEFAULT_OUTPUT_LIMITS,
        limits: WorkerLimits = NO_LIMITS,
    ) -> None:
        if size < 1:
            raise ValueError(f"a worker pool needs at least one worker, not {size}")
        self.size = size
        self.output_limits = output_limits
        self.limits = limits
        self._context = multiprocessing.get_context(start_method or default_start_method())
        if self._context.get_start_method() == "forkserver":
            # The clients too, though a worker needs none: a task's module that imports one (to launch executions
            # from its `__main__`, say) then shares their pages with every worker instead of loading them in each.
            self._context.set_forkserver_preload(["plait_executor.worker", "plait.client"])
        self._idle: list[WorkerProcess] = []
        self._workers: set[WorkerProcess] = set()
        self._free = anyio.Semaphore(size)
        # The project each worker has run attempts of, and where it has imported their tasks from.
        self._code_roots: dict[WorkerProcess, _Source] = {}
        self.scratch_root: str | None = None  # where workers keep their tasks' temporary files (see scratch)

    async def __aenter__(self) -> Self:
        with anyio.CancelScope(shield=True):  # started processes must be known, to be stopped
            self._idle = await anyio.to_thread.run_sync(_start_workers, self._context, self.size)
        self._workers.update(self._idle)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with anyio.CancelScope(shield=True):
            workers, self._workers, self._idle = self._workers, set(), []
            for worker in workers:
                await worker.close()

    @property
    def worker_pids(self) -> list[int]:
        """The process ids of the idle workers."""
        return [worker.pid for worker in self._idle if worker.pid is not None]

    async def run(
        self,
        target: TaskTarget,
        inputs: Mapping[str, Any],
        *,
        version: str | None = None,
        timeout_seconds: float | None = None,
        grace_seconds: float = 0.0,
        on_start: Callable[[], None] | None = None,
        code_root: str | None = None,
        live_path: str | None = None,
        project: str = "",
        secrets: Mapping[str, str] | None = None,
        scratch: str | None = None,
    ) -> AttemptOutcome:
        """Run one attempt in an idle worker. Always an outcome: a lost worker is a system error; an attempt still
        running ``grace_seconds`` past its ``timeout_seconds`` is killed, and fails as the task's own failure.

        ``on_start`` is called once a worker is taken, just before the attempt is sent to it; an exception it
        raises gives the worker back untouched and propagates. ``code_root``: an unpacked code bundle to import the
        task from, in a worker that has imported from no other source. ``live_path``: the file the attempt's output
        is written to as it runs (see ``plait_executor.live_output``). ``project``: the attempt's; a worker that ran
        an attempt of one project never runs one of another (module state would leak between tenants). ``secrets``: the
        values of the task's secrets, sent to the worker with the attempt. ``scratch``: the executor's folder of
        its workers' temporary files (``plait_executor.scratch``).
        """
        request = AttemptRequest(
            target,
            dict(inputs),
            version,
            self.output_limits,
            code_root,
            live_path=live_path,
            traceparent=current_traceparent(),
            secrets=dict(secrets or {}),
            scratch=scratch,
            max_memory_bytes=self.limits.max_memory_bytes,
        )
        async with self._free:
            worker = await self._take((project, code_root))
            outcome = None
            try:
                if on_start is not None:
                    on_start()
                outcome = await self._run_in(worker, request, timeout_seconds, grace_seconds)
                if _may_be_stale_code(outcome) and worker.attempts_run > 1:
                    # This worker may have imported the module before its source changed (a new version, or a task
                    # added since): a fresh one reads it anew.
                    if outcome.leftovers is not None:
                        await remove_folder(outcome.leftovers)
                    worker = await self._replace(worker)
                    self._code_roots[worker] = (project, code_root)
                    outcome = await self._run_in(worker, request, timeout_seconds, grace_seconds)
            finally:
                self._idle.append(await self._kept_or_replaced(worker, outcome))
            return outcome

    async def _kept_or_replaced(self, worker: WorkerProcess, outcome: AttemptOutcome | None) -> WorkerProcess:
        """``worker`` after an attempt, or a fresh process in its place when it is gone or worn out."""
        if not worker.usable:
            return await self._replace(worker)
        worn = outcome.worn if outcome is not None else None
        if worn is None and self.limits.max_attempts and worker.attempts_run >= self.limits.max_attempts:
            worn = WorkerWear("attempts", f"it ran {worker.attempts_run} attempts (PLAIT_WORKER_MAX_ATTEMPTS)")
        if worn is None:
            return worker
        log.info("worker_replaced", pid=worker.pid, reason=worn.reason, detail=worn.detail)
        WORKERS_REPLACED.labels(worn.reason).inc()
        return await self._replace(worker)

    async def _run_in(
        self, worker: WorkerProcess, request: AttemptRequest, timeout: float | None, grace: float
    ) -> AttemptOutcome:
        with anyio.move_on_after(None if timeout is None else timeout + grace) as deadline:
            try:
                return await worker.run(request)
            except WorkerLost as lost:
                return AttemptOutcome(
                    error=system_error(f"the worker process died while running the attempt ({lost})", "WorkerLost")
                )
        assert deadline.cancelled_caught  # noqa: S101  an invariant of this code, not a check of input
        # The task's own failure, as when the scheduler's timeout timer fires first (this is the local backstop).
        return AttemptOutcome(
            error=TaskError(kind="user", message=f"timed out after {timeout:g} s", error_type="TaskTimedOut")
        )

    async def _take(self, source: _Source) -> WorkerProcess:
        """An idle worker for an attempt of a project importing from a code root (None: the registered files): one
        that has run that project's attempts from there before, or a fresh one; else one replaced by a fresh process
        (modules once imported stay imported, so a process never mixes sources, nor tenants)."""
        index = next((i for i, w in enumerate(self._idle) if self._code_roots.get(w, source) == source), -1)
        worker = self._idle.pop(index)
        if self._code_roots.get(worker, source) != source:
            worker = await self._replace(worker)
        self._code_roots[worker] = source
        return worker

    async def _replace(self, worker: WorkerProcess) -> WorkerProcess:
        with anyio.CancelScope(shield=True):
            self._workers.discard(worker)
            self._code_roots.pop(worker, None)
            pid = worker.pid  # not to be read once closed
            worker.kill()
            await worker.close()
            if self.scratch_root is not None and pid is not None:  # what its last attempt left there
                await remove_folder(os.path.join(self.scratch_root, str(pid)))
            replacement = await anyio.to_thread.run_sync(WorkerProcess, self._context)
        self._workers.add(replacement)
        return replacement


_Source = tuple[str, str | None]
"""What a worker has served: a project, and the code root its tasks were imported from (None: the registered
files)."""


def _start_workers(context: BaseContext, count: int) -> list[WorkerProcess]:
    return [WorkerProcess(context) for _ in range(count)]


def _may_be_stale_code(outcome: AttemptOutcome) -> bool:
    return outcome.error is not None and outcome.error.error_type in (CODE_VERSION_MISMATCH, TASK_NOT_LOADABLE)
