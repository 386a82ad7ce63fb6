"""Dispatch chunks: how a decision's queued attempts are cut into messages, the ids those messages are published
under, and the chunk record read back as the attempts' dispatches."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from plait import codec
from plait.core.decide import decide_batch
from plait.core.dispatch import (
    ChunkedAttempt,
    Dispatch,
    DispatchChunk,
    chunk_queued,
    dispatch_of,
    dispatches_in,
    record_of,
)
from plait.core.events import NodeQueued
from plait.core.ids import attempt_id
from plait.core.state import Execution
from tests import definitions
from tests.helpers.launching import resolved_launch

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
EXECUTION = "exec-1"


def queued(node: str, queue: str = "default", cluster: str = "", inputs: dict[str, object] | None = None) -> NodeQueued:
    return NodeQueued(
        node=node,
        attempt_id=attempt_id(EXECUTION, node, 1),
        attempt=1,
        task="tests.definitions.scale",
        queue=queue,
        inputs={"x": 1} if inputs is None else inputs,
        cluster=cluster,
    )


def launched_fan_out() -> tuple[Execution, list[NodeQueued]]:
    outcome = decide_batch(None, [resolved_launch(definitions.fan_out_fan_in.spec, {"x": 3}, EXECUTION)], AT)
    assert outcome.state is not None
    return outcome.state, [e for e in outcome.events if isinstance(e, NodeQueued)]


def test_a_decisions_attempts_for_one_queue_are_cut_into_chunks_in_their_order() -> None:
    events = [queued(f"n{i}") for i in range(70)]
    chunks = chunk_queued(events, "local", most_attempts=32, least_chunks=1)
    assert [len(chunk.events) for chunk in chunks] == [32, 32, 6]
    assert [chunk.index for chunk in chunks] == [0, 1, 2]
    assert [e for chunk in chunks for e in chunk.events] == events
    assert {(chunk.cluster, chunk.queue, chunk.of) for chunk in chunks} == {("local", "default", 70)}


def test_a_few_attempts_spread_over_several_messages_of_two_and_many_fill_whole_chunks() -> None:
    def sizes(attempts: int, least_attempts: int = 2) -> list[int]:
        events = [queued(f"n{i}") for i in range(attempts)]
        chunks = chunk_queued(events, "local", most_attempts=32, least_chunks=8, least_attempts=least_attempts)
        return [len(chunk.events) for chunk in chunks]

    assert sizes(1) == [1]
    assert sizes(2) == [2]  # a small execution's two tasks: one message (an executor hands on what waits)
    assert sizes(5) == [2, 2, 1]
    assert sizes(5, least_attempts=1) == [1] * 5
    assert sizes(32) == [4] * 8
    assert sizes(1000) == [32] * 31 + [8]


def test_each_queue_and_cluster_has_chunks_of_its_own() -> None:
    events = [queued("a"), queued("b", queue="gpu"), queued("c"), queued("d", cluster="east"), queued("e", "gpu")]
    chunks = chunk_queued(events, "local", least_chunks=1)
    assert [(c.cluster, c.queue, [e.node for e in c.events]) for c in chunks] == [
        ("local", "default", ["a", "c"]),
        ("local", "gpu", ["b", "e"]),
        ("east", "default", ["d"]),
    ]


def test_a_chunk_closes_before_its_inputs_pass_the_byte_limit_and_a_large_attempt_travels_alone() -> None:
    big = {"x": "y" * 600}
    events = [queued("a"), queued("b", inputs=big), queued("c"), queued("d")]
    chunks = chunk_queued(events, "local", most_bytes=500, least_chunks=1)
    assert [[e.node for e in chunk.events] for chunk in chunks] == [["a"], ["b"], ["c", "d"]]


def test_the_same_decision_gives_the_same_chunks_and_ids_on_every_replica() -> None:
    events = [queued(f"n{i}") for i in range(40)]
    ids = [chunk.message_id(EXECUTION, 7) for chunk in chunk_queued(events, "local", least_chunks=1)]
    assert ids == [chunk.message_id(EXECUTION, 7) for chunk in chunk_queued(list(events), "local", least_chunks=1)]
    assert ids == [f"{EXECUTION}/7/local.default/0", f"{EXECUTION}/7/local.default/1"]
    assert len({chunk.message_id(EXECUTION, 8) for chunk in chunk_queued(events, "local")} & set(ids)) == 0


def test_a_lone_attempt_keeps_the_id_and_record_every_dispatch_had_before_chunks() -> None:
    state, events = launched_fan_out()
    [chunk] = chunk_queued(events[:1], "local")
    assert chunk.message_id(EXECUTION, 3) == events[0].attempt_id
    assert record_of(state, chunk.events, 3) == dispatch_of(state, events[0], 3)


def test_a_chunk_reads_back_as_the_dispatches_of_its_attempts() -> None:
    state, events = launched_fan_out()
    assert len(events) == 5
    record = record_of(state, events, 3)
    assert isinstance(record, DispatchChunk) and len(record.tasks) == 1, "a task spec once, however many attempts"
    decoded = codec.dispatch_record_decoder.decode(codec.encode(record))
    assert dispatches_in(decoded) == [dispatch_of(state, event, 3) for event in events]


def test_an_old_single_dispatch_message_still_reads_as_one_attempt() -> None:
    state, events = launched_fan_out()
    old = codec.encode(dispatch_of(state, events[0], 3))
    assert msgspec.json.decode(old)["type"] == "dispatch.v1"
    assert dispatches_in(codec.dispatch_record_decoder.decode(old)) == [dispatch_of(state, events[0], 3)]


def test_a_chunk_naming_a_task_it_does_not_carry_or_carrying_no_attempt_is_refused() -> None:
    state, events = launched_fan_out()
    record = record_of(state, events, 3)
    assert isinstance(record, DispatchChunk)
    stray = ChunkedAttempt(node="x", attempt_id="exec-1/x/1", attempt=1, task="no.such.task", inputs={})
    with pytest.raises(ValueError, match=r"names task 'no\.such\.task', which the chunk does not carry"):
        dispatches_in(msgspec.structs.replace(record, attempts=[*record.attempts, stray]))
    with pytest.raises(ValueError, match="carries no attempt"):
        dispatches_in(msgspec.structs.replace(record, attempts=[]))
    assert isinstance(dispatches_in(record)[0], Dispatch)
