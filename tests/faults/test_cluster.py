"""A three-node JetStream cluster, streams with 3 replicas: the events stream's leader killed mid-run, and,
separately, the whole cluster restarted; every execution ends and the log keeps its invariants."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from plait.adapters.streams import ensure_streams
from plait.client import AsyncClient
from plait.protocol import subjects
from plait_catalog import CatalogService
from plait_executor import ExecutorService
from tests import workflows
from tests.faults import harness
from tests.faults.cluster import NatsCluster
from tests.helpers.running import running

pytestmark = pytest.mark.faults


@pytest.fixture
async def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    nats_cluster = NatsCluster(tmp_path / "cluster")
    nats_cluster.start()
    try:
        await nats_cluster.wait_ready()
        yield nats_cluster
    finally:
        nats_cluster.stop()


async def test_killing_the_events_stream_leader_loses_nothing(cluster: NatsCluster) -> None:
    """Executions in flight when the leader dies end; launches resume once a new leader is elected (a launch
    during the election meets no responders: issue 10 defect 15)."""
    env = harness.service_env(cluster.url, PLAIT_STREAM_REPLICAS="3")
    processes = [harness.start_service("scheduler", {**env, "PLAIT_REPLICA": name}) for name in ("a", "b")]
    report = harness.FaultReport("events stream leader killed (SIGKILL)")
    with harness.stopped_at_exit(processes):
        processes.append(harness.start_service("executor", env))
        await cluster.wait_ready()  # the streams the services made have their leaders
        async with harness.connected(cluster.url) as client:
            ids = await harness.launch_many(client, 20, seed=7)
            leader = (await client.js.stream_info(subjects.EVENTS_STREAM)).cluster.leader
            victim = cluster.node(leader or "n1")
            await harness.in_thread(victim.signal, signal.SIGKILL)
            report.faults += 1
            victim.start()
            await cluster.wait_ready()
            ids += await harness.launch_many(client, 20, seed=8)
            report.executions = len(ids)
            await harness.wait_all(client, ids, timeout=30, report=report)
            report.problems = await harness.audit_log(client)
    report.check()


async def test_restarting_the_whole_cluster_loses_nothing(cluster: NatsCluster) -> None:
    env = harness.service_env(cluster.url, PLAIT_STREAM_REPLICAS="3")
    processes = [harness.start_service("scheduler", env), harness.start_service("executor", env)]
    report = harness.FaultReport("whole cluster restarted")
    with harness.stopped_at_exit(processes):
        await cluster.wait_ready()
        async with harness.connected(cluster.url) as client:
            ids = await harness.launch_many(client, 20, seed=9)
        await harness.in_thread(cluster.stop)
        report.faults += 1
        cluster.start()
        await cluster.wait_ready()
        async with harness.connected(cluster.url) as client:
            ids += await harness.launch_many(client, 10, seed=10)
            report.executions = len(ids)
            await harness.wait_all(client, ids, timeout=30, report=report)
            report.problems = await harness.audit_log(client)
        assert all(process.process.poll() is None for process in processes), "a service exited"
    report.check()


async def test_concurrent_registrations_of_one_version_all_succeed(cluster: NatsCluster) -> None:
    """On a replicated stream a second publish of a registration may meet the first still being stored (JetStream
    error 10158); each caller still gets its answer, and the version is stored once."""
    async with await AsyncClient.connect(cluster.url) as setup:
        await ensure_streams(setup.js, 3)
    clients = [await AsyncClient.connect(cluster.url) for _ in range(16)]
    try:
        async with anyio.create_task_group() as tg:
            for client in clients:
                tg.start_soon(client.register, workflows.add_two)
        workflow_subject = subjects.registration_subject(
            clients[0].project, clients[0].domain, "workflow", workflows.add_two.name, workflows.add_two.spec.version
        )
        info = await clients[0].js.stream_info(subjects.EVENTS_STREAM, subjects_filter=workflow_subject)
        assert info.state.subjects == {workflow_subject: 1}, "the version is stored once"
    finally:
        for client in clients:
            await client.close()


@pytest.mark.parametrize("service", ["executor", "catalog"])
async def test_every_service_creates_the_streams_with_the_replicas_it_is_given(
    cluster: NatsCluster, service: str, database_url: str
) -> None:
    run = (
        ExecutorService(cluster.url, concurrency=1, stream_replicas=3).run
        if service == "executor"
        else CatalogService(cluster.url, database_url, replica="r3", stream_replicas=3).run
    )
    async with running(run), await AsyncClient.connect(cluster.url) as client:
        replicas = {
            name: (await client.js.stream_info(name)).config.num_replicas
            for name in (subjects.EVENTS_STREAM, subjects.COMMANDS_STREAM, subjects.DISPATCH_STREAM)
        }
    assert replicas == dict.fromkeys(replicas, 3)
