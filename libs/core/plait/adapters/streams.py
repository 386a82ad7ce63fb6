"""The streams: their configurations, the size limits plait owns, and creating or updating them (and the
values bucket, an object store: see ``plait.adapters.object_store``)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import nats.errors
import nats.js.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from plait.adapters.code_store import ensure_code_bucket
from plait.adapters.object_store import ensure_values_bucket
from plait.adapters.output_store import ensure_logs_bucket
from plait.protocol import subjects

log = structlog.get_logger()

DUPLICATE_WINDOW_SECONDS = 120.0
DEAD_LETTER_MAX_AGE_SECONDS = 30 * 24 * 3600.0
DEAD_LETTER_MAX_BYTES = 1024**3  # then the oldest dead letters are dropped
DEAD_LETTER_MAX_MESSAGE_BYTES = 9 * 1024**2  # a command of up to the 8 MiB payload limit, with the reason's headers
QUARANTINE_MAX_BYTES = 256 * 1024**2  # entries are references of a few KiB: about 50,000 of them
QUARANTINE_MAX_MESSAGE_BYTES = 64 * 1024
NOTIFICATIONS_MAX_AGE_SECONDS = 7 * 24 * 3600.0  # for subscribers that were away; webhooks are posted at once
NOTIFICATIONS_MAX_BYTES = 256 * 1024**2
NOTIFICATIONS_MAX_MESSAGE_BYTES = 64 * 1024
LIVE_OUTPUT_MAX_AGE_SECONDS = 3600.0  # long enough to follow from the start an attempt that is still running
LIVE_OUTPUT_MAX_BYTES = 64 * 1024**2  # then the oldest chunks go: a live view, not the stored output
LIVE_OUTPUT_MAX_MESSAGE_BYTES = 128 * 1024


def stream_configs(replicas: int = 1) -> list[StreamConfig]:
    """The streams. Events and registrations are never deleted; commands and dispatch are work queues; dead
    letters and quarantine entries are kept within stated limits."""
    common: dict[str, Any] = {"storage": StorageType.FILE, "num_replicas": replicas}
    return [
        StreamConfig(
            name=subjects.EVENTS_STREAM,
            subjects=[
                f"{subjects.EVENTS_ROOT}.>",
                f"{subjects.REGISTRY_ROOT}.>",
                f"{subjects.CACHE_ROOT}.>",
                f"{subjects.ACTIVATIONS_ROOT}.>",
            ],
            allow_direct=True,
            deny_delete=True,
            deny_purge=True,
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            **common,
        ),
        StreamConfig(
            name=subjects.COMMANDS_STREAM,
            subjects=[f"{subjects.COMMANDS_ROOT}.>", f"{subjects.SCHEDULES_ROOT}.>", f"{subjects.FIRES_ROOT}.>"],
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
        StreamConfig(
            name=subjects.NOTIFICATIONS_STREAM,
            subjects=[f"{subjects.NOTIFY_ROOT}.>"],
            max_age=NOTIFICATIONS_MAX_AGE_SECONDS,
            max_bytes=NOTIFICATIONS_MAX_BYTES,
            max_msg_size=NOTIFICATIONS_MAX_MESSAGE_BYTES,
            discard=DiscardPolicy.OLD,
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            **common,
        ),
        StreamConfig(  # a live view only (each attempt's output is stored whole when it ends): memory, not fsynced
            name=subjects.LIVE_OUTPUT_STREAM,
            subjects=[f"{subjects.LIVE_OUTPUT_ROOT}.>"],
            storage=StorageType.MEMORY,
            num_replicas=replicas,
            max_age=LIVE_OUTPUT_MAX_AGE_SECONDS,
            max_bytes=LIVE_OUTPUT_MAX_BYTES,
            max_msg_size=LIVE_OUTPUT_MAX_MESSAGE_BYTES,
            discard=DiscardPolicy.OLD,
        ),
        StreamConfig(  # signed chain heads, for auditors to copy elsewhere (plait.audit_signatures)
            name=subjects.CHECKPOINTS_STREAM,
            subjects=[f"{subjects.CHECKPOINT_ROOT}.>"],
            deny_delete=True,
            deny_purge=True,
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            **common,
        ),
    ]


BOUNDED_STREAMS = frozenset(
    {
        subjects.DEAD_LETTER_STREAM,
        subjects.QUARANTINE_STREAM,
        subjects.NOTIFICATIONS_STREAM,
        subjects.LIVE_OUTPUT_STREAM,
    }
)
"""Streams whose size limits are plait's: an existing one is brought to them (the others' limits are the
operator's to set)."""
SIZE_LIMITS = ("max_age", "max_bytes", "max_msg_size", "max_msgs_per_subject", "discard")


