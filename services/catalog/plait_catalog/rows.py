"""The catalog's rows, and what each event does to them: pure functions, no I/O.

A batch loads the rows its decisions touch, applies every event to them in order, and writes each
changed row back once; so a row updated by many events of a batch costs one write.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import msgspec

from plait.adapters.registry import kind_of
from plait.core.branches import node_kind
from plait.core.dynamic import expanded_nodes, task_keys
from plait.core.events import (
    AttemptFailed,
    AttemptStarted,
    AttemptStopped,
    BranchTaken,
    CommandRejected,
    Decision,
    DynamicExpanded,
    Event,
    ExecutionAborted,
    ExecutionFailed,
    ExecutionLaunched,
    ExecutionSucceeded,
    GateOpened,
    MapItemFailed,
    MapItemSucceeded,
    MapStarted,
    NodeCacheHit,
    NodeCacheLookup,
    NodeCacheWaiting,
    NodeFailed,
    NodeQueued,
    NodeRecovered,
    NodeSkipped,
    NodeSucceeded,
    Registration,
    RetryScheduled,
    SignalReceived,
    TaskError,
)
from plait.core.gates import gate_waiting_text
from plait.core.model import EntityKind
from plait.core.state import UNFINISHED_NODE_STATUSES, AttemptStatus, ExecutionStatus, NodeStatus
from plait.protocol import subjects

ExecutionKey = tuple[str, str, str]  # (project, domain, execution_id): an execution id is unique in its project
NodeKey = tuple[str, str, str, str]  # (project, domain, execution_id, node_id)
AttemptKey = tuple[str, str, str]  # (project, domain, attempt_id)


class ExecutionRow(msgspec.Struct, kw_only=True):
    execution_id: str
    project: str
    domain: str
    workflow_name: str
    workflow_version: str
    status: ExecutionStatus
    inputs: dict[str, Any] | None  # None in a row read back: set once, never rewritten (see projection.WRITE_ONCE)
    outputs: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    failed_node: str | None = None
    abort_reason: str | None = None
    launched_by: str
    launched_at: datetime
    finished_at: datetime | None = None
    last_sequence: int
    overwrite_cache: bool = False
    aborted_by: str = ""
    relaunch_of: str = ""
    recovered_from: str = ""


class NodeRow(msgspec.Struct, kw_only=True):
    project: str
    domain: str
    execution_id: str
    node_id: str
    position: int
    task_name: str
    task_version: str
    status: NodeStatus = "waiting"
    inputs: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    queued_at: datetime | None = None  # of the first attempt
    started_at: datetime | None = None  # of the first attempt
    finished_at: datetime | None = None
    cache_key: str = ""
    cached_from: str = ""  # "execution/node" whose outputs a cache hit reused
    recovered_from: str = ""  # the execution whose outputs of this node a recovery reused
    skip_reason: str = ""
    waiting_for: str = ""  # of an open gate: "waiting for signal 'name' (int) until <time>"
    kind: str = "task"  # or "branch", or a gate's kind: "signal", "approve", "sleep"


class AttemptRow(msgspec.Struct, kw_only=True):
    project: str
    domain: str
    attempt_id: str
    execution_id: str
    node_id: str
    attempt: int
    status: AttemptStatus = "queued"
    worker: str = ""
    queued_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: dict[str, Any] | None = None
    stop_reason: str = ""  # how its executor stopped it after its execution ended


class RegistryRow(msgspec.Struct, kw_only=True):
    kind: EntityKind
    project: str
    domain: str
    name: str
    version: str
    spec: Any
    registered_at: datetime
    sequence: int


class Rows(msgspec.Struct):
    """The rows one batch reads and writes, by primary key."""

    executions: dict[ExecutionKey, ExecutionRow] = msgspec.field(default_factory=dict)
    nodes: dict[NodeKey, NodeRow] = msgspec.field(default_factory=dict)
    attempts: dict[AttemptKey, AttemptRow] = msgspec.field(default_factory=dict)
    registrations: list[RegistryRow] = msgspec.field(default_factory=list)


class Keys(msgspec.Struct):
    """The primary keys of the rows that some decisions change: what a batch must load first."""

    executions: set[ExecutionKey] = msgspec.field(default_factory=set)
    nodes: set[NodeKey] = msgspec.field(default_factory=set)
    attempts: set[AttemptKey] = msgspec.field(default_factory=set)
    all_nodes_of: set[ExecutionKey] = msgspec.field(default_factory=set)  # executions that end: each node may change


def execution_key(subject: str, decision: Decision) -> ExecutionKey:
    """The execution a decision stored on ``subject`` belongs to: its project and domain are the subject's.

    Raises ``ValueError`` for a subject that names none."""
    project, domain = subjects.tenant_of_subject(subject)
    return project, domain, decision.execution_id


def keys_touched(decisions: Iterable[tuple[ExecutionKey, Decision]]) -> Keys:
    """The rows that applying ``decisions`` (each with its execution's key) reads before it changes them."""
    keys = Keys()
    for (project, domain, execution_id), decision in decisions:
        keys.executions.add((project, domain, execution_id))
        for event in decision.events:
            match event:
                case NodeQueued() | AttemptStarted() | AttemptFailed() | NodeSucceeded() | MapItemSucceeded():
                    keys.nodes.add((project, domain, execution_id, event.node))
                    keys.attempts.add((project, domain, event.attempt_id))
                case NodeFailed() | NodeCacheLookup() | NodeCacheHit() | MapStarted() | RetryScheduled():
                    keys.nodes.add((project, domain, execution_id, event.node))
                case NodeSkipped() | NodeRecovered() | BranchTaken() | GateOpened():
                    keys.nodes.add((project, domain, execution_id, event.node))
                case AttemptStopped():
                    keys.attempts.add((project, domain, event.attempt_id))
                case ExecutionFailed() | ExecutionAborted():
                    keys.all_nodes_of.add((project, domain, execution_id))
                case DynamicExpanded():  # its nodes are placed after every node the execution has
                    keys.all_nodes_of.add((project, domain, execution_id))
                    keys.attempts.add((project, domain, event.attempt_id))
    return keys


def register(rows: Rows, registration: Registration, sequence: int, stored_at: datetime) -> None:
    """A registry row; registrations carry no time, so it is when the stream stored them."""
    spec = registration.spec
    rows.registrations.append(
        RegistryRow(
            kind=kind_of(registration),
            project=registration.project,
            domain=registration.domain,
            name=spec.name,
            version=spec.version,
            spec=spec,
            registered_at=stored_at,
            sequence=sequence,
        )
    )


def apply_decision(rows: Rows, key: ExecutionKey, decision: Decision, sequence: int) -> None:
    """Apply every event of a stored decision of execution ``key``; events of an execution never launched change
    nothing."""
    for event in decision.events:
        if isinstance(event, ExecutionLaunched):
            _launch(rows, key, event, decision.at, sequence)
        elif key in rows.executions:
            _apply(rows, key, event, decision.at)
    if execution := rows.executions.get(key):
        execution.last_sequence = sequence


def _launch(rows: Rows, key: ExecutionKey, event: ExecutionLaunched, at: datetime, sequence: int) -> None:
    workflow = event.workflow
    project, domain, execution_id = key
    rows.executions[key] = ExecutionRow(
        execution_id=execution_id,
        project=project,
        domain=domain,
        workflow_name=workflow.name,
        workflow_version=workflow.version,
        status="running",
        inputs=event.inputs,
        launched_by=event.launched_by,
        launched_at=at,
        last_sequence=sequence,
        overwrite_cache=event.overwrite_cache,
        relaunch_of=event.relaunch_of,
        recovered_from=event.recovered_from,
    )
    for position, node in enumerate(workflow.nodes):
        task = workflow.tasks.get(node.task)  # none for a branch node
        rows.nodes[project, domain, execution_id, node.id] = NodeRow(
            project=project,
            domain=domain,
            execution_id=execution_id,
            node_id=node.id,
            position=position,
            task_name=task.name if task else "",
            task_version=task.version if task else "",
            kind=node_kind(node),
        )


def _apply(rows: Rows, owner: ExecutionKey, event: Event, at: datetime) -> None:
    """What one event (after the launch) does to the execution's rows; mirrors ``plait.core.state.evolve``."""
    execution = rows.executions[owner]
    project, domain, execution_id = owner
    match event:
        case NodeQueued(node=node_id, attempt_id=attempt_id, attempt=attempt, index=index) if index >= 0:
            node = rows.nodes[project, domain, execution_id, node_id]
            node.queued_at = node.queued_at or at
            _queue_attempt(rows, owner, node_id, attempt_id, attempt, at)
        case RetryScheduled(node=node_id, index=index) if index < 0:
            rows.nodes[project, domain, execution_id, node_id].status = "queued"
        case MapStarted(node=node_id, inputs=inputs):
            node = rows.nodes[project, domain, execution_id, node_id]
            node.status, node.inputs = "running", inputs
        case MapItemSucceeded(attempt_id=attempt_id, worker=worker):
            if attempt_row := rows.attempts.get((project, domain, attempt_id)):
                attempt_row.status, attempt_row.finished_at = "succeeded", at
                attempt_row.worker = worker or attempt_row.worker
        case NodeQueued(node=node_id, attempt_id=attempt_id, attempt=attempt, inputs=inputs, cache_key=key):
            node = rows.nodes[project, domain, execution_id, node_id]
            node.status, node.inputs, node.queued_at = "queued", inputs, node.queued_at or at
            node.cache_key = key or node.cache_key
            _queue_attempt(rows, owner, node_id, attempt_id, attempt, at)
        case NodeCacheLookup(node=node_id, cache_key=key, inputs=inputs):
            node = rows.nodes[project, domain, execution_id, node_id]
            node.status, node.inputs, node.cache_key = "cache_lookup", inputs, key
        case NodeCacheHit(node=node_id, outputs=outputs, source_execution=source_execution, source_node=source):
            node = rows.nodes[project, domain, execution_id, node_id]
            node.status, node.outputs, node.finished_at = "succeeded", outputs, at
            node.cached_from = f"{source_execution}/{source}"
        case AttemptStarted(node=node_id, attempt_id=attempt_id, worker=worker):
            if attempt_row := rows.attempts.get((project, domain, attempt_id)):
                attempt_row.status, attempt_row.worker, attempt_row.started_at = "running", worker, at
                node = rows.nodes[project, domain, execution_id, node_id]
                node.status, node.started_at = "running", node.started_at or at
        case AttemptFailed(attempt_id=attempt_id, error=error, worker=worker):
            if attempt_row := rows.attempts.get((project, domain, attempt_id)):
                attempt_row.status, attempt_row.error, attempt_row.finished_at = "failed", _error(error), at
                attempt_row.worker = worker or attempt_row.worker
        case NodeSucceeded(node=node_id, attempt_id=attempt_id, outputs=outputs, worker=worker):
            node = rows.nodes[project, domain, execution_id, node_id]
            node.status, node.outputs, node.finished_at = "succeeded", outputs, at
            if attempt_row := rows.attempts.get((project, domain, attempt_id)):
                attempt_row.status, attempt_row.finished_at = "succeeded", at
                attempt_row.worker = worker or attempt_row.worker
        case NodeFailed(node=node_id, error=error):
            node = rows.nodes[project, domain, execution_id, node_id]
            node.status, node.error, node.finished_at = "failed", _error(error), at
        case ExecutionSucceeded(outputs=outputs):
            execution.status, execution.outputs, execution.finished_at = "succeeded", outputs, at
        case ExecutionFailed(node=node_id, error=error):
            execution.status, execution.error, execution.failed_node = "failed", _error(error), node_id
            execution.finished_at = at
            _abort_unfinished(rows, owner, at)
        case ExecutionAborted(reason=reason, aborted_by=aborted_by):
            execution.status, execution.abort_reason, execution.finished_at = "aborted", reason, at
            execution.aborted_by = aborted_by
            _abort_unfinished(rows, owner, at)
        case NodeSkipped(node=node_id, reason=reason, branch=branch):
            node = rows.nodes[project, domain, execution_id, node_id]
            node.status, node.finished_at = "skipped", at
            node.skip_reason = reason or f"branch '{branch}' took another case"
        case NodeRecovered(node=node_id, outputs=outputs, source_execution=source):
            node = rows.nodes[project, domain, execution_id, node_id]
            node.status, node.outputs, node.recovered_from, node.finished_at = "recovered", outputs, source, at
        case AttemptStopped(attempt_id=attempt_id, reason=reason):
            if attempt_row := rows.attempts.get((project, domain, attempt_id)):
                attempt_row.status, attempt_row.stop_reason, attempt_row.finished_at = "stopped", reason, at
        case DynamicExpanded():
            _expand(rows, owner, event, at)
        case BranchTaken(node=node_id):
            node = rows.nodes[project, domain, execution_id, node_id]
            node.status, node.started_at = "running", node.started_at or at
        case GateOpened(node=node_id, inputs=inputs):
            node = rows.nodes[project, domain, execution_id, node_id]
            node.status, node.inputs, node.started_at = "waiting", inputs, at
            node.waiting_for = gate_waiting_text(event, at)
        case SignalReceived():
            pass  # the gate's node changes when it passes or fails
        case CommandRejected() | ExecutionLaunched() | NodeCacheWaiting() | MapItemFailed() | RetryScheduled():
            pass  # a rejection stays on the dead-letter stream; a cache wait, a failed or retried item changes no row


def _expand(rows: Rows, owner: ExecutionKey, event: DynamicExpanded, at: datetime) -> None:
    """A dynamic node's attempt succeeded with the nodes it generated: a row for each, after the execution's others."""
    project, domain, execution_id = owner
    if attempt_row := rows.attempts.get((project, domain, event.attempt_id)):
        attempt_row.status, attempt_row.finished_at = "succeeded", at
        attempt_row.worker = event.worker or attempt_row.worker
    positions = [node.position for key, node in rows.nodes.items() if key[:3] == owner]
    first = max(positions, default=-1) + 1
    keys = task_keys(event.node, event.workflow, {})
    for offset, node in enumerate(expanded_nodes(event.node, event.workflow, keys)):
        task = event.workflow.tasks[node.task]
        rows.nodes[project, domain, execution_id, node.id] = NodeRow(
            project=project,
            domain=domain,
            execution_id=execution_id,
            node_id=node.id,
            position=first + offset,
            task_name=task.name,
            task_version=task.version,
        )


def _queue_attempt(rows: Rows, owner: ExecutionKey, node_id: str, attempt_id: str, attempt: int, at: datetime) -> None:
    project, domain, execution_id = owner
    rows.attempts[project, domain, attempt_id] = AttemptRow(
        project=project,
        domain=domain,
        attempt_id=attempt_id,
        execution_id=execution_id,
        node_id=node_id,
        attempt=attempt,
        queued_at=at,
    )


def _abort_unfinished(rows: Rows, key: ExecutionKey, at: datetime) -> None:
    """Once an execution has ended nothing more runs: its unfinished nodes are aborted."""
    for node_key, node in rows.nodes.items():
        if node_key[:3] == key and node.status in UNFINISHED_NODE_STATUSES:
            node.status, node.finished_at = "aborted", at


def _error(error: TaskError) -> dict[str, Any]:
    as_builtins: dict[str, Any] = msgspec.to_builtins(error)
    return as_builtins
