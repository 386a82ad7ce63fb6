"""Grouping the map item attempts an executor takes into batches, each run by one Indexed Job.

The core queues a map's items a bounded number at a time (its concurrency), and the next one each time one ends;
the executor takes each as its own dispatch. A batch opens with the first item of a map node taken, collects the
items of that node taken in the next ``window_seconds``, and closes then, or once it holds ``most_items`` items or
``most_bytes`` of encoded dispatches (the batch travels in one environment variable of the Job's pods, and Linux
takes at most 128 KiB in one). Each item waits for its batch's Job and learns its completion index in it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import anyio
import anyio.abc

from plait.core.dispatch import Dispatch
from plait.core.ids import item_of_attempt
from plait_executor.attempt import AttemptOutcome, system_error
from plait_executor.kubernetes.batches import batch_key, fits, item_size

WINDOW_SECONDS = 1.0
MOST_ITEMS = 100
MOST_BYTES = 96 * 1024

Placement = tuple[str, int]
"""Where an item attempt runs: its map Job's name and its completion index."""
Placed = Placement | AttemptOutcome
"""An item's placement, or the outcome of an item no Job was made for (refused, invalid)."""
MakeJob = Callable[[Sequence[Dispatch]], Awaitable[dict[str, Placed]]]
"""Makes (or finds) the Job of a batch: each attempt id's placement or outcome."""


@dataclass(eq=False)
class _Batch:
    key: tuple[str, ...]
    dispatches: list[Dispatch] = field(default_factory=list)
    size: int = 0  # encoded bytes, about
    full: anyio.Event = field(default_factory=anyio.Event)
    made: anyio.Event = field(default_factory=anyio.Event)
    closed: bool = False
    placed: dict[str, Placed] = field(default_factory=dict)


class MapBatcher:
    """Collects item attempts into batches and has ``make_job`` make each batch's Job, in ``group``."""

    def __init__(
        self,
        group: anyio.abc.TaskGroup,
        make_job: MakeJob,
        *,
        window_seconds: float = WINDOW_SECONDS,
        most_items: int = MOST_ITEMS,
        most_bytes: int = MOST_BYTES,
    ) -> None:
        self._group = group
        self._make_job = make_job
        self.window_seconds = window_seconds
        self.most_items = max(1, most_items)
        self.most_bytes = most_bytes
        self._open: dict[tuple[str, ...], _Batch] = {}
        self._waiting: dict[str, tuple[_Batch, int]] = {}  # attempt id -> its batch, and its deliveries waiting
        self.batches = 0

    async def place(self, dispatch: Dispatch) -> Placed:
        """Put the item attempt in a batch, and wait for its Job: where it runs, or its outcome. Cancelled before
        its batch closed, it leaves the batch (unless a redelivery of it waits there too). A redelivery of an
        attempt whose batch is still waiting for its Job waits for that Job: one attempt is never in two."""
        batch, waiters = self._waiting.get(dispatch.attempt_id, (None, 0))
        if batch is None:
            batch = self._join(dispatch)
        self._waiting[dispatch.attempt_id] = (batch, waiters + 1)
        try:
            await batch.made.wait()
        except anyio.get_cancelled_exc_class():
            _, waiters = self._waiting.pop(dispatch.attempt_id, (batch, 1))
            if waiters > 1:
                self._waiting[dispatch.attempt_id] = (batch, waiters - 1)
            elif not batch.closed:
                batch.dispatches[:] = [d for d in batch.dispatches if d.attempt_id != dispatch.attempt_id]
            raise
        placed = batch.placed.get(dispatch.attempt_id)
        if placed is None:
            return AttemptOutcome(error=system_error("its map Job was not made", "JobNotMade"))
        return placed

    def _join(self, dispatch: Dispatch) -> _Batch:
        key = batch_key(dispatch)
        batch = self._open.get(key)
        if batch is not None and batch.dispatches and not fits(batch.dispatches[0], dispatch):
            self._close(batch)
            batch = None
        adds = item_size(batch.dispatches[0] if batch and batch.dispatches else None, dispatch)
        if batch is not None and batch.dispatches and batch.size + adds > self.most_bytes:
            self._close(batch)
            batch = None
        if batch is None:
            batch = self._open[key] = _Batch(key)
            self.batches += 1
            self._group.start_soon(self._make_after_window, batch)
            adds = item_size(None, dispatch)
        batch.dispatches.append(dispatch)
        batch.size += adds
        if len(batch.dispatches) >= self.most_items:
            self._close(batch)
        return batch

    def _close(self, batch: _Batch) -> None:
        if self._open.get(batch.key) is batch:
            del self._open[batch.key]
        batch.full.set()

    async def _make_after_window(self, batch: _Batch) -> None:
        with anyio.move_on_after(self.window_seconds):
            await batch.full.wait()
        self._close(batch)
        batch.closed = True
        try:
            if batch.dispatches:  # in item order, whatever order they were taken in: index i runs the i-th item
                batch.placed = await self._make_job(sorted(batch.dispatches, key=_item_index))
        except Exception as exc:  # a bug, not the cluster: the batch's attempts fail, the executor goes on
            outcome = AttemptOutcome(error=system_error(f"its map Job cannot be made: {exc!r}", "JobNotMade", exc))
            batch.placed = {dispatch.attempt_id: outcome for dispatch in batch.dispatches}
        finally:
            for dispatch in batch.dispatches:
                self._waiting.pop(dispatch.attempt_id, None)
            batch.made.set()


def _item_index(dispatch: Dispatch) -> int:
    return item_of_attempt(dispatch.attempt_id)
