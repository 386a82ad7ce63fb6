"""The puller hands over each message of a durable pull consumer once, never more at a time than its free slots,
and gives back what arrives once it has stopped. On a real nats-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from plait.adapters.connection import connect, on_reconnection
from plait.adapters.pull import Puller, ensure_consumer
from tests.helpers.restartable_nats import RestartableNats

STREAM, CONSUMER = "PULLED", "puller"


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    client = await connect(nats_url, "test-pull")
    js = client.jetstream()
    await js.add_stream(StreamConfig(name=STREAM, subjects=["pulled.>"]))
    config = ConsumerConfig(durable_name=CONSUMER, ack_policy=AckPolicy.EXPLICIT, ack_wait=2.0)
    await ensure_consumer(js, STREAM, config)
    yield client
    await client.close()


async def publish(js: JetStreamContext, count: int, first: int = 0) -> None:
    for number in range(first, first + count):
        await js.publish(f"pulled.{number}", str(number).encode())


async def test_each_message_is_handed_over_once_and_no_more_at_a_time_than_the_free_slots(nc: NATS) -> None:
    js = nc.jetstream()
    slots = anyio.Semaphore(3)
    handed: list[int] = []
    held: list[Msg] = []
    most_held = 0
    all_in = anyio.Event()

    def start(msg: Msg) -> None:
        nonlocal most_held
        handed.append(int(msg.data))
        held.append(msg)
        most_held = max(most_held, len(held))
        if len(handed) == 20:
            all_in.set()

    async def settle() -> None:  # acks the held messages a few at a time, freeing their slots
        while not all_in.is_set() or held:
            await anyio.sleep(0.01)
            for msg in held[:2]:
                await msg.ack()
                held.remove(msg)
                slots.release()

    await publish(js, 20)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(Puller(nc, STREAM, CONSUMER, slots, wait_seconds=1.0).run, start)
            tg.start_soon(settle)
            await all_in.wait()
            await anyio.sleep(0.1)  # nothing more comes
            tg.cancel_scope.cancel()
    assert handed == list(range(20))
    assert most_held <= 3


async def test_a_stopped_puller_hands_nothing_over_and_its_messages_go_to_the_next(nc: NATS) -> None:
    """The first puller stops with a pull request still waiting on the server: what is published afterwards is not
    handed to it, and reaches the next puller (at once, or after the ack wait if the server sent it to the request
    that nobody listens to any more)."""
    js = nc.jetstream()
    first: list[int] = []
    second: set[int] = set()
    one = anyio.Event()

    def start_first(msg: Msg) -> None:
        first.append(int(msg.data))
        one.set()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(Puller(nc, STREAM, CONSUMER, anyio.Semaphore(4), wait_seconds=5.0).run, start_first)
            await publish(js, 1)
            await one.wait()
            tg.cancel_scope.cancel()
        await publish(js, 3, first=1)
        everything = anyio.Event()

        def start_second(msg: Msg) -> None:
            second.add(int(msg.data))
            if {1, 2, 3} <= second:
                everything.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(Puller(nc, STREAM, CONSUMER, anyio.Semaphore(10), wait_seconds=1.0).run, start_second)
            await everything.wait()
            tg.cancel_scope.cancel()
    assert first == [0], "the stopped puller took none of the later messages"
    assert {1, 2, 3} <= second


async def test_a_message_whose_hand_over_raises_goes_back_to_the_server_and_frees_its_slot(nc: NATS) -> None:
    js = nc.jetstream()
    slots = anyio.Semaphore(2)
    calls: list[int] = []
    taken = anyio.Event()

    def start(msg: Msg) -> None:
        calls.append(msg.metadata.num_delivered)
        if len(calls) == 1:
            raise RuntimeError("a bug in what the message is handed to")
        taken.set()

    await publish(js, 1)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(Puller(nc, STREAM, CONSUMER, slots, wait_seconds=1.0).run, start)
            await taken.wait()
            tg.cancel_scope.cancel()
    assert calls == [1, 2], "delivered again at once, and handed over"
    assert slots.value == 1, "the failed hand-over's slot was freed; the second holds the other"


async def test_after_a_server_restart_the_puller_asks_again_at_once(tmp_path: Path) -> None:
    """The restarted server has forgotten the pull request that was waiting: the puller asks again as soon as it is
    connected again, not once that request would have expired (a minute here)."""
    server = RestartableNats(tmp_path / "nats")
    await anyio.to_thread.run_sync(server.start)
    try:
        client = await connect(server.url, "test-pull-restart")
        js = client.jetstream()
        await js.add_stream(StreamConfig(name=STREAM, subjects=["pulled.>"]))
        await ensure_consumer(js, STREAM, ConsumerConfig(durable_name=CONSUMER, ack_policy=AckPolicy.EXPLICIT))
        puller = Puller(client, STREAM, CONSUMER, anyio.Semaphore(4), wait_seconds=60.0)
        handed = anyio.Event()
        with anyio.fail_after(30):  # the lost request would end after 62 s
            async with anyio.create_task_group() as tg:
                tg.start_soon(puller.run, lambda msg: handed.set())
                while not puller.asking:  # noqa: ASYNC110  no event says a request is on the server
                    await anyio.sleep(0.01)
                await anyio.to_thread.run_sync(server.kill)
                await anyio.to_thread.run_sync(server.start)
                await publish(js, 1)
                await handed.wait()
                tg.cancel_scope.cancel()
        await client.close()
    finally:
        await anyio.to_thread.run_sync(server.kill)


async def test_a_reconnection_listener_that_raises_stops_neither_the_others_nor_later_reconnections(
    tmp_path: Path,
) -> None:
    server = RestartableNats(tmp_path / "nats")
    await anyio.to_thread.run_sync(server.start)
    try:
        client = await connect(server.url, "test-reconnection-listeners")
        told = anyio.Event()
        heard: list[int] = []

        def broken() -> None:
            raise RuntimeError("a bug in a listener")

        def listening() -> None:
            heard.append(1)
            told.set()

        on_reconnection(client, broken)
        stop = on_reconnection(client, listening)
        with anyio.fail_after(30):
            for restarts in (1, 2):
                await anyio.to_thread.run_sync(server.kill)
                await anyio.to_thread.run_sync(server.start)
                await told.wait()
                told = anyio.Event()
                assert len(heard) == restarts
        stop()
        await client.flush()
        await client.close()
    finally:
        await anyio.to_thread.run_sync(server.kill)
