"""The streams: their configurations, the size limits plait owns, creating or updating them (and the buckets:
object stores and key-value buckets), and checking that they are as this release needs them.

Where NATS confines its users, only the operator's credential may create, update, purge or delete a stream
(deploy/nats/tenants.conf): ``plait streams ensure`` makes them; services with a confined credential only check
(``plait.adapters.stream_readiness``)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import nats.errors
import nats.js.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig, StreamSource, SubjectTransform

from plait.adapters.announcements import announcements_bucket
from plait.adapters.buckets import refuse_rollups
from plait.adapters.code_store import ensure_code_bucket
from plait.adapters.commands_upgrade import move_commands_stream, move_dispatch_stream
from plait.adapters.connection import authenticated, refusal
from plait.adapters.object_store import ensure_values_bucket
from plait.adapters.output_store import ensure_logs_bucket
from plait.errors import PlaitError, Unavailable
from plait.protocol import subjects
from plait.protocol.executors import ANNOUNCEMENT_TTL_SECONDS as EXECUTOR_ANNOUNCEMENT_TTL_SECONDS
from plait.protocol.executors import EXECUTORS_BUCKET
from plait.protocol.services import ANNOUNCEMENT_TTL_SECONDS as SERVICE_ANNOUNCEMENT_TTL_SECONDS
from plait.protocol.services import SERVICES_BUCKET

log = structlog.get_logger()
_T = TypeVar("_T")

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
    """The streams. Events and registrations are never deleted; commands and dispatch keep each message until the
    consumer that takes it has acknowledged it, then the schedulers purge it (``plait.adapters.acked_trim``: not
    work queues, whose every acknowledgement is a synced delete); dead letters and quarantine entries are kept within
    stated limits."""
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
        # Clients and tasks publish here: no message schedules, for a stream that allows them takes a rollup header
        # from anyone (one message would empty it). The timers' fired copies come in from the timers stream.
        StreamConfig(
            name=subjects.COMMANDS_STREAM,
            subjects=[f"{subjects.COMMANDS_ROOT}.>", f"{subjects.FIRES_ROOT}.>"],
            retention=RetentionPolicy.LIMITS,
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            sources=[
                StreamSource(
                    name=subjects.TIMERS_STREAM,
                    subject_transforms=[SubjectTransform(src=f"{subjects.FIRED_ROOT}.>", dest="plait.>")],
                )
            ],
            **common,
        ),
        # Only the services publish here: timers (a command published later by the server itself, whoever runs
        # then) and their fired copies, kept FIRED_TTL after firing (the commands stream takes them at once).
        StreamConfig(
            name=subjects.TIMERS_STREAM,
            subjects=[f"{subjects.SCHEDULES_ROOT}.>", f"{subjects.FIRED_ROOT}.>"],
            allow_msg_schedules=True,
            allow_msg_ttl=True,
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            **common,
        ),
        StreamConfig(
            name=subjects.DISPATCH_STREAM,
            subjects=[f"{subjects.DISPATCH_ROOT}.>"],
            retention=RetentionPolicy.LIMITS,
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
    # a limit left unset is the server's default, which it reports as a value (0, -1): not a difference
    return {limit: value for limit in SIZE_LIMITS if (value := getattr(config, limit)) is not None}


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
    nats.js.errors.BadRequestError,  # settling with NO_PEERS_FOR_PLACEMENT only
)
"""Not NoResponders: a server without JetStream will not settle into one."""
NO_PEERS_FOR_PLACEMENT = 10005
"""The error code of a stream made or changed while fewer of the cluster's servers are current than its replicas (one
restarting, or not yet known to the meta leader): settling, unless the cluster is smaller than that for good."""


ENSURE_COMMAND = "plait streams ensure"
"""What makes or brings the streams to this release, with the operator's credentials (docs/operations.md)."""


@dataclasses.dataclass(frozen=True)
class Ensured:
    """What ``ensure_streams`` did to one stream or bucket: ``created``, ``updated`` or ``unchanged``."""

    name: str
    action: str


def bucket_streams() -> dict[str, str]:
    """The buckets plait uses, each with the stream that holds it."""
    objects = (subjects.VALUES_BUCKET, subjects.LOGS_BUCKET, subjects.CODE_BUCKET)
    return {bucket: f"OBJ_{bucket}" for bucket in objects} | {
        bucket: f"KV_{bucket}" for bucket in (SERVICES_BUCKET, EXECUTORS_BUCKET)
    }


