"""Which decisions set timeout timers, and for when: from the times in the log, not from when they are read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import msgspec
from nats.js import JetStreamContext

from plait.core.commands import ReportAttemptResult, ReportAttemptStarted
from plait.core.decide import decide_batch
from plait.core.dispatch import dispatch_of
from plait.core.events import NodeQueued
from plait_scheduler.timers import Timeouts, may_time_out
from tests import timeout_workflows, workflows
from tests.helpers.launching import launched, resolved_launch

AT = datetime(2026, 1, 2, tzinfo=UTC)
INPUTS = {"directory": "/nowhere", "seconds": 5.0}


def timeouts() -> Timeouts:
    return Timeouts(cast(JetStreamContext, None))  # ``_due`` reads no stream


def started(queued: NodeQueued) -> ReportAttemptStarted:
    return ReportAttemptStarted(
        command_id="s", execution_id="e", node=queued.node, attempt_id=queued.attempt_id, worker="w"
    )


def test_a_started_attempt_of_a_task_with_a_timeout_gets_a_timer_from_its_logged_start() -> None:
    state, [_, queued] = launched(timeout_workflows.sleeping, INPUTS, AT)
    assert isinstance(queued, NodeQueued)
    start = AT + timedelta(seconds=3)
    events = decide_batch(state, [started(queued)], start).events
    assert may_time_out(events)
    [(command, due)] = timeouts()._due(state, events)
    assert (command.command_id, due) == (f"{queued.attempt_id}:timeout", start + timedelta(seconds=1))


def test_an_attempt_started_and_ended_in_one_decision_gets_no_timer() -> None:
    state, [_, queued] = launched(timeout_workflows.sleeping, INPUTS, AT)
    assert isinstance(queued, NodeQueued)
    result: Any = ReportAttemptResult(
        command_id="r",
        execution_id="e",
        node=queued.node,
        attempt_id=queued.attempt_id,
        worker="w",
        outputs={"result": 5.0},
    )
    events = decide_batch(state, [result], AT).events
    assert not may_time_out(events)
    assert timeouts()._due(state, events) == []


def test_a_launch_of_a_workflow_with_a_timeout_gets_a_timer_from_its_logged_launch() -> None:
    state, events = launched(timeout_workflows.bounded, INPUTS, AT)
    assert may_time_out(events)
    [(command, due)] = timeouts()._due(state, events)
    assert (command.command_id, due) == ("e:timeout", AT + timedelta(seconds=2))


def test_a_workflow_or_task_without_a_timeout_gets_no_timer() -> None:
    state, [launch, _] = launched(timeout_workflows.sleeping, INPUTS, AT)
    assert timeouts()._due(state, [launch]) == []
    state, [_, queued] = launched(workflows.paused, {}, AT)
    assert isinstance(queued, NodeQueued)
    events = decide_batch(state, [started(queued)], AT).events
    assert may_time_out(events) and timeouts()._due(state, events) == []


def launched_with_default(wf: Any, inputs: dict[str, Any], seconds: float) -> tuple[Any, list[Any]]:
    resolved = msgspec.structs.replace(resolved_launch(wf.spec, inputs), default_task_timeout_seconds=seconds)
    outcome = decide_batch(None, [resolved], AT)
    assert outcome.state is not None
    return outcome.state, outcome.events


def test_a_task_that_sets_no_timeout_gets_the_default_its_execution_was_launched_with() -> None:
    state, [launch, queued] = launched_with_default(workflows.paused, {"seconds": 60.0}, 7.0)
    assert isinstance(queued, NodeQueued) and launch.default_task_timeout_seconds == 7.0
    assert dispatch_of(state, queued, 1).task.timeout_seconds == 7.0  # the executor's backstop, a Job's deadline
    start = AT + timedelta(seconds=2)
    events = decide_batch(state, [started(queued)], start).events
    [(command, due)] = timeouts()._due(state, events)
    assert (command.command_id, due) == (f"{queued.attempt_id}:timeout", start + timedelta(seconds=7))


def test_a_tasks_own_timeout_wins_over_the_default() -> None:
    state, [_, queued] = launched_with_default(timeout_workflows.sleeping, INPUTS, 7.0)
    assert isinstance(queued, NodeQueued)
    assert dispatch_of(state, queued, 1).task.timeout_seconds == 1.0
    events = decide_batch(state, [started(queued)], AT).events
    [(_, due)] = timeouts()._due(state, events)
    assert due == AT + timedelta(seconds=1)
