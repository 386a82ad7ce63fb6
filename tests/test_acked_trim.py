"""Trimming the commands and dispatch streams (plait.adapters.acked_trim) on a real nats-server: what consumers
acknowledged is purged, nothing else; a subject no consumer takes keeps its messages, as on a work queue."""

from __future__ import annotations

import uuid

import anyio
import nats
import pytest
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy, SequenceInfo

from plait.adapters.acked_trim import AckedTrimmer, collide, trim_points
from plait.adapters.streams import ensure_streams
from plait.protocol import subjects

DEADLINE = 30.0


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("a.b", "a.b", True),
        ("a.b", "a.c", False),
        ("a.*", "a.c", True),
        ("a.>", "a.c.d", True),
        ("a.>", "a", False),
        ("a.b", "a.b.c", False),
        ("a.*.c", "a.b.>", True),
        ("a.*.c", "a.b.d", False),
        (">", "x.y", True),
    ],
)
def test_filters_collide_when_a_subject_matches_both(first: str, second: str, expected: bool) -> None:
    assert collide(first, second) is expected
    assert collide(second, first) is expected


def _consumer(
    filters: list[str],
    floor: int,
    delivered: int,
    awaiting: int,
    durable: str | None = "c",
    ack_policy: AckPolicy = AckPolicy.EXPLICIT,
) -> ConsumerInfo:
    return ConsumerInfo(
        name=durable or "ephemeral",
        stream_name="S",
        created=0.0,
        config=ConsumerConfig(filter_subjects=filters, durable_name=durable, ack_policy=ack_policy),
        ack_floor=SequenceInfo(consumer_seq=0, stream_seq=floor),
        delivered=SequenceInfo(consumer_seq=0, stream_seq=delivered),
        num_ack_pending=awaiting,
    )


def test_a_subject_two_consumers_take_is_trimmed_to_the_slower_ones_point() -> None:
    points = trim_points(
        [
            _consumer(["q.a"], floor=10, delivered=12, awaiting=2),
            _consumer(["q.*"], floor=4, delivered=9, awaiting=1),
            _consumer(["r.b"], floor=3, delivered=20, awaiting=0),  # nothing awaits: all it delivered is done
        ]
    )
    assert points == {"q.a": 4, "q.*": 4, "r.b": 20}


async def _stored_subjects(js: JetStreamContext, stream: str) -> list[tuple[int, str]]:
    info = await js.stream_info(stream)
    stored = []
    for sequence in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            message = await js.get_msg(stream, seq=sequence)
        except nats.js.errors.NotFoundError:
            continue
        stored.append((sequence, message.subject or ""))
    return stored


def test_readers_that_take_no_work_neither_purge_nor_hold_back() -> None:
    """An ephemeral consumer, or one that acknowledges nothing (``nats stream view``'s), only reads."""
    points = trim_points(
        [
            _consumer(["q.a"], floor=10, delivered=10, awaiting=0),
            _consumer([">"], floor=0, delivered=30, awaiting=0, durable=None, ack_policy=AckPolicy.NONE),
            _consumer(["q.*"], floor=2, delivered=30, awaiting=5, durable=None),
            _consumer(["q.b"], floor=0, delivered=30, awaiting=0, durable="viewer", ack_policy=AckPolicy.NONE),
        ]
    )
    assert points == {"q.a": 10}