async def ensure_streams(js: JetStreamContext, replicas: int | None = None) -> list[Ensured]:
    """Create the streams and buckets if missing (with ``replicas``, default 1); with ``replicas`` given, also bring
    existing streams to it; bring the bounded streams to their size limits. Any replica of any service may call it,
    at the same time as others, while a cluster is still electing its leaders. It needs the right to create and
    update streams: only the operator's credential has it where NATS confines its users (docs/security.md)."""
    steps: list[tuple[str, Callable[[], Awaitable[str]]]] = [
        (config.name or "", functools.partial(_ensure_stream, js, config, replicas))
        for config in stream_configs(replicas or 1)
    ]
    buckets: dict[str, Callable[[], Awaitable[object]]] = {
        subjects.VALUES_BUCKET: functools.partial(ensure_values_bucket, js, replicas),
        subjects.LOGS_BUCKET: functools.partial(ensure_logs_bucket, js, replicas),
        subjects.CODE_BUCKET: functools.partial(ensure_code_bucket, js, replicas),
        SERVICES_BUCKET: functools.partial(
            announcements_bucket, js, SERVICES_BUCKET, SERVICE_ANNOUNCEMENT_TTL_SECONDS, replicas
        ),
        EXECUTORS_BUCKET: functools.partial(
            announcements_bucket, js, EXECUTORS_BUCKET, EXECUTOR_ANNOUNCEMENT_TTL_SECONDS, replicas
        ),
    }
    for bucket, stream in bucket_streams().items():
        steps.append((stream, functools.partial(_ensure_bucket, js, stream, buckets[bucket])))
    move_commands = functools.partial(
        move_commands_stream, js, functools.partial(_ensure_commands_and_timers, js, replicas)
    )
    if await _once_settled(js, subjects.COMMANDS_STREAM, move_commands):
        log.warning("commands_stream_made_anew", stream=subjects.COMMANDS_STREAM)
    move_dispatch = functools.partial(
        move_dispatch_stream, js, functools.partial(_ensure_named, js, replicas, subjects.DISPATCH_STREAM)
    )
    if await _once_settled(js, subjects.DISPATCH_STREAM, move_dispatch):
        log.warning("dispatch_stream_made_anew", stream=subjects.DISPATCH_STREAM)
    return [Ensured(name, await _once_settled(js, name, step)) for name, step in steps]


async def ensure_stream(js: JetStreamContext, name: str, replicas: int | None = None) -> str:
    """``ensure_streams`` for the one stream ``name`` (``created``, ``updated`` or ``unchanged``): a memory stream
    that a standalone nats-server lost when it restarted is made again by whoever finds it gone."""
    return await _once_settled(js, name, functools.partial(_ensure_stream, js, _config_named(name, replicas), replicas))


async def _once_settled(js: JetStreamContext, name: str, step: Callable[[], Awaitable[_T]]) -> _T:
    """``step`` on stream ``name``, asked again while the cluster settles (no leader yet, or no answer in time)."""
    delay, deadline = FIRST_RETRY_SECONDS, anyio.current_time() + SETTLING_SECONDS
    while True:
        try:
            return await step()
        except _SETTLING as exc:
            if isinstance(exc, nats.js.errors.BadRequestError) and exc.err_code != NO_PEERS_FOR_PLACEMENT:
                raise
            if (refused := refusal(js, "$JS.API.STREAM.")) is not None:  # not settling: never allowed
                raise StreamsRefused(f"stream {name}: NATS refused it ({refused}): {REFUSED_HINT}") from exc
            if anyio.current_time() + delay > deadline:
                raise
            log.info("streams_settling", stream=name, reason=str(exc) or type(exc).__name__)
            await anyio.sleep(delay)  # the cluster sends no event when it has settled: ask again
            delay = min(delay * 2, LONGEST_RETRY_SECONDS)


REFUSED_HINT = (
    "only the operator's credential may create or update streams where NATS confines its users (PLAIT_NATS_USER="
    "plait-operator and PLAIT_NATS_PASSWORD_FILE; docs/security.md)"
)


class StreamsRefused(PlaitError):
    """NATS refused to create or update a stream: this credential may not manage streams."""


async def _ensure_commands_and_timers(js: JetStreamContext, replicas: int | None) -> None:
    await _ensure_named(js, replicas, subjects.COMMANDS_STREAM, subjects.TIMERS_STREAM)


async def _ensure_named(js: JetStreamContext, replicas: int | None, *names: str) -> None:
    for name in names:
        await _ensure_stream(js, _config_named(name, replicas), replicas)


