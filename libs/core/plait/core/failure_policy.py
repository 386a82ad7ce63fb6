"""A workflow's failure policy applied to a decision: with ``failure_policy="finish"``, a failed node fails only
what depends on it (those nodes are skipped), and the execution fails once nothing can run any more.

``decide_batch`` passes every decision's events through ``contain_failure``, and asks ``failed_when_idle`` after
applying them. Pure, like the rest of the core.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from plait.core.events import Event, ExecutionFailed, ExecutionLaunched, NodeFailed, NodeSkipped
from plait.core.model import WorkflowSpec, upstream_nodes
from plait.core.state import Execution

IN_FLIGHT_NODE_STATUSES = ("cache_lookup", "queued", "running")
"""A node in one of these may still finish (a look-up, an attempt or a retry under way, map items running)."""


def _workflow_of(state: Execution | None, events: list[Event]) -> WorkflowSpec | None:
    if state is not None:
        return state.workflow
    first = events[0] if events else None
    return first.workflow if isinstance(first, ExecutionLaunched) else None


def downstream_of(workflow: WorkflowSpec, failed: str) -> Iterator[str]:
    """The nodes that read, directly or not, from node ``failed``, in the workflow's order."""
    reached = {failed}
    for node in workflow.nodes:  # in the order they were traced: every parent before its children
        if any(upstream_nodes(binding) & reached for binding in node.inputs.values()):
            reached.add(node.id)
            yield node.id


def contain_failure(state: Execution | None, events: list[Event]) -> list[Event]:
    """``events`` as a ``finish`` workflow has them: each execution failure caused by a node's failure in the same
    decision gives way to the skipping of the nodes downstream of that node. Others are left as they are."""
    workflow = _workflow_of(state, events)
    if workflow is None or not workflow.finishes_on_failure:
        return events
    skipped = {node.id for node in state.nodes.values() if node.status == "skipped"} if state else set()
    failed_now: set[str] = set()
    contained: list[Event] = []
    for event in events:
        if isinstance(event, NodeFailed):
            failed_now.add(event.node)
        if isinstance(event, ExecutionFailed) and event.node in failed_now:
            for node in downstream_of(workflow, event.node):
                if node not in skipped:
                    skipped.add(node)
                    contained.append(NodeSkipped(node=node, reason=f"node '{event.node}' failed"))
            continue
        contained.append(event)
    return contained


def failed_when_idle(state: Execution | None) -> list[Event]:
    """The end of a running ``finish`` execution with failed nodes once none of its nodes is in flight: no other
    node can become ready then. The failure names every failed node; its error is the first one's."""
    if state is None or state.terminal or not state.workflow.finishes_on_failure:
        return []
    failed = [node for node in state.nodes.values() if node.status == "failed" and node.error is not None]
    if not failed or any(node.status in IN_FLIGHT_NODE_STATUSES for node in state.nodes.values()):
        return []
    first = failed[0]
    assert first.error is not None  # noqa: S101  an invariant of this code, not a check of input
    names = ", ".join(f"'{node.id}'" for node in failed)
    message = f"node{'s' if len(failed) > 1 else ''} {names} failed; '{first.id}': {first.error.message}"
    return [ExecutionFailed(node=first.id, error=msgspec.structs.replace(first.error, message=message))]