async def test_only_what_consumers_acknowledged_is_purged(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        cluster = f"c{uuid.uuid4().hex[:8]}"
        taken, untaken, given_up = (subjects.dispatch_subject(cluster, queue) for queue in ("taken", "untaken", "gone"))
        sequences = {}
        for index in range(4):
            for subject in (taken, untaken, given_up):
                sequences[subject, index] = (
                    await js.publish(subject, f"{index}".encode(), stream=subjects.DISPATCH_STREAM)
                ).seq
        config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=0.5)
        await js.add_consumer(subjects.DISPATCH_STREAM, config, durable_name=f"{cluster}-taken", filter_subject=taken)
        await js.add_consumer(
            subjects.DISPATCH_STREAM, config, durable_name=f"{cluster}-gone", filter_subject=given_up, max_deliver=1
        )
        taker = await js.pull_subscribe_bind(f"{cluster}-taken", stream=subjects.DISPATCH_STREAM)
        first_two = await taker.fetch(2, timeout=DEADLINE)
        for message in first_two:
            await message.ack_sync()
        held = await taker.fetch(1, timeout=DEADLINE)  # delivered, not acknowledged: kept
        giver = await js.pull_subscribe_bind(f"{cluster}-gone", stream=subjects.DISPATCH_STREAM)
        dropped, *rest = await giver.fetch(4, timeout=DEADLINE)  # the first is given up after its one delivery
        for message in rest:
            await message.ack_sync()
        with anyio.fail_after(DEADLINE):  # its ack wait passes: nothing awaits an acknowledgement any more
            while (await js.consumer_info(subjects.DISPATCH_STREAM, f"{cluster}-gone")).num_ack_pending:  # noqa: ASYNC110
                await anyio.sleep(0.1)

        trimmer = AckedTrimmer(js, [subjects.DISPATCH_STREAM])
        await trimmer.trim_all()

        left = {sequence for sequence, subject in await _stored_subjects(js, subjects.DISPATCH_STREAM)}
        assert {sequences[taken, i] for i in range(4)} & left == {sequences[taken, 2], sequences[taken, 3]}
        assert {sequences[untaken, i] for i in range(4)} <= left  # no consumer takes it: it waits, whole
        assert not {sequences[given_up, i] for i in range(4)} & left
        assert held[0].metadata.sequence.stream == sequences[taken, 2]
        assert dropped.metadata.sequence.stream == sequences[given_up, 0]

        await trimmer.trim_all()  # the server moves an ack floor up to the consumer's next message after a purge
        purges = trimmer.purges
        await trimmer.trim_all()  # nobody moved on: nothing is asked again
        assert trimmer.purges == purges
        await held[0].ack_sync()
        await trimmer.trim_all()
        left = {sequence for sequence, subject in await _stored_subjects(js, subjects.DISPATCH_STREAM)}
        assert {sequences[taken, i] for i in range(4)} & left == {sequences[taken, 3]}
    finally:
        await nc.close()


@pytest.mark.parametrize("viewer_filter", [None, f"{subjects.DISPATCH_ROOT}.>"])
async def test_a_reader_of_the_stream_leaves_an_unconsumed_queue_its_dispatches(
    nats_url: str, viewer_filter: str | None
) -> None:
    """An operator reads the stream through an ephemeral consumer that acknowledges nothing (as ``nats stream view``
    does), past the dispatch of a queue whose executors have not started: that dispatch stays for them."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        cluster = f"c{uuid.uuid4().hex[:8]}"
        served, waiting = subjects.dispatch_subject(cluster, "served"), subjects.dispatch_subject(cluster, "gpu")
        waiting_seq = (await js.publish(waiting, b"for gpu", stream=subjects.DISPATCH_STREAM)).seq
        for index in range(3):
            await js.publish(served, f"{index}".encode(), stream=subjects.DISPATCH_STREAM)
        durable = f"executor-{cluster}-served"
        await js.add_consumer(
            subjects.DISPATCH_STREAM,
            ConsumerConfig(durable_name=durable, filter_subject=served, ack_policy=AckPolicy.EXPLICIT),
        )
        taker = await js.pull_subscribe_bind(durable, stream=subjects.DISPATCH_STREAM)
        for message in await taker.fetch(3, timeout=DEADLINE):
            await message.ack_sync()
        viewer = await js.add_consumer(
            subjects.DISPATCH_STREAM,
            ConsumerConfig(
                name=f"view-{uuid.uuid4().hex[:8]}",
                filter_subject=viewer_filter,
                ack_policy=AckPolicy.NONE,
                deliver_policy=DeliverPolicy.ALL,
                inactive_threshold=30.0,
            ),
        )
        reader = await js.pull_subscribe_bind(viewer.name, stream=subjects.DISPATCH_STREAM)
        await reader.fetch((await js.stream_info(subjects.DISPATCH_STREAM)).state.messages, timeout=DEADLINE)

        trimmer = AckedTrimmer(js, [subjects.DISPATCH_STREAM])
        await trimmer.trim_all()

        left = {sequence for sequence, _ in await _stored_subjects(js, subjects.DISPATCH_STREAM)}
        assert waiting_seq in left, "the dispatch no executor has taken yet was purged"
        assert trimmer.purges == 1, "what the served queue's executor acknowledged is purged"
    finally:
        await nc.close()
