"""Bringing a commands stream made by an earlier release to this release's layout.

Earlier releases kept the timers (message schedules) in the commands stream itself. A stream that allows
schedules takes a rollup header from anyone who may publish to it, and the server never turns schedules off
again; so the stream is made anew, without schedules, sourcing the timers stream. Its messages are first copied,
in order, to a holding stream (durable: a move stopped half-way starts again from there), then the commands stream
is deleted and made anew, each copy is published again (commands to the commands stream with their own
``Nats-Msg-Id``, timers to the timers stream aimed at their fired subject), and the holding stream is deleted.

The services' consumers of the commands stream go with it: run this (``plait streams ensure``) with the services
stopped; they make their consumers again when they start.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import nats.js.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg, StorageType, StreamConfig, StreamInfo

from plait.protocol import subjects
from plait.protocol.headers import (
    FIRED_TTL,
    NATS_SCHEDULE_TARGET,
    NATS_SCHEDULE_TTL,
    PLAIT_ORIGINAL_SUBJECT,
)

HOLDING_STREAM = "PLAIT_COMMANDS_MOVING"
HOLDING_ROOT = "plait.moving"
_HELD = "Plait-Held-"  # a schedule's headers, renamed while held (the holding stream takes no schedule or rollup)
_NOT_COPIED = ("Nats-Expected-", "Nats-Stream-Source", "Nats-Scheduler", "Nats-Schedule-Next")
log = structlog.get_logger()


async def move_commands_stream(js: JetStreamContext, make_streams: Callable[[], Awaitable[object]]) -> bool:
    """Move an earlier release's commands stream (one that allows schedules) to this release's layout;
    ``make_streams`` makes the commands and timers streams as this release has them. True when there was one to
    move (or a move to finish)."""
    commands = await _info(js, subjects.COMMANDS_STREAM)
    earlier = commands is not None and bool(commands.config.allow_msg_schedules)
    holding = await _info(js, HOLDING_STREAM)
    if not earlier and holding is None:
        return False
    if earlier and commands is not None:
        if holding is not None:  # a copy that stopped half-way: copy again, whole
            await js.purge_stream(HOLDING_STREAM)
        else:
            await js.add_stream(
                StreamConfig(
                    name=HOLDING_STREAM,
                    subjects=[f"{HOLDING_ROOT}.>"],
                    storage=StorageType.FILE,
                    num_replicas=commands.config.num_replicas,
                )
            )
        copied = 0
        async for message in _messages(js, commands):
            headers = {_held(k): v for k, v in (message.headers or {}).items()}
            headers[PLAIT_ORIGINAL_SUBJECT] = message.subject or ""
            await js.publish(f"{HOLDING_ROOT}.{copied}", message.data or b"", headers=headers, stream=HOLDING_STREAM)
            copied += 1
        await js.delete_stream(subjects.COMMANDS_STREAM)
        log.warning("commands_stream_moving", copied=copied)
    await make_streams()
    holding = await _info(js, HOLDING_STREAM)
    if holding is not None:
        moved = 0
        async for message in _messages(js, holding):
            await _publish_again(js, message)
            moved += 1
        await js.delete_stream(HOLDING_STREAM)
        log.warning("commands_stream_moved", moved=moved)
    return True


async def _publish_again(js: JetStreamContext, copy: RawStreamMsg) -> None:
    headers = {k.removeprefix(_HELD): v for k, v in (copy.headers or {}).items() if not k.startswith(_NOT_COPIED)}
    subject = headers.pop(PLAIT_ORIGINAL_SUBJECT)
    if subject.startswith(f"{subjects.SCHEDULES_ROOT}."):
        headers[NATS_SCHEDULE_TARGET] = subjects.fired_subject(headers[NATS_SCHEDULE_TARGET])
        headers[NATS_SCHEDULE_TTL] = FIRED_TTL
        await js.publish(subject, copy.data or b"", headers=headers, stream=subjects.TIMERS_STREAM)
    else:
        headers.pop("Nats-Rollup", None)
        await js.publish(subject, copy.data or b"", headers=headers, stream=subjects.COMMANDS_STREAM)


def _held(header: str) -> str:
    return f"{_HELD}{header}" if header.startswith(("Nats-Schedule", "Nats-Rollup")) else header


async def _info(js: JetStreamContext, stream: str) -> StreamInfo | None:
    try:
        return await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        return None


async def _messages(js: JetStreamContext, info: StreamInfo) -> AsyncIterator[RawStreamMsg]:
    """Every message of the stream, in order (the sequences deleted or taken meanwhile skipped)."""
    name = info.config.name or ""
    for sequence in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            yield await js.get_msg(name, seq=sequence)
        except nats.js.errors.NotFoundError:
            continue
