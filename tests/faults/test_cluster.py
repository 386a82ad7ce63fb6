"""A three-node JetStream cluster, streams with 3 replicas: the events stream's leader killed mid-run, and,
separately, the whole cluster restarted; every execution ends and the log keeps its invariants."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from plait.adapters import subjects
from tests.faults import harness
from tests.faults.cluster import NatsCluster

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


@pytest.mark.xfail(
    reason="issue 10 defect 6: an attempt queued during the leader change was never run nor reported (seen once in "
    "three runs: 'total/1' queued by the decision stored right after the election), and nothing gives up on it",
    strict=False,
)
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


@pytest.mark.xfail(
    reason="issue 10 defects 6 and 14: attempts queued as the cluster stopped never ran after it came back (5 of 30 "
    "chains stuck at one queued node, seen once in three runs) and nothing gives up on them; services may exit when "
    "NATS is away for more than 5 s",
    strict=False,
)
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
