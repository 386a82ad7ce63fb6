"""Replaying the whole event log through the outbox, as a recreated ``dispatcher`` consumer does."""

from __future__ import annotations

import anyio
from nats.js import JetStreamContext

from plait.protocol import subjects
from plait_scheduler.service import OUTBOX_CONSUMER

DEADLINE = 30.0


async def forget_outbox_position(js: JetStreamContext) -> None:
    """Delete the outbox's durable consumer: the next scheduler recreates it at the start of the log."""
    await js.delete_consumer(subjects.EVENTS_STREAM, OUTBOX_CONSUMER)


async def outbox_caught_up(js: JetStreamContext) -> None:
    """Wait until the outbox has handled and acknowledged every decision stored so far."""
    with anyio.fail_after(DEADLINE):
        while True:
            info = await js.consumer_info(subjects.EVENTS_STREAM, OUTBOX_CONSUMER)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return
            await anyio.sleep(0.05)
