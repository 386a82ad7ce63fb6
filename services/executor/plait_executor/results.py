"""Storing attempt results, several of one execution in one command when they end close together."""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
import nats.errors
from nats.js import JetStreamContext
from structlog.typing import FilteringBoundLogger

from plait import codec
from plait.adapters.connection import route_of
from plait.core.commands import ReportAttemptResult, ReportAttemptResults
from plait.core.dispatch import Dispatch
from plait.core.ids import content_version
from plait_executor.attempt import AttemptOutcome
from plait_executor.reports import publish_until_stored, report_result, result_command

MAX_RESULTS_PER_COMMAND = 256
MAX_BYTES_PER_COMMAND = 1024 * 1024
COMMAND_ROOM_BYTES = 4096
"""Kept free of results in a command of several, below the server's ``max_payload``: its headers and the wrapper
around the results."""
LINGER_SECONDS = 0.005
"""How long a result waits for others of its execution before it is stored, when attempts of that execution wait
here for a worker (this executor is busy with it) or have just started: they go out in one command, one write and
one decision for all."""
JUST_STARTED_SECONDS = 0.05
"""An attempt of the execution started this recently is likely to end within the linger (a no-op takes ~1 ms); one
running longer is not waited for (the executor reports it ``started`` after as long)."""

_Execution = tuple[str, str, str]  # (project, domain, execution id)


@dataclass
class _Result:
    dispatch: Dispatch
    outcome: AttemptOutcome
    command: ReportAttemptResult
    log: FilteringBoundLogger
    stored: anyio.Event = field(default_factory=anyio.Event)


