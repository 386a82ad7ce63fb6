"""Reading what a scheduler appended, in tests: from the log itself, waiting for it rather than racing it."""

from __future__ import annotations

from typing import TypeVar

import anyio

from plait.client import AsyncClient
from plait.core.events import Event, NodeQueued

E = TypeVar("E", bound=Event)


async def queued_at_launch(client: AsyncClient, execution_id: str) -> list[str]:
    """The nodes the execution's launch queued, once its first decision is in the log (waiting up to 30 s)."""
    with anyio.fail_after(30):
        async for stored in client.events(execution_id, until_terminal=False):
            return [event.node for event in stored.decision.events if isinstance(event, NodeQueued)]
    raise AssertionError(f"the log of {execution_id} ended before its launch")


async def first_event(client: AsyncClient, execution_id: str, kind: type[E], timeout: float = 60.0) -> E:
    """The first event of ``kind`` in the execution's log, once it is appended (also after the execution ended)."""
    with anyio.fail_after(timeout):
        async for stored in client.events(execution_id, until_terminal=False):
            for event in stored.decision.events:
                if isinstance(event, kind):
                    return event
    raise AssertionError(f"the log of {execution_id} ended")


async def events_of(
    client: AsyncClient, execution_id: str, kind: type[E], count: int, timeout: float = 60.0
) -> list[E]:
    """The first ``count`` events of ``kind`` in the execution's log, once they are appended (also after its end)."""
    found: list[E] = []
    with anyio.fail_after(timeout):
        async for stored in client.events(execution_id, until_terminal=False):
            found += [event for event in stored.decision.events if isinstance(event, kind)]
            if len(found) >= count:
                return found[:count]
    raise AssertionError(f"the log of {execution_id} ended")
