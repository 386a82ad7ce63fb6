"""``decide``: what happens when a command meets an execution's state. Pure: no I/O, no clock."""

from __future__ import annotations

import math
from collections import ChainMap, Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import msgspec

from plait.core import branches, children, gates
from plait.core.clusters import (
    cluster_of_task,
    placement_at_launch,
    placement_problem,
    select_clusters,
    selectors_in_force,
)
from plait.core.commands import (
    AbortExecution,
    AttemptDeadline,
    AttemptTimeout,
    Command,
    ExecutionTimeout,
    GateTimer,
    LaunchExecution,
    ReportAttemptResult,
    ReportAttemptResults,
    ReportAttemptStarted,
    ReportAttemptStopped,
    ReportCacheLookup,
    ReportCacheLookups,
    ReportChildEnded,
    ResolvedLaunch,
    RetryDue,
    SendSignal,
    command_id_of,
    command_type_of,
    each_command,
)
from plait.core.dynamic import is_dynamic
from plait.core.dynamic_nodes import fail_enclosing, generated
from plait.core.events import (
    AttemptFailed,
    AttemptStarted,
    AttemptStopped,
    BranchTaken,
    CommandRejected,
    DynamicExpanded,
    Event,
    ExecutionAborted,
    ExecutionFailed,
    ExecutionLaunched,
    ExecutionSucceeded,
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
    RetryBudget,
    RetryScheduled,
    SignalReceived,
    TaskError,
)
from plait.core.failure_policy import contain_failure, failed_when_idle
from plait.core.ids import (
    attempt_id,
    cache_key,
    canonical_encoding,
    encoding_hash,
    item_attempt_id,
    item_of_attempt,
)
from plait.core.model import GateSpec, Interface, LaunchPlanSpec, MapOptions, TaskSpec, WorkflowSpec, resolve
from plait.core.recovery import recovered_nodes, relaunch_problem
from plait.core.selectors import LiveExecutor
from plait.core.state import AttemptState, Execution, NodeState, evolve, launch
from plait.core.task_output_events import with_output
from plait.core.types import check_value, describe
from plait.core.validate import nesting_problem, node_id_problem
from plait.core.values import DEFAULT_INLINE_VALUE_LIMIT, ValueRef, as_ref, list_item, list_ref, stored_list_length


class Rejected(Exception):
    """The command cannot apply to this execution; ``reason`` says why, for the sender and the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def launch_plan_inputs(plan: LaunchPlanSpec, inputs: dict[str, Any]) -> dict[str, Any]:
    """The inputs a launch through ``plan`` runs with: its defaults, then the caller's, then its fixed ones."""
    overridden = sorted(set(inputs) & set(plan.fixed_inputs))
    if overridden:
        names = ", ".join(repr(name) for name in overridden)
        raise Rejected(f"launch plan '{plan.name}': input {names} is fixed by the plan and cannot be given")
    return {**plan.default_inputs, **inputs, **plan.fixed_inputs}


def validate_inputs(interface: Interface, inputs: dict[str, Any], owner: str) -> dict[str, Any]:
    """The complete inputs (defaults filled in), or ``Rejected`` naming each wrong input."""
    problems = [f"unknown input '{name}'" for name in inputs if interface.input(name) is None]
    complete: dict[str, Any] = {}
    for param in interface.inputs:
        if param.name in inputs:
            value = inputs[param.name]
            if (too_deep := nesting_problem(value)) is not None:
                problems.append(f"input '{param.name}' {too_deep}")
            elif (problem := check_value(param.type, value)) is not None:
                problems.append(f"input '{param.name}' expects {describe(param.type)}: {problem}")
            complete[param.name] = value
        elif param.required:
            problems.append(f"missing input '{param.name}' ({describe(param.type)})")
        elif (too_deep := nesting_problem(param.default)) is not None:
            problems.append(f"the default of input '{param.name}' {too_deep}")
        else:
            complete[param.name] = param.default
    if problems:
        raise Rejected(f"{owner}: " + "; ".join(problems))
    return complete


def _invalid_outputs(interface: Interface, outputs: dict[str, Any]) -> str | None:
    problems = [f"unexpected output '{name}'" for name in outputs if interface.output(name) is None]
    for param in interface.outputs:
        if param.name not in outputs:
            problems.append(f"missing output '{param.name}'")
        elif (too_deep := nesting_problem(outputs[param.name])) is not None:
            problems.append(f"output '{param.name}' {too_deep}")
        elif (problem := check_value(param.type, outputs[param.name])) is not None:
            problems.append(f"output '{param.name}' expects {describe(param.type)}: {problem}")
    return "; ".join(problems) or None


def _queue(state: Execution, node_id: str, attempt: int, inputs: dict[str, Any], key: str = "") -> NodeQueued:
    task_name = state.nodes[node_id].task
    return NodeQueued(
        node=node_id,
        attempt_id=attempt_id(state.execution_id, node_id, attempt),
        attempt=attempt,
        task=task_name,
        queue=state.workflow.tasks[task_name].queue,
        inputs=inputs,
        cache_key=key,
        cluster=cluster_of_task(state, task_name),
    )


class _Finished:
    """Nodes that finished in the decision being made, before its events are applied to the state."""

    def __init__(self, state: Execution) -> None:
        self.now: dict[str, dict[str, Any]] = {}
        self.outputs: ChainMap[str, dict[str, Any]] = ChainMap(self.now, state.node_outputs)
        self.arrived: Counter[str] = Counter()  # child -> how many of its parents finished now
        self.taken: dict[str, int] = {}  # branch node -> the case it took now
        self.skipped: set[str] = set()

    def all_done(self, state: Execution) -> bool:
        """Whether every node of the execution has succeeded or been skipped, counting this decision's."""
        done = len(state.node_outputs) + len(self.now) + state.skipped_nodes + len(self.skipped)
        return done == len(state.nodes)


