"""A rebuild of the projection: what is asked of the leader, what it reports while replaying, and its result."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import msgspec

from plait.errors import PlaitError


class RebuildProgress(msgspec.Struct, kw_only=True):
    replica: str
    target: int  # the stream's last sequence when the rebuild began: it ends once projected up to there
    sequence: int  # the last sequence replayed so far
    messages: int  # messages replayed so far


class RebuildResult(msgspec.Struct, kw_only=True):
    replica: str
    target: int
    sequence: int
    messages: int
    rows: dict[str, int]  # rows of each projected table once caught up
    seconds: float


class RebuildRefused(PlaitError):
    """This replica cannot rebuild now: it does not lead the projection, or a rebuild is running."""


class RebuildFailed(PlaitError):
    """The rebuild stopped before it caught up; the catalog is as it was before it began."""


Progress = Callable[[RebuildProgress], Awaitable[None]]


class Rebuild:
    """One rebuild asked of the projector: its progress callback, then its result or why it failed."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.result: RebuildResult | None = None
        self.error = ""
        self._finished = anyio.Event()

    def succeed(self, result: RebuildResult) -> None:
        self.result = result
        self._finished.set()

    def fail(self, error: str) -> None:
        if not self._finished.is_set():
            self.error = error
            self._finished.set()

    async def outcome(self) -> RebuildResult:
        await self._finished.wait()
        if self.result is None:
            raise RebuildFailed(self.error)
        return self.result
