"""The scheduler's whole state of an execution, rebuilt from its log: what tests assert on beyond the public
outcome a client's ``wait()`` gives (each node, attempt, digest and sequence)."""

from __future__ import annotations

from typing import Any

import msgspec

from plait.adapters.event_store import EventStore
from plait.client import AsyncClient, AsyncExecutionHandle
from plait.core.branches import node_kind
from plait.core.state import Execution
from plait.protocol import subjects
from plait.protocol.executions import AttemptView, ExecutionDetail, NodeView


async def final_state(
    client: AsyncClient, execution: AsyncExecutionHandle[Any] | str, timeout: float | None = None
) -> Execution:
    """The state of the execution once it has ended (waiting for that as ``client.wait`` does)."""
    execution_id = execution if isinstance(execution, str) else execution.id
    outcome = await client.wait(execution_id, timeout)
    return await _state(client, execution_id, outcome.last_sequence)


async def current_state(client: AsyncClient, execution: AsyncExecutionHandle[Any] | str) -> Execution:
    """The state of the execution after every decision its log holds now."""
    execution_id = execution if isinstance(execution, str) else execution.id
    store = EventStore(client.js)
    return await _state(client, execution_id, await store.last_sequence(_subject(client, execution_id)))


async def _state(client: AsyncClient, execution_id: str, at_least: int) -> Execution:
    state = await EventStore(client.js).load(_subject(client, execution_id), at_least=at_least)
    assert state is not None, f"execution {execution_id} has no decisions"
    return state


def _subject(client: AsyncClient, execution_id: str) -> str:
    return subjects.execution_subject(client.project, client.domain, execution_id)


def catalog_view(state: Execution) -> ExecutionDetail:
    """What a catalog that projected ``state`` faithfully shows of it (``client.show_execution``); a map item kept
    in columns shows its execution's launch as its queuing time."""
    launched_at = state.launched_at
    assert launched_at is not None
    nodes = [
        NodeView(
            node=node.id,
            task=node.task,
            version=state.workflow.tasks[node.task].version if node.task else "",
            kind=node_kind(node.spec),
            status=node.status,
            queued_at=None,
            started_at=None,
            finished_at=None,
            inputs=node.inputs,
            outputs=node.outputs,
            error=msgspec.to_builtins(node.error),
            attempts=[
                AttemptView(
                    attempt_id=a.attempt_id,
                    attempt=a.attempt,
                    status=a.status,
                    worker=a.worker,
                    queued_at=a.queued_at or launched_at,
                    started_at=a.started_at,
                    finished_at=a.finished_at,
                    error=msgspec.to_builtins(a.error),
                )
                for a in node.all_attempts()
            ],
            attempts_total=node.attempt_count,
        )
        for node in state.nodes.values()
    ]
    assert state.launched_at is not None
    return ExecutionDetail(
        execution_id=state.execution_id,
        project=state.project,
        domain=state.domain,
        workflow=state.workflow.name,
        version=state.workflow.version,
        status=state.status,
        launched_at=state.launched_at,
        finished_at=state.finished_at,
        duration_seconds=None,
        nodes_total=len(nodes),
        nodes_succeeded=sum(node.status == "succeeded" for node in nodes),
        nodes_failed=sum(node.status == "failed" for node in nodes),
        nodes_running=sum(node.status == "running" for node in nodes),
        inputs=state.inputs,
        outputs=state.outputs,
        error=msgspec.to_builtins(state.error),
        failed_node=state.failed_node,
        abort_reason=state.abort_reason,
        launched_by=state.launched_by,
        last_sequence=state.last_sequence,
        nodes=nodes,
    )
