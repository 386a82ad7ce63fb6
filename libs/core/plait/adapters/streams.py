"""The five streams: their configurations, the size limits plait owns, and creating or updating them."""

from __future__ import annotations

import dataclasses
from typing import Any

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from plait.protocol import subjects

DUPLICATE_WINDOW_SECONDS = 120.0
DEAD_LETTER_MAX_AGE_SECONDS = 30 * 24 * 3600.0
DEAD_LETTER_MAX_BYTES = 1024**3  # then the oldest dead letters are dropped
DEAD_LETTER_MAX_MESSAGE_BYTES = 9 * 1024**2  # a command of up to the 8 MiB payload limit, with the reason's headers
QUARANTINE_MAX_BYTES = 256 * 1024**2  # entries are references of a few KiB: about 50,000 of them
QUARANTINE_MAX_MESSAGE_BYTES = 64 * 1024


def stream_configs(replicas: int = 1) -> list[StreamConfig]:
    """The five streams. Events and registrations are never deleted; commands and dispatch are work queues; dead
    letters and quarantine entries are kept within stated limits."""
    common: dict[str, Any] = {"storage": StorageType.FILE, "num_replicas": replicas}
    return [
        StreamConfig(
            name=subjects.EVENTS_STREAM,
            subjects=[f"{subjects.EVENTS_ROOT}.>", f"{subjects.REGISTRY_ROOT}.>", f"{subjects.CACHE_ROOT}.>"],
            allow_direct=True,
            deny_delete=True,
            deny_purge=True,
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            **common,
        ),
        StreamConfig(
            name=subjects.COMMANDS_STREAM,
            subjects=[f"{subjects.COMMANDS_ROOT}.>", f"{subjects.SCHEDULES_ROOT}.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            allow_msg_schedules=True,  # timers: a command published later by the server itself
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            **common,
        ),
        StreamConfig(
            name=subjects.DISPATCH_STREAM,
            subjects=[f"{subjects.DISPATCH_ROOT}.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            **common,
        ),
        StreamConfig(
            name=subjects.DEAD_LETTER_STREAM,
            subjects=[f"{subjects.DEAD_LETTER_ROOT}.>"],
            max_age=DEAD_LETTER_MAX_AGE_SECONDS,
            max_bytes=DEAD_LETTER_MAX_BYTES,
            max_msg_size=DEAD_LETTER_MAX_MESSAGE_BYTES,
            discard=DiscardPolicy.OLD,
            **common,
        ),
        StreamConfig(
            name=subjects.QUARANTINE_STREAM,
            subjects=[f"{subjects.QUARANTINE_ROOT}.>"],
            max_msgs_per_subject=1,  # an entry's latest record (kept, then resolved) is the entry
            max_bytes=QUARANTINE_MAX_BYTES,
            max_msg_size=QUARANTINE_MAX_MESSAGE_BYTES,
            discard=DiscardPolicy.OLD,
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            **common,
        ),
    ]


BOUNDED_STREAMS = frozenset({subjects.DEAD_LETTER_STREAM, subjects.QUARANTINE_STREAM})
"""Streams whose size limits are plait's: an existing one is brought to them (the others' limits are the
operator's to set)."""
SIZE_LIMITS = ("max_age", "max_bytes", "max_msg_size", "max_msgs_per_subject", "discard")


def _size_limits(config: StreamConfig) -> dict[str, Any]:
    if config.name not in BOUNDED_STREAMS:
        return {}
    return {limit: getattr(config, limit) for limit in SIZE_LIMITS}


async def ensure_streams(js: JetStreamContext, replicas: int | None = None) -> None:
    """Create the streams if missing (with ``replicas``, default 1); with ``replicas`` given, also bring
    existing ones to it; bring the dead-letter and quarantine streams to their size limits. Any replica of any
    service may call it."""
    for config in stream_configs(replicas or 1):
        try:
            info = await js.stream_info(config.name or "")
        except nats.js.errors.NotFoundError:
            try:
                await js.add_stream(config)
            except nats.js.errors.BadRequestError:
                await js.stream_info(config.name or "")  # created by a concurrent replica
            continue
        wanted = dataclasses.replace(
            info.config,
            subjects=config.subjects,
            allow_msg_schedules=config.allow_msg_schedules or info.config.allow_msg_schedules,
            num_replicas=replicas or info.config.num_replicas,
            **_size_limits(config),
        )
        if wanted != info.config:  # a stream made by an older release, or asked for more replicas
            await js.update_stream(wanted)
