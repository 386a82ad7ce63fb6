"""Executors killed mid-attempt (as their own processes): the attempt moves to another executor within seconds, and
an attempt that keeps losing its executor ends as a system failure. An executor rides out NATS being away."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import anyio.to_thread
import nats
from nats.aio.subscription import Subscription

from plait import codec
from plait.client import AsyncClient
from plait.core.commands import ReportAttemptResult, ReportAttemptStarted
from plait.core.events import AttemptStarted
from plait.protocol import subjects
from plait_executor import ExecutorService
from plait_scheduler import SchedulerService
from tests import executor_tasks, fault_workflows, workflows
from tests.helpers.dispatches import first_attempt
from tests.helpers.processes import ServiceProcess
from tests.helpers.registered_tasks import register_task
from tests.helpers.restartable_nats import RestartableNats
from tests.helpers.running import running
from tests.helpers.states import final_state

DEADLINE = 60.0
OUTAGE_SECONDS = 7.0
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
            execution_id = (await client.launch(workflows.paused, {"seconds": 2.0})).id
            first = await started_by(client, execution_id)
            executors[first].kill()
            killed_at = time.monotonic()
            state = await final_state(client, execution_id, timeout=RECOVERY_BOUND)
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
            execution_id = (await client.launch(fault_workflows.kills_its_executor)).id
            async with anyio.create_task_group() as tg:
                tg.start_soon(keep_an_executor_running)
                state = await final_state(client, execution_id, timeout=DEADLINE * 2)
                tg.cancel_scope.cancel()
    finally:
        for executor in started:
            executor.stop()
    assert state.status == "failed" and state.error is not None
    assert (state.error.kind, state.error.message) == ("system", "delivered 5 times; the executor was lost each time")
    assert len(started) >= 5, "four executors were killed by the task before the fifth reported it"


async def next_result(commands: Subscription) -> ReportAttemptResult:
    with anyio.fail_after(DEADLINE):
        while True:
            command = codec.command_decoder.decode((await commands.next_msg(timeout=None)).data)
            if isinstance(command, ReportAttemptResult):
                return command


async def test_an_executor_rides_out_nats_being_away_mid_attempt(tmp_path: Path) -> None:
    server = RestartableNats(tmp_path / "nats")
    server.start()
    try:
        executor = ExecutorService(server.url, concurrency=1, replica="executor")
        async with running(executor.run):
            nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
            try:
                commands = await nc.subscribe(f"{subjects.COMMANDS_ROOT}.>")
                js = nc.jetstream()
                dispatch = first_attempt(
                    executor_tasks.pause.spec, {"seconds": 2.0}, node="pause", project="proj", domain="dev"
                )
                await register_task(js, dispatch)
                await js.publish(subjects.dispatch_subject("local", "default"), codec.encode(dispatch))
                started = codec.command_decoder.decode((await commands.next_msg(timeout=DEADLINE)).data)
                assert isinstance(started, ReportAttemptStarted)
                server.kill()
                await anyio.sleep(OUTAGE_SECONDS)  # the outage itself, not a wait for something to happen
                server.start()
                result = await next_result(commands)
            finally:
                await nc.close()
    finally:
        server.kill()
    assert (result.attempt_id, result.outputs) == (dispatch.attempt_id, {"result": 2.0})
