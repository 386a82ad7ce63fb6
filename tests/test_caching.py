"""Caching end to end on real servers: hits, one computation per key, waiting, release, expiry, overwrite."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import msgspec
import nats.js.errors
import pytest

from plait.adapters.cachelog import CacheLog, entry_decoder
from plait.client import AsyncClient
from plait.core.cachelog import CacheCleared, CacheFilled, CacheReleased, CacheReserved
from plait.core.commands import ReportAttemptResult, ReportCacheLookup
from plait.core.decide import decide_batch
from plait.core.events import (
    AttemptStarted,
    Event,
    NodeCacheHit,
    NodeCacheLookup,
    NodeCacheWaiting,
    NodeQueued,
    NodeSucceeded,
)
from plait.core.ids import cache_key, new_execution_id
from plait.protocol import subjects
from plait_catalog import CatalogService
from plait_executor import ExecutorService
from plait_scheduler import SchedulerService
from plait_scheduler.caching import CacheKeeper
from tests import cache_workflows
from tests.helpers.launching import launched
from tests.helpers.outbox_replay import forget_outbox_position, outbox_caught_up
from tests.helpers.running import running
from tests.helpers.states import final_state

DEADLINE = 60.0


@contextlib.asynccontextmanager
async def scheduler_and_executor(nats_url: str, concurrency: int = 4) -> AsyncIterator[AsyncClient]:
    """No catalog: look-ups go straight to the key's log (the catalog's answer is an optimisation)."""
    scheduler = SchedulerService(nats_url, replica="cache-scheduler", cache_lookup_seconds=0.2)
    executor = ExecutorService(nats_url, concurrency=concurrency, replica="cache-executor")
    async with running(scheduler.run, executor.run):
        async with await AsyncClient.connect(nats_url) as client:
            yield client


@pytest.fixture
async def client(nats_url: str) -> AsyncIterator[AsyncClient]:
    async with scheduler_and_executor(nats_url) as plait_client:
        yield plait_client


async def events_of(client: AsyncClient, execution_id: str) -> list[Event]:
    return [event async for stored in client.events(execution_id) for event in stored.decision.events]


def square_key(x: int, seconds: float) -> str:
    spec = cache_workflows.slow_square.spec
    return cache_key(spec.name, spec.cache_version, spec.interface, {"x": x, "seconds": seconds})


async def entry_records(client: AsyncClient, key: str) -> list[Any]:
    """Every record on the key's entry subject, oldest first."""
    cache_log = CacheLog(client.js, client.project, client.domain, key)
    found, sequence = [], 0
    while True:
        try:
            raw = await client.js.get_msg("PLAIT_EVENTS", seq=sequence + 1, subject=cache_log.entry_subject, next=True)
        except nats.js.errors.NotFoundError:
            return found
        found.append(entry_decoder.decode(raw.data))
        sequence = raw.seq or 0


async def test_a_second_run_is_served_entirely_from_the_cache(client: AsyncClient) -> None:
    first_id = (await client.launch(cache_workflows.increments, {"start": 10})).id
    first = await final_state(client, first_id, timeout=DEADLINE)
    second_id = (await client.launch(cache_workflows.increments, {"start": 10})).id
    second = await final_state(client, second_id, timeout=DEADLINE)
    assert first.status == second.status == "succeeded"
    assert first.outputs == second.outputs == {"result": [1, 2, 3, 11]}
    second_events = await events_of(client, second_id)
    assert not any(isinstance(e, NodeQueued) for e in second_events), "nothing was dispatched"
    hits = [e for e in second_events if isinstance(e, NodeCacheHit)]
    assert len(hits) == 4 and {h.source_execution for h in hits} == {first_id}
    assert all(node.cached_from.startswith(first_id + "/") for node in second.nodes.values())


async def test_other_inputs_reuse_only_the_nodes_they_share(client: AsyncClient) -> None:
    await final_state(client, await client.launch(cache_workflows.increments, {"start": 10}), timeout=DEADLINE)
    other_id = (await client.launch(cache_workflows.increments, {"start": 20})).id
    other = await final_state(client, other_id, timeout=DEADLINE)
    assert other.outputs == {"result": [1, 2, 3, 21]}
    events = await events_of(client, other_id)
    assert len([e for e in events if isinstance(e, NodeCacheHit)]) == 3
    assert [e.inputs for e in events if isinstance(e, NodeQueued)] == [{"x": 20}]


