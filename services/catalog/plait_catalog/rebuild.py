"""A rebuild of the projection as the projector runs it: its progress callback, then its result or why it failed
(the messages it answers with are in ``plait.protocol.rebuild``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from plait.errors import PlaitError
from plait.protocol.rebuild import RebuildProgress, RebuildResult


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
