"""A map node's items in the execution state: those that succeeded at their first attempt are kept in columns, not as
an attempt object each, so a million-item map fits a scheduler's memory and its state cache."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime
from typing import Any

from plait import codec
from plait.core.commands import ReportAttemptResult
from plait.core.decide import Outcome, decide_batch
from plait.core.events import CommandRejected, Decision, Event, MapItemSucceeded, NodeQueued, TaskError
from plait.core.state import Execution, NodeState, apply_decision, count_stored
from plait_scheduler.cache import estimated_bytes
from tests import map_workflows
from tests.helpers.launching import launched

AT = datetime(2026, 1, 2, tzinfo=UTC)


def item_result(
    attempt_id: str, value: int, worker: str = "w", error: TaskError | None = None, node: str = "scale"
) -> ReportAttemptResult:
    return ReportAttemptResult(
        command_id=f"result:{attempt_id}",
        execution_id="e",
        node=node,
        attempt_id=attempt_id,
        worker=worker,
        outputs=None if error else {"result": value},
        error=error,
    )


def queued_items(events: list[Any]) -> list[NodeQueued]:
    return [e for e in events if isinstance(e, NodeQueued) and e.index >= 0]


def stored(state: Execution, events: list[Event]) -> None:
    """Count the decision of ``events`` as the scheduler's ``Decider`` does once it is appended."""
    decision = Decision(execution_id="e", at=AT, replica="r", commands=("c",), previous="", events=tuple(events))
    count_stored(state, events, len(codec.encode(decision)))


def run_map(items: int, results_per_batch: int = 500) -> tuple[Execution, list[Outcome]]:
    """A ``scaled`` map of ``items`` run through the core to its end, each item doubling its input."""
    state, events = launched(map_workflows.scaled, {"xs": list(range(items))}, AT)
    stored(state, events)
    outcomes: list[Outcome] = []
    waiting = queued_items(events)
    while waiting:
        batch, waiting = waiting[:results_per_batch], waiting[results_per_batch:]
        results = [item_result(q.attempt_id, 2 * q.index, worker=f"w{q.index % 3}") for q in batch]
        outcomes.append(decide_batch(state, results, AT))
        stored(state, outcomes[-1].events)
        waiting += queued_items(outcomes[-1].events)
    return state, outcomes


def test_an_item_that_succeeded_at_once_is_kept_in_columns_and_still_found_by_its_attempt() -> None:
    state, _ = run_map(30, results_per_batch=7)
    node = state.nodes["scale"]
    assert state.status == "succeeded" and state.outputs == {"result": [2 * x for x in range(30)]}
    assert not node.item_attempts and not node.attempts and node.attempt_count == 30
    for index in (0, 17, 29):
        item = node.item(index)
        assert item is not None
        assert (item.attempt_id, item.attempt, item.status, item.worker) == (
            f"e/scale[{index}]/1",
            1,
            "succeeded",
            f"w{index % 3}",
        )
        assert node.find_attempt(item.attempt_id) == item
        assert node.item_outputs(index) == {"result": 2 * index}
    assert node.find_attempt("e/scale[3]/2") is None and node.item(30) is None
    assert [a.attempt_id for a in node.all_attempts()] == [f"e/scale[{i}]/1" for i in range(30)]


def test_a_repeated_result_of_an_item_kept_in_columns_decides_nothing() -> None:
    state, events = launched(map_workflows.scaled_sum, {"xs": list(range(10))}, AT)
    first = queued_items(events)[0]
    decided = decide_batch(state, [item_result(first.attempt_id, 0)], AT)
    assert any(isinstance(e, MapItemSucceeded) for e in decided.events)
    assert state.nodes["scale"].item_attempts.get(first.index) is None, "kept in columns"
    again = decide_batch(state, [item_result(first.attempt_id, 99)], AT)
    assert again.events == [] and again.rejections == []
    assert not any(isinstance(e, CommandRejected) for e in again.events)
    assert state.nodes["scale"].item_outputs(first.index) == {"result": 0}


def test_a_retried_item_keeps_its_attempts_and_a_failed_one_its_error() -> None:
    state, events = launched(map_workflows.tolerant, {"xs": list(range(6))}, AT)
    lost = TaskError(kind="system", message="worker lost")
    waiting = queued_items(events)
    retried = decide_batch(state, [item_result(waiting[0].attempt_id, 0, error=lost, node="odd_fails")], AT)
    [again] = queued_items(retried.events)
    assert (again.index, again.attempt) == (0, 2)
    waiting = [again, *waiting[1:]]
    odd = TaskError(kind="user", message="odd")
    results = [
        item_result(q.attempt_id, q.index, error=odd if q.index % 2 else None, node="odd_fails") for q in waiting
    ]
    decide_batch(state, results, AT)
    node = state.nodes["odd_fails"]
    assert state.status == "succeeded" and state.outputs == {"result": [0, None, 2, None, 4, None]}
    assert sorted(node.item_attempts) == [0, 1, 3, 5], "a retried item and the failed ones stay attempt objects"
    assert node.item_attempts[0].status == "succeeded" and node.item_attempts[0].attempt == 2
    assert node.item_attempts[3].error == odd
    attempts = list(node.all_attempts())
    assert node.attempt_count == len(attempts) == 7
    assert [(a.attempt_id, a.status) for a in attempts if a.index == 0] == [
        ("e/odd_fails[0]/1", "failed"),
        ("e/odd_fails[0]/2", "succeeded"),
    ]
    assert node.item_outputs(3) is None and node.item_outputs(0) == {"result": 0}


def test_replaying_a_maps_decisions_builds_the_same_compact_state() -> None:
    state, outcomes = run_map(1_200)
    _, launch_events = launched(map_workflows.scaled, {"xs": list(range(1_200))}, AT)
    decisions = [launch_events, *(o.events for o in outcomes)]
    replayed: Execution | None = None
    for sequence, events in enumerate(decisions, start=1):
        decision = Decision(execution_id="e", at=AT, replica="r", commands=("c",), previous="", events=tuple(events))
        replayed = apply_decision(replayed, decision, sequence, "", size=1_000)
    assert replayed is not None and replayed.status == "succeeded"
    assert replayed.nodes["scale"] == state.nodes["scale"]
    assert replayed.item_bytes == state.item_bytes
    assert replayed.stored_bytes == 2_000, "only the launch (which starts the map) and the map's end count so"


def state_memory(items: int) -> tuple[Execution, int]:
    """A finished map of ``items`` and the memory its map node holds (tracemalloc, bytes)."""
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        state, outcomes = run_map(items, results_per_batch=1_000)
        del outcomes
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    held = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return state, held


def test_a_finished_items_state_is_a_few_dozen_bytes_and_the_cache_counts_it_so() -> None:
    """Measured, not assumed: ~470 bytes an item before (an attempt object and an outputs dict each). The measure
    includes each item's input, in the launch's inputs; the estimate counts it in the launch's stored bytes."""
    small, small_held = state_memory(2_000)
    large, large_held = state_memory(22_000)
    per_item = (large_held - small_held) / 20_000
    assert per_item < 100, f"{per_item:.0f} bytes of state per finished item"
    estimate_per_item = (estimated_bytes(large) - estimated_bytes(small)) / 20_000
    assert per_item / 2 <= estimate_per_item <= 2 * per_item, (per_item, estimate_per_item)
    node: NodeState = large.nodes["scale"]
    assert node.map_finished == 22_000 and not node.item_attempts
