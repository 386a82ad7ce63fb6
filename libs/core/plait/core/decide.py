"""``decide``: what happens when a command meets an execution's state. Pure: no I/O, no clock."""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import msgspec

from plait.core.commands import (
    AbortExecution,
    Command,
    LaunchExecution,
    ReportAttemptResult,
    ReportAttemptStarted,
    ReportCacheLookup,
)
from plait.core.events import (
    AttemptFailed,
    AttemptStarted,
    CommandRejected,
    Event,
    ExecutionAborted,
    ExecutionFailed,
    ExecutionLaunched,
    ExecutionSucceeded,
    NodeCacheHit,
    NodeCacheLookup,
    NodeCacheWaiting,
    NodeFailed,
    NodeQueued,
    NodeSucceeded,
    TaskError,
)
from plait.core.ids import attempt_id, cache_key
from plait.core.model import Interface, LaunchPlanSpec, WorkflowSpec, resolve
from plait.core.state import Execution, evolve, launch
from plait.core.types import check_value, describe


class Rejected(Exception):
    """The command cannot apply to this execution; ``reason`` says why, for the sender and the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ResolvedLaunch(msgspec.Struct, frozen=True):
    """A launch command together with the registered workflow (and launch plan) it names, looked up by the shell."""

    command: LaunchExecution
    workflow: WorkflowSpec
    launch_plan: LaunchPlanSpec | None = None


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
            problem = check_value(param.type, value)
            if problem is not None:
                problems.append(f"input '{param.name}' expects {describe(param.type)}: {problem}")
            complete[param.name] = value
        elif param.required:
            problems.append(f"missing input '{param.name}' ({describe(param.type)})")
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
    )


def _ready(state: Execution, node_id: str, inputs: dict[str, Any]) -> NodeQueued | NodeCacheLookup:
    """What happens to a node whose inputs are all known: a cached task's is looked up first, unless the
    launch overwrites the cache (then it runs, and its result replaces the cached one)."""
    task = state.workflow.tasks[state.nodes[node_id].task]
    if not task.cache:
        return _queue(state, node_id, 1, inputs)
    key = cache_key(task.name, task.cache_version, task.interface, inputs)
    if state.overwrite_cache:
        return _queue(state, node_id, 1, inputs, key)
    return NodeCacheLookup(node=node_id, cache_key=key, round=state.nodes[node_id].cache_round + 1, inputs=inputs)


def _node_inputs(state: Execution, node_id: str, outputs: ChainMap[str, dict[str, Any]]) -> dict[str, Any]:
    bindings = state.nodes[node_id].spec.inputs
    return {name: resolve(b, state.inputs, outputs) for name, b in bindings.items()}


def _launch(command: LaunchExecution, workflow: WorkflowSpec, plan: LaunchPlanSpec | None) -> list[Event]:
    owner = f"workflow '{workflow.name}'"
    given = launch_plan_inputs(plan, command.inputs) if plan else command.inputs
    inputs = validate_inputs(workflow.interface, given, owner)
    launched = ExecutionLaunched(
        execution_id=command.execution_id,
        project=command.project,
        domain=command.domain,
        workflow=workflow,
        inputs=inputs,
        launched_by=command.launched_by,
        launch_plan=f"{plan.name}@{plan.version}" if plan else "",
        overwrite_cache=command.overwrite_cache,
    )
    state = launch(launched, datetime.min, command.command_id)
    events: list[Event] = [launched]
    outputs: ChainMap[str, dict[str, Any]] = ChainMap()
    events += [_ready(state, n, _node_inputs(state, n, outputs)) for n, s in state.nodes.items() if not s.upstream]
    if not state.nodes:
        events.append(ExecutionSucceeded(outputs={k: resolve(b, inputs, {}) for k, b in workflow.outputs.items()}))
    return events


def _succeeded(state: Execution, success: NodeSucceeded | NodeCacheHit) -> list[Event]:
    """A node's outputs are known (computed, or found in the cache): its ready children go on."""
    node = state.nodes[success.node]
    outputs = success.outputs
    events: list[Event] = [success]
    all_outputs = ChainMap({node.id: outputs}, state.node_outputs)
    for child in node.downstream:
        if state.nodes[child].waiting_on == 1:
            events.append(_ready(state, child, _node_inputs(state, child, all_outputs)))
    if len(state.node_outputs) + 1 == len(state.nodes):
        workflow_outputs = {k: resolve(b, state.inputs, all_outputs) for k, b in state.workflow.outputs.items()}
        events.append(ExecutionSucceeded(outputs=workflow_outputs))
    return events


