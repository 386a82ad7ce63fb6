"""Scheduler replicas on a partitioned commands stream: the partitions spread over them, a killed replica's
partitions (and their executions) are taken over, and a replica set otherwise than the stream is refused."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import anyio
import anyio.to_thread
import pytest
from nats.js.api import ConsumerConfig

from plait.adapters.commands import publish_command, schedule_command
from plait.adapters.partitions import partition_stream
from plait.adapters.streams import ensure_streams
from plait.client import AsyncClient
from plait.core.commands import RetryDue
from plait.core.state import apply_decision
from plait.protocol.headers import PLAIT_ORIGINAL_SUBJECT
from plait.protocol.partitions import partition_of
from plait.protocol.subjects import COMMANDS_STREAM
from plait_executor import ExecutorService
from tests import workflows
from tests.helpers.dead_letters import read_dead_letters
from tests.helpers.exactly_once import check_log
from tests.helpers.processes import ServiceProcess, started
from tests.helpers.running import running

ACK_WAIT = "2"
PARTITIONS = 4
NAMES = ("replica-a", "replica-b")


def scheduler(nats_url: str, name: str, partitions: int = PARTITIONS) -> ServiceProcess:
    env = {"PLAIT_NATS_URL": nats_url, "PLAIT_REPLICA": name, "PLAIT_ACK_WAIT_SECONDS": ACK_WAIT}
    return ServiceProcess("scheduler", {**env, "PLAIT_SCHEDULER_PARTITIONS": str(partitions)})


@pytest.fixture
def two_partitioned(nats_url: str) -> Iterator[list[ServiceProcess]]:
    yield from started([scheduler(nats_url, name) for name in NAMES])


def held(replica: ServiceProcess) -> set[int]:
    """The partitions a replica's log says it holds now."""
    partitions: set[int] = set()
    for event in list(replica.events):
        if event.get("event") == "partition_taken":
            partitions.add(int(str(event["partition"])))
        elif event.get("event") == "partition_lost":
            partitions.discard(int(str(event["partition"])))
    return partitions


def ids_in_every_partition(per_partition: int) -> list[str]:
    """Execution ids, ``per_partition`` of them in each partition."""
    found: dict[int, list[str]] = {partition: [] for partition in range(PARTITIONS)}
    number = 0
    while any(len(ids) < per_partition for ids in found.values()):
        execution_id = f"part-{number}"
        ids = found[partition_of("default", "development", execution_id, PARTITIONS)]
        if len(ids) < per_partition:
            ids.append(execution_id)
        number += 1
    return [execution_id for ids in found.values() for execution_id in ids]


async def test_killing_a_partitioned_replica_leaves_its_partitions_to_the_other(
    nats_url: str, two_partitioned: list[ServiceProcess]
) -> None:
    executor = ExecutorService(nats_url, concurrency=2, replica="executor", ack_wait_seconds=float(ACK_WAIT))
    async with running(executor.run), await AsyncClient.connect(nats_url) as client:
        handles = [await client.launch(workflows.chain, execution_id=i) for i in ids_in_every_partition(2)]
        async for stored in client.events(handles[0].id):
            decided_by = stored.decision.replica  # the replica its partition is pinned to
            break
        victim, survivor = two_partitioned if decided_by == NAMES[0] else two_partitioned[::-1]
        await anyio.to_thread.run_sync(victim.wait_for_event, "partition_taken")
        victims = held(victim)
        await anyio.to_thread.run_sync(victim.kill)
        assert victim.process.returncode == -9
        with anyio.fail_after(120):
            for handle in handles:
                assert await handle.result() == 0
        for handle in handles:
            events = [stored async for stored in client.events(handle.id)]
            check_log(events, nodes=10)
            state = None
            for stored in events:
                state = apply_decision(state, stored.decision, stored.sequence, stored.digest)
            assert state is not None and state.status == "succeeded"
    assert victims and victims <= held(survivor), "the survivor took over every partition the victim held"
    assert survivor.process.poll() is None


async def test_partitions_spread_over_the_replicas(nats_url: str, two_partitioned: list[ServiceProcess]) -> None:
    half = PARTITIONS // 2
    executor = ExecutorService(nats_url, concurrency=2, replica="executor", ack_wait_seconds=float(ACK_WAIT))
    async with running(executor.run), await AsyncClient.connect(nats_url) as client:
        for wave in ("first", "second"):
            ids = [f"{wave}-{i}" for i in ids_in_every_partition(1)]
            handles = [await client.launch(workflows.chain, execution_id=i) for i in ids]
            with anyio.fail_after(60):
                for handle in handles:
                    assert await handle.result() == 0
            # a partition is pinned when its first message is delivered, to whichever replica asked first; every ack
            # wait (2 s) a replica that holds more than its half gives one up to the other, standing by on it
            for replica in two_partitioned:
                await anyio.to_thread.run_sync(
                    lambda r=replica: r.wait_for(lambda _: len(held(r)) <= half, "its share or less", 30)
                )
    a, b = (held(replica) for replica in two_partitioned)
    assert len(a) == len(b) == half and not a & b, (a, b)


