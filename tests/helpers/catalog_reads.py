"""Reading the catalog's view of an execution once it has projected the log as it is now."""

from __future__ import annotations

import anyio

from plait.client import AsyncClient, ExecutionDetail
from plait.errors import NotFound, PlaitError

DEADLINE = 30.0
RETRY_SECONDS = 0.2


async def projected(client: AsyncClient, execution_id: str) -> ExecutionDetail:
    """The catalog's ``executions.show`` of the execution, asked again while the catalog cannot answer yet (it
    waits for PostgreSQL, or has not projected that far)."""
    position = await client.log_position()
    with anyio.fail_after(DEADLINE):
        while True:
            try:
                return await client.show_execution(execution_id, min_sequence=position)
            except NotFound:
                raise
            except PlaitError:  # not projected that far within the catalog's own wait, or PostgreSQL is away
                await anyio.sleep(RETRY_SECONDS)  # paces the questions; the answer is what is awaited
