"""Timeouts on the real stack: the scheduler's timers decide them, and the executor kills the attempts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from plait.client import AsyncClient
from plait.core.events import AttemptFailed, ExecutionFailed
from plait.replay import timeline
from plait_executor import ExecutorService
from plait_scheduler import SchedulerService
from tests import timeout_workflows
from tests.helpers.running import running
from tests.helpers.stack import services_and_client
from tests.helpers.states import final_state
from tests.helpers.task_processes import alive, killed

DEADLINE = 60.0


@pytest.fixture
async def client(nats_url: str, database_url: str) -> AsyncIterator[AsyncClient]:
    async with services_and_client(nats_url, database_url) as plait_client:
        yield plait_client


async def test_an_attempt_past_its_timeout_is_killed_retried_and_then_fails_with_the_reason(
    client: AsyncClient, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    inputs = {"directory": str(pids), "seconds": 300.0}
    execution_id = (await client.launch(timeout_workflows.sleeping, inputs)).id
    state = await final_state(client, execution_id, timeout=DEADLINE)
    assert state.status == "failed"
    assert state.error is not None and (state.error.kind, state.error.message) == ("user", "timed out after 1 s")
    attempts = state.nodes["sleepy"].attempts
    assert [(a.attempt, a.status) for a in attempts] == [(1, "failed"), (2, "failed")]
    decisions = [stored.decision async for stored in client.events(execution_id)]
    timed_out = [d for d in decisions if any(isinstance(e, AttemptFailed) for e in d.events)]
    assert [d.commands for d in timed_out] == [(f"{a.attempt_id}:timeout",) for a in attempts], "the timers decided"
    story = [(t.event, t.detail) for t in timeline(await client.records(execution_id)) if t.detail]
    assert story == [
        ("attempt_failed.v1", "timed out after 1 s; retries: 0 left"),
        ("attempt_failed.v1", "timed out after 1 s; retries: none left"),
        ("node_failed.v1", "timed out after 1 s"),
        ("execution_failed.v1", "timed out after 1 s"),
    ]
    assert len(await killed(pids)) == 2


async def test_a_workflow_timeout_ends_the_execution_and_kills_its_running_attempt(
    client: AsyncClient, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    inputs = {"directory": str(pids), "seconds": 300.0}
    execution_id = (await client.launch(timeout_workflows.bounded, inputs)).id
    state = await final_state(client, execution_id, timeout=DEADLINE)
    assert state.status == "failed" and state.error is not None
    assert state.error.message == "workflow timed out after 2 s"
    assert state.nodes["patient"].status == "aborted"
    decisions = [stored.decision async for stored in client.events(execution_id)]
    assert isinstance(decisions[-1].events[-1], ExecutionFailed)
    assert decisions[-1].commands == (f"{execution_id}:timeout",)
    [pid] = await killed(pids)
    assert not alive(pid)


async def test_a_task_without_a_timeout_gets_the_schedulers_default_and_is_killed_at_it(
    nats_url: str, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    scheduler = SchedulerService(nats_url, replica="defaulting-scheduler", default_task_timeout_seconds=1.0)
    executor = ExecutorService(nats_url, concurrency=1, replica="defaulting-executor")
    async with running(scheduler.run, executor.run), await AsyncClient.connect(nats_url) as client:
        inputs = {"directory": str(pids), "seconds": 300.0}
        execution_id = (await client.launch(timeout_workflows.sleeping_without_a_timeout, inputs)).id
        state = await final_state(client, execution_id, timeout=DEADLINE)
    assert state.status == "failed" and state.error is not None
    assert (state.error.error_type, state.error.message) == ("TaskTimedOut", "timed out after 1 s")
    assert state.default_task_timeout_seconds == 1.0
    assert len(await killed(pids)) == 1
