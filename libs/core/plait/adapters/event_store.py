"""The event log in JetStream: OCC appends to an execution's subject, and catch-up reads of it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

import nats.js.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg

from plait import codec
from plait.adapters import direct_reads, scoped_reads
from plait.adapters.connection import route_of
from plait.adapters.event_log import DecisionTooLarge, EventLog, StoredDecision, conflict
from plait.adapters.nats_errors import MESSAGE_TOO_LARGE, WRONG_LAST_SEQUENCE
from plait.protocol import signing, subjects
from plait.protocol.headers import NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, NATS_MSG_ID, header_bytes
from plait.telemetry import inject

FLOORS_KEPT = 10_000  # subjects whose last sequence a failed append revealed, until each is read again


class EventStore(EventLog):
    """Appends decisions to an execution's subject of the events stream and reads them back.

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

    def __init__(self, js: JetStreamContext, *, scoped: bool = False) -> None:
        self.js = js
        self.scoped = scoped  # read through APIs that name the subject (a confined client's): see scoped_reads
        self.batched = not scoped  # until the server shows it does not batch
        self._floors: dict[str, int] = {}  # subject -> a sequence it has reached, learned from a failed append

    async def last_sequence(self, subject: str) -> int:
        """The sequence of the subject's newest message, as the stream leader has it (0 when it has none)."""
        if self.scoped:
            raw = await scoped_reads.last_subject_message(self.js, subjects.EVENTS_STREAM, subject)
            return (raw.seq or 0) if raw is not None else 0
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
        if self.scoped:  # read from the stream leader already
            return
        if last == 0:  # nothing at all: perhaps a lagging replica answered
            at_least = max(at_least, await self.last_sequence(subject))
        if last < at_least:
            # Also the common race of a reader told of a record (a launch seen on the subject) before it was stored:
            # not worth an info line in every client's log.
            structlog.get_logger().debug("direct_get_lagged", subject=subject, read_to=last, leader_at_least=at_least)
            rest = direct_reads.messages_one_by_one(self.js, subjects.EVENTS_STREAM, subject, last, direct=False)
            async with contextlib.aclosing(rest) as messages:
                async for raw in messages:
                    yield raw

    async def _direct(self, subject: str, after: int) -> AsyncGenerator[RawStreamMsg, None]:
        if self.batched:
            try:
                batches = direct_reads.batched_messages(self.js, subjects.EVENTS_STREAM, subject, after)
                async with contextlib.aclosing(batches) as messages:
                    async for raw in messages:
                        after = raw.seq or after
                        yield raw
                return
            except direct_reads.BatchUnsupported as exc:
                self.batched = False
                structlog.get_logger().warning("direct_get_batch_unsupported", reason=str(exc))
        if self.scoped:  # the stream leader answers: nothing can lag
            async with contextlib.aclosing(
                scoped_reads.subject_messages(self.js, subjects.EVENTS_STREAM, subject, after)
            ) as messages:
                async for raw in messages:
                    yield raw
            return
        async with contextlib.aclosing(
            direct_reads.messages_one_by_one(self.js, subjects.EVENTS_STREAM, subject, after)
        ) as messages:
            async for raw in messages:
                yield raw

    async def read(self, subject: str, after: int = 0, *, at_least: int = 0) -> AsyncGenerator[StoredDecision, None]:
        """The decisions stored on ``subject`` after stream sequence ``after``, in order (see ``raw``)."""
        async with contextlib.aclosing(self.raw(subject, after, at_least=at_least)) as messages:
            async for raw in messages:
                assert raw.seq is not None and raw.data is not None  # noqa: S101  an invariant of this code, not a check of input
                yield StoredDecision(raw.seq, raw.data)

    async def append_encoded(self, subject: str, data: bytes, expected_sequence: int) -> tuple[int, str]:
        digest = codec.digest(data)
        headers = inject(
            {
                NATS_EXPECTED_LAST_SUBJECT_SEQUENCE: str(expected_sequence),
                NATS_MSG_ID: digest,
            }
        ) | signing.sign_headers(subject, data)
        limit = route_of(self.js).nc.max_payload - header_bytes(headers)
        if len(data) > limit:  # the server would close the connection rather than refuse the message
            raise DecisionTooLarge(len(data), limit)
        try:
            ack = await self.js.publish(subject, data, headers=headers, stream=subjects.EVENTS_STREAM)
        except nats.js.errors.APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                self._remember_floor(subject, exc.description or "")
                raise conflict(subject, expected_sequence) from exc
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
