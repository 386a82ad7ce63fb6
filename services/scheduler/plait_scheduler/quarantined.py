"""Taking the outbox's quarantined decisions again (``plait quarantine replay``).

Each is read back from the event stream as a message of a consumer of its own and handed to the outbox like any
other decision, so its dispatches and side work are done as they would have been; one that still does not decode
stays quarantined.
"""

from __future__ import annotations

import contextlib

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from plait import codec
from plait.adapters.quarantine import UNREADABLE, Retry
from plait.protocol import subjects
from plait.protocol.quarantine import QuarantineEntry
from plait_scheduler.outbox import Outbox

READ_SECONDS = 5.0


def retrying(js: JetStreamContext, outbox: Outbox) -> Retry:
    """The outbox's ``Retry``: hand each entry's decision to the outbox again."""

    async def retry(entries: list[QuarantineEntry]) -> dict[int, str]:
        unreadable: dict[int, str] = {}
        for entry in entries:
            msg = await _message_at(js, entry.subject, entry.sequence)
            try:
                codec.decision_decoder.decode(msg.data)
            except UNREADABLE as exc:
                unreadable[entry.sequence] = f"cannot be decoded: {type(exc).__name__}: {exc}"
                await msg.ack()
                continue
            await outbox.handle([msg])
        return unreadable

    return retry


async def _message_at(js: JetStreamContext, subject: str, sequence: int) -> Msg:
    """The event stream's message at ``sequence`` (on ``subject``), from a consumer made for it alone."""
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=sequence,
        ack_policy=AckPolicy.EXPLICIT,
        inactive_threshold=READ_SECONDS,
    )
    subscription = await js.pull_subscribe(subject, stream=subjects.EVENTS_STREAM, config=config)
    try:
        [msg] = await subscription.fetch(1, timeout=READ_SECONDS)
    finally:
        with contextlib.suppress(nats.errors.Error):
            await subscription.unsubscribe()
    return msg