def _size_limits(config: StreamConfig) -> dict[str, Any]:
    if config.name not in BOUNDED_STREAMS:
        return {}
    return {limit: getattr(config, limit) for limit in SIZE_LIMITS}


SETTLING_SECONDS = 30.0
"""How long ``ensure_streams`` rides out a cluster that is still settling (no meta leader yet, a stream just made
by another replica not yet found, a stream with no leader yet, a request timed out) before it gives up."""
FIRST_RETRY_SECONDS = 0.05
LONGEST_RETRY_SECONDS = 1.0


class _Leaderless(Exception):
    """A replicated stream without an elected leader yet: it takes no message (publishes get no responders)."""


_SETTLING: tuple[type[Exception], ...] = (
    _Leaderless,
    nats.js.errors.NotFoundError,
    nats.js.errors.ServiceUnavailableError,
    nats.errors.TimeoutError,
)
"""Not NoResponders: a server without JetStream will not settle into one."""


async def ensure_streams(js: JetStreamContext, replicas: int | None = None) -> None:
    """Create the streams if missing (with ``replicas``, default 1); with ``replicas`` given, also bring
    existing ones to it; bring the dead-letter and quarantine streams to their size limits. Any replica of any
    service may call it, at the same time as others, while a cluster is still electing its leaders."""
    steps: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        (config.name or "", functools.partial(_ensure_stream, js, config, replicas))
        for config in stream_configs(replicas or 1)
    ]
    steps.append((subjects.VALUES_BUCKET, functools.partial(ensure_values_bucket, js, replicas)))
    steps.append((subjects.LOGS_BUCKET, functools.partial(ensure_logs_bucket, js, replicas)))
    steps.append((subjects.CODE_BUCKET, functools.partial(ensure_code_bucket, js, replicas)))
    for name, step in steps:
        delay, deadline = FIRST_RETRY_SECONDS, anyio.current_time() + SETTLING_SECONDS
        while True:
            try:
                await step()
                break
            except _SETTLING as exc:
                if anyio.current_time() + delay > deadline:
                    raise
                log.info("streams_settling", stream=name, reason=str(exc) or type(exc).__name__)
                await anyio.sleep(delay)  # the cluster sends no event when it has settled: ask again
                delay = min(delay * 2, LONGEST_RETRY_SECONDS)


async def _ensure_stream(js: JetStreamContext, config: StreamConfig, replicas: int | None) -> None:
    try:
        info = await js.stream_info(config.name or "")
    except nats.js.errors.NotFoundError:
        try:
            info = await js.add_stream(config)
        except nats.js.errors.BadRequestError:
            info = await js.stream_info(config.name or "")  # made by a concurrent replica: found once known here
    else:
        wanted = dataclasses.replace(
            info.config,
            subjects=config.subjects,
            allow_msg_schedules=config.allow_msg_schedules or info.config.allow_msg_schedules,
            num_replicas=replicas or info.config.num_replicas,
            **_size_limits(config),
        )
        if wanted != info.config:  # a stream made by an older release, or asked for more replicas
            info = await js.update_stream(wanted)
    if info.cluster is not None and not info.cluster.leader:
        raise _Leaderless(f"stream {config.name} has no leader yet")


async def ensure_streams_exist(js: JetStreamContext) -> None:
    """``ensure_streams`` only when a stream or bucket is missing: a client leaves existing streams as the services
    made them (it may lack the right to change them, see docs/security.md)."""
    names = [config.name or "" for config in stream_configs(1)]
    names += [f"OBJ_{bucket}" for bucket in (subjects.VALUES_BUCKET, subjects.LOGS_BUCKET, subjects.CODE_BUCKET)]
    for name in names:
        try:
            await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            await ensure_streams(js)
            return