async def test_twenty_executions_needing_one_key_compute_it_once(client: AsyncClient, tmp_path: Path) -> None:
    inputs = {"x": 7, "directory": str(tmp_path)}
    launches = []
    async with anyio.create_task_group() as tg:
        for _ in range(20):

            async def launch() -> None:
                launches.append((await client.launch(cache_workflows.gated_then_doubled, inputs)).id)

            tg.start_soon(launch)
    for execution_id in launches:  # each one computes the key, or waits for the one that does
        async for stored in client.events(execution_id):
            if any(
                isinstance(e, NodeCacheWaiting) or (isinstance(e, NodeQueued) and e.node == "gated_square")
                for e in stored.decision.events
            ):
                break
    (tmp_path / "release").touch()
    states = [await final_state(client, execution_id, timeout=DEADLINE) for execution_id in launches]
    assert {state.status for state in states} == {"succeeded"}
    assert {str(state.outputs) for state in states} == {str({"result": 98})}
    computed = waited = 0
    for execution_id in launches:
        events = await events_of(client, execution_id)
        computed += sum(1 for e in events if isinstance(e, NodeQueued) and e.node == "gated_square")
        waited += sum(1 for e in events if isinstance(e, NodeCacheWaiting))
    assert (computed, waited) == (1, 19), "one computed the key while the others waited for it"
    spec = cache_workflows.gated_square.spec
    key = cache_key(spec.name, spec.cache_version, spec.interface, inputs)
    fills = [r for r in await entry_records(client, key) if isinstance(r, CacheFilled)]
    assert len(fills) == 1


async def test_a_waiter_computes_the_key_when_its_holder_fails(client: AsyncClient, tmp_path: Path) -> None:
    holder_id = (await client.launch(cache_workflows.guarded, {"x": 1, "directory": str(tmp_path)})).id
    async for stored in client.events(holder_id):
        if any(isinstance(e, AttemptStarted) for e in stored.decision.events):
            break
    waiter_id = (await client.launch(cache_workflows.guarded, {"x": 1, "directory": str(tmp_path)})).id
    async for stored in client.events(waiter_id):
        if any(isinstance(e, NodeCacheWaiting) for e in stored.decision.events):
            break
    (tmp_path / "fail-1").touch()  # the holder's task fails now, with a look-up waiting on it
    holder = await final_state(client, holder_id, timeout=DEADLINE)
    waiter = await final_state(client, waiter_id, timeout=DEADLINE)
    assert holder.status == "failed" and waiter.status == "succeeded" and waiter.outputs == {"result": 1}
    events = await events_of(client, waiter_id)
    kinds = [type(e).__name__ for e in events if isinstance(e, NodeCacheLookup | NodeCacheWaiting | NodeQueued)]
    assert kinds == ["NodeCacheLookup", "NodeCacheWaiting", "NodeCacheLookup", "NodeQueued"]
    spec = cache_workflows.fail_once.spec
    records = await entry_records(
        client, cache_key(spec.name, spec.cache_version, spec.interface, {"x": 1, "directory": str(tmp_path)})
    )
    assert [type(r) for r in records] == [CacheReserved, CacheReleased, CacheReserved, CacheFilled]


async def test_a_reservation_whose_holder_never_returns_expires(client: AsyncClient) -> None:
    key = square_key(5, 0.0)
    now = datetime.now(UTC)
    ghost = CacheReserved(execution_id="ghost", node="slow_square", at=now, until=now + timedelta(seconds=2))
    await CacheLog(client.js, client.project, client.domain, key).append(ghost, expected=0)
    execution_id = (await client.launch(cache_workflows.squared_then_doubled, {"x": 5, "seconds": 0.0})).id
    state = await final_state(client, execution_id, timeout=DEADLINE)
    assert state.status == "succeeded" and state.outputs == {"result": 50}
    events = await events_of(client, execution_id)
    [waiting] = [e for e in events if isinstance(e, NodeCacheWaiting)]
    assert waiting.holder_execution == "ghost" and waiting.until == ghost.until
    assert [e.round for e in events if isinstance(e, NodeCacheLookup)] == [1, 2]
    records = await entry_records(client, key)
    assert [type(r) for r in records] == [CacheReserved, CacheReserved, CacheFilled]
    assert records[1].execution_id == execution_id and records[1].at >= ghost.until


