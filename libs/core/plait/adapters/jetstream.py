"""The JetStream adapter: streams, the event store (OCC appends, catch-up reads) and the registry."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import anyio
import msgspec
import nats
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    PubAck,
    RawStreamMsg,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from plait import codec
from plait.bounded_cache import BytesBoundedCache
from plait.core.events import Decision, LaunchPlanRegistered, Registration, TaskRegistered, WorkflowRegistered
from plait.core.model import EntityKind, LaunchPlanSpec, TaskSpec, WorkflowSpec
from plait.core.state import Execution, apply_decision
from plait.errors import ConflictError, ConnectError, NotFound, PlaitError, RegistrationConflict, TransportError
from plait.protocol import subjects
from plait.protocol.headers import (
    NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
    NATS_LAST_SEQUENCE,
    NATS_MSG_ID,
    NATS_NUM_PENDING,
    NATS_SEQUENCE,
    NATS_STREAM,
    NATS_SUBJECT,
)
from plait.replay import paused_gc

WRONG_LAST_SEQUENCE = 10071
DUPLICATE_IN_PROCESS = 10158  # a message with the same Nats-Msg-Id is still being stored (replicated streams)
DUPLICATE_IN_PROCESS_PATIENCE_SECONDS = 5.0
MESSAGE_TOO_LARGE = 10054  # the stream's max_msg_size
DUPLICATE_WINDOW_SECONDS = 120.0

registration_decoder = msgspec.json.Decoder(Registration)


FIRST_CONNECT_ATTEMPTS = 3


def server_urls(url: str) -> list[str]:
    """One or several NATS URLs, comma-separated (any server of a cluster will do)."""
    return [part.strip() for part in url.split(",") if part.strip()]


async def _log_nats_error(error: Exception) -> None:
    structlog.get_logger().warning("nats_error", error=str(error) or type(error).__name__)


async def connect(url: str, name: str) -> NATS:
    """A NATS connection that keeps reconnecting once established.

    The first connection is tried a few times over every given server; if none answers it raises
    ``ConnectError`` rather than waiting forever.
    """
    try:
        nc = await nats.connect(
            server_urls(url),
            name=name,
            connect_timeout=5,
            max_reconnect_attempts=FIRST_CONNECT_ATTEMPTS,
            reconnect_time_wait=0.5,
            allow_reconnect=True,
            error_cb=_log_nats_error,
        )
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        raise ConnectError(f"cannot connect to NATS at {url}: {exc or type(exc).__name__}") from exc
    nc.options["max_reconnect_attempts"] = -1  # from now on, ride out server restarts and failovers
    return nc


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


class StoredDecision:
    """A decision as stored on an execution's subject: its stream sequence, bytes, decoded form and SHA-256."""

    __slots__ = ("data", "decision", "digest", "sequence")

    def __init__(self, sequence: int, data: bytes) -> None:
        self.sequence, self.data = sequence, data
        self.decision = codec.decision_decoder.decode(data)
        self.digest = codec.digest(data)


BATCH_MESSAGES = 1024  # messages asked for in one batched direct get
BATCH_BYTES = 16 * 1024 * 1024  # and their size: the server stops a batch after the message that reaches it
STATUS_END_OF_BATCH = "204"
STATUS_NOT_FOUND = "404"


class BatchUnsupported(Exception):
    """The server answered a batched direct get as a single one (nats-server < 2.11), or refused it."""


def _raw_message(msg: Msg) -> RawStreamMsg:
    headers = msg.headers or {}
    return RawStreamMsg(
        subject=headers.get(NATS_SUBJECT),
        seq=int(headers[NATS_SEQUENCE]),
        data=msg.data,
        headers=headers,
        stream=headers.get(NATS_STREAM),
    )


MULTI_LAST_SUBJECTS = 256  # subjects asked for in one multi-last direct get


