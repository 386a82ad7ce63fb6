"""Child executions in the pure core: a node that launches a registered launch plan and takes on its outputs.

What the scheduler does about them is derived here from the log, so any replica redoing it changes nothing: the
launch of each child a decision started (``child_launches``, idempotent by the child's deterministic id), the
report of a child's end to its parent (``child_ended``, idempotent by the child's id) and the abort of the children
still running when their parent ended (``child_aborts``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from plait.core.commands import AbortExecution, ChildStatus, LaunchExecution, ReportChildEnded
from plait.core.events import TERMINAL_EVENTS, ChildLaunched, Event, TaskError
from plait.core.ids import content_version
from plait.core.model import ChildSpec, Node
from plait.core.state import Execution, NodeState


def child_of(node: Node) -> ChildSpec | None:
    return node.child if isinstance(node.child, ChildSpec) else None


def child_execution_id(parent_execution: str, node: str) -> str:
    """The id of the execution node ``node`` of ``parent_execution`` launches: the same on every replica and replay
    (a node launches one child; its execution ends if the child fails)."""
    return "c" + content_version(parent_execution, node)[:25]


def launched(state: Execution, node: NodeState, child: ChildSpec, inputs: dict[str, Any]) -> ChildLaunched:
    return ChildLaunched(
        node=node.id,
        child_execution=child_execution_id(state.execution_id, node.id),
        launch_plan=child.launch_plan,
        version=child.version,
        inputs=inputs,
    )


def child_launches(state: Execution, events: Sequence[Event]) -> list[LaunchExecution]:
    """The launches of the children ``events`` started, while their parent still runs."""
    if state.terminal:
        return []
    return [
        LaunchExecution(
            command_id=f"{event.child_execution}:launch",
            execution_id=event.child_execution,
            project=state.project,
            domain=state.domain,
            inputs=event.inputs,
            launched_by=f"parent {state.execution_id}",
            launch_plan=event.launch_plan,
            launch_plan_version=event.version,
            parent_execution=state.execution_id,
            parent_node=event.node,
        )
        for event in events
        if isinstance(event, ChildLaunched)
    ]


def child_ended(state: Execution) -> ReportChildEnded | None:
    """The report to its parent of a child execution that ended (None for one with no parent, or still running)."""
    if not state.parent_execution or not state.terminal:
        return None
    return ReportChildEnded(
        command_id=f"{state.execution_id}:ended",
        execution_id=state.parent_execution,
        node=state.parent_node,
        child_execution=state.execution_id,
        status=cast(ChildStatus, state.status),
        outputs=state.outputs if state.status == "succeeded" else None,
        error=state.error,
    )


def launch_rejected(command: LaunchExecution, reason: str) -> ReportChildEnded | None:
    """The report to its parent of a child launch the scheduler refused (None for a launch with no parent)."""
    if not command.parent_execution:
        return None
    return ReportChildEnded(
        command_id=f"{command.execution_id}:ended",
        execution_id=command.parent_execution,
        node=command.parent_node,
        child_execution=command.execution_id,
        status="rejected",
        error=TaskError(kind="user", message=reason, error_type="ChildLaunchRejected"),
    )


def child_aborts(state: Execution, events: Sequence[Event]) -> list[AbortExecution]:
    """Aborts of the children still running when ``events`` ended their parent (aborted or failed)."""
    if not any(isinstance(event, TERMINAL_EVENTS) for event in events) or state.status == "succeeded":
        return []
    return [
        AbortExecution(
            command_id=f"{node.child_execution}:abort-by-parent",
            execution_id=node.child_execution,
            reason=f"its parent execution {state.execution_id} {state.status}",
            aborted_by=f"parent {state.execution_id}",
        )
        for node in state.nodes.values()
        if node.child_execution and node.status == "aborted"
    ]


def ended_problem(state: Execution, node: NodeState | None, command: ReportChildEnded) -> str | None:
    """Why ``command`` names no child of ``state`` at all (a report for a child already taken into account is no
    problem: it changes nothing)."""
    if node is None or child_of(node.spec) is None:
        return f"execution {state.execution_id} has no child node '{command.node}'"
    if command.child_execution != child_execution_id(state.execution_id, node.id):
        return f"node '{node.id}' launched no execution {command.child_execution}"
    return None


def child_error(command: ReportChildEnded) -> TaskError:
    """The error a child node fails with: its child's, naming the child."""
    cause = command.error.message if command.error is not None else command.status
    if command.status == "rejected":
        message = f"child execution {command.child_execution} could not be launched: {cause}"
    elif command.status == "aborted":
        message = f"child execution {command.child_execution} was aborted: {cause}"
    else:
        message = f"child execution {command.child_execution} failed: {cause}"
    return TaskError(kind="user", message=message, error_type="ChildExecutionFailed")


def child_story(event: ChildLaunched) -> str:
    """A child's launch as a line of an execution's timeline."""
    return f"launched child execution {event.child_execution} ({event.launch_plan}@{event.version})"