async def test_overwrite_cache_recomputes_and_replaces_the_entry(client: AsyncClient) -> None:
    first_id = (await client.launch(cache_workflows.squared_then_doubled, {"x": 4})).id
    await final_state(client, first_id, timeout=DEADLINE)
    second_id = (await client.launch(cache_workflows.squared_then_doubled, {"x": 4}, overwrite_cache=True)).id
    await final_state(client, second_id, timeout=DEADLINE)
    assert not any(isinstance(e, NodeCacheLookup) for e in await events_of(client, second_id))
    third_id = (await client.launch(cache_workflows.squared_then_doubled, {"x": 4})).id
    third = await final_state(client, third_id, timeout=DEADLINE)
    assert third.nodes["slow_square"].cached_from == f"{second_id}/slow_square"
    fills = [r for r in await entry_records(client, square_key(4, 0.0)) if isinstance(r, CacheFilled)]
    assert [f.execution_id for f in fills] == [first_id, second_id]


async def test_the_catalog_answers_look_ups_when_it_runs(nats_url: str, database_url: str) -> None:
    scheduler = SchedulerService(nats_url, replica="cache-scheduler")
    executor = ExecutorService(nats_url, concurrency=2, replica="cache-executor")
    catalog = CatalogService(nats_url, database_url, replica="cache-catalog")
    async with running(scheduler.run, executor.run, catalog.run), await AsyncClient.connect(nats_url) as client:
        fills = await client.js.subscribe(f"{subjects.CACHE_ROOT}.*.*.*.entry", ordered_consumer=True)
        await final_state(client, await client.launch(cache_workflows.increments, {"start": 7}), timeout=DEADLINE)
        last_fill = 0
        for _ in range(4):  # reservation and fill of each of the 4 keys, in some order
            message = await fills.next_msg(timeout=DEADLINE)
            while not isinstance(entry_decoder.decode(message.data), CacheFilled):
                message = await fills.next_msg(timeout=DEADLINE)
            last_fill = max(last_fill, message.metadata.sequence.stream)
        assert len(await client.cache_entries(min_sequence=last_fill)) == 4  # the catalog has projected them
        second = await final_state(
            client, await client.launch(cache_workflows.increments, {"start": 7}), timeout=DEADLINE
        )
        assert all(node.cached_from for node in second.nodes.values())
        assert scheduler.outbox is not None and scheduler.outbox.keeper is not None
        assert scheduler.outbox.keeper.catalog_hits == 4


async def test_a_catalog_that_does_not_answer_in_time_does_not_block_a_workflow(nats_url: str) -> None:
    scheduler = SchedulerService(nats_url, replica="cache-scheduler", cache_lookup_seconds=0.2)
    executor = ExecutorService(nats_url, concurrency=2, replica="cache-executor")
    async with running(scheduler.run, executor.run), await AsyncClient.connect(nats_url) as client:
        silent = await client.nc.subscribe(
            subjects.catalog_subscription(subjects.CATALOG_CACHE_LOOKUP_MANY), queue=subjects.CATALOG_QUEUE_GROUP
        )  # takes requests, never answers
        first = await final_state(
            client, await client.launch(cache_workflows.increments, {"start": 8}), timeout=DEADLINE
        )
        second = await final_state(
            client, await client.launch(cache_workflows.increments, {"start": 8}), timeout=DEADLINE
        )
        assert first.status == second.status == "succeeded"
        assert all(node.cached_from for node in second.nodes.values()), "the key's log answered instead"
        asked = [await silent.next_msg(timeout=DEADLINE) for _ in range(2)]  # one request per launch decision
        assert [len(msgspec.json.decode(request.data)["cache_keys"]) for request in asked] == [4, 4]
        assert scheduler.outbox is not None and scheduler.outbox.keeper is not None
        assert scheduler.outbox.keeper.catalog_hits == 0


async def test_two_replicas_doing_each_others_cache_work_compute_each_key_once(nats_url: str) -> None:
    """The replica that decides does a decision's cache work, and the outbox of either replica may do it again:
    every step is idempotent, so each key is still computed once and every execution gets its result."""
    first = SchedulerService(nats_url, replica="cache-scheduler-1", cache_lookup_seconds=0.1)
    second = SchedulerService(nats_url, replica="cache-scheduler-2", cache_lookup_seconds=0.1)
    executor = ExecutorService(nats_url, concurrency=2, replica="cache-executor")
    async with running(first.run, second.run, executor.run), await AsyncClient.connect(nats_url) as client:
        launches: list[str] = []
        async with anyio.create_task_group() as tg:
            for x in (1, 2, 1, 2, 1, 2, 1, 2):

                async def launch(x: int = x) -> None:
                    inputs = {"x": x, "seconds": 0.3}
                    launches.append((await client.launch(cache_workflows.squared_then_doubled, inputs)).id)

                tg.start_soon(launch)
        states = [await final_state(client, execution_id, timeout=DEADLINE) for execution_id in launches]
        assert {state.status for state in states} == {"succeeded"}
        computed: dict[int, int] = {1: 0, 2: 0}
        for state in states:
            events = await events_of(client, state.execution_id)
            computed[state.inputs["x"]] += sum(
                1 for e in events if isinstance(e, NodeQueued) and e.node == "slow_square"
            )
        assert computed == {1: 1, 2: 1}
        for x in (1, 2):
            fills = [r for r in await entry_records(client, square_key(x, 0.3)) if isinstance(r, CacheFilled)]
            assert len(fills) == 1


