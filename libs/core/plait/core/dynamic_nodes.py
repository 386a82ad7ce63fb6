"""Deciding for dynamic nodes: recording a generated sub-DAG, or why it cannot run, and failing the dynamic nodes
that enclose a failed generated node. Pure, like the rest of the core; ``decide`` calls these."""

from __future__ import annotations

from typing import Any

import msgspec

from plait.core.dynamic import generated_of, generation_problem
from plait.core.events import AttemptFailed, DynamicExpanded, Event, ExecutionFailed, NodeFailed, TaskError
from plait.core.state import AttemptState, Execution, NodeState

INVALID_DYNAMIC_WORKFLOW = "DynamicWorkflowInvalid"
"""``error_type`` of a dynamic node whose attempt generated a sub-DAG that cannot run (too large, inconsistent)."""


def generated(
    state: Execution, node: NodeState, attempt: AttemptState, worker: str, outputs: dict[str, Any]
) -> list[Event]:
    """A dynamic node's attempt returned the sub-DAG it generated: recorded when it can run, else the node fails
    (and with it the execution, per its failure policy) with the reason; a generated DAG is the same on a retry."""
    task = state.workflow.tasks[node.task]
    try:
        workflow = generated_of(outputs)
        problem = generation_problem(node.id, task.interface, workflow, len(state.nodes))
    except ValueError as exc:
        problem = str(exc)
    if problem is None:
        return [DynamicExpanded(node=node.id, attempt_id=attempt.attempt_id, workflow=workflow, worker=worker)]
    error = TaskError(kind="user", message=f"dynamic node '{node.id}': {problem}", error_type=INVALID_DYNAMIC_WORKFLOW)
    return [
        AttemptFailed(node=node.id, attempt_id=attempt.attempt_id, error=error, worker=worker),
        NodeFailed(node=node.id, error=error),
        ExecutionFailed(node=node.id, error=error),
    ]


def enclosing(state: Execution, node_id: str) -> list[str]:
    """The dynamic nodes that generated ``node_id``, innermost first."""
    chain: list[str] = []
    node = state.nodes.get(node_id)
    while node is not None and node.dynamic_of:
        chain.append(node.dynamic_of)
        node = state.nodes.get(node.dynamic_of)
    return chain


def fail_enclosing(state: Execution | None, events: list[Event]) -> list[Event]:
    """``events`` with each failed generated node failing the dynamic nodes that enclose it (right after it), and
    the execution failure it causes named after the outermost of them that failed now: for the workflow's failure
    policy, the dynamic node is what failed."""
    if state is None or not any(isinstance(e, NodeFailed) and state.nodes.get(e.node) for e in events):
        return events
    failed = {node.id for node in state.nodes.values() if node.status == "failed"}
    outermost: dict[str, NodeFailed] = {}  # a failed generated node -> the failure of its outermost dynamic node
    result: list[Event] = []
    for event in events:
        if isinstance(event, ExecutionFailed) and event.node in outermost:
            result.append(ExecutionFailed(node=outermost[event.node].node, error=outermost[event.node].error))
            continue
        result.append(event)
        if not isinstance(event, NodeFailed):
            continue
        failed.add(event.node)
        message = f"generated node '{event.node}' failed: {event.error.message}"
        error = msgspec.structs.replace(event.error, message=message)
        for parent in enclosing(state, event.node):
            if parent not in failed:  # one that failed before stays so (with ``finish``, its siblings go on)
                failed.add(parent)
                result.append(NodeFailed(node=parent, error=error))
                outermost[event.node] = NodeFailed(node=parent, error=error)
    return result
