"""The scheduler's cache of execution states: a cache only, always checked against the log by OCC."""

from __future__ import annotations

from collections import OrderedDict

from plait.core.state import Execution


class StateCache:
    """Least-recently-used states by execution subject; finished executions leave first."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._states: OrderedDict[str, Execution] = OrderedDict()

    def get(self, subject: str) -> Execution | None:
        state = self._states.get(subject)
        if state is not None:
            self._states.move_to_end(subject)
        return state

    def put(self, subject: str, state: Execution) -> None:
        self._states[subject] = state
        self._states.move_to_end(subject)
        while len(self._states) > self.capacity:
            self._states.popitem(last=False)

    def drop(self, subject: str) -> None:
        self._states.pop(subject, None)

    def __len__(self) -> int:
        return len(self._states)
