"""Events: facts about an execution, in the past tense, frozen and versioned by their tag.

A decision appends its events as one ``Decision`` record on the execution's subject, so the
events of one decision are stored all or nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from plait.core.dynamic import DynamicWorkflow
from plait.core.model import LaunchPlanSpec, TaskSpec, WorkflowSpec
from plait.core.task_output import OutputRef

DECISION_SCHEMA = 1


class TaskError(msgspec.Struct, frozen=True, gc=False):
    """Why an attempt failed. ``kind`` tells user code errors from system errors (lost worker, bad output)."""

    kind: Literal["user", "system"]
    message: str
    error_type: str = ""
    traceback: str = ""
    output_tail: str = ""  # the last lines the attempt wrote (stdout, stderr, logging), when it wrote any


class ExecutionLaunched(msgspec.Struct, frozen=True, gc=False, tag="execution_launched.v1"):
    execution_id: str
    project: str
    domain: str
    workflow: WorkflowSpec
    inputs: dict[str, Any]
    launched_by: str = ""
    launch_plan: str = ""  # "name@version" when launched through a launch plan
    overwrite_cache: bool = False  # cached tasks run anyway, and their results replace the cached ones
    relaunch_of: str = ""  # the execution this one runs again (same workflow version, inputs, launch plan)
    recovered_from: str = ""  # the execution whose succeeded nodes this one reuses (see NodeRecovered)
    cluster: str = ""  # chosen by the launch or its launch plan ("": none); see plait.core.clusters
    default_cluster: str = ""  # the project's default cluster when it was launched ("": the outbox's own)
    default_task_timeout_seconds: float | None = None  # the timeout of its tasks that set none (None: no timeout)
    parent_execution: str = ""  # of a child execution: the execution whose node ``parent_node`` launched it
    parent_node: str = ""
    traceparent: str = ""  # W3C trace context of the launch: every later span of the execution joins its trace
    cluster_selector: dict[str, str] = {}  # chosen by the launch or its launch plan in place of ``cluster``
    selected_clusters: dict[str, str] = {}  # the cluster each selector in force chose at launch, by its text


class NodeQueued(msgspec.Struct, frozen=True, gc=False, tag="node_queued.v1"):
    """An attempt of a node was queued: the outbox turns it into a dispatch record."""

    node: str
    attempt_id: str
    attempt: int
    task: str
    queue: str
    inputs: dict[str, Any]
    cache_key: str = ""  # set when the attempt's outputs are to be stored in the cache under this key
    index: int = -1  # the item of a map node this attempt runs (-1: not a map item)
    cluster: str = ""  # where it runs: plait.dispatch.<cluster>.<queue> ("": written before clusters were chosen)


class RetryScheduled(msgspec.Struct, frozen=True, gc=False, tag="retry_scheduled.v1"):
    """Attempt ``attempt`` of a node (of a map item when ``index`` >= 0) is queued after ``delay_seconds``: a timer
    reports when it is due."""

    node: str
    attempt: int
    delay_seconds: float
    index: int = -1


class MapStarted(msgspec.Struct, frozen=True, gc=False, tag="map_started.v1"):
    """A map node's inputs are known: it runs its task for each of ``size`` items, a bounded number at a time."""

    node: str
    size: int
    inputs: dict[str, Any]


class MapItemSucceeded(msgspec.Struct, frozen=True, gc=False, tag="map_item_succeeded.v1"):
    node: str
    index: int
    attempt_id: str
    outputs: dict[str, Any]
    worker: str = ""
    output: OutputRef | None = None  # what the attempt wrote, in the logs bucket


class MapItemFailed(msgspec.Struct, frozen=True, gc=False, tag="map_item_failed.v1"):
    """An item failed for good (its retries are spent); the map node goes on while its success ratio allows."""

    node: str
    index: int
    error: TaskError


class NodeCacheLookup(msgspec.Struct, frozen=True, gc=False, tag="node_cache_lookup.v1"):
    """A cached task's node is ready: its result is looked up under ``cache_key`` before anything runs.

    ``round`` counts the look-ups of this node (a new one starts when a reservation it waited on is released).
    """

    node: str
    cache_key: str
    round: int
    inputs: dict[str, Any]


