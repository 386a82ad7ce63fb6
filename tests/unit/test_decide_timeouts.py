"""Timeouts in the pure state machine: an attempt's timeout fails it as the task's own failure (retried while the
task's retries last); a workflow's timeout fails its execution."""

from __future__ import annotations

from datetime import UTC, datetime

from plait.core.commands import (
    ReportAttemptResult,
    ReportAttemptStarted,
    attempt_timeout,
    execution_timeout,
)
from plait.core.decide import decide_batch
from plait.core.events import AttemptFailed, ExecutionFailed, NodeFailed, NodeQueued, TaskError
from plait.core.state import Execution
from tests import timeout_workflows
from tests.helpers.launching import launched

AT = datetime(2026, 1, 2, tzinfo=UTC)


def decided(state: Execution, *commands: object) -> list[object]:
    return list(decide_batch(state, list(commands), AT).events)  # type: ignore[arg-type]


def started(queued: NodeQueued) -> ReportAttemptStarted:
    return ReportAttemptStarted(
        command_id=f"{queued.attempt_id}:started",
        execution_id="e",
        node=queued.node,
        attempt_id=queued.attempt_id,
        worker="w1",
    )


def result(queued: NodeQueued, seconds: float) -> ReportAttemptResult:
    return ReportAttemptResult(
        command_id=f"{queued.attempt_id}:result",
        execution_id="e",
        node=queued.node,
        attempt_id=queued.attempt_id,
        worker="w1",
        outputs={"result": seconds},
    )


def test_the_timeout_options_are_in_the_specs() -> None:
    assert timeout_workflows.sleepy.spec.timeout_seconds == 1.0
    assert timeout_workflows.patient.spec.timeout_seconds == 60.0
    assert timeout_workflows.bounded.spec.timeout_seconds == 2.0
    assert timeout_workflows.sleeping.spec.timeout_seconds is None


def test_a_running_attempt_past_its_timeout_fails_as_the_tasks_own_failure_and_is_retried() -> None:
    state, [_, queued] = launched(timeout_workflows.sleeping, {"directory": "/nowhere", "seconds": 5.0}, AT)
    assert isinstance(queued, NodeQueued)
    decided(state, started(queued))
    failed, retried = decided(state, attempt_timeout("e", queued.node, queued.attempt_id, 1.0))
    assert isinstance(failed, AttemptFailed) and failed.attempt_id == queued.attempt_id and failed.worker == "w1"
    assert (failed.error.kind, failed.error.message, failed.error.error_type) == (
        "user",
        "timed out after 1 s",
        "TaskTimedOut",
    )
    assert isinstance(retried, NodeQueued) and retried.attempt == 2


def test_a_timeout_of_the_last_retry_fails_the_execution_with_the_reason() -> None:
    state, [_, first] = launched(timeout_workflows.sleeping, {"directory": "/nowhere", "seconds": 5.0}, AT)
    assert isinstance(first, NodeQueued)
    decided(state, started(first))
    _, second = decided(state, attempt_timeout("e", first.node, first.attempt_id, 1.0))
    assert isinstance(second, NodeQueued)
    decided(state, started(second))
    failed, node_failed, execution_failed = decided(state, attempt_timeout("e", second.node, second.attempt_id, 1.0))
    assert isinstance(failed, AttemptFailed) and isinstance(node_failed, NodeFailed)
    assert isinstance(execution_failed, ExecutionFailed)
    assert (state.status, state.error and state.error.message) == ("failed", "timed out after 1 s")


def test_a_late_result_after_a_timeout_is_ignored() -> None:
    state, [_, queued] = launched(timeout_workflows.sleeping, {"directory": "/nowhere", "seconds": 5.0}, AT)
    assert isinstance(queued, NodeQueued)
    decided(state, started(queued))
    decided(state, attempt_timeout("e", queued.node, queued.attempt_id, 1.0))
    assert decided(state, result(queued, 5.0)) == []
    assert state.nodes[queued.node].attempts[0].status == "failed"
    assert state.nodes[queued.node].attempts[-1].status == "queued"


