"""Reading the dead-letter stream in tests."""

from __future__ import annotations

import anyio
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from plait.protocol import subjects


async def read_dead_letters(js: JetStreamContext, count: int, timeout: float = 60) -> list[Msg]:
    """The first ``count`` dead letters, waiting for them up to ``timeout`` seconds."""
    sub = await js.pull_subscribe(
        f"{subjects.DEAD_LETTER_ROOT}.>",
        durable=None,
        stream=subjects.DEAD_LETTER_STREAM,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    kept: list[Msg] = []
    try:
        with anyio.fail_after(timeout):
            while len(kept) < count:
                try:
                    kept += await sub.fetch(count - len(kept), timeout=1)
                except nats.errors.TimeoutError:
                    continue
    finally:
        await sub.unsubscribe()
    return kept
