"""The scheduler recovers quickly: a dead replica's commands move on within seconds, and NATS may go away."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from urllib.parse import urlsplit

import anyio
import pytest
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig

from plait import codec
from plait.adapters.event_store import EventStore
from plait.client import AsyncClient
from plait.core.commands import Command, ResolvedLaunch
from plait.core.decide import Outcome
from plait.protocol import subjects
from plait_cli.embedded import NatsServer
from plait_scheduler import SchedulerService
from plait_scheduler.cache import StateCache
from plait_scheduler.decisions import Decider
from plait_scheduler.failures import COMMANDS_MAX_DELIVER, MAX_DELIVERIES
from plait_scheduler.outbox import Outbox
from plait_scheduler.service import ACK_WAIT_SECONDS, COMMANDS_CONSUMER
from tests import workflows
from tests.helpers.launching import resolved_launch
from tests.helpers.reading import queued_at_launch
from tests.helpers.running import running


@pytest.fixture
async def client(nats_url: str) -> AsyncIterator[AsyncClient]:
    async with await AsyncClient.connect(nats_url) as plait_client:
        yield plait_client


async def test_a_command_taken_by_a_replica_that_died_is_decided_by_another_within_seconds(
    client: AsyncClient, nats_url: str
) -> None:
    """The dead replica here is a pull that takes the launch and never answers (as after ``kill -9``)."""
    async with running(SchedulerService(nats_url, replica="first").run):
        pass  # leaves the commands consumer behind, as every replica shares it
    launched = anyio.Event()

    async def launch() -> None:
        await client.launch(workflows.add_two, {"a": 1, "b": 2}, execution_id="orphaned")
        launched.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(launch)
        dead = await client.js.pull_subscribe_bind(COMMANDS_CONSUMER, subjects.COMMANDS_STREAM)
        [taken] = await dead.fetch(1, timeout=10)
        assert taken.subject.endswith("orphaned.launch")
        async with running(SchedulerService(nats_url, replica="second").run):
            with anyio.fail_after(ACK_WAIT_SECONDS * 3):  # was 30 s: the consumer's old ack wait
                await launched.wait()
    assert await queued_at_launch(client, "orphaned") == ["add"]


@pytest.mark.parametrize("max_deliver", [None, MAX_DELIVERIES])
async def test_a_consumer_made_by_an_older_release_gets_the_short_ack_wait_and_no_delivery_limit(
    client: AsyncClient, nats_url: str, max_deliver: int | None
) -> None:
    """No delivery limit: the server would give a command up in silence; the scheduler dead-letters it instead."""
    old = ConsumerConfig(
        durable_name=COMMANDS_CONSUMER,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30.0,
        max_deliver=max_deliver,
        filter_subject=f"{subjects.COMMANDS_ROOT}.>",
    )
    await client.js.add_consumer(subjects.COMMANDS_STREAM, old)
    async with running(SchedulerService(nats_url, replica="upgraded").run):
        info = await client.js.consumer_info(subjects.COMMANDS_STREAM, COMMANDS_CONSUMER)
    assert (info.config.ack_wait, info.config.max_deliver) == (ACK_WAIT_SECONDS, COMMANDS_MAX_DELIVER)


async def test_the_scheduler_rides_out_nats_being_away_for_eight_seconds_mid_batch(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NATS goes away while the outbox is publishing a decision's dispatch: its 5 s wait for the server's answer
    ran out and ended the replica. Now the batch is handed back and dispatched once NATS is back."""
    url = nats_server.url
    outbox_busy, nats_gone = anyio.Event(), anyio.Event()
    handle = Outbox.handle

    async def held_until_nats_is_gone(outbox: Outbox, messages: list[Msg]) -> None:
        if any(msg.subject.endswith(".orphan") for msg in messages) and not nats_gone.is_set():
            outbox_busy.set()
            await nats_gone.wait()
        await handle(outbox, messages)

    monkeypatch.setattr(Outbox, "handle", held_until_nats_is_gone)
    async with running(SchedulerService(url, replica="outage").run):
        async with await AsyncClient.connect(url) as client:
            launch = resolved_launch(workflows.add_two.spec, {"a": 1, "b": 2}, "orphan")
            decider = Decider(EventStore(client.js), StateCache(), "a-replica-that-died-before-dispatching")
            await decider.decide(client._subject("orphan"), [launch])
            with anyio.fail_after(30):
                await outbox_busy.wait()
        await anyio.to_thread.run_sync(nats_server.stop)
        nats_gone.set()
        await anyio.sleep(8)  # the outage itself
        port = urlsplit(url).port or -1
        restarted = await anyio.to_thread.run_sync(lambda: NatsServer.start(nats_server.data_dir, port=port))
        try:
            async with await AsyncClient.connect(url) as client:
                with anyio.fail_after(30):
                    await client.launch(workflows.add_two, {"a": 3, "b": 4}, execution_id="after")
                    dispatches = await client.js.pull_subscribe(
                        f"{subjects.DISPATCH_ROOT}.>", durable=None, stream=subjects.DISPATCH_STREAM
                    )
                    attempts = {
                        codec.dispatch_decoder.decode(msg.data).execution_id for msg in await dispatches.fetch(2)
                    }
                assert attempts == {"orphan", "after"}
        finally:
            await anyio.to_thread.run_sync(restarted.stop)


async def test_a_decision_record_the_outbox_cannot_read_does_not_stop_the_replica(
    client: AsyncClient, nats_url: str
) -> None:
    """The outbox's failure is its own to settle (quarantine); whatever it raises, commands are still decided. The
    record is stored first, so the outbox meets it in its first batch, before any launch."""
    await client.js.publish(f"{subjects.EVENTS_ROOT}.default.development.garbage", b"{not a decision")
    async with running(SchedulerService(nats_url, replica="survivor").run):
        for execution_id in ("decided", "still-decided"):
            with anyio.fail_after(30):
                await client.launch(workflows.add_two, {"a": 1, "b": 2}, execution_id=execution_id)
            assert await queued_at_launch(client, execution_id) == ["add"]


async def test_a_decision_slower_than_the_ack_wait_stays_with_its_replica(
    client: AsyncClient, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replica says it is still at work (``in progress``), so the other one does not decide it too."""
    decided = 0
    decide = Decider.decide

    async def slow(decider: Decider, subject: str, commands: Sequence[Command | ResolvedLaunch]) -> Outcome:
        nonlocal decided
        if subject.endswith(".slow"):
            decided += 1
            await anyio.sleep(ACK_WAIT_SECONDS * 2)  # a slow store
        return await decide(decider, subject, commands)

    monkeypatch.setattr(Decider, "decide", slow)
    replicas = [SchedulerService(nats_url, replica=name).run for name in ("one", "two")]
    async with running(*replicas):
        with anyio.fail_after(60):
            await client.launch(workflows.add_two, {"a": 1, "b": 2}, execution_id="slow", timeout=60)
    info = await client.js.consumer_info(subjects.COMMANDS_STREAM, COMMANDS_CONSUMER)
    assert (decided, info.delivered.consumer_seq) == (1, 1), "the launch was delivered once, and decided once"
