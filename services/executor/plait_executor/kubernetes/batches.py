"""Batches of map item attempts run by one Indexed Job: what the Job carries, and how its pods and an adopting
executor read it back (pure: no I/O, no clock).

A batch holds item attempts of one map node of one execution (the same task, options and code): the first item's
whole dispatch, and for each other item only what differs (its attempt id and number, its decision, the inputs
that are not the first item's). Pod ``i`` of the Indexed Job (``JOB_COMPLETION_INDEX`` = i) runs the batch's
``i``-th attempt. The Job's ``plait.dev/attempts`` annotation lists the attempt ids in index order, so an executor
that restarts finds the Job and the index of each attempt it is redelivered.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec

from plait import codec
from plait.core.dispatch import Dispatch
from plait.core.ids import item_of_attempt
from plait_executor.kubernetes.manifests import ATTEMPTS_ANNOTATION

BATCH_VARIABLE = "PLAIT_DISPATCH_BATCH"
"""The environment variable holding a map Job's encoded ``DispatchBatch``."""
INDEX_VARIABLE = "JOB_COMPLETION_INDEX"
"""Set by Kubernetes in each pod of an Indexed Job: the pod's completion index."""


class BatchItem(msgspec.Struct, frozen=True, array_like=True):
    """An item attempt of a batch after its first: what its dispatch has that the first one's has not."""

    attempt_id: str
    attempt: int
    decision_sequence: int
    inputs: dict[str, Any]  # only the inputs whose value differs from the first item's


class DispatchBatch(msgspec.Struct, frozen=True, kw_only=True):
    first: Dispatch
    rest: list[BatchItem] = msgspec.field(default_factory=list)

    @property
    def size(self) -> int:
        return 1 + len(self.rest)

    @property
    def attempts(self) -> list[str]:
        return [self.first.attempt_id, *(item.attempt_id for item in self.rest)]

    def dispatch_at(self, index: int) -> Dispatch:
        """The dispatch of the attempt at completion ``index``."""
        if not 0 <= index < self.size:
            raise IndexError(f"completion index {index} is not in a batch of {self.size} attempts")
        if index == 0:
            return self.first
        item = self.rest[index - 1]
        return msgspec.structs.replace(
            self.first,
            attempt_id=item.attempt_id,
            attempt=item.attempt,
            decision_sequence=item.decision_sequence,
            inputs={**self.first.inputs, **item.inputs},
        )


_batch_decoder = msgspec.json.Decoder(DispatchBatch)


def is_map_item(dispatch: Dispatch) -> bool:
    return item_of_attempt(dispatch.attempt_id) >= 0


def batch_key(dispatch: Dispatch) -> tuple[str, str, str, str, str]:
    """Dispatches with the same key may share a batch: item attempts of one map node, the same task and code."""
    bundle = dispatch.code_bundle if isinstance(dispatch.code_bundle, str) else ""
    return (dispatch.project, dispatch.domain, dispatch.execution_id, dispatch.node, bundle)


def fits(first: Dispatch, dispatch: Dispatch) -> bool:
    """Whether ``dispatch`` can join the batch whose first attempt is ``first``."""
    return (
        batch_key(first) == batch_key(dispatch)
        and first.task == dispatch.task
        and first.inputs.keys() == dispatch.inputs.keys()
    )


def batch_of(dispatches: Sequence[Dispatch]) -> DispatchBatch:
    """The batch of ``dispatches`` (which must all ``fit`` the first), in this order."""
    first, *rest = dispatches
    for dispatch in rest:
        if not fits(first, dispatch):
            raise ValueError(f"attempt {dispatch.attempt_id} cannot share a batch with {first.attempt_id}")
    return DispatchBatch(first=first, rest=[_item(first, dispatch) for dispatch in rest])


def item_size(first: Dispatch | None, dispatch: Dispatch) -> int:
    """About how many bytes ``dispatch`` adds to an encoded batch whose first attempt is ``first`` (None: it is the
    first)."""
    if first is None:
        return len(codec.encode(dispatch))
    return len(codec.encode(_item(first, dispatch)))


def encode_batch(batch: DispatchBatch) -> str:
    return codec.encode(batch).decode()


def decode_batch(encoded: str) -> DispatchBatch:
    return _batch_decoder.decode(encoded.encode())


def batch_name_key(attempts: Sequence[str]) -> str:
    """What a map Job's name is derived from: its first attempt id and its size. The same batch gives the same
    name, so a second create of it is a 409 that follows the Job."""
    return f"{attempts[0]}+{len(attempts)}"


def attempts_of_job(job: dict[str, Any]) -> list[str] | None:
    """The attempt ids a map Job runs, by index; None for a Job of one attempt (or an unreadable annotation)."""
    listed = job.get("metadata", {}).get("annotations", {}).get(ATTEMPTS_ANNOTATION)
    if listed is None:
        return None
    try:
        attempts = json.loads(listed)
    except ValueError:
        return None
    if not isinstance(attempts, list) or not all(isinstance(attempt, str) for attempt in attempts):
        return None
    return attempts


def _item(first: Dispatch, dispatch: Dispatch) -> BatchItem:
    differing = {name: value for name, value in dispatch.inputs.items() if not _same(first.inputs.get(name), value)}
    return BatchItem(dispatch.attempt_id, dispatch.attempt, dispatch.decision_sequence, differing)


def _same(one: Any, other: Any) -> bool:
    """Equal as encoded (``1``, ``1.0`` and ``True`` are equal in Python, not as values of a task's input)."""
    return one is other or codec.encode(one) == codec.encode(other)
