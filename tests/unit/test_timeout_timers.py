"""Which decisions set timeout timers, and for when: from the times in the log, not from when they are read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from nats.js import JetStreamContext

from plait.core.commands import ReportAttemptResult, ReportAttemptStarted
from plait.core.decide import decide_batch
from plait.core.events import NodeQueued
from plait_scheduler.timers import Timeouts, may_time_out
from tests import timeout_workflows, workflows
from tests.helpers.launching import launched

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
