"""Execution state, and ``evolve``: the only way it changes, one event at a time.

``evolve`` is deterministic and does no I/O. For speed it updates the state in place and returns
it; whoever owns a state (a scheduler's cache, a replay) builds it from events and nothing else.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any, Literal

import msgspec

from plait.core.branches import case_members, node_upstream
from plait.core.dynamic import expanded_nodes, namespaced, task_keys
from plait.core.events import (
    AttemptFailed,
    AttemptStarted,
    AttemptStopped,
    BranchTaken,
    ChildLaunched,
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
    RetryScheduled,
    SignalReceived,
    TaskError,
)
from plait.core.ids import item_attempt_id, item_of_attempt
from plait.core.model import Binding, Node, TaskSpec, WorkflowSpec, upstream_nodes

ExecutionStatus = Literal["running", "succeeded", "failed", "aborted"]
NodeStatus = Literal[
    "waiting", "cache_lookup", "queued", "running", "succeeded", "failed", "aborted", "skipped", "recovered"
]
AttemptStatus = Literal["queued", "running", "succeeded", "failed", "stopped"]


class AttemptState(msgspec.Struct, kw_only=True, gc=False):
    attempt_id: str
    attempt: int
    status: AttemptStatus = "queued"
    worker: str = ""
    queued_at: datetime | None = None  # None only in the view of a map item kept in columns (``NodeState.item``)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: TaskError | None = None
    index: int = -1  # the map item it runs (-1: not a map item)
    stopped: str = ""  # why its executor stopped it after its execution ended ("" when it did not)
    user_failures: int = 0  # failed attempts of its node (or item) before it, by the kind of their error
    system_failures: int = 0

    def failures(self, kind: str) -> int:
        """Failures of ``kind`` counted before this attempt, and this one's if it failed so."""
        before = self.user_failures if kind == "user" else self.system_failures
        return before + (self.status == "failed" and self.error is not None and self.error.kind == kind)


