"""Timers a stored decision asks for, each a command that the server itself publishes when it is due (a JetStream
message schedule), whichever replica is alive then: ``RetryDue`` for each retry it scheduled, and an
``AttemptDeadline`` for each attempt it queued."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext

from plait.adapters.commands import publish_command, schedule_command
from plait.core.commands import DEFAULT_ATTEMPT_DEADLINE_SECONDS, attempt_deadline, retry_due
from plait.core.events import Event, NodeQueued, RetryScheduled
from plait.core.state import Execution


def still_queued(state: Execution, event: NodeQueued) -> bool:
    """Whether the attempt ``event`` queued still waits for an executor: queued, in an execution still running.
    Only such an attempt is dispatched, or given a deadline, from the log (a replayed decision must not run
    finished work again)."""
    if state.terminal:
        return False
    attempt = state.nodes[event.node].find_attempt(event.attempt_id)
    return attempt is not None and attempt.status == "queued"


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
    """Gives each queued attempt a deadline ``seconds`` from now: if by then it has neither a result nor a sign of
    life (its executor moves the deadline on while it runs), it fails as a system error. A decision caught up late
    sets it from when it is caught up, not from when it was made: later than due, never sooner."""

    def __init__(self, js: JetStreamContext, seconds: float = DEFAULT_ATTEMPT_DEADLINE_SECONDS) -> None:
        self.js, self.seconds = js, seconds

    def wants(self, state: Execution, events: Sequence[Event]) -> bool:
        return any(isinstance(event, NodeQueued) and still_queued(state, event) for event in events)

    async def after_decision(self, state: Execution, events: Sequence[Event]) -> None:
        due = datetime.now(UTC) + timedelta(seconds=self.seconds)
        deadlines = [
            attempt_deadline(state.execution_id, event.node, event.attempt_id, self.seconds)
            for event in events
            if isinstance(event, NodeQueued) and still_queued(state, event)
        ]
        await asyncio.gather(
            *(schedule_command(self.js, d, state.project, state.domain, d.timer, due) for d in deadlines)
        )
