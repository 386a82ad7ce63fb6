"""The outbox on real servers: what it derives from a decision depends on the execution's current state."""

from __future__ import annotations

from nats.aio.msg import Msg

from plait.adapters import subjects
from plait.client import AsyncClient
from plait_executor import ExecutorService
from plait_scheduler import SchedulerService
from tests import workflows
from tests.outbox_replay import forget_outbox_position, outbox_caught_up
from tests.running import running

DEADLINE = 60.0


async def test_a_recreated_outbox_consumer_runs_no_attempt_again(nats_url: str) -> None:
    """Past the duplicate window JetStream would store a republished dispatch: the outbox must not publish it."""
    scheduler = SchedulerService(nats_url, replica="first")
    executor = ExecutorService(nats_url, concurrency=2, worker_name="executor")
    async with running(scheduler.run, executor.run), await AsyncClient.connect(nats_url) as client:
        launched = [await client.launch(workflows.chain, {"start": start}) for start in range(3)]
        states = [await client.wait(execution_id, timeout=DEADLINE) for execution_id in launched]
    assert {state.status for state in states} == {"succeeded"}

    async with await AsyncClient.connect(nats_url) as client:
        published: list[Msg] = []

        async def seen(msg: Msg) -> None:
            published.append(msg)

        await client.nc.subscribe(f"{subjects.DISPATCH_ROOT}.>", cb=seen)  # every publish, stored or deduplicated
        await forget_outbox_position(client.js)
        replaying = SchedulerService(nats_url, replica="second")
        async with running(replaying.run):
            await outbox_caught_up(client.js)
        await client.nc.flush()
    assert replaying.outbox is not None and replaying.outbox.dispatched == 0
    assert published == []
