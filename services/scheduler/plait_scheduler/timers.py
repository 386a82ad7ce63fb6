"""Timers a stored decision asks for: each retry it scheduled becomes a ``RetryDue`` command that the server
itself publishes when the delay is over (a JetStream message schedule), whichever replica is alive then."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext

from plait.adapters.commands import publish_command, schedule_command
from plait.core.commands import RetryDue
from plait.core.events import Event, RetryScheduled
from plait.core.ids import attempt_id, content_version, item_attempt_id
from plait.core.state import Execution


class RetryTimers:
    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self.scheduled = 0

    def wants(self, events: Sequence[Event]) -> bool:
        return any(isinstance(event, RetryScheduled) for event in events)

    async def after_decision(self, state: Execution, events: Sequence[Event], decided_at: datetime) -> None:
        for event in events:
            if isinstance(event, RetryScheduled):
                await self._schedule(state, event, decided_at + timedelta(seconds=event.delay_seconds))

    async def _schedule(self, state: Execution, event: RetryScheduled, due: datetime) -> None:
        if event.index >= 0:
            next_attempt = item_attempt_id(state.execution_id, event.node, event.index, event.attempt)
        else:
            next_attempt = attempt_id(state.execution_id, event.node, event.attempt)
        command = RetryDue(
            command_id=f"{next_attempt}:due",
            execution_id=state.execution_id,
            node=event.node,
            attempt=event.attempt,
            index=event.index,
        )
        if due <= datetime.now(UTC):  # overdue (a decision caught up late): due now
            await publish_command(self.js, command, state.project, state.domain)
        else:
            timer = "retry-" + content_version(event.node, event.index)[:16]
            await schedule_command(self.js, command, state.project, state.domain, timer, due)
        self.scheduled += 1
