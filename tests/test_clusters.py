"""Multi-cluster routing on a real NATS: each executor takes only its own cluster's work, work for a cluster with no
live executor waits (past its attempt deadline) and runs once one starts, and the CLI shows clusters and waits."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
import msgspec
import pytest

from plait.adapters.clusters import cluster_overview
from plait.adapters.executors import executors_bucket, live_executors
from plait.client import AsyncClient
from plait.core.events import NodeQueued
from plait.protocol import subjects
from plait.protocol.executors import ExecutorAnnouncement, announcement_key
from plait_catalog import CatalogService
from plait_executor import ExecutorService
from plait_scheduler import SchedulerService
from plait_scheduler.service import COMMANDS_CONSUMER
from tests import cluster_workflows
from tests.helpers.plait_command import plait_command_async
from tests.helpers.running import running
from tests.helpers.states import current_state, final_state

DEADLINE = 60.0


def executor(nats_url: str, cluster: str, **options: Any) -> ExecutorService:
    return ExecutorService(nats_url, cluster=cluster, concurrency=1, replica=f"{cluster}-1", **options)


async def queued_events(client: AsyncClient, execution_id: str, until: str | None = None) -> list[NodeQueued]:
    """The execution's ``NodeQueued`` events; with ``until``, as soon as one of that cluster's is stored."""
    found: list[NodeQueued] = []
    with anyio.fail_after(DEADLINE):
        async for stored in client.events(execution_id):
            found += [e for e in stored.decision.events if isinstance(e, NodeQueued)]
            if until is not None and any(e.cluster == until for e in found):
                break
    return found


async def test_each_executor_takes_only_its_own_clusters_work(nats_url: str) -> None:
    scheduler = SchedulerService(nats_url, replica="clusters")
    east, west = executor(nats_url, "east"), executor(nats_url, "west")
    async with running(scheduler.run, east.run, west.run), await AsyncClient.connect(nats_url) as client:
        handle = await client.launch(cluster_workflows.east_then_west, {"x": 2})
        state = await final_state(client, handle, timeout=DEADLINE)
        queued = await queued_events(client, handle.id)
    assert state.status == "succeeded" and state.outputs == {"result": 30}
    assert {e.task.rsplit(".", 1)[-1]: e.cluster for e in queued} == {"in_east": "east", "in_west": "west"}
    ran = {node.task.rsplit(".", 1)[-1]: [a.worker for a in node.attempts] for node in state.nodes.values()}
    assert ran == {"in_east": ["east-1"], "in_west": ["west-1"]}


async def commands_idle(client: AsyncClient, execution_id: str) -> None:
    """Wait until every timer of the execution has fired and every command has been decided."""
    timers = f"{subjects.SCHEDULES_ROOT}.{subjects.tenant(client.project, client.domain)}.{execution_id}.>"
    with anyio.fail_after(DEADLINE):
        while True:
            info = await client.js.stream_info(subjects.TIMERS_STREAM, subjects_filter=timers)
            consumer = await client.js.consumer_info(subjects.COMMANDS_STREAM, COMMANDS_CONSUMER)
            if not info.state.subjects and (consumer.num_pending, consumer.num_ack_pending) == (0, 0):
                return
            await anyio.sleep(0.1)


@pytest.fixture
async def stack_without_west(nats_url: str, database_url: str) -> AsyncIterator[AsyncClient]:
    """A scheduler whose attempt deadline passes in 1 s, a catalog, and an executor of cluster ``east`` only."""
    scheduler = SchedulerService(nats_url, replica="clusters", attempt_deadline_seconds=1.0)
    catalog = CatalogService(nats_url, database_url, replica="clusters-catalog")
    east = executor(nats_url, "east", attempt_deadline_seconds=1.0)
    async with running(scheduler.run, catalog.run, east.run), await AsyncClient.connect(nats_url) as client:
        yield client


async def test_work_for_a_cluster_with_no_executor_waits_then_runs_when_one_starts(
    stack_without_west: AsyncClient, nats_url: str
) -> None:
    client = stack_without_west
    handle = await client.launch(cluster_workflows.east_then_west, {"x": 2})
    await queued_events(client, handle.id, until="west")
    await commands_idle(client, handle.id)  # the waiting attempt's deadline has fired, and was decided
    waiting = await current_state(client, handle.id)
    node = next(n for n in waiting.nodes.values() if n.task.endswith("in_west"))
    assert waiting.status == "running" and [a.status for a in node.attempts] == ["queued"]

    env = {"PLAIT_NATS_URL": nats_url}
    shown = await plait_command_async(["executions", "show", handle.id], env)
    assert shown.returncode == 0, shown.stderr
    assert f"node {node.id} waits for cluster west: no executor of it is live" in shown.stdout
    shown_json = await plait_command_async(["executions", "show", handle.id, "--json"], env)
    assert json.loads(shown_json.stdout)["waiting_for_clusters"] == [
        {"node": node.id, "cluster": "west", "live_executors": 0}
    ]
    listed = await plait_command_async(["clusters", "list", "-o", "json"], env)
    assert listed.returncode == 0, listed.stderr
    clusters = {c["cluster"]: c for c in json.loads(listed.stdout)["clusters"]}
    assert (clusters["west"]["live"], clusters["west"]["queued"], clusters["west"]["executors"]) == (False, 1, [])
    assert clusters["east"]["live"] and [e["replica"] for e in clusters["east"]["executors"]] == ["east-1"]
    table = await plait_command_async(["clusters", "list"], env)
    west_row = next(line for line in table.stdout.splitlines() if line.split()[:1] == ["west"])
    assert "0 (none live)" in west_row and "default:1" in west_row

    async with running(executor(nats_url, "west", attempt_deadline_seconds=1.0).run):
        state = await final_state(client, handle, timeout=DEADLINE)
        live = {(e.cluster, e.replica) for e in await live_executors(client.js)}
    assert state.status == "succeeded" and state.outputs == {"result": 30}
    ran = next(n for n in state.nodes.values() if n.task.endswith("in_west"))
    assert [a.worker for a in ran.attempts] == ["west-1"], "one attempt, not failed by its deadline while it waited"
    assert live == {("east", "east-1"), ("west", "west-1")}
    assert ("west", "west-1") not in {(e.cluster, e.replica) for e in await live_executors(client.js)}, (
        "an executor that stops withdraws its announcement"
    )
    views = {view.cluster: view for view in await cluster_overview(client.js)}
    assert views["west"].queued == 0 and not views["west"].executors


async def test_the_announcement_of_an_executor_that_died_expires(nats_url: str) -> None:
    """An announcement nobody writes again is gone once the bucket's max age passes."""
    async with await AsyncClient.connect(nats_url) as client:
        bucket = await executors_bucket(client.js, ttl_seconds=1.0)
        dead = ExecutorAnnouncement(
            cluster="gone",
            queue="default",
            replica="r",
            backend="local",
            started=datetime.now(UTC),
            last_seen=datetime.now(UTC),
        )
        await bucket.put(announcement_key("gone", "default", "r"), msgspec.json.encode(dead))
        assert [e.cluster for e in await live_executors(client.js)] == ["gone"]
        with anyio.fail_after(DEADLINE):
            while await live_executors(client.js):  # noqa: ASYNC110 (expiry sends no event to wait for)
                await anyio.sleep(0.2)


async def test_plait_run_cluster_sends_the_work_there(nats_url: str) -> None:
    """Only an executor of ``east`` runs: a workflow naming no cluster succeeds when launched onto it."""
    scheduler = SchedulerService(nats_url, replica="clusters")
    async with running(scheduler.run, executor(nats_url, "east").run), await AsyncClient.connect(nats_url) as client:
        env = {"PLAIT_NATS_URL": nats_url}
        done = await plait_command_async(
            ["run", "tests/cluster_workflows.py:unplaced", "--x", "3", "--cluster", "east", "--json"], env
        )
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        state = await final_state(client, result["execution_id"], timeout=DEADLINE)
    assert (result["status"], result["outputs"]) == ("succeeded", {"result": 3})
    assert [a.worker for node in state.nodes.values() for a in node.all_attempts()] == ["east-1"]
    bad = await plait_command_async(["run", "--cluster", "no.dots", "tests/cluster_workflows.py:unplaced"], env)
    assert bad.returncode == 2 and "cluster 'no.dots' must be 1 to 64 letters" in bad.stderr
