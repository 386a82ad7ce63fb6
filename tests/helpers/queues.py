"""What the commands and dispatch streams still hold for their consumers: what a work queue would hold."""

from __future__ import annotations

from nats.js import JetStreamContext

from plait.adapters.acked_trim import AckedTrimmer


async def waiting(js: JetStreamContext, stream: str) -> int:
    """The messages of ``stream`` not acknowledged by the consumer that takes them (or taken by none): what is left once
    the acknowledged ones are trimmed, as the schedulers do every second."""
    await AckedTrimmer(js, [stream]).trim(stream)
    messages: int = (await js.stream_info(stream)).state.messages
    return messages
