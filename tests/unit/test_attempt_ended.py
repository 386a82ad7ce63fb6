"""One attempt-ended path: a plain node and the one item of a map over one value end their attempts alike."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from plait import map_task, task, workflow
from plait.core.commands import (
    AttemptDeadline,
    ReportAttemptResult,
    ReportAttemptStarted,
    attempt_deadline,
    retry_due,
)
from plait.core.decide import decide_batch
from plait.core.events import (
    AttemptFailed,
    AttemptStarted,
    Event,
    MapItemFailed,
    MapItemSucceeded,
    NodeFailed,
    NodeQueued,
    NodeSucceeded,
    RetryScheduled,
    TaskError,
)
from plait.sdk import Task, Workflow
from tests.helpers.launching import launched

AT = datetime(2026, 1, 2, tzinfo=UTC)
BOOM = TaskError(kind="user", message="boom")
DEADLINE_SECONDS = 30.0
PASSED = "the attempt's deadline passes"


@task(retries=2, retry_delay_seconds=1.5)
def retried_later(x: int) -> int:
    return x


@task(retries=1)
def retried_at_once(x: int) -> int:
    return x


@task
def never_retried(x: int) -> int:
    return x


@workflow
def plain_later(x: int) -> int:
    return retried_later(x)


@workflow
def mapped_later(xs: list[int]) -> list[int]:
    return map_task(retried_later)(x=xs)


@workflow
def plain_at_once(x: int) -> int:
    return retried_at_once(x)


@workflow
def mapped_at_once(xs: list[int]) -> list[int]:
    return map_task(retried_at_once)(x=xs)


@workflow
def plain_once(x: int) -> int:
    return never_retried(x)


@workflow
def mapped_once(xs: list[int]) -> list[int]:
    return map_task(never_retried)(x=xs)


Answer = TaskError | dict[str, Any] | str  # an error, outputs, or PASSED


def answer(queued: NodeQueued, given: Answer) -> ReportAttemptResult | AttemptDeadline:
    if given == PASSED:
        return attempt_deadline("e", queued.node, queued.attempt_id, DEADLINE_SECONDS)
    error = given if isinstance(given, TaskError) else None
    outputs = given if isinstance(given, dict) else None
    return ReportAttemptResult(
        command_id=f"result-{queued.attempt_id}",
        execution_id="e",
        node=queued.node,
        attempt_id=queued.attempt_id,
        worker="w",
        outputs=outputs,
        error=error,
    )


def started(queued: NodeQueued) -> ReportAttemptStarted:
    return ReportAttemptStarted(
        command_id=f"started-{queued.attempt_id}",
        execution_id="e",
        node=queued.node,
        attempt_id=queued.attempt_id,
        worker="w",
    )


def fact(event: Event, mapped: bool) -> tuple[Any, ...] | None:
    """What ``event`` says about the attempts of the one node or item, alike for both (None: it says nothing)."""
    match event:
        case NodeQueued(attempt=number, inputs=inputs):
            return ("queued", number, inputs)
        case AttemptStarted():
            return ("started",)
        case AttemptFailed(error=error):
            return ("attempt failed", error)
        case RetryScheduled(attempt=number, delay_seconds=delay):
            return ("retry scheduled", number, delay)
        case MapItemFailed(error=error):
            return ("gave up", error)
        case NodeFailed(error=error) if not mapped:
            return ("gave up", error)
        case MapItemSucceeded(outputs=outputs):
            return ("succeeded", outputs)
        case NodeSucceeded(attempt_id=attempt_id, outputs=outputs) if attempt_id:
            return ("succeeded", outputs)
    return None


def attempt_facts(wf: Workflow[..., Any], inputs: dict[str, Any], answers: list[Answer]) -> tuple[list[Any], str]:
    """Launch ``wf``, answer its attempts one by one with ``answers`` (each retry is due at once): what happened to
    the attempts, and how the execution ended."""
    mapped = wf.spec.nodes[0].map is not None
    state, events = launched(wf, inputs, AT)
    facts = [f for e in events if (f := fact(e, mapped)) is not None]
    queued = next(e for e in events if isinstance(e, NodeQueued))
    for given in answers:
        commands: list[Any] = [answer(queued, given)]
        if given == PASSED:  # a deadline fails a running attempt (a queued one waits for its cluster)
            commands.insert(0, started(queued))
        new = decide_batch(state, commands, AT).events
        for scheduled in [e for e in new if isinstance(e, RetryScheduled)]:
            new += decide_batch(state, [retry_due("e", scheduled)], AT).events
        facts += [f for e in new if (f := fact(e, mapped)) is not None]
        queued = next((e for e in new if isinstance(e, NodeQueued)), queued)
    return facts, state.status


def bad_outputs(of: Task[..., Any], problem: str) -> TaskError:
    return TaskError(kind="user", message=f"task '{of.name}' returned bad outputs: {problem}", error_type="BadOutputs")


DEADLINE_ERROR = TaskError(
    kind="system", message=f"no result within {DEADLINE_SECONDS:g} s", error_type="AttemptDeadlinePassed"
)


@pytest.mark.parametrize(
    ("plain", "mapped", "answers", "expected", "status"),
    [
        pytest.param(
            plain_later,
            mapped_later,
            [BOOM, BOOM, BOOM],
            [
                ("queued", 1, {"x": 7}),
                ("started",),
                ("attempt failed", BOOM),
                ("retry scheduled", 2, 1.5),
                ("queued", 2, {"x": 7}),
                ("started",),
                ("attempt failed", BOOM),
                ("retry scheduled", 3, 3.0),
                ("queued", 3, {"x": 7}),
                ("started",),
                ("attempt failed", BOOM),
                ("gave up", BOOM),
            ],
            "failed",
            id="delayed-retries-doubling-then-failure",
        ),
        pytest.param(
            plain_at_once,
            mapped_at_once,
            [{"result": "seven"}, {"result": 7, "extra": 1}],
            [
                ("queued", 1, {"x": 7}),
                ("started",),
                (
                    "attempt failed",
                    bad_outputs(retried_at_once, "output 'result' expects int: Expected `int`, got `str`"),
                ),
                ("queued", 2, {"x": 7}),
                ("started",),
                ("attempt failed", bad_outputs(retried_at_once, "unexpected output 'extra'")),
                ("gave up", bad_outputs(retried_at_once, "unexpected output 'extra'")),
            ],
            "failed",
            id="bad-outputs-retried-at-once",
        ),
        pytest.param(
            plain_at_once,
            mapped_at_once,
            [PASSED, {"result": 7}],
            [
                ("queued", 1, {"x": 7}),
                ("started",),
                ("attempt failed", DEADLINE_ERROR),
                ("queued", 2, {"x": 7}),
                ("started",),
                ("succeeded", {"result": 7}),
            ],
            "succeeded",
            id="deadline-then-success",
        ),
        pytest.param(
            plain_once,
            mapped_once,
            [{}],
            [
                ("queued", 1, {"x": 7}),
                ("started",),
                ("attempt failed", bad_outputs(never_retried, "missing output 'result'")),
                ("gave up", bad_outputs(never_retried, "missing output 'result'")),
            ],
            "failed",
            id="no-retries-missing-output",
        ),
    ],
)
def test_a_plain_node_and_a_one_item_map_end_attempts_alike(
    plain: Workflow[..., Any], mapped: Workflow[..., Any], answers: list[Answer], expected: list[Any], status: str
) -> None:
    """The same task, answered the same way, retries, checks outputs and fails or succeeds the same way."""
    assert attempt_facts(plain, {"x": 7}, answers) == (expected, status)
    assert attempt_facts(mapped, {"xs": [7]}, answers) == (expected, status)