def _guard_open(state: Execution, node_id: str, finished: _Finished) -> bool:
    """Whether a node may run once its inputs are known: it is in no branch case, or in one that was taken."""
    guard = branches.guard_of(state.nodes[node_id].spec)
    if guard is None:
        return True
    taken = finished.taken.get(guard.branch, state.nodes[guard.branch].branch_case)
    return taken == guard.case and node_id not in finished.skipped


def _ready(state: Execution, node_id: str, inputs: dict[str, Any], finished: _Finished) -> list[Event]:
    """What happens to a node whose inputs are all known. A map node starts its items. A cached task's node is
    looked up first, unless the launch overwrites the cache (then it runs, and its result replaces the cached
    one)."""
    node = state.nodes[node_id]
    if node.generated is not None:  # an expanded dynamic node: every node it generated has finished
        return _generated_finished(state, node, finished)
    if branches.branch_of(node.spec) is not None:
        return _choose_case(state, node, finished)
    if (gate := gates.gate_of(node.spec)) is not None:
        return _open_gate(state, node, gate, inputs, finished)
    if (child := children.child_of(node.spec)) is not None:
        return [children.launched(state, node, child, inputs)]
    if node.spec.map is not None:
        return _start_map(state, node, inputs, finished)
    task = state.workflow.tasks[node.task]
    if not task.cache:
        return [_queue(state, node_id, 1, inputs)]
    key = cache_key(task.name, task.cache_version, task.interface, inputs)
    if state.overwrite_cache:
        return [_queue(state, node_id, 1, inputs, key)]
    return [NodeCacheLookup(node=node_id, cache_key=key, round=node.cache_round + 1, inputs=inputs)]


def _node_inputs(state: Execution, node_id: str, outputs: ChainMap[str, dict[str, Any]]) -> dict[str, Any]:
    bindings = state.nodes[node_id].spec.inputs
    return {name: resolve(b, state.inputs, outputs) for name, b in bindings.items()}


def _launch(
    command: LaunchExecution,
    workflow: WorkflowSpec,
    plan: LaunchPlanSpec | None,
    original: Execution | None = None,
    default_cluster: str = "",
    default_task_timeout: float | None = None,
    live: tuple[LiveExecutor, ...] = (),
) -> list[Event]:
    owner = f"workflow '{workflow.name}'"
    for declared in workflow.nodes:  # a spec registered by any client, not only by the SDK, which checks them first
        if (problem := node_id_problem(declared.id)) is not None:
            raise Rejected(f"{owner}: {problem}")
    chosen_cluster, chosen_selector = command.cluster or msgspec.UNSET, command.cluster_selector or msgspec.UNSET
    if (problem := placement_problem(chosen_cluster, chosen_selector, "launch")) is not None:
        raise Rejected(problem)
    if command.relaunch_of or command.recover:
        if (problem := relaunch_problem(command, original)) is not None:
            raise Rejected(problem)
        assert original is not None  # noqa: S101  an invariant of this code, not a check of input
        given, plan_label = original.inputs, original.launch_plan
    else:
        given = launch_plan_inputs(plan, command.inputs) if plan else command.inputs
        plan_label = f"{plan.name}@{plan.version}" if plan else ""
    inputs = validate_inputs(workflow.interface, given, owner)
    placed = placement_at_launch(command.cluster, command.cluster_selector, plan, original)
    selected = select_clusters(selectors_in_force(workflow, placed), live)
    if isinstance(selected, str):
        raise Rejected(f"launching {owner}: {selected}")
    launched = ExecutionLaunched(
        execution_id=command.execution_id,
        project=command.project,
        domain=command.domain,
        workflow=workflow,
        inputs=inputs,
        launched_by=command.launched_by,
        launch_plan=plan_label,
        overwrite_cache=command.overwrite_cache,
        relaunch_of="" if command.recover else command.relaunch_of,
        recovered_from=command.relaunch_of if command.recover else "",
        cluster=placed.cluster,
        default_cluster=default_cluster,
        default_task_timeout_seconds=default_task_timeout,
        parent_execution=command.parent_execution,
        parent_node=command.parent_node,
        traceparent=command.traceparent,
        cluster_selector=placed.selector,
        selected_clusters=selected,
    )
    state = launch(launched, datetime.min, command.command_id)
    events: list[Event] = [launched]
    for recovered in recovered_nodes(original) if command.recover and original is not None else []:
        events.append(recovered)
        evolve(state, recovered, datetime.min)
    finished = _Finished(state)
    for node_id, node in state.nodes.items():
        if node.status == "waiting" and node.waiting_on == 0 and branches.guard_of(node.spec) is None:
            events += _ready(state, node_id, _node_inputs(state, node_id, finished.outputs), finished)
            if isinstance(events[-1], ExecutionFailed):
                return events
    if finished.all_done(state):  # no nodes, all recovered, or only maps over empty lists
        outputs = {k: resolve(b, inputs, finished.outputs) for k, b in workflow.outputs.items()}
        events.append(ExecutionSucceeded(outputs=outputs))
    return events