class NodeState(msgspec.Struct, kw_only=True):
    id: str
    task: str
    spec: Node
    status: NodeStatus = "waiting"
    upstream: tuple[str, ...] = ()
    downstream: list[str] = msgspec.field(default_factory=list)
    waiting_on: int = 0
    inputs: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    error: TaskError | None = None
    attempts: list[AttemptState] = msgspec.field(default_factory=list)
    cache_key: str = ""  # of a cached task's node, once its inputs are known
    cache_round: int = 0  # how many cache look-ups the node has started
    cache_holder: str = ""  # "execution/node" holding the reservation this look-up waits on ("" when not waiting)
    cached_from: str = ""  # "execution/node" whose outputs a cache hit reused
    retry_at: datetime | None = None  # when the node's next attempt is due, while it waits for it
    map_size: int = -1  # a started map node's number of items (-1: not started, or not a map)
    map_queued: int = 0  # items queued so far: the next one to queue
    map_finished: int = 0  # items that succeeded or failed for good
    map_failed: int = 0
    map_started_at: datetime | None = None
    map_ended_at: datetime | None = None  # when its latest item finished
    item_execution: str = ""  # of a started map node: its execution, which its items' attempt ids name
    # A map item's latest attempt is an ``AttemptState`` in ``item_attempts`` while it runs, if it failed, or if it
    # was retried; an item that succeeded at its first attempt (nearly all) is kept in columns only: a flag in
    # ``item_done``, its worker, and its outputs in ``item_values`` (``item`` gives a view of it). Earlier attempts
    # of retried items are in ``item_retried``; a map node's ``attempts`` stay empty. About 50 bytes per item (and
    # its outputs' values) instead of ~470.
    item_attempts: dict[int, AttemptState] = msgspec.field(default_factory=dict)
    item_retried: list[AttemptState] = msgspec.field(default_factory=list)
    item_done: bytearray = msgspec.field(default_factory=bytearray)
    item_workers: list[str] = msgspec.field(default_factory=list)
    item_values: dict[str, list[Any]] = msgspec.field(default_factory=dict)  # output name -> each item's value
    skipped: str = ""  # why the node will not run (a node it depends on failed)
    recovered_from: str = ""  # the execution whose outputs of this node were reused
    dynamic_of: str = ""  # the dynamic node that generated this one ("" for the workflow's own nodes)
    generated: tuple[str, ...] | None = None  # an expanded dynamic node's generated nodes (None: not expanded)
    generated_outputs: dict[str, Binding] = msgspec.field(default_factory=dict)  # its outputs, namespaced
    branch_case: int = -1  # of a branch node: the case it took (-1: not chosen yet, or not a branch)
    gate_opened_at: datetime | None = None  # of a gate node: when it started waiting
    child_execution: str = ""  # of a child node: the execution it launched ("" until then)

    def find_attempt(self, attempt_id: str) -> AttemptState | None:
        if self.map_size >= 0:
            index = item_of_attempt(attempt_id)
            found = self.item(index)
            return found if found is not None and found.attempt_id == attempt_id else None
        attempts = self.attempts
        if attempts and attempts[-1].attempt_id == attempt_id:  # nearly always: results come for the latest
            return attempts[-1]
        return next((a for a in reversed(attempts) if a.attempt_id == attempt_id), None)

    def item(self, index: int) -> AttemptState | None:
        """The latest attempt of map item ``index`` (None before it is queued). Of an item kept in columns, a view
        built for the asking: its attempt id, status, worker; its times are in the log and the catalog."""
        if not 0 <= index < self.map_size:
            return None
        found = self.item_attempts.get(index)
        if found is None and self.item_done[index]:
            found = AttemptState(
                attempt_id=item_attempt_id(self.item_execution, self.id, index, 1),
                attempt=1,
                status="succeeded",
                worker=self.item_workers[index],
                index=index,
            )
        return found

    def item_outputs(self, index: int) -> dict[str, Any] | None:
        """What map item ``index`` returned (None unless it succeeded)."""
        if self.item_done[index] or ((a := self.item_attempts.get(index)) is not None and a.status == "succeeded"):
            return {name: values[index] for name, values in self.item_values.items()}
        return None

    def all_attempts(self) -> Iterator[AttemptState]:
        """Every attempt of the node; of a map node, every attempt of every item (earlier attempts of retried items
        first, then each item's latest, by index)."""
        if self.map_size < 0:
            yield from self.attempts
            return
        yield from self.item_retried
        for index in range(self.map_queued):
            if (attempt := self.item(index)) is not None:
                yield attempt

    @property
    def attempt_count(self) -> int:
        """How many attempts the node has had (of a map node: its items' latest, and their earlier ones)."""
        return len(self.attempts) if self.map_size < 0 else self.map_queued + len(self.item_retried)


class Execution(msgspec.Struct, kw_only=True):
    execution_id: str
    project: str
    domain: str
    workflow: WorkflowSpec
    inputs: dict[str, Any]
    launched_by: str = ""
    launch_command: str = ""
    overwrite_cache: bool = False
    status: ExecutionStatus = "running"
    nodes: dict[str, NodeState] = msgspec.field(default_factory=dict)
    node_outputs: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    outputs: dict[str, Any] | None = None
    error: TaskError | None = None
    failed_node: str | None = None
    abort_reason: str | None = None
    rejected_commands: list[CommandRejected] = msgspec.field(default_factory=list)
    launched_at: datetime | None = None
    finished_at: datetime | None = None
    last_sequence: int = 0  # stream sequence of the last decision applied
    last_digest: str = ""  # SHA-256 of that decision's bytes
    decisions: int = 0
    stored_bytes: int = 0  # of the decisions applied but those only of map items: a cache of states measures by it
    item_bytes: int = 0  # about the memory of its map items' state (see ``count_stored``)
    launch_plan: str = ""  # "name@version" when launched through a launch plan
    relaunch_of: str = ""
    recovered_from: str = ""
    aborted_by: str = ""
    generated_tasks: dict[str, TaskSpec] = msgspec.field(default_factory=dict)  # added to ``workflow.tasks`` by
    # dynamic nodes (``workflow`` is otherwise the spec launched; see ``launched_workflow``)
    launch_cluster: str = ""  # the launch's (or its launch plan's) cluster; see plait.core.clusters
    default_cluster: str = ""  # the project's default cluster at launch
    default_task_timeout_seconds: float | None = None  # the timeout of its tasks that set none
    skipped_nodes: int = 0  # nodes of branch cases not taken
    case_members: dict[str, list[list[str]]] = msgspec.field(default_factory=dict)  # branch -> case -> its nodes
    signals: dict[str, SignalReceived] = msgspec.field(default_factory=dict)  # by name: the signals given so far
    parent_execution: str = ""  # of a child execution: the execution whose node ``parent_node`` launched it
    parent_node: str = ""
    traceparent: str = ""  # the launch's W3C trace context ("": none recorded)
    launch_selector: dict[str, str] = msgspec.field(default_factory=dict)  # the launch's (or plan's) selector
    selected_clusters: dict[str, str] = msgspec.field(default_factory=dict)  # selector text -> cluster, at launch

    @property
    def terminal(self) -> bool:
        return self.status != "running"