async def test_a_lagging_outbox_reserves_no_key_for_a_node_that_ended(nats_url: str) -> None:
    """Replaying the log, the outbox meets the node's old look-up and fill: the key, cleared since, stays free."""
    async with scheduler_and_executor(nats_url) as client:
        await final_state(client, await client.launch(cache_workflows.squared_then_doubled, {"x": 6}), timeout=DEADLINE)
        key = square_key(6, 0.0)
        assert (await client.clear_cache([key])).cleared == [key]
        await forget_outbox_position(client.js)
    replaying = SchedulerService(nats_url, replica="lagging", cache_lookup_seconds=0.2)
    async with running(replaying.run), await AsyncClient.connect(nats_url) as client:
        await outbox_caught_up(client.js)
        records = await entry_records(client, key)
    assert [type(r) for r in records] == [CacheReserved, CacheFilled, CacheCleared]


async def test_a_result_is_not_stored_over_another_nodes_reservation(nats_url: str) -> None:
    """The reservation passed to another node (the first holder's expired): only that node fills the key."""
    execution_id = new_execution_id()
    state, _ = launched(cache_workflows.squared_then_doubled, {"x": 11}, datetime.now(UTC), execution_id)
    node = state.nodes["slow_square"]
    lookup = ReportCacheLookup(
        command_id="reserved",
        execution_id=execution_id,
        node=node.id,
        cache_key=node.cache_key,
        round=1,
        outcome="reserved",
    )
    decide_batch(state, [lookup], datetime.now(UTC))
    result = ReportAttemptResult(
        command_id="result",
        execution_id=execution_id,
        node=node.id,
        attempt_id=node.attempts[-1].attempt_id,
        worker="w",
        outputs={"result": 121},
    )
    [*_, succeeded, _] = decide_batch(state, [result], datetime.now(UTC)).events
    assert isinstance(succeeded, NodeSucceeded)
    async with await AsyncClient.connect(nats_url, project=state.project, domain=state.domain) as client:
        now = datetime.now(UTC)
        other = CacheReserved(execution_id="other", node=node.id, at=now, until=now + timedelta(minutes=10))
        await CacheLog(client.js, state.project, state.domain, node.cache_key).append(other, expected=0)
        await CacheKeeper(client.nc, client.js).fill(state, succeeded)
        assert await entry_records(client, node.cache_key) == [other]


async def test_a_reservation_outlasts_its_lease_while_its_holder_computes(nats_url: str) -> None:
    """Reservations of 2 s, a task of 6 s, a second execution waiting: the key is still computed once."""
    scheduler = SchedulerService(nats_url, replica="cache-scheduler", cache_reservation_seconds=2.0)
    executor = ExecutorService(nats_url, concurrency=2, replica="cache-executor")
    inputs = {"x": 12, "seconds": 6.0}
    async with running(scheduler.run, executor.run), await AsyncClient.connect(nats_url) as client:
        holder_id = (await client.launch(cache_workflows.squared_then_doubled, inputs)).id
        async for stored in client.events(holder_id):
            if any(isinstance(e, AttemptStarted) for e in stored.decision.events):
                break
        waiter_id = (await client.launch(cache_workflows.squared_then_doubled, inputs)).id
        states = [await final_state(client, execution_id, timeout=DEADLINE) for execution_id in (holder_id, waiter_id)]
        assert [state.outputs for state in states] == [{"result": 288}, {"result": 288}]
        waiter_events = await events_of(client, waiter_id)
        records = await entry_records(client, square_key(12, 6.0))
    assert not [e for e in waiter_events if isinstance(e, NodeQueued) and e.node == "slow_square"]
    assert len([e for e in waiter_events if isinstance(e, NodeCacheWaiting)]) >= 2, "it waited past the lease"
    assert [type(r) for r in records] == [CacheReserved, CacheFilled]