def _succeeded(
    state: Execution, success: NodeSucceeded | NodeCacheHit | NodeRecovered, finished: _Finished | None = None
) -> list[Event]:
    """A node's outputs are known (computed, found in the cache, or an empty map's): its ready children go on.

    ``finished`` holds the nodes that finished earlier in the same decision (a map over an empty list finishes
    as it starts); the outermost call decides whether the execution is done.
    """
    outermost = finished is None
    finished = finished or _Finished(state)
    node = state.nodes[success.node]
    finished.now[node.id] = success.outputs
    events: list[Event] = [success]
    for child in node.downstream:
        finished.arrived[child] += 1
        if state.nodes[child].waiting_on == finished.arrived[child] and _guard_open(state, child, finished):
            events += _ready(state, child, _node_inputs(state, child, finished.outputs), finished)
            if isinstance(events[-1], ExecutionFailed):
                return events
    events += _case_finished(state, node.id, finished)
    if isinstance(events[-1], ExecutionFailed):
        return events
    if outermost and finished.all_done(state):
        workflow_outputs = {k: resolve(b, state.inputs, finished.outputs) for k, b in state.workflow.outputs.items()}
        events.append(ExecutionSucceeded(outputs=workflow_outputs))
    return events


def _choose_case(state: Execution, node: NodeState, finished: _Finished) -> list[Event]:
    """A branch node's conditions can be evaluated: the first case that holds is taken, the other cases' nodes are
    skipped, and the taken case's nodes whose inputs are known are ready (a case that fails fails the node)."""
    branch = branches.branch_of(node.spec)
    assert branch is not None  # noqa: S101  an invariant of this code, not a check of input
    try:
        case = branches.chosen_case(branch, state.inputs, finished.outputs)
    except branches.ConditionError as exc:
        return _branch_failed(node.id, f"branch '{node.id}': {exc}")
    if case < 0:
        return _branch_failed(node.id, f"branch '{node.id}': no case holds, and it has no else")
    condition = branches.describe_condition(branch.cases[case].condition)
    skipped = branches.skipped_by(state.case_members, node.id, case)
    finished.taken[node.id] = case
    finished.skipped.update(skipped)
    events: list[Event] = [BranchTaken(node=node.id, case=case, condition=condition)]
    events += [NodeSkipped(node=skipped_id, branch=node.id) for skipped_id in skipped]
    if branch.cases[case].fail:
        return events + _branch_failed(node.id, branch.cases[case].fail)
    for member in state.case_members[node.id][case]:
        if state.nodes[member].waiting_on == finished.arrived[member]:
            events += _ready(state, member, _node_inputs(state, member, finished.outputs), finished)
            if isinstance(events[-1], ExecutionFailed):
                return events
    if not state.case_members[node.id][case]:
        events += _branch_succeeded(state, node.id, case, finished)
    return events


def _branch_failed(node_id: str, message: str) -> list[Event]:
    error = TaskError(kind="user", message=message, error_type="BranchFailed")
    return [NodeFailed(node=node_id, error=error), ExecutionFailed(node=node_id, error=error)]


def _case_finished(state: Execution, node_id: str, finished: _Finished) -> list[Event]:
    """A node of a taken case succeeded: once every node of that case has, its branch node succeeds with the
    case's outputs."""
    guard = branches.guard_of(state.nodes[node_id].spec)
    if guard is None:
        return []
    if any(member not in finished.outputs for member in state.case_members[guard.branch][guard.case]):
        return []
    return _branch_succeeded(state, guard.branch, guard.case, finished)


def _branch_succeeded(state: Execution, node_id: str, case: int, finished: _Finished) -> list[Event]:
    branch = branches.branch_of(state.nodes[node_id].spec)
    assert branch is not None  # noqa: S101  an invariant of this code, not a check of input
    outputs = {name: resolve(b, state.inputs, finished.outputs) for name, b in branch.cases[case].outputs.items()}
    return _succeeded(state, NodeSucceeded(node=node_id, attempt_id="", outputs=outputs), finished)


def _open_gate(
    state: Execution, node: NodeState, gate: GateSpec, inputs: dict[str, Any], finished: _Finished
) -> list[Event]:
    """A gate's inputs are known: it waits, unless what it waits for is already there (a signal given early, a
    sleep of no time)."""
    events: list[Event] = [gates.opened(node.id, gate, inputs)]
    if gate.kind == "sleep" and gate.seconds <= 0:
        return events + _gate_passed(state, node, gate, inputs, None, finished)
    signal = state.signals.get(gate.name) if gate.name else None
    if signal is not None:
        return events + _gate_passed(state, node, gate, inputs, signal, finished)
    return events


def _gate_passed(
    state: Execution,
    node: NodeState,
    gate: GateSpec,
    inputs: dict[str, Any],
    signal: SignalReceived | None,
    finished: _Finished | None = None,
) -> list[Event]:
    if signal is not None and not signal.approved:
        by = f" by {signal.sent_by}" if signal.sent_by else ""
        return _gate_failed(node.id, f"approval '{gate.name}' was rejected{by}", "GateRejected")
    success = NodeSucceeded(node=node.id, attempt_id="", outputs=gates.outputs(gate, inputs, signal))
    return _succeeded(state, success, finished)


def _gate_failed(node_id: str, message: str, error_type: str) -> list[Event]:
    error = TaskError(kind="user", message=message, error_type=error_type)
    return [NodeFailed(node=node_id, error=error), ExecutionFailed(node=node_id, error=error)]


