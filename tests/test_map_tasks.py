"""Map tasks: tracing, the pure state machine item by item, and end to end on real servers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from plait import DefinitionError, map_task, workflow
from plait.audit import verify_catalog
from plait.client import AsyncClient
from plait.core.commands import ReportAttemptResult, ReportAttemptStarted
from plait.core.decide import MAX_MAP_IN_FLIGHT, decide_batch
from plait.core.events import (
    ExecutionFailed,
    ExecutionSucceeded,
    MapItemFailed,
    MapItemSucceeded,
    MapStarted,
    NodeQueued,
    NodeSucceeded,
    TaskError,
)
from plait.core.model import MapOptions
from plait.core.state import Execution
from plait.core.types import ListOf, OptionalOf, Primitive
from plait.sdk import Workflow
from tests import map_workflows
from tests.helpers.launching import launched as launch
from tests.helpers.stack import services_and_client
from tests.helpers.states import final_state

AT = datetime(2026, 1, 2, tzinfo=UTC)
EXECUTION = "exec-m"
DEADLINE = 60.0


def launched(wf: Workflow[..., Any], inputs: dict[str, Any]) -> tuple[Execution, list[Any]]:
    return launch(wf, inputs, AT, EXECUTION)


def finish(
    state: Execution, queued: NodeQueued, outputs: dict[str, Any] | None = None, error: TaskError | None = None
) -> list[Any]:
    command = ReportAttemptResult(
        command_id=f"result-{queued.attempt_id}",
        execution_id=EXECUTION,
        node=queued.node,
        attempt_id=queued.attempt_id,
        worker="w",
        outputs=outputs,
        error=error,
    )
    return decide_batch(state, [command], AT).events


def run_items(state: Execution, events: list[Any], result: Any) -> list[Any]:
    """Answer every queued item (and the items queued in turn) with ``result(queued)``; returns all events."""
    seen, pending = list(events), [e for e in events if isinstance(e, NodeQueued) and e.index >= 0]
    while pending:
        queued = pending.pop(0)
        outputs, error = result(queued)
        new = finish(state, queued, outputs, error)
        seen += new
        pending += [e for e in new if isinstance(e, NodeQueued) and e.index >= 0]
    return seen


def test_a_map_node_is_one_node_with_list_outputs() -> None:
    spec = map_workflows.scaled.spec
    [node] = spec.nodes
    assert node.map == MapOptions(over=("x",), concurrency=0, min_success_ratio=1.0)
    assert spec.interface.outputs[0].type == ListOf(Primitive("int"))
    tolerant = map_workflows.tolerant.spec
    assert tolerant.nodes[0].map is not None and tolerant.nodes[0].map.min_success_ratio == 0.5


def test_map_definitions_that_cannot_work_are_refused() -> None:
    with pytest.raises(DefinitionError, match="no input is a list of the task's input type"):

        @workflow
        def nothing_to_map(x: int) -> list[int]:
            return map_task(map_workflows.scale)(x=x, factor=2)  # type: ignore[no-any-return]

    with pytest.raises(DefinitionError, match="min_success_ratio must be between 0 and 1"):

        @workflow
        def bad_ratio(xs: list[int]) -> list[int]:
            return map_task(map_workflows.scale, min_success_ratio=2.0)(x=xs, factor=2)  # type: ignore[no-any-return]

    with pytest.raises(DefinitionError, match="expects list"):

        @workflow
        def wrong_items(xs: list[str]) -> list[int]:
            return map_task(map_workflows.scale, over=["x"])(x=xs, factor=2)  # type: ignore[no-any-return]


def test_items_run_a_bounded_number_at_a_time_and_fan_in_in_order() -> None:
    state, events = launched(map_workflows.scaled_sum, {"xs": [1, 2, 3, 4, 5], "factor": 10})
    [started] = [e for e in events if isinstance(e, MapStarted)]
    assert started.size == 5
    first = [e for e in events if isinstance(e, NodeQueued)]
    assert [(e.index, e.inputs) for e in first] == [
        (0, {"x": 1, "factor": 10}),
        (1, {"x": 2, "factor": 10}),
        (2, {"x": 3, "factor": 10}),
    ]
    in_flight = 3
    all_events = list(events)
    pending = list(first)
    while pending:
        queued = pending.pop(0)
        new = finish(state, queued, {"result": queued.inputs["x"] * queued.inputs["factor"]})
        all_events += new
        more = [e for e in new if isinstance(e, NodeQueued) and e.index >= 0]
        pending += more
        in_flight += len(more) - 1
        assert in_flight <= 3
    [node_done] = [e for e in all_events if isinstance(e, NodeSucceeded) and e.node == "scale"]
    assert node_done.outputs == {"result": [10, 20, 30, 40, 50]}
    [join] = [e for e in all_events if isinstance(e, NodeQueued) and e.node == "total"]
    assert join.inputs == {"values": [10, 20, 30, 40, 50]}


def test_a_failed_item_is_retried_then_tolerated_up_to_the_ratio() -> None:
    state, events = launched(map_workflows.tolerant, {"xs": [0, 1, 2, 4]})
    boom = TaskError(kind="user", message="odd")
    all_events = run_items(
        state, events, lambda q: (None, boom) if q.inputs["x"] % 2 else ({"result": q.inputs["x"]}, None)
    )
    assert len([e for e in all_events if isinstance(e, MapItemFailed)]) == 1
    assert len([e for e in all_events if isinstance(e, MapItemSucceeded)]) == 3
    assert isinstance(all_events[-1], ExecutionSucceeded) and all_events[-1].outputs == {"result": [0, None, 2, 4]}
    assert map_workflows.tolerant.spec.interface.outputs[0].type == ListOf(OptionalOf(Primitive("int")))


def test_too_many_failed_items_fail_the_node() -> None:
    state, events = launched(map_workflows.strict, {"xs": [0, 1, 2]})
    boom = TaskError(kind="user", message="odd")
    all_events = run_items(
        state, events, lambda q: (None, boom) if q.inputs["x"] % 2 else ({"result": q.inputs["x"]}, None)
    )
    assert isinstance(all_events[-1], ExecutionFailed)
    assert "1 of 3 items failed" in all_events[-1].error.message and "item 1: odd" in all_events[-1].error.message
    assert state.status == "failed"


def test_mapped_inputs_of_different_lengths_fail_the_node() -> None:
    _, events = launched(map_workflows.zipped, {"words": ["a", "b"], "ns": [1, 2, 3]})
    assert isinstance(events[-1], ExecutionFailed)
    assert events[-1].error.message == "map node 'tag': its mapped inputs differ in length: 'word' has 2, 'n' has 3"


def test_a_map_over_an_empty_list_succeeds_at_once() -> None:
    _, events = launched(map_workflows.scaled_sum, {"xs": []})
    [join] = [e for e in events if isinstance(e, NodeQueued)]
    assert join.node == "total" and join.inputs == {"values": []}
    _, direct = launched(map_workflows.scaled, {"xs": []})
    assert isinstance(direct[-1], ExecutionSucceeded) and direct[-1].outputs == {"result": []}


def test_a_wide_map_queues_at_most_the_in_flight_bound_per_decision() -> None:
    state, events = launched(map_workflows.scaled, {"xs": list(range(5 * MAX_MAP_IN_FLIGHT))})
    assert len([e for e in events if isinstance(e, NodeQueued)]) == MAX_MAP_IN_FLIGHT
    node = state.nodes["scale"]
    assert node.map_size == 5 * MAX_MAP_IN_FLIGHT and node.map_queued == MAX_MAP_IN_FLIGHT


def test_a_stale_result_of_a_retried_item_changes_nothing() -> None:
    wf = map_workflows.scaled
    state, events = launched(wf, {"xs": [1]})
    [queued] = [e for e in events if isinstance(e, NodeQueued)]
    retried = with_retries(state, 1)
    new = finish(retried, queued, None, TaskError(kind="system", message="lost"))
    [again] = [e for e in new if isinstance(e, NodeQueued)]
    assert again.attempt == 2
    assert finish(retried, queued, {"result": 2}) == []
    assert isinstance(finish(retried, again, {"result": 2})[-1], ExecutionSucceeded)


def test_a_late_start_of_a_retried_item_changes_nothing() -> None:
    """A ``started`` report of an item's attempt that has been retried since is not refused (it is no wrong input)."""
    state, events = launched(map_workflows.scaled, {"xs": [1]})
    [queued] = [e for e in events if isinstance(e, NodeQueued)]
    retried = with_retries(state, 1)
    finish(retried, queued, None, TaskError(kind="system", message="lost"))
    late = ReportAttemptStarted(
        command_id=f"started-{queued.attempt_id}",
        execution_id=EXECUTION,
        node=queued.node,
        attempt_id=queued.attempt_id,
        worker="w",
    )
    outcome = decide_batch(retried, [late], AT)
    assert (outcome.events, outcome.rejections) == ([], [])
    bogus = msgspec.structs.replace(late, attempt_id=f"{queued.attempt_id.rsplit('/', 1)[0]}/x")
    assert decide_batch(retried, [bogus], AT).rejections, "an attempt id that names no attempt is refused"