@pytest.mark.parametrize(("partitions", "told"), [(0, "PLAIT_SCHEDULER_PARTITIONS is 0"), (8, "is 8")])
def test_a_replica_set_otherwise_than_the_stream_is_refused(
    nats_url: str, two_partitioned: list[ServiceProcess], partitions: int, told: str
) -> None:
    other = scheduler(nats_url, "replica-c", partitions)
    try:
        assert other.process.wait(30) == 2
    finally:
        other.stop()
    lines = [str(e.get("line", "")) for e in other.events]
    assert any(told in line and f"split in {PARTITIONS} partitions" in line for line in lines), other.events


async def test_the_stream_stores_each_command_in_its_executions_partition_timers_too(nats_url: str) -> None:
    async with await AsyncClient.connect(nats_url) as client:
        js = client.js
        await ensure_streams(js)
        config = ConsumerConfig(durable_name="scheduler", filter_subject="plait.cmd.>", ack_wait=2.0)
        assert await partition_stream(js, PARTITIONS, config, 2.0) == [f"scheduler-p{p}" for p in range(PARTITIONS)]
        ids = ids_in_every_partition(1)
        for execution_id in ids:
            retry = RetryDue(command_id=f"retry:{execution_id}", execution_id=execution_id, node="n", attempt=1)
            await publish_command(js, retry, "default", "development")
        timer = RetryDue(command_id="timer", execution_id=ids[0], node="t", attempt=1)
        await schedule_command(js, timer, "default", "development", "t", datetime.now(UTC))
        stored = (await js.stream_info(COMMANDS_STREAM, subjects_filter="plait.cmd.>")).state.subjects
        assert stored == {f"plait.cmd.default.development.{i}.{p}.retry": 1 for p, i in enumerate(ids)}
        # the timer, fired by the server itself a second later, is stored in the same partition as its execution
        inbox = client.nc.new_inbox()
        arrived = await client.nc.subscribe(inbox)
        request = {"batch": 2, "expires": 10_000_000_000, "group": "scheduler"}
        await client.nc.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{COMMANDS_STREAM}.scheduler-p0", json.dumps(request).encode(), reply=inbox
        )
        delivered = [await arrived.next_msg(timeout=10) for _ in range(2)]
        subject = f"plait.cmd.default.development.{ids[0]}.0.retry"
        assert [(m.subject, json.loads(m.data)["command_id"]) for m in delivered] == [
            (subject, f"retry:{ids[0]}"),
            (subject, "timer"),
        ]


async def test_what_is_no_command_is_dead_lettered_from_its_partition_as_it_was_sent(
    nats_url: str, two_partitioned: list[ServiceProcess]
) -> None:
    async with await AsyncClient.connect(nats_url) as client:
        sent = ["plait.cmd.default.development.e-1.result.extra", "plait.cmd.default.development.e-2.result"]
        for subject in sent:
            await client.js.publish(subject, b"not a command", stream=COMMANDS_STREAM)
        letters = await read_dead_letters(client.js, 2)
    originals = sorted((letter.headers or {})[PLAIT_ORIGINAL_SUBJECT] for letter in letters)
    assert originals == sorted(sent)
    assert sorted(letter.subject for letter in letters) == sorted(f"plait.dlq.{subject}" for subject in sent)


async def test_a_stream_unpartitioned_as_the_docs_say_is_served_by_unpartitioned_replicas_again(nats_url: str) -> None:
    async with await AsyncClient.connect(nats_url) as client:
        js = client.js
        await ensure_streams(js)
        config = ConsumerConfig(durable_name="scheduler", filter_subject="plait.cmd.>", ack_wait=2.0)
        for name in await partition_stream(js, PARTITIONS, config, 2.0):
            await js.delete_consumer(COMMANDS_STREAM, name)
        info = await js.stream_info(COMMANDS_STREAM)
        await js.update_stream(dataclasses.replace(info.config, subject_transform=None))
        replica = scheduler(nats_url, "replica-a", 0)
        try:
            replica.wait_for_event("scheduler_started")
            restored = (await js.consumer_info(COMMANDS_STREAM, "scheduler")).config
            assert (restored.filter_subject, restored.filter_subjects) == ("plait.cmd.>", None)
            executor = ExecutorService(nats_url, concurrency=1, replica="executor", ack_wait_seconds=2.0)
            async with running(executor.run):
                handle = await client.launch(workflows.chain, execution_id="after-partitions")
                with anyio.fail_after(60):
                    assert await handle.result() == 0
        finally:
            replica.stop()