async def last_messages(js: JetStreamContext, stream: str, subject_list: Sequence[str]) -> dict[str, RawStreamMsg]:
    """The newest message of each subject that has one, by subject: one batched direct get (ADR-31 ``multi_last``)
    per ``MULTI_LAST_SUBJECTS`` subjects. Raises ``BatchUnsupported`` when the server cannot do that."""
    nc = js._nc
    found: dict[str, RawStreamMsg] = {}
    request_subject = f"{js._prefix}.DIRECT.GET.{stream}"
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    try:
        for start in range(0, len(subject_list), MULTI_LAST_SUBJECTS):
            chunk = list(subject_list[start : start + MULTI_LAST_SUBJECTS])
            request = {"multi_last": chunk, "batch": len(chunk)}
            await nc.publish(request_subject, json.dumps(request).encode(), reply=inbox)
            while True:
                try:
                    msg = await sub.next_msg(timeout=js._timeout)
                except nats.errors.TimeoutError as exc:
                    raise BatchUnsupported(f"no answer to a multi-last direct get within {js._timeout}s") from exc
                headers = msg.headers or {}
                status = headers.get("Status")
                if status in (STATUS_END_OF_BATCH, STATUS_NOT_FOUND):
                    break
                if status is not None:
                    raise BatchUnsupported(f"status {status} {headers.get('Description', '')}".strip())
                raw = _raw_message(msg)
                if raw.subject is not None:
                    found[raw.subject] = raw
    finally:
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()
    return found


async def last_message(js: JetStreamContext, subject: str) -> RawStreamMsg | None:
    """The newest message on ``subject`` of the events stream, or None when it has none.

    A direct get may be answered by any replica of the stream, or a mirror, that lags behind the leader: one
    that finds nothing is asked again of the stream leader before the subject counts as empty.
    """
    for direct in (True, False):
        try:
            return await js.get_msg(subjects.EVENTS_STREAM, subject=subject, direct=direct)
        except nats.js.errors.NotFoundError:
            continue
    return None


FLOORS_KEPT = 10_000  # subjects whose last sequence a failed append revealed, until each is read again


