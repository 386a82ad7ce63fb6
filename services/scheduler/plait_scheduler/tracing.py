"""The trace context a scheduler decides an execution's commands in: the one their messages carry, else the one its
launch recorded (so that a decision joins its execution's trace whoever sent the command, and after restarts)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext

import msgspec
from nats.aio.msg import Msg

from plait.core.commands import Command, LaunchExecution, ResolvedLaunch
from plait.core.events import NodeQueued
from plait.core.state import Execution
from plait.telemetry import current_ids, minted_traceparent, span, traceparent_of, tracing_enabled

DECIDE_SPAN = "plait.scheduler.decide"
DISPATCH_SPAN = "plait.scheduler.dispatch"


def with_launch_traceparent(command: LaunchExecution, msg: Msg) -> LaunchExecution:
    """The launch with the trace context to record on its ``ExecutionLaunched``: its message's, else (when this
    replica traces) one derived from its execution id, the same on every delivery."""
    if command.traceparent:
        return command
    traceparent = traceparent_of(msg.headers) or (minted_traceparent(command.execution_id) if tracing_enabled() else "")
    return msgspec.structs.replace(command, traceparent=traceparent) if traceparent else command


def decision_parent(accepted: Sequence[tuple[Msg, Command | ResolvedLaunch]], cached: Execution | None) -> str:
    """The parent of the span deciding these commands of one execution: a launch's recorded context, the first one
    a message carries, or the execution's as cached ("" when none is known before its state is loaded)."""
    for msg, command in accepted:
        if isinstance(command, ResolvedLaunch) and command.command.traceparent:
            return command.command.traceparent
        if traceparent := traceparent_of(msg.headers):
            return traceparent
    return cached.traceparent if cached is not None else ""


def dispatch_span(state: Execution, events: Sequence[NodeQueued]) -> AbstractContextManager[None]:
    """A span for publishing the dispatch message of these attempts (one chunk), within the decision's span or, when
    the outbox catches up, the execution's trace (none when neither is known). A chunk's span names its first
    attempt, and how many it carries."""
    first = events[0]
    attributes: dict[str, str | int] = {
        "plait.execution_id": state.execution_id,
        "plait.node": first.node,
        "plait.attempt_id": first.attempt_id,
        "plait.queue": first.queue,
    }
    if len(events) > 1:
        attributes["plait.attempts"] = len(events)
    if current_ids() is not None:
        return span(DISPATCH_SPAN, attributes=attributes)
    if state.traceparent:
        return span(DISPATCH_SPAN, parent=state.traceparent, attributes=attributes)
    return nullcontext()
