"""Executors as their own processes, killed mid-attempt: the attempt moves to another executor within seconds, and
an attempt that keeps losing its executor ends as a system failure."""

from __future__ import annotations

import time

import anyio
import anyio.to_thread

from plait.client import AsyncClient
from plait.core.events import AttemptStarted
from plait_scheduler import SchedulerService
from tests import fault_workflows, workflows
from tests.processes import ServiceProcess
from tests.running import running

DEADLINE = 60.0
RECOVERY_BOUND = 20.0
"""Seconds from killing an executor mid-attempt to its execution's end: the dispatch's 5 s ack wait, a 2 s task, and
room for a loaded machine (with the 30 s ack wait of old, it took 32 s or more)."""


def executor_process(nats_url: str, name: str, **env: str) -> ServiceProcess:
    settings = {"PLAIT_NATS_URL": nats_url, "PLAIT_REPLICA": name, "PLAIT_CONCURRENCY": "1", **env}
    return ServiceProcess("executor", settings)


async def started_by(client: AsyncClient, execution_id: str) -> str:
    """The worker that started the execution's first attempt."""
    with anyio.fail_after(DEADLINE):
        async for stored in client.events(execution_id):
            for event in stored.decision.events:
                if isinstance(event, AttemptStarted):
                    return event.worker
    raise AssertionError(f"execution {execution_id} ended before any attempt started")


async def test_an_attempt_of_an_executor_killed_mid_attempt_runs_elsewhere_within_seconds(nats_url: str) -> None:
    executors = {name: executor_process(nats_url, name) for name in ("executor-a", "executor-b")}
    try:
        for executor in executors.values():
            await anyio.to_thread.run_sync(executor.wait_for_event, "executor_started")
        scheduler = SchedulerService(nats_url, replica="scheduler")
        async with running(scheduler.run), await AsyncClient.connect(nats_url) as client:
            execution_id = await client.launch(workflows.paused, {"seconds": 2.0})
            first = await started_by(client, execution_id)
            executors[first].kill()
            killed_at = time.monotonic()
            state = await client.wait(execution_id, timeout=RECOVERY_BOUND)
            recovered_in = time.monotonic() - killed_at
    finally:
        for executor in executors.values():
            executor.stop()
    assert state.status == "succeeded", state.error
    [attempt] = state.nodes["pause"].attempts  # the same attempt, run again
    assert attempt.worker == ({"executor-a", "executor-b"} - {first}).pop()
    assert recovered_in < RECOVERY_BOUND


async def test_an_attempt_that_kills_its_executor_every_time_ends_as_a_system_failure(nats_url: str) -> None:
    started: list[ServiceProcess] = []

    async def keep_an_executor_running() -> None:
        while True:
            executor = executor_process(nats_url, f"executor-{len(started)}", PLAIT_DISPATCH_ACK_WAIT_SECONDS="2")
            started.append(executor)
            await anyio.to_thread.run_sync(executor.process.wait, abandon_on_cancel=True)

    scheduler = SchedulerService(nats_url, replica="scheduler")
    try:
        async with running(scheduler.run), await AsyncClient.connect(nats_url) as client:
            execution_id = await client.launch(fault_workflows.kills_its_executor)
            async with anyio.create_task_group() as tg:
                tg.start_soon(keep_an_executor_running)
                state = await client.wait(execution_id, timeout=DEADLINE * 2)
                tg.cancel_scope.cancel()
    finally:
        for executor in started:
            executor.stop()
    assert state.status == "failed" and state.error is not None
    assert (state.error.kind, state.error.message) == ("system", "delivered 5 times; the executor was lost each time")
    assert len(started) >= 5, "four executors were killed by the task before the fifth reported it"
