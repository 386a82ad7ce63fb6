"""Each executor queue's dispatch consumer: one per (cluster, queue), whatever '-' their names hold, and the one an
earlier release made kept while it takes the queue's subject."""

from __future__ import annotations

import uuid

import anyio
import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from plait.adapters.streams import ensure_streams
from plait.errors import PlaitError
from plait.protocol import subjects
from plait_executor.service import ExecutorService, consumer_name, earlier_consumer_name, queue_consumer


def test_queues_whose_names_join_alike_have_consumers_of_their_own() -> None:
    assert consumer_name("gpu-a100", "train") != consumer_name("gpu", "a100-train")
    assert earlier_consumer_name("gpu-a100", "train") == earlier_consumer_name("gpu", "a100-train")
    assert consumer_name("local", "default") == "executor-local-default", "names without '-' as before"
    assert consumer_name("gpu-a100", "train") == "executor-8-gpu-a100-train"


async def test_the_consumer_an_earlier_release_made_is_kept_for_its_own_queue_only(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        cluster = f"gpu-{uuid.uuid4().hex[:6]}"
        earlier = earlier_consumer_name(cluster, "train")
        taken = subjects.dispatch_subject(cluster, "train")
        await js.add_consumer(
            subjects.DISPATCH_STREAM,
            ConsumerConfig(durable_name=earlier, filter_subject=taken, ack_policy=AckPolicy.EXPLICIT),
        )
        assert await queue_consumer(js, cluster, "train", taken) == earlier

        # The other queue whose earlier name is the same gets a consumer of its own.
        prefix, rest = cluster.split("-")
        other = subjects.dispatch_subject(prefix, f"{rest}-train")
        assert earlier_consumer_name(prefix, f"{rest}-train") == earlier
        assert await queue_consumer(js, prefix, f"{rest}-train", other) == consumer_name(prefix, f"{rest}-train")
    finally:
        await nc.close()


async def test_an_executor_whose_consumer_takes_another_subject_stops_and_says_so(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        cluster = f"c{uuid.uuid4().hex[:6]}"
        await js.add_consumer(
            subjects.DISPATCH_STREAM,
            ConsumerConfig(
                durable_name=consumer_name(cluster, "train"),
                filter_subject=subjects.dispatch_subject(cluster, "other"),
                ack_policy=AckPolicy.EXPLICIT,
            ),
        )
        executor = ExecutorService(nats_url, cluster=cluster, queue="train", replica="r")
        with (
            anyio.fail_after(30),
            pytest.raises(PlaitError, match=f"takes {subjects.dispatch_subject(cluster, 'other')}"),
        ):
            await executor.run()
    finally:
        await nc.close()
