"""The outbox on real servers: what it derives from a decision depends on the execution's current state."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import structlog.testing
from nats.aio.msg import Msg

from plait.adapters.streams import ensure_streams
from plait.client import AsyncClient
from plait.protocol import subjects
from plait_executor import ExecutorService
from plait_scheduler import SchedulerService
from tests import workflows
from tests.helpers.outbox_replay import forget_outbox_position, outbox_caught_up
from tests.helpers.running import running
from tests.helpers.states import final_state

DEADLINE = 60.0


async def test_a_recreated_outbox_consumer_runs_no_attempt_again(nats_url: str) -> None:
    """Past the duplicate window JetStream would store a republished dispatch: the outbox must not publish it."""
    scheduler = SchedulerService(nats_url, replica="first")
    executor = ExecutorService(nats_url, concurrency=2, replica="executor")
    async with running(scheduler.run, executor.run), await AsyncClient.connect(nats_url) as client:
        launched = [(await client.launch(workflows.chain, {"start": start})).id for start in range(3)]
        states = [await final_state(client, execution_id, timeout=DEADLINE) for execution_id in launched]
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


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    with anyio.fail_after(DEADLINE):
        while True:
            if await condition():
                return
            await anyio.sleep(0.05)


async def test_the_outbox_retries_dispatches_the_dispatch_stream_could_not_store(nats_url: str) -> None:
    """A dispatch stream that does not answer (here: deleted; in production a leader change or an outage) hands the
    decision back to the outbox, which stores its dispatch once the stream is back; the replica goes on."""
    scheduler = SchedulerService(nats_url, replica="first")
    with structlog.testing.capture_logs() as logs:
        async with running(scheduler.run), await AsyncClient.connect(nats_url) as client:
            await client.js.delete_stream(subjects.DISPATCH_STREAM)
            await client.launch(workflows.paused, {"seconds": 0.1})

            async def refused() -> bool:
                return any(entry["event"] == "dispatch_not_stored" for entry in logs)

            async def dispatched() -> bool:
                return (await client.js.stream_info(subjects.DISPATCH_STREAM)).state.messages == 1

            await until(refused)
            await ensure_streams(client.js)
            await until(dispatched)


async def test_the_outbox_reads_no_state_for_decisions_its_own_replica_made(nats_url: str) -> None:
    """The replica that appends a decision starts its side work and dispatches, or finds it has none, from the
    state it just decided on; its outbox, meeting the decision later, has nothing to read the log for (ended
    executions leave the state cache, so each of their last decisions would otherwise be read whole)."""
    scheduler = SchedulerService(nats_url, replica="first")
    executor = ExecutorService(nats_url, concurrency=2, replica="executor")
    async with running(scheduler.run, executor.run), await AsyncClient.connect(nats_url) as client:
        launched = [(await client.launch(workflows.sum_of_squares, {"n": 4})).id for _ in range(3)]
        states = [await final_state(client, execution_id, timeout=DEADLINE) for execution_id in launched]
        await outbox_caught_up(client.js)
    assert {state.status for state in states} == {"succeeded"}
    assert scheduler.outbox is not None and scheduler.outbox.dispatched >= 3 * 5
    assert scheduler.outbox.states_read == 0
