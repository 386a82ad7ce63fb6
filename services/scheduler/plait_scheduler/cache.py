"""The scheduler's cache of execution states: a cache only, always checked against the log by OCC."""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from plait.bounded_cache import BytesBoundedCache
from plait.core.events import ExecutionLaunched
from plait.core.notifications import Notify
from plait.core.state import Execution
from plait.metrics.names import STATE_CACHE_BYTES

DEFAULT_CAPACITY_BYTES = 128 * 1024 * 1024
"""A quarter of the 512 MiB a scheduler pod gets (deploy/k8s): the rest is for the batches in flight and Python."""

MEMORY_PER_STORED_BYTE = 3
"""A state in memory takes about this many times the bytes of the decisions it was built from (measured with
tracemalloc: a 201-node fan-out's 132 KiB of decisions became 368 KiB of objects)."""

OVERHEAD_BYTES = 4096  # a state's own objects, whatever its history: the workflow spec, the node states
ENDED_CAPACITY_BYTES = 4 * 1024 * 1024
LAUNCH_BYTES = 512  # about what a ``Launch`` holds


class Launch(NamedTuple):
    """What an execution was launched with that its notifications are made of (fixed at launch)."""

    project: str
    domain: str
    execution_id: str
    workflow: str
    notify: Notify | None
    launch_plan: str  # "name@version", or ""

    @classmethod
    def of(cls, source: Execution | ExecutionLaunched) -> Launch:
        """From any state of the execution, or its launch event."""
        notify = source.workflow.notify
        return cls(
            source.project,
            source.domain,
            source.execution_id,
            source.workflow.name,
            None if notify is msgspec.UNSET else notify,
            source.launch_plan,
        )


def estimated_bytes(state: Execution) -> int:
    """About how much memory ``state`` holds, from the bytes of its decisions (read anyway, so free to know), but
    for its map items, counted as their compact state grows (``Execution.item_bytes``)."""
    return OVERHEAD_BYTES + MEMORY_PER_STORED_BYTE * state.stored_bytes + state.item_bytes


class StateCache:
    """Least-recently-used states of running executions by subject, up to ``capacity_bytes`` in all (estimated).

    A state being decided on is taken out (``take``) and put back only once its decision is stored, so a failed
    append can never leave unstored events behind. Finished executions are not kept: nothing more is decided on
    them; only their ``Launch`` is, for a while (``ended``), for the notifications of their end.
    """

    def __init__(self, capacity_bytes: int = DEFAULT_CAPACITY_BYTES) -> None:
        self._states: BytesBoundedCache[str, Execution] = BytesBoundedCache(capacity_bytes)
        self._ended: BytesBoundedCache[str, Launch] = BytesBoundedCache(ENDED_CAPACITY_BYTES)
        STATE_CACHE_BYTES.set_function(lambda: self._states.size_bytes)

    @property
    def capacity_bytes(self) -> int:
        return self._states.capacity_bytes

    @property
    def size_bytes(self) -> int:
        return self._states.size_bytes

    def get(self, subject: str) -> Execution | None:
        return self._states.get(subject)

    def take(self, subject: str) -> Execution | None:
        """The state, removed from the cache: whoever took it puts it back once it is stored again."""
        return self._states.pop(subject)

    def ended(self, subject: str) -> Launch | None:
        """The launch of an execution whose end this replica stored recently."""
        return self._ended.get(subject)

    def put(self, subject: str, state: Execution) -> None:
        if state.terminal:
            self._states.pop(subject)
            self._ended.put(subject, Launch.of(state), LAUNCH_BYTES)
        else:
            self._states.put(subject, state, estimated_bytes(state))

    def drop(self, subject: str) -> None:
        self._states.pop(subject)

    def __len__(self) -> int:
        return len(self._states)
