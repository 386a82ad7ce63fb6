"""Reading every message a stream holds on some subjects, once, in order."""

from __future__ import annotations

import anyio
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy


async def read_messages(js: JetStreamContext, stream: str, subject_filter: str, start: int = 1) -> list[Msg]:
    """The messages of ``stream`` on ``subject_filter`` from sequence ``start`` on, as they are now, oldest first
    (an ordered consumer)."""
    config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=max(start, 1))
    subscription = await js.subscribe(subject_filter, stream=stream, ordered_consumer=True, config=config)
    messages: list[Msg] = []
    try:
        info = await subscription.consumer_info()
        delivered = info.delivered.consumer_seq if info.delivered else 0
        if info.num_pending == 0 and not delivered:  # nothing to deliver, nor delivered already
            return messages
        async for message in subscription.messages:
            messages.append(message)
            if message.metadata.num_pending == 0:
                break
    finally:
        with anyio.CancelScope(shield=True):
            await subscription.unsubscribe()
    return messages