def _signal(state: Execution, command: SendSignal) -> list[Event]:
    """A signal for one of the execution's gates: type-checked against what the gate expects, recorded, and, if the
    gate waits already, passed to it (a gate opened later finds it)."""
    if any(signal.command_id == command.command_id for signal in state.signals.values()):
        return []  # redelivered
    node = gates.named(state, command.name)
    if node is None:
        names = ", ".join(repr(name) for name in gates.signal_names(state)) or "none"
        raise Rejected(f"execution {state.execution_id} has no gate named '{command.name}' (its gates: {names})")
    if (problem := gates.signal_problem(state, node, command)) is not None:
        raise Rejected(problem)
    received = SignalReceived(
        node=node.id,
        name=command.name,
        command_id=command.command_id,
        value=command.value,
        approved=not command.reject,
        sent_by=command.sent_by,
    )
    gate = gates.gate_of(node.spec)
    if gate is None or not gates.is_open(node):
        return [received]
    return [received, *_gate_passed(state, node, gate, node.inputs or {}, received)]


def _gate_timer(state: Execution, command: GateTimer) -> list[Event]:
    """A gate's timer fired: a sleep is over; a signal or approval not given by now fails the gate. A gate that
    passed meanwhile stays as it is (a timer may fire late, or twice)."""
    node = state.nodes.get(command.node)
    gate = gates.gate_of(node.spec) if node is not None else None
    if node is None or gate is None:
        raise Rejected(f"execution {state.execution_id} has no gate node '{command.node}'")
    if not gates.is_open(node):
        return []
    if gate.kind == "sleep":
        return _gate_passed(state, node, gate, node.inputs or {}, None)
    what = "approval" if gate.kind == "approve" else "signal"
    return _gate_failed(node.id, f"no {what} '{gate.name}' within {command.seconds:g} s", "GateTimedOut")


MAX_MAP_IN_FLIGHT = 1_000
"""Items of one map node queued or running at once, whatever its concurrency: bounds the size of a decision."""


def _map_options(node: NodeState) -> MapOptions:
    assert node.spec.map is not None  # noqa: S101  an invariant of this code, not a check of input
    return node.spec.map


def _start_map(state: Execution, node: NodeState, inputs: dict[str, Any], finished: _Finished) -> list[Event]:
    options = _map_options(node)
    stored = [name for name in options.over if as_ref(inputs[name]) is not None]
    if unsized := [name for name in stored if stored_list_length(inputs[name]) < 0]:
        error = TaskError(
            kind="system",
            message=f"map node '{node.id}': mapped input '{unsized[0]}' is a value in the values bucket whose "
            "reference does not say it is a list of how many items (stored by an older release, or not a list)",
            error_type="MappedValueStored",
        )
        return [NodeFailed(node=node.id, error=error), ExecutionFailed(node=node.id, error=error)]
    sizes = {name: stored_list_length(inputs[name]) if name in stored else len(inputs[name]) for name in options.over}
    if len(set(sizes.values())) > 1:
        lengths = ", ".join(f"'{name}' has {size}" for name, size in sizes.items())
        error = TaskError(kind="user", message=f"map node '{node.id}': its mapped inputs differ in length: {lengths}")
        return [NodeFailed(node=node.id, error=error), ExecutionFailed(node=node.id, error=error)]
    size = next(iter(sizes.values()))
    events: list[Event] = [MapStarted(node=node.id, size=size, inputs=inputs)]
    if size == 0:
        outputs: dict[str, Any] = {p.name: [] for p in state.workflow.tasks[node.task].interface.outputs}
        return events + _succeeded(state, NodeSucceeded(node=node.id, attempt_id="", outputs=outputs), finished)
    limit = min(options.concurrency or MAX_MAP_IN_FLIGHT, MAX_MAP_IN_FLIGHT)
    return events + [_queue_item(state, node, index, 1, inputs) for index in range(min(size, limit))]


def _queue_item(state: Execution, node: NodeState, index: int, attempt: int, inputs: dict[str, Any]) -> NodeQueued:
    over = _map_options(node).over
    return NodeQueued(
        node=node.id,
        attempt_id=item_attempt_id(state.execution_id, node.id, index, attempt),
        attempt=attempt,
        task=node.task,
        queue=state.workflow.tasks[node.task].queue,
        inputs={name: list_item(value, index) if name in over else value for name, value in inputs.items()},
        index=index,
        cluster=cluster_of_task(state, node.task),
    )


def _retried_since(node: NodeState, attempt_id: str) -> bool:
    """Whether ``attempt_id`` names an earlier attempt of one of the map node's items, retried since."""
    index = item_of_attempt(attempt_id)
    current = node.item(index)
    number = attempt_id.rsplit("/", 1)[-1]
    return current is not None and number.isdecimal() and int(number) < current.attempt


def _item_finished(
    state: Execution, node: NodeState, index: int, outputs: dict[str, Any] | None, error: TaskError | None
) -> list[Event]:
    options = _map_options(node)
    failed = node.map_failed + (error is not None)
    allowed = math.floor(node.map_size * (1.0 - options.min_success_ratio) + 1e-9)
    if error is not None and failed > allowed:
        message = (
            f"map node '{node.id}': {failed} of {node.map_size} items failed, more than its min_success_ratio "
            f"of {options.min_success_ratio:g} allows; item {index}: {error.message}"
        )
        node_error = msgspec.structs.replace(error, message=message)
        return [NodeFailed(node=node.id, error=node_error), ExecutionFailed(node=node.id, error=node_error)]
    events: list[Event] = []
    if node.map_queued < node.map_size:
        events.append(_queue_item(state, node, node.map_queued, 1, node.inputs or {}))
    if node.map_finished + 1 == node.map_size:
        gathered = {name: gathered_value(values)[0] for name, values in _gather(state, node, index, outputs).items()}
        events += _succeeded(state, NodeSucceeded(node=node.id, attempt_id="", outputs=gathered))
    return events