class EventStore:
    """Appends decisions to an execution's subject and reads them back.

    Reads use batched direct gets (ADR-31, nats-server >= 2.11): one request returns up to
    ``BATCH_MESSAGES`` messages of the subject, streamed to an inbox and closed by an end-of-batch
    status. A server that does not batch is read with one direct get per message.

    Direct gets may be answered by a replica (or mirror) that lags behind the stream leader. A read that
    must reach a known sequence (``at_least``: one a caller saw, or the one a failed append said the subject
    is at) reads what the direct gets missed from the leader; so does a read from the start that finds
    nothing, before the subject counts as empty. Otherwise a lagging read gives an older state, whose next
    append then fails its optimistic-concurrency check: the store remembers the sequence the server named
    and the reload reads up to it.
    """

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self._batched = True  # until the server shows it does not batch
        self._floors: dict[str, int] = {}  # subject -> a sequence it has reached, learned from a failed append

    async def last_sequence(self, subject: str) -> int:
        """The sequence of the subject's newest message, as the stream leader has it (0 when it has none)."""
        try:
            raw = await self.js.get_msg(subjects.EVENTS_STREAM, subject=subject)
        except nats.js.errors.NotFoundError:
            return 0
        return raw.seq or 0

    async def raw(self, subject: str, after: int = 0, *, at_least: int = 0) -> AsyncGenerator[RawStreamMsg, None]:
        """The messages stored on ``subject`` after stream sequence ``after``, in order, undecoded; up to
        ``at_least`` at least, read from the stream leader where the direct gets fell short."""
        at_least = max(at_least, self._floors.pop(subject, 0))
        last = after
        async with contextlib.aclosing(self._direct(subject, after)) as messages:
            async for raw in messages:
                last = raw.seq or last
                yield raw
        if last == 0:  # nothing at all: perhaps a lagging replica answered
            at_least = max(at_least, await self.last_sequence(subject))
        if last < at_least:
            structlog.get_logger().info("direct_get_lagged", subject=subject, read_to=last, leader_at_least=at_least)
            async with contextlib.aclosing(self._one_by_one(subject, last, direct=False)) as rest:
                async for raw in rest:
                    yield raw

    async def _direct(self, subject: str, after: int) -> AsyncGenerator[RawStreamMsg, None]:
        if self._batched:
            try:
                async with contextlib.aclosing(self._batches(subject, after)) as batches:
                    async for raw in batches:
                        after = raw.seq or after
                        yield raw
                return
            except BatchUnsupported as exc:
                self._batched = False
                structlog.get_logger().warning("direct_get_batch_unsupported", reason=str(exc))
        async for raw in self._one_by_one(subject, after):
            yield raw

    async def _one_by_one(self, subject: str, after: int, *, direct: bool = True) -> AsyncGenerator[RawStreamMsg, None]:
        sequence = after + 1
        while True:
            try:
                raw = await self.js.get_msg(
                    subjects.EVENTS_STREAM, seq=sequence, subject=subject, next=True, direct=direct
                )
            except nats.js.errors.NotFoundError:
                return
            assert raw.seq is not None and raw.data is not None
            yield raw
            sequence = raw.seq + 1

    async def _batches(self, subject: str, after: int) -> AsyncGenerator[RawStreamMsg, None]:
        """Batched direct gets until the subject has nothing more after ``after``.

        Raises ``BatchUnsupported`` before yielding anything when the server does not batch. Every
        message names the sequence of the one before it in its batch (``Nats-Last-Sequence``), so a
        message lost on the way (a slow consumer) is an error rather than a silent gap.
        """
        nc = self.js._nc
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        timeout = self.js._timeout
        request_subject = f"{self.js._prefix}.DIRECT.GET.{subjects.EVENTS_STREAM}"
        try:
            while True:
                request = {"seq": after + 1, "next_by_subj": subject, "batch": BATCH_MESSAGES, "max_bytes": BATCH_BYTES}
                await nc.publish(request_subject, json.dumps(request).encode(), reply=inbox)
                previous, pending = 0, 0
                while True:
                    try:
                        msg = await sub.next_msg(timeout=timeout)
                    except nats.errors.TimeoutError as exc:
                        if previous == 0:
                            raise BatchUnsupported(f"no answer to a batched direct get within {timeout}s") from exc
                        raise
                    headers = msg.headers or {}
                    status = headers.get("Status")
                    if status == STATUS_END_OF_BATCH:
                        pending = int(headers.get(NATS_NUM_PENDING, "0"))
                        break
                    if status == STATUS_NOT_FOUND and previous == 0:
                        return
                    if status is not None:
                        if previous == 0:
                            raise BatchUnsupported(f"status {status} {headers.get('Description', '')}".strip())
                        raise nats.js.errors.APIError(code=int(status), description=headers.get("Description"))
                    if NATS_NUM_PENDING not in headers:
                        raise BatchUnsupported("the server answered with a single message")
                    if int(headers.get(NATS_LAST_SEQUENCE, "0")) != previous:
                        raise TransportError(
                            f"batched read of {subject}: message after sequence {previous} missing "
                            f"(got one after {headers.get(NATS_LAST_SEQUENCE)})"
                        )
                    raw = _raw_message(msg)
                    previous = after = raw.seq or after
                    yield raw
                if pending == 0:
                    return
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def read(self, subject: str, after: int = 0, *, at_least: int = 0) -> AsyncGenerator[StoredDecision, None]:
        """The decisions stored on ``subject`` after stream sequence ``after``, in order (see ``raw``)."""
        async with contextlib.aclosing(self.raw(subject, after, at_least=at_least)) as messages:
            async for raw in messages:
                assert raw.seq is not None and raw.data is not None
                yield StoredDecision(raw.seq, raw.data)

    async def load(self, subject: str, state: Execution | None = None, *, at_least: int = 0) -> Execution | None:
        """``state`` caught up with the log (or built from its start when None), up to ``at_least`` at least.

        None only when the stream leader has nothing on the subject either."""
        after = state.last_sequence if state else 0
        with paused_gc():
            async with contextlib.aclosing(self.read(subject, after, at_least=at_least)) as stored_decisions:
                async for stored in stored_decisions:
                    state = apply_decision(state, stored.decision, stored.sequence, stored.digest, len(stored.data))
        return state

    async def append(self, subject: str, decision: Decision, expected_sequence: int) -> tuple[int, str]:
        """Append one decision if the subject's last sequence is still ``expected_sequence``.

        Returns the new sequence and the record's digest; raises ``ConflictError`` when another
        decision was appended first (nothing of this one is stored), ``DecisionTooLarge`` when it can
        never be stored.
        """
        return await self.append_encoded(subject, codec.encode(decision), expected_sequence)

    async def append_encoded(self, subject: str, data: bytes, expected_sequence: int) -> tuple[int, str]:
        """``append`` for a decision already encoded."""
        digest = codec.digest(data)
        headers = {
            NATS_EXPECTED_LAST_SUBJECT_SEQUENCE: str(expected_sequence),
            NATS_MSG_ID: digest,
        }
        limit = self.js._nc.max_payload - _header_bytes(headers)
        if len(data) > limit:  # the server would close the connection rather than refuse the message
            raise DecisionTooLarge(len(data), limit)
        try:
            ack = await self.js.publish(subject, data, headers=headers, stream=subjects.EVENTS_STREAM)
        except nats.js.errors.APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                self._remember_floor(subject, exc.description or "")
                raise ConflictError(f"{subject} moved past sequence {expected_sequence}") from exc
            if exc.err_code == MESSAGE_TOO_LARGE:
                raise DecisionTooLarge(len(data), None) from exc
            raise
        return ack.seq, digest

    def _remember_floor(self, subject: str, description: str) -> None:
        """Keep the sequence a ``wrong last sequence: N`` names: the next read of the subject reaches it."""
        _, _, sequence = description.rpartition(":")
        if sequence.strip().isdigit():
            if len(self._floors) >= FLOORS_KEPT:
                self._floors.pop(next(iter(self._floors)))
            self._floors[subject] = int(sequence)


