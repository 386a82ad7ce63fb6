"""Workload 7: the broker's own floor — JetStream publish+ack of ~300-byte messages on the same server."""

from __future__ import annotations

import asyncio
import time

from nats.js.api import StorageType, StreamConfig
from nats.js.client import JetStreamContext

STREAM = "BENCH_RAW"
PAYLOAD = b"x" * 300


async def run(js: JetStreamContext, sync_count: int, pipelined_count: int, window: int = 256) -> dict[str, float]:
    """Messages/s publishing one at a time (awaiting each ack), and pipelined (``window`` acks in flight)."""
    await js.add_stream(StreamConfig(name=STREAM, subjects=["bench.raw.>"], storage=StorageType.FILE))
    try:
        started = time.perf_counter()
        for i in range(sync_count):
            await js.publish(f"bench.raw.{i % 100}", PAYLOAD, stream=STREAM)
        sync_rate = sync_count / (time.perf_counter() - started)
        started = time.perf_counter()
        for i in range(0, pipelined_count, window):
            acks = [
                await js.publish_async(f"bench.raw.{j % 100}", PAYLOAD, stream=STREAM)
                for j in range(i, min(i + window, pipelined_count))
            ]
            await asyncio.gather(*acks)
        pipelined_rate = pipelined_count / (time.perf_counter() - started)
    finally:
        await js.delete_stream(STREAM)
    return {"sync_msgs_per_s": sync_rate, "pipelined_msgs_per_s": pipelined_rate}