def _failed(state: Execution, command: ReportAttemptResult, error: TaskError, attempt: int) -> list[Event]:
    node = state.nodes[command.node]
    events: list[Event] = [
        AttemptFailed(node=node.id, attempt_id=command.attempt_id, error=error, worker=command.worker)
    ]
    if attempt <= state.workflow.tasks[node.task].retries:
        events.append(_queue(state, node.id, attempt + 1, node.inputs or {}, node.cache_key))
    else:
        events += [NodeFailed(node=node.id, error=error), ExecutionFailed(node=node.id, error=error)]
    return events


def _result(state: Execution, command: ReportAttemptResult) -> list[Event]:
    node = state.nodes.get(command.node)
    if node is None:
        raise Rejected(f"execution {state.execution_id} has no node '{command.node}'")
    attempt_state = node.find_attempt(command.attempt_id)
    if attempt_state is None:
        raise Rejected(f"node '{command.node}' has no attempt '{command.attempt_id}'")
    if attempt_state.status in ("succeeded", "failed") or node.status in ("succeeded", "failed"):
        return []
    if command.error is not None:
        return _failed(state, command, command.error, attempt_state.attempt)
    if command.outputs is None:
        raise Rejected("a result must carry either outputs or an error")
    interface = state.workflow.tasks[node.task].interface
    problem = _invalid_outputs(interface, command.outputs)
    if problem is not None:
        error = TaskError(kind="system", message=f"task '{node.task}' returned bad outputs: {problem}")
        return _failed(state, command, error, attempt_state.attempt)
    success = NodeSucceeded(node=node.id, attempt_id=command.attempt_id, outputs=command.outputs, worker=command.worker)
    return _succeeded(state, success)


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
        case ResolvedLaunch(command=launch_command, workflow=workflow, launch_plan=plan):
            if state is not None:
                if state.launch_command == launch_command.command_id:
                    return []
                raise Rejected(f"execution {launch_command.execution_id} already exists")
            return _launch(launch_command, workflow, plan)
        case LaunchExecution():
            raise Rejected("a launch must be resolved against the registry before deciding")
    if state is None:
        raise Rejected(f"execution {command.execution_id} does not exist")
    if state.terminal:
        return []
    match command:
        case ReportAttemptStarted(node=node_id, attempt_id=aid, worker=worker):
            node = state.nodes.get(node_id)
            attempt_state = node.find_attempt(aid) if node else None
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
        case AbortExecution(reason=reason):
            return [ExecutionAborted(reason=reason)]


def command_id_of(command: Command | ResolvedLaunch) -> str:
    return command.command.command_id if isinstance(command, ResolvedLaunch) else command.command_id


def command_type_of(command: Command | ResolvedLaunch) -> str:
    inner = command.command if isinstance(command, ResolvedLaunch) else command
    return str(type(inner).__struct_config__.tag)


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


def decide_batch(state: Execution | None, commands: Sequence[Command | ResolvedLaunch], at: datetime) -> Outcome:
    """Decide several commands of one execution in order, as one decision.

    ``state`` is updated in place as events are produced; on a failed append the caller discards it.
    A rejected command of an existing execution is recorded on it as ``CommandRejected``.
    """
    outcome = Outcome(state=state, events=[], command_ids=[], rejections=[])
    for command in commands:
        command_id = command_id_of(command)
        try:
            events: Iterable[Event] = decide(outcome.state, command)
        except Rejected as rejected:
            outcome.rejections.append((command, rejected.reason))
            if outcome.state is None:
                continue
            events = [
                CommandRejected(command_id=command_id, command_type=command_type_of(command), reason=rejected.reason)
            ]
        events = list(events)
        if events:
            outcome.command_ids.append(command_id)
        for event in events:
            outcome.state = apply_event(outcome.state, event, at, command_id)
            outcome.events.append(event)
    return outcome