def task_timeout(state: Execution, task_name: str) -> float | None:
    """How long an attempt of the task may run: its own ``timeout``, else the default its execution was launched
    with (the scheduler's ``PLAIT_DEFAULT_TASK_TIMEOUT_SECONDS``), else no limit."""
    own = state.workflow.tasks[task_name].timeout_seconds
    return own if own is not None else state.default_task_timeout_seconds


def launch(event: ExecutionLaunched, at: datetime, command_id: str = "") -> Execution:
    """The state an execution starts in, with its DAG's edges and pending-upstream counts."""
    state = Execution(
        execution_id=event.execution_id,
        project=event.project,
        domain=event.domain,
        workflow=event.workflow,
        inputs=event.inputs,
        launched_by=event.launched_by,
        launch_command=command_id,
        overwrite_cache=event.overwrite_cache,
        launched_at=at,
        launch_plan=event.launch_plan,
        relaunch_of=event.relaunch_of,
        recovered_from=event.recovered_from,
        launch_cluster=event.cluster,
        default_cluster=event.default_cluster,
        default_task_timeout_seconds=event.default_task_timeout_seconds,
        case_members=case_members(event.workflow),
        parent_execution=event.parent_execution,
        parent_node=event.parent_node,
        traceparent=event.traceparent,
        launch_selector=event.cluster_selector,
        selected_clusters=event.selected_clusters,
    )
    for node in event.workflow.nodes:
        upstream = tuple(sorted(node_upstream(node)))
        state.nodes[node.id] = NodeState(
            id=node.id, task=node.task, spec=node, upstream=upstream, waiting_on=len(upstream)
        )
    for node_state in state.nodes.values():
        for parent in node_state.upstream:
            state.nodes[parent].downstream.append(node_state.id)
    return state


def evolve(state: Execution, event: Event, at: datetime) -> Execution:
    """Apply one event (not a launch) to ``state``. Total: never raises on a known event."""
    _TRANSITIONS[type(event)](state, event, at)
    return state


def _node_queued(state: Execution, event: NodeQueued, at: datetime) -> None:
    node = state.nodes[event.node]
    if event.index >= 0:
        index = event.index
        previous = node.item_attempts.get(index)
        if previous is not None:
            node.item_retried.append(previous)
        attempt = AttemptState(attempt_id=event.attempt_id, attempt=event.attempt, queued_at=at, index=index)
        node.item_attempts[index] = _after(previous, attempt)
        node.map_queued = max(node.map_queued, index + 1)
        state.item_bytes += ITEM_ATTEMPT_BYTES
        return
    node.status = "queued"
    node.inputs = event.inputs
    node.cache_key, node.cache_holder, node.retry_at = event.cache_key or node.cache_key, "", None
    previous = node.attempts[-1] if node.attempts else None
    attempt = AttemptState(attempt_id=event.attempt_id, attempt=event.attempt, queued_at=at)
    node.attempts.append(_after(previous, attempt))


def _attempt_started(state: Execution, event: AttemptStarted, at: datetime) -> None:
    node = state.nodes[event.node]
    attempt = node.find_attempt(event.attempt_id)
    if attempt is not None:
        attempt.status, attempt.worker, attempt.started_at = "running", event.worker, at
        node.status = "running"


