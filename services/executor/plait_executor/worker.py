"""One worker process: its main loop (in the child) and the handle the executor holds on it (in the parent)."""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import select
import signal
import threading
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any

import anyio
import anyio.to_thread
import msgspec

from plait.core.model import TaskTarget
from plait.telemetry import configure_tracing, flush
from plait_executor.attempt import AttemptOutcome
from plait_executor.capture import DEFAULT_OUTPUT_LIMITS, OutputLimits, run_captured
from plait_executor.code_roots import target_in_code_root, traceback_in_bundle
from plait_executor.scratch import set_aside, temporary_files_in, worker_folder
from plait_executor.tracing import WORKER_SERVICE, task_span
from plait_executor.worker_environment import scrub
from plait_executor.worker_wear import WearGauge

_JOIN_SECONDS = 5.0


class AttemptRequest(msgspec.Struct, frozen=True):
    target: TaskTarget
    inputs: dict[str, Any]
    version: str | None = None
    output_limits: OutputLimits = DEFAULT_OUTPUT_LIMITS
    code_root: str | None = None  # an unpacked code bundle to import the task from (see code_roots)
    live_path: str | None = None  # where to write the attempt's output, read by the executor while it runs
    traceparent: str = ""  # the executor's span of the attempt: the task runs in a child span of it
    secrets: dict[str, str] = {}  # the values of the task's secrets, resolved by the executor (sent on the pipe)
    scratch: str | None = None  # the executor's folder of its workers' temporary files (see plait_executor.scratch)
    max_memory_bytes: int = 0  # past this peak, the worker asks to be replaced (see plait_executor.worker_wear)


class WorkerLost(Exception):
    """The worker process exited, or was killed, before it sent back the attempt's outcome."""


def serve(connection: Connection) -> None:
    """The worker process's loop: run each request received, send back its outcome, until told to stop."""
    # Ctrl-C in a terminal reaches the whole process group; the executor decides how its attempts end.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_tracing(WORKER_SERVICE)
    scrub()  # no executor credential, no secret: the attempt's own secrets come with it
    # Attempts' INFO logs go to their output (see capture): set once here, as changing the root level per attempt
    # clears the cache of every logger in the process.
    logging.getLogger().setLevel(logging.INFO)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(
            target=_exit_when_gone, args=(parent.sentinel,), name="plait-executor-watch", daemon=True
        ).start()
    gauge = WearGauge()
    while True:
        try:
            request: AttemptRequest | None = connection.recv()
        except EOFError:
            return  # the executor is gone
        if request is None:
            return
        request = msgspec.structs.replace(request, target=target_in_code_root(request.target, request.code_root))
        folder = None if request.scratch is None else worker_folder(request.scratch)
        temporary_files_in(folder)
        with task_span(request.target, request.traceparent):
            outcome = run_captured(
                request.target,
                request.inputs,
                request.version,
                request.output_limits,
                request.secrets,
                live_path=request.live_path,
            )
        flush()  # before the outcome is sent: the worker may be killed as soon as it is
        outcome = set_aside(traceback_in_bundle(outcome, request.code_root), folder)
        if (worn := gauge.worn(request.max_memory_bytes)) is not None:
            outcome = msgspec.structs.replace(outcome, worn=worn)
        connection.send(outcome)


def _exit_when_gone(executor_sentinel: int) -> None:
    """End this process as soon as the executor is gone, even mid-attempt: nobody would report its outcome,
    and the dispatch is about to run again elsewhere."""
    multiprocessing.connection.wait([executor_sentinel])
    os._exit(1)


class WorkerProcess:
    """A warm Python process, started from a clean interpreter, that runs attempts one at a time."""

    def __init__(self, context: BaseContext) -> None:
        self._connection, child_end = context.Pipe()
        # Not daemonic: a task may start processes of its own (daemonic processes may not).
        self._process = context.Process(target=serve, args=(child_end,), name="plait-worker")  # type: ignore[attr-defined]
        self._process.start()
        child_end.close()
        # Its sentinel is readable once it has exited. A poll object (not ``select``, which refuses descriptors
        # numbered past 1,023, as a large pool or a raised file limit gives) registered once: one system call per
        # check, not ``is_alive``'s selector made each time.
        self._exited = select.poll()
        self._exited.register(self._process.sentinel, select.POLLIN)
        self.attempts_run = 0
        self._retired = False

    @property
    def pid(self) -> int | None:
        pid: int | None = self._process.pid
        return pid

    @property
    def usable(self) -> bool:
        """True while the process can take another attempt (it is running, and was neither killed nor lost)."""
        if self._retired:
            return False
        return not self._exited.poll(0)

    async def run(self, request: AttemptRequest) -> AttemptOutcome:
        """The outcome of ``request``; raises ``WorkerLost`` when the process dies, and kills it when cancelled.

        The event loop waits for the answer on the pipe itself (no thread per attempt): the idle worker reads
        the request at once, and writes its outcome in one go once done.
        """
        self.attempts_run += 1
        try:
            self._connection.send(request)
            await anyio.wait_readable(self._connection.fileno())
            outcome: AttemptOutcome = self._connection.recv()
        except (EOFError, OSError) as exc:
            # Retired before its status is read: under forkserver, reading the status consumes what made the
            # sentinel readable, and the server closes it (EOF) only a moment later.
            self._retired = True
            raise WorkerLost(await self._exit_status()) from exc
        except BaseException:
            # Cancelled or timed out: a running process cannot be interrupted otherwise.
            self.kill()
            raise
        return outcome

    async def _exit_status(self) -> str:
        await anyio.to_thread.run_sync(self._process.join, _JOIN_SECONDS)
        code: int | None = self._process.exitcode
        if code is None:
            return "its connection closed"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}"

    def kill(self) -> None:
        self._retired = True
        if self._process.is_alive():
            self._process.kill()

    async def close(self) -> None:
        """Ask the process to exit, kill it if it does not within a few seconds, and release its resources."""
        self._retired = True  # its sentinel's number may be another file's once closed
        if self._process.is_alive():
            try:
                self._connection.send(None)
            except OSError:
                self.kill()
            await anyio.to_thread.run_sync(self._process.join, _JOIN_SECONDS)
            self.kill()
        await anyio.to_thread.run_sync(self._process.join, _JOIN_SECONDS)
        self._connection.close()
        if self._process.exitcode is not None:  # else it is stuck in the kernel; leave it to the OS
            self._process.close()
