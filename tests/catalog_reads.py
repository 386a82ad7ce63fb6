"""Reading the catalog's view of an execution once it has projected the log as it is now."""

from __future__ import annotations

from typing import Any

import anyio

from plait.client import AsyncClient

DEADLINE = 30.0


async def projected(client: AsyncClient, execution_id: str) -> dict[str, Any]:
    """The catalog's ``executions.show`` of the execution, asked again while the catalog cannot answer yet."""
    position = await client.log_position()
    with anyio.fail_after(DEADLINE):
        while True:
            answer = await client.query("executions.show", {"execution_id": execution_id, "min_sequence": position})
            if "execution" in answer:
                shown: dict[str, Any] = answer["execution"]
                return shown
