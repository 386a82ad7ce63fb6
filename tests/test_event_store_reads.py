"""EventStore reads: batched direct gets (ADR-31) give the same messages as one direct get per message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg

from plait.adapters import direct_reads
from plait.adapters.direct_reads import BatchUnsupported
from plait.adapters.event_store import EventStore
from plait.adapters.streams import ensure_streams
from plait.core.commands import LaunchExecution, ResolvedLaunch
from plait.core.decide import decide_batch
from plait.core.events import Decision
from plait.protocol import subjects
from plait.protocol.headers import NATS_MSG_ID
from tests import workflows

SUBJECT = subjects.execution_subject("p", "d", "reads")
OTHER = subjects.execution_subject("p", "d", "other")


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    connection = await nats.connect(nats_url)
    await ensure_streams(connection.jetstream())
    yield connection
    await connection.close()


async def fill(nc: NATS, sizes: list[int]) -> list[int]:
    """Publish messages of the given sizes to SUBJECT, each followed by one on OTHER; their sequences."""
    js = nc.jetstream()
    sequences = []
    for i, size in enumerate(sizes):
        ack = await js.publish(SUBJECT, bytes([65 + i % 26]) * size, headers={NATS_MSG_ID: f"id-{i}"})
        sequences.append(ack.seq)
        await js.publish(OTHER, b"other", headers={NATS_MSG_ID: f"other-{i}"})
    return sequences


def seen(messages: list[RawStreamMsg]) -> list[tuple[int | None, str | None, bytes | None, str]]:
    return [(m.seq, m.subject, m.data, (m.headers or {}).get(NATS_MSG_ID, "")) for m in messages]


async def one_by_one(store: EventStore, after: int = 0) -> list[RawStreamMsg]:
    return [raw async for raw in direct_reads.messages_one_by_one(store.js, subjects.EVENTS_STREAM, SUBJECT, after)]


async def test_batched_reads_match_one_by_one(nc: NATS, monkeypatch: pytest.MonkeyPatch) -> None:
    sequences = await fill(nc, [10, 2000, 30, 5000, 1, 700, 40])
    monkeypatch.setattr(direct_reads, "BATCH_MESSAGES", 3)  # several batches, one stopped by size
    monkeypatch.setattr(direct_reads, "BATCH_BYTES", 1500)
    store = EventStore(nc.jetstream())
    batched = [raw async for raw in store.raw(SUBJECT)]
    assert [m.seq for m in batched] == sequences
    assert seen(batched) == seen(await one_by_one(store))
    assert [m.headers and m.headers[NATS_MSG_ID] for m in batched] == [f"id-{i}" for i in range(7)]
    assert store.batched
    after = [raw async for raw in store.raw(SUBJECT, after=sequences[3])]
    assert seen(after) == seen(await one_by_one(store, sequences[3]))
    assert [raw async for raw in store.raw(SUBJECT, after=sequences[-1])] == []
    assert [raw async for raw in store.raw(subjects.execution_subject("p", "d", "missing"))] == []


async def test_a_read_stopped_early_leaves_no_subscription(nc: NATS, monkeypatch: pytest.MonkeyPatch) -> None:
    await fill(nc, [10] * 5)
    monkeypatch.setattr(direct_reads, "BATCH_MESSAGES", 2)
    store = EventStore(nc.jetstream())
    subscriptions = len(nc._subs)
    reader = store.raw(SUBJECT)
    async for _ in reader:
        break
    await reader.aclose()
    assert len(nc._subs) == subscriptions
    assert len([raw async for raw in store.raw(SUBJECT)]) == 5
    assert len(nc._subs) == subscriptions


async def test_falls_back_to_one_by_one_when_the_server_does_not_batch(
    nc: NATS, monkeypatch: pytest.MonkeyPatch
) -> None:
    sequences = await fill(nc, [10, 20, 30])
    store = EventStore(nc.jetstream())
    calls = 0

    async def refuse(js: JetStreamContext, stream: str, subject: str, after: int) -> AsyncIterator[RawStreamMsg]:
        nonlocal calls
        calls += 1
        raise BatchUnsupported("the server answered with a single message")
        yield  # an async generator

    monkeypatch.setattr(direct_reads, "batched_messages", refuse)
    assert [m.seq for m in [raw async for raw in store.raw(SUBJECT)]] == sequences
    assert [m.seq for m in [raw async for raw in store.raw(SUBJECT)]] == sequences
    assert calls == 1  # remembered: the next read goes one by one at once
    assert not store.batched


async def test_decisions_load_through_batches(nc: NATS) -> None:
    subject = subjects.execution_subject("p", "d", "loaded")
    store = EventStore(nc.jetstream())
    command = LaunchExecution(
        command_id="launch",
        execution_id="loaded",
        project="p",
        domain="d",
        workflow=workflows.add_two.name,
        version=workflows.add_two.spec.version,
        inputs={"a": 1, "b": 2},
    )
    outcome = decide_batch(None, [ResolvedLaunch(command=command, workflow=workflows.add_two.spec)], datetime.now(UTC))
    decision = Decision(
        execution_id="loaded",
        at=datetime.now(UTC),
        replica="r0",
        commands=("launch",),
        previous="",
        events=tuple(outcome.events),
    )
    sequence, digest = await store.append(subject, decision, 0)
    state = await store.load(subject)
    assert state is not None
    assert (state.last_sequence, state.last_digest) == (sequence, digest)
    assert [stored.sequence for stored in [s async for s in store.read(subject)]] == [sequence]


async def test_last_messages_reads_the_newest_of_many_subjects_at_once(
    nc: NATS, monkeypatch: pytest.MonkeyPatch
) -> None:
    js = nc.jetstream()
    written = {}
    for i in range(7):
        subject = subjects.execution_subject("p", "d", f"many-{i}")
        for version in range(i % 3 + 1):
            ack = await js.publish(subject, f"{i}.{version}".encode())
        written[subject] = (ack.seq, f"{i}.{version}".encode())
    never = subjects.execution_subject("p", "d", "never-written")
    monkeypatch.setattr(direct_reads, "MULTI_LAST_SUBJECTS", 3)  # several requests
    newest = await direct_reads.last_messages(js, subjects.EVENTS_STREAM, [*written, never])
    assert {subject: (raw.seq, raw.data) for subject, raw in newest.items()} == written
    assert await direct_reads.last_messages(js, subjects.EVENTS_STREAM, [never]) == {}