class DecisionTooLarge(PlaitError):
    """A decision is larger than the server takes in one message (``limit`` bytes, None when only the stream
    knows it): appending it again can never succeed."""

    def __init__(self, size: int, limit: int | None) -> None:
        bound = f"the limit is {limit:,} bytes" if limit is not None else "the stream's max_msg_size is smaller"
        super().__init__(f"the decision would take {size:,} bytes; {bound}")
        self.size, self.limit = size, limit


def _header_bytes(headers: dict[str, str]) -> int:
    """The size of ``headers`` on the wire: a status line, one line each, and a blank line."""
    return len("NATS/1.0\r\n\r\n") + sum(len(name) + len(value) + 4 for name, value in headers.items())


def kind_of(registration: Registration) -> EntityKind:
    """The registry kind of a registration: its subject token and catalog kind."""
    if isinstance(registration, TaskRegistered):
        return "task"
    return "workflow" if isinstance(registration, WorkflowRegistered) else "launch_plan"


REGISTRY_CACHE_BYTES = 32 * 1024 * 1024
"""The registry's cache of workflow specs, measured by the bytes of their registrations."""


class Registry:
    """Registered tasks and workflows: one subject per (kind, name, version), written once.

    Workflow specs are cached, least recently used first out, up to ``cache_bytes`` of their registrations: a
    version never changes, so a cached spec is never stale.
    """

    def __init__(self, js: JetStreamContext, cache_bytes: int = REGISTRY_CACHE_BYTES) -> None:
        self.js = js
        self._workflows: BytesBoundedCache[tuple[str, str, str, str], WorkflowSpec] = BytesBoundedCache(cache_bytes)

    async def register(self, registration: Registration) -> bool:
        """Store a registration; True when new, False when identical content was there already.

        Raises ``RegistrationConflict`` when the same name and version holds different content.
        """
        kind = kind_of(registration)
        spec = registration.spec
        subject = subjects.registration_subject(
            registration.project, registration.domain, kind, spec.name, spec.version
        )
        data = codec.encode(registration)
        try:
            ack = await self._publish_once(subject, data)
        except nats.js.errors.APIError as exc:
            if exc.err_code != WRONG_LAST_SEQUENCE:
                raise
            existing = await self.js.get_msg(subjects.EVENTS_STREAM, subject=subject)  # the leader: it refused
            if existing.data != data:
                raise RegistrationConflict(
                    f"{kind} '{spec.name}' version {spec.version} is already registered with different content"
                ) from exc
            return False
        return not ack.duplicate

    async def _publish_once(self, subject: str, data: bytes) -> PubAck:
        """Publish a registration on its empty subject. On a replicated stream, a concurrent publish of the same
        registration is refused while the first is being stored (``DUPLICATE_IN_PROCESS``): asked again shortly, it
        is then a duplicate, or meets the stored first one."""
        headers = {NATS_EXPECTED_LAST_SUBJECT_SEQUENCE: "0", NATS_MSG_ID: codec.digest(data)}
        delay = 0.01
        while True:
            try:
                return await self.js.publish(subject, data, headers=headers, stream=subjects.EVENTS_STREAM)
            except nats.js.errors.APIError as exc:
                if exc.err_code != DUPLICATE_IN_PROCESS or delay > DUPLICATE_IN_PROCESS_PATIENCE_SECONDS:
                    raise
            await anyio.sleep(delay)
            delay *= 2

    async def workflow(self, project: str, domain: str, name: str, version: str) -> WorkflowSpec:
        key = (project, domain, name, version)
        cached = self._workflows.get(key)
        if cached is not None:
            return cached
        what = f"workflow '{name}' version {version} in {project}/{domain}"
        registration, size = await self._get((project, domain, "workflow", name, version), what)
        if not isinstance(registration, WorkflowRegistered):
            raise NotFound(f"{what} is not registered: its subject holds a {kind_of(registration)}")
        self._workflows.put(key, registration.spec, size)
        return registration.spec

    @property
    def cached_bytes(self) -> int:
        return self._workflows.size_bytes

    async def task(self, project: str, domain: str, name: str, version: str) -> TaskSpec:
        what = f"task '{name}' version {version} in {project}/{domain}"
        registration, _ = await self._get((project, domain, "task", name, version), what)
        if not isinstance(registration, TaskRegistered):
            raise NotFound(f"{what} is not registered: its subject holds a {kind_of(registration)}")
        return registration.spec

    async def launch_plan(self, project: str, domain: str, name: str, version: str) -> LaunchPlanSpec:
        what = f"launch plan '{name}' version {version} in {project}/{domain}"
        registration, _ = await self._get((project, domain, "launch_plan", name, version), what)
        if not isinstance(registration, LaunchPlanRegistered):
            raise NotFound(f"{what} is not registered: its subject holds a {kind_of(registration)}")
        return registration.spec

    async def _get(self, key: tuple[str, str, EntityKind, str, str], what: str) -> tuple[Registration, int]:
        """The registration of ``key`` (project, domain, kind, name, version) and its size in bytes."""
        try:
            subject = subjects.registration_subject(*key)
        except ValueError as exc:  # a name no registration can have
            raise NotFound(f"{what} is not registered: {exc}") from None
        raw = await last_message(self.js, subject)
        if raw is None or raw.data is None:
            raise NotFound(f"{what} is not registered")
        try:
            registration: Registration = registration_decoder.decode(raw.data)
        except (msgspec.DecodeError, RecursionError) as exc:
            raise NotFound(
                f"{what} is not registered: its subject holds a record that does not decode ({exc})"
            ) from exc
        return registration, len(raw.data)