GATHERED_INLINE_LIMIT = DEFAULT_INLINE_VALUE_LIMIT
"""Bytes of the encoding of a map node's gathered output above which the decision carries a reference to it, and
the scheduler stores it in the values bucket before the decision (``gathered_values``)."""


def _gather(
    state: Execution, node: NodeState, last: int = -1, last_outputs: dict[str, Any] | None = None
) -> dict[str, list[Any]]:
    """Each output of a map node's task as the list of its items' values (None for an item that failed), with the
    outputs of item ``last`` (not in ``node`` yet) when given."""
    gathered: dict[str, list[Any]] = {}
    for name in (p.name for p in state.workflow.tasks[node.task].interface.outputs):
        values = list(node.item_values.get(name) or [None] * node.map_size)
        if last >= 0:
            values[last] = last_outputs.get(name) if last_outputs is not None else None
        gathered[name] = values
    return gathered


def gathered_value(values: list[Any]) -> tuple[Any, bytes]:
    """A map node's gathered output as its event carries it: ``values`` when small enough, else a reference to
    their canonical encoding (which is returned with it)."""
    encoding = canonical_encoding(values)
    if len(encoding) <= GATHERED_INLINE_LIMIT:
        return values, b""
    return list_ref(ValueRef(hash=encoding_hash(encoding), size=len(encoding)), len(values)), encoding


def gathered_values(state: Execution, events: Sequence[Event]) -> list[tuple[ValueRef, bytes]]:
    """The gathered outputs ``events`` (applied to ``state``) refer to, to store before they are appended: the
    references a map node's success carries in place of a list too large for an event, with their encodings."""
    found: list[tuple[ValueRef, bytes]] = []
    for event in events:
        if not isinstance(event, NodeSucceeded):
            continue
        node = state.nodes.get(event.node)
        if node is None or node.map_size < 0 or not any(as_ref(v) for v in event.outputs.values()):
            continue
        for name, values in _gather(state, node).items():
            ref, encoding = gathered_value(values)
            if (stored := as_ref(ref)) is not None and event.outputs.get(name) == ref:
                found.append((stored, encoding))
    return found


MAX_RETRY_DELAY_SECONDS = 3600.0


def retry_delay(task: TaskSpec, failed_attempt: int) -> float:
    """How long the attempt after ``failed_attempt`` waits: the task's delay, doubled for each retry before it."""
    if task.retry_delay_seconds <= 0:
        return 0.0
    return min(task.retry_delay_seconds * 2.0 ** (failed_attempt - 1), MAX_RETRY_DELAY_SECONDS)


def _queue_again(state: Execution, node: NodeState, index: int, attempt: int) -> NodeQueued:
    """Queue attempt ``attempt`` of the node, or of its map item ``index`` (>= 0)."""
    if index >= 0:
        return _queue_item(state, node, index, attempt, node.inputs or {})
    return _queue(state, node.id, attempt, node.inputs or {}, node.cache_key)


def _retry_due(state: Execution, command: RetryDue) -> list[Event]:
    """Queue a retry whose delay is over, unless it was queued already (a timer fires at least once)."""
    node = state.nodes.get(command.node)
    if node is None:
        raise Rejected(f"execution {state.execution_id} has no node '{command.node}'")
    if node.status in ("succeeded", "failed"):
        return []
    latest = node.item(command.index) if command.index >= 0 else node.attempts[-1] if node.attempts else None
    if latest is None or latest.attempt != command.attempt - 1 or latest.status != "failed":
        return []
    return [_queue_again(state, node, command.index, command.attempt)]


def _deadline_passed(state: Execution, command: AttemptDeadline) -> list[Event]:
    """An attempt's deadline timer fired: still running, it fails as a system error, and its node retries as after
    any failed attempt; an attempt that ended meanwhile stays as it is (a timer may fire late).

    An attempt still queued has not been taken by any executor: it waits for one of its cluster (whose dispatch
    stream keeps it), and is not failed: a cluster with no executor live must not burn its system retries. Its
    running time is bounded by the executor that takes it (which moves the deadline on while it runs), and the
    wait by the workflow's timeout, or an abort."""
    node = state.nodes.get(command.node)
    if node is None:
        raise Rejected(f"execution {state.execution_id} has no node '{command.node}'")
    attempt = node.find_attempt(command.attempt_id)
    if attempt is None or attempt.status != "running" or node.status in ("succeeded", "failed"):
        return []
    error = TaskError(
        kind="system", message=f"no result within {command.seconds:g} s", error_type="AttemptDeadlinePassed"
    )
    return _attempt_ended(state, node, attempt, attempt.worker, None, error)


def _timed_out(state: Execution, command: AttemptTimeout) -> list[Event]:
    """An attempt's timeout timer fired: still running, it fails as the task's own failure ("timed out"), counted
    against its ``retries``; an attempt that ended meanwhile stays as it is, and its late result is ignored."""
    node = state.nodes.get(command.node)
    if node is None:
        raise Rejected(f"execution {state.execution_id} has no node '{command.node}'")
    attempt = node.find_attempt(command.attempt_id)
    if attempt is None or attempt.status != "running" or node.status in ("succeeded", "failed"):
        return []
    error = TaskError(kind="user", message=f"timed out after {command.seconds:g} s", error_type="TaskTimedOut")
    return _attempt_ended(state, node, attempt, attempt.worker, None, error)


