"""What this replica did right after its own decisions, so that the outbox, meeting them later, skips it."""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

import structlog

log = structlog.get_logger()

Key = TypeVar("Key", bound=Hashable)

REMEMBERED = 100_000  # keys done here that the outbox has not met yet


class DoneHere(Generic[Key]):
    """Work started here, by key (an attempt id, a decision sequence): under way, or done, until claimed once.

    ``event`` is what is logged when a piece of work fails (the outbox then does it), with the key as ``field``.
    """

    def __init__(self, event: str, field: str) -> None:
        self.event, self.field = event, field
        self._under_way: dict[Key, asyncio.Future[Any]] = {}
        self._done: OrderedDict[Key, None] = OrderedDict()

    def track(self, key: Key, work: asyncio.Future[Any]) -> None:
        # Registered first, so it runs before a claim waiting for the same work looks again.
        work.add_done_callback(functools.partial(self._finished, key))
        self._under_way[key] = work

    def _finished(self, key: Key, work: asyncio.Future[Any]) -> None:
        self._under_way.pop(key, None)
        if work.cancelled() or work.exception() is not None:
            error = "cancelled" if work.cancelled() else repr(work.exception())
            log.warning(self.event, **{self.field: key}, error=error)
            return
        self.done(key)

    def done(self, key: Key) -> None:
        """Record work done here (or found to be nothing) without a future."""
        self._done[key] = None
        while len(self._done) > REMEMBERED:
            self._done.popitem(last=False)

    async def claim(self, key: Key) -> bool:
        """True when the work was done here (waiting for it if under way); forgets it then."""
        work = self._under_way.get(key)
        if work is not None:
            await asyncio.wait([work])  # its done callback, run first, has recorded how it went
        if key in self._done:
            del self._done[key]
            return True
        return False
