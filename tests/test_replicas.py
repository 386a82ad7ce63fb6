"""Several scheduler replicas on one log, a replica killed mid-run, and services stopped by SIGTERM."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import anyio.to_thread
import pytest

from plait.adapters.event_log import StoredDecision
from plait.client import AsyncClient
from plait.core.state import apply_decision
from plait_executor import ExecutorService
from tests import workflows
from tests.helpers.exactly_once import check_log
from tests.helpers.processes import ServiceProcess, started
from tests.helpers.running import running

ACK_WAIT = "2"


@pytest.fixture
def two_schedulers(nats_url: str) -> Iterator[list[ServiceProcess]]:
    replicas = [
        ServiceProcess(
            "scheduler", {"PLAIT_NATS_URL": nats_url, "PLAIT_REPLICA": name, "PLAIT_ACK_WAIT_SECONDS": ACK_WAIT}
        )
        for name in ("replica-a", "replica-b")
    ]
    yield from started(replicas)


async def run_fan_out(nats_url: str, kill: ServiceProcess | None = None) -> tuple[list[StoredDecision], set[str]]:
    executor = ExecutorService(nats_url, concurrency=2, replica="executor", ack_wait_seconds=float(ACK_WAIT))
    async with running(executor.run), await AsyncClient.connect(nats_url) as client:
        execution_id = (await client.launch(workflows.fan_out)).id
        with anyio.fail_after(120):
            state = None
            async for stored in client.events(execution_id):
                state = apply_decision(state, stored.decision, stored.sequence, stored.digest)
                assert state is not None
                done = sum(1 for node in state.nodes.values() if node.status == "succeeded")
                if kill is not None and done >= 50:
                    await anyio.to_thread.run_sync(kill.kill)
                    kill = None
            assert state.status == "succeeded" and state.outputs == {"total": sum(range(200)), "count": 200}
        events = [stored async for stored in client.events(execution_id)]
    return events, {stored.decision.replica for stored in events}


async def test_two_replicas_decide_one_fan_out_without_duplicates(
    nats_url: str, two_schedulers: list[ServiceProcess]
) -> None:
    events, replicas = await run_fan_out(nats_url)
    check_log(events, nodes=201)
    assert replicas <= {"replica-a", "replica-b"}
    execution_id = events[0].decision.execution_id
    ended = [e for r in two_schedulers for e in r.events if e.get("event") == "execution_ended"]
    assert [(e["execution"], e["outcome"]) for e in ended] == [(execution_id, "ExecutionSucceeded")]
    assert {e["replica"] for e in ended} <= {"replica-a", "replica-b"}


async def test_killing_one_replica_mid_run_leaves_the_execution_to_the_other(
    nats_url: str, two_schedulers: list[ServiceProcess]
) -> None:
    victim, survivor = two_schedulers
    events, _replicas = await run_fan_out(nats_url, kill=victim)
    assert victim.process.returncode == -9
    check_log(events, nodes=201)
    last = events[-1].decision
    assert last.replica == "replica-b", "the survivor finished the execution"
    assert survivor.process.poll() is None


@pytest.mark.parametrize("service", ["scheduler", "executor", "catalog"])
def test_a_service_stops_cleanly_on_sigterm(service: str, nats_url: str, database_url: str) -> None:
    process = ServiceProcess(service, {"PLAIT_NATS_URL": nats_url, "PLAIT_DATABASE_URL": database_url})
    try:
        process.wait_for_event(f"{service}_started")
        assert process.terminate() == 0
        process.wait_for_event(f"{service}_stopped")
    finally:
        process.stop()


def test_a_service_refuses_bad_settings_with_a_clear_error() -> None:
    process = ServiceProcess("scheduler", {"PLAIT_NATS_URL": "http://nowhere"})
    try:
        assert process.process.wait(30) == 2
    finally:
        process.stop()
    assert any("PLAIT_NATS_URL must look like nats://HOST:PORT" in str(e) for e in process.events), process.events