def _execution_timed_out(command: ExecutionTimeout) -> list[Event]:
    """The execution's timeout timer fired while it still runs: it fails, and its open attempts are stopped (their
    executors see it ended); nothing is dispatched after."""
    error = TaskError(
        kind="user", message=f"workflow timed out after {command.seconds:g} s", error_type="ExecutionTimedOut"
    )
    return [ExecutionFailed(node="", error=error)]


def _result(state: Execution, command: ReportAttemptResult) -> list[Event]:
    """An attempt of a node, or of one of a map node's items, ended. One whose ``started`` was never reported (a
    quick attempt's executor sends only the result) is recorded as started first, in the same decision."""
    node = state.nodes.get(command.node)
    if node is None:
        raise Rejected(f"execution {state.execution_id} has no node '{command.node}'")
    attempt = node.find_attempt(command.attempt_id)
    if attempt is None:
        if _retried_since(node, command.attempt_id):
            return []  # a late result of an item's attempt that has been retried since
        kind = "map node" if node.spec.map is not None else "node"
        raise Rejected(f"{kind} '{node.id}' has no attempt '{command.attempt_id}'")
    if attempt.status in ("succeeded", "failed") or node.status in ("succeeded", "failed"):
        return []
    started = _started_first(command, attempt.status)
    ended = _attempt_ended(state, node, attempt, command.worker, command.outputs, command.error)
    return started + with_output(ended, attempt.attempt_id, command.output)


def _started_first(command: ReportAttemptResult, status: str) -> list[Event]:
    if status != "queued":
        return []
    return [AttemptStarted(node=command.node, attempt_id=command.attempt_id, worker=command.worker)]


def _attempt_ended(
    state: Execution,
    node: NodeState,
    attempt: AttemptState,
    worker: str,
    outputs: dict[str, Any] | None,
    error: TaskError | None,
) -> list[Event]:
    """The one path of an open attempt that ended, of a plain node or of a map item (``attempt.index`` >= 0):
    outputs that break the task's interface fail it (the task's own failure); a failed attempt is retried while
    the budget of its error's kind lasts (``retries`` for the task's own failures, timeouts included;
    ``system_retries`` for lost workers, passed deadlines and the like), and then its node (or item) fails; a
    good result finishes its node (or item)."""
    task = state.workflow.tasks[node.task]
    if error is None and outputs is not None and is_dynamic(task) and attempt.index < 0:
        return generated(state, node, attempt, worker, outputs)
    if error is None:
        if outputs is None:
            raise Rejected("a result must carry either outputs or an error")
        problem = _invalid_outputs(task.interface, outputs)
        if problem is None:
            return _attempt_succeeded(state, node, attempt, worker, outputs)
        error = TaskError(
            kind="user", message=f"task '{node.task}' returned bad outputs: {problem}", error_type="BadOutputs"
        )
    budget: RetryBudget = "retries" if error.kind == "user" else "system_retries"
    allowed = task.retries if budget == "retries" else task.system_retries
    used = (attempt.user_failures if budget == "retries" else attempt.system_failures) + 1
    failed = AttemptFailed(
        node=node.id,
        attempt_id=attempt.attempt_id,
        error=error,
        worker=worker,
        budget=budget,
        retries_left=allowed - used if used <= allowed else -1,
    )
    if used > allowed:
        return [failed, *_retries_spent(state, node, attempt.index, error)]
    delay = retry_delay(task, attempt.attempt)
    if delay > 0:
        return [
            failed,
            RetryScheduled(node=node.id, attempt=attempt.attempt + 1, delay_seconds=delay, index=attempt.index),
        ]
    return [failed, _queue_again(state, node, attempt.index, attempt.attempt + 1)]


def _retries_spent(state: Execution, node: NodeState, index: int, error: TaskError) -> list[Event]:
    """A failed attempt with no retry left fails its map item (and the map node once too many items failed), or
    its node and with it the execution."""
    if index >= 0:
        return [MapItemFailed(node=node.id, index=index, error=error), *_item_finished(state, node, index, None, error)]
    return [NodeFailed(node=node.id, error=error), ExecutionFailed(node=node.id, error=error)]


def _attempt_succeeded(
    state: Execution, node: NodeState, attempt: AttemptState, worker: str, outputs: dict[str, Any]
) -> list[Event]:
    if attempt.index >= 0:
        item = MapItemSucceeded(
            node=node.id, index=attempt.index, attempt_id=attempt.attempt_id, outputs=outputs, worker=worker
        )
        return [item, *_item_finished(state, node, attempt.index, outputs, None)]
    return _succeeded(state, NodeSucceeded(node=node.id, attempt_id=attempt.attempt_id, outputs=outputs, worker=worker))


def _cache_lookup(state: Execution, command: ReportCacheLookup) -> list[Event]:
    """What a look-up found; a report for a node no longer looking up, or for an earlier round, is stale."""
    node = state.nodes.get(command.node)
    if node is None:
        raise Rejected(f"execution {state.execution_id} has no node '{command.node}'")
    if node.status != "cache_lookup" or command.round != node.cache_round or command.cache_key != node.cache_key:
        return []
    inputs = node.inputs or {}
    match command.outcome:
        case "hit":
            interface = state.workflow.tasks[node.task].interface
            if command.outputs is None or _invalid_outputs(interface, command.outputs) is not None:
                return [_queue(state, node.id, 1, inputs, node.cache_key)]  # an unusable entry is recomputed
            hit = NodeCacheHit(
                node=node.id,
                cache_key=node.cache_key,
                outputs=command.outputs,
                source_execution=command.source_execution,
                source_node=command.source_node,
            )
            return _succeeded(state, hit)
        case "reserved":
            return [_queue(state, node.id, 1, inputs, node.cache_key)]
        case "held":
            if node.cache_holder or command.until is None:
                return []
            waiting = NodeCacheWaiting(
                node=node.id,
                cache_key=node.cache_key,
                round=node.cache_round,
                holder_execution=command.holder_execution,
                holder_node=command.holder_node,
                until=command.until,
            )
            return [waiting]
        case "released":  # may overtake its round's "held" report: it is the later fact either way
            return [NodeCacheLookup(node=node.id, cache_key=node.cache_key, round=node.cache_round + 1, inputs=inputs)]
    return []


