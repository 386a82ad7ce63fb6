"""A timeout timer pending while the only scheduler replica is killed with SIGKILL still fires, once."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from plait import codec
from plait.client import AsyncClient
from plait.core.events import AttemptStarted
from plait.invariants import check_execution
from plait.replay import replay
from tests import timeout_workflows
from tests.faults import harness

pytestmark = pytest.mark.faults

DEADLINE = 60.0


async def started(client: AsyncClient, execution_id: str) -> None:
    """Once the log has the execution's first attempt started (so its timeout timer is, or is about to be, set)."""
    with anyio.fail_after(DEADLINE):
        while True:
            records = await client.records(execution_id)
            decisions = [codec.decision_decoder.decode(r.data) for r in records]
            if any(isinstance(e, AttemptStarted) for d in decisions for e in d.events):
                return
            await anyio.sleep(0.05)


async def test_a_timeout_timer_pending_while_the_scheduler_is_killed_fires_once(nats_url: str, tmp_path: Path) -> None:
    env = harness.service_env(nats_url)
    scheduler_env = {**env, "PLAIT_REPLICA": "replica-a"}
    processes = [harness.start_service("scheduler", scheduler_env)]
    pids = tmp_path / "pids"
    pids.mkdir()
    with harness.stopped_at_exit(processes):
        processes.append(harness.start_service("executor", env))
        async with harness.connected(nats_url) as client:
            inputs = {"directory": str(pids), "seconds": 300.0}
            execution_id = (await client.launch(timeout_workflows.sleeping, inputs, timeout=DEADLINE)).id
            await started(client, execution_id)
            await harness.in_thread(processes[0].kill)
            processes[0] = await harness.in_thread(harness.start_service, "scheduler", scheduler_env)
            await client.wait(execution_id, timeout=DEADLINE)
            records = await client.records(execution_id)
    state = replay(records)
    assert state.status == "failed" and state.error is not None
    assert state.error.message == "timed out after 1 s"
    attempts = state.nodes["sleepy"].attempts
    assert [a.status for a in attempts] == ["failed", "failed"]
    decided = [command for r in records for command in codec.decision_decoder.decode(r.data).commands]
    assert sorted(c for c in decided if c.endswith(":timeout")) == sorted(f"{a.attempt_id}:timeout" for a in attempts)
    assert check_execution(records, ended=True) == []
