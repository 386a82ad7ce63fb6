"""Running services in the background of a test, across fixture setup and teardown."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import anyio
import anyio.abc

ServiceRun = Callable[..., Coroutine[Any, Any, None]]


class Running:
    """A service's ``run`` in its own task: ``start`` returns once it reported ready, ``stop`` cancels it."""

    def __init__(self, run: ServiceRun) -> None:
        self._run = run
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Running:
        ready = asyncio.Event()

        async def main() -> None:
            async with anyio.create_task_group() as tg:
                await tg.start(self._run)
                ready.set()

        self._task = asyncio.create_task(main())
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait([self._task, waiter], return_when=asyncio.FIRST_COMPLETED, timeout=60)
        waiter.cancel()
        if self._task.done():
            self._task.result()  # raises the service's start-up error
        if not ready.is_set():
            raise TimeoutError("service did not start within 60 s")
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@contextlib.asynccontextmanager
async def running(*runs: ServiceRun) -> AsyncIterator[list[Running]]:
    handles = [await Running(run).start() for run in runs]
    try:
        yield handles
    finally:
        for handle in reversed(handles):
            await handle.stop()