def decide(state: Execution | None, command: Command | ResolvedLaunch) -> list[Event]:
    """The events that ``command`` causes given ``state``; [] when it changes nothing (a duplicate).

    Raises ``Rejected`` when the command cannot apply at all.
    """
    match command:
        case ResolvedLaunch(
            command=launch_command, workflow=workflow, launch_plan=plan, original=original, default_cluster=default
        ):
            if state is not None:
                if state.launch_command == launch_command.command_id:
                    return []
                raise Rejected(f"execution {launch_command.execution_id} already exists")
            timeout = command.default_task_timeout_seconds
            return _launch(launch_command, workflow, plan, original, default, timeout, command.live_executors)
        case LaunchExecution():
            raise Rejected("a launch must be resolved against the registry before deciding")
    if state is None:
        raise Rejected(f"execution {command.execution_id} does not exist")
    if isinstance(command, ReportAttemptStopped):
        return _attempt_stopped(state, command)
    if state.terminal and isinstance(command, SendSignal):  # a person waits for the answer: say why not
        raise Rejected(f"execution {state.execution_id} has {state.status}; it takes no signal now")
    if state.terminal:
        return []
    match command:
        case ReportAttemptStarted(node=node_id, attempt_id=aid, worker=worker):
            node = state.nodes.get(node_id)
            attempt_state = node.find_attempt(aid) if node else None
            if node is not None and attempt_state is None and _retried_since(node, aid):
                return []  # a late report of an item's attempt that has been retried since
            if node is None or attempt_state is None:
                raise Rejected(f"execution {state.execution_id} has no attempt '{aid}' of node '{node_id}'")
            return (
                [AttemptStarted(node=node_id, attempt_id=aid, worker=worker)]
                if attempt_state.status == "queued"
                else []
            )
        case ReportAttemptResult():
            return _result(state, command)
        case ReportCacheLookup():
            return _cache_lookup(state, command)
        case RetryDue():
            return _retry_due(state, command)
        case AttemptDeadline():
            return _deadline_passed(state, command)
        case AttemptTimeout():
            return _timed_out(state, command)
        case ExecutionTimeout():
            return _execution_timed_out(command)
        case ReportCacheLookups() | ReportAttemptResults():
            raise Rejected("reports sent together are decided one by one (decide_batch)")
        case AbortExecution(reason=reason, aborted_by=aborted_by):
            return [ExecutionAborted(reason=reason, aborted_by=aborted_by)]
        case SendSignal():
            return _signal(state, command)
        case GateTimer():
            return _gate_timer(state, command)
        case ReportChildEnded():
            return _child_ended(state, command)
    return []


def _child_ended(state: Execution, command: ReportChildEnded) -> list[Event]:
    """A child execution ended: its node succeeds with the child's outputs (if they fit the child workflow's
    interface), or fails with the child's error; a report for a node no longer running changes nothing."""
    node = state.nodes.get(command.node)
    if (problem := children.ended_problem(state, node, command)) is not None:
        raise Rejected(problem)
    assert node is not None  # noqa: S101  an invariant of this code, not a check of input
    child = children.child_of(node.spec)
    assert child is not None  # noqa: S101  an invariant of this code, not a check of input
    if node.status != "running" or not node.child_execution:
        return []
    if command.status == "succeeded":
        outputs = command.outputs or {}
        problem = _invalid_outputs(child.interface, outputs)
        if problem is None:
            return _succeeded(state, NodeSucceeded(node=node.id, attempt_id="", outputs=outputs))
        error = TaskError(
            kind="user",
            message=f"child execution {command.child_execution} returned bad outputs: {problem}",
            error_type="ChildExecutionFailed",
        )
    else:
        error = children.child_error(command)
    return [NodeFailed(node=node.id, error=error), ExecutionFailed(node=node.id, error=error)]


def _attempt_stopped(state: Execution, command: ReportAttemptStopped) -> list[Event]:
    """An executor stopped an attempt its execution's end left open: recorded once; before the end, or for an attempt
    that ended, nothing (a late or repeated report)."""
    node = state.nodes.get(command.node)
    attempt = node.find_attempt(command.attempt_id) if node is not None else None
    if attempt is None:
        raise Rejected(f"execution {state.execution_id} has no attempt '{command.attempt_id}' of node '{command.node}'")
    if not state.terminal or attempt.status not in ("queued", "running"):
        return []
    return [
        AttemptStopped(node=command.node, attempt_id=attempt.attempt_id, worker=command.worker, reason=command.reason)
    ]


def apply_event(state: Execution | None, event: Event, at: datetime, command_id: str) -> Execution | None:
    if isinstance(event, ExecutionLaunched):
        return launch(event, at, command_id)
    return evolve(state, event, at) if state is not None else None


