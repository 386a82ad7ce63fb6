"""An attempt's values through the values bucket: its referenced inputs downloaded before the task is called, its
large outputs (and its files and directories) uploaded before the result is sent. Local worker processes and the
Kubernetes task runtime both run their attempts through ``run_with_values``."""

from __future__ import annotations

import contextlib
import tarfile
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import msgspec
import nats.errors

from plait.adapters.object_store import ValueMissing, ValueStore, ValueUnstorable
from plait.core.dispatch import Dispatch
from plait.core.ids import item_of_attempt
from plait.core.values import contains_refs
from plait_executor.attempt import AttemptOutcome, system_error
from plait_executor.backend import AttemptBackend
from plait_executor.folders import remove_folder

VALUE_MISSING = "ValueMissing"
"""``error_type`` of the system error of an attempt whose input names an object the values bucket does not hold."""


MAP_ITEM_INLINE_LIMIT = 1024
"""A map item's outputs over this many bytes are stored whatever the inline limit: the core gathers every item's
outputs into the map node's, and a thousand items of 60 KiB would make a decision too large to store."""


Outcome = TypeVar("Outcome", AttemptOutcome, AttemptOutcome | None)


async def run_with_values(
    store: ValueStore, dispatch: Dispatch, call: Callable[[dict[str, Any]], Awaitable[Outcome]]
) -> Outcome:
    """Download the references among the dispatch's inputs, ``call`` the attempt with the values, store its
    outputs; a missing or unreadable value, or an output that cannot be stored, is the attempt's system error."""
    map_item = item_of_attempt(dispatch.attempt_id) >= 0
    limit = min(store.inline_limit, MAP_ITEM_INLINE_LIMIT) if map_item else store.inline_limit
    with contextlib.ExitStack() as downloaded:
        inputs = dispatch.inputs
        if contains_refs(inputs):  # most attempts have none: no directory made, nothing walked
            workdir = downloaded.enter_context(tempfile.TemporaryDirectory(prefix="plait-values-"))
            try:
                inputs = await store.load_all(inputs, Path(workdir))
            except ValueMissing as exc:
                return AttemptOutcome(error=system_error(f"an input cannot be read: {exc}", VALUE_MISSING))
            except (nats.errors.Error, msgspec.DecodeError, tarfile.TarError, OSError) as exc:
                error = system_error(f"an input cannot be read: {exc!r}", "ValueUnreadable", exc)
                return AttemptOutcome(error=error)
        outcome = await call(inputs)
        if outcome is None or outcome.outputs is None:
            return outcome
        try:
            outputs = await store.store_all(outcome.outputs, limit)
        except ValueUnstorable as exc:  # the outcome keeps what the attempt wrote
            return msgspec.structs.replace(outcome, outputs=None, error=system_error(str(exc), "OutputError"))
        except nats.errors.Error as exc:
            message = f"the outputs cannot be stored in the values bucket: {exc!r}"
            error = system_error(message, "OutputNotStored", exc)
            return msgspec.structs.replace(outcome, outputs=None, error=error)
    return msgspec.structs.replace(outcome, outputs=outputs)


class ValuesBackend:
    """A back end whose attempts get their inputs' values and have their outputs stored by the executor (a local
    one: a back end whose attempts report themselves does this in its own runtime); the temporary files an attempt
    left are removed once its outputs are stored (``plait_executor.scratch``)."""

    def __init__(self, inner: AttemptBackend, store: ValueStore) -> None:
        self.inner = inner
        self.store = store
        self.reports_itself = inner.reports_itself

    async def run(self, dispatch: Dispatch, *, on_start: Callable[[], None]) -> AttemptOutcome | None:
        started = False

        def starting() -> None:
            nonlocal started
            started = True
            on_start()

        async def call(inputs: dict[str, Any]) -> AttemptOutcome | None:
            return await self.inner.run(msgspec.structs.replace(dispatch, inputs=inputs), on_start=starting)

        outcome = await run_with_values(self.store, dispatch, call)
        if outcome is not None and outcome.leftovers is not None:
            with anyio.CancelScope(shield=True):
                await remove_folder(outcome.leftovers)
        if not started:  # its inputs could not be read: the attempt ends without a worker, but it started
            on_start()
        return outcome

    async def stop(self, dispatch: Dispatch) -> str:
        return await self.inner.stop(dispatch)


def with_values(backend: AttemptBackend, store: ValueStore) -> AttemptBackend:
    """``backend``, its values handled by this executor unless its attempts report themselves."""
    return backend if backend.reports_itself else ValuesBackend(backend, store)
