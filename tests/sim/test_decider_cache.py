"""Two scripted runs of the real ``Decider`` on the simulator's store: the failures its seeds find, made exact."""

from __future__ import annotations

import dataclasses

import pytest

from plait.core.commands import ReportAttemptResult, RetryDue
from plait.core.events import TaskError
from plait.protocol import subjects
from plait.replay import replay
from tests.helpers.launching import resolved_launch
from tests.sim import workflows as sim_workflows
from tests.sim.world import Faults, World, complete

SUBJECT = subjects.execution_subject("tests", "dev", "e")  # where resolved_launch launches


def launched_world() -> World:
    """Two replicas; replica 0 launched ``retried_later`` (node ``wobbly`` attempt 1 queued) and caches it."""
    world = World(0, Faults(), executions=0, replicas=2)
    launch = resolved_launch(sim_workflows.retried_later.spec, {"x": 1}, "e")
    complete(world.replicas[0].decider.decide(SUBJECT, [launch]))
    return world


def result(attempt: int, error: TaskError | None = None) -> ReportAttemptResult:
    return ReportAttemptResult(
        command_id=f"e/wobbly/{attempt}:result",
        execution_id="e",
        node="wobbly",
        attempt_id=f"e/wobbly/{attempt}",
        worker="w",
        outputs=None if error else {"result": 2},
        error=error,
    )


def test_a_retry_due_reaching_a_replica_whose_cache_is_behind_is_decided() -> None:
    world = launched_world()
    first, second = world.replicas
    complete(second.decider.decide(SUBJECT, [result(1, TaskError(kind="user", message="boom"))]))
    due = RetryDue(command_id="e/wobbly/2:due", execution_id="e", node="wobbly", attempt=2)
    complete(first.decider.decide(SUBJECT, [due]))  # its cache still has attempt 1 queued
    attempts = [a.attempt for a in replay(world.log.by_subject[SUBJECT]).nodes["wobbly"].attempts]
    assert attempts == [1, 2], "the retry was queued"


def test_a_result_whose_append_timed_out_is_decided_when_redelivered() -> None:
    world = launched_world()
    replica = world.replicas[0]
    world.faults = dataclasses.replace(world.faults, append_timeout=1.0)
    with pytest.raises(TimeoutError):
        complete(replica.decider.decide(SUBJECT, [result(1)]))
    world.faults = Faults()
    complete(replica.decider.decide(SUBJECT, [result(1)]))  # the redelivery
    node = replay(world.log.by_subject[SUBJECT]).nodes["wobbly"]
    assert node.status == "succeeded", "the result is in the log"