class ResultReporter:
    """Stores each attempt's result; ``report`` returns once it is stored.

    A result goes out at once when no report to its execution is being stored and no attempt of that execution is
    waiting here for a worker (``expect``, ``started``) or started within ``just_started`` seconds. Else it lingers
    up to ``linger`` seconds for more results of it (less when all the attempts this executor holds of it have
    ended). The results of that execution that end meanwhile wait for it, then go out together as one
    ``ReportAttemptResults``: a burst of quick attempts (a fan-out's, or the two tasks of a small execution run side
    by side) costs a few writes and decisions instead of one each, while a lone result, such as a chain's, or one
    beside attempts that have run a while already, waits for nothing.
    """

    def __init__(
        self,
        js: JetStreamContext,
        worker: str,
        linger: float = LINGER_SECONDS,
        just_started: float = JUST_STARTED_SECONDS,
    ) -> None:
        self.js, self.worker, self.linger, self.just_started = js, worker, linger, just_started
        self._waiting: dict[_Execution, list[_Result]] = {}
        self._storing: dict[_Execution, anyio.Event] = {}  # set when that execution's report in flight is stored
        self._expected: dict[_Execution, int] = {}  # results still to come, of attempts this executor holds
        self._queued: dict[_Execution, int] = {}  # of those, attempts waiting for a worker
        self._all_in: dict[_Execution, anyio.Event] = {}  # set when the last expected result of it has come
        self._last_started: dict[_Execution, float] = {}  # when an attempt of it last took a worker, while expected
        self.commands = 0  # result commands sent, batched or not

    def expect(self, dispatch: Dispatch) -> None:
        """This executor holds the attempt of ``dispatch``, waiting for a worker: its result, or ``forgo``, is to
        come."""
        execution = _execution(dispatch)
        self._expected[execution] = self._expected.get(execution, 0) + 1
        self._queued[execution] = self._queued.get(execution, 0) + 1

    def started(self, dispatch: Dispatch) -> None:
        """The expected attempt of ``dispatch`` no longer waits for a worker (it started, or ended before)."""
        execution = _execution(dispatch)
        _count_down(self._queued, execution)
        if execution in self._expected:
            self._last_started[execution] = anyio.current_time()

    def forgo(self, dispatch: Dispatch) -> None:
        """The expected attempt of ``dispatch`` ended without a result to report here."""
        self._arrived(_execution(dispatch))

    def _arrived(self, execution: _Execution) -> None:
        if not _count_down(self._expected, execution):
            return
        self._last_started.pop(execution, None)
        if (all_in := self._all_in.pop(execution, None)) is not None:
            all_in.set()

    def _others_coming(self, execution: _Execution) -> bool:
        """Whether more results of the execution may come within the linger: attempts of it wait here for a worker,
        or one has just started."""
        if execution in self._queued:
            return True
        started = self._last_started.get(execution)
        return started is not None and anyio.current_time() - started < self.just_started

    async def report(
        self, dispatch: Dispatch, outcome: AttemptOutcome, log: FilteringBoundLogger, *, expected: bool = True
    ) -> None:
        """Store the result; ``expected``: of an attempt ``expect`` was told of."""
        command = result_command(dispatch, self.worker, outcome)
        result = _Result(dispatch, outcome, command, log)
        execution = _execution(dispatch)
        if expected:
            self._arrived(execution)
        self._waiting.setdefault(execution, []).append(result)
        while not result.stored.is_set():
            in_flight = self._storing.get(execution)
            if in_flight is not None:
                await in_flight.wait()
                continue
            done = self._storing[execution] = anyio.Event()
            batch: list[_Result] = []
            try:
                if self._others_coming(execution):
                    with anyio.move_on_after(self.linger):
                        await self._all_in.setdefault(execution, anyio.Event()).wait()
                batch = self._take(execution)
                await self._store(batch)
            except BaseException:
                # Another waiter stores them; this one's dispatch goes back to the server unacknowledged.
                self._waiting.setdefault(execution, [])[:0] = [r for r in batch if not r.stored.is_set()]
                raise
            finally:
                del self._storing[execution]
                done.set()

    def _take(self, execution: _Execution) -> list[_Result]:
        """The oldest waiting results of the execution that fit in one command (a lone one is not measured: it is
        sent as it is)."""
        waiting = self._waiting[execution]
        count, size = 1, 0
        if len(waiting) > 1:
            most = min(MAX_BYTES_PER_COMMAND, route_of(self.js).nc.max_payload - COMMAND_ROOM_BYTES)
            size = len(codec.encode(waiting[0].command))
            for result in waiting[1:MAX_RESULTS_PER_COMMAND]:
                size += len(codec.encode(result.command))
                if size > most:
                    break
                count += 1
        batch, self._waiting[execution] = waiting[:count], waiting[count:]
        if not self._waiting[execution]:
            del self._waiting[execution]
        return batch

    async def _store(self, batch: list[_Result]) -> None:
        self.commands += 1
        # Two deliveries of one dispatch report the same command: it is stored once, as when they go out apart.
        first_of: dict[str, _Result] = {}
        for result in batch:
            first_of.setdefault(result.command.command_id, result)
        unique = list(first_of.values())
        if len(unique) == 1:
            await report_result(self.js, unique[0].dispatch, self.worker, unique[0].outcome, unique[0].log)
        else:
            together = ReportAttemptResults(
                command_id="results:" + content_version([result.command.command_id for result in unique]),
                execution_id=unique[0].dispatch.execution_id,
                results=tuple(result.command for result in unique),
            )
            try:
                await publish_until_stored(self.js, together, unique[0].dispatch, unique[0].log)
            except nats.errors.MaxPayloadError:
                for result in unique:  # each alone: one too large is reported as such
                    await report_result(self.js, result.dispatch, self.worker, result.outcome, result.log)
        for result in batch:
            result.stored.set()


def _execution(dispatch: Dispatch) -> _Execution:
    return dispatch.project, dispatch.domain, dispatch.execution_id


def _count_down(counts: dict[_Execution, int], execution: _Execution) -> bool:
    """One fewer of ``execution`` in ``counts``, which keeps no zero; True when none is left."""
    left = counts.get(execution, 0) - 1
    if left > 0:
        counts[execution] = left
        return False
    counts.pop(execution, None)
    return True