def with_retries(state: Execution, retries: int) -> Execution:
    task_name = state.nodes["scale"].task
    task = msgspec.structs.replace(state.workflow.tasks[task_name], retries=retries)
    state.workflow = msgspec.structs.replace(state.workflow, tasks={**state.workflow.tasks, task_name: task})
    return state


@pytest.fixture
async def client(nats_url: str, database_url: str) -> AsyncIterator[AsyncClient]:
    async with services_and_client(nats_url, database_url) as plait_client:
        yield plait_client


async def test_a_map_runs_end_to_end(client: AsyncClient) -> None:
    execution_id = (await client.launch(map_workflows.scaled_sum, {"xs": list(range(50)), "factor": 3})).id
    state = await final_state(client, execution_id, timeout=DEADLINE)
    assert state.status == "succeeded" and state.outputs == {"result": 3 * sum(range(50))}
    node = state.nodes["scale"]
    assert (node.map_size, node.map_finished, node.map_failed) == (50, 50, 0)
    items = [node.item(index) for index in range(node.map_size)]
    assert all(item is not None and item.status == "succeeded" and item.worker for item in items)
    assert not node.item_attempts, "every item that succeeded at its first attempt is kept in columns only"
    shown = await client.show_execution(execution_id, min_sequence=state.last_sequence)
    [scale_row] = [n for n in shown.nodes if n.node == "scale"]
    assert scale_row.status == "succeeded" and len(scale_row.attempts) == 50
    assert scale_row.inputs == {"x": list(range(50)), "factor": 3}
    assert verify_catalog(state, shown) == []
    for limit, listed in ((10, 10), (0, 0)):
        few = await client.show_execution(execution_id, attempts_limit=limit)
        [scale_row] = [n for n in few.nodes if n.node == "scale"]
        assert (len(scale_row.attempts), scale_row.attempts_total) == (listed, 50)
        assert verify_catalog(state, few) == []
    tolerant = await final_state(
        client, await client.launch(map_workflows.tolerant, {"xs": [2, 3, 4, 6]}), timeout=DEADLINE
    )
    assert tolerant.status == "succeeded" and tolerant.outputs == {"result": [2, None, 4, 6]}
