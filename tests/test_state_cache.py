"""Memory bounded in bytes: the scheduler's cache of execution states and the registry's cache of workflows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import msgspec
import pytest

from plait.adapters.registry import Registry
from plait.client import AsyncClient
from plait.core.events import WorkflowRegistered
from plait.core.state import Execution
from plait_scheduler.cache import StateCache, estimated_bytes
from tests import definitions
from tests.helpers.launching import launched

AT = datetime(2026, 1, 2, tzinfo=UTC)


def state_of(execution_id: str, stored_bytes: int, status: str = "running") -> Execution:
    state, _ = launched(definitions.diamond, {"x": 1}, AT, execution_id)
    state.stored_bytes = stored_bytes
    state.status = status  # type: ignore[assignment]
    return state


def test_states_leave_least_recently_used_first_once_their_bytes_exceed_the_capacity() -> None:
    one_mib = 1024 * 1024
    size = estimated_bytes(state_of("x", one_mib))
    cache = StateCache(capacity_bytes=3 * size)
    for name in ("a", "b", "c"):
        cache.put(name, state_of(name, one_mib))
    assert cache.get("a") is not None  # now the most recently used
    cache.put("d", state_of("d", one_mib))
    assert [name for name in "abcd" if cache.get(name) is not None] == ["a", "c", "d"]
    assert cache.size_bytes == 3 * size <= cache.capacity_bytes


def test_a_state_larger_than_the_whole_cache_and_a_finished_one_are_not_kept() -> None:
    cache = StateCache(capacity_bytes=1024 * 1024)
    cache.put("huge", state_of("huge", 1024 * 1024))
    cache.put("done", state_of("done", 10, status="succeeded"))
    assert len(cache) == 0 and cache.size_bytes == 0


def test_a_state_taken_out_is_no_longer_counted() -> None:
    cache = StateCache()
    cache.put("a", state_of("a", 1000))
    taken = cache.take("a")
    assert taken is not None and cache.get("a") is None and cache.size_bytes == 0
    cache.put("a", taken)
    cache.put("a", taken)
    assert cache.size_bytes == estimated_bytes(taken)


@pytest.fixture
async def client(nats_url: str) -> AsyncIterator[AsyncClient]:
    async with await AsyncClient.connect(nats_url) as plait_client:
        yield plait_client


async def test_the_registry_caches_workflows_up_to_its_bytes(client: AsyncClient) -> None:
    specs = [msgspec.structs.replace(definitions.diamond.spec, version=f"v{i}") for i in range(5)]
    for spec in specs:
        await Registry(client.js).register(WorkflowRegistered(client.project, client.domain, spec))
    size = len(msgspec.json.encode(WorkflowRegistered(client.project, client.domain, specs[0])))
    registry = Registry(client.js, cache_bytes=2 * size + size // 2)
    for spec in specs:
        assert await registry.workflow(client.project, client.domain, spec.name, spec.version) == spec
    assert registry.cached_bytes == 2 * size
    assert await registry.workflow(client.project, client.domain, specs[0].name, "v0") == specs[0], "read again"
