"""Dynamic nodes in the pure core: a generated sub-DAG is recorded, run, and replayed from its events alone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from plait.core.commands import LaunchExecution, ReportAttemptResult, ResolvedLaunch
from plait.core.decide import decide_batch
from plait.core.dynamic import (
    DYNAMIC_OUTPUT,
    MAX_EXECUTION_NODES,
    MAX_GENERATED_NODES,
    DynamicWorkflow,
    generation_problem,
)
from plait.core.events import (
    DynamicExpanded,
    Event,
    ExecutionFailed,
    ExecutionLaunched,
    ExecutionSucceeded,
    NodeFailed,
    NodeQueued,
    NodeRecovered,
    TaskError,
)
from plait.core.model import Constant, Node
from plait.core.state import Execution, launched_workflow
from plait.errors import DefinitionError
from plait.invariants import check_execution
from plait.replay import replay
from plait.sdk import Dynamic, Task, Workflow, dynamic, map_task, workflow
from tests import dynamic_workflows as flows
from tests.helpers.launching import launched
from tests.helpers.records import history

AT = datetime(2026, 1, 2, tzinfo=UTC)
TASKS: dict[str, Task[..., Any]] = {t.name: t for t in vars(flows).values() if isinstance(t, Task)}


def outputs_of(queued: NodeQueued) -> dict[str, Any] | TaskError:
    """What the attempt ``queued`` names produces, run here: a dynamic task's generated DAG, or a task's outputs."""
    task = TASKS[queued.task]
    if isinstance(task, Dynamic):
        return task.generated_outputs(queued.inputs)
    try:
        return {"result": task.fn(**queued.inputs)}
    except ValueError as exc:
        return TaskError(kind="user", message=str(exc))


def report(queued: NodeQueued, answer: dict[str, Any] | TaskError) -> ReportAttemptResult:
    return ReportAttemptResult(
        command_id=f"result-{queued.attempt_id}",
        execution_id="e",
        node=queued.node,
        attempt_id=queued.attempt_id,
        worker="w",
        outputs=answer if isinstance(answer, dict) else None,
        error=answer if isinstance(answer, TaskError) else None,
    )


def run(wf: Workflow[..., Any], inputs: dict[str, Any]) -> tuple[Execution, list[list[Event]]]:
    """Run ``wf`` through the core, one result per decision, running each queued attempt here."""
    state, first = launched(wf, inputs, AT)
    decisions = [first]
    pending = [e for e in first if isinstance(e, NodeQueued)]
    while pending and not state.terminal:
        queued = pending.pop(0)
        outcome = decide_batch(state, [report(queued, outputs_of(queued))], AT)
        assert outcome.state is not None
        state = outcome.state
        decisions.append(outcome.events)
        pending += [e for e in outcome.events if isinstance(e, NodeQueued)]
    return state, decisions


def replayed(decisions: list[list[Event]]) -> Execution:
    """The state the recorded events alone rebuild, through their stored encoding (no user code runs)."""
    return replay(history("e", decisions))


def test_a_dynamic_node_fans_out_one_node_per_item_and_succeeds_with_their_outputs() -> None:
    state, decisions = run(flows.sum_of_squares, {"n": 4})
    assert state.status == "succeeded"
    assert state.outputs == {"result": 1 + 4 + 9 + 16}
    generated = ["squares.square", "squares.square-1", "squares.square-2", "squares.square-3"]
    assert state.nodes["squares"].generated == tuple(generated)
    assert [state.nodes[n].outputs for n in generated] == [{"result": x * x} for x in (1, 2, 3, 4)]
    assert all(state.nodes[n].dynamic_of == "squares" for n in generated)
    assert state.nodes["squares"].outputs == {"result": [1, 4, 9, 16]}
    expanded = [e for events in decisions for e in events if isinstance(e, DynamicExpanded)]
    assert len(expanded) == 1 and len(expanded[0].workflow.nodes) == 4
    assert check_execution(history("e", decisions), ended=True) == []


def test_the_generated_dag_replays_from_the_log_into_the_same_state() -> None:
    state, decisions = run(flows.sum_of_squares, {"n": 3})
    again = replayed(decisions)
    assert {n: (s.status, s.outputs) for n, s in again.nodes.items()} == {
        n: (s.status, s.outputs) for n, s in state.nodes.items()
    }
    assert again.outputs == state.outputs == {"result": 14}


def test_an_empty_fan_out_succeeds_at_once() -> None:
    state, _ = run(flows.sum_of_squares, {"n": 0})
    assert state.status == "succeeded" and state.outputs == {"result": 0}
    assert state.nodes["squares"].generated == ()


def test_dynamic_nodes_nest() -> None:
    state, decisions = run(flows.nested_squares, {"groups": [[1, 2], [3]]})
    assert state.outputs == {"result": [[1, 4], [9]]}
    assert state.nodes["nested.squares-1.square"].outputs == {"result": 9}
    assert replayed(decisions).outputs == state.outputs


def test_a_failed_generated_node_fails_its_dynamic_node_and_the_execution() -> None:
    state, _ = run(flows.checked_sum, {"xs": [1, 2, 3], "bad": 2})
    assert state.status == "failed" and state.failed_node == "checked"
    assert state.nodes["checked.fails_on-1"].status == "failed"
    assert state.nodes["checked"].status == "failed"
    assert state.error is not None and "generated node 'checked.fails_on-1' failed: 2 is bad" in state.error.message


@workflow(failure_policy="finish")
def finish_checked(xs: list[int], bad: int) -> int:
    return flows.total(values=flows.checked(xs=xs, bad=bad))


def test_with_failure_policy_finish_the_siblings_run_on_and_the_downstream_is_skipped() -> None:
    state, decisions = run(finish_checked, {"xs": [1, 2, 3], "bad": 1})
    assert state.status == "failed" and state.nodes["checked"].status == "failed"
    assert [state.nodes[f"checked.fails_on-{i}"].status for i in (1, 2)] == ["succeeded", "succeeded"]
    assert state.nodes["total"].status == "skipped"
    assert check_execution(history("e", decisions), ended=True) == []
    failures = [e for events in decisions for e in events if isinstance(e, ExecutionFailed)]
    assert len(failures) == 1


def generated_answer(workflow: DynamicWorkflow) -> dict[str, Any]:
    return {DYNAMIC_OUTPUT: msgspec.to_builtins(workflow)}


def first_dynamic_attempt(wf: Workflow[..., Any], inputs: dict[str, Any]) -> tuple[Execution, NodeQueued]:
    """The state once the first attempt of dynamic node ``squares`` is queued, and that attempt."""
    state, events = launched(wf, inputs, AT)
    queued = next(e for e in events if isinstance(e, NodeQueued))
    outcome = decide_batch(state, [report(queued, outputs_of(queued))], AT)
    assert outcome.state is not None
    return outcome.state, next(e for e in outcome.events if isinstance(e, NodeQueued) and e.node == "squares")


def square_node(i: int, task: str = flows.square.name) -> Node:
    return Node(id=f"s{i}", task=task, inputs={"x": Constant(i)})


@pytest.mark.parametrize(
    ("workflow_", "reason"),
    [
        (
            DynamicWorkflow(
                nodes=tuple(square_node(i) for i in range(MAX_GENERATED_NODES + 1)),
                outputs={"result": Constant([])},
                tasks={flows.square.name: flows.square.spec},
            ),
            f"it generated {MAX_GENERATED_NODES + 1} nodes; the limit is {MAX_GENERATED_NODES}",
        ),
        (
            DynamicWorkflow(nodes=(square_node(1, "nope"),), outputs={"result": Constant([])}),
            "unknown task 'nope'",
        ),
        (DynamicWorkflow(outputs={}), "its outputs are [], the task declares ['result']"),
    ],
)
def test_a_generated_dag_that_cannot_run_fails_its_node_with_the_reason(
    workflow_: DynamicWorkflow, reason: str
) -> None:
    state, queued = first_dynamic_attempt(flows.sum_of_squares, {"n": 2})
    outcome = decide_batch(state, [report(queued, generated_answer(workflow_))], AT)
    failed = [e for e in outcome.events if isinstance(e, NodeFailed)]
    assert failed and failed[0].node == "squares" and reason in failed[0].error.message
    assert outcome.state is not None and outcome.state.status == "failed"
    assert not any(isinstance(e, DynamicExpanded) for e in outcome.events)


def test_a_repeated_result_of_the_dynamic_attempt_changes_nothing() -> None:
    state, queued = first_dynamic_attempt(flows.sum_of_squares, {"n": 2})
    result = report(queued, outputs_of(queued))
    first = decide_batch(state, [result], AT)
    assert any(isinstance(e, DynamicExpanded) for e in first.events)
    assert decide_batch(first.state, [result], AT).events == []


def test_a_relaunch_runs_the_launched_workflow_without_generated_tasks() -> None:
    state, _ = run(flows.sum_of_squares, {"n": 2})
    assert flows.square.name in state.workflow.tasks
    assert launched_workflow(state) == flows.sum_of_squares.spec
    launch = next(e for e in launched(flows.sum_of_squares, {"n": 2}, AT)[1] if isinstance(e, ExecutionLaunched))
    assert launch.workflow == flows.sum_of_squares.spec


def test_a_dynamic_task_cannot_be_cached_or_mapped() -> None:
    with pytest.raises(DefinitionError, match="cannot be cached"):
        dynamic(cache=True)(_body)
    with pytest.raises(DefinitionError, match="cannot be mapped"):

        @workflow
        def mapped(xs: list[list[int]]) -> list[list[int]]:
            return map_task(flows.squares)(xs=xs)


def _body(xs: list[int]) -> list[int]:
    return xs


def test_the_generated_spec_of_a_dynamic_task_says_it_is_dynamic() -> None:
    assert flows.squares.spec.dynamic is True
    assert flows.square.spec.dynamic is msgspec.UNSET
    assert ExecutionSucceeded  # the module's events are all in use


def test_generated_nodes_may_not_grow_an_execution_past_its_limit() -> None:
    generated = DynamicWorkflow(
        nodes=(square_node(1),), outputs={"result": Constant([])}, tasks={flows.square.name: flows.square.spec}
    )
    problem = generation_problem("squares", flows.squares.interface, generated, MAX_EXECUTION_NODES)
    assert problem is not None and f"the limit is {MAX_EXECUTION_NODES}" in problem
    assert generation_problem("squares", flows.squares.interface, generated, 5) is None
    assert generation_problem("a.b.c.d", flows.squares.interface, generated) is None  # the 4th dynamic level
    assert generation_problem("a.b.c.d.e", flows.squares.interface, generated) == "dynamic nodes nest more than 4 deep"


def test_with_failure_policy_finish_a_second_failed_generated_node_does_not_end_the_execution_early() -> None:
    state, decisions = run(finish_checked, {"xs": [2, 2, 3], "bad": 2})
    assert state.status == "failed"
    assert [state.nodes[n].status for n in ("checked.fails_on", "checked.fails_on-1", "checked.fails_on-2")] == [
        "failed",
        "failed",
        "succeeded",
    ]
    assert check_execution(history("e", decisions), ended=True) == []


def test_a_recovery_reuses_a_succeeded_dynamic_node_and_regenerates_a_failed_one() -> None:
    original, _ = run(flows.checked_sum, {"xs": [1, 2], "bad": 2})
    assert original.status == "failed"
    command = LaunchExecution(
        command_id="recover", execution_id="e2", project="tests", domain="dev", relaunch_of="e", recover=True
    )
    resolved = ResolvedLaunch(command=command, workflow=launched_workflow(original), original=original)
    outcome = decide_batch(None, [resolved], AT)
    assert outcome.state is not None
    assert not [e for e in outcome.events if isinstance(e, NodeRecovered)], "the generated node that succeeded"
    assert [e.node for e in outcome.events if isinstance(e, NodeQueued)] == ["checked"]
    assert set(outcome.state.nodes) == {"checked", "total"}
