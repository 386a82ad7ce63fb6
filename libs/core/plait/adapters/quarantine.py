"""Keeping aside a stored message that a reader cannot take, so that the reader goes on past it.

A reader (the catalog's projection, the scheduler's outbox) that meets a message it cannot decode or apply
records a quarantine entry and moves on: one bad message never stops a service, on this start or the next.
``PLAIT_EVENTS`` never deletes a message, so an entry refers to the original by stream and sequence rather
than copying it. Entries live on ``plait.quarantine.<reader>.<sequence>`` in ``PLAIT_QUARANTINE`` (one
message per subject: the entry's latest record), published with ``Nats-Msg-Id`` = reader and sequence, so a
repeat is stored once.

``plait quarantine replay`` asks a reader to take its entries again (after an upgrade of the code that could
not read them): each reader answers on ``plait.quarantine_replay.<reader>`` in a queue group; an entry it now
takes is marked resolved.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import anyio
import anyio.abc
import msgspec
import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from plait.adapters.stream_reads import read_messages
from plait.metrics.names import QUARANTINED
from plait.protocol import subjects
from plait.protocol.headers import NATS_MSG_ID
from plait.protocol.quarantine import QuarantineEntry, ReplayOutcome, ReplayReply, ReplayRequest

UNREADABLE = (ValueError, LookupError, TypeError)
"""What reading a malformed record raises: msgspec's ``DecodeError`` (a ``ValueError``), and what an upcaster
raises on a record of the wrong shape."""

REASON_CHARACTERS = 4000
REPLAY_TIMEOUT_SECONDS = 60.0

T = TypeVar("T")


Retry = Callable[[list[QuarantineEntry]], Awaitable[dict[int, str]]]
"""Takes entries' messages again; returns the reason for each sequence still not taken (the others were)."""

_entry_decoder = msgspec.json.Decoder(QuarantineEntry)
_request_decoder = msgspec.json.Decoder(ReplayRequest)
_encoder = msgspec.json.Encoder()


class Quarantine:
    """The quarantine entries of one reader."""

    def __init__(self, js: JetStreamContext, reader: str) -> None:
        self.js = js
        self.reader = reader
        self._log = structlog.get_logger().bind(reader=reader)

    async def keep(self, stream: str, sequence: int, subject: str, size: int, reason: str) -> QuarantineEntry:
        """Record that the message at ``sequence`` of ``stream`` cannot be taken, and why."""
        entry = QuarantineEntry(
            reader=self.reader,
            stream=stream,
            sequence=sequence,
            subject=subject,
            size=size,
            reason=reason[:REASON_CHARACTERS],
            quarantined_at=datetime.now(UTC),
        )
        await self._store(entry, {NATS_MSG_ID: f"{self.reader}:{stream}:{sequence}"})
        QUARANTINED.labels(self.reader).inc()
        self._log.warning(
            "message_quarantined",
            stream=stream,
            sequence=sequence,
            subject=subject,
            reason=entry.reason,
            quarantined=await self.count(),
        )
        return entry

    async def resolve(self, entry: QuarantineEntry) -> None:
        """Mark ``entry`` resolved: its message was taken after all."""
        await self._store(msgspec.structs.replace(entry, resolved_at=datetime.now(UTC)), {})
        self._log.info("quarantine_resolved", stream=entry.stream, sequence=entry.sequence, subject=entry.subject)

    async def count(self) -> int:
        """How many entries this reader has, resolved ones included."""
        return await count_entries(self.js, self.reader)

    async def entries(self) -> list[QuarantineEntry]:
        return await read_entries(self.js, self.reader)

    async def _store(self, entry: QuarantineEntry, headers: dict[str, str]) -> None:
        subject = subjects.quarantine_subject(self.reader, entry.sequence)
        await self.js.publish(subject, _encoder.encode(entry), headers=headers, stream=subjects.QUARANTINE_STREAM)


