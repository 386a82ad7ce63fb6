"""The event log behind the event store: what the services need of it, and an in-memory implementation.

An execution's decisions are stored on its subject, each at a stream sequence that only grows; an append names
the subject's last sequence it was decided on, and is refused with ``ConflictError`` when another decision was
appended first. ``EventStore`` keeps the log in JetStream; ``InMemoryEventLog`` in a dict, for fast tests of the
service shells.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Protocol

from plait import codec
from plait.core.events import Decision
from plait.core.state import Execution, apply_decision
from plait.errors import ConflictError, PlaitError
from plait.replay import paused_gc


class StoredDecision:
    """A decision as stored on an execution's subject: its stream sequence, bytes, decoded form and SHA-256."""

    __slots__ = ("data", "decision", "digest", "sequence")

    def __init__(self, sequence: int, data: bytes) -> None:
        self.sequence, self.data = sequence, data
        self.decision = codec.decision_decoder.decode(data)
        self.digest = codec.digest(data)


class DecisionTooLarge(PlaitError):
    """A decision is larger than the server takes in one message (``limit`` bytes, None when only the stream
    knows it): appending it again can never succeed."""

    def __init__(self, size: int, limit: int | None) -> None:
        bound = f"the limit is {limit:,} bytes" if limit is not None else "the stream's max_msg_size is smaller"
        super().__init__(f"the decision would take {size:,} bytes; {bound}")
        self.size, self.limit = size, limit


def conflict(subject: str, expected_sequence: int) -> ConflictError:
    """The error of an append decided on ``expected_sequence`` when the subject had moved past it."""
    return ConflictError(f"{subject} moved past sequence {expected_sequence}")


class EventLog(Protocol):
    """Decisions by execution subject: read, appended under optimistic concurrency.

    Implementations subclass it to share ``load`` and ``append``.
    """

    async def last_sequence(self, subject: str) -> int:
        """The sequence of the subject's newest decision (0 when it has none)."""
        ...

    def read(self, subject: str, after: int = 0, *, at_least: int = 0) -> AsyncGenerator[StoredDecision, None]:
        """The decisions stored on ``subject`` after sequence ``after``, in order; up to ``at_least`` at least
        (a sequence the caller knows the subject reached)."""
        ...

    async def append_encoded(self, subject: str, data: bytes, expected_sequence: int) -> tuple[int, str]:
        """Append one encoded decision if the subject's last sequence is still ``expected_sequence``.

        Returns the new sequence and the record's digest; raises ``ConflictError`` when another decision was
        appended first (nothing of this one is stored), ``DecisionTooLarge`` when it can never be stored.
        """
        ...

    async def append(self, subject: str, decision: Decision, expected_sequence: int) -> tuple[int, str]:
        """``append_encoded`` for a decision not yet encoded."""
        return await self.append_encoded(subject, codec.encode(decision), expected_sequence)

    async def load(self, subject: str, state: Execution | None = None, *, at_least: int = 0) -> Execution | None:
        """``state`` caught up with the log (or built from its start when None), up to ``at_least`` at least;
        None when the subject holds nothing."""
        after = state.last_sequence if state else 0
        with paused_gc():
            async with contextlib.aclosing(self.read(subject, after, at_least=at_least)) as stored_decisions:
                async for stored in stored_decisions:
                    state = apply_decision(state, stored.decision, stored.sequence, stored.digest, len(stored.data))
        return state


class InMemoryEventLog(EventLog):
    """An event log in memory, numbered as one stream is: every append takes the next sequence of the whole log.

    As the stream's duplicate window does, it acknowledges a decision stored already (the same bytes) with the
    sequence it was stored at, without storing it again, once its expected sequence holds; its window never ends.
    """

    def __init__(self) -> None:
        self._by_subject: dict[str, list[tuple[int, bytes]]] = {}
        self._by_digest: dict[str, int] = {}
        self._last = 0

    async def last_sequence(self, subject: str) -> int:
        stored = self._by_subject.get(subject)
        return stored[-1][0] if stored else 0

    async def read(self, subject: str, after: int = 0, *, at_least: int = 0) -> AsyncGenerator[StoredDecision, None]:
        for sequence, data in list(self._by_subject.get(subject, ())):
            if sequence > after:
                yield StoredDecision(sequence, data)

    async def append_encoded(self, subject: str, data: bytes, expected_sequence: int) -> tuple[int, str]:
        if await self.last_sequence(subject) != expected_sequence:
            raise conflict(subject, expected_sequence)
        digest = codec.digest(data)
        if digest in self._by_digest:
            return self._by_digest[digest], digest
        self._last += 1
        self._by_subject.setdefault(subject, []).append((self._last, data))
        self._by_digest[digest] = self._last
        return self._last, digest
