"""Property tests of the pure core: whatever order the environment delivers commands in, and however often
it repeats them, an execution ends in the same state as when each command arrives once, in order."""

from __future__ import annotations

import collections
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plait.core.commands import Command, ReportAttemptResult, ReportAttemptStarted, ResolvedLaunch
from plait.core.decide import decide_batch
from plait.core.events import TERMINAL_EVENTS, Decision, Event, NodeQueued, NodeSkipped, NodeSucceeded, TaskError
from plait.core.model import Collection, Constant, FromInput, FromNode, Interface, Node, Param, WorkflowSpec
from plait.core.state import Execution
from plait.core.types import ListOf, Primitive
from plait.core.validate import validate_workflow
from plait.sdk import Task
from plait.sdk.hints import decode_value, encode_value
from plait.sdk.signatures import output_hints
from tests import branch_workflows, definitions
from tests.helpers.decisions import decision_of, replay, without_bookkeeping
from tests.helpers.launching import resolved_launch

AT = datetime(2026, 1, 2, tzinfo=UTC)
EXECUTION = "exec-p"
TASKS: dict[str, Task[..., Any]] = {
    t.name: t for module in (definitions, branch_workflows) for t in vars(module).values() if isinstance(t, Task)
}
FAILURE = TaskError(kind="user", message="transient", error_type="OSError")

Case = tuple[WorkflowSpec, dict[str, Any]]
Failures = dict[str, int]  # node id -> how many of its first attempts fail
Choose = Callable[[list[Command | ResolvedLaunch], set[int]], list[int]]


def with_retries(spec: WorkflowSpec, retries: int) -> WorkflowSpec:
    tasks = {name: msgspec.structs.replace(task, retries=retries) for name, task in spec.tasks.items()}
    return msgspec.structs.replace(spec, tasks=tasks)


SHAPES: list[Case] = [
    (definitions.chain.spec, {"start": 2}),
    (definitions.diamond.spec, {"x": 5}),
    (definitions.fan_out_fan_in.spec, {"x": 3}),
    (definitions.doubled_up.spec, {"x": 1}),
    (definitions.retried.spec, {"x": 4}),
    (branch_workflows.classify.spec, {"x": 3.0}),
    (branch_workflows.nested.spec, {"x": 2.0, "fast": False}),
    (branch_workflows.calls_a_subworkflow.spec, {"x": 1.5}),
]


@st.composite
def random_dags(draw: st.DrawFn) -> Case:
    """A small DAG of ``add_up`` nodes; each reads some earlier nodes, and either a constant or the input."""
    add_up = definitions.add_up.spec
    size = draw(st.integers(1, 7))
    nodes: list[Node] = []
    read: set[str] = set()
    for index in range(size):
        parents = draw(st.lists(st.integers(0, index - 1), max_size=3, unique=True)) if index else []
        read.update(f"n{p}" for p in parents)
        offset = FromInput("seed") if draw(st.booleans()) else Constant(index)
        values = Collection(tuple(FromNode(f"n{p}", "result") for p in parents))
        nodes.append(Node(id=f"n{index}", task=add_up.name, inputs={"values": values, "offset": offset}))
    sinks = tuple(FromNode(node.id, "result") for node in nodes if node.id not in read)
    spec = WorkflowSpec(
        name="tests.random_dag",
        version="1",
        interface=Interface(
            inputs=(Param("seed", Primitive("int"), default=7),),
            outputs=(Param("sinks", ListOf(Primitive("int"))),),
        ),
        nodes=tuple(nodes),
        outputs={"sinks": Collection(sinks)},
        tasks={add_up.name: add_up},
    )
    validate_workflow(spec)
    return spec, {}


cases = st.one_of(st.sampled_from(SHAPES), random_dags())


def run_task(queued: NodeQueued) -> dict[str, Any]:
    """What a worker returns for an attempt: the task's function on the decoded inputs, encoded."""
    task = TASKS[queued.task]
    arguments = {name: decode_value(value, task.input_hints[name]) for name, value in queued.inputs.items()}
    returned = task.fn(**arguments)
    names = list(output_hints(task.return_hint))
    values = returned if len(names) > 1 else [returned]
    return {name: encode_value(value) for name, value in zip(names, values, strict=True)}


def reports(queued: NodeQueued, failures: Failures) -> list[Command | ResolvedLaunch]:
    """The commands a worker sends for one attempt; a redelivery repeats the same command, id and all."""
    fails = queued.attempt <= failures.get(queued.node, 0)
    return [
        ReportAttemptStarted(
            command_id=f"started:{queued.attempt_id}",
            execution_id=EXECUTION,
            node=queued.node,
            attempt_id=queued.attempt_id,
            worker="worker",
        ),
        ReportAttemptResult(
            command_id=f"result:{queued.attempt_id}",
            execution_id=EXECUTION,
            node=queued.node,
            attempt_id=queued.attempt_id,
            worker="worker",
            outputs=None if fails else run_task(queued),
            error=FAILURE if fails else None,
        ),
    ]


class Simulation(msgspec.Struct):
    """An execution run to its end: the final state, every event and the decisions they were appended in."""

    state: Execution | None
    events: list[Event]
    decisions: list[Decision]
    pool: list[Command | ResolvedLaunch]


def simulate(case: Case, failures: Failures, choose: Choose) -> Simulation:
    """Deliver commands from the pool until each was delivered at least once; ``choose`` picks each batch.

    The pool starts with the launch and grows by the started report and the result of every queued attempt.
    """
    spec, inputs = case
    simulation = Simulation(state=None, events=[], decisions=[], pool=[resolved_launch(spec, inputs, EXECUTION)])
    delivered: set[int] = set()
    while len(delivered) < len(simulation.pool):
        batch = choose(simulation.pool, delivered)
        deliver(simulation, batch, failures)
        delivered.update(batch)
    return simulation