async def decode_or_quarantine(js: JetStreamContext, reader: str, msg: Msg, decode: Callable[[bytes], T]) -> T | None:
    """``decode(msg.data)``; or None once a message that does not decode is quarantined, for the caller to ack."""
    try:
        return decode(msg.data)
    except UNREADABLE as exc:
        metadata = msg.metadata
        reason = f"cannot be decoded: {type(exc).__name__}: {exc}"
        await Quarantine(js, reader).keep(metadata.stream, metadata.sequence.stream, msg.subject, len(msg.data), reason)
        return None


def _filter(reader: str | None) -> str:
    return (
        f"{subjects.QUARANTINE_ROOT}.{subjects.token(reader, 'reader')}.>"
        if reader
        else f"{subjects.QUARANTINE_ROOT}.>"
    )


async def count_entries(js: JetStreamContext, reader: str | None = None) -> int:
    """How many entries ``reader`` (every reader when None) has, resolved ones included."""
    info = await js.stream_info(subjects.QUARANTINE_STREAM, subjects_filter=_filter(reader))
    return len(info.state.subjects or {})


async def read_entries(js: JetStreamContext, reader: str | None = None) -> list[QuarantineEntry]:
    """The entries of ``reader`` (every reader when None), oldest first."""
    messages = await read_messages(js, subjects.QUARANTINE_STREAM, _filter(reader))
    return [_entry_decoder.decode(message.data) for message in messages]


class ReplayResponder:
    """Answers ``plait quarantine replay`` for one reader: takes the asked entries again with ``retry``."""

    def __init__(self, nc: NATS, quarantine: Quarantine, retry: Retry) -> None:
        self._nc = nc
        self._quarantine = quarantine
        self._retry = retry
        self._log = structlog.get_logger().bind(reader=quarantine.reader)

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        reader = self._quarantine.reader
        subscription = await self._nc.subscribe(subjects.quarantine_replay_subject(reader), queue=f"plait-{reader}")
        try:
            await self._nc.flush()
            task_status.started()
            async for message in subscription.messages:
                if message.reply:
                    await self._answer(message)
        finally:
            with anyio.CancelScope(shield=True):
                await subscription.unsubscribe()

    async def _answer(self, message: Msg) -> None:
        try:
            request = _request_decoder.decode(message.data)
        except msgspec.DecodeError as exc:
            await self._reply(message.reply, ReplayReply(error=f"malformed replay request: {exc}"))
            return
        try:
            outcome = await self.replay(request.sequences)
        except Exception:  # a server away, say: the operator asks again; the reader goes on either way
            self._log.exception("quarantine_replay_failed")
            await self._reply(message.reply, ReplayReply(error="the replay failed; see the reader's log"))
            return
        await self._reply(message.reply, ReplayReply(result=outcome))

    async def replay(self, sequences: list[int] | None) -> ReplayOutcome:
        """Take the given entries again (all unresolved ones when None); resolve those now taken."""
        wanted = None if sequences is None else set(sequences)
        entries = [
            entry
            for entry in await self._quarantine.entries()
            if entry.resolved_at is None and (wanted is None or entry.sequence in wanted)
        ]
        unreadable = await self._retry(entries) if entries else {}
        resolved = []
        for entry in entries:
            if entry.sequence not in unreadable:
                await self._quarantine.resolve(entry)
                resolved.append(entry.sequence)
        self._log.info("quarantine_replayed", resolved=len(resolved), unreadable=len(unreadable))
        return ReplayOutcome(reader=self._quarantine.reader, resolved=resolved, unreadable=unreadable)

    async def _reply(self, reply: str, answer: ReplayReply) -> None:
        try:
            await self._nc.publish(reply, _encoder.encode(answer))
        except nats.errors.Error as exc:
            self._log.warning("quarantine_replay_reply_failed", error=str(exc) or type(exc).__name__)
