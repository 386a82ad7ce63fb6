"""How many attempts an executor holds: counted in attempts, while the server hands them over in messages."""

from __future__ import annotations

import anyio

from plait.core.dispatch import DISPATCH_CHUNK_ATTEMPTS

_RECENT_WEIGHT = 0.25  # of a smaller message's attempts in the running estimate of attempts per message


class AttemptSlots:
    """The attempts held (waiting for a worker, running, or reporting) against ``capacity`` (the prefetch).

    A message is taken whole: the puller takes one slot for it as it arrives, and its reader ``take``s one more per
    further attempt, past the capacity if need be; no more is pulled until the held attempts fall under it again.
    Each attempt's slot is released when it is settled. ``value``, what one pull request asks for, is in messages:
    the free attempts over the attempts recent messages carried (at first, a full chunk's: a fresh executor asks
    for one message, and learns). The estimate rises at once to a larger message's size and falls slowly over
    smaller ones: where small messages and full chunks mix (a DAG's decisions), a request asks for few messages,
    rather than for many that turn out to be chunks, to be handed back and delivered again.

    While ``paused`` (every worker busy on a long attempt: see ``AttemptRunner.hand_on_waiting``) it asks for none:
    what it would take would wait, while another replica may have a free worker.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.held = 0
        self.per_message = float(DISPATCH_CHUNK_ATTEMPTS)
        self.paused = False
        self._freed = anyio.Event()

    @property
    def value(self) -> int:
        """How many messages to ask for: 0 when the held attempts fill the capacity, else at least 1."""
        free = self.capacity - self.held
        return 0 if free <= 0 else max(1, int(free // max(1.0, round(self.per_message))))

    async def acquire(self) -> None:
        """Take a slot once one is free and taking is not paused."""
        while self.held >= self.capacity or self.paused:
            self._freed = anyio.Event()
            await self._freed.wait()
        self.held += 1

    def acquire_nowait(self) -> None:
        """Take a slot for a message that arrived, whatever is held: a pull request asked for it. (Refused, it would
        be delivered again, and a redelivered chunk costs a read of its execution's log: when the estimate is too
        low, the messages one request brings are held past the capacity for a while instead.)"""
        self.held += 1

    def take(self, attempts: int) -> None:
        """A message's further ``attempts`` beyond its first: held too, whatever the capacity."""
        self.held += attempts
        carried = 1 + attempts
        self.per_message = max(float(carried), self.per_message + _RECENT_WEIGHT * (carried - self.per_message))

    def pause(self, paused: bool) -> None:
        self.paused = paused
        if not paused and self.held < self.capacity:
            self._freed.set()

    def release(self, attempts: int = 1) -> None:
        self.held -= attempts
        if self.held < self.capacity:
            self._freed.set()
