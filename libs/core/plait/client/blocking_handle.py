"""``ExecutionHandle``, the blocking twin of ``AsyncExecutionHandle``, and the portal that runs both blocking
twins' calls on an event loop in a background thread."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Generic, TypeVar

import anyio.from_thread

from plait.adapters.event_log import StoredDecision
from plait.client.handle import AsyncExecutionHandle
from plait.client.outcome import ExecutionOutcome
from plait.errors import Unavailable

R = TypeVar("R")
T = TypeVar("T")


class Portal:
    """An event loop in a background thread that runs the async client's calls, until closed."""

    def __init__(self) -> None:
        self._manager = anyio.from_thread.start_blocking_portal()
        self._portal = self._manager.__enter__()
        self.closed = False

    def call(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any) -> T:
        if self.closed:
            raise Unavailable("the client is closed")
        result: T = self._portal.call(functools.partial(fn, *args, **kwargs))
        return result

    def iterate(self, items: AsyncIterator[T]) -> Iterator[T]:
        """``items`` as they come, each fetched on the loop when asked for."""

        async def next_item() -> list[T]:
            """The next item, or none once they have all come."""
            try:
                return [await anext(items)]
            except StopAsyncIteration:
                return []

        try:
            while fetched := self.call(next_item):
                yield fetched[0]
        finally:
            aclose = getattr(items, "aclose", None)
            if aclose is not None and not self.closed:
                self.call(aclose)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._manager.__exit__(None, None, None)


class ExecutionHandle(Generic[R]):
    """The blocking twin of ``AsyncExecutionHandle``: an execution to wait for, follow, abort, and take the
    result of."""

    def __init__(self, handle: AsyncExecutionHandle[R], portal: Portal) -> None:
        self._async, self._portal = handle, portal
        self.id = handle.id

    def wait(self, timeout: float | None = None) -> ExecutionOutcome:
        """How the execution ended, once it has; ``Timeout`` if it has not within ``timeout`` seconds."""
        return self._portal.call(self._async.wait, timeout)

    def result(self, timeout: float | None = None) -> R:
        """The workflow's return value, once the execution has succeeded; ``ExecutionError`` if it failed or was
        aborted, ``Timeout`` if it has not ended within ``timeout`` seconds."""
        return self._portal.call(self._async.result, timeout)

    def events(self, *, until_terminal: bool = True) -> Iterator[StoredDecision]:
        """The execution's decisions from the start, then as they are appended; ends after the last one."""
        return self._portal.iterate(self._async.events(until_terminal=until_terminal))

    def abort(self, reason: str = "aborted by request", *, aborted_by: str = "") -> None:
        """Ask the scheduler to abort the execution: its running attempts are cancelled, nothing new starts."""
        self._portal.call(self._async.abort, reason, aborted_by=aborted_by)

    def __repr__(self) -> str:
        return f"<ExecutionHandle {self.id}>"