class NodeCacheWaiting(msgspec.Struct, frozen=True, gc=False, tag="node_cache_waiting.v1"):
    """Another node holds the reservation of ``cache_key`` and is computing it: this one waits for its result."""

    node: str
    cache_key: str
    round: int
    holder_execution: str
    holder_node: str
    until: datetime  # when the holder's reservation expires, if it neither fills nor releases it


class NodeCacheHit(msgspec.Struct, frozen=True, gc=False, tag="node_cache_hit.v1"):
    """The node's outputs were found in the cache: nothing was dispatched for it."""

    node: str
    cache_key: str
    outputs: dict[str, Any]
    source_execution: str
    source_node: str


class AttemptStarted(msgspec.Struct, frozen=True, gc=False, tag="attempt_started.v1"):
    node: str
    attempt_id: str
    worker: str


RetryBudget = Literal["", "retries", "system_retries"]
"""The task option a failed attempt counts against: ``retries`` for the task's own failures (an exception, bad
outputs, a timeout), ``system_retries`` for the system's (a lost worker, a passed deadline, an executor lost)."""


class AttemptFailed(msgspec.Struct, frozen=True, gc=False, tag="attempt_failed.v1"):
    """An attempt failed. ``budget`` names the retries it counts against (empty: none, as when its execution failed
    for another reason), and ``retries_left`` how many that budget has left after it; -1: none was left, so its
    node (or map item) fails."""

    node: str
    attempt_id: str
    error: TaskError
    worker: str = ""
    budget: RetryBudget = ""
    retries_left: int = -1
    output: OutputRef | None = None  # what the attempt wrote, in the logs bucket


class NodeSucceeded(msgspec.Struct, frozen=True, gc=False, tag="node_succeeded.v1"):
    node: str
    attempt_id: str
    outputs: dict[str, Any]
    worker: str = ""
    output: OutputRef | None = None  # what the attempt wrote, in the logs bucket


class NodeFailed(msgspec.Struct, frozen=True, gc=False, tag="node_failed.v1"):
    node: str
    error: TaskError


class ExecutionSucceeded(msgspec.Struct, frozen=True, gc=False, tag="execution_succeeded.v1"):
    outputs: dict[str, Any]


class ExecutionFailed(msgspec.Struct, frozen=True, gc=False, tag="execution_failed.v1"):
    node: str
    error: TaskError


class ExecutionAborted(msgspec.Struct, frozen=True, gc=False, tag="execution_aborted.v1"):
    reason: str
    aborted_by: str = ""  # who asked: the identity the client or CLI sent (``user@host``, or a configured principal)


class CommandRejected(msgspec.Struct, frozen=True, gc=False, tag="command_rejected.v1"):
    """A command for this execution could not be applied; it was kept aside on the dead-letter stream."""

    command_id: str
    command_type: str
    reason: str


class NodeSkipped(msgspec.Struct, frozen=True, gc=False, tag="node_skipped.v1"):
    """The node will not run: a node it depends on failed in a ``failure_policy="finish"`` workflow (``reason``),
    or it is inside a case of branch node ``branch`` that was not taken."""

    node: str
    reason: str = ""
    branch: str = ""


class NodeRecovered(msgspec.Struct, frozen=True, gc=False, tag="node_recovered.v1"):
    """A recovering execution reuses the outputs node ``node`` produced in ``source_execution``: nothing runs for
    it. Decided at launch from the source's log, and recorded here, so a replay needs nothing else."""

    node: str
    outputs: dict[str, Any]
    source_execution: str


class AttemptStopped(msgspec.Struct, frozen=True, gc=False, tag="attempt_stopped.v1"):
    """An executor stopped an attempt still running when its execution ended (aborted, or failed fast): recorded
    after the end, like ``CommandRejected``, it changes nothing but the attempt's record."""

    node: str
    attempt_id: str
    worker: str
    reason: str