def deliver(simulation: Simulation, batch: list[int], failures: Failures) -> list[Event]:
    outcome = decide_batch(simulation.state, [simulation.pool[i] for i in batch], AT)
    assert outcome.rejections == []
    simulation.state = outcome.state
    simulation.events += outcome.events
    if outcome.events:
        simulation.decisions.append(decision_of(outcome, AT))
    for event in outcome.events:
        if isinstance(event, NodeQueued):
            simulation.pool += reports(event, failures)
    return outcome.events


def in_order(pool: list[Command | ResolvedLaunch], delivered: set[int]) -> list[int]:
    return [min(set(range(len(pool))) - delivered)]


def any_order(data: st.DataObject) -> Choose:
    """Each batch: one command not delivered yet, among any others (delivered or not, repeated or not)."""

    def choose(pool: list[Command | ResolvedLaunch], delivered: set[int]) -> list[int]:
        pending = sorted(set(range(len(pool))) - delivered)
        batch = data.draw(st.lists(st.integers(0, len(pool) - 1), max_size=4), label="batch")
        batch.insert(data.draw(st.integers(0, len(batch)), label="position"), data.draw(st.sampled_from(pending)))
        return batch

    return choose


def outcome_of(state: Execution | None) -> dict[str, Any]:
    """What must not depend on the order of delivery."""
    assert state is not None
    return {
        "status": state.status,
        "outputs": state.outputs,
        "node_statuses": {node_id: node.status for node_id, node in state.nodes.items()},
        "node_outputs": state.node_outputs,
        "outputs_of_nodes": {node_id: node.outputs for node_id, node in state.nodes.items()},
        "inputs_of_nodes": {node_id: node.inputs for node_id, node in state.nodes.items()},
    }


def assert_well_formed(simulation: Simulation, failures: Failures) -> None:
    state = simulation.state
    assert state is not None
    events = simulation.events
    succeeded = collections.Counter(e.node for e in events if isinstance(e, NodeSucceeded))
    skipped = collections.Counter(e.node for e in events if isinstance(e, NodeSkipped))
    assert set(skipped.values()) <= {1}  # a node of a case not taken is skipped once, and never runs
    assert succeeded == {node: 1 for node in state.nodes if node not in skipped}
    queued = collections.Counter((e.node, e.attempt) for e in events if isinstance(e, NodeQueued))
    assert set(queued.values()) == {1}
    ran = [node_id for node_id, node in state.nodes.items() if node.task and node_id not in skipped]
    assert {node: max(a for n, a in queued if n == node) for node in ran} == {
        node: failures.get(node, 0) + 1 for node in ran
    }
    terminal = [i for i, e in enumerate(events) if isinstance(e, TERMINAL_EVENTS)]
    assert terminal == [len(events) - 1]
    assert without_bookkeeping(replay(simulation.decisions)) == without_bookkeeping(state)


def assert_duplicates_change_nothing(simulation: Simulation, data: st.DataObject) -> None:
    before = without_bookkeeping(simulation.state)
    again = data.draw(st.lists(st.integers(0, len(simulation.pool) - 1), max_size=6), label="redelivered")
    assert deliver(simulation, again, {}) == []
    assert without_bookkeeping(simulation.state) == before


@settings(max_examples=200, deadline=None)
@given(case=cases, data=st.data())
def test_any_order_and_any_duplication_give_the_same_final_state(case: Case, data: st.DataObject) -> None:
    expected = simulate(case, {}, in_order)

    simulation = simulate(case, {}, any_order(data))

    assert expected.state is not None
    assert expected.state.status == "succeeded"
    assert outcome_of(simulation.state) == outcome_of(expected.state)
    assert_well_formed(simulation, {})
    assert_duplicates_change_nothing(simulation, data)


@st.composite
def retried_cases(draw: st.DrawFn) -> tuple[Case, Failures]:
    """A case whose tasks retry twice, and for some nodes how many of their first attempts fail (1 or 2)."""
    spec, inputs = draw(cases)
    node_ids = [node.id for node in spec.nodes]
    failures = draw(st.dictionaries(st.sampled_from(node_ids), st.integers(1, 2), min_size=1))
    return (with_retries(spec, 2), inputs), failures


@settings(max_examples=200, deadline=None)
@given(retried=retried_cases(), data=st.data())
def test_failed_attempts_that_are_retried_give_the_same_final_state(
    retried: tuple[Case, Failures], data: st.DataObject
) -> None:
    case, failures = retried
    expected = simulate(case, {}, in_order)

    simulation = simulate(case, failures, any_order(data))

    assert outcome_of(simulation.state) == outcome_of(expected.state)
    assert_well_formed(simulation, failures)
    assert_duplicates_change_nothing(simulation, data)


@pytest.mark.parametrize(("spec", "inputs"), SHAPES, ids=[spec.name.rsplit(".", 1)[-1] for spec, _ in SHAPES])
def test_the_canonical_run_computes_what_the_tasks_compute(spec: WorkflowSpec, inputs: dict[str, Any]) -> None:
    expected = {
        "chain": {"result": 7},
        "diamond": {"result": 19},
        "fan_out_fan_in": {"low": 4, "high": 15},
        "doubled_up": {"result": 4},
        "retried": {"result": 8},
        "classify": {"result": "MEDIUM:6"},
        "nested": {"result": "slow:4"},
        "calls_a_subworkflow": {"result": "FIRST:3:3"},
    }[spec.name.rsplit(".", 1)[-1]]

    simulation = simulate((spec, inputs), {}, in_order)

    assert simulation.state is not None
    assert simulation.state.outputs == expected
