"""Bringing the commands and dispatch streams made by an earlier release to this release's layout.

Earlier releases kept the timers (message schedules) in the commands stream itself. A stream that allows
schedules takes a rollup header from anyone who may publish to it, and the server never turns schedules off
again; so the stream is made anew, without schedules, sourcing the timers stream. Later ones made the commands and
dispatch streams work queues, whose every acknowledgement is a synced delete (``plait.adapters.acked_trim``); the
server never changes a stream's retention, so these too are made anew. A stream's messages are first copied, in
order, to a holding stream (durable: a move stopped half-way starts again from there), then the stream is deleted
and made anew, each copy is published again (with its own ``Nats-Msg-Id``; a commands stream's timers to the
timers stream aimed at their fired subject), and the holding stream is deleted.

The services' consumers of the stream go with it: run this (``plait streams ensure``) with the services stopped;
they make their consumers again when they start.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import nats.js.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg, RetentionPolicy, StorageType, StreamConfig, StreamInfo

from plait.protocol import subjects
from plait.protocol.headers import (
    FIRED_TTL,
    NATS_SCHEDULE_TARGET,
    NATS_SCHEDULE_TTL,
    PLAIT_ORIGINAL_SUBJECT,
)

HOLDING_STREAM = "PLAIT_COMMANDS_MOVING"
HOLDING_ROOT = "plait.moving"
DISPATCH_HOLDING_STREAM = "PLAIT_DISPATCH_MOVING"
DISPATCH_HOLDING_ROOT = "plait.moving-dispatch"
_HELD = "Plait-Held-"  # a schedule's headers, renamed while held (the holding stream takes no schedule or rollup)
_NOT_COPIED = ("Nats-Expected-", "Nats-Stream-Source", "Nats-Scheduler", "Nats-Schedule-Next")
log = structlog.get_logger()


async def move_commands_stream(js: JetStreamContext, make_streams: Callable[[], Awaitable[object]]) -> bool:
    """Move an earlier release's commands stream (one that allows schedules, or a work queue) to this release's
    layout; ``make_streams`` makes the commands and timers streams as this release has them. True when there was one
    to move (or a move to finish)."""
    return await _move(
        js, subjects.COMMANDS_STREAM, HOLDING_STREAM, HOLDING_ROOT, _earlier_commands, make_streams, _publish_again
    )


async def move_dispatch_stream(js: JetStreamContext, make_stream: Callable[[], Awaitable[object]]) -> bool:
    """Move an earlier release's dispatch stream (a work queue) to this release's layout; ``make_stream`` makes it as
    this release has it. True when there was one to move (or a move to finish)."""
    return await _move(
        js,
        subjects.DISPATCH_STREAM,
        DISPATCH_HOLDING_STREAM,
        DISPATCH_HOLDING_ROOT,
        _is_work_queue,
        make_stream,
        _publish_dispatch_again,
    )


def _is_work_queue(info: StreamInfo) -> bool:
    """A work queue deletes each message as it is acknowledged, a synced write each (plait.adapters.acked_trim)."""
    return info.config.retention == RetentionPolicy.WORK_QUEUE


def _earlier_commands(info: StreamInfo) -> bool:
    return bool(info.config.allow_msg_schedules) or _is_work_queue(info)


async def _move(
    js: JetStreamContext,
    stream: str,
    holding_stream: str,
    holding_root: str,
    is_earlier: Callable[[StreamInfo], bool],
    make_streams: Callable[[], Awaitable[object]],
    publish_again: Callable[[JetStreamContext, RawStreamMsg], Awaitable[None]],
) -> bool:
    """Copy ``stream``'s messages to a holding stream, make it anew, publish each copy again, and delete the holding
    stream; a move stopped half-way is taken up again from the holding stream."""
    found = await _info(js, stream)
    earlier = found is not None and is_earlier(found)
    holding = await _info(js, holding_stream)
    if not earlier and holding is None:
        return False
    if earlier and found is not None:
        if holding is not None:  # a copy that stopped half-way: copy again, whole
            await js.purge_stream(holding_stream)
        else:
            await js.add_stream(
                StreamConfig(
                    name=holding_stream,
                    subjects=[f"{holding_root}.>"],
                    storage=StorageType.FILE,
                    num_replicas=found.config.num_replicas,
                )
            )
        copied = 0
        async for message in _messages(js, found):
            headers = {_held(k): v for k, v in (message.headers or {}).items()}
            headers[PLAIT_ORIGINAL_SUBJECT] = message.subject or ""
            await js.publish(f"{holding_root}.{copied}", message.data or b"", headers=headers, stream=holding_stream)
            copied += 1
        await js.delete_stream(stream)
        log.warning("stream_moving", stream=stream, copied=copied)
    await make_streams()
    holding = await _info(js, holding_stream)
    if holding is not None:
        moved = 0
        async for message in _messages(js, holding):
            await publish_again(js, message)
            moved += 1
        await js.delete_stream(holding_stream)
        log.warning("stream_moved", stream=stream, moved=moved)
    return True


async def _publish_dispatch_again(js: JetStreamContext, copy: RawStreamMsg) -> None:
    subject, headers = _original(copy)
    await js.publish(subject, copy.data or b"", headers=headers, stream=subjects.DISPATCH_STREAM)


async def _publish_again(js: JetStreamContext, copy: RawStreamMsg) -> None:
    subject, headers = _original(copy)
    if subject.startswith(f"{subjects.SCHEDULES_ROOT}."):
        headers[NATS_SCHEDULE_TARGET] = subjects.fired_subject(headers[NATS_SCHEDULE_TARGET])
        headers[NATS_SCHEDULE_TTL] = FIRED_TTL
        await js.publish(subject, copy.data or b"", headers=headers, stream=subjects.TIMERS_STREAM)
    else:
        headers.pop("Nats-Rollup", None)
        await js.publish(subject, copy.data or b"", headers=headers, stream=subjects.COMMANDS_STREAM)


def _original(copy: RawStreamMsg) -> tuple[str, dict[str, str]]:
    """A held copy's original subject and headers, less those the server checked or set when it first stored it."""
    headers = {k.removeprefix(_HELD): v for k, v in (copy.headers or {}).items() if not k.startswith(_NOT_COPIED)}
    return headers.pop(PLAIT_ORIGINAL_SUBJECT), headers


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
    for sequence in range(max(info.state.first_seq, 1), info.state.last_seq + 1):  # 0 in one never written to
        try:
            yield await js.get_msg(name, seq=sequence)
        except nats.js.errors.NotFoundError:
            continue
