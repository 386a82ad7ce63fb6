"""Timers a stored decision asks for, each a command that the server itself publishes when it is due (a JetStream
message schedule), whichever replica is alive then: ``RetryDue`` for each retry it scheduled, an
``AttemptDeadline`` for each attempt it started that still runs, an ``AttemptTimeout`` for each attempt of a task
with a timeout it started, and an ``ExecutionTimeout`` for the launch of a workflow with a timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext

from plait.adapters.commands import publish_command, schedule_command
from plait.core.commands import (
    DEFAULT_ATTEMPT_DEADLINE_SECONDS,
    AttemptTimeout,
    ExecutionTimeout,
    GateTimer,
    attempt_deadline,
    retry_due,
    timeout_timers,
)
from plait.core.events import (
    AttemptFailed,
    AttemptStarted,
    Event,
    ExecutionLaunched,
    GateOpened,
    MapItemSucceeded,
    NodeQueued,
    NodeSucceeded,
    RetryScheduled,
)
from plait.core.state import AttemptStatus, Execution


def still_queued(state: Execution, event: NodeQueued) -> bool:
    """Whether the attempt ``event`` queued still waits for an executor: queued, in an execution still running.
    Only such an attempt is dispatched from the log (a replayed decision must not run finished work again)."""
    return _still(state, event.node, event.attempt_id, "queued")


class RetryTimers:
    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self.scheduled = 0

    def wants(self, events: Sequence[Event]) -> bool:
        return any(isinstance(event, RetryScheduled) for event in events)

    async def after_decision(self, state: Execution, events: Sequence[Event], decided_at: datetime) -> None:
        if state.terminal:
            return  # nothing is retried in an execution that ended
        for event in events:
            if isinstance(event, RetryScheduled):
                await self._schedule(state, event, decided_at + timedelta(seconds=event.delay_seconds))

    async def _schedule(self, state: Execution, event: RetryScheduled, due: datetime) -> None:
        command = retry_due(state.execution_id, event)
        if due <= datetime.now(UTC):  # overdue (a decision caught up late): due now
            await publish_command(self.js, command, state.project, state.domain)
        else:
            await schedule_command(self.js, command, state.project, state.domain, command.timer, due)
        self.scheduled += 1


class AttemptDeadlines:
    """Gives each attempt that started and still runs a deadline ``seconds`` from now: if by then it has neither a
    result nor a sign of life (its executor moves the deadline on while it runs), it fails as a system error
    (``plait.core.decide``). A queued attempt needs none: no deadline fails it (it waits for an executor of its
    cluster), and one taken by an executor that dies before reporting it started is delivered again. An attempt that
    ends as fast as it starts (its result its only report) is given none at all. A decision caught up late sets it
    from when it is caught up, not from when it was made: later than due, never sooner."""

    def __init__(self, js: JetStreamContext, seconds: float = DEFAULT_ATTEMPT_DEADLINE_SECONDS) -> None:
        self.js, self.seconds = js, seconds

    def wants(self, state: Execution, events: Sequence[Event]) -> bool:
        return any(still_running(state, event) for event in events if isinstance(event, AttemptStarted))

    async def after_decision(self, state: Execution, events: Sequence[Event]) -> None:
        due = datetime.now(UTC) + timedelta(seconds=self.seconds)
        deadlines = [
            attempt_deadline(state.execution_id, event.node, event.attempt_id, self.seconds)
            for event in events
            if isinstance(event, AttemptStarted) and still_running(state, event)
        ]
        await asyncio.gather(
            *(schedule_command(self.js, d, state.project, state.domain, d.timer, due) for d in deadlines)
        )


def still_running(state: Execution, event: AttemptStarted) -> bool:
    """Whether the attempt ``event`` started is still running, in an execution still running."""
    return _still(state, event.node, event.attempt_id, "running")


def _still(state: Execution, node: str, attempt_id: str, status: AttemptStatus) -> bool:
    if state.terminal:
        return False
    attempt = state.nodes[node].find_attempt(attempt_id)
    return attempt is not None and attempt.status == status


def may_time_out(events: Sequence[Event]) -> bool:
    """Whether a decision's events may call for a timeout or deadline timer (a launch, or an attempt started and not
    ended in the same decision, as quick attempts are); ``Timeouts.wants`` and ``AttemptDeadlines.wants`` decide, with
    the state."""
    started = {event.attempt_id for event in events if isinstance(event, AttemptStarted)}
    ended = {
        event.attempt_id for event in events if isinstance(event, AttemptFailed | NodeSucceeded | MapItemSucceeded)
    }
    return bool(started - ended) or any(isinstance(event, ExecutionLaunched | GateOpened) for event in events)


class Timeouts:
    """Sets the timeout timers of tasks and workflows that have one: an attempt's fires ``timeout_seconds`` after
    it started, an execution's ``timeout_seconds`` after its launch, both as recorded in the log (so a decision
    caught up late, or by another replica, sets the same time)."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js

    def wants(self, state: Execution, events: Sequence[Event]) -> bool:
        return bool(self._due(state, events))

    async def after_decision(self, state: Execution, events: Sequence[Event]) -> None:
        await asyncio.gather(
            *(
                schedule_command(self.js, command, state.project, state.domain, command.timer, due)
                for command, due in self._due(state, events)
            )
        )

    def _due(
        self, state: Execution, events: Sequence[Event]
    ) -> list[tuple[AttemptTimeout | ExecutionTimeout | GateTimer, datetime]]:
        return [(timer.command, _after(timer.since, timer.seconds)) for timer in timeout_timers(state, events)]


def _after(at: datetime, seconds: float) -> datetime:
    """``seconds`` after ``at`` (a decision's time, which a log read back may give without a time zone: UTC)."""
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)) + timedelta(seconds=seconds)