def _attempt_failed(state: Execution, event: AttemptFailed, at: datetime) -> None:
    attempt = state.nodes[event.node].find_attempt(event.attempt_id)
    if attempt is not None:
        attempt.status, attempt.error, attempt.finished_at = "failed", event.error, at
        attempt.worker = event.worker or attempt.worker


def _node_succeeded(state: Execution, event: NodeSucceeded, at: datetime) -> None:
    node = state.nodes[event.node]
    node.status = "succeeded"
    attempt = node.find_attempt(event.attempt_id)
    if attempt is not None:
        attempt.status, attempt.finished_at = "succeeded", at
        attempt.worker = event.worker or attempt.worker
    _outputs_known(state, node, event.outputs)


def _outputs_known(state: Execution, node: NodeState, outputs: dict[str, Any]) -> None:
    """``node`` has its ``outputs`` (run, cached or recovered): the nodes fed by it wait on one node fewer."""
    node.outputs = state.node_outputs[node.id] = outputs
    for child in node.downstream:
        state.nodes[child].waiting_on -= 1


def _retry_scheduled(state: Execution, event: RetryScheduled, at: datetime) -> None:
    if event.index < 0:
        node = state.nodes[event.node]
        node.status, node.retry_at = "queued", at + timedelta(seconds=event.delay_seconds)


def _map_started(state: Execution, event: MapStarted, at: datetime) -> None:
    node, size = state.nodes[event.node], event.size
    node.status, node.inputs, node.map_size, node.map_started_at = "running", event.inputs, size, at
    node.item_execution = state.execution_id
    node.item_done, node.item_workers = bytearray(size), [""] * size
    state.item_bytes += size * ITEM_COLUMN_BYTES


def _map_item_succeeded(state: Execution, event: MapItemSucceeded, at: datetime) -> None:
    _item_succeeded(state, state.nodes[event.node], event.index, event.outputs, event.worker, at)


def _map_item_failed(state: Execution, event: MapItemFailed, at: datetime) -> None:
    node = state.nodes[event.node]
    node.map_finished += 1
    node.map_failed += 1
    node.map_ended_at = at


def _node_cache_lookup(state: Execution, event: NodeCacheLookup, at: datetime) -> None:
    node = state.nodes[event.node]
    node.status, node.inputs, node.cache_key = "cache_lookup", event.inputs, event.cache_key
    node.cache_round, node.cache_holder = event.round, ""


def _node_cache_waiting(state: Execution, event: NodeCacheWaiting, at: datetime) -> None:
    state.nodes[event.node].cache_holder = f"{event.holder_execution}/{event.holder_node}"


def _node_cache_hit(state: Execution, event: NodeCacheHit, at: datetime) -> None:
    node = state.nodes[event.node]
    node.status, node.cache_holder = "succeeded", ""
    node.cached_from = f"{event.source_execution}/{event.source_node}"
    _outputs_known(state, node, event.outputs)


def _node_failed(state: Execution, event: NodeFailed, at: datetime) -> None:
    node = state.nodes[event.node]
    node.status, node.error = "failed", event.error


def _execution_succeeded(state: Execution, event: ExecutionSucceeded, at: datetime) -> None:
    state.status, state.outputs, state.finished_at = "succeeded", event.outputs, at


def _execution_failed(state: Execution, event: ExecutionFailed, at: datetime) -> None:
    state.status, state.error, state.failed_node, state.finished_at = "failed", event.error, event.node, at
    _abort_unfinished(state)


def _execution_aborted(state: Execution, event: ExecutionAborted, at: datetime) -> None:
    state.status, state.abort_reason, state.finished_at = "aborted", event.reason, at
    state.aborted_by = event.aborted_by
    _abort_unfinished(state)


def _command_rejected(state: Execution, event: CommandRejected, at: datetime) -> None:
    state.rejected_commands.append(event)


def _execution_launched(state: Execution, event: ExecutionLaunched, at: datetime) -> None:
    """Only ever the first event: ``launch`` builds the state from it."""


def _node_skipped(state: Execution, event: NodeSkipped, at: datetime) -> None:
    node = state.nodes[event.node]
    node.status, node.skipped = "skipped", event.reason or f"branch '{event.branch}' took another case"
    state.skipped_nodes += 1