def _config_named(name: str, replicas: int | None) -> StreamConfig:
    [config] = [config for config in stream_configs(replicas or 1) if config.name == name]
    return config


async def _ensure_bucket(js: JetStreamContext, stream: str, ensure: Callable[[], Awaitable[object]]) -> str:
    try:
        await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        await ensure()
        return "created"
    await ensure()  # its own checks (made meanwhile by another replica...)
    if stream.startswith("OBJ_") and await refuse_rollups(js, stream.removeprefix("OBJ_")):
        return "updated"  # an earlier release's bucket, which took rollups
    return "unchanged"


def _wanted(existing: StreamConfig, config: StreamConfig, replicas: int | None) -> StreamConfig:
    """``existing`` brought to this release's ``config``: its subjects, schedules, size limits (and ``replicas``)."""
    return dataclasses.replace(
        existing,
        subjects=config.subjects,
        sources=config.sources or existing.sources,
        allow_msg_schedules=config.allow_msg_schedules or existing.allow_msg_schedules,  # never turned off
        allow_msg_ttl=config.allow_msg_ttl or existing.allow_msg_ttl,
        num_replicas=replicas or existing.num_replicas,
        **_size_limits(config),
    )


async def _ensure_stream(js: JetStreamContext, config: StreamConfig, replicas: int | None) -> str:
    action = "unchanged"
    try:
        info = await js.stream_info(config.name or "")
    except nats.js.errors.NotFoundError:
        try:
            info, action = await js.add_stream(config), "created"
        except nats.js.errors.BadRequestError:
            info = await js.stream_info(config.name or "")  # made by a concurrent replica: found once known here
    else:
        wanted = _wanted(info.config, config, replicas)
        if wanted != info.config:  # a stream made by an older release, or asked for more replicas
            info, action = await js.update_stream(wanted), "updated"
    if info.cluster is not None and not info.cluster.leader:
        raise _Leaderless(f"stream {config.name} has no leader yet")
    return action


async def stream_problems(js: JetStreamContext, *, existence_only: bool = False) -> list[str]:
    """What keeps this release from working on the streams as they are: each stream or bucket that is missing (or
    cannot be read yet), and, unless ``existence_only``, each stream whose subjects or limits are not this
    release's. Empty when ``ensure_streams`` would change nothing but replicas."""
    problems = []
    for config in stream_configs(1):
        name = config.name or ""
        try:
            info = await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            problems.append(f"stream {name} is missing")
            continue
        except (nats.js.errors.ServiceUnavailableError, nats.errors.TimeoutError) as exc:
            problems.append(f"stream {name} cannot be read yet ({str(exc) or type(exc).__name__})")
            continue
        differing = _differing(info.config, _wanted(info.config, config, None))
        if config.retention and info.config.retention != config.retention:  # not updatable: moved by ensure
            differing.append("retention")
        if differing and not existence_only:
            problems.append(f"stream {name} is not as this release needs it ({', '.join(differing)})")
    for bucket, stream in bucket_streams().items():
        try:
            await js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            problems.append(f"bucket {bucket} (stream {stream}) is missing")
        except (nats.js.errors.ServiceUnavailableError, nats.errors.TimeoutError) as exc:
            problems.append(f"bucket {bucket} (stream {stream}) cannot be read yet ({str(exc) or type(exc).__name__})")
    return problems


def _differing(existing: StreamConfig, wanted: StreamConfig) -> list[str]:
    return [
        field.name
        for field in dataclasses.fields(StreamConfig)
        if getattr(existing, field.name) != getattr(wanted, field.name)
    ]


class StreamsMissing(Unavailable):
    """The streams are missing, or not as this release needs them, and this connection may not make them."""


def streams_missing_message(problems: list[str]) -> str:
    return (
        f"{'; '.join(problems)}: run `{ENSURE_COMMAND}` with the operator's NATS credentials "
        "(PLAIT_NATS_USER=plait-operator; docs/operations.md)"
    )


async def ensure_streams_exist(js: JetStreamContext) -> None:
    """``ensure_streams`` only when a stream or bucket is missing: a client leaves existing streams as they were
    made. A connection with credentials (which NATS may confine, see docs/security.md) makes none: it raises
    ``StreamsMissing`` naming what is missing and the command that makes it."""
    problems = await stream_problems(js, existence_only=True)
    if not problems:
        return
    if authenticated(js):
        raise StreamsMissing(streams_missing_message(problems))
    await ensure_streams(js)