class DynamicExpanded(msgspec.Struct, frozen=True, gc=False, tag="dynamic_expanded.v1"):
    """Attempt ``attempt_id`` of dynamic node ``node`` generated ``workflow``: its nodes join the execution under
    ``node`` (``node.<id>``), and ``node`` succeeds with its outputs once they all did. Recorded whole, so a replay
    needs no user code."""

    node: str
    attempt_id: str
    workflow: DynamicWorkflow
    worker: str = ""


class BranchTaken(msgspec.Struct, frozen=True, gc=False, tag="branch_taken.v1"):
    """A branch node's conditions were evaluated: case ``case`` (0-based, in the order written) is taken, described
    by ``condition`` ("else" for the else case); the nodes of the other cases are skipped (``NodeSkipped``)."""

    node: str
    case: int
    condition: str


class GateOpened(msgspec.Struct, frozen=True, gc=False, tag="gate_opened.v1"):
    """A gate node's inputs are known: it waits for signal ``name`` (of type ``expects``), an approval, or
    ``seconds`` (a sleep); a signal or approval not given within ``timeout_seconds`` fails it."""

    node: str
    kind: str
    name: str = ""
    expects: str = ""
    timeout_seconds: float | None = None
    seconds: float = 0.0
    inputs: dict[str, Any] = {}


class SignalReceived(msgspec.Struct, frozen=True, gc=False, tag="signal_received.v1"):
    """Signal ``name`` was given to gate node ``node`` (possibly before it opened): ``value``, or for an approval,
    ``approved`` or not."""

    node: str
    name: str
    command_id: str
    value: Any = None
    approved: bool = True
    sent_by: str = ""


class ChildLaunched(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag="child_launched.v1"):
    """Child node ``node`` launches launch plan ``launch_plan`` (at ``version``) as execution ``child_execution``
    with ``inputs``; the scheduler publishes that launch (see plait.core.children)."""

    node: str
    child_execution: str
    launch_plan: str
    version: str
    inputs: dict[str, Any]


Event = (
    ExecutionLaunched
    | NodeQueued
    | NodeCacheLookup
    | NodeCacheWaiting
    | NodeCacheHit
    | RetryScheduled
    | MapStarted
    | MapItemSucceeded
    | MapItemFailed
    | AttemptStarted
    | AttemptFailed
    | NodeSucceeded
    | NodeFailed
    | ExecutionSucceeded
    | ExecutionFailed
    | ExecutionAborted
    | CommandRejected
    | NodeSkipped
    | NodeRecovered
    | AttemptStopped
    | DynamicExpanded
    | BranchTaken
    | GateOpened
    | SignalReceived
    | ChildLaunched
)

TERMINAL_EVENTS = (ExecutionSucceeded, ExecutionFailed, ExecutionAborted)


class SharedValue(msgspec.Struct, frozen=True):
    """A value several events of one decision pass on, stored once: ``at`` lists where it stands, as (event
    index, ``inputs`` or ``outputs``, name); those places hold None in the stored events."""

    value: Any
    at: tuple[tuple[int, str, str], ...]


class Decision(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The record appended to an execution's subject: the events one decision produced.

    ``previous`` is the SHA-256 of the previous record's bytes on the same subject (empty for
    the first), which chains an execution's history.
    """

    schema: int = DECISION_SCHEMA
    execution_id: str
    at: datetime
    replica: str
    commands: tuple[str, ...]
    previous: str
    events: tuple[Event, ...]
    shared: tuple[SharedValue, ...] = ()  # see plait.core.shared_values; readers see the events whole


class TaskRegistered(msgspec.Struct, frozen=True, gc=False, tag="task_registered.v1"):
    project: str
    domain: str
    spec: TaskSpec


class WorkflowRegistered(msgspec.Struct, frozen=True, gc=False, tag="workflow_registered.v1"):
    project: str
    domain: str
    spec: WorkflowSpec


class LaunchPlanRegistered(msgspec.Struct, frozen=True, gc=False, tag="launch_plan_registered.v1"):
    project: str
    domain: str
    spec: LaunchPlanSpec


Registration = TaskRegistered | WorkflowRegistered | LaunchPlanRegistered
