"""Catalog queries of executions: ``plait.catalog.executions.list`` and ``.show``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from plait.core.state import AttemptStatus, ExecutionStatus, NodeStatus
from plait.protocol.queries import NonEmpty, StreamSequence


class ListExecutions(msgspec.Struct, frozen=True, kw_only=True):
    """``plait.catalog.executions.list``: the newest executions, optionally filtered."""

    project: str | None = None
    domain: str | None = None
    status: ExecutionStatus | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 20
    min_sequence: StreamSequence = 0  # answer once the catalog has projected the stream up to here


class ShowExecution(msgspec.Struct, frozen=True, kw_only=True):
    """``plait.catalog.executions.show``: one execution with its nodes and their attempts. An execution id is
    unique within its project and domain only."""

    project: NonEmpty
    domain: NonEmpty
    execution_id: NonEmpty
    min_sequence: StreamSequence = 0
    attempts_limit: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 100  # per node: a map node may have 100,000s


class ExecutionSummary(msgspec.Struct, kw_only=True):
    execution_id: str
    project: str
    domain: str
    workflow: str
    version: str
    status: ExecutionStatus
    launched_at: datetime
    finished_at: datetime | None
    duration_seconds: float | None
    nodes_total: int
    nodes_succeeded: int
    nodes_failed: int
    nodes_running: int


class AttemptView(msgspec.Struct, kw_only=True):
    attempt_id: str
    attempt: int
    status: AttemptStatus
    worker: str
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: dict[str, Any] | None
    stop_reason: str = ""  # how its executor stopped it, its execution having ended


class NodeView(msgspec.Struct, kw_only=True):
    node: str
    task: str
    version: str
    status: NodeStatus
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    inputs: dict[str, Any] | None
    outputs: dict[str, Any] | None
    error: dict[str, Any] | None
    attempts: list[AttemptView]  # the first ``attempts_limit``, by attempt number then id
    attempts_total: int
    recovered_from: str = ""  # the execution whose outputs of this node a recovery reused
    skip_reason: str = ""  # why it did not run (a node it depends on failed)
    waiting_for: str = ""  # of an open gate: what it waits for, and until when
    kind: str = "task"  # or "branch", or a gate's kind: "signal", "approve", "sleep"


class ExecutionDetail(ExecutionSummary, kw_only=True):
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None
    error: dict[str, Any] | None
    failed_node: str | None
    abort_reason: str | None
    launched_by: str
    last_sequence: int  # the stream sequence of the execution's last decision
    nodes: list[NodeView]
    aborted_by: str = ""
    relaunch_of: str = ""  # the execution this one ran again
    recovered_from: str = ""  # the execution whose succeeded nodes this one reused
    relaunched_as: list[str] = []  # the executions that relaunched or recovered this one, oldest first


class ExecutionList(msgspec.Struct, kw_only=True):
    executions: list[ExecutionSummary]


class ExecutionShown(msgspec.Struct, kw_only=True):
    execution: ExecutionDetail
