"""One dispatch message through its attempt: report started, run it while heartbeating, report the result, ack."""

from __future__ import annotations

import time
from dataclasses import dataclass

import anyio
import msgspec
import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from structlog.typing import FilteringBoundLogger

from plait import codec
from plait.adapters import subjects
from plait.core.dispatch import Dispatch
from plait_executor.attempt import AttemptOutcome
from plait_executor.pool import WorkerPool
from plait_executor.reports import report_started_pipelined
from plait_executor.results import ResultReporter

log: FilteringBoundLogger = structlog.get_logger("plait.executor")

NAK_TIMEOUT_SECONDS = 2.0
STARTED_AFTER_SECONDS = 0.05
"""An attempt still running after this long reports ``started``; a quicker one sends only its result, which the
scheduler records as the start and the end together (two commands and two acks fewer per attempt)."""


@dataclass
class _Held:
    """A dispatch message being worked on, and when the server last heard so."""

    msg: Msg
    log: FilteringBoundLogger
    since: float


class _NotStarted(Exception):
    """The executor is stopping: a dispatch that no worker has taken yet goes back to the server."""


class AttemptRunner:
    """Runs the attempt a dispatch message names in the worker pool, and reports it.

    The message is acknowledged only once the result command is stored, so an executor that dies at any
    point leaves the message to be redelivered, and the same attempt runs again elsewhere. While the
    message is held (waiting for a worker, then running), ``keep_in_progress`` keeps it in progress every
    ``heartbeat_seconds``.
    """

    def __init__(
        self,
        js: JetStreamContext,
        pool: WorkerPool,
        worker: str,
        heartbeat_seconds: float,
        started_after: float = STARTED_AFTER_SECONDS,
    ) -> None:
        self.js = js
        self.results = ResultReporter(js, worker)
        self.started_after = started_after
        self.pool = pool
        self.worker = worker
        self.heartbeat_seconds = heartbeat_seconds
        self.stopping = False
        self._waiting: set[anyio.CancelScope] = set()  # attempts waiting for a worker
        self._held: dict[int, _Held] = {}  # by id(msg)
        self.attempts = 0

    def counts(self) -> dict[str, int]:
        """Attempts run, and the result commands that reported them."""
        return {"attempts": self.attempts, "result_commands": self.results.commands}

    def stop_taking(self) -> None:
        """From now on, hand back the dispatches that are held but not yet running, for another replica."""
        self.stopping = True
        for waiting in list(self._waiting):
            waiting.cancel()

    async def handle(self, msg: Msg) -> None:
        try:
            dispatch = codec.dispatch_decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            await self._dead_letter(msg, exc)
            return
        attempt_log = log.bind(
            execution=dispatch.execution_id,
            node=dispatch.node,
            attempt=dispatch.attempt_id,
            delivery=msg.metadata.num_delivered,
        )
        self._held[id(msg)] = _Held(msg, attempt_log, anyio.current_time())
        try:
            ran = await self._run(dispatch, attempt_log)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True), anyio.move_on_after(NAK_TIMEOUT_SECONDS):
                await _nak(msg, attempt_log)
            attempt_log.warning("attempt_abandoned")
            raise
        finally:
            del self._held[id(msg)]
        if not ran:
            with anyio.CancelScope(shield=True), anyio.move_on_after(NAK_TIMEOUT_SECONDS):
                await _nak(msg, attempt_log)
            attempt_log.info("dispatch_handed_back")
            return
        await _ack(msg, attempt_log)

    async def _run(self, dispatch: Dispatch, attempt_log: FilteringBoundLogger) -> bool:
        """Run the attempt and store its result; False when the executor stopped before a worker took it.

        ``started`` is sent once the attempt has run for ``STARTED_AFTER_SECONDS``, and stored while it runs; the
        result is sent after it on the same connection, so JetStream stores them in that order, and both
        acknowledgements are awaited together. A quicker attempt sends its result alone.
        """
        started = 0.0
        sent, ended = anyio.Event(), anyio.Event()
        waiting = anyio.CancelScope()

        def on_start() -> None:
            nonlocal started
            self._waiting.discard(waiting)
            if self.stopping:
                raise _NotStarted
            reports.start_soon(self._report_started_unless_ended, dispatch, attempt_log, sent, ended)
            attempt_log.info("attempt_started", task=dispatch.task.name, version=dispatch.task.version)
            started = time.perf_counter()
            self.attempts += 1

        async with anyio.create_task_group() as reports:
            self._waiting.add(waiting)
            try:
                with waiting:
                    outcome = await self.pool.run(
                        dispatch.task.target,
                        dispatch.inputs,
                        version=dispatch.task.version,
                        timeout_seconds=dispatch.task.timeout_seconds,
                        on_start=on_start,
                    )
            except _NotStarted:
                return False
            finally:
                self._waiting.discard(waiting)
            if waiting.cancel_called:  # stopped while waiting for a worker
                return False
            ended.set()
            _log_outcome(attempt_log, outcome, time.perf_counter() - started)
            await sent.wait()
            await self.results.report(dispatch, outcome, attempt_log)
        return True

    async def _report_started_unless_ended(
        self, dispatch: Dispatch, attempt_log: FilteringBoundLogger, sent: anyio.Event, ended: anyio.Event
    ) -> None:
        with anyio.move_on_after(self.started_after):
            await ended.wait()
        if ended.is_set():
            sent.set()
            return
        await report_started_pipelined(self.js, dispatch, self.worker, attempt_log, sent)

    async def keep_in_progress(self) -> None:
        """Until cancelled: tell the server every ``heartbeat_seconds`` that each held message is still being worked
        on (one loop for all of them, not a task per attempt)."""
        while True:
            await anyio.sleep(self.heartbeat_seconds / 3)
            now = anyio.current_time()
            for held in list(self._held.values()):
                if now - held.since >= self.heartbeat_seconds:
                    held.since = now
                    try:
                        await held.msg.in_progress()
                    except nats.errors.Error as exc:
                        held.log.warning("heartbeat_failed", error=repr(exc))

    async def _dead_letter(self, msg: Msg, error: msgspec.DecodeError) -> None:
        """Move an unreadable dispatch aside: no attempt can be reported for it, and redelivery cannot help."""
        metadata = msg.metadata
        log.error("dispatch_unreadable", subject=msg.subject, sequence=metadata.sequence.stream, error=str(error))
        headers = {
            "Nats-Msg-Id": f"{subjects.DISPATCH_STREAM}:{metadata.sequence.stream}",
            "Plait-Error": str(error)[:1000],
        }
        try:
            await self.js.publish(
                subjects.dead_letter_subject(msg.subject), msg.data, headers=headers, stream=subjects.DEAD_LETTER_STREAM
            )
        except nats.errors.Error as exc:
            log.warning("dead_letter_failed", error=repr(exc))  # it stays in the queue, to be tried again
            return
        await _ack(msg, log)


def _log_outcome(attempt_log: FilteringBoundLogger, outcome: AttemptOutcome, seconds: float) -> None:
    if outcome.error is None:
        attempt_log.info("attempt_succeeded", seconds=round(seconds, 6))
    else:
        attempt_log.warning(
            "attempt_failed",
            seconds=round(seconds, 6),
            kind=outcome.error.kind,
            error_type=outcome.error.error_type,
            message=outcome.error.message,
        )


async def _ack(msg: Msg, message_log: FilteringBoundLogger) -> None:
    """Acknowledge without awaiting the server's reply: the result is stored already, and if the ack is lost the
    redelivered attempt's result is deduplicated; the connection delivers it before any later pull request."""
    try:
        await msg.ack()
    except nats.errors.Error as exc:
        # The result is stored; a redelivery runs the attempt again and its result is deduplicated.
        message_log.warning("ack_failed", error=repr(exc))


async def _nak(msg: Msg, message_log: FilteringBoundLogger) -> None:
    try:
        await msg.nak()
    except nats.errors.Error as exc:
        message_log.warning("nak_failed", error=repr(exc))
