"""The side work of child executions, derived from the log (``plait.core.children``) and idempotent by the child's
id, so that a replica redoing it changes nothing: the launch of each child a decision started, the report of a
child's end to its parent, the abort of the children still running when their parent ended, and the report to a
parent of a child launch this scheduler refused.

Done after the decision is stored, like the timers: a replica killed before doing it leaves it to the outbox, which
redoes the side work of every stored decision (``Outbox._catch_up_side_work``), so a child's launch or a child's end
is never lost; a repeat is dropped by JetStream (``Nats-Msg-Id``) or decided as nothing (a launch already made, a
node no longer running, an execution already ended). A refused launch is reported when it is refused; were that
report lost, the parent's node waits until the parent's own timeout, or an abort."""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from nats.js import JetStreamContext

from plait.adapters.commands import publish_command
from plait.core import children
from plait.core.commands import Command, LaunchExecution
from plait.core.events import TERMINAL_EVENTS, ChildLaunched, Event
from plait.core.state import Execution

log = structlog.get_logger()


def may_need_child_work(events: Sequence[Event]) -> bool:
    """Whether a decision's events may call for child work; ``ChildWork.wants`` decides, with the state."""
    return any(isinstance(event, (ChildLaunched, *TERMINAL_EVENTS)) for event in events)


class ChildWork:
    def __init__(self, js: JetStreamContext) -> None:
        self.js = js

    def commands(self, state: Execution, events: Sequence[Event]) -> list[Command]:
        ended = children.child_ended(state) if any(isinstance(e, TERMINAL_EVENTS) for e in events) else None
        found: list[Command] = [*children.child_launches(state, events), *children.child_aborts(state, events)]
        return [*found, ended] if ended is not None else found

    def wants(self, state: Execution, events: Sequence[Event]) -> bool:
        return may_need_child_work(events) and bool(self.commands(state, events))

    async def after_decision(self, state: Execution, events: Sequence[Event]) -> None:
        for command in self.commands(state, events):
            await publish_command(self.js, command, state.project, state.domain)
            log.info(
                "child_work", execution=state.execution_id, command=type(command).__name__, to=command.execution_id
            )


async def report_rejected_launch(js: JetStreamContext, command: LaunchExecution, reason: str) -> None:
    """Tell the parent of a refused child launch (if it has one) that its child will not run."""
    report = children.launch_rejected(command, reason)
    if report is not None:
        await publish_command(js, report, command.project, command.domain)
        log.info("child_launch_rejected", execution=command.parent_execution, child=command.execution_id, reason=reason)