class Outcome(msgspec.Struct):
    """What deciding a batch of commands for one execution produced."""

    state: Execution | None
    events: list[Event]
    command_ids: list[str]
    rejections: list[tuple[Command | ResolvedLaunch, str]]


MAX_RECORDED_REJECTIONS = 100
"""Rejected commands recorded on one execution's history: anyone may send junk naming an execution, and its history
is permanent."""


def decide_batch(state: Execution | None, commands: Sequence[Command | ResolvedLaunch], at: datetime) -> Outcome:
    """Decide several commands of one execution in order, as one decision.

    ``state`` is updated in place as events are produced; on a failed append the caller discards it.
    A rejected command of an existing execution is recorded on it as ``CommandRejected``, up to
    ``MAX_RECORDED_REJECTIONS`` per execution; past that, the dead-letter stream alone keeps them.
    """
    outcome = Outcome(state=state, events=[], command_ids=[], rejections=[])
    for command in each_command(commands):
        command_id = command_id_of(command)
        try:
            events: Iterable[Event] = decide(outcome.state, command)
        except Rejected as rejected:
            outcome.rejections.append((command, rejected.reason))
            if outcome.state is None or len(outcome.state.rejected_commands) >= MAX_RECORDED_REJECTIONS:
                continue
            events = [
                CommandRejected(command_id=command_id, command_type=command_type_of(command), reason=rejected.reason)
            ]
        contained = contain_failure(outcome.state, fail_enclosing(outcome.state, list(events)))
        _record(outcome, contained, at, command_id)
        expanded = [event for event in contained if isinstance(event, DynamicExpanded)]
        if expanded and outcome.state is not None:
            started = fail_enclosing(outcome.state, _start_generated(outcome.state, expanded))
            _apply(outcome, contain_failure(outcome.state, started), at, command_id)
        if contained:  # with failure_policy="finish", the execution fails once nothing can run any more
            _apply(outcome, failed_when_idle(outcome.state), at, command_id)
    return outcome


def _record(outcome: Outcome, events: list[Event], at: datetime, command_id: str) -> None:
    if events:
        outcome.command_ids.append(command_id)
    _apply(outcome, events, at, command_id)


def _apply(outcome: Outcome, events: list[Event], at: datetime, command_id: str) -> None:
    for event in events:
        outcome.state = apply_event(outcome.state, event, at, command_id)
        outcome.events.append(event)


_VALUE_PRODUCERS = (NodeSucceeded, MapItemSucceeded, NodeCacheHit)


def decide_unstorable(
    state: Execution, command: Command | ResolvedLaunch, events: Sequence[Event], reason: str, at: datetime
) -> Outcome:
    """The decision that replaces one too large to store: ``command`` caused ``events``, which ``state`` (as stored,
    without them) cannot take. The node whose value made them too large fails, and with it the execution."""
    outcome = Outcome(state=state, events=[], command_ids=[], rejections=[])
    if state.terminal:
        return outcome
    culprit = next((e for e in events if isinstance(e, _VALUE_PRODUCERS)), None) or next(
        (e for e in events if hasattr(e, "node")), None
    )
    node_id: str = getattr(culprit, "node", "")
    error = TaskError(kind="system", message=reason)
    failure: list[Event] = []
    node = state.nodes.get(node_id)
    attempt_id: str = getattr(culprit, "attempt_id", "")
    attempt = node.find_attempt(attempt_id) if node is not None and attempt_id else None
    if attempt is not None and attempt.status in ("queued", "running"):
        failure.append(AttemptFailed(node=node_id, attempt_id=attempt_id, error=error))
    if node is not None and node.status not in ("succeeded", "failed"):
        failure.append(NodeFailed(node=node_id, error=error))
    failure.append(ExecutionFailed(node=node_id, error=error))
    _record(outcome, failure, at, command_id_of(command))
    return outcome


def _start_generated(state: Execution, expansions: list[DynamicExpanded]) -> list[Event]:
    """The generated nodes of the dynamic nodes just expanded (in ``state`` already) that read no other node are
    ready; a dynamic node that generated none succeeds at once."""
    finished = _Finished(state)
    events: list[Event] = []
    for expansion in expansions:
        node = state.nodes[expansion.node]
        ready = [] if node.generated is None else [n for n in node.generated if not state.nodes[n].upstream]
        for node_id in ready:
            events += _ready(state, node_id, _node_inputs(state, node_id, finished.outputs), finished)
            if events and isinstance(events[-1], ExecutionFailed):
                return events
        if not node.generated:
            events += _generated_finished(state, node, finished)
    if events and finished.all_done(state):
        workflow_outputs = {k: resolve(b, state.inputs, finished.outputs) for k, b in state.workflow.outputs.items()}
        events.append(ExecutionSucceeded(outputs=workflow_outputs))
    return events


def _generated_finished(state: Execution, node: NodeState, finished: _Finished) -> list[Event]:
    """Every node a dynamic node generated succeeded: it succeeds with the generated outputs, if they fit its
    task's interface. (One that failed already, its generated node failing, stays so.)"""
    if node.status != "running":
        return []
    outputs = {name: resolve(b, state.inputs, finished.outputs) for name, b in node.generated_outputs.items()}
    problem = _invalid_outputs(state.workflow.tasks[node.task].interface, outputs)
    if problem is not None:
        error = TaskError(kind="user", message=f"dynamic node '{node.id}' generated bad outputs: {problem}")
        return [NodeFailed(node=node.id, error=error), ExecutionFailed(node=node.id, error=error)]
    return _succeeded(state, NodeSucceeded(node=node.id, attempt_id="", outputs=outputs), finished)
