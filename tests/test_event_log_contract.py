"""The event log's contract: the JetStream store and the in-memory log behave the same."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import msgspec
import nats
import pytest

from plait import codec
from plait.adapters.event_log import EventLog, InMemoryEventLog
from plait.adapters.event_store import EventStore
from plait.adapters.streams import ensure_streams
from plait.core.decide import decide_batch
from plait.core.events import Decision
from plait.errors import ConflictError
from plait.protocol import subjects
from tests.helpers.launches import add_two_launch

SUBJECT = subjects.execution_subject("p", "d", "contract")
OTHER = subjects.execution_subject("p", "d", "contract-other")


@pytest.fixture(params=["jetstream", "in_memory"])
async def log(request: pytest.FixtureRequest) -> AsyncIterator[EventLog]:
    if request.param == "in_memory":
        yield InMemoryEventLog()
        return
    nc = await nats.connect(request.getfixturevalue("nats_url"))
    try:
        await ensure_streams(nc.jetstream())
        yield EventStore(nc.jetstream())
    finally:
        await nc.close()


def decision(replica: str, previous: str = "") -> Decision:
    """A decision with no events: the log stores any decision, whatever the state it would make."""
    return Decision(
        execution_id="contract", at=datetime.now(UTC), replica=replica, commands=(), previous=previous, events=()
    )


async def test_an_unknown_subject_is_empty(log: EventLog) -> None:
    assert await log.last_sequence(SUBJECT) == 0
    assert [stored async for stored in log.read(SUBJECT)] == []
    assert await log.load(SUBJECT) is None


async def test_appends_are_read_back_in_order_after_a_sequence(log: EventLog) -> None:
    first, first_digest = await log.append(SUBJECT, decision("a"), 0)
    await log.append(OTHER, decision("elsewhere"), 0)
    second, second_digest = await log.append(SUBJECT, decision("b", first_digest), first)
    assert first < second
    assert await log.last_sequence(SUBJECT) == second
    stored = [stored async for stored in log.read(SUBJECT)]
    assert [(s.sequence, s.digest, s.decision.replica) for s in stored] == [
        (first, first_digest, "a"),
        (second, second_digest, "b"),
    ]
    assert stored[0].digest == codec.digest(stored[0].data)
    assert [s.decision.replica async for s in log.read(SUBJECT, after=first)] == ["b"]
    assert [s async for s in log.read(SUBJECT, after=second)] == []


async def test_an_append_on_a_stale_sequence_conflicts_and_stores_nothing(log: EventLog) -> None:
    first, _ = await log.append(SUBJECT, decision("a"), 0)
    await log.append(SUBJECT, decision("b"), first)
    with pytest.raises(ConflictError, match="moved past sequence"):
        await log.append(SUBJECT, decision("late"), first)
    with pytest.raises(ConflictError):
        await log.append(OTHER, decision("not first"), first)
    assert [s.decision.replica async for s in log.read(SUBJECT)] == ["a", "b"]
    assert await log.last_sequence(OTHER) == 0


async def test_the_same_decision_is_stored_once(log: EventLog) -> None:
    """The expected sequence is checked first: appended again on its subject, a decision conflicts; where the
    expected sequence holds, the same bytes are acknowledged at the sequence they were stored at."""
    data = codec.encode(decision("a"))
    stored = await log.append_encoded(SUBJECT, data, 0)
    with pytest.raises(ConflictError):
        await log.append_encoded(SUBJECT, data, 0)
    assert await log.append_encoded(OTHER, data, 0) == stored
    assert [s.sequence async for s in log.read(SUBJECT)] == [stored[0]]
    assert await log.last_sequence(OTHER) == 0


async def test_load_builds_the_state_and_catches_it_up(log: EventLog) -> None:
    launch = add_two_launch("contract")
    outcome = decide_batch(None, [launch], datetime.now(UTC))
    launched = msgspec.structs.replace(decision("a"), commands=("launch",), events=tuple(outcome.events))
    first, first_digest = await log.append(SUBJECT, launched, 0)
    state = await log.load(SUBJECT)
    assert state is not None and state.status == "running"
    assert (state.last_sequence, state.last_digest) == (first, first_digest)
    second, second_digest = await log.append(SUBJECT, decision("b", first_digest), first)
    caught_up = await log.load(SUBJECT, state)
    assert caught_up is not None and (caught_up.last_sequence, caught_up.last_digest) == (second, second_digest)
