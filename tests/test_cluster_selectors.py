"""Cluster label selectors on real servers: two executors of two clusters announce different labels; work with a
selector runs on the matching cluster's executor only, a selector nothing live matches is refused with the reason,
and the execution's log alone gives the same clusters once no executor is live."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
import msgspec
import pytest

from plait.adapters.event_store import EventStore
from plait.adapters.executors import executors_bucket
from plait.client import AsyncClient
from plait.core.clusters import cluster_of_task
from plait.core.events import ExecutionLaunched, NodeQueued
from plait.errors import InputError
from plait.protocol import subjects
from plait.protocol.executors import ExecutorAnnouncement
from plait_catalog import CatalogService
from plait_executor import ExecutorService
from plait_scheduler import SchedulerService
from tests import cluster_workflows
from tests.helpers.plait_command import plait_command_async
from tests.helpers.running import running
from tests.helpers.states import final_state

DEADLINE = 60.0
LABELS = {"gpu-east": {"gpu": "a100", "region": "east"}, "cpu-west": {"region": "west"}, "east": {}}


async def announced(client: AsyncClient, clusters: set[str]) -> None:
    """Wait until an executor of each of ``clusters`` has announced itself in the bucket of live executors."""
    watcher = await (await executors_bucket(client.js)).watchall()
    seen: set[str] = set()
    try:
        with anyio.fail_after(DEADLINE):
            async for entry in watcher:
                if entry is not None and entry.value:
                    seen.add(msgspec.json.decode(entry.value, type=ExecutorAnnouncement).cluster)
                if clusters <= seen:
                    return
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]  # nats-py leaves it unannotated


@pytest.fixture
async def client(nats_url: str, database_url: str) -> AsyncIterator[AsyncClient]:
    """A scheduler, a catalog, and one executor of each of ``gpu-east`` and ``cpu-west`` with their labels (and one
    of ``east``, with none, for the task that names it)."""
    executors = [
        ExecutorService(nats_url, cluster=name, concurrency=1, replica=f"{name}-1", labels=labels)
        for name, labels in LABELS.items()
    ]
    scheduler = SchedulerService(nats_url, replica="selectors")
    catalog = CatalogService(nats_url, database_url, replica="selectors-catalog")
    services = [scheduler.run, catalog.run, *(e.run for e in executors)]
    async with running(*services), await AsyncClient.connect(nats_url) as connected:
        await announced(connected, set(LABELS))
        yield connected


async def launch_event(client: AsyncClient, execution_id: str) -> ExecutionLaunched:
    async for stored in client.events(execution_id, until_terminal=False):
        first = stored.decision.events[0]
        assert isinstance(first, ExecutionLaunched)
        return first
    raise AssertionError(f"execution {execution_id} has no launch")


async def test_a_selector_runs_on_the_matching_clusters_executor_only(client: AsyncClient, nats_url: str) -> None:
    handle = await client.launch(cluster_workflows.eastern_by_label, {"x": 1})
    state = await final_state(client, handle, timeout=DEADLINE)
    assert state.status == "succeeded" and state.outputs == {"result": 102}
    ran = {node.task.rsplit(".", 1)[-1]: [a.worker for a in node.attempts] for node in state.nodes.values()}
    assert ran["on_a100"] == ["gpu-east-1"] and ran["anywhere"] == ["gpu-east-1"]
    launched = await launch_event(client, handle.id)
    assert launched.selected_clusters == {"gpu=a100": "gpu-east", "region=east": "gpu-east"}

    env = {"PLAIT_NATS_URL": nats_url}
    shown = await plait_command_async(["executions", "show", handle.id], env)
    assert shown.returncode == 0, shown.stderr
    assert "cluster selector gpu=a100 chose cluster gpu-east" in shown.stdout
    shown_json = await plait_command_async(["executions", "show", handle.id, "--json"], env)
    assert json.loads(shown_json.stdout)["selected_clusters"] == launched.selected_clusters


async def test_plait_run_cluster_selector_chooses_among_the_live_clusters(client: AsyncClient, nats_url: str) -> None:
    env = {"PLAIT_NATS_URL": nats_url}
    done = await plait_command_async(
        ["run", "tests/cluster_workflows.py:unplaced", "--x", "3", "--cluster-selector", "region=west", "--json"], env
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    state = await final_state(client, result["execution_id"], timeout=DEADLINE)
    assert (result["status"], result["outputs"]) == ("succeeded", {"result": 3})
    assert [a.worker for node in state.nodes.values() for a in node.all_attempts()] == ["cpu-west-1"]

    refused = await plait_command_async(
        ["run", "tests/cluster_workflows.py:unplaced", "--cluster-selector", "gpu=h100"], env
    )
    assert refused.returncode == 2
    assert "no live executor matches cluster selector gpu=h100" in refused.stderr


async def test_a_selector_nothing_live_matches_is_refused_naming_what_is_live(client: AsyncClient) -> None:
    with pytest.raises(InputError) as refused:
        await client.launch(cluster_workflows.unplaced, {"x": 1}, cluster_selector={"gpu": "h100", "region": "east"})
    message = str(refused.value)
    assert "no live executor matches cluster selector gpu=h100,region=east" in message
    assert "cpu-west (region=west)" in message and "gpu-east (gpu=a100,region=east)" in message
    with pytest.raises(InputError, match="give a cluster or a cluster selector, not both"):
        await client.launch(cluster_workflows.unplaced, cluster="east", cluster_selector={"gpu": "a100"})


async def test_the_log_alone_gives_the_same_clusters_once_no_executor_is_live(nats_url: str, database_url: str) -> None:
    """Run an execution with a selector, stop every executor, then replay its log: the clusters it recorded."""
    scheduler = SchedulerService(nats_url, replica="selectors-replay")
    gpu = ExecutorService(nats_url, cluster="gpu-east", concurrency=1, replica="gpu-east-1", labels=LABELS["gpu-east"])
    async with running(scheduler.run), await AsyncClient.connect(nats_url) as client:
        async with running(gpu.run):
            await announced(client, {"gpu-east"})
            handle = await client.launch(cluster_workflows.on_gpu, {"x": 1})
            await final_state(client, handle, timeout=DEADLINE)
        queued = [
            e async for stored in client.events(handle.id) for e in stored.decision.events if isinstance(e, NodeQueued)
        ]
        subject = subjects.execution_subject(client.project, client.domain, handle.id)
        replayed = await EventStore(client.js).load(subject)
    assert replayed is not None and replayed.status == "succeeded"
    assert [e.cluster for e in queued] == ["gpu-east"]
    assert {cluster_of_task(replayed, e.task) for e in queued} == {"gpu-east"}
    assert replayed.selected_clusters == {"gpu=a100": "gpu-east"}