def _node_recovered(state: Execution, event: NodeRecovered, at: datetime) -> None:
    node = state.nodes[event.node]
    node.status, node.recovered_from = "recovered", event.source_execution
    _outputs_known(state, node, event.outputs)


def _attempt_stopped(state: Execution, event: AttemptStopped, at: datetime) -> None:
    attempt = state.nodes[event.node].find_attempt(event.attempt_id)
    if attempt is not None:
        attempt.status, attempt.stopped, attempt.finished_at = "stopped", event.reason, at


def _branch_taken(state: Execution, event: BranchTaken, at: datetime) -> None:
    node = state.nodes[event.node]
    node.status, node.branch_case = "running", event.case


def _gate_opened(state: Execution, event: GateOpened, at: datetime) -> None:
    node = state.nodes[event.node]
    node.status, node.inputs, node.gate_opened_at = "waiting", event.inputs, at


def _signal_received(state: Execution, event: SignalReceived, at: datetime) -> None:
    state.signals[event.name] = event


def _child_launched(state: Execution, event: ChildLaunched, at: datetime) -> None:
    node = state.nodes[event.node]
    node.status, node.inputs, node.child_execution = "running", event.inputs, event.child_execution


ITEM_ATTEMPT_BYTES = 600
"""About the memory of a map item's ``AttemptState`` (measured: ~470 bytes, with its id)."""
ITEM_COLUMN_BYTES = 17
"""Of a map item kept in columns: its flag and its worker's slot (the worker's name is shared)."""
OUTPUT_SLOT_BYTES = 8


def _item_succeeded(
    state: Execution, node: NodeState, index: int, outputs: dict[str, Any], worker: str, at: datetime
) -> None:
    """Map item ``index`` succeeded: one that did at its first attempt leaves ``item_attempts`` for the columns."""
    finished = node.item_attempts.get(index)
    if finished is not None and finished.attempt == 1:
        del node.item_attempts[index]
        node.item_done[index] = 1
        node.item_workers[index] = sys.intern(worker or finished.worker)
        state.item_bytes -= ITEM_ATTEMPT_BYTES
    elif finished is not None:
        finished.status, finished.finished_at = "succeeded", at
        finished.worker = worker or finished.worker
    for name, value in outputs.items():
        column = node.item_values.get(name)
        if column is None:
            column = node.item_values[name] = [None] * node.map_size
            state.item_bytes += OUTPUT_SLOT_BYTES * node.map_size
        column[index] = value
        state.item_bytes += _value_bytes(value)
    node.map_finished += 1
    node.map_ended_at = at


def _value_bytes(value: Any) -> int:
    """About the memory ``value`` (decoded from an event) takes."""
    if value is None or isinstance(value, bool | int | float):
        return 32
    if isinstance(value, str):
        return 49 + len(value)
    return 3 * len(msgspec.json.encode(value))


def _expand(state: Execution, event: DynamicExpanded, at: datetime) -> None:
    """A dynamic node's generated nodes join the execution; the node waits for them all (it is downstream of each)."""
    node = state.nodes[event.node]
    attempt_state = node.find_attempt(event.attempt_id)
    if attempt_state is not None:
        attempt_state.status, attempt_state.finished_at = "succeeded", at
        attempt_state.worker = event.worker or attempt_state.worker
    keys = task_keys(node.id, event.workflow, state.workflow.tasks)
    added = {keys[key]: spec for key, spec in event.workflow.tasks.items() if keys[key] not in state.workflow.tasks}
    if added:
        state.generated_tasks.update(added)
        state.workflow = msgspec.structs.replace(state.workflow, tasks={**state.workflow.tasks, **added})
    generated = expanded_nodes(node.id, event.workflow, keys)
    for spec in generated:
        upstream = tuple(sorted(set().union(*(upstream_nodes(b) for b in spec.inputs.values()))))
        state.nodes[spec.id] = NodeState(
            id=spec.id, task=spec.task, spec=spec, upstream=upstream, waiting_on=len(upstream), dynamic_of=node.id
        )
        for parent in upstream:
            state.nodes[parent].downstream.append(spec.id)
        state.nodes[spec.id].downstream.append(node.id)
    node.status, node.generated, node.waiting_on = "running", tuple(spec.id for spec in generated), len(generated)
    node.generated_outputs = {name: namespaced(node.id, b) for name, b in event.workflow.outputs.items()}


