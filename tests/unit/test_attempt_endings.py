"""What an executor reads of an execution's last decision about its held attempts: which ones the scheduler failed
while they ran (to be stopped), and which ended by their own report (a pod's: left to end by itself)."""

from __future__ import annotations

from plait import codec
from plait.core.events import (
    AttemptFailed,
    ExecutionFailed,
    ExecutionSucceeded,
    MapItemSucceeded,
    NodeFailed,
    NodeSucceeded,
    TaskError,
)
from tests.helpers.records import history


def endings(*events: object) -> codec.AttemptEndings:
    [record] = history("e", [list(events)])
    return codec.attempt_endings(record.data)


def test_a_timeout_or_a_passed_deadline_is_the_schedulers_failure_and_a_tasks_own_error_is_its_report() -> None:
    timed_out = TaskError(kind="user", message="timed out after 5 s", error_type="TaskTimedOut")
    silent = TaskError(kind="system", message="no result within 60 s", error_type="AttemptDeadlinePassed")
    raised = TaskError(kind="user", message="boom", error_type="ValueError")
    bad = TaskError(kind="user", message="task 't' returned bad outputs: missing output 'o'", error_type="BadOutputs")
    found = endings(
        AttemptFailed(node="a", attempt_id="e/a/1", error=timed_out),
        AttemptFailed(node="b", attempt_id="e/b/1", error=silent),
        AttemptFailed(node="c", attempt_id="e/c/1", error=raised, worker="pod-c"),
        AttemptFailed(node="d", attempt_id="e/d/1", error=bad, worker="pod-d"),  # what its pod reported: its log kept
        NodeFailed(node="c", error=raised),
        ExecutionFailed(node="c", error=raised),
    )
    assert found == codec.AttemptEndings(failed=frozenset({"e/a/1", "e/b/1"}), reported=frozenset({"e/c/1", "e/d/1"}))


def test_a_node_or_an_item_that_succeeded_was_ended_by_its_attempts_report() -> None:
    found = endings(
        MapItemSucceeded(node="m", index=3, attempt_id="e/m[3]/1", outputs={"o0": 1}),
        NodeSucceeded(node="last", attempt_id="e/last/1", outputs={"o0": 2}),
        ExecutionSucceeded(outputs={"o0": 2}),
    )
    assert found == codec.AttemptEndings(failed=frozenset(), reported=frozenset({"e/m[3]/1", "e/last/1"}))