def test_a_timeout_after_the_result_changes_nothing() -> None:
    state, [_, queued] = launched(timeout_workflows.sleeping, {"directory": "/nowhere", "seconds": 0.5}, AT)
    assert isinstance(queued, NodeQueued)
    decided(state, started(queued), result(queued, 0.5))
    assert state.status == "succeeded"
    assert decided(state, attempt_timeout("e", queued.node, queued.attempt_id, 1.0)) == []


def test_a_queued_attempt_does_not_time_out() -> None:
    """A task's timeout measures running time: an attempt waiting for an executor is left to its deadline."""
    state, [_, queued] = launched(timeout_workflows.sleeping, {"directory": "/nowhere", "seconds": 5.0}, AT)
    assert isinstance(queued, NodeQueued)
    assert decided(state, attempt_timeout("e", queued.node, queued.attempt_id, 1.0)) == []


def test_a_repeated_timeout_fires_once() -> None:
    state, [_, queued] = launched(timeout_workflows.sleeping, {"directory": "/nowhere", "seconds": 5.0}, AT)
    assert isinstance(queued, NodeQueued)
    decided(state, started(queued))
    timeout = attempt_timeout("e", queued.node, queued.attempt_id, 1.0)
    assert len(decided(state, timeout)) == 2
    assert decided(state, timeout) == []


def test_a_workflow_past_its_timeout_fails_and_nothing_runs_after() -> None:
    state, [_, queued] = launched(timeout_workflows.bounded, {"directory": "/nowhere", "seconds": 30.0}, AT)
    assert isinstance(queued, NodeQueued)
    decided(state, started(queued))
    (failed,) = decided(state, execution_timeout("e", 2.0))
    assert isinstance(failed, ExecutionFailed)
    assert (failed.error.message, failed.error.error_type) == ("workflow timed out after 2 s", "ExecutionTimedOut")
    assert state.status == "failed" and state.nodes[queued.node].status == "aborted"
    assert decided(state, result(queued, 30.0)) == []
    assert decided(state, attempt_timeout("e", queued.node, queued.attempt_id, 60.0)) == []


def test_a_workflow_timeout_after_the_execution_ended_changes_nothing() -> None:
    state, [_, queued] = launched(timeout_workflows.bounded, {"directory": "/nowhere", "seconds": 1.0}, AT)
    assert isinstance(queued, NodeQueued)
    decided(state, started(queued), result(queued, 1.0))
    assert state.status == "succeeded"
    assert decided(state, execution_timeout("e", 2.0)) == []


def test_user_and_system_failures_are_counted_against_their_own_budgets() -> None:
    state, [_, queued] = launched(timeout_workflows.budgets, {"seconds": 5.0}, AT)
    assert isinstance(queued, NodeQueued)
    lost = TaskError(kind="system", message="the worker process died", error_type="WorkerLost")
    boom = TaskError(kind="user", message="boom")
    said: list[tuple[str, int]] = []
    for error in (lost, boom):
        report = ReportAttemptResult(
            command_id=f"{queued.attempt_id}:r",
            execution_id="e",
            node=queued.node,
            attempt_id=queued.attempt_id,
            worker="w",
            error=error,
        )
        failed, queued = decided(state, report)[-2:]  # type: ignore[assignment]
        assert isinstance(failed, AttemptFailed) and isinstance(queued, NodeQueued)
        said.append((failed.budget, failed.retries_left))
    decided(state, started(queued))
    failed, _, execution_failed = decided(state, attempt_timeout("e", queued.node, queued.attempt_id, 1.0))
    assert isinstance(failed, AttemptFailed) and isinstance(execution_failed, ExecutionFailed)
    said.append((failed.budget, failed.retries_left))
    assert said == [("system_retries", 0), ("retries", 0), ("retries", -1)]
    assert [a.attempt for a in state.nodes[queued.node].attempts] == [1, 2, 3]
