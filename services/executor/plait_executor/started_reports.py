"""The ``started`` reports of the attempts that run for a while, sent by one task for all of them.

A quick attempt reports only its result; one still running ``after`` seconds past its start reports ``started``
first. A task per attempt waiting out that delay costs more than a no-op attempt's hand-off to its worker: here one
task sleeps until the earliest attempt is due (at most a quarter of ``after`` late), and an attempt that ends before
then is only taken off the list.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

Report = Callable[[anyio.Event], Awaitable[None]]
"""Sends one attempt's ``started``: sets the event once it is on the wire, returns once it is stored."""


class PendingStart:
    """One running attempt's ``started`` report, not sent yet, or sent by the reporter's task."""

    def __init__(self, due: float, report: Report) -> None:
        self.due = due
        self.report = report
        self.sent = anyio.Event()  # on the wire (a result sent after it is stored after it), or never to be sent
        self.claimed = False  # the reporter took it: it is sent
        self.stored = anyio.Event()  # the reporter is done with it (stored, or given up)

    async def send(self) -> None:
        try:
            await self.report(self.sent)
        finally:
            self.sent.set()
            self.stored.set()


class StartedReports:
    """While ``run`` runs, ``add`` schedules an attempt's ``started`` report; ``running`` says whether it does."""

    def __init__(self, after: float) -> None:
        self.after = after
        self.running = False
        self._pending: dict[int, PendingStart] = {}  # by id, in the order added: the earliest due first
        self._added = anyio.Event()

    def add(self, report: Report) -> PendingStart:
        pending = PendingStart(anyio.current_time() + self.after, report)
        self._pending[id(pending)] = pending
        self._added.set()
        return pending

    def ended(self, pending: PendingStart) -> bool:
        """The attempt ended: True when its report was not sent (and now never will be)."""
        if self._pending.pop(id(pending), None) is None:
            return False
        pending.sent.set()
        pending.stored.set()
        return True

    async def run(self) -> None:
        """Until cancelled: send each attempt's report once it is due (reports in flight are cancelled with it)."""
        self.running = True
        try:
            async with anyio.create_task_group() as sending:
                while True:
                    if not self._pending:
                        self._added = anyio.Event()
                        await self._added.wait()
                        continue
                    now = anyio.current_time()
                    while self._pending:
                        key, first = next(iter(self._pending.items()))
                        if first.due > now:
                            break
                        del self._pending[key]
                        first.claimed = True
                        sending.start_soon(first.send)
                    if self._pending:
                        first = next(iter(self._pending.values()))
                        await anyio.sleep(max(first.due - now, self.after / 4))
        finally:
            self.running = False
            for pending in self._pending.values():  # none will be sent: their attempts go on without
                pending.sent.set()
                pending.stored.set()
            self._pending.clear()
