"""``ExecutionHandle``, the blocking twin of ``AsyncExecutionHandle``, and the portal that runs both blocking
twins' calls on an event loop in a background thread."""

from __future__ import annotations

import functools
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Generic, TypeVar

import anyio.from_thread

from plait.adapters.event_log import StoredDecision
from plait.client.handle import AsyncExecutionHandle
from plait.client.outcome import ExecutionOutcome
from plait.errors import Unavailable

R = TypeVar("R")
T = TypeVar("T")

_CLOSE_SECONDS = 5.0  # how long leaving an iteration early waits for its task on the loop to end


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
        """``items`` as they come, each fetched on the loop when asked for. One task on the loop iterates them
        from first to last (an async generator holding a task group must be resumed, and closed, in the task that
        started it); leaving early cancels that task, which closes ``items``; an error it met is raised here."""
        send, receive = anyio.create_memory_object_stream[T](0)  # nothing fetched before it is asked for
        finished = threading.Event()

        async def pump() -> None:
            try:
                async with send:
                    async for item in items:
                        await send.send(item)
            finally:
                aclose = getattr(items, "aclose", None)
                with anyio.CancelScope(shield=True):
                    if aclose is not None:
                        await aclose()
                finished.set()

        future = self._portal.start_task_soon(pump)
        try:
            while True:
                try:
                    item = self.call(receive.receive)
                except anyio.EndOfStream:
                    future.result()  # what ended it: its error, if any
                    return
                yield item
        finally:
            if not future.done() and not self.closed:
                future.cancel()
                finished.wait(_CLOSE_SECONDS)
            receive.close()  # its sender is done: nothing else touches it

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
