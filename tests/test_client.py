"""The blocking ``Client``: the same operations as ``AsyncClient``, from plain (non-async) code."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio.to_thread
import pytest

from plait import InputError
from plait.client import AsyncClient, Client
from plait.core.events import ExecutionLaunched, ExecutionSucceeded
from tests import workflows
from tests.stack import services_and_client


@pytest.fixture
async def services(nats_url: str, database_url: str) -> AsyncIterator[AsyncClient]:
    async with services_and_client(nats_url, database_url) as client:
        yield client


def use_blocking_client(nats_url: str) -> dict[str, object]:
    """What a script does with the blocking client; runs in a thread, beside the services' event loop."""
    seen: dict[str, object] = {}
    with Client(nats_url) as client:
        execution_id = client.launch(workflows.add_two, {"a": 20, "b": 22})
        seen["final"] = client.wait(execution_id, timeout=60)
        seen["got"] = client.get(execution_id)
        seen["events"] = [type(e) for stored in client.events(execution_id) for e in stored.decision.events]
        seen["latest"] = client.latest_version(workflows.add_two.name)
        try:
            client.launch(workflows.add_two, {"a": "x", "b": 1})
        except InputError as exc:
            seen["rejected"] = str(exc)
        long_one = client.launch(workflows.paused, {"seconds": 2.0})
        client.abort(long_one, "no longer needed")
        seen["aborted"] = client.wait(long_one, timeout=60)
        seen["listed"] = [row["execution_id"] for row in client.list_executions(limit=10)]
        seen["id"] = execution_id
    return seen


async def test_the_blocking_client_launches_follows_aborts_and_lists(services: AsyncClient, nats_url: str) -> None:
    seen = await anyio.to_thread.run_sync(use_blocking_client, nats_url)
    final = seen["final"]
    assert final.status == "succeeded" and final.outputs == {"result": 42}  # type: ignore[attr-defined]
    assert seen["got"].outputs == final.outputs  # type: ignore[attr-defined]
    events = seen["events"]
    assert events[0] is ExecutionLaunched and events[-1] is ExecutionSucceeded  # type: ignore[index]
    assert seen["latest"] == workflows.add_two.spec.version
    assert "input 'a' expects int" in str(seen["rejected"])
    aborted = seen["aborted"]
    assert (aborted.status, aborted.abort_reason) == ("aborted", "no longer needed")  # type: ignore[attr-defined]
    assert aborted.nodes["pause"].status == "aborted"  # type: ignore[attr-defined]
    assert seen["id"] in seen["listed"]  # type: ignore[operator]