def launched_workflow(state: Execution) -> WorkflowSpec:
    """The workflow spec the execution was launched with, without the tasks its dynamic nodes added."""
    if not state.generated_tasks:
        return state.workflow
    tasks = {key: spec for key, spec in state.workflow.tasks.items() if key not in state.generated_tasks}
    return msgspec.structs.replace(state.workflow, tasks=tasks)


def _after(previous: AttemptState | None, attempt: AttemptState) -> AttemptState:
    """``attempt``, a retry of ``previous`` (if any): the failures before it counted, by kind."""
    if previous is not None:
        attempt.user_failures, attempt.system_failures = previous.failures("user"), previous.failures("system")
    return attempt


UNFINISHED_NODE_STATUSES = ("waiting", "cache_lookup", "queued", "running")


def _abort_unfinished(state: Execution) -> None:
    """Once an execution has ended, nothing more runs: its unfinished nodes are aborted."""
    for node in state.nodes.values():
        if node.status in UNFINISHED_NODE_STATUSES:
            node.status = "aborted"


_TRANSITIONS: dict[type, Callable[[Execution, Any, datetime], None]] = {
    NodeQueued: _node_queued,
    AttemptStarted: _attempt_started,
    AttemptFailed: _attempt_failed,
    NodeSucceeded: _node_succeeded,
    RetryScheduled: _retry_scheduled,
    MapStarted: _map_started,
    MapItemSucceeded: _map_item_succeeded,
    MapItemFailed: _map_item_failed,
    NodeCacheLookup: _node_cache_lookup,
    NodeCacheWaiting: _node_cache_waiting,
    NodeCacheHit: _node_cache_hit,
    NodeFailed: _node_failed,
    ExecutionSucceeded: _execution_succeeded,
    ExecutionFailed: _execution_failed,
    ExecutionAborted: _execution_aborted,
    CommandRejected: _command_rejected,
    ExecutionLaunched: _execution_launched,
    NodeSkipped: _node_skipped,
    NodeRecovered: _node_recovered,
    AttemptStopped: _attempt_stopped,
    DynamicExpanded: _expand,
    BranchTaken: _branch_taken,
    GateOpened: _gate_opened,
    SignalReceived: _signal_received,
    ChildLaunched: _child_launched,
}
"""Each event type's change to an execution's state (see ``evolve``)."""


def apply_decision(
    state: Execution | None, decision: Decision, sequence: int, digest: str, size: int = 0
) -> Execution | None:
    """Apply every event of a stored decision (``size`` bytes); returns the new state (None before any launch)."""
    at = decision.at
    for event in decision.events:
        kind = type(event)
        if kind is ExecutionLaunched:
            state = launch(event, at, decision.commands[0] if decision.commands else "")  # type: ignore[arg-type]
        elif state is not None:
            _TRANSITIONS[kind](state, event, at)  # ``evolve``, inlined: a call per event fewer
    if state is not None:
        state.last_sequence, state.last_digest = sequence, digest
        state.decisions += 1
        count_stored(state, decision.events, size)
    return state


def count_stored(state: Execution, events: Iterable[Event], size: int) -> None:
    """Count a stored decision of ``size`` bytes in ``stored_bytes``, unless all its events are of map items: their
    state is kept compact, counted as it changes (``item_bytes``), so a million-item map is measured at its cost."""
    if not all(_of_map_item(event) for event in events):
        state.stored_bytes += size


def _of_map_item(event: Event) -> bool:
    match event:
        case NodeQueued(index=index) | RetryScheduled(index=index):
            return index >= 0
        case MapItemSucceeded() | MapItemFailed():
            return True
        case AttemptStarted(attempt_id=attempt_id) | AttemptFailed(attempt_id=attempt_id):
            return item_of_attempt(attempt_id) >= 0
    return False
