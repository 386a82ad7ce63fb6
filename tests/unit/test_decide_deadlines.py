"""Attempt deadlines in the pure state machine: an attempt with no result by its deadline fails as a system error."""

from __future__ import annotations

from datetime import UTC, datetime

from plait.core.commands import AttemptDeadline, ReportAttemptResult, ReportAttemptStarted, attempt_deadline
from plait.core.decide import decide_batch
from plait.core.events import (
    AttemptFailed,
    ExecutionFailed,
    MapItemFailed,
    NodeFailed,
    NodeQueued,
)
from plait.core.state import Execution
from tests import map_workflows, workflows
from tests.helpers.launching import launched

AT = datetime(2026, 1, 2, tzinfo=UTC)


def deadline_of(queued: NodeQueued, seconds: float = 60.0) -> AttemptDeadline:
    return attempt_deadline("e", queued.node, queued.attempt_id, seconds)


def decided(state: Execution, *commands: object) -> list[object]:
    return list(decide_batch(state, list(commands), AT).events)  # type: ignore[arg-type]


def started(queued: NodeQueued, worker: str = "w1") -> ReportAttemptStarted:
    return ReportAttemptStarted(
        command_id=f"s-{queued.attempt_id}",
        execution_id="e",
        node=queued.node,
        attempt_id=queued.attempt_id,
        worker=worker,
    )


def test_a_queued_attempt_past_its_deadline_waits_for_an_executor_of_its_cluster() -> None:
    """No executor took it: its cluster may have none live yet, and waiting must not burn its system retries."""
    state, [_, queued] = launched(workflows.retrying, {}, AT)
    assert isinstance(queued, NodeQueued)
    assert decided(state, deadline_of(queued, 30)) == []
    assert state.nodes[queued.node].attempts[-1].status == "queued"


def test_a_running_attempt_past_its_deadline_fails_as_a_system_error_and_is_retried() -> None:
    state, [_, queued] = launched(workflows.retrying, {}, AT)
    assert isinstance(queued, NodeQueued)
    decided(state, started(queued))
    failed, retried = decided(state, deadline_of(queued, 30))
    assert isinstance(failed, AttemptFailed) and failed.attempt_id == queued.attempt_id
    assert (failed.error.kind, failed.error.message) == ("system", "no result within 30 s")
    assert isinstance(retried, NodeQueued) and retried.attempt == 2


def test_a_running_attempt_past_its_deadline_is_retried_on_the_system_budget_then_fails_the_execution() -> None:
    """A task without ``retries`` still has its ``system_retries`` (3 by default) for deadlines that pass."""
    state, [_, queued] = launched(workflows.paused, {}, AT)
    assert isinstance(queued, NodeQueued)
    for left in (2, 1, 0):
        decided(state, started(queued))
        failed, queued = decided(state, deadline_of(queued))  # type: ignore[assignment]
        assert isinstance(failed, AttemptFailed) and failed.worker == "w1"
        assert (failed.error.kind, failed.budget, failed.retries_left) == ("system", "system_retries", left)
        decided(state, started(queued))
    failed, node_failed, execution_failed = decided(state, deadline_of(queued))
    assert isinstance(failed, AttemptFailed) and (failed.budget, failed.retries_left) == ("system_retries", -1)
    assert isinstance(node_failed, NodeFailed) and isinstance(execution_failed, ExecutionFailed)
    assert state.status == "failed"


def test_a_deadline_of_an_attempt_that_ended_changes_nothing() -> None:
    state, [_, queued] = launched(workflows.paused, {}, AT)
    assert isinstance(queued, NodeQueued)
    result = ReportAttemptResult(
        command_id="r",
        execution_id="e",
        node=queued.node,
        attempt_id=queued.attempt_id,
        worker="w",
        outputs={"result": 2.0},
    )
    decided(state, result)
    assert decided(state, deadline_of(queued)) == []


def test_a_deadline_of_an_earlier_attempt_leaves_its_retry_alone() -> None:
    state, [_, queued] = launched(workflows.retrying, {}, AT)
    assert isinstance(queued, NodeQueued)
    decided(state, deadline_of(queued))
    assert decided(state, deadline_of(queued)) == []
    assert state.nodes[queued.node].attempts[-1].status == "queued"


def test_a_map_item_past_its_deadline_fails_like_any_failed_item_once_its_system_retries_are_spent() -> None:
    state, events = launched(map_workflows.tolerant, {"xs": [1, 2]}, AT)
    first = next(e for e in events if isinstance(e, NodeQueued))
    for _ in range(3):
        decided(state, started(first))
        failed, first = decided(state, deadline_of(first))  # type: ignore[assignment]
        assert isinstance(failed, AttemptFailed) and failed.error.kind == "system"
        assert isinstance(first, NodeQueued) and first.index == 0
    decided(state, started(first))
    failed, item_failed, *_ = decided(state, deadline_of(first))
    assert isinstance(failed, AttemptFailed) and failed.error.kind == "system"
    assert isinstance(item_failed, MapItemFailed) and item_failed.index == first.index
